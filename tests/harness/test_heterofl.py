"""HeteroFL on the host: the [heterofl] table, levels per node kind and mix, the digits shards,
the numpy reference against the node's MLP, and a run judged by its exact oracle."""
import copy

import numpy as np
import pytest

from flhil import mlp
from flhil.harness.config.scenario import parse_scenario
from flhil.harness.data import digits
from flhil.harness.errors import ConfigError, HarnessError
from flhil.harness.results import heterofl as hf
from flhil.harness.results.expectations import Evidence, evaluate, validate_expect
from flhil.harness.results.record import RunRecord
from flhil.harness.run import heterofl as setup
from flhil.harness.run import pipeline
from flhil.harness.run.backend import make_backend
from flhil.harness.run.collector import NodeSlot
from flhil.harness.run.configs import node_configs
from flhil.harness.run.spec import RunSpec

SCENARIO = """\
name = "heterofl"
algorithm = "heterofl"
description = "d"

[nodes]
count = 4
server = 3

[heterofl]
%s
"""


def error_of(table):
    with pytest.raises(ConfigError) as caught:
        parse_scenario(SCENARIO % table, "h.toml")
    return str(caught.value)


def test_the_table_takes_a_mix_or_a_map():
    s = parse_scenario(SCENARIO % 'levels = "a1-e2"\ndynamic = true', "h.toml")
    assert s.heterofl == {"levels": "a1-e2", "dynamic": True, "split": "iid", "classes": 2, "samples": 100}
    s = parse_scenario(SCENARIO % 'levels = { 0 = "a", 2 = "e" }\nsplit = "noniid"', "h.toml")
    assert s.heterofl["levels"] == {"0": "a", "2": "e"}
    assert pipeline.spec_for(s.cases()[0]).heterofl == s.heterofl


@pytest.mark.parametrize("table, words", [
    ('levels = "a1-f2"', 'heterofl.levels (line 10): expected a level mix like "a1-b1-e2"'),
    ('levels = "a1-a2"', "level a appears twice"),
    ('levels = "a0-e0"', "gives every level weight 0"),
    ('levels = { 3 = "a" }', "node 3 is the server"),
    ('levels = { 7 = "a" }', "expected a node id from 0 to 3, got 7"),
    ('levels = { 1 = "z" }', 'heterofl.levels.1'),
    ('levels = { 1 = "a" }\ndynamic = true', "dynamic levels are drawn from a mix"),
    ('dynamic = true', "dynamic levels need a mix"),
    ('split = "skewed"', 'heterofl.split'),
    ('classes = 11', 'heterofl.classes'),
])
def test_mistakes_name_the_key(table, words):
    assert words in error_of(table)


def test_the_table_belongs_to_heterofl():
    text = (SCENARIO % 'levels = "a1"').replace('algorithm = "heterofl"', 'algorithm = "logreg"')
    with pytest.raises(ConfigError, match=r"\[heterofl\] configures algorithm heterofl"):
        parse_scenario(text, "h.toml")


def _slots(kinds, heap_kb=192):
    return [NodeSlot(i, k, "%s%d" % (k, i), "127.0.0.1", heap_kb if k == "emulated" else None)
            for i, k in enumerate(kinds)]


def test_default_levels_by_node_kind():
    slots = _slots(["emulated", "emulated", "pc", "pc"])
    levels = setup.client_levels(slots, 3, setup.settings(None), 128)
    assert levels == {0: setup.budget_level("emulated", 192, 128), 1: levels[0], 2: "a"}
    assert levels[0] in "de"  # a 192 KB board holds d or e, not more (PEAK_HEAP_KB)
    assert setup.budget_level("pc", None, 128) == "a"
    assert setup.budget_level("emulated", 16, 128) is None


def test_a_mix_gives_the_wide_levels_to_the_big_nodes_and_caps_the_boards():
    slots = _slots(["emulated", "emulated", "pc", "pc", "pc", "pc"])
    levels = setup.client_levels(slots, 5, setup.settings({"levels": "a1-b1-c1-d1-e1"}), 128)
    # d does not fit a 192 KB board since the hardened node: both boards are capped at e
    assert levels == {2: "a", 3: "b", 4: "c", 0: "e", 1: "e"}
    levels = setup.client_levels(slots, 5, setup.settings({"levels": "a1"}), 128)
    cap = setup.budget_level("emulated", 192, 128)
    assert levels == {0: cap, 1: cap, 2: "a", 3: "a", 4: "a"}
    assert setup.deal_mix([("a", 1), ("e", 2)], {c: "a" for c in range(7)}) == \
        {0: "a", 1: "a", 2: "e", 3: "e", 4: "e", 5: "e", 6: "e"}  # 7 x 1/3 = 2.33 -> 2, 7 x 2/3 -> 5


