"""scikit-learn's 8x8 digits (1,797 samples, 10 classes) as federated client shards: loaded on the
host only (the package ships the data; nothing is downloaded or cached in the repository), split
per seed into a held-out test set and IID or label-skewed client shards.

Pixels (0..16) are quantised to 4 bits, q = (16 p + 8) // 17 in 0..15 (an input is q / 16 on the
node), and packed two per byte: 32 bytes per sample, base64 in the run config (44 characters per
sample with the padding of a shard). Labels are a string of digits, one per sample. That is what
a node's run config carries (flhil.mlp reads it)."""
import base64
from functools import lru_cache

import numpy as np

FEATURES = 64
CLASSES = 10
TEST_FRACTION = 0.25


@lru_cache(maxsize=1)
def _load():
    """The data set as scikit-learn ships it (datasets/data/digits.csv.gz: 64 pixels and the
    label per row), read without importing scikit-learn itself (seconds of imports); its
    load_digits() where the file is not found."""
    import importlib.util
    import os
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.origin:
        raise RuntimeError("the digits data set needs scikit-learn on the host: pip install scikit-learn")
    path = os.path.join(os.path.dirname(found.origin), "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        rows = np.loadtxt(path, delimiter=",", dtype=np.int64)
        x, y = rows[:, :FEATURES], rows[:, FEATURES]
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = d.data.astype(np.int64), d.target.astype(np.int64)
    q = (16 * x + 8) // 17
    return q.astype(np.uint8), y


def quantised():
    """(pixels (1797, 64) uint8 in 0..15, labels (1797,) int) of the whole set."""
    x, y = _load()
    return x.copy(), y.copy()


@lru_cache(maxsize=32)
def _split(seed, clients, iid, classes, samples):
    x, y = _load()
    rng = np.random.default_rng([0x4446, seed])  # "DF": digits shards, per run seed
    perm = rng.permutation(len(y))
    n_test = int(round(TEST_FRACTION * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    if iid:
        shards = [train[c::clients] for c in range(clients)]
    else:
        # label skew: client c holds `classes` labels, taken in turn from a seeded label order;
        # each label's samples are dealt among the clients that hold it
        order = rng.permutation(CLASSES)
        held = [[int(order[(c * classes + t) % CLASSES]) for t in range(classes)] for c in range(clients)]
        holders = {label: [c for c in range(clients) if label in held[c]] for label in range(CLASSES)}
        parts = [[] for _ in range(clients)]
        for label, who in holders.items():
            if not who:
                continue
            idx = train[y[train] == label]
            for k, c in enumerate(who):
                parts[c].append(idx[k::len(who)])
        shards = [rng.permutation(np.concatenate(p)) if p else np.zeros(0, dtype=np.int64) for p in parts]
    if samples is not None:
        shards = [s[:samples] for s in shards]
    return test, tuple(shards)


def split(seed, clients, iid=True, classes=2, samples=None):
    """(test indices, [indices of client 0, 1, ...]) of the quantised set: a quarter held out
    for the test set, the rest dealt round-robin (IID) or by label (non-IID, `classes` labels per
    client); `samples` caps a shard."""
    test, shards = _split(int(seed), int(clients), bool(iid), int(classes), samples)
    return test.copy(), [s.copy() for s in shards]


def test_set(seed, clients, iid=True, classes=2, samples=None):
    """(inputs (n, 64) float in [0, 1), labels) of the held-out test set, as the nodes scale them."""
    x, y = _load()
    test, _ = _split(int(seed), int(clients), bool(iid), int(classes), samples)
    return x[test].astype(np.float64) / 16.0, y[test].copy()


def pack(indices):
    """{"x": base64 packed pixels, "y": label digits} of some samples: what a node's run config
    carries."""
    x, y = _load()
    rows = x[np.asarray(indices, dtype=np.int64)]
    packed = (rows[:, 0::2] << 4) | rows[:, 1::2]
    return {"x": base64.b64encode(packed.astype(np.uint8).tobytes()).decode(),
            "y": "".join(str(int(v)) for v in y[indices])}


def unpack(shard):
    """(inputs (n, 64) float, labels) of a packed shard: the node's view, for the host reference."""
    raw = np.frombuffer(base64.b64decode(shard["x"]), dtype=np.uint8).reshape(-1, FEATURES // 2)
    q = np.empty((raw.shape[0], FEATURES), dtype=np.uint8)
    q[:, 0::2] = raw >> 4
    q[:, 1::2] = raw & 15
    return q.astype(np.float64) / 16.0, np.array([int(c) for c in shard["y"]], dtype=np.int64)
