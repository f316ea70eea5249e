"""The frame parser's verdicts on a fixed corpus of bad frames and on random ones, the same on
CPython and MicroPython (the expected table and the digest below are asserted by both), and
truncations at every byte. Runs under CPython and MicroPython (tests/firmware/mprun.py); attacks
on live runs are in fw_attacks.py."""
import hashlib
import struct

from flhil.auth import LinkKeys, pair_table
from flhil.compat import MICROPYTHON
from flhil.prng import XorShift32
from flhil.wire import Codec, Rejected

KEY = b"hostile-test-key"
RUN = "run-h"
NODES = 3


def codec(node, run=RUN):
    return Codec(run, LinkKeys(node, NODES, pair_table(KEY, node, NODES)), 0)


RX = codec(0)   # the server, receiving
TX = codec(1)   # a client, sending


def text(r=RUN, s=1, d=0, p="cu", i=0, q=1, v="1.5", extra=""):
    """The JSON text of a message with each field given as JSON source."""
    return ('{"r": %s, "s": %s, "d": %s, "p": %s, "i": %s, "q": %s, "v": %s%s}' % (
        '"%s"' % r if r is not None else "null", s, d, '"%s"' % p, i, q, v, extra)).encode()


def framed(t, src=TX, dst=0):
    head, data = src.frame(dst, t)
    return head + data


def verdict(frame, src=None):
    try:
        RX.decode_frame(frame, src)
    except Rejected as e:
        return e.why
    return None


VALID = framed(text())


def corpus():
    """(name, frame, bound connection or None, expected verdict): the same on both interpreters.
    Built when used: a MicroPython heap holds no module-level corpus beside three nodes."""
    return [
    ("valid", VALID, None, None),
    ("valid on its own connection", VALID, 1, None),
    ("valid vector", framed(text(v="[0.5, -1e-3, 2E+2, 0, null]")), None, None),
    ("empty", b"", None, "truncated"),
    ("header cut short", VALID[:2], None, "truncated"),
    ("header only", VALID[:4], None, "truncated"),
    ("body cut short", VALID[:-1], None, "truncated"),
    ("a byte too many", VALID + b" ", None, "truncated"),
    ("huge length", struct.pack(">I", 1 << 31) + VALID[4:], None, "oversize"),
    ("tiny length", struct.pack(">I", 10) + VALID[4:14], None, "truncated"),
    ("sender in clear is the receiver", VALID[:4] + b"\x00\x00" + VALID[6:], None, "bad_sender"),
    ("sender in clear outside the run", VALID[:4] + b"\x00\x63" + VALID[6:], None, "bad_sender"),
    ("sender in clear -1", VALID[:4] + b"\xff\xff" + VALID[6:], None, "bad_sender"),
    ("another link's sender in clear", VALID[:4] + b"\x00\x02" + VALID[6:], None, "bad_tag"),
    ("on another peer's connection", VALID, 2, "bad_sender"),
    ("tag zeroed", VALID[:6] + bytes(32) + VALID[38:], None, "bad_tag"),
    ("tagged for another receiver", framed(text(), dst=2), None, "bad_tag"),
    ("a text byte changed", VALID[:-3] + b"6" + VALID[-2:], None, "bad_tag"),
    ("missing colon (MicroPython's json takes it)", framed(text().replace(b'"r": ', b'"r" ')), None, "bad_json"),
    ("missing comma", framed(text().replace(b', "s"', b' "s"')), None, "bad_json"),
    ("trailing comma", framed(text(extra=",")), None, "bad_json"),
    ("double comma", framed(text(v="[1,,2]")), None, "bad_json"),
    ("list trailing comma", framed(text(v="[1,]")), None, "bad_json"),
    ("leading zero", framed(text(v="01")), None, "bad_json"),
    ("bare dot", framed(text(v="1.")), None, "bad_json"),
    ("NaN (CPython's json takes it)", framed(text(v="NaN")), None, "bad_json"),
    ("Infinity", framed(text(v="-Infinity")), None, "bad_json"),
    ("single quotes", framed(text().replace(b'"cu"', b"'cu'")), None, "bad_json"),
    ("bad escape", framed(text(p="c\\x")), None, "bad_json"),
    ("control character", framed(text(r="a\tb")), None, "bad_json"),
    ("non-ASCII", framed(text(r="r\xc3\xa9")), None, "bad_json"),
    ("data after the object", framed(text() + b" 1"), None, "bad_json"),
    ("unclosed", framed(text()[:-1]), None, "bad_json"),
    ("number too long", framed(text(v="1" * 41)), None, "bad_json"),
    ("nested 7 deep", framed(b"[" * 7 + b"]" * 7), None, "too_deep"),
    ("not an object", framed(b"[1, 2]"), None, "bad_fields"),
    ("a field missing", framed(b'{"r": "run-h", "s": 1, "d": 0, "p": "cu", "i": 0, "q": 1}'), None, "bad_fields"),
    ("a field too many", framed(text(extra=', "x": 1')), None, "bad_fields"),
    ("s a boolean", framed(text(s="true")), None, "bad_fields"),
    ("i a float", framed(text(i="1.0")), None, "bad_fields"),
    ("r null", framed(text(r=None)), None, "bad_fields"),
    ("another run", framed(text(r="run-x")), None, "other_run"),
    ("s 99", framed(text(s=99)), None, "bad_sender"),
    ("s -1", framed(text(s=-1)), None, "bad_sender"),
    ("s the server's id", framed(text(s=0)), None, "bad_sender"),
    ("s another client", framed(text(s=2)), None, "bad_sender"),
    ("d another node", framed(text(d=2)), None, "bad_dest"),
    ("d broadcast", framed(text(d=-1)), None, None),
    ("unknown phase", framed(text(p="zz")), None, "bad_phase"),
    ("i negative", framed(text(i=-1)), None, "bad_iter"),
    ("i huge", framed(text(i=1 << 40)), None, "bad_iter"),
    ("q negative", framed(text(q=-5)), None, "bad_iter"),
    ("hello at i 1", framed(text(p="hello", i=1, v='["127.0.0.1", 5]')), None, "bad_iter"),
    ("cd from a client", framed(text(p="cd")), None, "bad_sender"),
    ("go from a client", framed(text(p="go", v='{"in": 5}')), None, "bad_sender"),
    ("v a string", framed(text(v='"x"')), None, "bad_payload"),
    ("v a boolean", framed(text(v="true")), None, "bad_payload"),
    ("v an object", framed(text(v='{"a": 1}')), None, "bad_payload"),
    ("v infinite", framed(text(v="1e999")), None, "bad_payload"),
    ("v nested too deep", framed(text(v="[1, [2, [3, [4]]]]")), None, "bad_payload"),
    ("v a list with a string", framed(text(v='[1, "2"]')), None, "bad_payload"),
    ("hello not an address", framed(text(p="hello", v='["h", 70000]')), None, "bad_payload"),
    ("hello valid", framed(text(p="hello", v='["127.0.0.1", 6001]')), None, None),
    ]


