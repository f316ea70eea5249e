"""Flower scenario files: the [flower] table, and fault plan keys that mean nothing on Flower's
links, each a config error naming the key (no flwr needed)."""
import pytest

from flhil.harness.config.scenario import load_scenario, parse_scenario
from flhil.harness.errors import ConfigError
from flhil.harness.run.pipeline import spec_for

EXAMPLE = "examples/flower-digits"


def scenario(tmp_path, body):
    text = 'algorithm = "flower"\n[flower]\nproject = "%s"\nsupernodes = 3\n' % (
        str((__import__("pathlib").Path(__file__).parents[2] / EXAMPLE).resolve())) + body
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_a_flower_scenario_has_the_superlink_and_its_supernodes_as_nodes(tmp_path):
    s = load_scenario(scenario(tmp_path, "[flower.run_config]\nnum-server-rounds = 1\n"))
    assert s.nodes.count == 4 and s.nodes.server == 0 and s.app == "flower"
    assert s.flower["run_config"] == {"num-server-rounds": 1}
    spec = spec_for(s.cases()[0])
    assert spec.flower["supernodes"] == 3 and spec.nodes == 4 and spec.app == "flower"
    assert spec.replace(faults={}).flower == spec.flower  # the clean run of accuracy_vs_clean


@pytest.mark.parametrize("body, where, why", [
    ("[[faults.links]]\nsrc = 1\ndst = 0\nloss = 0.1\n", "faults.links[0].loss", "per-message loss"),
    ("[[faults.links]]\ndup = 0.1\n", "faults.links[0].dup", "duplication"),
    ("[[faults.slot_jitter]]\nmax_ms = 3\n", "faults.slot_jitter", "TDM slot jitter"),
    ("[[faults.clock_skew]]\nnode = 1\nppm = 5\n", "faults.clock_skew", "clock skew"),
    ("[[faults.partitions]]\ngroups = [[1], [2, 3]]\n", "faults.partitions[0].groups", "list node 0"),
    ("[[faults.dropouts]]\nnode = 4\nat = 1\n", "faults.dropouts[0].node", "from 0 to 3"),
    ("[[flower.node_faults]]\nnode = 0\naction = \"stop\"\nat = 1\n", "flower.node_faults[0].node", "SuperLink"),
    ("[[flower.node_faults]]\nnode = 1\naction = \"pause\"\nat = 1\n", "flower.node_faults[0]", "needs for_ms"),
    ("[[flower.node_faults]]\nnode = 1\naction = \"stop\"\n", "flower.node_faults[0]", "one of them"),
    ("[[flower.links]]\nnode = 1\nkbps = 0\n", "flower.links[0].kbps", "> 0"),
    ("[nodes]\ncount = 4\n", "nodes", "leave [nodes] out"),
])
def test_what_has_no_meaning_on_flowers_links_is_a_config_error_naming_the_key(tmp_path, body, where, why):
    with pytest.raises(ConfigError) as e:
        load_scenario(scenario(tmp_path, body))
    assert e.value.where == where and why in e.value.why, str(e.value)


def test_delay_partitions_and_dropouts_keep_their_fl_hil_names(tmp_path):
    s = load_scenario(scenario(tmp_path, "[[faults.links]]\nsrc = 3\ndst = 0\ndelay_ms = 50\njitter_ms = 5\n"
                                          "[[faults.partitions]]\ngroups = [[0, 1], [2, 3]]\nrounds = [1, 2]\n"
                                          "[[faults.dropouts]]\nnode = 2\nat = 1\ndown = 1\n"))
    plan = s.cases()[0].faults
    assert plan["links"][0]["delay_ms"] == 50 and plan["dropouts"][0]["down"] == 1


def test_flower_needs_its_table_and_other_algorithms_refuse_it():
    with pytest.raises(ConfigError, match="needs a \\[flower\\] table"):
        parse_scenario('algorithm = "flower"\n')
    with pytest.raises(ConfigError, match='needs algorithm = "flower"'):
        parse_scenario('algorithm = "centralized"\n[nodes]\ncount = 3\n[flower]\nproject = "x"\nsupernodes = 2\n')
    with pytest.raises(ConfigError, match="nodes.*missing required key"):
        parse_scenario('algorithm = "centralized"\n')


def test_the_scenarios_shipped_load():
    from flhil.harness.config.scenario import load_scenarios
    names = {s.name for s in load_scenarios(__import__("pathlib").Path(__file__).parents[2] / "scenarios/flower")}
    assert {"flower-clean", "flower-supernode-killed", "flower-partition-half", "flower-slow-links",
            "flower-restart-rejoins"} <= names
