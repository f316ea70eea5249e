"""A small deterministic generator (xorshift32) that gives the same numbers on MicroPython and
CPython, unlike `random`. Seeds are mixed from integers so every link and node gets its own stream."""

MASK = 0xFFFFFFFF


def mix(*parts):
    """Hash integers into a non-zero 32-bit seed (FNV-1a over their 32-bit words)."""
    h = 0x811C9DC5
    for p in parts:
        p = int(p) & MASK
        for _ in range(4):
            h ^= p & 0xFF
            h = (h * 0x01000193) & MASK
            p >>= 8
    return h or 0x9E3779B9


class XorShift32:
    def __init__(self, seed):
        self.state = (seed & MASK) or 0x9E3779B9

    def next_u32(self):
        x = self.state
        x ^= (x << 13) & MASK
        x ^= x >> 17
        x ^= (x << 5) & MASK
        self.state = x
        return x

    def random(self):
        """Uniform float in [0, 1)."""
        return self.next_u32() / 4294967296.0

    def uniform(self, a, b):
        return a + (b - a) * self.random()
