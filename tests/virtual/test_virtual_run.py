"""Whole runs in virtual time: oracles, determinism, deadlines and replay."""
import json
import os
import subprocess
import sys

import pytest

from flhil.harness.run.replay import main as replay_main, replay
from flhil.harness.config.faults import normalise_fault_plan
from flhil.harness.results.record import RunRecord
from flhil.harness.run.replay import replay_plan, replay_spec
from flhil.harness.run.virtual import run_virtual, trace_hash

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LOSSY = {"links": [{"src": "*", "dst": "*", "loss": 0.2}],
         "partitions": [{"groups": [[0, 1], [2, 3, 4]], "rounds": [2, 2]}],
         "dropouts": [{"node": 3, "at": 1, "down": 1}]}


def test_centralized_matches_the_upstream_arithmetic():
    r = run_virtual({"app": "central_avg", "nodes": 4, "args": {"iterations": 1}, "seed": 1})
    x = [1.0, 2.0, 3.0, 4.0]  # x_i = i + 1
    assert r.results() == {0: (x[0] + sum(x[1:]) / 3) / 2, 1: (x[1] + x[0]) / 2, 2: (x[2] + x[0]) / 2,
                          3: (x[3] + x[0]) / 2}
    assert set(r.statuses().values()) == {"ok"}
    assert r["backend"] == "virtual" and r["virtual"]["stopped"] == "done" and r["hang"] is None


def test_decentralized_conserves_the_mean_without_faults():
    r = run_virtual({"algorithm": "decentralized", "nodes": 5, "args": {"iterations": 4}, "seed": 2})
    vals = list(r.results().values())
    assert abs(sum(vals) / 5 - 3.0) < 1e-12
    assert max(vals) - min(vals) < 0.1


def test_record_shape():
    r = run_virtual({"app": "getmeas", "nodes": 3, "server": 1, "args": {"slots": 2}, "seed": 4})
    assert r["spec"]["server"] == 1 and r["seed"] == 4
    node = r["nodes"]["2"]
    assert node["status"] == "ok" and node["result"]["slots"] == [[1.0, 2.0], [1.0, 2.0]]
    assert [e["ev"] for e in node["events"]][:3] == ["boot", "listen", "ready"]
    assert node["events"][-1]["ev"] == "done"
    assert len(r["trace"]) == sum(len(n["events"]) for n in r["nodes"].values())
    assert r["trace_hash"] == trace_hash(r["trace"])
    json.loads(r.to_json())  # a record is JSON


def test_same_seed_same_trace_and_different_seeds_differ():
    spec = {"app": "decentral_avg", "nodes": 5, "args": {"iterations": 4}, "faults": LOSSY, "seed": 11}
    a, b = run_virtual(spec), run_virtual(spec)
    assert a["trace_hash"] == b["trace_hash"]
    assert json.dumps(a["trace"]) == json.dumps(b["trace"])
    c = run_virtual(dict(spec, seed=12))
    assert c["trace_hash"] != a["trace_hash"]
    assert a["faults"] and c["faults"]


def test_trace_does_not_depend_on_the_process():
    spec = {"app": "central_avg", "nodes": 6, "args": {"iterations": 3}, "seed": 5,
            "faults": {"links": [{"src": "*", "dst": "*", "loss": 0.2, "dup": 0.2, "reorder": 0.2,
                                  "delay_ms": 3, "jitter_ms": 2}]}}
    code = ("import json,sys; from flhil.harness.run.virtual import run_virtual; "
            "print(run_virtual(json.loads(sys.argv[1]))['trace_hash'])")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == run_virtual(spec)["trace_hash"]


def test_run_deadline_cancels_hung_nodes_and_says_what_they_waited_for():
    # upstream-strict: no deadlines, so a lost client reply hangs the server for ever
    spec = {"app": "central_avg", "nodes": 3, "args": {"iterations": 2}, "seed": 1, "strict": True,
            "faults": {"links": [{"src": 2, "dst": 0, "loss": 1.0}]}}
    r = run_virtual(spec, deadline_s=20)
    assert r["virtual"]["stopped"] == "deadline" and r["virtual"]["t_end_s"] == pytest.approx(20, abs=1e-3)
    assert r.statuses() == {0: "timeout", 1: "timeout", 2: "timeout"}
    assert r["nodes"]["0"]["waiting"]["p"] == "cu" and r["nodes"]["0"]["waiting"]["on"] == [2]
    assert r["hang"]["node"] == 0 and r["hang"]["waiting"]["on"] == [2]
    assert r["nodes"]["1"]["waiting"]["p"] == "cd"


