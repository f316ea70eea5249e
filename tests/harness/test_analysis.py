"""Analysis checks on small hand-built run records: a passing run and runs that break each
expectation, with the failure messages' contents (node, round, expected, got, seed)."""
import pytest

from flhil.harness.results import checks as analysis
from flhil.harness.results import oracles
from flhil.harness.results.expectations import Evidence, evaluate
from flhil.harness.results.verdict import ExpectationFailed
from flhil.harness.results.record import RunRecord

SEED = 7


def node_events(n, rounds, result, round_ms=10.0, got=None, extra=(), t0=1_000_000):
    """Telemetry of one node: boot, per round start/end (1-based i), counts, result, done."""
    ev = [{"ev": "boot", "n": n, "t": t0, "impl": "cpython", "ver": "3.11", "heap": None}]
    t = t0
    for i, v in enumerate(rounds, start=1):
        ev.append({"ev": "round_start", "n": n, "t": t, "i": i})
        t += int(round_ms * 1000)
        ev.append({"ev": "round_end", "n": n, "t": t, "i": i, "got": got, "need": got,
                   "skipped": False, "v": v})
        t += 100
    ev.extend(extra)
    ev.append({"ev": "counts", "n": n, "t": t, "sent": 2, "recv": 2, "drop_fault": 0,
               "duplicate": 0, "stale": 0, "rejected": 0, "overflow": 0})
    if result is not None:
        ev.append({"ev": "result", "n": n, "t": t, "value": result, "status": "ok"})
    ev.append({"ev": "done", "n": n, "t": t})
    return ev


def make_record(algorithm="centralized", n=3, iterations=2, rows=None, faults=None, plan=None,
                args=None, timing=None, strict=False):
    """A fault-free record whose values come from the oracle unless `rows` is given."""
    args = dict(args or {"iterations": iterations})
    oracle = oracles.oracle_for(algorithm, n, args, SEED)
    finals = oracle["final"] if rows is None else rows[-1]
    rows = rows if rows is not None else oracle["rounds"]
    nodes = {}
    for i in range(n):
        got = (n - 1 if i == 0 else 1) if algorithm == "centralized" else n - 1
        nodes[str(i)] = {"kind": "pc", "board": None, "status": "ok", "result": finals[i],
                         "log": None, "error": None,
                         "events": node_events(i, [r[i] for r in rows], finals[i], got=got)}
    return RunRecord({
        "spec": {"algorithm": algorithm, "app": "x", "nodes": n, "server": 0, "args": args,
                 "timing": timing or {}, "faults": plan or {}, "seed": SEED, "strict": strict},
        "seed": SEED, "run": "r-test", "backend": "pc", "nodes": nodes,
        "faults": faults or [], "phases": {}, "hang": None, "errors": []})


def failures(findings):
    return [f for f in findings if not f.ok]


# ------------------------------------------------------------------ a passing run

def test_clean_centralized_run_passes_everything():
    rec = make_record()
    expect = {"oracle": True, "all_return": True, "consensus": {"eps": 0.5, "safety": 2.0},
              "aggregated": {"min": 2, "max": 2}, "skipped_rounds": {"max": 0},
              "round_ms": {"p95_max": 50}, "heap": {"max_kb": 150}, "faults_seen": [],
              "drops": {"duplicate_max": 0}}
    report = evaluate(rec, expect)
    assert report.ok, report.summary()
    report.raise_if_failed()  # no exception
    assert {f.check for f in report.findings} >= {"oracle", "all_return", "aggregated", "protocol"}


def test_record_roundtrip(tmp_path):
    rec = make_record()
    path = rec.save(tmp_path / "run.json")
    again = RunRecord.load(path)
    assert again.data == rec.data and again.seed == SEED and again.n_nodes == 3
    assert [e["i"] for e in again.rounds(1)] == [1, 2]
    assert again.result(2) == 1.875 and again.status(2) == "ok"


# ------------------------------------------------------------------ oracle

