"""Frames and messages: the one frame parser, the same verdict on MicroPython and CPython.

frame   = 4-byte big-endian body length (bytes) + body
body    = 2-byte big-endian sender id + 32-byte HMAC-SHA256 tag (the link key sender -> receiver,
          auth.py) over `json` + json
json    = {"r": run, "s": sender, "d": destination, "p": phase, "i": iteration/slot, "q": seq, "v": payload}

A receiver checks, in this order, and stops at the first failure (its `why`, vocab.FRAME_REJECTS):
the announced length (`oversize` before the body is read, `truncated`), the sender in clear
(`bad_sender`: outside the run, the receiver itself, or not the peer the connection is bound to),
the tag (`bad_tag`), the JSON text (`too_deep` past MAX_DEPTH nested arrays/objects, `bad_json`:
anything RFC 8259 does not allow, in printable ASCII, numbers of at most MAX_NUMBER characters;
checked here because MicroPython's json accepts missing colons and commas), then the fields:
exactly the seven keys with their types (`bad_fields`), the run (`other_run`), `s` equal to the
sender in clear (`bad_sender`), `d` this node or -1 (`bad_dest`), a known phase (`bad_phase`),
0 <= i < MAX_ITER and 0 for start-up phases (`bad_iter`), the phase's roles (`go` and `cd` only
from the server, `hello` and `cu` only to it: `bad_sender`/`bad_dest`) and the payload's shape
for the phase (`bad_payload`: finite numbers, null and lists of them, at most MAX_PAYLOAD_DEPTH
deep, for FL phases; the address and the go's fields for start-up)."""
import json
import struct

from flhil.auth import TAG_LEN
from flhil.vocab import PHASES, FL_PHASES

HEADER = 4
SENDER_LEN = 2
PREFIX = HEADER + SENDER_LEN + TAG_LEN  # header, sender and tag of a frame
MIN_BODY = SENDER_LEN + TAG_LEN + 2     # the shortest JSON text of an object: {}
DEFAULT_MAX_FRAME = 65536  # a small model in one message (upstream's MLP example sends ~25 KB of JSON)
MAX_DEPTH = 6           # nesting of the JSON text; a go with its address table needs 4
MAX_NUMBER = 40         # characters of one JSON number
MAX_ITER = 1 << 30      # iterations and sequence numbers (a MicroPython small int)
MAX_PAYLOAD_DEPTH = 3   # lists in an FL payload: a model, a list of models, ...
MAX_HOST = 64
MAX_START_US = 600000000  # the go's delay to slot 0
FIELDS = ("r", "s", "d", "p", "i", "q", "v")


class Rejected(Exception):
    """A frame the node refuses. `why` is one of the telemetry `drop` reasons."""

    def __init__(self, why, detail=""):
        super().__init__(why)  # MicroPython: Exception has no __init__ attribute to call
        self.why = why
        self.detail = detail


# -- the JSON text ---------------------------------------------------------------------------
_ENDS = (b",", b"]", b"}", b" ", b"\n", b"\r", b"\t")
_WS = b" \t\n\r"
_ESCAPES = b'"\\/bfnrt'
_HEX = b"0123456789abcdefABCDEF"


def _bad(detail):
    return Rejected("bad_json", detail)


def _string(data, i, n):
    """End (one past the closing quote) of the string opening at data[i]."""
    j = i + 1
    while True:
        k = data.find(b'"', j)
        if k < 0:
            raise _bad("unterminated string")
        b = data.find(b"\\", j, k)
        stop = k if b < 0 else b
        if stop > j and min(data[j:stop]) < 32:
            raise _bad("control character")
        if b < 0:
            return k + 1
        e = data[b + 1] if b + 1 < n else 0
        if e == 117:  # \uXXXX
            h = data[b + 2:b + 6]
            if len(h) != 4 or not all(c in _HEX for c in h):
                raise _bad("bad escape")
            j = b + 6
        elif e in _ESCAPES:
            j = b + 2
        else:
            raise _bad("bad escape")


