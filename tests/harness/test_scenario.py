"""Scenario files: loading, validation messages and expansion into cases."""

import pytest

from flhil.harness.errors import ConfigError
from flhil.harness.config.scenario import (ALGORITHM_APPS, Nodes, Scenario, load_scenario, load_scenarios,
                              parse_scenario)

FULL = """\
name = "centralized averaging, 10% random loss"
algorithm = "centralized"
description = "loss on the way to the server"
seeds = [1, 2, 3]

[nodes]
count = 6
boards = 2
server = 0

[args]
iterations = 10

[timing]
round_ms = 400
quorum = 0.5

[[faults.links]]
dst = 0
loss = 0.1

[[faults.links]]
src = 1
burst = { p = 0.05, r = 0.4 }

[[faults.dropouts]]
node = 3
at = 2
down = 3

[expect]
oracle = true
all_return = true
consensus = { eps = 1e-3 }
mass_conserved = { tol = 1e-9 }
accuracy = { min = 0.9 }
accuracy_vs_clean = { margin = 0.05 }
aggregated = { min = 3, max = 5 }
skipped_rounds = { max = 0 }
slot_late_ms = { max_ms = 2.0 }
round_ms = { p95_max = 300 }
heap = { max_kb = 150 }
faults_seen = ["loss", "crash", "rejoin"]
drops = { duplicate_min = 1 }
"""

MINIMAL = 'algorithm = "tdm"\n[nodes]\ncount = 4\n'


