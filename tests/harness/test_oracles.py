"""Reference implementations against the upstream examples' values (shared/reference/mpt-fla.md)
and the consensus theory; the shared firmware helpers against their portability promises."""
import ast
import json
import os
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from flhil.harness import micropython_path

from flhil.apps import common
from flhil.harness.results import oracles

COMMON_PY = Path(common.__file__)


# ------------------------------------------------------------------ ex2 centralized averaging

def test_centralized_upstream_values():
    assert oracles.centralized_final(3, 1) == [1.75, 1.5, 2.0]
    assert oracles.centralized_final(3, 10) == [1.75, 1.74951171875, 1.75048828125]


@pytest.mark.parametrize("n", [2, 3, 4, 6, 10, 18])
@pytest.mark.parametrize("iterations", [1, 2, 5, 10])
def test_centralized_closed_form(n, iterations):
    x = oracles.initial_values(n)
    s = (x[0] + sum(x[1:]) / (n - 1)) / 2  # server freezes after round 1
    got = oracles.centralized_final(n, iterations)
    assert got[0] == pytest.approx(s, rel=1e-12)
    for i in range(1, n):
        c1 = (x[i] + x[0]) / 2
        assert got[i] == pytest.approx(s + (c1 - s) / 2 ** (iterations - 1), rel=1e-12)


def test_centralized_18_nodes_server_value():
    assert oracles.centralized_final(18, 1)[0] == 5.5
    assert oracles.centralized_final(18, 10)[0] == 5.5


def test_centralized_other_server():
    # server 2 of 3: clients average with 3.0, the server takes their mean
    assert oracles.centralized_final(3, 1, server=2) == [2.0, 2.5, 2.25]


def test_centralized_rounds_has_every_round():
    rounds = oracles.centralized_rounds(3, 10)
    assert len(rounds) == 10 and rounds[0] == [1.75, 1.5, 2.0] and rounds[-1][1] == 1.74951171875


# ------------------------------------------------------------------ ex3 decentralized averaging

def test_decentralized_upstream_values():
    assert oracles.decentralized_final(3, 1) == [1.75, 2.0, 2.25]
    assert oracles.decentralized_final(3, 3) == [1.984375, 2.0, 2.015625]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 10])
def test_decentralized_formula_and_mass(n):
    x = oracles.initial_values(n)
    S = sum(x)
    rho = (n - 2) / (2 * (n - 1))
    mean = S / n
    for k, row in enumerate(oracles.decentralized_rounds(n, 6), start=1):
        x = [xi / 2 + (S - xi) / (2 * (n - 1)) for xi in x]
        assert row == pytest.approx(x, rel=1e-12)
        assert sum(row) / n == pytest.approx(mean, rel=1e-12)  # mass conserved
        for i in range(n):  # deviation shrinks by exactly rho per iteration
            assert row[i] - mean == pytest.approx((i + 1 - mean) * rho ** k, abs=1e-12)


# ------------------------------------------------------------------ ex6 ODTS on get1Meas

@pytest.mark.parametrize("n, blocks, slots, expected", [
    (2, 1, 1, [1.5, 1.5]),
    (4, 1, 3, [3.125, 2.375, 2.625, 1.875]),
    (10, 1, 3, [6.875, 2.375, 2.625, 4.375, 4.625, 6.375, 6.625, 8.375, 8.625, 4.125]),
])
def test_odts_upstream_values(n, blocks, slots, expected):
    assert oracles.odts_final(n, blocks, slots) == expected


def test_odts_schedule_is_rotate_then_pair():
    assert oracles.odts_schedule(4, 0) == {1: 2, 2: 1, 3: 0, 0: 3}
    assert oracles.odts_schedule(4, 1) == {2: 3, 3: 2, 0: 1, 1: 0}
    assert oracles.odts_schedule(2, 0) == {1: 0, 0: 1}


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 10, 11])
@pytest.mark.parametrize("slot", range(5))
def test_odts_schedule_is_a_symmetric_matching(n, slot):
    pairs = oracles.odts_schedule(n, slot)
    assert sorted(pairs) == list(range(n))
    for a, b in pairs.items():
        if b is not None:
            assert b != a and pairs[b] == a
    assert sum(1 for b in pairs.values() if b is None) == n % 2


