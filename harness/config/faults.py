"""The fault plan: validation, normalisation and a fluent builder for tests.

The normalised plan is the plain-dict JSON form the firmware's fault layer receives (design.md,
"Fault plan"): the same keys, every list present, per-entry defaults filled, probabilities and
milliseconds as floats. Keys whose default is "absent" (`rounds`, `burst`, `down`, a partition's
time window) stay absent rather than null, so the firmware may test them with `in` or `.get`.
"""

import copy
from typing import Annotated, Any, Iterable

from pydantic import Field

from flhil.harness.config.model import (ConfigModel, Expect, Float, Int, NodeId, NodeOrAll, OneOf,
                                        Probability, validate)
from flhil.harness.config.toml import At, Source, describe
from flhil.vocab import FL_PHASES, PLAN_FAULT_KINDS, SCRIPT_KINDS, STALL_KIND

# Every kind `kinds()` can report; "none" stands for an empty plan.
FAULT_KINDS = ("none",) + PLAN_FAULT_KINDS

SEED_MAX = 2**32 - 1  # the fault layer seeds xorshift32 generators
PLAN_LISTS = ("links", "partitions", "dropouts", "slot_jitter", "clock_skew")


Rounds = Annotated[list[Int(0)],
                   Field(min_length=2, max_length=2),
                   Expect("[first, last]: two iterations or slots >= 0 with first <= last")]


def _ordered(rounds, at):
    if rounds is not None and rounds[0] > rounds[1]:
        at.fail(f"expected [first, last] with first <= last, got {describe(rounds)}")


class Burst(ConfigModel):
    """Gilbert-Elliott bursty loss."""
    p: Float(0, 1, lo_open=True, expected="a probability > 0 and <= 1",
             description="probability of moving from the good to the bad state, per message")
    r: Float(0, 1, lo_open=True, expected="a probability > 0 and <= 1",
             description="probability of moving from the bad state back to the good one")
    loss_good: Probability(description="loss probability in the good state") = 0.0
    loss_bad: Probability(description="loss probability in the bad state") = 1.0


class Link(ConfigModel):
    """Faults on every message sent from src to dst."""
    src: NodeOrAll(description='sending node id, or "*"') = "*"
    dst: NodeOrAll(description='receiving node id, or "*"') = "*"
    loss: Probability(description="random loss probability") = 0.0
    burst: Burst | None = Field(None, description="Gilbert-Elliott bursty loss")
    delay_ms: Float(0, description="added delay") = 0.0
    jitter_ms: Float(0, description="uniform jitter in [-jitter, +jitter] around the delay, clipped at 0") = 0.0
    dup: Probability(description="probability of sending a copy") = 0.0
    reorder: Probability(description="probability of holding a message behind the next one") = 0.0
    rounds: Rounds | None = Field(None, description="only iterations/slots first..last (inclusive)")

    def check(self, at, ctx):
        _ordered(self.rounds, at / "rounds")
        if isinstance(self.src, int) and self.src == self.dst:
            (at / "dst").fail(f"src and dst are both node {self.src}; a node sends nothing to itself")


class Partition(ConfigModel):
    """No traffic between groups, for some rounds or a time window; heals afterwards."""
    groups: Annotated[list[Annotated[list[NodeId()], Field(min_length=1)]], Field(min_length=2),
                      Expect("a list of at least 2 groups of node ids")] = Field(
        description="disjoint groups of node ids; nodes not listed are unaffected")
    rounds: Rounds | None = Field(None, description="iterations/slots first..last")
    start_ms: Float(0, description="window start, from the start barrier") | None = None
    end_ms: Float(0, description="window end, from the start barrier") | None = None

    def check(self, at, ctx):
        _ordered(self.rounds, at / "rounds")
        seen: dict[int, int] = {}
        for g, group in enumerate(self.groups):
            for k, node in enumerate(group):
                if node in seen:
                    where = "twice in group" if seen[node] == g else f"in groups {seen[node]} and"
                    (at / "groups" / g / k).fail(f"node {node} is {where} {g}; groups must be disjoint")
                seen[node] = g
        has_time = self.start_ms is not None or self.end_ms is not None
        if has_time and self.rounds is not None:
            at.fail("give either rounds or start_ms/end_ms, not both")
        if has_time:
            if self.start_ms is None:
                self.start_ms = 0.0
            if self.end_ms is not None and self.end_ms <= self.start_ms:
                (at / "end_ms").fail(f"expected end_ms > start_ms ({self.start_ms:g}), got {self.end_ms:g}")


class Dropout(ConfigModel):
    """A node dies at a step and maybe comes back (its local model reset)."""
    node: NodeId(description="the node that drops out")
    at: Int(0, expected="an iteration or slot >= 0", description="iteration or slot at which it dies")
    down: Int(1, expected="a number of steps >= 1 (leave it out for a node that never returns)",
              description="steps it stays down; absent: it never comes back") | None = None


class SlotJitter(ConfigModel):
    """Each TDM slot's send starts late by a uniform draw."""
    node: NodeOrAll(description='node id, or "*"') = "*"
    max_ms: Float(0, description="the largest lateness, ms")


class ClockSkew(ConfigModel):
    """A node's clock runs fast or slow and its slot 0 starts off."""
    node: NodeOrAll(description='node id, or "*"')
    ppm: Float(-1e6, 1e6, lo_open=True, hi_open=True, description="clock rate error, parts per million") = 0.0
    offset_ms: Float(description="error of the node's slot-0 start, ms") = 0.0