def test_a_level_too_wide_for_a_board_is_refused_with_the_node():
    slots = _slots(["emulated", "pc", "pc"])
    with pytest.raises(HarnessError, match="node 0 is a emulated board with 192 KB of heap; level a"):
        setup.client_levels(slots, 2, setup.settings({"levels": {"0": "a"}}), 128)


def test_shards_are_seeded_disjoint_and_skewed():
    test, iid = digits.split(1, 5, samples=100)
    assert len(test) == 449 and all(len(s) == 100 for s in iid)
    everything = np.concatenate([test] + iid)
    assert len(set(everything.tolist())) == len(everything)
    assert np.array_equal(digits.split(1, 5, samples=100)[1][2], iid[2])
    assert not np.array_equal(digits.split(2, 5, samples=100)[1][2], iid[2])
    _, y = digits.quantised()
    _, skewed = digits.split(1, 5, iid=False, classes=2)
    assert [len(set(y[s].tolist())) for s in skewed] == [2] * 5
    assert min(len(set(y[s].tolist())) for s in iid) == 10


def test_a_shard_packs_to_half_a_byte_per_pixel():
    _, shards = digits.split(1, 5, samples=100)
    packed = digits.pack(shards[0])
    assert len(packed["x"]) == 4268 and len(packed["y"]) == 100  # 3,200 bytes in base64
    x, y = digits.unpack(packed)
    q, labels = digits.quantised()
    assert np.array_equal(x * 16, q[shards[0]]) and np.array_equal(y, labels[shards[0]])


def test_run_configs_carry_levels_shards_and_a_frame_for_level_a():
    spec = RunSpec(app="heterofl", nodes=4, server=3, heterofl={"levels": "a1-e1"})
    configs = node_configs(spec, _slots(["pc"] * 4), "r", "00" * 16)
    assert configs[3]["heterofl"] == {"levels": {"0": "a", "1": "a", "2": "e"}, "dynamic": False}
    assert configs[2]["heterofl"]["level"] == "e" and len(configs[2]["heterofl"]["y"]) == 100
    assert configs[0]["max_frame"] >= 4 * 9610 * 4 // 3 + 1000
    other = node_configs(RunSpec(app="logreg", nodes=4), _slots(["pc"] * 4), "r", "00" * 16)
    assert "heterofl" not in other[0]


def test_the_numpy_reference_equals_the_node_training():
    import binascii
    shape = hf.Shape(32)
    _, shards = digits.split(3, 4, samples=30)
    packed = digits.pack(shards[1])
    x, y = digits.unpack(packed)
    w = mlp.init_model(3, 64, 32, 10)
    for level in "ace":
        h = shape.width(level)
        sub = mlp.slice_model(w, 64, 32, 10, h)
        assert np.array_equal(np.asarray(sub), shape.sub(np.asarray(w), level))
        mlp.train(sub, 64, h, 10, 1 / mlp.rate(level), binascii.a2b_base64(packed["x"]), packed["y"].encode(),
                  0.01, 2, 3, 1, 0)
        ref = hf.local_train(shape, shape.sub(np.asarray(w), level), level, x, y, 0.01, 2, 3, 1, 0)
        assert np.max(np.abs(np.asarray(sub) - ref)) <= hf.ATOL


def test_reference_aggregation_keeps_what_nobody_holds():
    shape = hf.Shape(16)
    w = hf.initial_model(shape, 1)
    sub = shape.sub(w, "c") + 1.0
    out = hf.aggregate(shape, w, {"c": [sub]})
    w1, b1, w2, b2 = shape.parts(out, 16)
    o1, _, o2, _ = shape.parts(w, 16)
    assert np.allclose(w1[:4], o1[:4] + 1) and np.array_equal(w1[4:], o1[4:])
    assert np.allclose(w2[:, :4], o2[:, :4] + 1) and np.array_equal(w2[:, 4:], o2[:, 4:])
    assert np.allclose(b2, 1.0)
    assert np.array_equal(hf.aggregate(shape, w, {}), w)


@pytest.fixture(scope="module")
def small_run():
    spec = RunSpec(app="heterofl", nodes=4, server=3, seed=2, args={"iterations": 2, "hidden": 32, "lr": 0.05},
                   heterofl={"levels": "a1-c1-e1", "samples": 60})
    return pipeline.execute(spec, make_backend("virtual"))


