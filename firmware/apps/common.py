# Shared by the firmware apps (MicroPython and CPython) and the host oracles
# (harness/oracles.py imports this file), so both sides compute with one implementation.
#
# MicroPython-compatible on purpose: only `math`, plain functions, no typing, no f-strings.
# Data are built from dyadic numbers so that they are bit-identical on a PC (double) and on
# the rp2 port (single precision); arithmetic on them (training) is not.

import math

from flhil.prng import XorShift32, mix


# ---------------------------------------------------------------- xorshift32 PRNG
# The generator and the seed hash are firmware.prng's (one implementation for the fault layer,
# the apps and the host oracles).

def xorshift32(x):
    """One step of Marsaglia's xorshift32 (13, 17, 5). x must be a nonzero 32-bit int."""
    return XorShift32(x).next_u32()


def rng_seed(*parts):
    """A nonzero 32-bit state from several ints (e.g. seed, stream, node): prng.mix (FNV-1a over
    the parts' 32-bit values), then a few xorshift steps to spread nearby seeds apart."""
    g = XorShift32(mix(*parts))
    for _ in range(3):
        g.next_u32()
    return g.next_u32()


class Rng:
    """Seeded xorshift32 stream. Uniforms have 16 bits and gaussians are sums of twelve of
    them (Irwin-Hall), so every value is a dyadic number exact in single precision."""

    def __init__(self, *parts):
        self._g = XorShift32(rng_seed(*parts))

    def u32(self):
        return self._g.next_u32()

    def u16(self):
        return self.u32() >> 16

    def uniform(self):
        """In [0, 1), a multiple of 2**-16."""
        return self.u16() / 65536.0

    def below(self, n):
        """An int in [0, n) for small n (n <= 65536)."""
        return (self.u16() * n) >> 16

    def gauss(self):
        """Approximately N(0, 1): sum of twelve 16-bit uniforms minus 6, summed as ints so the
        result is exact (a multiple of 2**-16 in [-6, 6))."""
        s = 0
        for _ in range(12):
            s += self.u16()
        return (s - 6 * 65536) / 65536.0


# ---------------------------------------------------------------- ODTS schedule (upstream ex6)

def odts_schedule(n, slot):
    """Pairs for `slot` (the slot index within a block, 0-based) as {node: peer or None}.

    Upstream ex6 rotates the id list [0..n-1] left by one before every slot, so slot s uses the
    list rotated by s+1, and pairs positions (0,1), (2,3), ...; the same schedule repeats in
    every block (state carries over between blocks). Upstream needs even n; with odd n the last
    node of the rotated list sits the slot out (None).
    A run with several blocks uses odts_schedule(n, global_slot % slots_per_block).
    """
    r = (slot + 1) % n
    ids = [(r + k) % n for k in range(n)]
    pairs = {}
    for k in range(0, n - 1, 2):
        a = ids[k]
        b = ids[k + 1]
        pairs[a] = b
        pairs[b] = a
    if n % 2:
        pairs[ids[n - 1]] = None
    return pairs


def odts_update(state, peer_odata):
    """The ex6 mock-up of orbit determination: average the state with the peer's data."""
    return (state + peer_odata) / 2.0


# ---------------------------------------------------------------- logistic regression data

LOGREG_STREAM = 0x4C52      # "LR": separates the data stream from other uses of the seed
LOGREG_TEST_NODE = 0xFFFF   # pseudo node id of the shared test set
LOGREG_MEAN = 2.0           # class means are -2 and +2; noise N(0, 1): Bayes accuracy ~0.977

# App arguments of the logreg app when the scenario does not set them; the host oracle uses
# the same defaults. Small enough for a Pico W (samples x epochs sigmoid calls per round).
LOGREG_DEFAULTS = {"iterations": 5, "epochs": 10, "lr": 0.5, "samples": 40, "test_samples": 200}


def logreg_sample_count(node, base):
    """Sample count of a node: base, base + base/4, base + base/2, repeating, so that
    count-weighted FedAvg differs from a plain mean."""
    return base + (node % 3) * (base // 4)


def logreg_data(node, seed, n_samples):
    """Node's synthetic one-feature data set: (xs, ys) lists of length n_samples.

    Per sample: y = top bit of a xorshift32 draw (0 or 1), x = (2y - 1) * 2.0 + gauss(),
    where gauss() is Rng.gauss (Irwin-Hall of twelve 16-bit uniforms). The generator is
    Rng(seed, LOGREG_STREAM, node). Every x is dyadic, so boards and PCs get identical data.
    """
    rng = Rng(seed, LOGREG_STREAM, node)
    xs = []
    ys = []
    for _ in range(n_samples):
        y = rng.u32() >> 31
        x = (2 * y - 1) * LOGREG_MEAN + rng.gauss()
        xs.append(x)
        ys.append(y)
    return xs, ys


def logreg_test_data(seed, n_samples):
    """The test set every node (and the oracle) evaluates the global model on."""
    return logreg_data(LOGREG_TEST_NODE, seed, n_samples)


def sigmoid(z):
    # Clamp so exp never overflows (single precision overflows near 88).
    if z < -30.0:
        z = -30.0
    elif z > 30.0:
        z = 30.0
    return 1.0 / (1.0 + math.exp(-z))


def logreg_train(w, xs, ys, epochs, lr):
    """Full-batch gradient descent on the log loss from model w = [weight, bias]; a new list."""
    a = w[0]
    b = w[1]
    m = len(xs)
    if m == 0:
        return [a, b]
    for _ in range(epochs):
        ga = 0.0
        gb = 0.0
        for k in range(m):
            err = sigmoid(a * xs[k] + b) - ys[k]
            ga += err * xs[k]
            gb += err
        a -= lr * ga / m
        b -= lr * gb / m
    return [a, b]


def logreg_accuracy(w, xs, ys):
    """Fraction of samples classified correctly (threshold 0.5, i.e. w x + b >= 0)."""
    if not xs:
        return 0.0
    ok = 0
    for k in range(len(xs)):
        pred = 1 if w[0] * xs[k] + w[1] >= 0.0 else 0
        if pred == ys[k]:
            ok += 1
    return ok / len(xs)


def logreg_client_update(global_w, xs, ys, epochs, lr):
    """A client's reply in a FedAvg round: [weight, bias, sample count]."""
    w = logreg_train(global_w, xs, ys, epochs, lr)
    return [w[0], w[1], len(xs)]


def fedavg(replies):
    """FedAvg of [weight, bias, count] replies, weighted by count: [weight, bias].
    With dropouts this is still a convex combination of the replies that arrived."""
    total = 0
    a = 0.0
    b = 0.0
    for r in replies:
        a += r[0] * r[2]
        b += r[1] * r[2]
        total += r[2]
    if total == 0:
        return None
    return [a / total, b / total]
