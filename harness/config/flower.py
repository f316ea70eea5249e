"""The `[flower]` table of a scenario (docs/flower.md): a Flower project run on a Flower lab, and
the faults only that level has. Node ids: 0 is the SuperLink (and its ServerApp), 1..supernodes
the SuperNodes, SuperNode i with partition-id i - 1.

Which keys of the fault plan mean something on Flower's links: `[[faults.links]]` delay_ms,
jitter_ms (and rounds), `[[faults.partitions]]` (cutting SuperNodes off the SuperLink), and
`[[faults.dropouts]]` (a SuperNode stopped, restarted after `down` rounds). Per-message loss,
bursts, duplication, reordering, slot jitter, clock skew and scripts have no meaning on a TCP
stream between Flower's processes: `check_fault_plan` names the key as a config error."""
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from flhil.harness.config.model import ConfigModel, Expect, Float, Int, NodeId, NodeOrAll, OneOf, Text

MAX_SUPERNODES = 64
NODE_ACTIONS = ("stop", "pause", "restart")


class RunConfig(ConfigModel):
    """Overrides of the project's [tool.flwr.app.config] (`flwr run --run-config`)."""
    model_config = ConfigDict(extra="allow")


class FlowerLink(ConfigModel):
    """Faults of a SuperNode's link that only a TCP proxy has."""
    node: NodeOrAll(description='the SuperNode (1..supernodes), or "*"') = "*"
    kbps: Float(0, lo_open=True, description="bandwidth limit each way, kbit/s") | None = None
    resets_ms: Annotated[list[Float(0)], Expect("a list of times in ms")] = Field(
        default_factory=list, description="times (ms from the ServerApp's start) the link's connections are reset")
    reset_rounds: Annotated[list[Int(1)], Expect("a list of rounds >= 1")] = Field(
        default_factory=list, description="rounds at whose start the link's connections are reset")

    def check(self, at, ctx):
        if self.node == 0:
            (at / "node").fail("node 0 is the SuperLink; its links are the SuperNodes' (1..)")


class NodeFault(ConfigModel):
    """A SuperNode stopped (SIGKILL), paused (SIGSTOP, then SIGCONT) or restarted at a round or time."""
    node: NodeId(description="the SuperNode (1..supernodes)")
    action: OneOf(NODE_ACTIONS, description="stop: killed (back after for_ms / rounds if given); pause: "
                  "SIGSTOP then SIGCONT; restart: killed and started again at once")
    at: Int(1, description="the round at whose start it happens") | None = None
    at_ms: Float(0, description="or the time, ms from the ServerApp's start") | None = None
    for_ms: Float(0, lo_open=True, description="how long it stays stopped or paused, ms") | None = None
    rounds: Int(1, description="or for how many rounds") | None = None

    def check(self, at, ctx):
        if self.node == 0:
            (at / "node").fail("node 0 is the SuperLink; node faults act on SuperNodes (1..)")
        if (self.at is None) == (self.at_ms is None):
            at.fail("give the round (at) or the time (at_ms) of the fault, one of them")
        if self.rounds is not None and self.at is None:
            (at / "rounds").fail("rounds counts from the round `at`; with at_ms give for_ms")
        if self.for_ms is not None and self.rounds is not None:
            (at / "rounds").fail("give for_ms or rounds, not both")
        if self.action == "pause" and self.for_ms is None and self.rounds is None:
            at.fail("a pause needs for_ms or rounds (how long the SuperNode stays stopped)")
        if self.action == "restart" and (self.for_ms is not None or self.rounds is not None):
            at.fail("a restart starts the SuperNode again at once; for a stop that lasts, use action = \"stop\"")


class FlowerConfig(ConfigModel):
    project: Text(description="the Flower project directory (pyproject.toml with [tool.flwr.app]), "
                  "relative to the scenario file")
    supernodes: Int(1, MAX_SUPERNODES, description="SuperNodes of the lab (fl-hil nodes 1..supernodes)")
    run_config: RunConfig = Field(default_factory=RunConfig, description="overrides of the project's run config")
    poll_s: Float(0, lo_open=True, description="how often the ServerApp pulls replies, s (Flower's own: 3)") = 0.25
    startup_s: Float(0, lo_open=True, description="longest the lab may take to come up, s") = 90.0
    stall_s: Float(0, lo_open=True, description="a run with no new event from the ServerApp for this long "
                   "is a hang; default: twice the project's round-timeout plus 20 s") | None = None
    deadline_s: Float(0, lo_open=True, description="longest the whole run may take, s; default from the "
                      "rounds and round-timeout") | None = None
    links: Annotated[list[FlowerLink], Expect("an array of tables [[flower.links]]")] = Field(
        default_factory=list, description="bandwidth limits and connection resets")
    node_faults: Annotated[list[NodeFault], Expect("an array of tables [[flower.node_faults]]")] = Field(
        default_factory=list, description="SuperNodes stopped, paused or restarted")


# fault plan keys with no meaning between Flower's processes: (table, key) -> why
_NO_MEANING = {
    ("links", "loss"): "per-message loss",
    ("links", "burst"): "bursty per-message loss",
    ("links", "dup"): "message duplication",
    ("links", "reorder"): "message reordering",
    ("slot_jitter", None): "TDM slot jitter",
    ("clock_skew", None): "clock skew",
    ("script", None): "scripted per-message faults",
}


def check_fault_plan(plan: Any, at) -> None:
    """Fault plan keys that have no meaning on Flower's TCP links are a config error naming them."""
    plan = plan or {}
    for (table, key), what in _NO_MEANING.items():
        entries = plan.get(table) or []
        for i, entry in enumerate(entries):
            if key is None:
                (at / table).fail(f"{what} has no meaning in a Flower run (TCP streams between Flower's "
                                  "processes); leave [[faults.%s]] out" % table)
            if isinstance(entry, dict) and key in entry and entry[key] not in (0, 0.0, None):
                (at / table / i / key).fail(
                    f"{what} has no meaning in a Flower run (Flower's messages go over TCP, which "
                    "neither loses nor duplicates bytes); use delay_ms, jitter_ms, [[faults.partitions]], "
                    "[[flower.links]] kbps or resets instead")
    for i, part in enumerate(plan.get("partitions") or []):
        groups = part.get("groups") if isinstance(part, dict) else None
        if isinstance(groups, list) and not any(isinstance(g, list) and 0 in g for g in groups):
            (at / "partitions" / i / "groups").fail(
                "a Flower lab's links all end at the SuperLink (node 0): list node 0 in one group, "
                "the SuperNodes cut off from it in the others")
