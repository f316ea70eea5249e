"""Frames and messages.

frame   = 4-byte big-endian body length (bytes) + body
body    = 32-byte HMAC-SHA256 tag over `json` + json
json    = {"r": run, "s": sender, "d": destination, "p": phase, "i": iteration/slot, "q": seq, "v": payload}
"""
import json
import struct

from flhil.auth import Hmac, TAG_LEN
from flhil.vocab import PHASES

HEADER = 4
DEFAULT_MAX_FRAME = 65536  # a small model in one message (upstream's MLP example sends ~25 KB of JSON)


class Rejected(Exception):
    """A frame the node refuses. `why` is one of the telemetry `drop` reasons."""

    def __init__(self, why, detail=""):
        super().__init__(why)  # MicroPython: Exception has no __init__ attribute to call
        self.why = why
        self.detail = detail


class Codec:
    def __init__(self, run, key, max_frame=DEFAULT_MAX_FRAME):
        self.run = run
        self.max_frame = max_frame
        self._mac = Hmac(key)

    def encode(self, msg):
        data = json.dumps(msg).encode()
        body_len = TAG_LEN + len(data)
        if body_len > self.max_frame:
            raise Rejected("oversize", "outgoing frame of %d bytes" % body_len)
        return struct.pack(">I", body_len) + self._mac.tag(data) + data

    def body_length(self, header):
        """Length announced by a frame header; raises Rejected before a huge body is read."""
        n = struct.unpack(">I", header)[0]
        if n > self.max_frame:
            raise Rejected("oversize", "%d bytes announced, limit %d" % (n, self.max_frame))
        if n < TAG_LEN + 2:
            raise Rejected("truncated", "%d-byte body" % n)
        return n

    def decode(self, body):
        """Authenticated, well-formed message of this run, or Rejected."""
        if len(body) < TAG_LEN + 2:
            raise Rejected("truncated", "%d-byte body" % len(body))
        tag = body[:TAG_LEN]
        data = body[TAG_LEN:]
        if not self._mac.verify(data, tag):
            raise Rejected("bad_tag")
        try:
            msg = json.loads(data)
        except (ValueError, UnicodeError) as e:
            raise Rejected("bad_json", str(e)) from None
        if type(msg) is not dict:
            raise Rejected("bad_fields", "not an object")
        for k in ("r", "s", "p", "i"):
            if k not in msg:
                raise Rejected("bad_fields", "missing " + k)
        if msg["r"] != self.run:
            raise Rejected("other_run", str(msg["r"]))
        if type(msg["s"]) is not int or type(msg["i"]) is not int or msg["p"] not in PHASES:
            raise Rejected("bad_fields", "sender, phase or iteration")
        return msg
