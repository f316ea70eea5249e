"""HeteroFL on the host: a numpy model of the node's MLP (flhil.mlp), the evaluation of the global
model and of each level's sub-model on the held-out digits test set, and the reference of one
HeteroFL round (slicing, local SGD, overlap aggregation) that a run's rounds must equal.

The reference keeps the parameters in float32 between steps, as the node's `array('f')` does, and
computes in float64 like CPython (and MicroPython's unix port); the sums run in a different order
(numpy's), so a node's model agrees to rounding, within ATOL."""
from __future__ import annotations

import numpy as np

from flhil import mlp
from flhil.harness.data import digits

ATOL = 1e-4  # largest parameter difference to the reference after a round


class Shape:
    """Dimensions of a HeteroFL model: d inputs, `hidden` units at level a, o outputs."""

    def __init__(self, hidden, d=digits.FEATURES, o=digits.CLASSES):
        self.d, self.hidden, self.o = d, hidden, o

    def width(self, level):
        return mlp.width(self.hidden, level)

    def params(self, level="a"):
        return mlp.param_count(self.d, self.width(level), self.o)

    def parts(self, w, h):
        """(W1 (h, d), b1, W2 (o, h), b2) views of a flat model of width h."""
        d, o = self.d, self.o
        w = np.asarray(w)
        n1 = h * d
        return (w[:n1].reshape(h, d), w[n1:n1 + h], w[n1 + h:n1 + h + o * h].reshape(o, h),
                w[n1 + h + o * h:n1 + h + o * h + o])

    def flat(self, parts):
        return np.concatenate([np.ravel(p) for p in parts]).astype(np.float32)

    def sub(self, w, level):
        """The index-prefix sub-model of a level, flat (what the server sends)."""
        h = self.width(level)
        w1, b1, w2, b2 = self.parts(w, self.hidden)
        return self.flat((w1[:h], b1[:h], w2[:, :h], b2))


def decode(text):
    return np.frombuffer(__import__("binascii").a2b_base64(text), dtype=np.float32).copy()


def logits(shape, w, h, x, scale=1.0):
    w1, b1, w2, b2 = (p.astype(np.float64) for p in shape.parts(w, h))
    hid = np.maximum(x @ w1.T + b1, 0.0) * scale
    return hid @ w2.T + b2


def accuracy(shape, w, x, y, level="a"):
    """Test accuracy of a global model's level sub-model (the scaler 1/rate applied, as in
    training; level a is the global model itself)."""
    sub = shape.sub(w, level)
    pred = np.argmax(logits(shape, sub, shape.width(level), x, 1.0 / mlp.rate(level)), axis=1)
    return float(np.mean(pred == y)) if len(y) else 0.0


def local_train(shape, sub, level, x, y, lr, epochs, seed, node, rnd):
    """A client's local training from its sub-model: per-sample SGD in mlp.sample_order,
    parameters rounded to float32 after every step. Returns the trained flat sub-model."""
    h = shape.width(level)
    scale = 1.0 / mlp.rate(level)
    w1, b1, w2, b2 = (p.astype(np.float32).copy() for p in shape.parts(sub, h))
    for epoch in range(epochs):
        for k in mlp.sample_order(seed, node, rnd, epoch, len(y)):
            xk = x[k]
            z = w1.astype(np.float64) @ xk + b1
            hid = np.where(z > 0.0, z * scale, 0.0)
            out = w2.astype(np.float64) @ hid + b2
            p = np.exp(out - out.max())
            g = p / p.sum()
            g[y[k]] -= 1.0
            delta = np.where(hid > 0.0, (w2.astype(np.float64).T @ g) * scale, 0.0)
            w2 = (w2 - np.outer(lr * g, hid)).astype(np.float32)
            b2 = (b2 - lr * g).astype(np.float32)
            w1 = (w1 - np.outer(lr * delta, xk)).astype(np.float32)
            b1 = (b1 - lr * delta).astype(np.float32)
    return shape.flat((w1, b1, w2, b2))


def aggregate(shape, w, replies):
    """Overlap aggregation of {level: [flat sub-models]} into the previous global model w: each
    parameter the mean over the replies that hold it, the others unchanged."""
    H = shape.hidden
    prev = shape.parts(np.asarray(w, dtype=np.float64), H)
    sums = [np.zeros_like(p) for p in prev]
    units = np.zeros(H)
    total = 0
    for level, subs in replies.items():
        h = shape.width(level)
        for sub in subs:
            w1, b1, w2, b2 = (p.astype(np.float64) for p in shape.parts(sub, h))
            sums[0][:h] += w1
            sums[1][:h] += b1
            sums[2][:, :h] += w2
            sums[3] += b2
            units[:h] += 1
            total += 1
    held = units > 0
    out = [p.copy() for p in prev]
    out[0][held] = sums[0][held] / units[held, None]
    out[1][held] = sums[1][held] / units[held]
    out[2][:, held] = sums[2][:, held] / units[held]
    if total:
        out[3] = sums[3] / total
    return shape.flat(out)


def reference_round(shape, w, levels, shards, lr, epochs, seed, rnd):
    """One HeteroFL round from global model w: client c (levels {c: level}, shards {c: (x, y)})
    trains the slice of its level; the server aggregates by overlap. The new global model."""
    replies = {}
    for c in sorted(levels):
        x, y = shards[c]
        trained = local_train(shape, shape.sub(w, levels[c]), levels[c], x, y, lr, epochs, seed, c, rnd)
        replies.setdefault(levels[c], []).append(trained)
    return aggregate(shape, w, replies)


def initial_model(shape, seed):
    return np.asarray(mlp.init_model(seed, shape.d, shape.hidden, shape.o), dtype=np.float32)
