"""The model and data: softmax regression (64 pixels -> 10 digits) in NumPy, on scikit-learn's
digits, split into a held-out test set and one shard per partition."""
import numpy as np
from sklearn.datasets import load_digits

CLASSES = 10
FEATURES = 64
TEST_FRACTION = 0.25
SPLIT_SEED = 0


def _data():
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    return x[order], y[order]


def test_set():
    x, y = _data()
    n_test = int(len(y) * TEST_FRACTION)
    return x[:n_test], y[:n_test]


def partition(partition_id, num_partitions):
    """The training shard of one partition (an equal, disjoint slice)."""
    x, y = _data()
    n_test = int(len(y) * TEST_FRACTION)
    x, y = x[n_test:], y[n_test:]
    shards = np.array_split(np.arange(len(y)), num_partitions)
    idx = shards[partition_id]
    return x[idx], y[idx]


def initial_weights():
    return [np.zeros((FEATURES, CLASSES)), np.zeros(CLASSES)]


def _probabilities(weights, x):
    w, b = weights
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def loss_and_accuracy(weights, x, y):
    p = _probabilities(weights, x)
    loss = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
    acc = float((p.argmax(axis=1) == y).mean())
    return loss, acc


def train(weights, x, y, epochs, lr):
    """Full-batch gradient descent; returns the new weights and the training loss."""
    w, b = [a.copy() for a in weights]
    onehot = np.eye(CLASSES)[y]
    for _ in range(epochs):
        g = _probabilities([w, b], x) - onehot
        w -= lr * x.T @ g / len(y)
        b -= lr * g.mean(axis=0)
    loss, _ = loss_and_accuracy([w, b], x, y)
    return [w, b], loss
