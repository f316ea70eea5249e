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


# ------------------------------------------------------------------ a run's models, from its record

class RunView:
    """What the host knows of a HeteroFL run from its record: the model's shape, the run's
    [heterofl] settings, the clients' shards and the test set, and the server's `model` events
    (one per aggregated round: round, global model, levels, clients aggregated, slice bytes)."""

    def __init__(self, record):
        from flhil.harness.run import heterofl as setup
        spec = record.spec
        self.record = record
        self.shape = Shape(setup.hidden_of(record.args))
        self.table = setup.settings(spec.get("heterofl"))
        self.seed = record.seed if record.seed is not None else 1
        self.server = record.server
        packed, (self.test_x, self.test_y) = setup.shards(record.n_nodes, self.server, self.seed, self.table)
        self.packed = packed
        self.events = sorted(record.events(self.server, "model"), key=lambda e: e.get("i", -1))

    def shard(self, client):
        return digits.unpack(self.packed[client])

    def initial(self):
        return initial_model(self.shape, self.seed)

    def models(self):
        """[(round, flat global model)] after every aggregated round, round -1 the initial one."""
        return [(-1, self.initial())] + [(e["i"], decode(e["w"])) for e in self.events]

    def final(self):
        result = self.record.result(self.server)
        if isinstance(result, dict) and isinstance(result.get("w"), str):
            return decode(result["w"])
        return self.models()[-1][1]

    def levels_seen(self):
        """Levels any client trained in the run (from the model events), widest first."""
        seen = set()
        for e in self.events:
            seen.update((e.get("lv") or {}).values())
        return [lv for lv in mlp.LEVELS if lv in seen]

    def top_level(self):
        """The widest level trained: the model the federation trains (all-e trains an e-wide one)."""
        seen = self.levels_seen()
        return seen[0] if seen else "a"

    def accuracy(self, w, level):
        return accuracy(self.shape, w, self.test_x, self.test_y, level)

    def curves(self):
        """{level: [(round, accuracy)]} of every level seen, after every aggregated round."""
        return {lv: [(i, self.accuracy(w, lv)) for i, w in self.models()] for lv in self.levels_seen()}


def view(record):
    cached = getattr(record, "_heterofl_view", None)
    if cached is None:
        cached = RunView(record)
        record._heterofl_view = cached
    return cached


def global_accuracy(record):
    """Test accuracy of the final global model at the widest level trained (None without one)."""
    v = view(record)
    if not v.events and not isinstance(record.result(v.server), dict):
        return None
    return v.accuracy(v.final(), v.top_level())


def round_errors(record):
    """[(round, largest |runtime - reference|, clients)] of every aggregated round: the reference
    round from the model before it, with the levels and clients the server aggregated."""
    v = view(record)
    args = dict(record.args)
    from flhil.apps.heterofl import ARGS
    lr, epochs = float(args.get("lr", ARGS["lr"])), int(args.get("epochs", ARGS["epochs"]))
    out = []
    prev = v.initial()
    for e in v.events:
        got = list(e.get("got") or [])
        levels = {c: e["lv"][str(c)] for c in got}
        ref = reference_round(v.shape, prev, levels, {c: v.shard(c) for c in got}, lr, epochs, v.seed, e["i"])
        now = decode(e["w"])
        out.append((e["i"], float(np.max(np.abs(ref.astype(np.float64) - now))), got))
        prev = now
    return out


# ------------------------------------------------------------------ [expect] keys

from flhil.harness.config.model import ConfigModel, Float  # noqa: E402 - the [expect] half of the module
from flhil.harness.results.expectations import expectation  # noqa: E402
from flhil.harness.results.verdict import Finding  # noqa: E402


def check_rounds(record):
    """The exact oracle of HeteroFL: every aggregated round equals the numpy reference round from
    the model before it, within ATOL."""
    v = view(record)
    if not v.events:
        return [Finding("oracle", False, v.server, message="no model events at the server")]
    out = []
    for i, err, got in round_errors(record):
        out.append(Finding("oracle", err <= ATOL, v.server, i, "|w - reference| <= %g" % ATOL, "%.3g" % err,
                           "clients %s" % got))
    return out


def _level_field(level):
    return Float(0, 1, expected="an accuracy between 0 and 1",
                 description="lowest test accuracy of the level-%s sub-model (rate %g)" % (level, mlp.rate(level)))


LevelAccuracy = type("LevelAccuracy", (ConfigModel,), {
    "__annotations__": {lv: _level_field(lv) | None for lv in mlp.LEVELS},
    **{lv: None for lv in mlp.LEVELS}})


@expectation("level_accuracy", LevelAccuracy, "HeteroFL: each named level's sub-model of the final global "
             "model has at least this test accuracy")
def check_level_accuracy(record, **mins):
    """Each named level's sub-model (index prefix, scaler 1/rate) of the final global model has at
    least the given test accuracy on the held-out digits; the curve per round is in the message."""
    v = view(record)
    final = v.final()
    curves = v.curves()
    out = []
    for level, low in sorted(mins.items()):
        if low is None:
            continue
        acc = v.accuracy(final, level)
        curve = " ".join("%.3f" % a for _, a in curves.get(level, [])) or "level not trained"
        out.append(Finding("level_accuracy", acc >= low, v.server, None, "level %s >= %g" % (level, low),
                           round(acc, 4), "per round: %s" % curve))
    return out or [Finding("level_accuracy", False, message="no level named")]


def _heap_field(level):
    return Float(0, lo_open=True, description="most heap (KB) a board training level %s may use" % level)


LevelHeap = type("LevelHeap", (ConfigModel,), {
    "__annotations__": {lv: _heap_field(lv) | None for lv in mlp.LEVELS},
    **{lv: None for lv in mlp.LEVELS}})


@expectation("level_heap", LevelHeap, "HeteroFL: peak heap (KB) of the boards training each named level")
def check_level_heap(record, **limits):
    """Peak heap used (heap total - lowest free) of every node that reports heap figures, by the
    widest level it trained (from the server's model events), against that level's limit."""
    v = view(record)
    trained = {}
    for e in v.events:
        for c, level in (e.get("lv") or {}).items():
            best = trained.get(int(c))
            if best is None or mlp.SHIFT[level] < mlp.SHIFT[best]:
                trained[int(c)] = level
    out = []
    for node, level in sorted(trained.items()):
        limit = limits.get(level)
        stats = record.heap_peak(node)
        if limit is None or stats is None or stats.peak_used is None:
            continue
        used = stats.peak_used / 1024.0
        out.append(Finding("level_heap", used <= limit, node, None, "level %s: <= %g KB" % (level, limit),
                           "%.1f KB" % used, "lowest free %.1f KB of %.1f KB" % (stats.min_free / 1024.0,
                                                                              stats.total / 1024.0)))
    return out or [Finding("level_heap", True, message="no board trained a named level")]
