"""Flower runs on this host (skipped without flwr): a clean run becomes a run record with Flower's
rounds, and a ServerApp that waits for nodes that never come is reported as a hang with what it
waited for, within the run's stall limit; no Flower process outlives a run."""
import os
import pathlib
import time

import pytest

from flhil.harness.flower.project import FlowerError, check_flwr

try:
    check_flwr()
except FlowerError as _e:
    pytestmark = pytest.mark.skip(reason="Flower runs need flwr: %s" % _e)

EXAMPLE = str(pathlib.Path(__file__).parents[2] / "examples" / "flower-digits")


def run(tmp_path, supernodes=2, faults=None, **flower):
    from flhil.harness.flower.backend import FlowerBackend
    from flhil.harness.run import pipeline
    from flhil.harness.run.spec import RunSpec
    table = {"project": EXAMPLE, "supernodes": supernodes}
    table.update(flower)
    spec = RunSpec(algorithm="flower", nodes=supernodes + 1, flower=table, faults=faults or {})
    return pipeline.execute(spec, FlowerBackend(run_dirs=lambda name: str(tmp_path / name))), spec


def processes_using(port):
    """Processes whose command line names the lab's port (Flower's processes of that lab)."""
    from flhil.harness.flower.backend import processes_naming
    return processes_naming([port])


def test_a_clean_flower_run_becomes_a_run_record(tmp_path):
    from flhil.harness.run import pipeline
    record, spec = run(tmp_path, run_config={"num-server-rounds": 1})
    assert record["stopped"] == "done", record.get("hang")
    assert record.statuses() == {0: "ok", 1: "ok", 2: "ok"}
    [r1] = record.rounds(0)
    assert r1["i"] == 1 and r1["got"] == [1, 2] and r1["miss"] == []
    assert record.result(0)["accuracy"] > 0.5 and record.result(1)["answered"] == 1
    assert record.round_latencies_ms(0)[1] > 0
    verdict = pipeline.analyse(record, {"all_return": True, "accuracy": {"min": 0.5},
                                        "aggregated": {"min": 2}}, spec)
    assert verdict.ok, verdict.summary()
    port = record["flower"]["ports"]["0"]
    assert processes_using(port) == []


def test_a_serverapp_waiting_for_nodes_that_never_come_is_a_hang(tmp_path):
    t = time.monotonic()
    record, spec = run(tmp_path, run_config={"min-nodes": 3}, stall_s=15.0)
    took = time.monotonic() - t
    hang = record["hang"]
    assert hang is not None and hang["node"] == 0 and hang["phase"] == "run", hang
    assert hang["waiting"]["p"] == "sample" and sorted(hang["waiting"]["on"]) == [1, 2], hang
    assert hang["superlink"]["connected"] == [1, 2]
    assert "said nothing new" in hang["why"]
    assert took < 15.0 + 150, took
    assert processes_using(record["flower"]["ports"]["0"]) == []


def test_ctrl_c_mid_start_leaves_no_flower_process(tmp_path, monkeypatch):
    from flhil.harness.flower import backend
    seen = {}

    def interrupted(self):
        seen["port"] = self.ports[0]
        seen["pids"] = [p.proc.pid for p in self.procs.values()]
        raise KeyboardInterrupt
    monkeypatch.setattr(backend.FlowerLab, "_submit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, supernodes=2)
    assert len(seen["pids"]) == 3
    for pid in seen["pids"]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert processes_using(seen["port"]) == []