def test_oracle_failure_names_node_round_expected_got_seed():
    rows = oracles.centralized_rounds(3, 2)
    rows[1][2] = 1.9
    report = evaluate(make_record(rows=rows), {"oracle": True})
    bad = report.failures
    assert {(f.node, f.round) for f in bad} == {(2, None), (2, 2)}
    with pytest.raises(ExpectationFailed) as info:
        report.raise_if_failed()
    assert isinstance(info.value, AssertionError)
    msg = str(info.value)
    assert "node 2" in msg and "round 2" in msg
    assert "expected 1.875" in msg and "got 1.9" in msg
    assert "replay with seed=7" in msg


def test_oracle_missing_result():
    rec = make_record()
    rec.data["nodes"]["1"].update(result=None, status="timeout")
    rec.data["nodes"]["1"]["events"] = [e for e in rec.data["nodes"]["1"]["events"]
                                        if e["ev"] != "result"]
    bad = failures(analysis.check_oracle(rec))
    assert len(bad) == 1 and bad[0].node == 1 and "timeout" in bad[0].message


def test_tolerance_rules():
    assert analysis.values_match(1.75, 1.75)
    assert not analysis.values_match(1.75, 1.75 + 1e-9)          # dyadic: exact
    third = 1 / 3
    assert analysis.values_match(third, third * (1 + 5e-7))       # not dyadic: rel 1e-6
    assert not analysis.values_match(third, third * (1 + 5e-6))
    assert analysis.values_match([1.5, [2, 0.1]], [1.5, [2, 0.1 * (1 + 1e-7)]])
    assert not analysis.values_match([1.5], [1.5, 2.0])
    assert not analysis.values_match(1.0, None)


def test_oracle_accepts_explicit_values():
    rec = make_record()
    assert not failures(analysis.check_oracle(rec, [1.75, 1.625, 1.875], rounds=False))
    bad = failures(analysis.check_oracle(rec, [1.75, 1.625, 2.0], rounds=False))
    assert [(f.node, f.expected, f.got) for f in bad] == [(2, 2.0, 1.875)]


# ------------------------------------------------------------------ liveness

def test_all_return_failure_and_plan_crash():
    rec = make_record()
    rec.data["nodes"]["2"].update(result=None, status="timeout", error="no result in 5 s")
    rec.data["nodes"]["2"]["events"] = rec.data["nodes"]["2"]["events"][:3]
    rec.data["hang"] = {"node": 2, "phase": "run", "waiting": {"p": "cd", "i": 2, "on": [0]}}
    bad = failures(analysis.check_all_return(rec))
    assert len(bad) == 1 and bad[0].node == 2
    assert "timeout" in bad[0].message and "waiting" in bad[0].message
    rec.data["spec"]["faults"] = {"dropouts": [{"node": 2, "at": 1}]}
    assert not failures(analysis.check_all_return(rec))


# ------------------------------------------------------------------ consensus and mass

def test_consensus_pass_and_fail():
    rec = make_record("decentralized", n=4, iterations=8)
    assert not failures(analysis.check_consensus(rec, eps=1e-3, safety=2.0))
    rows = oracles.decentralized_rounds(4, 8)
    for r in rows:
        r[3] = 4.0  # node 3 never moves
    bad = failures(analysis.check_consensus(make_record("decentralized", 4, 8, rows=rows),
                                            eps=1e-3))
    assert len(bad) == 1 and bad[0].round == 8 and "not reached" in bad[0].message


def test_consensus_too_slow():
    # n=4: rho = 1/3, theory ceil(ln 1000 / ln 3) = 7 rounds; safety 0.5 allows 4
    rec = make_record("decentralized", n=4, iterations=8)
    bad = failures(analysis.check_consensus(rec, eps=1e-3, safety=0.5))
    assert len(bad) == 1 and bad[0].round == 7 and bad[0].expected == "within 4 rounds"
    assert bad[0].got == "7 rounds"


def test_mass_conserved():
    rec = make_record("decentralized", n=4, iterations=3)
    assert not failures(analysis.check_mass_conserved(rec, tol=1e-9))
    rows = oracles.decentralized_rounds(4, 3)
    rows[1][0] += 0.25  # a one-sided loss in iteration 2 moves the mean
    rows[2][0] += 0.25
    bad = failures(analysis.check_mass_conserved(make_record("decentralized", 4, 3, rows=rows)))
    assert len(bad) == 1 and bad[0].round == 2 and bad[0].expected == 2.5
    assert bad[0].got == pytest.approx(2.5625)


