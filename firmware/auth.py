"""HMAC-SHA256 (RFC 2104) on hashlib.sha256, which MicroPython has; its `hmac` module it lacks."""
import hashlib

BLOCK = 64
TAG_LEN = 32


class Hmac:
    def __init__(self, key):
        if len(key) > BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(BLOCK - len(key))
        self._inner = bytes(b ^ 0x36 for b in key)
        self._outer = bytes(b ^ 0x5C for b in key)

    def tag(self, msg):
        h = hashlib.sha256(self._inner)
        h.update(msg)
        inner = h.digest()
        h = hashlib.sha256(self._outer)
        h.update(inner)
        return h.digest()

    def verify(self, msg, tag):
        expected = self.tag(msg)
        if len(tag) != len(expected):
            return False
        diff = 0
        for a, b in zip(expected, tag):  # constant time: no early exit
            diff |= a ^ b
        return diff == 0
