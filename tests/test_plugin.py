"""The pytest plugin as a user meets it: fixtures, scenario collection, errors and skips."""
import pytest

from flhil.harness.run.spec import RunSpec

pytest_plugins = ["pytester"]


@pytest.mark.sim
def test_dropout_lowers_aggregation(flhil_run, fault_plan):
    """The README example: a client that dies at round 2 is missing from every later round."""
    faults = fault_plan.dropout(node=3, at=2).to_dict(nodes=5)
    record = flhil_run(RunSpec(app="central_avg", algorithm="centralized", nodes=5,
                               args={"iterations": 6}, faults=faults, timing={"round_ms": 300}),
                       boards=2)
    assert [r["got"] for r in record.rounds(0)] == [4, 4, 3, 3, 3, 3]
    assert record.status(3) == "crashed"
    assert record.data["nodes"]["0"]["kind"] == "emulated"


def _plugin_args():
    from importlib.metadata import entry_points
    loaded = any(ep.value == "flhil.fixtures.plugin" for ep in entry_points(group="pytest11"))
    return [] if loaded else ["-p", "flhil.fixtures.plugin"]


def test_a_broken_scenario_fails_with_file_key_and_reason(pytester):
    pytester.makefile(".toml", **{"scenarios/broken": '''
algorithm = "centralized"
[nodes]
count = 3
[faults]
[[faults.links]]
loss = 1.5
'''})
    result = pytester.runpytest("scenarios", "-m", "sim", *_plugin_args())
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*broken.toml*faults.links[[]0[]].loss*between 0 and 1*"])


def test_hil_items_without_boards_skip_and_say_how_to_attach_a_lab(pytester):
    pytester.makefile(".toml", **{"scenarios/ok": '''
algorithm = "centralized"
[nodes]
count = 3
[args]
iterations = 1
[expect]
all_return = true
'''})
    result = pytester.runpytest("scenarios", "-m", "hil", "-rs", *_plugin_args())
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*--lab*--hil-emulated*"])


def test_markers_are_registered_with_help(pytester):
    result = pytester.runpytest("--markers", *_plugin_args())
    result.stdout.fnmatch_lines(["*@pytest.mark.sim:*without hardware*", "*@pytest.mark.hil:*real Pico W*"])


STALLED_TDM = '''
algorithm = "tdm"
%s
[nodes]
count = 4
boards = 0
[args]
blocks = 3
slots = 4
[timing]
slot_ms = 60
guard_ms = 20
startup_ms = 10000
[expect]
oracle = true
slot_late_ms = { max_ms = 20.0 }
'''

STALL_CONFTEST = '''
import sys
sys.path.insert(0, %r)
import hoststall
hoststall.install(victim=2, at_slot=3, stop_ms=150)
'''


def test_a_run_the_host_stalled_is_re_run_and_a_broken_algorithm_still_fails(pytester):
    """Through pytest as a user runs it: node 2's process is stopped for 150 ms in the first attempt
    of each item (a host stall). The healthy scenario is judged inconclusive, re-run, and passes;
    the one whose algorithm does not compute what its oracle says fails, stall or not."""
    import json
    import os
    tests_dir = os.path.dirname(__file__)
    pytester.makeconftest(STALL_CONFTEST % tests_dir)
    # "broken": another TDM app's values checked against ODTS's reference, on the same schedule
    broken = STALLED_TDM.replace("blocks = 3\nslots = 4", "slots = 12\ntopology = \"ring\"")
    pytester.makefile(".toml", **{"scenarios/healthy": STALLED_TDM % "",
                                  "scenarios/broken": broken % 'app = "getmeas"'})
    report = pytester.path / "reports"
    result = pytester.runpytest_subprocess("scenarios", "-m", "sim", "--report-dir", str(report),
                                           "--flhil-reruns", "1", *_plugin_args())
    result.assert_outcomes(passed=1, failed=1)
    # stalled too, the broken one fails: its replay without the stalls fails as well
    result.stdout.fnmatch_lines(["*broken.toml: * expectation(s) failed*", "*FAIL oracle (node 0)*",
                                 "*replayed in virtual time without them (injected faults only) fails too*"])
    records = {}
    for path in sorted(report.glob("lab/*/runs/*/record.json")):
        records[path.parent.name] = json.loads(path.read_text())
    healthy = sorted(name for name in records if "healthy" in name)
    assert len(healthy) == 2, sorted(records)
    first, second = (records[n]["verdict"] for n in healthy)
    assert first["outcome"] == "inconclusive" and any(e.startswith("node 2 lost") for e in first["evidence"])
    assert any("without the host's stalls" in n and "passes" in n for n in first["notes"]), first["notes"]
    assert "rerun1" in healthy[1] and second["outcome"] == "pass"
    assert second["notes"] and second["notes"][0].startswith("attempt 2 of 2")
