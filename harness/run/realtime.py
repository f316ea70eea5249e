"""Run orchestration: from a run spec and a set of lab nodes to a run record.

Phases, each with a deadline: configure, start (every node reaches `ready`), run (every node
reaches `done`). A node that misses a deadline is stopped and the record says what it waited for;
whatever it printed until then stays in the record."""
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field, asdict

from flhil.node import TIMING_DEFAULTS
from flhil.vocab import TERMINAL_EVENT
from flhil.harness.run.telemetry import parse_line

DEFAULT_PORT = 6000


def full_timing(timing):
    """The timing a node runs with: the firmware's defaults under the spec's values."""
    t = dict(TIMING_DEFAULTS)
    t.update(timing or {})
    return t


def step_count(args):
    """Rounds, iterations or slots of a run, from the app's arguments."""
    args = args or {}
    return max(1, args.get("iterations", 0) or 0, (args.get("slots", 0) or 0) * (args.get("blocks", 1) or 1))


@dataclass
class RunSpec:
    app: str
    nodes: int
    algorithm: str = ""
    server: int = 0
    args: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    seed: int = 1
    strict: bool = False
    backend: str = "realtime"       # realtime | virtual
    run_deadline_s: float = None    # default: derived from the timing and the number of steps

    def steps(self):
        return step_count(self.args)

    def timing_full(self):
        return full_timing(self.timing)

    def startup_deadline_s(self):
        return self.timing_full()["startup_ms"] / 1000 + 5

    def deadline_s(self):
        """Longest a healthy run may take: every step at its deadline, plus slack."""
        if self.run_deadline_s is not None:
            return self.run_deadline_s
        t = self.timing_full()
        per_step = max(t["round_ms"], t["recv_ms"], t["slot_ms"]) / 1000
        return self.startup_deadline_s() + self.steps() * per_step * 1.5 + t["linger_ms"] / 1000 + 10

    def to_dict(self):
        return asdict(self)


def node_configs(spec, nodes, run_id=None, key=None, wifi=None):
    """One run config (design.md) per node; node i runs on nodes[i]."""
    run_id = run_id or "r-" + secrets.token_hex(4)
    key = key or secrets.token_hex(16)
    # every address known in advance goes into the config, so the start barrier's go message
    # stays small (a server with 63 clients cannot send 63 copies of a table on a 192 KB heap);
    # a board that learns its address at boot (DHCP) is announced at the barrier instead
    peers = {str(j): [n.address, DEFAULT_PORT] for j, n in enumerate(nodes) if n.address not in (None, "auto")}
    configs = []
    for i, node in enumerate(nodes):
        cfg = {"run": run_id, "key": key, "node": i, "nodes": spec.nodes, "server": spec.server,
               "listen": [node.address, DEFAULT_PORT], "peers": peers,
               "app": spec.app, "args": spec.args, "timing": spec.timing, "strict": spec.strict,
               "seed": spec.seed, "faults": spec.faults}
        if wifi and node.kind == "serial":
            cfg["wifi"] = wifi
        configs.append(cfg)
    return configs


class _Gatherer(threading.Thread):
    """Reads one node's output until `done`, EOF or the deadline; keeps every line."""

    def __init__(self, index, node, deadline, log_path):
        super().__init__(daemon=True, name="gather-%d" % index)
        self.index = index
        self.node = node
        self.deadline = deadline
        self.log_path = log_path
        self.events = []
        self.ready = threading.Event()
        self.error = None
        self.finished = False

    def run(self):
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                for line in self.node.lines(self.deadline):
                    log.write(line + "\n")
                    ev = parse_line(line)
                    if ev is None:
                        continue
                    self.events.append(ev)
                    if ev.get("ev") == "ready":
                        self.ready.set()
                    if ev.get("ev") == TERMINAL_EVENT:
                        self.finished = True
                        return
        except Exception as e:  # a broken board must not take the other nodes' results with it
            self.error = "%s: %s" % (type(e).__name__, e)
        finally:
            self.ready.set()