def at_client():
    """Frames at a client (node 2): the roles of the phases."""
    return [
        ("cd from the server", framed(text(s=0, d=2, p="cd"), src=codec(0), dst=2), None),
        ("cu to a client", framed(text(d=2), dst=2), "bad_dest"),
        ("hello to a client", framed(text(d=2, p="hello", v='["h", 1]'), dst=2), "bad_dest"),
        ("d1 from a peer", framed(text(d=2, p="d1"), dst=2), None),
    ]


def test_corpus_verdicts():
    wrong = []
    for name, frame, src, want in corpus():
        got = verdict(frame, src)
        if got != want:
            wrong.append((name, want, got))
    rx2 = codec(2)
    for name, frame, want in at_client():
        try:
            rx2.decode_frame(frame)
            got = None
        except Rejected as e:
            got = e.why
        if got != want:
            wrong.append((name, want, got))
    assert not wrong, wrong


def test_nested_7000_deep():
    d = 3000 if MICROPYTHON else 7000  # a MicroPython test process has no 14 KB in one piece
    deep = b"[" * d + b"]" * d  # the parser stops at the 7th [
    assert verdict(framed(deep)) == "too_deep"


def test_truncation_at_every_byte():
    for k in range(len(VALID)):
        assert verdict(VALID[:k]) == "truncated", k
    assert verdict(VALID) is None


def _mutants(n, seed):
    """n frames: the valid text with 1-3 bytes replaced (JSON's own characters most often),
    tagged correctly, so that every one reaches the JSON and field checks."""
    g = XorShift32(seed)
    alphabet = b'{}[],:" \\-+.eE0123456789truefalsn\t'
    base = text(v="[0.5, 2, [1, -3e2]]")
    for _ in range(n):
        t = bytearray(base)
        for _ in range(1 + g.next_u32() % 3):
            pos = g.next_u32() % len(t)
            r = g.next_u32()
            t[pos] = alphabet[r % len(alphabet)] if r & 0x100 else (r >> 9) & 0xFF
        yield framed(bytes(t))


# sha256 of the verdicts of _mutants(400, 7), joined by ",": measured once, asserted on both
# interpreters (one parser, the same verdict for every byte string)
MUTANT_DIGEST = "7a49e68c4cf7ef10"


def test_random_frames_same_verdicts_everywhere():
    h = hashlib.sha256()
    seen = {}
    for f in _mutants(400, 7):
        v = verdict(f) or "ok"
        h.update(v.encode() + b",")
        seen[v] = 1
    verdicts = list(seen)
    digest = h.digest()
    got = "".join("%02x" % b for b in digest[:8])
    assert got == MUTANT_DIGEST, (got, sorted(set(verdicts)))
    assert len(set(verdicts)) >= 5, sorted(set(verdicts))