def _token(t):
    """Raise unless `t` (bytes) is one JSON number or literal, RFC 8259's grammar."""
    if t == b"true" or t == b"false" or t == b"null":
        return
    if len(t) > MAX_NUMBER:
        raise _bad("long number")
    if t[:1] == b"-":
        t = t[1:]
    p = t.find(b"e")
    if p < 0:
        p = t.find(b"E")
    if p >= 0:
        x = t[p + 1:]
        if x[:1] == b"+" or x[:1] == b"-":
            x = x[1:]
        if not x.isdigit():
            raise _bad("bad number")
        t = t[:p]
    p = t.find(b".")
    if p >= 0:
        if not t[p + 1:].isdigit():
            raise _bad("bad number")
        t = t[:p]
    if not t.isdigit() or (len(t) > 1 and t[0] == 48):
        raise _bad("bad number")


def _scalar(data, i, n):
    """End of the number or literal starting at data[i]: the token runs to the next , ] } or
    JSON whitespace (found in C, not byte by byte)."""
    lim = i + MAX_NUMBER + 2
    if lim > n:
        lim = n
    e = lim
    for c in _ENDS:
        k = data.find(c, i, e)
        if k >= 0:
            e = k
    _token(data[i:e])
    return e


def _flat_array(data, i, n):
    """End of the array opening at data[i] when it holds only numbers and literals (a model: the
    common case, checked element by element with split, in C), or -1 to take the general path.
    The verdict is the general path's: both accept exactly RFC 8259's arrays."""
    j = data.find(b"]", i)
    if j < 0:
        return -1
    inner = data[i + 1:j]
    if b"[" in inner or b"{" in inner or b'"' in inner:
        return -1
    if not inner.strip(_WS):
        return j + 1  # empty
    for t in inner.split(b","):
        _token(t.strip(_WS))
    return j + 1


def check_json(data, max_depth=MAX_DEPTH):
    """Raise Rejected unless `data` (bytes) is one strict JSON value (RFC 8259) in printable
    ASCII, nested at most max_depth deep. One pass, no recursion, before any parser sees it."""
    n = len(data)
    if n == 0:
        raise _bad("empty")
    if max(data) > 126:
        raise _bad("byte above 126")
    stack = []  # True: object, False: array
    i = 0
    # 0: a value; 1: after a value; 2: a key; 3: a colon; 4: a value or ]; 5: a key or }
    state = 0
    while True:
        while i < n:
            c = data[i]
            if c == 32 or c == 10 or c == 13 or c == 9:
                i += 1
            else:
                break
        if i >= n:
            if state == 1 and not stack:
                return
            raise _bad("ends inside the value")
        c = data[i]
        if state == 1:
            if not stack:
                raise _bad("data after the value")
            obj = stack[-1]
            if c == 44:
                state = 2 if obj else 0
            elif c == (125 if obj else 93):
                stack.pop()
            else:
                raise _bad("expected , or close")
            i += 1
            continue
        if state == 3:
            if c != 58:
                raise _bad("expected :")
            state = 0
            i += 1
            continue
        if state == 2 or state == 5:
            if c == 34:
                i = _string(data, i, n)
                state = 3
                continue
            if state == 5 and c == 125:
                stack.pop()
                i += 1
                state = 1
                continue
            raise _bad("expected a key")
        if state == 4 and c == 93:
            stack.pop()
            i += 1
            state = 1
            continue
        if c == 123 or c == 91:
            if len(stack) >= max_depth:
                raise Rejected("too_deep", "%d deep" % max_depth)
            if c == 91:
                e = _flat_array(data, i, n)
                if e > 0:
                    i = e
                    state = 1
                    continue
            stack.append(c == 123)
            i += 1
            state = 5 if c == 123 else 4
            continue
        if c == 34:
            i = _string(data, i, n)
        elif c == 45 or 48 <= c <= 57 or c == 116 or c == 102 or c == 110:
            i = _scalar(data, i, n)
        else:
            raise _bad("unexpected character")
        state = 1