def test_real_time_bound():
    spec = {"app": "getmeas", "nodes": 50, "args": {"slots": 100000}, "seed": 1}
    r = run_virtual(spec, deadline_s=1e6, max_wall_s=0.3)
    assert r["virtual"]["stopped"] == "wall_limit"
    assert set(r.statuses().values()) == {"timeout"}


def test_replay_plan_from_a_hardware_style_record():
    record = RunRecord({
        "spec": {"app": "central_avg", "nodes": 3, "args": {"iterations": 2}, "seed": 9,
                 "faults": {"seed": 4, "links": [{"loss": 0.3, "delay_ms": 2}],
                            "dropouts": [{"node": 2, "at": 1}], "clock_skew": [{"node": 1, "ppm": 50}]}},
        "seed": 9, "backend": "serial",
        "faults": [
            {"ev": "fault", "n": 1, "t": 10, "kind": "loss", "dst": 0, "p": "cu", "i": 0},
            {"ev": "fault", "n": 0, "t": 11, "kind": "delay", "dst": 2, "p": "cd", "i": 1, "ms": 2.5},
            {"ev": "fault", "n": 0, "t": 11, "kind": "dup", "dst": 2, "p": "cd", "i": 1, "copies": 2},
            {"ev": "fault", "n": 2, "t": 12, "kind": "crash", "i": 1},
            {"ev": "fault", "n": 1, "t": 0, "kind": "clock_skew", "ppm": 50, "offset_ms": 0},
        ],
        "nodes": {"0": {"result": 1.0, "status": "ok"}},
    })
    plan = replay_plan(record)
    assert plan == {"seed": 4, "dropouts": [{"node": 2, "at": 1}], "clock_skew": [{"node": 1, "ppm": 50}],
                    "script": [{"src": 1, "dst": 0, "p": "cu", "i": 0, "kind": "loss"},
                               {"src": 0, "dst": 2, "p": "cd", "i": 1, "kind": "delay", "ms": 2.5}]}
    spec = replay_spec(record)
    assert spec.faults == normalise_fault_plan(plan, 3) and spec.nodes == 3
    r = run_virtual(spec)
    kinds = sorted((f["n"], f["kind"]) for f in r["faults"])
    assert kinds == [(0, "delay"), (1, "clock_skew"), (1, "loss"), (2, "crash")]


@pytest.mark.parametrize("app", ["central_avg", "decentral_avg", "getmeas"])
def test_replay_reproduces_a_run_exactly(app):
    args = {"iterations": 4} if app != "getmeas" else {"slots": 4, "topology": "ring"}
    spec = {"app": app, "nodes": 5, "args": args, "faults": LOSSY, "seed": 3}
    original = run_virtual(spec)
    assert any(f["kind"] == "loss" for f in original["faults"])
    result = replay(original)
    new = result.new
    assert result.faults_match and all(row[-1] for row in result.rows) and result.divergence is None
    # the script makes every decision the random rules made: the whole trace is the same
    assert new["trace_hash"] == original["trace_hash"]


def test_replay_with_delays_duplicates_and_reordering():
    spec = {"app": "decentral_avg", "nodes": 4, "args": {"iterations": 3}, "seed": 8,
            "faults": {"links": [{"loss": 0.1, "dup": 0.3, "reorder": 0.3, "delay_ms": 5}]}}
    original = run_virtual(spec)
    result = replay(original)
    assert result.faults_match and all(row[-1] for row in result.rows)


def test_replay_cli(tmp_path, capsys):
    spec = {"app": "central_avg", "nodes": 5, "args": {"iterations": 3}, "faults": LOSSY, "seed": 3}
    path = tmp_path / "rec.json"
    path.write_text(run_virtual(spec).to_json())
    out = tmp_path / "new.json"
    assert replay_main([str(path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "results match (no expectations in the record)" in text and "injected faults match" in text
    assert json.loads(out.read_text())["backend"] == "virtual"
    # a record whose results differ from what the replay computes
    rec = json.loads(path.read_text())
    rec["nodes"]["1"]["result"] = 99.0
    path.write_text(json.dumps(rec))
    assert replay_main([str(path)]) == 1
    assert "DIFFER" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[]")
    assert replay_main([str(tmp_path / "bad.json")]) == 2