def _hang_info(index, events, phase):
    waits = [e for e in events if e.get("ev") == "waiting"]
    if waits:
        w = waits[-1]
        return {"node": index, "phase": phase, "waiting": {"p": w.get("p"), "i": w.get("i"), "on": w.get("on")}}
    last = events[-1] if events else None
    return {"node": index, "phase": phase, "last_event": last}


def node_summary(kind, name, events, error=None, timed_out=False, result=None):
    """The record entry of one node from its events. `error` is what the host saw go wrong (a
    board driver that raised, a node task that crashed); `result` the node's result event when
    the caller kept it apart from `events`."""
    if result is None:
        result = next((e for e in reversed(events) if e.get("ev") == "result"), None)
    errors = [e for e in events if e.get("ev") == "error"]
    if result is not None:
        status = result.get("status", "ok")
    elif errors or error:
        status = "error"
    elif timed_out:
        status = "timeout"
    else:
        status = "missing"
    if errors and status == "ok":
        status = "error"
    return {"kind": kind, "board": name, "events": events,
            "result": None if result is None else result.get("value"), "status": status,
            "error": error or (errors[-1].get("msg") if errors else None)}


def fault_timeline(nodes_entries):
    faults = []
    for entry in nodes_entries.values():
        faults.extend(e for e in entry["events"] if e.get("ev") == "fault")
    faults.sort(key=lambda e: (e.get("i") if isinstance(e.get("i"), int) else -1, e.get("n", 0), e.get("t", 0)))
    return faults


def run(spec, nodes, log_dir, wifi=None):
    """Run `spec` on `nodes` (one lab node per FL node, already prepared). Returns a run-record dict."""
    if len(nodes) != spec.nodes:
        raise ValueError("spec wants %d nodes, %d given" % (spec.nodes, len(nodes)))
    os.makedirs(log_dir, exist_ok=True)
    phases = {}
    t = time.monotonic()
    configs = node_configs(spec, nodes, wifi=wifi)
    run_end = t + spec.deadline_s()
    gatherers = []
    errors = []
    hang = None
    try:
        for i, (node, cfg) in enumerate(zip(nodes, configs)):
            try:
                node.start(cfg)
            except Exception as e:
                errors.append({"node": i, "msg": "could not start on %s: %s" % (node.name, e)})
                continue
            g = _Gatherer(i, node, run_end, os.path.join(log_dir, "node%d-%s.log" % (i, node.name)))
            g.start()
            gatherers.append(g)
        phases["start"] = time.monotonic() - t
        ready_end = time.monotonic() + spec.startup_deadline_s()
        for g in gatherers:
            g.ready.wait(max(0, ready_end - time.monotonic()))
        phases["ready"] = time.monotonic() - t
        for g in gatherers:
            g.join(max(0, run_end - time.monotonic()))
        phases["run"] = time.monotonic() - t
    finally:
        for node in nodes:
            try:
                node.stop()
            except Exception as e:
                errors.append({"node": nodes.index(node), "msg": "stop failed on %s: %s" % (node.name, e)})
        for g in gatherers:
            g.join(2)
    entries = {}
    by_index = {g.index: g for g in gatherers}
    for i, node in enumerate(nodes):
        g = by_index.get(i)
        events = g.events if g else []
        timed_out = g is not None and not g.finished and g.error is None
        entry = node_summary(node.kind, node.name, list(events), g.error if g else "not started", timed_out)
        entry["log"] = os.path.join(log_dir, "node%d-%s.log" % (i, node.name))
        entries[str(i)] = entry
        if timed_out and hang is None:
            ready = any(e.get("ev") == "ready" for e in events)
            hang = _hang_info(i, events, "run" if ready else "start")
        if g is not None and g.error:
            errors.append({"node": i, "msg": g.error})
    record = {"run": configs[0]["run"], "seed": spec.seed, "spec": spec.to_dict(),
              "backend": _backend_name(nodes), "nodes": entries, "faults": fault_timeline(entries),
              "phases": phases, "hang": hang, "errors": errors}
    with open(os.path.join(log_dir, "record.json"), "w") as f:
        json.dump(record, f)
    return record


def _backend_name(nodes):
    kinds = sorted(set(n.kind for n in nodes))
    return kinds[0] if len(kinds) == 1 else "mixed"