def test_odts_blocks_repeat_schedule_and_keep_state():
    # 2 blocks of 3 slots = 6 slots of the 3-slot schedule, state carried over
    rows = oracles.odts_rounds(4, 2, 3)
    assert len(rows) == 6 and rows[2] == [3.125, 2.375, 2.625, 1.875]
    state, odata = rows[2], oracles.initial_values(4)
    for s in range(3):
        pairs = oracles.odts_schedule(4, s)
        state = [(state[i] + odata[pairs[i]]) / 2 for i in range(4)]
    assert rows[-1] == state


# ------------------------------------------------------------------ ex8 getMeas, ex1 fedmean

def test_getmeas():
    assert oracles.getmeas_expected(2, [0, 3, 1]) == [1.0, 4.0, 2.0]
    final = oracles.oracle_for("getmeas", 4, {"topology": "ring", "slots": 2})["final"]
    assert final[0] == {"peers": [1, 3], "slots": [[2.0, 4.0], [2.0, 4.0]]}
    star = oracles.oracle_for("getmeas", 3, {"topology": "star"})["final"]
    assert star[0]["slots"] == [[2.0, 3.0]] and star[2] == {"peers": [0], "slots": [[1.0]]}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_fedmean_threshold_is_the_mean_of_the_samples_above_it(n):
    """The server's final threshold is the global mean of the clients' samples above the
    previous threshold: recompute it from the raw readings."""
    from flhil.apps import fedmean
    final = oracles.oracle_for("fedmean", n, {"iterations": 2}, seed=3)["final"]
    data = [fedmean.readings(i, 3, 8) for i in range(1, n)]
    t = 0.0
    for _ in range(2):
        above = [x for xs in data for x in xs if x > t]
        t = sum(above) / len(above) if above else t
    assert final[0] == pytest.approx(t, rel=1e-12)


# ------------------------------------------------------------------ theory

@pytest.mark.parametrize("n", [3, 4, 6, 10, 18])
@pytest.mark.parametrize("eps", [1e-2, 1e-3, 1e-6])
def test_rounds_to_eps_decentralized_is_tight(n, eps):
    k = oracles.rounds_to_eps("decentralized", n, eps)
    rho = (n - 2) / (2 * (n - 1))
    assert k == math.ceil(math.log(1 / eps) / math.log(1 / rho) - 1e-12)

    def spread(rows):
        return max(rows) - min(rows)

    rows = oracles.decentralized_rounds(n, k)
    assert spread(rows[-1]) <= eps * (n - 1) * (1 + 1e-9)
    if k > 1:
        assert spread(rows[-2]) > eps * (n - 1)


@pytest.mark.parametrize("n", [2, 3, 4, 10, 18])
@pytest.mark.parametrize("eps", [1e-2, 1e-3])
def test_rounds_to_eps_centralized_reaches_eps(n, eps):
    k = oracles.rounds_to_eps("centralized", n, eps)
    assert k == 1 + math.ceil(math.log2(1 / eps))
    final = oracles.centralized_final(n, k)
    assert max(final) - min(final) <= eps * (n - 1)


def test_rounds_to_eps_edge_cases():
    assert oracles.rounds_to_eps("decentralized", 2, 1e-3) == 1  # rho = 0: exact in one step
    assert oracles.consensus_rate("centralized", 7) == 0.5
    with pytest.raises(ValueError):
        oracles.rounds_to_eps("tdm", 4, 1e-3)
    with pytest.raises(ValueError):
        oracles.rounds_to_eps("centralized", 4, 2.0)


# ------------------------------------------------------------------ PRNG and logreg data

def test_xorshift32_known_sequence():
    # Marsaglia's xorshift32 (13, 17, 5) from state 1
    x, seq = 1, []
    for _ in range(3):
        x = common.xorshift32(x)
        seq.append(x)
    assert seq == [270369, 67634689, 2647435461]


