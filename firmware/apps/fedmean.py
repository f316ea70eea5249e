"""Federated mean with thresholds (upstream example 1 style) over fl_centralized.

Client i holds seeded private readings (`readings(i, seed, samples)`). The server broadcasts a
threshold (first `threshold`, default 0.0); each client replies [sum, count] of its readings
strictly above it; the server's next threshold is the global mean of those readings,
sum of sums / sum of counts (unchanged when no reading is above). Iterated `iterations` times
the threshold climbs towards the largest reading. `oracle()` computes the same on the host.
Args: iterations (default 3), threshold (0.0), samples (per node base count, default 8).
Result: server the final threshold; client its last reply [sum, count]."""
from flhil.apps.common import Rng

FEDMEAN_STREAM = 0x464D  # "FM"
BASE = 20.0              # readings are BASE + 2 * gauss, dyadic (exact on boards and PCs)
ARGS = {"iterations": 3, "threshold": 0.0, "samples": 8}  # the arguments, with their defaults
METRIC = "mean of readings above the threshold"  # what round_end.v is


def readings(node, seed, samples):
    """Node's private readings: samples + node % 3 of them."""
    rng = Rng(seed, FEDMEAN_STREAM, node)
    return [BASE + 2.0 * rng.gauss() for _ in range(samples + node % 3)]


def above(threshold, xs):
    s = 0.0
    c = 0
    for x in xs:
        if x > threshold:
            s += x
            c += 1
    return [s, c]


def combine(threshold, replies):
    total = 0.0
    count = 0
    for r in replies:
        total += r[0]
        count += r[1]
    return threshold if count == 0 else total / count


def oracle(n, seed, iterations=3, threshold=0.0, samples=8, server=0):
    """Fault-free final values of every node (server: threshold; clients: [sum, count])."""
    data = {}
    for i in range(n):
        if i != server:
            data[i] = readings(i, seed, samples)
    values = [None] * n
    t = threshold
    for _ in range(iterations):
        for i in data:
            values[i] = above(t, data[i])
        t = combine(t, [values[i] for i in range(n) if i != server])
    values[server] = t
    return values


async def run(node, args):
    iterations = args.get("iterations", ARGS["iterations"])
    t0 = float(args.get("threshold", ARGS["threshold"]))
    samples = args.get("samples", ARGS["samples"])
    if node.id == node.server:
        last = [t0]

        def server_cb(priv, msgs):
            last[0] = combine(last[0], msgs)
            return last[0]

        return await node.fl_centralized(server_cb, None, t0, None, iterations)
    xs = readings(node.id, node.seed, samples)

    def client_cb(local, priv, msg):
        return above(msg, priv)

    return await node.fl_centralized(None, client_cb, [0.0, 0], xs, iterations)