def write(tmp_path, text, name="case.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path, text, name="bad.toml") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_scenario(write(tmp_path, text, name))
    return caught.value


def test_full_scenario_loads(tmp_path):
    s = load_scenario(write(tmp_path, FULL))
    assert isinstance(s, Scenario)
    assert s.name == "centralized averaging, 10% random loss"
    assert (s.algorithm, s.app) == ("centralized", "central_avg")
    assert s.seeds == (1, 2, 3) and s.strict is False
    assert s.nodes == Nodes(count=6, boards=2, server=0)
    assert s.args == {"iterations": 10}
    assert s.timing == {"round_ms": 400, "quorum": 0.5}
    assert s.faults["links"][0] == {"src": "*", "dst": 0, "loss": 0.1, "delay_ms": 0.0,
                                    "jitter_ms": 0.0, "dup": 0.0, "reorder": 0.0}
    assert s.faults["links"][1]["burst"]["loss_bad"] == 1.0
    assert "seed" not in s.faults
    assert s.expect["consensus"] == {"eps": 1e-3, "safety": 2.0}
    assert s.expect["faults_seen"] == ["loss", "crash", "rejoin"]
    assert s.params == {}
    assert [c.id for c in s.cases()] == ["seed=1", "seed=2", "seed=3"]
    assert [c.faults["seed"] for c in s.cases()] == [1, 2, 3]


def test_defaults(tmp_path):
    s = load_scenario(write(tmp_path, MINIMAL, "odts_pairs.toml"))
    assert s.name == "odts_pairs" and s.app == "odts" and s.description == ""
    assert s.seeds == (1,) and s.strict is False
    assert s.nodes == Nodes(count=4, boards=4, server=0)  # boards default: all
    assert s.args == {} and s.timing == {} and s.expect == {}
    assert s.faults == {"links": [], "partitions": [], "dropouts": [], "slot_jitter": [],
                        "clock_skew": [], "script": []}


@pytest.mark.parametrize("algorithm, app", sorted(ALGORITHM_APPS.items()))
def test_default_app_per_algorithm(algorithm, app):
    s = parse_scenario(f'algorithm = "{algorithm}"\n[nodes]\ncount = 3\n')
    assert s.app == app
    with pytest.raises(ConfigError, match=r"app \(line 2\): unknown app 'mine': not a built-in"):
        parse_scenario(f'algorithm = "{algorithm}"\napp = "mine"\n[nodes]\ncount = 3\n')


def test_the_message_format_of_the_brief(tmp_path):
    text = FULL.replace('src = 1\n', 'src = 1\nloss = 1.5\n')
    error = error_of(tmp_path, text, "x.toml")
    assert str(error) == (f"{tmp_path / 'x.toml'}: faults.links[1].loss (line 24): "
                          "expected a probability between 0 and 1, got 1.5")


@pytest.mark.parametrize("text, where, line, why", [
    # unknown keys, with suggestions
    ('algoritm = "tdm"\n[nodes]\ncount = 4\n', "algoritm", 1, 'did you mean "algorithm"?'),
    (MINIMAL + "[expect]\nconsensu = { eps = 0.1 }\n", "expect.consensu", 5,
     'did you mean "consensus"?'),
    (MINIMAL + "[expect]\ndrops = { duplicat_min = 1 }\n", "expect.drops.duplicat_min", 5,
     'did you mean "duplicate_min"?'),
    (MINIMAL + "[timing]\nround = 100\n", "timing.round", 5, 'did you mean "round_ms"?'),
    (MINIMAL + "[[faults.links]]\nlos = 0.1\n", "faults.links[0].los", 5, 'did you mean "loss"?'),
    ('algorithm = "centralised"\n[nodes]\ncount = 4\n', "algorithm", 1,
     'did you mean "centralized"?'),
    # wrong types
    ('algorithm = "tdm"\nseeds = 3\n[nodes]\ncount = 4\n', "seeds", 2, "got 3"),
    ('algorithm = "tdm"\nstrict = "no"\n[nodes]\ncount = 4\n', "strict", 2,
     'expected true or false, got "no"'),
    ('algorithm = "tdm"\n[nodes]\ncount = 4.0\n', "nodes.count", 3, "an integer between 2 and"),
    (MINIMAL + "[expect]\noracle = 1\n", "expect.oracle", 5, "expected true or false, or \"FILE.py:FUNCTION\" or \"FILE.json\" (a user's app), got 1"),
    (MINIMAL + "[args]\niterations = 0\n", "args.iterations", 5, "an integer >= 1, got 0"),
    # out of range and cross-key rules
    (MINIMAL + "[timing]\nquorum = 1.5\n", "timing.quorum", 5, "between 0 and 1, got 1.5"),
    (MINIMAL + "[timing]\nslot_ms = 10\nguard_ms = 10\n", "timing.guard_ms", 6,
     "expected guard_ms < slot_ms (10), got 10"),
    ('algorithm = "tdm"\n[nodes]\ncount = 4\nboards = 5\n', "nodes.boards", 4, "at most count = 4"),
    ('algorithm = "tdm"\n[nodes]\ncount = 4\nserver = 4\n', "nodes.server", 4, "from 0 to 3"),
    ('algorithm = "tdm"\nseeds = [1, 1]\n[nodes]\ncount = 4\n', "seeds[1]", 2, "unique"),
    # faults
    (MINIMAL + "[[faults.dropouts]]\nnode = 4\nat = 1\n", "faults.dropouts[0].node", 5,
     "a node id from 0 to 3, got 4"),
    (MINIMAL + "[[faults.partitions]]\ngroups = [[0, 1], [1, 2]]\n",
     "faults.partitions[0].groups[1][0]", 5, "groups must be disjoint"),
    (MINIMAL + "[[faults.links]]\nburst = { p = 0.1, r = 0 }\n", "faults.links[0].burst.r", 5,
     "probability > 0 and <= 1, got 0"),
    # expectations
    (MINIMAL + "[expect]\nconsensus = { safety = 2 }\n", "expect.consensus.eps", 5,
     "missing required key"),
    (MINIMAL + "[expect]\naggregated = { min = 4 }\n", "expect.aggregated.min", 5,
     "at most 3 (the clients of 4 nodes)"),
    (MINIMAL + "[expect]\naggregated = { min = 2, max = 1 }\n", "expect.aggregated.min", 5,
     "min <= max"),
    (MINIMAL + "[expect]\nfaults_seen = [\"dropout\"]\n", "expect.faults_seen[0]", 5, '"crash"'),
    (MINIMAL + "[expect]\nfaults_seen = [\"los\"]\n", "expect.faults_seen[0]", 5,
     'did you mean "loss"?'),
    (MINIMAL + "[expect]\nround_ms = 300\n", "expect.round_ms", 5, "expected a table, got 300"),
    # bad params paths
    (MINIMAL + '[params]\n"nodes.cont" = [4, 6]\n', 'params."nodes.cont"', 5,
     'bad params path "nodes.cont": at nodes.cont: unknown key "cont"; did you mean "count"?'),
    (MINIMAL + '[[faults.links]]\nloss = 0.1\n[params]\n"faults.links[0].los" = [0.1]\n',
     'params."faults.links[0].los"', 7, 'did you mean "loss"?'),
    (MINIMAL + '[params]\n"faults.links[0].loss" = [0.1]\n', 'params."faults.links[0].loss"', 5,
     "faults.links[0] does not exist (faults.links has 0 entries)"),
    (MINIMAL + '[params]\n"seeds" = [[1], [2]]\n', "params.seeds", 5, "seeds = [...] instead"),
    (MINIMAL + '[params]\n"nodes..count" = [4]\n', 'params."nodes..count"', 5, "bad params path"),
    (MINIMAL + '[params]\nnodes.count = [4]\n', "params.nodes", 5, 'quote dotted paths: "nodes.count"'),
    (MINIMAL + '[params]\n"nodes.count" = []\n', 'params."nodes.count"', 5, "a non-empty list"),
    (MINIMAL + '[params]\n"nodes.count" = [4, 4]\n', 'params."nodes.count"[1]', 5, "unique"),
    (MINIMAL + '[params]\n"nodes" = [{count = 4}]\n"nodes.count" = [6]\n', 'params."nodes.count"', 6,
     'overlaps params "nodes"'),
    (MINIMAL + '[params]\n"args.iterations.x" = [1]\n', 'params."args.iterations.x"', 5,
     "nothing can be nested in an integer >= 1"),
])
def test_mistakes_name_file_key_line_and_reason(tmp_path, text, where, line, why):
    error = error_of(tmp_path, text)
    assert error.where == where
    assert error.line == line
    assert why in error.why
    message = str(error)
    assert "bad.toml" in message and where in message and why in message


def test_params_substitution_is_validated_again(tmp_path):
    text = MINIMAL.replace("count = 4", "count = 6") + (
        '[[faults.dropouts]]\nnode = 5\nat = 1\n'
        '[params]\n"nodes.count" = [6, 4]\n')
    error = error_of(tmp_path, text)
    assert error.where == "faults.dropouts[0].node" and error.line == 5
    assert error.why == "expected a node id from 0 to 3, got 5 (with params nodes.count=4)"


def test_bad_param_value_points_at_the_params_line(tmp_path):
    text = MINIMAL + '[[faults.links]]\nloss = 0.1\n[params]\n"faults.links[0].loss" = [0.5, 2]\n'
    error = error_of(tmp_path, text)
    assert error.where == "faults.links[0].loss" and error.line == 7
    assert "got 2 (with params faults.links[0].loss=2)" in str(error)


def test_params_expand_into_cases(tmp_path):
    text = FULL.replace("seeds = [1, 2, 3]", "seeds = [1, 2]") + (
        '[params]\n"nodes.count" = [4, 8]\n"faults.links[0].loss" = [0.0, 0.25]\n'
        '"timing.slot_ms" = [20]\n"expect.accuracy" = [{ min = 0.8 }]\n')
    text = text.replace("boards = 2\n", "")
    s = load_scenario(write(tmp_path, text))
    assert s.params["nodes.count"] == [4, 8]
    cases = s.cases()
    assert [c.id for c in cases] == [
        f"nodes.count={n}-faults.links[0].loss={p}-timing.slot_ms=20-expect.accuracy={{\"min\":0.8}}-seed={seed}"
        for n in (4, 8) for p in (0.0, 0.25) for seed in (1, 2)]
    assert len({c.id for c in cases}) == len(cases)
    case = cases[-1]
    assert case.params == {"nodes.count": 8, "faults.links[0].loss": 0.25, "timing.slot_ms": 20,
                           "expect.accuracy": {"min": 0.8}}
    assert case.seed == 2 and case.faults["seed"] == 2
    assert case.nodes == Nodes(count=8, boards=8, server=0)  # boards default follows the count
    assert case.faults["links"][0]["loss"] == 0.25
    assert case.timing == {"round_ms": 400, "quorum": 0.5, "slot_ms": 20}
    assert case.expect["accuracy"] == {"min": 0.8}
    assert (case.algorithm, case.app, case.name) == ("centralized", "central_avg", s.name)
    assert s.nodes.count == 6  # the scenario itself is unchanged
    # a resolved scenario expands to the same case again
    assert [c.id for c in case.scenario.cases()] == [
        c.id for c in cases if c.params == case.params]


def test_params_can_add_keys_absent_from_the_file():
    s = parse_scenario(MINIMAL + '[params]\n"timing.guard_ms" = [1, 2]\n"args.topology" = ["ring"]\n')
    assert [c.timing for c in s.cases()] == [{"guard_ms": 1}, {"guard_ms": 2}]
    assert [c.id for c in s.cases()] == ["timing.guard_ms=1-args.topology=ring-seed=1",
                                         "timing.guard_ms=2-args.topology=ring-seed=1"]
    assert s.cases()[0].args == {"topology": "ring"}


def test_file_seed_overrides_run_seed():
    s = parse_scenario('algorithm = "tdm"\nseeds = [4, 5]\n[nodes]\ncount = 4\n[faults]\nseed = 9\n')
    assert [(c.id, c.seed, c.faults["seed"]) for c in s.cases()] == [("seed=4", 4, 9), ("seed=5", 5, 9)]


def test_load_scenarios_sorted_and_broken_file(tmp_path):
    write(tmp_path, MINIMAL, "b.toml")
    write(tmp_path, MINIMAL, "a.toml")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", MINIMAL, "c.toml")
    (tmp_path / "notes.txt").write_text("not a scenario")
    loaded = load_scenarios(tmp_path)
    assert [s.name for s in loaded] == ["a", "b", "c"]
    assert loaded[0].path == str(tmp_path / "a.toml")
    write(tmp_path, MINIMAL + "[timing]\nguard_ms = -1\n", "broken.toml")
    with pytest.raises(ConfigError) as caught:
        load_scenarios(tmp_path)
    assert "broken.toml" in str(caught.value) and "timing.guard_ms (line 5)" in str(caught.value)


def test_toml_syntax_error(tmp_path):
    error = error_of(tmp_path, 'algorithm = "tdm"\n[nodes\ncount = 4\n')
    assert "not valid TOML" in error.why and error.line == 2 and "bad.toml" in str(error)


def test_missing_directory():
    with pytest.raises(ConfigError, match="no such directory"):
        load_scenarios("/nonexistent/scenarios")


@pytest.mark.parametrize("text, where, why", [
    # one /24 loopback block per kind of node: 254 addresses (255 used to crash at allocation)
    ('algorithm = "tdm"\n[nodes]\ncount = 255\n', "nodes.count", "an integer between 2 and 254"),
    # a deadline of 1e12 ms used to be accepted and the run hung for good
    (MINIMAL + "[timing]\nround_ms = 1e12\n", "timing.round_ms", "<= 3600000 (an hour)"),
])
def test_limits_the_harness_cannot_run_are_refused(tmp_path, text, where, why):
    error = error_of(tmp_path, text)
    assert error.where == where and why in error.why
