"""Reference implementations: what the fault-free upstream algorithms compute, in plain floats.

Each `*_rounds` function returns one list per round/slot holding every node's value after it;
`oracle_for` picks the right one for a run. Arithmetic follows the callbacks' own order
(sum of messages, then divide) so dyadic results come out bit-exact; other results agree to
rounding only (see analysis.values_match for the tolerances). Also the consensus theory used to
bound how many rounds averaging needs.
"""
from __future__ import annotations

import math

from flhil.apps import common
from flhil.apps.common import odts_schedule  # re-exported: the flhil uses the same one

__all__ = [
    "initial_values", "centralized_rounds", "centralized_final", "decentralized_rounds",
    "decentralized_final", "odts_schedule", "odts_rounds", "odts_final", "getmeas_expected",
    "logreg_fedavg", "consensus_rate", "rounds_to_eps",
    "oracle_for",
]


def initial_values(n):
    """The upstream examples' local data: x_i = i + 1."""
    return [1.0 + i for i in range(n)]


def _mean(values):
    return sum(values) / len(values)


# ------------------------------------------------------------------ ex2: centralized averaging

def centralized_rounds(n, iterations, server=0, x0=None):
    """fl_centralized with client cb (local + msg)/2 and server cb mean(msgs)."""
    x = list(x0) if x0 is not None else initial_values(n)
    out = []
    for _ in range(iterations):
        sent = x[server]
        for i in range(n):
            if i != server:
                x[i] = (x[i] + sent) / 2.0
        x[server] = _mean([x[i] for i in range(n) if i != server])
        out.append(list(x))
    return out


def centralized_final(n, iterations, server=0, x0=None):
    return centralized_rounds(n, iterations, server, x0)[-1]


# ------------------------------------------------------------------ ex3: decentralized averaging

def decentralized_rounds(n, iterations, x0=None):
    """fl_decentralized on a complete graph: node i's phase-2 payloads are (x_i + x_j)/2 for
    every j != i; server cb averages them, giving x_i/2 + (S - x_i)/(2(n-1))."""
    x = list(x0) if x0 is not None else initial_values(n)
    out = []
    for _ in range(iterations):
        x = [_mean([(x[i] + x[j]) / 2.0 for j in range(n) if j != i]) for i in range(n)]
        out.append(list(x))
    return out


def decentralized_final(n, iterations, x0=None):
    return decentralized_rounds(n, iterations, x0)[-1]


# ------------------------------------------------------------------ ex6: ODTS mock-up (TDM)

def odts_rounds(n, blocks, slots):
    """Per global slot (blocks x slots of them) every node's state. odata_i = i + 1 is constant;
    a node with no peer in a slot keeps its state. State is not reset between blocks."""
    odata = initial_values(n)
    state = list(odata)
    out = []
    for _ in range(blocks):
        for s in range(slots):
            pairs = odts_schedule(n, s)
            state = [state[i] if pairs.get(i) is None else common.odts_update(state[i], odata[pairs[i]])
                     for i in range(n)]
            out.append(list(state))
    return out


def odts_final(n, blocks, slots):
    return odts_rounds(n, blocks, slots)[-1]


# ------------------------------------------------------------------ ex8: getMeas

def getmeas_expected(node, peers):
    """getMeas(peers, 1.0 + node) returns the peers' odata in the order asked."""
    return [1.0 + p for p in peers]


# ------------------------------------------------------------------ ex4: federated logistic regression

def logreg_fedavg(n, seed, iterations=None, epochs=None, lr=None, samples=None,
                  test_samples=None, server=0):
    """FedAvg over fl_centralized: the server broadcasts [w, b]; client i trains from it on
    logreg_data(i, seed, logreg_sample_count(i, samples)) and replies [w, b, count]; the server
    takes the count-weighted mean. The server holds no training data.

    Returns {"rounds": per-round node models, "final": the nodes' results as the logreg app
    returns them (server {"w": [w, b], "acc": test accuracy}, client [w, b, count]),
    "accuracy": per-round test accuracy of the server's model}. Defaults come from
    common.LOGREG_DEFAULTS, which the firmware app uses too.
    """
    d = common.LOGREG_DEFAULTS
    iterations = d["iterations"] if iterations is None else iterations
    epochs = d["epochs"] if epochs is None else epochs
    lr = d["lr"] if lr is None else lr
    samples = d["samples"] if samples is None else samples
    test_samples = d["test_samples"] if test_samples is None else test_samples

    data = {i: common.logreg_data(i, seed, common.logreg_sample_count(i, samples))
            for i in range(n) if i != server}
    test_x, test_y = common.logreg_test_data(seed, test_samples)
    values = [None] * n
    values[server] = [0.0, 0.0]
    rounds, accuracy = [], []
    for _ in range(iterations):
        model = values[server]
        for i, (xs, ys) in data.items():
            values[i] = common.logreg_client_update(model, xs, ys, epochs, lr)
        values[server] = common.fedavg([values[i] for i in range(n) if i != server])
        rounds.append([list(v) for v in values])
        accuracy.append(common.logreg_accuracy(values[server], test_x, test_y))
    final = [list(v) if v is not None else None for v in values]
    final[server] = {"w": list(values[server]),
                     "acc": common.logreg_accuracy(values[server], test_x, test_y)}
    return {"rounds": rounds, "final": final, "accuracy": accuracy}


