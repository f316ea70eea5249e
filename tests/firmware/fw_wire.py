"""Wire format, authentication and the deterministic generator: malformed frames on a live node,
HMAC-SHA256 against RFC 4231, and PRNG sequences fixed once (the same on CPython and MicroPython).
Runs under CPython and MicroPython (tests/firmware/mprun.py)."""
import binascii
import struct

import fwkit
from flhil.apps import common, fedmean
from flhil.auth import Hmac, LinkKeys, pair_table
from flhil.compat import asyncio
from flhil.prng import XorShift32, mix
from flhil.wire import Codec, Rejected, DEFAULT_MAX_FRAME


def unhex(s):
    return binascii.unhexlify(s)


def hexs(b):
    return binascii.hexlify(b).decode()


# ---------------------------------------------------------------- HMAC-SHA256 (RFC 4231)

def test_hmac_rfc4231_case1():
    tag = Hmac(b"\x0b" * 20).tag(b"Hi There")
    assert hexs(tag) == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", hexs(tag)


def test_hmac_rfc4231_case2():
    tag = Hmac(b"Jefe").tag(b"what do ya want for nothing?")
    assert hexs(tag) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", hexs(tag)


def test_hmac_rfc4231_case6_long_key():
    tag = Hmac(b"\xaa" * 131).tag(b"Test Using Larger Than Block-Size Key - Hash Key First")
    assert hexs(tag) == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", hexs(tag)


def test_hmac_verify():
    mac = Hmac(b"Jefe")
    tag = mac.tag(b"abc")
    assert mac.verify(b"abc", tag)
    assert not mac.verify(b"abd", tag)
    assert not mac.verify(b"abc", tag[:-1])
    assert not mac.verify(b"abc", bytes(32))


# ---------------------------------------------------------------- PRNG: same numbers everywhere

def test_xorshift32_sequence():
    g = XorShift32(1)
    assert [g.next_u32() for _ in range(5)] == [270369, 67634689, 2647435461, 307599695, 2398689233]


def test_mix_values():
    assert mix(7, 1, 0) == 3304616259
    assert mix(1, 2, 3) == 2034659765
    assert mix(0) == 1268118805


def test_fault_link_stream():
    # the generator of the fault layer's link (seed 7, src 0, dst 1)
    g = XorShift32(mix(7, 0, 1, 0x11))
    assert [g.next_u32() for _ in range(4)] == [4078784661, 2029280850, 2498928237, 550822834]
    assert XorShift32(mix(3)).random() == 0.45931685832329094


def test_app_data_streams():
    r = common.Rng(1, 2)
    assert [r.u32() for _ in range(3)] == [1133848668, 893761907, 3474493574]
    assert r.gauss() == 0.750946044921875 and r.uniform() == 0.361297607421875
    assert common.logreg_data(1, 1, 3) == ([-3.8813629150390625, 1.761383056640625, 1.03338623046875], [0, 1, 1])
    assert fedmean.readings(1, 3, 3) == [21.452545166015625, 20.3349609375, 23.838653564453125, 17.322509765625]


# ---------------------------------------------------------------- codec

KEY = b"k" * 16
MSG = {"r": "run-a", "s": 1, "d": 0, "p": "cu", "i": 0, "q": 1, "v": 1.5}


def codec(node, run="run-a", nodes=3, key=KEY, max_frame=16384):
    return Codec(run, LinkKeys(node, nodes, pair_table(key, node, nodes)), 0, max_frame)


def rejected(c, body, src=None):
    try:
        c.decode_frame(struct.pack(">I", len(body)) + body, src)
    except Rejected as e:
        return e.why
    return None