# -- the message -----------------------------------------------------------------------------
def _finite(x):
    return x - x == 0  # inf - inf and nan - nan are nan


def numeric(v, depth=0):
    """An FL payload: a finite number, null, or a list of those at most MAX_PAYLOAD_DEPTH deep."""
    t = type(v)
    if t is float:
        return _finite(v)
    if t is int or v is None:
        return True
    if t is list and depth < MAX_PAYLOAD_DEPTH:
        for x in v:
            if not numeric(x, depth + 1):
                return False
        return True
    return False


def json_value(v, depth=0):
    """An app's own payload (`payload = "json"`): finite numbers, null, booleans, strings, and
    lists and objects of them (string keys) at most MAX_DEPTH deep."""
    t = type(v)
    if t is float:
        return _finite(v)
    if t is int or t is str or t is bool or v is None:
        return True
    if depth >= MAX_DEPTH:
        return False
    if t is list:
        for x in v:
            if not json_value(x, depth + 1):
                return False
        return True
    if t is dict:
        for k in v:
            if type(k) is not str or not json_value(v[k], depth + 1):
                return False
        return True
    return False


def _address(a):
    return type(a) is list and len(a) == 2 and type(a[0]) is str and 0 < len(a[0]) <= MAX_HOST \
        and type(a[1]) is int and 0 <= a[1] <= 65535


def _node_key(k, nodes):
    return type(k) is str and 0 < len(k) <= 5 and k.isdigit() and int(k) < nodes


def check_payload(p, v, nodes, shape="numeric"):
    """The payload's shape for its phase, or Rejected("bad_payload"). FL payloads are numeric
    (numbers, lists of them: models) unless the run declares the app's own JSON (`shape`)."""
    if p in FL_PHASES:
        ok = numeric(v) if shape == "numeric" else json_value(v)
    elif p == "hello":
        ok = _address(v)
    else:  # go
        ok = type(v) is dict and type(v.get("in")) is int and 0 <= v["in"] <= MAX_START_US
        if ok:
            for k in v:
                if k == "peers":
                    t = v[k]
                    if type(t) is not dict or len(t) > nodes:
                        ok = False
                        break
                    for j in t:
                        if not _node_key(j, nodes) or not _address(t[j]):
                            ok = False
                            break
                elif k != "in":
                    ok = False
                if not ok:
                    break
    if not ok:
        raise Rejected("bad_payload", "%s payload" % p)