def test_rng_is_deterministic_and_seeded():
    a, b, c = common.Rng(7, 1), common.Rng(7, 1), common.Rng(7, 2)
    sa = [a.u32() for _ in range(10)]
    assert sa == [b.u32() for _ in range(10)]
    assert sa != [c.u32() for _ in range(10)]
    assert all(0 < v <= 0xFFFFFFFF for v in sa)


def test_gauss_is_roughly_standard_and_dyadic():
    rng = common.Rng(3)
    g = [rng.gauss() for _ in range(20000)]
    mean = sum(g) / len(g)
    var = sum((v - mean) ** 2 for v in g) / len(g)
    assert abs(mean) < 0.03 and abs(var - 1) < 0.05
    assert all((v * 65536).is_integer() and -6 <= v < 6 for v in g)


def test_logreg_data_shape_and_determinism():
    xs, ys = common.logreg_data(3, 11, 50)
    assert len(xs) == len(ys) == 50 and set(ys) <= {0, 1}
    assert (xs, ys) == common.logreg_data(3, 11, 50)
    assert xs != common.logreg_data(4, 11, 50)[0] and xs != common.logreg_data(3, 12, 50)[0]
    # features lie on the class side of 0 most of the time
    agree = sum(1 for x, y in zip(xs, ys) if (x > 0) == (y == 1))
    assert agree >= 40


def test_fedavg_is_count_weighted():
    assert common.fedavg([[1.0, 2.0, 3], [5.0, -2.0, 1]]) == [2.0, 1.0]
    assert common.fedavg([]) is None


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_logreg_fedavg_reaches_accuracy(n, seed):
    run = oracles.logreg_fedavg(n, seed)
    assert run["accuracy"][-1] >= 0.9
    server = run["final"][0]
    clients = run["final"][1:]
    counts = [c[2] for c in clients]
    assert server["w"] == common.fedavg(clients) == run["rounds"][-1][0]
    assert server["acc"] == run["accuracy"][-1]
    assert counts == [common.logreg_sample_count(i, 40) for i in range(1, n)]


def test_oracle_for_dispatch():
    assert oracles.oracle_for("centralized", 3, {"iterations": 1})["final"] == [1.75, 1.5, 2.0]
    assert oracles.oracle_for("decentralized", 3, {"iterations": 3})["final"][0] == 1.984375
    assert oracles.oracle_for("tdm", 4, {"blocks": 1, "slots": 3})["final"] == [3.125, 2.375, 2.625, 1.875]
    assert oracles.oracle_for("logreg", 3, {"iterations": 2}, seed=5)["final"] \
        == oracles.logreg_fedavg(3, 5, iterations=2)["final"]
    with pytest.raises(ValueError):
        oracles.oracle_for("nope", 3)


# ------------------------------------------------------------------ firmware portability

def test_common_imports_only_what_micropython_has():
    """math and the firmware's own modules; nothing from the host, no annotations."""
    tree = ast.parse(COMMON_PY.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        assert not isinstance(node, (ast.AnnAssign,)), "no annotations in firmware"
        if isinstance(node, ast.FunctionDef):
            assert not node.decorator_list and node.returns is None
    assert all(m == "math" or m.startswith("flhil.") for m in imported), imported


@pytest.mark.skipif(shutil.which("micropython") is None, reason="micropython unix port absent")
def test_micropython_gives_identical_data_and_schedule():
    script = ("import json\nfrom flhil.apps import common\n"
              "xs, ys = common.logreg_data(2, 9, 20)\n"
              "r = common.Rng(5, 6)\n"
              "print(json.dumps([xs, ys, [r.u32() for _ in range(5)], r.gauss(),"
              " [[common.odts_schedule(10, s)[k] for k in range(10)] for s in range(3)]]))\n")
    out = subprocess.run(["micropython", "-c", script], capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, MICROPYPATH=micropython_path()))
    assert out.returncode == 0, out.stderr
    xs, ys = common.logreg_data(2, 9, 20)
    r = common.Rng(5, 6)
    expected = [xs, ys, [r.u32() for _ in range(5)], r.gauss(),
                [[common.odts_schedule(10, s)[k] for k in range(10)] for s in range(3)]]
    assert json.loads(out.stdout) == expected
