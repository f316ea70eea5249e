"""The fault plan: validation, normalisation and a fluent builder for tests.

The normalised plan is the plain-dict JSON form the firmware's fault layer receives (design.md,
"Fault plan"): the same keys, every list present, per-entry defaults filled, probabilities and
milliseconds as floats. Keys whose default is "absent" (`rounds`, `burst`, `down`, a partition's
time window) stay absent rather than null, so the firmware may test them with `in` or `.get`.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

from flhil.vocab import MESSAGE_FAULT_KINDS, PLAN_FAULT_KINDS, FL_PHASES

from flhil.harness.config.schema import (At, AnyOf, Checked, Float, Int, ListOf, Probability, Source,
                            Spec, Str, Table, describe, optional, required)

# Every kind `kinds()` can report; "none" stands for an empty plan.
FAULT_KINDS = ("none",) + PLAN_FAULT_KINDS

SEED_MAX = 2**32 - 1  # the fault layer seeds xorshift32 generators
PLAN_LISTS = ("links", "partitions", "dropouts", "slot_jitter", "clock_skew")


def _node_id(nodes: int | None) -> Spec:
    if nodes is None:
        return Int(0, expected="a node id (an integer >= 0)")
    return Int(0, nodes - 1, expected=f"a node id from 0 to {nodes - 1}")


def _node_or_all(nodes: int | None) -> Spec:
    node = _node_id(nodes)
    return AnyOf(node, Str(choices=["*"]), expected=f'{node.expected} or "*"')


def _ordered_pair(value, at):
    if value[0] > value[1]:
        at.fail(f"expected [first, last] with first <= last, got {describe(value)}")


ROUNDS = Checked(ListOf(Int(0), min_len=2, max_len=2), _ordered_pair,
                 expected="[first, last]: two iterations or slots >= 0 with first <= last")


def _link_not_to_itself(link, at):
    if isinstance(link["src"], int) and link["src"] == link["dst"]:
        (at / "dst").fail(f"src and dst are both node {link['src']}; a node sends nothing to itself")


def _disjoint_groups(partition, at):
    seen: dict[int, int] = {}
    for g, group in enumerate(partition["groups"]):
        for k, node in enumerate(group):
            if node in seen:
                where = "twice in group" if seen[node] == g else f"in groups {seen[node]} and"
                (at / "groups" / g / k).fail(f"node {node} is {where} {g}; groups must be disjoint")
            seen[node] = g


def _one_window(partition, at):
    has_time = "start_ms" in partition or "end_ms" in partition
    if has_time and "rounds" in partition:
        at.fail("give either rounds or start_ms/end_ms, not both")
    if has_time:
        partition.setdefault("start_ms", 0.0)
        end = partition.get("end_ms")
        if end is not None and end <= partition["start_ms"]:
            (at / "end_ms").fail(f"expected end_ms > start_ms ({partition['start_ms']:g}), got {end:g}")


def _dropouts_do_not_overlap(plan, at):
    """A node cannot die again before it has come back."""
    busy: dict[int, tuple[int, int]] = {}  # node -> (index of its last dropout, step it is back)
    order = sorted(range(len(plan["dropouts"])), key=lambda i: plan["dropouts"][i]["at"])
    for i in order:
        dropout = plan["dropouts"][i]
        node, start = dropout["node"], dropout["at"]
        if node in busy and start < busy[node][1]:
            (at / "dropouts" / i).fail(
                f"node {node} is still down from dropouts[{busy[node][0]}] at step {start}")
        back = start + dropout["down"] if "down" in dropout else float("inf")
        busy[node] = (i, back)


def fault_plan_spec(nodes: int | None = None) -> Table:
    """Schema of the fault plan; node ids are range-checked when the node count is known."""
    node, node_or_all = _node_id(nodes), _node_or_all(nodes)
    burst = Table({
        "p": required(Float(0, 1, min_open=True, expected="a probability > 0 and <= 1")),
        "r": required(Float(0, 1, min_open=True, expected="a probability > 0 and <= 1")),
        "loss_good": optional(Probability(), 0.0),
        "loss_bad": optional(Probability(), 1.0),
    }, expected="a table { p, r, loss_good, loss_bad } (Gilbert-Elliott)")
    link = Table({
        "src": optional(node_or_all, "*"),
        "dst": optional(node_or_all, "*"),
        "loss": optional(Probability(), 0.0),
        "burst": burst,
        "delay_ms": optional(Float(0), 0.0),
        "jitter_ms": optional(Float(0), 0.0),
        "dup": optional(Probability(), 0.0),
        "reorder": optional(Probability(), 0.0),
        "rounds": ROUNDS,
    }, checks=[_link_not_to_itself])
    group = ListOf(node, min_len=1)
    partition = Table({
        "groups": required(ListOf(group, min_len=2, expected="a list of at least 2 groups of node ids")),
        "rounds": ROUNDS,
        "start_ms": Float(0),
        "end_ms": Float(0),
    }, checks=[_disjoint_groups, _one_window])
    dropout = Table({
        "node": required(node),
        "at": required(Int(0, expected="an iteration or slot >= 0")),
        "down": Int(1, expected="a number of steps >= 1 (leave it out for a node that never returns)"),
    })
    slot_jitter = Table({
        "node": optional(node_or_all, "*"),
        "max_ms": required(Float(0)),
    })
    clock_skew = Table({
        "node": required(node_or_all),
        "ppm": optional(Float(-1e6, 1e6, min_open=True, max_open=True), 0.0),
        "offset_ms": optional(Float(), 0.0),
    })
    scripted = Table({
        "src": required(node),
        "dst": required(node),
        "p": required(Str(choices=FL_PHASES)),
        "i": required(Int(0, expected="an iteration or slot >= 0")),
        "kind": required(Str(choices=MESSAGE_FAULT_KINDS)),
        "ms": Float(0),
    })
    return Table({
        "seed": Int(0, SEED_MAX),
        "script": optional(ListOf(scripted, expected="an array of tables [[faults.script]]"), []),
        "links": optional(ListOf(link, expected="an array of tables [[faults.links]]"), []),
        "partitions": optional(ListOf(partition, expected="an array of tables [[faults.partitions]]"), []),
        "dropouts": optional(ListOf(dropout, expected="an array of tables [[faults.dropouts]]"), []),
        "slot_jitter": optional(ListOf(slot_jitter, expected="an array of tables [[faults.slot_jitter]]"), []),
        "clock_skew": optional(ListOf(clock_skew, expected="an array of tables [[faults.clock_skew]]"), []),
    }, checks=[_dropouts_do_not_overlap])


def validate_fault_plan(plan: Any, at: At, nodes: int | None = None) -> dict:
    """Validate a fault plan found at `at` (used by the scenario loader)."""
    return fault_plan_spec(nodes).validate({} if plan is None else plan, at)


def normalise_fault_plan(plan: Any, nodes: int | None = None, *, run_seed: int | None = None,
                         path: Any = None) -> dict:
    """The firmware's JSON form of `plan`; ConfigError on a mistake (key paths start at `faults`).

    `run_seed` fills `seed` when the plan does not set its own (design: "default: the run seed").
    Normalising a normalised plan returns an equal plan.
    """
    out = validate_fault_plan(plan, At(Source(path), ("faults",)), nodes)
    if run_seed is not None:
        out.setdefault("seed", run_seed)
    return out


def fault_kinds(plan: Any) -> tuple[str, ...]:
    """Kinds of fault the plan can inject, in FAULT_KINDS order; ("none",) for an empty plan."""
    plan = normalise_fault_plan(plan)
    found = set()
    for link in plan["links"]:
        found.update(kind for kind, active in [
            ("loss", link["loss"] > 0),
            ("burst_loss", "burst" in link),
            ("delay", link["delay_ms"] > 0 or link["jitter_ms"] > 0),
            ("dup", link["dup"] > 0),
            ("reorder", link["reorder"] > 0),
        ] if active)
    if plan["partitions"]:
        found.add("partition")
    found.update(entry["kind"] if entry["kind"] != "partition" else "partition" for entry in plan["script"])
    if plan["dropouts"]:
        found.add("dropout")
    if any("down" in d for d in plan["dropouts"]):
        found.add("rejoin")
    if any(j["max_ms"] > 0 for j in plan["slot_jitter"]):
        found.add("slot_jitter")
    if any(s["ppm"] != 0 or s["offset_ms"] != 0 for s in plan["clock_skew"]):
        found.add("clock_skew")
    return tuple(kind for kind in FAULT_KINDS if kind in found) or ("none",)


class FaultPlan:
    """Fluent builder of fault plans for tests.

    Link faults take `src`, `dst` (node id or "*", default "*") and optional `rounds=(a, b)`.
    Consecutive link calls with the same selector fill one [[links]] entry, so
    `.loss(0.1, dst=0).delay(ms=5, dst=0)` is one link; another selector starts a new entry.
    Nothing is checked until `to_dict()`.
    """

    def __init__(self, seed: int | None = None, nodes: int | None = None):
        self.nodes = nodes
        self._plan: dict[str, Any] = {} if seed is None else {"seed": seed}
        for name in PLAN_LISTS:
            self._plan[name] = []

    @classmethod
    def from_dict(cls, plan: dict, nodes: int | None = None) -> FaultPlan:
        builder = cls(nodes=nodes)
        builder._plan.update(copy.deepcopy(plan))
        return builder

    # -- link faults

    def _link(self, src, dst, rounds, **faults) -> FaultPlan:
        selector = {"src": src, "dst": dst}
        if rounds is not None:
            selector["rounds"] = list(rounds)
        links = self._plan["links"]
        last = links[-1] if links else None
        if last is not None and {k: last.get(k) for k in ("src", "dst", "rounds")} == \
                {"rounds": None, **selector} and not set(faults) & set(last):
            last.update(faults)
        else:
            links.append({**selector, **faults})
        return self

    def loss(self, p: float, src="*", dst="*", rounds=None) -> FaultPlan:
        return self._link(src, dst, rounds, loss=p)

    def burst(self, p: float, r: float, loss_good: float = 0.0, loss_bad: float = 1.0,
              src="*", dst="*", rounds=None) -> FaultPlan:
        burst = {"p": p, "r": r, "loss_good": loss_good, "loss_bad": loss_bad}
        return self._link(src, dst, rounds, burst=burst)

    def delay(self, ms: float, jitter_ms: float = 0.0, src="*", dst="*", rounds=None) -> FaultPlan:
        return self._link(src, dst, rounds, delay_ms=ms, jitter_ms=jitter_ms)

    def dup(self, p: float, src="*", dst="*", rounds=None) -> FaultPlan:
        return self._link(src, dst, rounds, dup=p)

    def reorder(self, p: float, src="*", dst="*", rounds=None) -> FaultPlan:
        return self._link(src, dst, rounds, reorder=p)

    # -- node and network faults

    def partition(self, groups: Iterable[Iterable[int]], rounds=None, start_ms=None,
                  end_ms=None) -> FaultPlan:
        entry: dict[str, Any] = {"groups": [list(g) for g in groups]}
        if rounds is not None:
            entry["rounds"] = list(rounds)
        if start_ms is not None:
            entry["start_ms"] = start_ms
        if end_ms is not None:
            entry["end_ms"] = end_ms
        self._plan["partitions"].append(entry)
        return self

    def dropout(self, node: int, at: int, down: int | None = None) -> FaultPlan:
        entry = {"node": node, "at": at}
        if down is not None:
            entry["down"] = down
        self._plan["dropouts"].append(entry)
        return self

    def slot_jitter(self, max_ms: float, node="*") -> FaultPlan:
        self._plan["slot_jitter"].append({"node": node, "max_ms": max_ms})
        return self

    def clock_skew(self, node, ppm: float = 0.0, offset_ms: float = 0.0) -> FaultPlan:
        self._plan["clock_skew"].append({"node": node, "ppm": ppm, "offset_ms": offset_ms})
        return self

    # -- results

    def to_dict(self, nodes: int | None = None, run_seed: int | None = None) -> dict:
        """The validated, normalised plan (ConfigError on a mistake)."""
        return normalise_fault_plan(self._plan, nodes if nodes is not None else self.nodes,
                                    run_seed=run_seed)

    def kinds(self) -> tuple[str, ...]:
        return fault_kinds(self.to_dict())

    def __repr__(self):
        return f"FaultPlan.from_dict({self._plan!r})"