# ------------------------------------------------------------------ accuracy

def test_accuracy_from_model_and_vs_clean():
    clean = make_record("logreg", n=3, args={"iterations": 3})
    assert not failures(analysis.check_oracle(clean))  # server result {"w", "acc"}
    assert not failures(analysis.check_accuracy(clean, min=0.9))
    clean.data["nodes"]["0"]["result"] = {"w": clean.result(0)["w"]}  # no acc: computed
    assert analysis.accuracy_of(clean, 0) >= 0.9
    worse = make_record("logreg", n=3, args={"iterations": 3})
    worse.data["nodes"]["0"]["result"] = [-1.0, 0.0]  # inverted model
    bad = failures(analysis.check_accuracy(worse, min=0.9))
    assert bad and bad[0].node == 0 and bad[0].got < 0.1
    bad = failures(analysis.check_accuracy_vs_clean(worse, clean, margin=0.05))
    assert bad and "clean" in bad[0].expected
    assert not failures(analysis.check_accuracy_vs_clean(clean, [clean, 0.95], margin=0.05))
    report = evaluate(worse, {"accuracy_vs_clean": {"margin": 0.05}}, Evidence(clean=[clean]))
    with pytest.raises(ExpectationFailed, match="replay with seed=7"):
        report.raise_if_failed()


def test_accuracy_from_result_dict():
    rec = make_record()
    rec.data["nodes"]["0"]["result"] = {"accuracy": 0.8}
    bad = failures(analysis.check_accuracy(rec, min=0.9))
    assert bad[0].got == 0.8 and bad[0].expected == ">= 0.9"


# ------------------------------------------------------------------ rounds and timing

def test_aggregated_and_skipped():
    rec = make_record()
    server_rounds = [e for e in rec.data["nodes"]["0"]["events"] if e["ev"] == "round_end"]
    server_rounds[1].update(got=1, skipped=True)
    bad = failures(analysis.check_aggregated(rec, min=2, max=2))
    assert [(f.node, f.round, f.got) for f in bad] == [(0, 2, 1)]
    bad = failures(analysis.check_skipped_rounds(rec, max=0))
    assert [(f.node, f.round, f.got) for f in bad] == [(0, 2, 1)]
    assert "[2]" in bad[0].message


def test_round_ms_p95():
    rec = make_record()
    rec.data["nodes"]["1"]["events"] = node_events(1, [1.5, 1.625], 1.625, round_ms=400.0, got=1)
    bad = failures(analysis.check_round_ms(rec, p95_max=300, max=350))
    assert {(f.node, f.got) for f in bad} == {(1, "p95 400.000 ms"), (1, "400.000 ms")}
    assert any(f.round == 1 for f in bad)


def test_slot_late_against_guard():
    rec = make_record("tdm", n=2, args={"blocks": 1, "slots": 2}, timing={"guard_ms": 2.0})
    for n in (0, 1):
        evs = rec.data["nodes"][str(n)]["events"]
        evs += [{"ev": "slot_start", "n": n, "t": 5, "i": 0, "peers": [1 - n], "late": 300},
                {"ev": "slot_start", "n": n, "t": 9, "i": 1, "peers": [1 - n],
                 "late": 2500 if n == 1 else 100}]
    assert failures(analysis.check_slot_late(rec, max_ms=3.0)) == []
    bad = failures(analysis.check_slot_late(rec))  # default: the guard time
    assert [(f.node, f.round, f.got) for f in bad] == [(1, 1, "2.500 ms")]


def test_heap_peak_from_boot_and_heap_events():
    rec = make_record()
    evs = rec.data["nodes"]["1"]["events"]
    evs.insert(0, {"ev": "boot", "n": 1, "t": 0, "impl": "micropython", "heap": 180000,
                   "heap_total": 200000})
    evs.insert(1, {"ev": "heap", "n": 1, "t": 5, "free": 90000, "min_free": 40000})
    stats = rec.heap_peak(1)
    assert stats.min_free == 40000 and stats.peak_used == 160000
    bad = failures(analysis.check_heap(rec, max_kb=150))
    assert [(f.node, f.got) for f in bad] == [(1, "156.2 KB")]
    assert not failures(analysis.check_heap(rec, max_kb=160))
    assert rec.heap_peak(0) is None  # CPython node: not judged