# ------------------------------------------------------------------ consensus theory

def consensus_rate(algorithm, n):
    """Per-round contraction factor lambda of the fault-free averaging.

    x(t+1) = W x(t) with W doubly stochastic shrinks the deviation from consensus by
    lambda = max(|lambda_2|, |lambda_n|). Decentralized ex3: W = rho-mixing with
    rho = (n-2)/(2(n-1)) (every non-principal eigenvalue equals rho). Centralized ex2: after the
    first round the server is frozen and each client's distance to it halves: lambda = 1/2.
    """
    if algorithm == "decentralized":
        return (n - 2) / (2.0 * (n - 1))
    if algorithm == "centralized":
        return 0.5
    raise ValueError("no consensus theory for algorithm %r" % algorithm)


def rounds_to_eps(algorithm, n, eps):
    """Rounds until the spread of the node values is at most eps times the initial spread.

    Decentralized: ceil(ln(1/eps) / ln(1/rho)) (1 for n = 2, where rho = 0: exact after one
    iteration). Centralized: one round to freeze the server, then the clients' distance halves:
    c^k - s = (c^1 - s) / 2^(k-1), so 1 + ceil(log2(1/eps)).
    """
    if not 0 < eps < 1:
        raise ValueError("eps must be in (0, 1)")
    lam = consensus_rate(algorithm, n)
    if lam == 0.0:
        return 1
    k = math.ceil(math.log(1.0 / eps) / math.log(1.0 / lam) - 1e-12)
    return k + 1 if algorithm == "centralized" else k


# ------------------------------------------------------------------ dispatch

def oracle_for(algorithm, n, args=None, seed=None, server=0):
    """{"final": value per node, "rounds": per-round lists or None} for a fault-free run.

    Args used (as in the scenario's [args]): iterations (centralized, decentralized, logreg),
    blocks and slots (tdm; default 1 and 1), peers (getmeas: {node: [ids]}), epochs, lr,
    samples, test_samples (logreg).
    """
    args = dict(args or {})
    if algorithm == "centralized":
        rounds = centralized_rounds(n, int(args.get("iterations", 1)), server)
        return {"final": rounds[-1], "rounds": rounds}
    if algorithm == "decentralized":
        rounds = decentralized_rounds(n, int(args.get("iterations", 1)))
        return {"final": rounds[-1], "rounds": rounds}
    if algorithm == "tdm":
        rounds = odts_rounds(n, int(args.get("blocks", 1)), int(args.get("slots", 1)))
        return {"final": rounds[-1], "rounds": rounds}
    if algorithm == "getmeas":
        # the app's own topology function decides the peers: one implementation for both sides
        from flhil.apps.getmeas import neighbours
        topology, slots = args.get("topology", "complete"), int(args.get("slots", 1))
        final = []
        for i in range(n):
            peers = neighbours(topology, n, i)
            final.append({"peers": peers, "slots": [getmeas_expected(i, peers)] * slots})
        return {"final": final, "rounds": None}
    if algorithm == "fedmean":
        from flhil.apps import fedmean
        kw = dict((k, args[k]) for k in ("iterations", "threshold", "samples") if k in args)
        return {"final": fedmean.oracle(n, seed if seed is not None else 1, server=server, **kw),
                "rounds": None}
    if algorithm == "logreg":
        run = logreg_fedavg(n, seed if seed is not None else 1,
                            iterations=args.get("iterations"), epochs=args.get("epochs"),
                            lr=args.get("lr"), samples=args.get("samples"),
                            test_samples=args.get("test_samples"), server=server)
        return {"final": run["final"], "rounds": run["rounds"], "accuracy": run["accuracy"]}
    raise ValueError("no oracle for algorithm %r" % algorithm)
