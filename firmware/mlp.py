"""A tiny multi-layer perceptron in pure Python for HeteroFL (Diao et al., ICLR 2021): one hidden
layer of ReLU units, softmax output, per-sample SGD, parameters in one flat `array('f')`.

Runs unchanged on MicroPython and CPython. The host's numpy reference
(harness/results/heterofl.py) computes the same arithmetic, so a node's round can be checked.

Layout of a model of width h (d inputs, o outputs), row-major, one flat array:
    W1[h][d] (unit j's input weights at j*d), b1[h], W2[o][h] (output k's at k*h), b2[o].
A level's sub-model is the index prefix of the hidden layer: units 0..h-1 of W1, b1 and the
columns 0..h-1 of W2; the output bias is always whole.

Levels: a = 1, b = 1/2, c = 1/4, d = 1/8, e = 1/16 of the width; the width of a level is
ceil(rate x H). During local training hidden activations are multiplied by 1/rate (HeteroFL's
"scaler"), so a narrow sub-model's outputs have the size of the full model's; there is no
normalisation layer, so no running statistics.

Input pixels are 4-bit ints packed two per byte (the run config's base64 text, decoded); an
input is pixel / 16. Labels are bytes b"0".."9".
"""
import math
from array import array
import binascii

from flhil.apps.common import Rng

LEVELS = "abcde"
SHIFT = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4}   # rate = 2 ** -SHIFT
INIT_STREAM = 0x4846   # "HF": the global model's initial weights
ORDER_STREAM = 0x4853  # sample order of a client's local epochs
LEVEL_STREAM = 0x484C  # the levels drawn in a dynamic round
INIT_SCALE = 0.125     # initial weights: gauss x 1/8 (dyadic, so exact on every port)
PIXEL = 0.0625         # an input is its 4-bit pixel x 1/16


def rate(level):
    return 1.0 / (1 << SHIFT[level])


def width(hidden, level):
    """Hidden units of a level: ceil(rate x hidden)."""
    s = SHIFT[level]
    return (hidden + (1 << s) - 1) >> s


def param_count(d, h, o):
    return h * d + h + o * h + o


def zeros(n):
    return array("f", bytes(4 * n))


def init_model(seed, d, hidden, o):
    """The global model before round 0: weights gauss x INIT_SCALE from Rng(seed, INIT_STREAM),
    W1 then W2 (in layout order), biases 0."""
    w = zeros(param_count(d, hidden, o))
    rng = Rng(seed, INIT_STREAM)
    for k in range(hidden * d):
        w[k] = rng.gauss() * INIT_SCALE
    base = hidden * d + hidden
    for k in range(o * hidden):
        w[base + k] = rng.gauss() * INIT_SCALE
    return w


def slice_model(w, d, hidden, o, h):
    """The sub-model of width h cut from a model of width `hidden`: a new array."""
    if h == hidden:
        return array("f", w)
    sub = zeros(param_count(d, h, o))
    n1 = h * d
    sub[0:n1] = w[0:n1]
    sub[n1:n1 + h] = w[hidden * d:hidden * d + h]
    src = hidden * d + hidden
    dst = n1 + h
    for k in range(o):
        sub[dst + k * h:dst + (k + 1) * h] = w[src + k * hidden:src + k * hidden + h]
    sub[dst + o * h:] = w[src + o * hidden:]
    return sub


class Overlap:
    """HeteroFL's aggregation: each parameter is the mean of the replies that hold it; a parameter
    no reply holds keeps the global model's value. Sums are kept in a model-sized array, counts
    per hidden unit (a unit's parameters are held by the same replies)."""

    def __init__(self, d, hidden, o):
        self.d, self.hidden, self.o = d, hidden, o
        self.sums = zeros(param_count(d, hidden, o))
        self.units = array("H", bytes(2 * hidden))
        self.replies = 0

    def add(self, sub, h):
        d, hidden, o, s = self.d, self.hidden, self.o, self.sums
        n1 = h * d
        for k in range(n1):
            s[k] += sub[k]
        for j in range(h):
            s[hidden * d + j] += sub[n1 + j]
            self.units[j] += 1
        src = n1 + h
        dst = hidden * d + hidden
        for k in range(o):
            a = src + k * h
            b = dst + k * hidden
            for j in range(h):
                s[b + j] += sub[a + j]
        for k in range(o):
            s[dst + o * hidden + k] += sub[src + o * h + k]
        self.replies += 1

    def result(self, w):
        """The aggregated model (a new array); w is the previous global model."""
        d, hidden, o, s, units = self.d, self.hidden, self.o, self.sums, self.units
        out = array("f", w)
        for j in range(hidden):
            c = units[j]
            if c:
                base = j * d
                for i in range(d):
                    out[base + i] = s[base + i] / c
                out[hidden * d + j] = s[hidden * d + j] / c
                base = hidden * d + hidden + j
                for k in range(o):
                    out[base + k * hidden] = s[base + k * hidden] / c
        if self.replies:
            base = hidden * d + hidden + o * hidden
            for k in range(o):
                out[base + k] = s[base + k] / self.replies
        return out