class Codec:
    """Encodes this node's frames and parses the frames it receives. `keys` is the node's
    auth.LinkKeys; `server` the run's server (the roles of go, hello, cd and cu)."""

    def __init__(self, run, keys, server=0, max_frame=DEFAULT_MAX_FRAME, payload="numeric"):
        self.run = run
        self.payload = payload
        self.keys = keys
        self.node = keys.node
        self.nodes = keys.nodes
        self.server = server
        self.max_frame = max_frame

    @classmethod
    def from_config(cls, cfg):
        from flhil.auth import LinkKeys
        return cls(cfg.get("run", ""), LinkKeys.from_config(cfg), cfg.get("server", 0),
                   cfg.get("max_frame", DEFAULT_MAX_FRAME), cfg.get("payload", "numeric"))

    # -- sending -----------------------------------------------------------------------------
    def encode_data(self, msg):
        """The JSON text of a message, once for all its destinations."""
        data = json.dumps(msg).encode()
        if PREFIX - HEADER + len(data) > self.max_frame:
            raise Rejected("oversize", "outgoing frame of %d bytes" % (PREFIX - HEADER + len(data)))
        return data

    def frame(self, dst, data):
        """(prefix, data) of the frame to dst: header, sender and dst's tag, then the shared text."""
        head = struct.pack(">IH", SENDER_LEN + TAG_LEN + len(data), self.node)
        return head + self.keys.signer(dst).tag(data), data

    def encode(self, msg, dst):
        """The whole frame to dst as bytes."""
        head, data = self.frame(dst, self.encode_data(msg))
        return head + data

    # -- receiving ---------------------------------------------------------------------------
    def body_length(self, header):
        """Length announced by a frame header; raises Rejected before a huge body is read."""
        n = struct.unpack(">I", header)[0]
        if n > self.max_frame:
            raise Rejected("oversize", "%d bytes announced, limit %d" % (n, self.max_frame))
        if n < MIN_BODY:
            raise Rejected("truncated", "%d-byte body" % n)
        return n

    def decode(self, prefix, data, src=None):
        """The message of an authenticated, well-formed frame, or Rejected: `prefix` is the
        sender in clear and the tag (SENDER_LEN + TAG_LEN bytes), `data` the JSON text (a TCP
        reader reads the two apart, so a large text is never copied). `src`: the peer the
        connection (or link) is bound to, None while it is not bound yet."""
        if len(prefix) != SENDER_LEN + TAG_LEN or len(data) < 2:
            raise Rejected("truncated", "%d-byte body" % (len(prefix) + len(data)))
        s = prefix[0] << 8 | prefix[1]
        if s >= self.nodes or s == self.node:
            raise Rejected("bad_sender", "sender %d in clear" % s)
        if src is not None and s != src:
            raise Rejected("bad_sender", "sender %d on the connection of %d" % (s, src))
        if not self.keys.verifier(s).verify(data, prefix[SENDER_LEN:]):
            raise Rejected("bad_tag", "from %d" % s)
        check_json(data)
        try:
            msg = json.loads(data)
        except (ValueError, UnicodeError) as e:  # not reached after check_json; kept as a guard
            raise Rejected("bad_json", str(e)) from None
        self.check_message(msg, s)
        return msg

    def decode_frame(self, frame, src=None):
        """A whole frame (header and body) as one piece, as a datagram medium delivers it."""
        if len(frame) < HEADER:
            raise Rejected("truncated", "%d-byte frame, shorter than its header" % len(frame))
        n = self.body_length(frame[:HEADER])
        if len(frame) - HEADER != n:
            raise Rejected("truncated", "%d-byte body announced, %d came" % (n, len(frame) - HEADER))
        return self.decode(frame[HEADER:PREFIX], frame[PREFIX:], src)

    def check_message(self, msg, s):
        if type(msg) is not dict or len(msg) != len(FIELDS):
            raise Rejected("bad_fields", "not an object of %d fields" % len(FIELDS))
        for k in FIELDS:
            if k not in msg:
                raise Rejected("bad_fields", "missing " + k)
        r, d, p, i, q = msg["r"], msg["d"], msg["p"], msg["i"], msg["q"]
        if type(r) is not str or type(msg["s"]) is not int or type(d) is not int or \
                type(p) is not str or type(i) is not int or type(q) is not int:
            raise Rejected("bad_fields", "a field of the wrong type")
        if r != self.run:
            raise Rejected("other_run", r[:40])
        if msg["s"] != s:
            raise Rejected("bad_sender", "s %d in a frame of %d" % (msg["s"], s))
        if d != self.node and d != -1:
            raise Rejected("bad_dest", "d %d" % d)
        if p not in PHASES:
            raise Rejected("bad_phase", p[:20])
        if not 0 <= i < MAX_ITER or not 0 <= q < MAX_ITER or (i and p not in FL_PHASES):
            raise Rejected("bad_iter", "%s %d" % (p, i))
        if (p == "go" or p == "cd") and s != self.server:
            raise Rejected("bad_sender", "%s from %d, not the server" % (p, s))
        if (p == "hello" or p == "cu") and self.node != self.server:
            raise Rejected("bad_dest", "%s to a node that is not the server" % p)
        check_payload(p, msg["v"], self.nodes, self.payload)