def test_codec_round_trip_and_rejects():
    c, c1 = codec(0), codec(1)
    frame = c1.encode(MSG, 0)
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert c.decode(frame[4:38], frame[38:]) == MSG
    assert c.decode_frame(frame, 1) == MSG
    assert rejected(c, frame[4:20]) == "truncated"
    assert rejected(c, frame[4:6] + bytes(32) + frame[38:]) == "bad_tag"
    assert rejected(c, frame[4:], 2) == "bad_sender"  # on the connection of node 2
    assert rejected(codec(2), frame[4:]) == "bad_tag"  # for node 0, not 2
    head, text = c1.frame(0, b"{nope")
    assert rejected(c, (head + text)[4:]) == "bad_json"
    other = dict(MSG)
    other["r"] = "run-b"
    assert rejected(c, codec(1, "run-b").encode(other, 0)[4:]) == "other_run"
    bad_phase = dict(MSG)
    bad_phase["p"] = "zz"
    assert rejected(c, c1.encode(bad_phase, 0)[4:]) == "bad_phase"
    for header, why in ((struct.pack(">I", DEFAULT_MAX_FRAME + 1), "oversize"), (struct.pack(">I", 3), "truncated")):
        try:
            c.body_length(header)
            raise AssertionError("no rejection")
        except Rejected as e:
            assert e.why == why
    try:
        codec(0, max_frame=256).encode({"r": "run-a", "v": "x" * 300}, 1)
        raise AssertionError("oversize frame encoded")
    except Rejected as e:
        assert e.why == "oversize"


def test_link_keys_per_ordered_pair():
    k0, k1, k2 = [LinkKeys(j, 3, pair_table(KEY, j, 3)) for j in range(3)]
    msg = b"m"
    assert k0.signer(1).tag(msg) == k1.verifier(0).tag(msg)  # 0 -> 1, both ends agree
    assert k1.signer(0).tag(msg) == k0.verifier(1).tag(msg)
    assert k0.signer(1).tag(msg) != k1.signer(0).tag(msg)    # the two directions differ
    assert k0.signer(1).tag(msg) != k0.signer(2).tag(msg)
    assert k2.signer(0).tag(msg) != k1.signer(0).tag(msg)    # 2 cannot sign as 1
    # a table holds 16 bytes a node, the run's secret never
    assert len(pair_table(KEY, 0, 254)) == 16 * 254


# ---------------------------------------------------------------- malformed frames on a live node

async def _inject(cfg):
    addr = cfg["listen"]
    own = Codec.from_config(dict(cfg, node=1))  # node 1's keys: a peer of node 0
    # the node drops the connection after these two
    await fwkit.send_raw(addr, struct.pack(">I", DEFAULT_MAX_FRAME + 1) + b"x" * 64)             # oversize
    await fwkit.send_raw(addr, struct.pack(">I", 100) + b"y" * 50)               # truncated body
    # these are dropped one by one on one connection, which stays usable
    msg = {"r": cfg["run"], "s": 1, "d": 0, "p": "cu", "i": 0, "q": 9, "v": 99.0}
    good = own.encode(msg, 0)
    other = dict(msg)
    other["r"] = "another-run"
    head, text = own.frame(0, b"{not json")
    frames = [
        head + text,                                                              # bad JSON, good tag
        good[:6] + bytes(32) + good[38:],                                         # bad tag
        Codec.from_config(dict(cfg, node=1, run="another-run")).encode(other, 0),  # another run
    ]
    await fwkit.send_raw(addr, b"".join(frames))


async def test_malformed_frames_rejected_node_keeps_working():
    # a TDM run: its slots start 100 ms after the start barrier, the frames arrive before that
    cfgs = fwkit.configs("w_malformed", 3, "getmeas", {"slots": 3}, timing={"start_delay_ms": 100})
    r, _ = await asyncio.gather(fwkit.run(cfgs), _inject(cfgs[0]))
    for i in range(3):
        res = r.result(i)
        assert res["slots"] == [[1.0 + p for p in res["peers"]]] * 3, (i, res)
    c = r.counts(0)
    assert c["rejected"] == 5, c
    whys = sorted(e["why"] for e in r.ev(0, "drop"))
    assert whys == ["bad_json", "bad_tag", "other_run", "oversize", "truncated"], whys
    assert all(r.counts(i)["rejected"] == 0 for i in (1, 2))
