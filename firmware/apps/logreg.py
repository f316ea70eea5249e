"""Federated logistic regression (upstream example 4 style) with FedAvg over fl_centralized.

The server holds the global model [w, b] (from [0, 0]) and broadcasts it; client i trains it for
`epochs` full-batch gradient steps with learning rate `lr` on its own seeded one-feature data
(`common.logreg_data(i, seed, common.logreg_sample_count(i, samples))`) and replies
[w, b, n_samples]; the server takes the sample-weighted mean of the replies. Round telemetry
(`round_end.v`) carries the server's test accuracy and a client's training loss.
Args (defaults in common.LOGREG_DEFAULTS): iterations, epochs, lr, samples, test_samples.
Result: server {"w": [w, b], "acc": test accuracy}; client its last reply [w, b, n]."""
import math

from flhil.apps import common

ARGS = common.LOGREG_DEFAULTS  # the arguments this app takes, with their defaults
METRIC = "server: test accuracy, clients: training loss"  # what round_end.v is


def log_loss(w, xs, ys):
    """Mean log loss of model w on (xs, ys)."""
    if not xs:
        return 0.0
    total = 0.0
    for k in range(len(xs)):
        p = common.sigmoid(w[0] * xs[k] + w[1])
        p = min(max(p, 1e-7), 1.0 - 1e-7)
        total -= math.log(p) if ys[k] else math.log(1.0 - p)
    return total / len(xs)


async def run(node, args):
    d = common.LOGREG_DEFAULTS
    iterations = args.get("iterations", d["iterations"])
    epochs = args.get("epochs", d["epochs"])
    lr = args.get("lr", d["lr"])
    samples = args.get("samples", d["samples"])
    seed = node.seed
    if node.id == node.server:
        test_x, test_y = common.logreg_test_data(seed, args.get("test_samples", d["test_samples"]))
        last = [[0.0, 0.0]]

        def server_cb(priv, msgs):
            w = common.fedavg(msgs)
            if w is None:  # no samples at all: keep the model
                return last[0]
            last[0] = w
            return w

        node.metric = lambda w: common.logreg_accuracy(w, test_x, test_y)
        w = await node.fl_centralized(server_cb, None, [0.0, 0.0], None, iterations)
        if w is None:
            return None
        return {"w": w, "acc": common.logreg_accuracy(w, test_x, test_y)}

    xs, ys = common.logreg_data(node.id, seed, common.logreg_sample_count(node.id, samples))

    def client_cb(local, priv, msg):
        return common.logreg_client_update(msg, xs, ys, epochs, lr)

    node.metric = lambda r: log_loss(r, xs, ys)
    return await node.fl_centralized(None, client_cb, [0.0, 0.0, len(xs)], None, iterations)