# ------------------------------------------------------------------ faults and drops

def test_faults_seen_and_timeline_order():
    faults = [{"n": 1, "t": 300, "kind": "dup", "dst": 0, "p": "cu", "i": 2},
              {"n": 2, "t": 100, "kind": "loss", "dst": 0, "p": "cu", "i": 1}]
    rec = make_record(faults=faults)
    assert [f["kind"] for f in rec.faults()] == ["loss", "dup"]
    bad = failures(analysis.check_faults_seen(rec, ["loss", "partition"]))
    assert len(bad) == 1 and bad[0].expected == "partition" and bad[0].got == ["dup", "loss"]


def test_drops_counts_and_events():
    rec = make_record()
    rec.data["nodes"]["0"]["events"].insert(-2, {"ev": "drop", "n": 0, "t": 1, "why": "bad_tag",
                                                 "src": 2, "p": "cu", "i": 1})
    assert analysis.drop_total(rec, "bad_tag") == 1
    bad = failures(analysis.check_drops(rec, duplicate_min=1, bad_tag_max=0))
    assert {f.expected for f in bad} == {"duplicate >= 1", "bad_tag <= 0"}
    assert failures(analysis.check_drops(rec, weird=3))[0].message.startswith("bad drops key")


# ------------------------------------------------------------------ protocol invariants

def test_protocol_counts_duplicates_at_server():
    rec = make_record()
    ends = [e for e in rec.data["nodes"]["0"]["events"] if e["ev"] == "round_end"]
    ends[0]["got"] = 3  # 2 clients, 3 messages aggregated: a duplicate was counted
    bad = failures(analysis.check_protocol(rec))
    assert [(f.node, f.round, f.got) for f in bad] == [(0, 1, 3)]
    # evaluate runs it by default, but not for upstream-strict runs
    assert evaluate(rec, {}).failures
    rec.data["spec"]["strict"] = True
    assert evaluate(rec, {}).ok


def test_protocol_tdm_slots():
    rec = make_record("tdm", n=4, args={"blocks": 1, "slots": 1})
    evs = rec.data["nodes"]["0"]["events"]
    evs += [{"ev": "slot_start", "n": 0, "t": 1, "i": 0, "peers": [3], "late": 0},
            {"ev": "slot_end", "n": 0, "t": 2, "i": 0, "got": [3, 3, 1], "miss": [], "v": 3.0}]
    bad = failures(analysis.check_protocol(rec))
    assert {f.message.split(" [")[0] for f in bad if f.message} == {"heard unlisted peers"}
    assert all(f.node == 0 and f.round == 0 for f in bad) and len(bad) == 2


def test_unknown_expect_key_fails():
    report = evaluate(make_record(), {"oracel": True})
    assert [f.check for f in report.failures] == ["oracel"]
    assert "unknown" in report.failures[0].message


def test_tdm_values_from_slot_value_events():
    """The ODTS app reports its state with node.report -> `slot_value` events (slots from 0)."""
    rows = oracles.odts_rounds(4, 1, 3)
    nodes = {}
    for n in range(4):
        evs = []
        for s in range(3):
            evs += [{"ev": "slot_start", "n": n, "t": s * 100, "i": s, "peers": [], "late": 10},
                    {"ev": "slot_end", "n": n, "t": s * 100 + 50, "i": s, "got": [], "miss": [],
                     "heap": 150000 - s},
                    {"ev": "slot_value", "n": n, "t": s * 100 + 51, "i": s, "v": rows[s][n]}]
        nodes[str(n)] = {"status": "ok", "result": rows[-1][n], "events": evs}
    rec = RunRecord({"spec": {"algorithm": "tdm", "nodes": 4, "args": {"blocks": 1, "slots": 3}},
                     "seed": SEED, "nodes": nodes})
    assert rec.step_values(1) == {0: rows[0][1], 1: rows[1][1], 2: rows[2][1]}
    assert rec.heap_peak(2).min_free == 149998
    assert not failures(analysis.check_oracle(rec))
    nodes["3"]["events"][-1]["v"] = 2.0
    bad = failures(analysis.check_oracle(rec))
    assert [(f.node, f.round, f.expected, f.got) for f in bad] == [(3, 2, 1.875, 2.0)]
