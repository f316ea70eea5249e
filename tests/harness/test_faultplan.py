"""Fault plan validation, normalisation and the fluent builder."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from flhil.harness.errors import ConfigError
from flhil.harness.config.faults import FAULT_KINDS, FaultPlan, fault_kinds, normalise_fault_plan


def test_builder_example_from_the_brief_normalises():
    plan = (FaultPlan().loss(0.1, src="*", dst=0).burst(p=0.05, r=0.4).delay(ms=5, jitter_ms=2)
            .dup(0.05).reorder(0.1).partition([[0, 1], [2, 3]], rounds=(2, 4))
            .dropout(node=3, at=2, down=3).slot_jitter(max_ms=4)
            .clock_skew(node=2, ppm=500, offset_ms=1))
    out = plan.to_dict(nodes=4)
    assert out["links"][0] == {"src": "*", "dst": 0, "loss": 0.1, "delay_ms": 0.0,
                               "jitter_ms": 0.0, "dup": 0.0, "reorder": 0.0}
    # the later link calls share the selector "*" -> "*", so they fill one entry
    assert out["links"][1]["burst"] == {"p": 0.05, "r": 0.4, "loss_good": 0.0, "loss_bad": 1.0}
    assert (out["links"][1]["delay_ms"], out["links"][1]["jitter_ms"]) == (5.0, 2.0)
    assert out["partitions"] == [{"groups": [[0, 1], [2, 3]], "rounds": [2, 4]}]
    assert out["dropouts"] == [{"node": 3, "at": 2, "down": 3}]
    assert out["slot_jitter"] == [{"node": "*", "max_ms": 4.0}]
    assert out["clock_skew"] == [{"node": 2, "ppm": 500.0, "offset_ms": 1.0}]
    assert "seed" not in out
    assert json.loads(json.dumps(out)) == out  # plain JSON for the firmware
    assert plan.kinds() == tuple(k for k in FAULT_KINDS if k != "none")


def test_empty_plan_has_every_list_and_kind_none():
    assert normalise_fault_plan({}) == {"links": [], "partitions": [], "dropouts": [],
                                        "slot_jitter": [], "clock_skew": [], "script": []}
    assert normalise_fault_plan(None) == normalise_fault_plan({})
    assert FaultPlan().kinds() == ("none",)


def test_run_seed_fills_seed_only_when_the_plan_has_none():
    assert normalise_fault_plan({}, run_seed=5)["seed"] == 5
    assert normalise_fault_plan({"seed": 7}, run_seed=5)["seed"] == 7
    assert FaultPlan(seed=3).to_dict()["seed"] == 3


@pytest.mark.parametrize("plan, kinds", [
    (FaultPlan().loss(0.2), ("loss",)),
    (FaultPlan().loss(0.0), ("none",)),
    (FaultPlan().burst(p=0.1, r=0.5), ("burst_loss",)),
    (FaultPlan().delay(ms=0, jitter_ms=3), ("delay",)),
    (FaultPlan().dropout(node=1, at=0), ("dropout",)),
    (FaultPlan().dropout(node=1, at=0, down=2), ("dropout", "rejoin")),
    (FaultPlan().slot_jitter(max_ms=0), ("none",)),
    (FaultPlan().clock_skew(node=1, ppm=0, offset_ms=-2), ("clock_skew",)),
    (FaultPlan().partition([[0], [1]], start_ms=100, end_ms=300), ("partition",)),
])
def test_kinds(plan, kinds):
    assert plan.kinds() == kinds
    assert fault_kinds(plan.to_dict()) == kinds


def test_different_selectors_make_separate_links():
    out = FaultPlan().loss(0.1, dst=0).loss(0.2, dst=1).dup(0.1, dst=1).to_dict(nodes=3)
    assert [(l["dst"], l["loss"], l["dup"]) for l in out["links"]] == [(0, 0.1, 0.0), (1, 0.2, 0.1)]
    # the same fault twice on one selector is a second entry, not an overwrite
    assert len(FaultPlan().loss(0.1).loss(0.2).to_dict()["links"]) == 2


def test_partition_time_window_fills_start():
    out = FaultPlan().partition([[0], [1]], end_ms=50).to_dict()
    assert out["partitions"][0] == {"groups": [[0], [1]], "start_ms": 0.0, "end_ms": 50.0}


def test_from_dict_round_trip():
    plan = FaultPlan().loss(0.3, src=1, dst=2, rounds=(1, 1)).to_dict(nodes=3)
    assert FaultPlan.from_dict(plan).to_dict(nodes=3) == plan


@pytest.mark.parametrize("plan, where, why", [
    (FaultPlan().loss(1.5), "faults.links[0].loss", "expected a probability between 0 and 1, got 1.5"),
    (FaultPlan().dup(-0.1, dst=1), "faults.links[0].dup", "probability"),
    (FaultPlan().loss(0.1, dst=4), "faults.links[0].dst", 'expected a node id from 0 to 3 or "*", got 4'),
    (FaultPlan().loss(0.1, src=2, dst=2), "faults.links[0].dst", "src and dst are both node 2"),
    (FaultPlan().loss(0.1, rounds=(5, 2)), "faults.links[0].rounds", "first <= last"),
    (FaultPlan().loss(0.1, rounds=(-1, 2)), "faults.links[0].rounds[0]", "an integer >= 0"),
    (FaultPlan().burst(p=0, r=0.5), "faults.links[0].burst.p", "probability > 0 and <= 1, got 0"),
    (FaultPlan().burst(p=0.5, r=1.2), "faults.links[0].burst.r", "got 1.2"),
    (FaultPlan().delay(ms=-1), "faults.links[0].delay_ms", "a number >= 0, got -1"),
    (FaultPlan().partition([[0, 1], [1, 2]]), "faults.partitions[0].groups[1][0]",
     "node 1 is in groups 0 and 1; groups must be disjoint"),
    (FaultPlan().partition([[0, 1]]), "faults.partitions[0].groups", "at least 2 groups"),
    (FaultPlan().partition([[0], [1]], rounds=(1, 2), end_ms=5), "faults.partitions[0]",
     "either rounds or start_ms/end_ms"),
    (FaultPlan().partition([[0], [1]], start_ms=10, end_ms=5), "faults.partitions[0].end_ms",
     "end_ms > start_ms"),
    (FaultPlan().dropout(node=9, at=1), "faults.dropouts[0].node", "a node id from 0 to 3, got 9"),
    (FaultPlan().dropout(node=1, at=-1), "faults.dropouts[0].at", "got -1"),
    (FaultPlan().dropout(node=1, at=1, down=0), "faults.dropouts[0].down", "steps >= 1"),
    (FaultPlan().dropout(node=1, at=1).dropout(node=1, at=4), "faults.dropouts[1]",
     "node 1 is still down from dropouts[0]"),
    (FaultPlan().slot_jitter(max_ms=-2), "faults.slot_jitter[0].max_ms", "got -2"),
    (FaultPlan().clock_skew(node="x"), "faults.clock_skew[0].node", '"x"'),
    (FaultPlan(seed=-1), "faults.seed", "an integer between 0 and 4294967295"),
])
def test_mistakes_name_the_key_and_reason(plan, where, why):
    with pytest.raises(ConfigError) as caught:
        plan.to_dict(nodes=4)
    assert caught.value.where == where
    assert why in caught.value.why
    assert str(caught.value).startswith(f"{where}: ")


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError) as caught:
        normalise_fault_plan({"links": [{"dst": 0, "los": 0.1}]}, nodes=2)
    assert caught.value.where == "faults.links[0].los"
    assert 'did you mean "loss"?' in caught.value.why
    with pytest.raises(ConfigError, match='did you mean "dropouts"'):
        normalise_fault_plan({"dropout": []})


def test_bool_is_not_a_probability():
    with pytest.raises(ConfigError, match="got true"):
        normalise_fault_plan({"links": [{"loss": True}]})


def test_node_ids_unchecked_without_a_node_count():
    assert FaultPlan().dropout(node=40, at=0).to_dict()["dropouts"][0]["node"] == 40


# -- random valid plans normalise idempotently -------------------------------------------------

NODES = 6
node = st.integers(0, NODES - 1)
node_or_all = st.one_of(node, st.just("*"))
prob = st.floats(0, 1, allow_nan=False)
open_prob = st.floats(0, 1, exclude_min=True, allow_nan=False)
ms = st.one_of(st.integers(0, 1000), st.floats(0, 1000, allow_nan=False))
rounds = st.tuples(st.integers(0, 20), st.integers(0, 20)).map(sorted)


def optional_keys(required, optional):
    return st.fixed_dictionaries(required, optional=optional)


links = st.lists(optional_keys({}, {
    "src": node_or_all, "dst": node_or_all, "loss": prob, "delay_ms": ms, "jitter_ms": ms,
    "dup": prob, "reorder": prob, "rounds": rounds,
    "burst": optional_keys({"p": open_prob, "r": open_prob},
                           {"loss_good": prob, "loss_bad": prob}),
}).filter(lambda l: not (isinstance(l.get("src", "*"), int) and l.get("src") == l.get("dst"))),
    max_size=3)


@st.composite
def partitions(draw):
    nodes = draw(st.permutations(range(NODES)))
    cut = draw(st.integers(1, NODES - 1))
    entry = {"groups": [list(nodes[:cut]), list(nodes[cut:])]}
    window = draw(st.sampled_from(["none", "rounds", "time"]))
    if window == "rounds":
        entry["rounds"] = draw(rounds)
    elif window == "time":
        start = draw(st.integers(0, 100))
        entry["start_ms"] = start
        entry["end_ms"] = start + draw(st.integers(1, 100))
    return entry


dropouts = st.lists(st.fixed_dictionaries({"node": node, "at": st.integers(0, 50)},
                                          optional={"down": st.integers(1, 5)}),
                    max_size=3, unique_by=lambda d: d["node"])

plans = st.fixed_dictionaries({}, optional={
    "seed": st.integers(0, 2**32 - 1),
    "links": links,
    "partitions": st.lists(partitions(), max_size=2),
    "dropouts": dropouts,
    "slot_jitter": st.lists(optional_keys({"max_ms": ms}, {"node": node_or_all}), max_size=2),
    "clock_skew": st.lists(optional_keys({"node": node_or_all},
                                         {"ppm": st.floats(-5000, 5000), "offset_ms": ms}),
                           max_size=2),
})


@settings(max_examples=200, deadline=None)
@given(plans)
def test_random_valid_plans_normalise_idempotently(plan):
    once = normalise_fault_plan(plan, NODES)
    assert normalise_fault_plan(once, NODES) == once
    assert json.loads(json.dumps(once)) == once
    assert set(fault_kinds(once)) <= set(FAULT_KINDS)


def test_config_error_survives_pickling():
    import pickle

    with pytest.raises(ConfigError) as caught:
        FaultPlan().loss(2.0).to_dict()
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.where, copy.why, str(copy)) == (caught.value.where, caught.value.why, str(caught.value))