def encode(w):
    """A model as base64 text of its float32 bytes (a third of JSON's size), copied as few times
    as a board's heap allows."""
    return binascii.b2a_base64(w, newline=False).decode()


def decode(text):
    """A model from its base64 text, decoded a slice at a time into one array (a board's heap
    then never holds the decoded bytes and the array at once)."""
    n = (len(text) // 4) * 3
    if text.endswith("=="):
        n -= 2
    elif text.endswith("="):
        n -= 1
    w = zeros(n // 4)
    step = 1024  # characters of text per slice: 768 bytes, 192 floats
    k = 0
    for a in range(0, len(text), step):
        part = array("f", binascii.a2b_base64(text[a:a + step]))
        w[k:k + len(part)] = part
        k += len(part)
    return w


def pixels(packed, k, d, out):
    """Sample k's inputs into the list `out` (length d); returns the indices of nonzero inputs."""
    nz = []
    base = k * d // 2
    for i in range(0, d, 2):
        b = packed[base + i // 2]
        hi = b >> 4
        lo = b & 15
        out[i] = hi * PIXEL
        out[i + 1] = lo * PIXEL
        if hi:
            nz.append(i)
        if lo:
            nz.append(i + 1)
    return nz


def sample_order(seed, node, rnd, epoch, n):
    """Fisher-Yates order of n samples for one local epoch, from Rng(seed, ORDER_STREAM, node,
    round, epoch); the numpy reference uses this same function."""
    order = list(range(n))
    rng = Rng(seed, ORDER_STREAM, node, rnd, epoch)
    for k in range(n - 1, 0, -1):
        j = rng.below(k + 1)
        order[k], order[j] = order[j], order[k]
    return order


def train(w, d, h, o, scale, packed, labels, lr, epochs, seed, node, rnd):
    """Local training in place: `epochs` passes of per-sample SGD on the softmax cross-entropy,
    hidden activations x `scale` (1/rate). Returns the mean training loss of the last epoch."""
    n = len(labels)
    x = [0.0] * d
    hid = [0.0] * h
    delta = [0.0] * h
    logit = [0.0] * o
    grad = [0.0] * o
    b1 = h * d
    w2 = b1 + h
    b2 = w2 + o * h
    loss = 0.0
    for epoch in range(epochs):
        loss = 0.0
        for k in sample_order(seed, node, rnd, epoch, n):
            nz = pixels(packed, k, d, x)
            y = labels[k] - 48
            # forward
            for j in range(h):
                s = w[b1 + j]
                base = j * d
                for i in nz:
                    s += w[base + i] * x[i]
                hid[j] = s * scale if s > 0.0 else 0.0
            top = -1e30
            for c in range(o):
                s = w[b2 + c]
                base = w2 + c * h
                for j in range(h):
                    s += w[base + j] * hid[j]
                logit[c] = s
                if s > top:
                    top = s
            total = 0.0
            for c in range(o):
                e = math.exp(logit[c] - top)
                grad[c] = e
                total += e
            for c in range(o):
                grad[c] /= total
            loss -= math.log(max(grad[y], 1e-30))
            grad[y] -= 1.0
            # backward: hidden deltas with the output weights before their update
            for j in range(h):
                s = 0.0
                if hid[j] > 0.0:
                    for c in range(o):
                        s += w[w2 + c * h + j] * grad[c]
                delta[j] = s * scale
            for c in range(o):
                g = lr * grad[c]
                base = w2 + c * h
                for j in range(h):
                    if hid[j] > 0.0:
                        w[base + j] -= g * hid[j]
                w[b2 + c] -= g
            for j in range(h):
                if delta[j] != 0.0:
                    g = lr * delta[j]
                    base = j * d
                    for i in nz:
                        w[base + i] -= g * x[i]
                    w[b1 + j] -= g
        if n:
            loss /= n
    return loss