def test_a_run_equals_its_reference_and_reports_levels_and_accuracy(small_run):
    expect = validate_expect({"oracle": True, "accuracy": {"min": 0.3}, "level_accuracy": {"a": 0.3, "e": 0.12},
                              "all_return": True, "aggregated": {"min": 3}})
    verdict = evaluate(small_run, expect, Evidence())
    assert verdict.ok, verdict.summary()
    oracle = [f for f in verdict.findings if f.check == "oracle"]
    assert [f.round for f in oracle] == [0, 1]
    models = small_run.events(3, "model")
    assert models[0]["lv"] == {"0": "a", "1": "c", "2": "e"} and models[0]["got"] == [0, 1, 2]
    assert models[0]["bytes"]["e"] < models[0]["bytes"]["c"] < models[0]["bytes"]["a"]
    assert small_run.result(2)["level"] == "e" and small_run.result(2)["params"] == mlp.param_count(64, 2, 10)


def test_the_oracle_catches_a_wrong_aggregate(small_run):
    data = copy.deepcopy(small_run.data)
    for e in data["nodes"]["3"]["events"]:
        if e.get("ev") == "model" and e["i"] == 1:
            w = hf.decode(e["w"])
            w[5] += 0.01
            e["w"] = mlp.encode(mlp.array("f", w.tobytes()))
    verdict = evaluate(RunRecord(data), validate_expect({"oracle": True}), Evidence())
    bad = [f for f in verdict.findings if not f.ok]
    assert [f.round for f in bad] == [1] and "0.01" in str(bad[0].got)


def test_the_record_holds_the_resolved_levels_and_a_replay_trains_them(small_run):
    from flhil.harness.run import replay
    assert small_run.spec["heterofl"]["levels"] == {"0": "a", "1": "c", "2": "e"}
    again = replay.replay(small_run)
    assert again.divergence is None and all(row[-1] for row in again.rows)
    assert again.new.events(3, "model")[-1]["w"] == small_run.events(3, "model")[-1]["w"]


def test_a_board_keeps_its_resolved_level_where_the_kinds_differ():
    """A mix dealt on a lab (boards capped at their heap's level) is replayed as dealt: the
    record's per-client table, not the mix, which virtual nodes (all level a) would deal anew."""
    spec = RunSpec(app="heterofl", nodes=4, server=3, heterofl={"levels": "a1-b1-e1"})
    node_configs(spec, _slots(["emulated", "pc", "pc", "pc"]), "r", "00" * 16)
    dealt = spec.heterofl["levels"]
    again = RunSpec(**dict(spec.to_dict(), heterofl=spec.heterofl))
    configs = node_configs(again, _slots(["pc"] * 4), "r", "00" * 16)
    assert dealt == {"0": "e", "1": "a", "2": "b"} and configs[3]["heterofl"]["levels"] == dealt


def test_dynamic_caps_are_checked_and_recorded():
    assert "caps bound the levels a dynamic mix draws" in error_of('levels = "a1"\ncaps = { 0 = "d" }')
    assert "heterofl.caps.0" in error_of('levels = "a1"\ndynamic = true\ncaps = { 0 = "q" }')
    spec = RunSpec(app="heterofl", nodes=4, server=3, heterofl={"levels": "a1-e1", "dynamic": True,
                                                                "caps": {"1": "c"}})
    configs = node_configs(spec, _slots(["emulated", "pc", "pc", "pc"]), "r", "00" * 16)
    cap = setup.budget_level("emulated", 192, 128)
    assert configs[3]["heterofl"]["levels"] == {"0": cap, "1": "c", "2": "a"}
    assert configs[3]["heterofl"]["mix"] == [["a", 1], ["e", 1]]
    with pytest.raises(HarnessError, match=r"\[heterofl\] caps: node 0 is a emulated board"):
        node_configs(RunSpec(app="heterofl", nodes=4, server=3, heterofl={"levels": "a1", "dynamic": True,
                                                                          "caps": {"0": "a"}}),
                     _slots(["emulated", "pc", "pc", "pc"]), "r", "00" * 16)


@pytest.mark.parametrize("hidden", [0, 513, 1.5, "64"])
def test_a_bad_width_is_refused(hidden):
    spec = RunSpec(app="heterofl", nodes=3, server=2, args={"hidden": hidden})
    with pytest.raises(ConfigError, match="args.hidden: expected an integer between 1 and 512"):
        node_configs(spec, _slots(["pc"] * 3), "r", "00" * 16)
