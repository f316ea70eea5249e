"""The fault schedule of a Flower run: the scenario's fault plan (the keys that mean something
between Flower's processes, config/flower.py) and its [flower] links and node faults, as actions
at the start of a round (Flower's rounds count from 1) or at a time (ms from the ServerApp's
start). `Schedule.due(round, ms)` hands out each action once, in order."""

ROUND, TIME = "round", "time"


class Action:
    __slots__ = ("when", "at", "node", "kind", "args", "done")

    def __init__(self, when, at, node, kind, **args):
        self.when, self.at, self.node, self.kind, self.args = when, at, node, kind, args
        self.done = False

    def __repr__(self):
        return "Action(%s %s node %s %s %s)" % (self.when, self.at, self.node, self.kind, self.args)


def _nodes(ref, supernodes):
    return list(range(1, supernodes + 1)) if ref == "*" else [ref]


def _window(actions, node, on, off, rounds=None, start_ms=None, end_ms=None):
    """`on` at the window's start, `off` after its end (a round window ends at the start of the round
    after its last)."""
    if rounds is not None:
        actions.append(Action(ROUND, rounds[0], node, on[0], **on[1]))
        actions.append(Action(ROUND, rounds[1] + 1, node, off[0], **off[1]))
    elif start_ms is not None:
        actions.append(Action(TIME, start_ms, node, on[0], **on[1]))
        if end_ms is not None:
            actions.append(Action(TIME, end_ms, node, off[0], **off[1]))
    else:
        actions.append(Action(TIME, None, node, on[0], **on[1]))  # from the start: before the nodes connect


def build(plan, flower, supernodes):
    """The actions of a fault plan (normalised) and a [flower] table, for `supernodes` SuperNodes."""
    plan = plan or {}
    actions = []
    for link in plan.get("links") or []:
        src, dst = link.get("src", "*"), link.get("dst", "*")
        delay, jitter = link.get("delay_ms", 0.0), link.get("jitter_ms", 0.0)
        if not delay and not jitter:
            continue
        if src == "*" and dst == "*":
            pairs = [(n, d) for n in _nodes("*", supernodes) for d in ("up", "down")]
        elif dst == 0:
            pairs = [(n, "up") for n in _nodes(src, supernodes)]
        elif src == 0:
            pairs = [(n, "down") for n in _nodes(dst, supernodes)]
        elif dst == "*":
            pairs = [(src, "up")]      # a SuperNode sends only to the SuperLink
        elif src == "*":
            pairs = [(dst, "down")]    # and hears only from it
        else:
            pairs = []                 # SuperNodes never talk to each other: no link to slow
        for node, direction in pairs:
            _window(actions, node, ("delay", {"direction": direction, "ms": delay, "jitter_ms": jitter}),
                    ("delay", {"direction": direction, "ms": 0.0, "jitter_ms": 0.0, "heal": True}),
                    rounds=link.get("rounds"))
    for part in plan.get("partitions") or []:
        groups = part.get("groups") or []
        home = next((g for g in groups if 0 in g), [])
        cut = sorted(n for g in groups if g is not home for n in g)
        for node in cut:
            _window(actions, node, ("partition", {}), ("heal", {}), rounds=part.get("rounds"),
                    start_ms=part.get("start_ms"), end_ms=part.get("end_ms"))
    for d in plan.get("dropouts") or []:
        actions.append(Action(ROUND, max(1, d["at"]), d["node"], "crash"))
        if d.get("down") is not None:
            actions.append(Action(ROUND, max(1, d["at"]) + d["down"], d["node"], "rejoin"))
    for link in (flower or {}).get("links") or []:
        for node in _nodes(link.get("node", "*"), supernodes):
            if link.get("kbps"):
                actions.append(Action(TIME, None, node, "bandwidth", kbps=link["kbps"]))
            for ms in link.get("resets_ms") or []:
                actions.append(Action(TIME, ms, node, "reset"))
            for r in link.get("reset_rounds") or []:
                actions.append(Action(ROUND, r, node, "reset"))
    for f in (flower or {}).get("node_faults") or []:
        when, at = (ROUND, f["at"]) if f.get("at") is not None else (TIME, f["at_ms"])
        node, action = f["node"], f["action"]
        if action == "restart":
            actions.append(Action(when, at, node, "crash", restart=True))
            actions.append(Action(when, at, node, "rejoin", restart=True))
            continue
        on, off = ("crash", "rejoin") if action == "stop" else ("pause", "resume")
        actions.append(Action(when, at, node, on))
        if f.get("rounds") is not None:
            actions.append(Action(ROUND, at + f["rounds"], node, off))
        elif f.get("for_ms") is not None:
            actions.append(Action(TIME, (at if when == TIME else None), node, off, after_ms=f["for_ms"]))
    return Schedule(actions)


class Schedule:
    def __init__(self, actions):
        self.actions = actions
        self._relative = {}  # id(action) -> absolute ms, for actions timed from when another happened

    def initial(self):
        """Actions in force from the start (before any SuperNode connects)."""
        out = [a for a in self.actions if a.when == TIME and a.at is None and "after_ms" not in a.args]
        for a in out:
            a.done = True
        return out

    def due(self, round_now, ms_now):
        """Actions whose round has started or whose time has come, each once, in plan order."""
        out = []
        for a in self.actions:
            if a.done:
                continue
            if a.when == ROUND and round_now >= a.at:
                out.append(a)
            elif a.when == TIME and a.at is not None and ms_now >= a.at and "after_ms" not in a.args:
                out.append(a)
            elif "after_ms" in a.args and id(a) in self._relative and ms_now >= self._relative[id(a)]:
                out.append(a)
        for a in out:
            a.done = True
        return out

    def happened(self, action, ms_now):
        """`action` was applied at ms_now: the relative ones that follow it (a pause's resume) start counting."""
        for a in self.actions:
            if a.node == action.node and not a.done and "after_ms" in a.args and id(a) not in self._relative \
                    and a.kind in ("rejoin", "resume") and action.kind in ("crash", "pause"):
                self._relative[id(a)] = ms_now + a.args["after_ms"]
                break

    def kinds(self):
        return sorted({a.kind for a in self.actions})
