"""Property-based search of fault schedules in virtual time (hypothesis)."""
import tomllib

from hypothesis import HealthCheck, given, settings

from flhil.harness.config.scenario import load_scenario
from flhil.harness.run.search import (DEFAULT_EXPECT, base_spec, check, expect_property, fault_plans,
                            find_counterexample, main as search_main, plan_size, run_scenario_file,
                            write_scenario)

CENTRAL = base_spec("centralized", nodes=4, iterations=3)


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(fault_plans(4, 3))
def test_centralized_nodes_always_return_whatever_the_faults(plan):
    """Liveness under any loss/partition/dropout/dup schedule: deadlines and quorum keep every
    node not killed by the plan going to a result."""
    record, message = check(CENTRAL, plan, expect_property({"all_return": True}))
    assert message is None, (plan, message)


def test_search_finds_a_minimal_schedule_that_breaks_decentralized_mass_conservation(tmp_path):
    spec = base_spec("decentralized", nodes=4, iterations=3)
    expect = DEFAULT_EXPECT["decentralized"]
    plan, message = find_counterexample(spec, expect_property(expect), max_examples=150)
    assert plan is not None, "no counterexample found"
    assert "mass_conserved" in message
    assert plan_size(plan) == 1  # shrunk to a single fault entry
    # the scenario file parses as TOML, passes the scenario loader and fails the same way again
    path = write_scenario(str(tmp_path / "regressions" / "decentral_mass.toml"), spec, plan, expect, message)
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    assert doc["algorithm"] == "decentralized" and doc["nodes"]["count"] == 4
    assert doc["faults"] == plan and doc["expect"] == expect
    scenario = load_scenario(path)
    assert scenario.seeds == (1,) and scenario.expect == expect
    record, again = run_scenario_file(path)
    assert again == message


def test_search_reports_nothing_when_the_property_holds():
    spec = base_spec("centralized", nodes=3, iterations=2)
    plan, message = find_counterexample(spec, expect_property({"all_return": True}), max_examples=15,
                                        kinds=("loss", "dup"))
    assert plan is None and message is None


def test_search_cli(tmp_path, capsys):
    out = tmp_path / "x.toml"
    assert search_main(["--algorithm", "decentralized", "--nodes", "4", "--max-examples", "100",
                        "--out", str(out)]) == 1
    assert "minimal failing fault schedule (1 entries)" in capsys.readouterr().out
    assert tomllib.loads(out.read_text())["faults"]
