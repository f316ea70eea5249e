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