class Scripted(ConfigModel):
    """One exact decision recorded from an earlier run (replay): an injected fault on one message,
    a late arrival of one message at its receiver, or a stall of one node at one step."""
    src: NodeId(description="sender (for kind = stall: the node that stalled)")
    dst: NodeId(description="receiver (not for kind = stall)") | None = None
    p: OneOf(FL_PHASES, description="phase of the message (not for kind = stall)") | None = None
    i: Int(0, expected="an iteration or slot >= 0", description="iteration or slot of the message or stall")
    kind: OneOf(SCRIPT_KINDS, description="what happened to it")
    ms: Float(0, description="delay (kind = delay); the stall (kind = stall); for kind = late, how long "
              "after the receiver left the step it came (absent: not before the receiver ended)") | None = None

    def check(self, at, ctx):
        if self.kind == STALL_KIND:
            if self.ms is None:
                (at / "ms").fail("a stall needs ms, how long the node stalled")
            return
        for key in ("dst", "p"):
            if getattr(self, key) is None:
                (at / key).fail(f"kind {self.kind} needs {key}")


def _tables(model, name):
    return Field(default_factory=list, description=f"array of tables [[faults.{name}]]")


class FaultPlanConfig(ConfigModel):
    """The fault plan: the same structure in a scenario's [faults] and in the run config."""
    seed: Int(0, SEED_MAX, description="seed of the fault layer; default: the run seed") | None = None
    script: Annotated[list[Scripted], Expect("an array of tables [[faults.script]]")] = _tables(Scripted, "script")
    links: Annotated[list[Link], Expect("an array of tables [[faults.links]]")] = _tables(Link, "links")
    partitions: Annotated[list[Partition], Expect("an array of tables [[faults.partitions]]")] = \
        _tables(Partition, "partitions")
    dropouts: Annotated[list[Dropout], Expect("an array of tables [[faults.dropouts]]")] = \
        _tables(Dropout, "dropouts")
    slot_jitter: Annotated[list[SlotJitter], Expect("an array of tables [[faults.slot_jitter]]")] = \
        _tables(SlotJitter, "slot_jitter")
    clock_skew: Annotated[list[ClockSkew], Expect("an array of tables [[faults.clock_skew]]")] = \
        _tables(ClockSkew, "clock_skew")

    def check(self, at, ctx):
        """A node cannot die again before it has come back."""
        busy: dict[int, tuple[int, float]] = {}  # node -> (index of its last dropout, step it is back)
        order = sorted(range(len(self.dropouts)), key=lambda i: self.dropouts[i].at)
        for i in order:
            d = self.dropouts[i]
            if d.node in busy and d.at < busy[d.node][1]:
                (at / "dropouts" / i).fail(f"node {d.node} is still down from dropouts[{busy[d.node][0]}] "
                                           f"at step {d.at}")
            busy[d.node] = (i, d.at + d.down if d.down is not None else float("inf"))


def validate_fault_plan(plan: Any, at: At, nodes: int | None = None) -> dict:
    """Validate a fault plan found at `at` (used by the scenario loader)."""
    return validate(FaultPlanConfig, {} if plan is None else plan, at, {"nodes": nodes}).data()


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
    def from_dict(cls, plan: dict, nodes: int | None = None) -> "FaultPlan":
        builder = cls(nodes=nodes)
        builder._plan.update(copy.deepcopy(plan))
        return builder

    # -- link faults

    def _link(self, src, dst, rounds, **faults) -> "FaultPlan":
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

    def loss(self, p: float, src="*", dst="*", rounds=None) -> "FaultPlan":
        return self._link(src, dst, rounds, loss=p)

    def burst(self, p: float, r: float, loss_good: float = 0.0, loss_bad: float = 1.0,
              src="*", dst="*", rounds=None) -> "FaultPlan":
        burst = {"p": p, "r": r, "loss_good": loss_good, "loss_bad": loss_bad}
        return self._link(src, dst, rounds, burst=burst)

    def delay(self, ms: float, jitter_ms: float = 0.0, src="*", dst="*", rounds=None) -> "FaultPlan":
        return self._link(src, dst, rounds, delay_ms=ms, jitter_ms=jitter_ms)

    def dup(self, p: float, src="*", dst="*", rounds=None) -> "FaultPlan":
        return self._link(src, dst, rounds, dup=p)

    def reorder(self, p: float, src="*", dst="*", rounds=None) -> "FaultPlan":
        return self._link(src, dst, rounds, reorder=p)

    # -- node and network faults

    def partition(self, groups: Iterable[Iterable[int]], rounds=None, start_ms=None,
                  end_ms=None) -> "FaultPlan":
        entry: dict[str, Any] = {"groups": [list(g) for g in groups]}
        if rounds is not None:
            entry["rounds"] = list(rounds)
        if start_ms is not None:
            entry["start_ms"] = start_ms
        if end_ms is not None:
            entry["end_ms"] = end_ms
        self._plan["partitions"].append(entry)
        return self

    def dropout(self, node: int, at: int, down: int | None = None) -> "FaultPlan":
        entry = {"node": node, "at": at}
        if down is not None:
            entry["down"] = down
        self._plan["dropouts"].append(entry)
        return self

    def slot_jitter(self, max_ms: float, node="*") -> "FaultPlan":
        self._plan["slot_jitter"].append({"node": node, "max_ms": max_ms})
        return self

    def clock_skew(self, node, ppm: float = 0.0, offset_ms: float = 0.0) -> "FaultPlan":
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
