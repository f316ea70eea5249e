"""A real-time run whose timing fails (a delay fault just inside the receive window, and one node's
process stopped for 150 ms, as a loaded host does) is judged inconclusive with the evidence, and
`fl-hil replay` reproduces its verdict exactly from the record; replayed on an idle host it passes."""
import os
import sys

import pytest

from flhil.harness.run import pipeline
from flhil.harness.run.backend import make_backend
from flhil.harness.run.replay import main as replay_main
from flhil.harness.run.spec import RunSpec

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
import hoststall  # noqa: E402

SPEC = dict(algorithm="tdm", nodes=4, args={"blocks": 3, "slots": 4},
            timing={"slot_ms": 60, "guard_ms": 20, "startup_ms": 10000},
            faults={"links": [{"src": 0, "delay_ms": 38.0}]}, seed=1)
EXPECT = {"oracle": True, "slot_late_ms": {"max_ms": 20.0}, "drops": {"stale_max": 0}}


@pytest.mark.sim
def test_a_stalled_real_time_run_is_inconclusive_and_its_replay_reproduces_the_verdict(lab, capsys):
    stalls = hoststall.install(victim=2, at_slot=3, stop_ms=150)
    spec = RunSpec(**SPEC)
    record = pipeline.execute(spec, make_backend("realtime", lab=lab, boards=0), name="replay-timing")
    verdict = pipeline.analyse(record, EXPECT, spec)
    assert stalls == [(2, stalls[0][1])], "the node was not stopped"
    failed = {(f.check, f.node) for f in verdict.failures}
    assert ("slot_late_ms", 2) in failed, verdict.summary()
    # the host stopped node 2: every failure coincides with it
    assert verdict.outcome == "inconclusive", verdict.summary()
    assert any(e.startswith("node 2 lost") for e in verdict.evidence), verdict.evidence
    stalls_2 = [s for s in record.data["stalls"] if s["n"] == 2]
    assert any(s["ms"] > 20 for s in stalls_2), record.data["stalls"]
    assert record.path is not None

    assert replay_main([str(record.path)]) == 0
    out = capsys.readouterr().out
    assert "verdict reproduced" in out, out
    # without the host's timing (injected faults only) the run passes: not what was recorded
    assert replay_main([str(record.path), "--idle"]) == 1
    out = capsys.readouterr().out
    assert "replay verdict:   pass" in out and "verdict NOT reproduced" in out, out
    assert "first divergence: node" in out, out
