"""The collector: every backend feeds it what its nodes said, `(node, event)` or `(node, line)`,
and it makes the run record the same way whatever ran the nodes: node status, the hang report,
the fault timeline on one clock, errors.

A node's events are kept in the order they arrived. Lines go to the node's log (when the run has
a directory) as they arrive, and so do events (`events.jsonl`), so a run that is interrupted,
even by SIGKILL, leaves what it saw on disk; `finish` writes `record.json`.
"""
import json
import os
import threading
import time

from flhil.harness.results.fates import message_fates, step_stalls
from flhil.harness.results.record import RunRecord
from flhil.harness.run.telemetry import parse_line
from flhil.vocab import TERMINAL_EVENT

# events a long virtual run keeps when it does not keep everything
ESSENTIAL_EVENTS = ("boot", "listen", "ready", "fault", "error", "result", "drop", "refused", "counts",
                    "heap", "low_heap", "done")
WAIT_EVENTS = ("waiting", "round_start", "slot_start")


class NodeSlot:
    """Where one FL node of a run runs: its id, kind (emulated, serial, pc, virtual), the board's
    name, its address, its heap budget (KB) when known."""

    def __init__(self, node, kind, name, address=None, heap_kb=None, port=None):
        self.node, self.kind, self.name, self.address, self.heap_kb = node, kind, name, address, heap_kb
        self.port = port  # the TCP port it listens on (None: the default port)


class _NodeState:
    __slots__ = ("events", "log", "result", "last_wait", "last_kind", "error", "done", "started",
                 "ready", "lines", "offset", "backlog")

    def __init__(self):
        self.events = []
        self.log = None
        self.result = None
        self.last_wait = None
        self.last_kind = None
        self.error = None      # what the host saw go wrong (a driver raised, it never started)
        self.done = False
        self.started = False
        self.ready = False
        self.lines = 0
        self.offset = None     # least (harness clock - node clock) seen, µs: a line read at once
        self.backlog = None    # (µs, node t): the longest a line waited before the harness read it


class Collector:
    def __init__(self, spec, slots, run_id, backend, run_dir=None, keep_events=True, keep_trace=False):
        self.spec = spec
        self.slots = slots
        self.run_id = run_id
        self.backend = backend
        self.run_dir = run_dir
        self.keep_events = keep_events
        self.trace = [] if keep_trace else None
        self.nodes = [_NodeState() for _ in slots]
        self.errors = []
        self.notes = []  # what the host did to a node on the way (a board power-cycled to answer)
        self.phases = {}
        self.closed = False
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # real-time backends feed it from a thread per node
        self._stream = None
        if run_dir is not None:
            os.makedirs(run_dir, exist_ok=True)
            self._stream = open(os.path.join(run_dir, "events.jsonl"), "w", encoding="utf-8")
            for slot in slots:
                self.nodes[slot.node].log = open(self.log_path(slot.node), "w", encoding="utf-8")

    # -- what backends call ----------------------------------------------------------------------
    def log_path(self, node):
        slot = self.slots[node]
        return os.path.join(self.run_dir, "node%d-%s.log" % (node, slot.name)) if self.run_dir else None

    def line(self, node, text):
        """A line the node printed: kept in its log; telemetry becomes an event."""
        state = self.nodes[node]
        state.lines += 1
        if state.log is not None:
            state.log.write(text + "\n")
        ev = parse_line(text)
        if ev is not None:
            _track_backlog(state, ev)
            self.event(node, ev)

    def event(self, node, ev):
        if self.closed:
            return
        state = self.nodes[node]
        kind = ev.get("ev")
        state.started = True
        state.last_kind = kind
        if kind in WAIT_EVENTS:
            state.last_wait = ev
        elif kind == "result":
            state.result = ev
        elif kind == "ready":
            state.ready = True
        elif kind == TERMINAL_EVENT:
            state.done = True
        if self.keep_events or kind in ESSENTIAL_EVENTS:
            state.events.append(ev)
            if self.trace is not None:
                self.trace.append(ev)
        if self._stream is not None:
            text = json.dumps({"node": node, "ev": ev}) + "\n"
            with self._lock:
                self._stream.write(text)

    def node_error(self, node, msg):
        """The host saw this node fail (its driver raised, it could not start, its output stopped)."""
        state = self.nodes[node]
        state.error = state.error or msg
        with self._lock:
            self.errors.append({"node": node, "msg": msg})
        if state.log is not None:
            state.log.write("fl-hil: %s\n" % msg)

    def note(self, node, msg):
        """Something the host did to a node that the record must say (it recovered a board)."""
        with self._lock:
            self.notes.append({"node": node, "msg": msg})
        state = self.nodes[node]
        if state.log is not None:
            state.log.write("fl-hil: %s\n" % msg)

    def phase(self, name):
        """Mark the end of a phase of the run (seconds since the collector was made)."""
        self.phases[name] = time.monotonic() - self._t0

    def flush_node(self, node):
        """Put what one node said so far on disk (its output ended)."""
        log = self.nodes[node].log
        if log is not None:
            log.flush()
        with self._lock:
            if self._stream is not None:
                self._stream.flush()

    # -- the record ------------------------------------------------------------------------------
    def finish(self, unfinished=(), stopped="done", extra=None):
        """The run record. `unfinished`: nodes still running at the run's deadline."""
        self.closed = True
        unfinished = set(unfinished)
        nodes = {}
        hang = None
        for slot in self.slots:
            i = slot.node
            state = self.nodes[i]
            entry = self._node_entry(slot, state, timed_out=i in unfinished)
            if i in unfinished:
                entry["waiting"] = _waited_for(state)
                if hang is None:
                    hang = {"node": i, "phase": "run" if state.ready or not self.keep_events else "start",
                            "waiting": entry["waiting"]}
            if state.error is None and entry["status"] == "error":
                self.errors.append({"node": i, "msg": entry["error"]})
            nodes[str(i)] = entry
        data = {"run": self.run_id, "seed": self.spec.seed, "spec": self.spec.to_dict(),
                "backend": self.backend, "nodes": nodes, "faults": fault_timeline(nodes),
                "phases": dict(self.phases), "hang": hang, "errors": list(self.errors),
                "notes": list(self.notes),
                "stopped": stopped}
        data.update(extra or {})
        record = RunRecord(data)
        data["fates"] = message_fates(record)
        data["stalls"] = step_stalls(record)
        data["host"] = self._host(record, data.pop("harness_lag", None))
        self._close_files(record)
        return record

    def _node_entry(self, slot, state, timed_out):
        events = state.events
        errors = [e for e in events if e.get("ev") == "error"]
        result = state.result
        if result is not None:
            status = result.get("status", "ok")
        elif errors or state.error:
            status = "error"
        elif timed_out:
            status = "timeout"
        else:
            status = "missing"
        if errors and status == "ok":
            status = "error"
        error = state.error or (errors[-1].get("msg") if errors else None)
        if status in ("timeout", "missing") and error is None and state.lines and not state.started:
            error = "printed %d lines but no telemetry (see its log)" % state.lines
        entry = {"kind": slot.kind, "board": slot.name, "events": events,
                 "result": None if result is None else result.get("value"), "status": status,
                 "error": error, "log": self.log_path(slot.node)}
        if slot.heap_kb is not None:
            entry["heap_budget_kb"] = slot.heap_kb
        return entry

    def _host(self, record, harness_lag):
        """How late the nodes' event loops and the harness ran (see results/host.py)."""
        nodes = {}
        for n in record.node_ids():
            lags = record.events(n, "lag")
            if not lags:
                continue
            host = [e.get("host_sum") for e in lags if e.get("host_sum") is not None]
            nodes[str(n)] = {"windows": len(lags), "max_ms": max(e.get("max") or 0 for e in lags) / 1000.0,
                             "host_ms": round(sum(host) / 1000.0, 3) if host else None}
        backlog = {str(i): {"max_ms": round(st.backlog[0] / 1000.0, 3), "t": st.backlog[1]}
                   for i, st in enumerate(self.nodes) if st.backlog is not None}
        out = {"nodes": nodes, "backlog": backlog}
        if harness_lag is not None:
            out["harness"] = {"windows": harness_lag,
                              "max_ms": max((w["max_ms"] for w in harness_lag), default=0.0)}
        return out

    def _close_files(self, record):
        for state in self.nodes:
            if state.log is not None:
                state.log.close()
                state.log = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self.run_dir is not None:
            record.save(os.path.join(self.run_dir, "record.json"))


def _track_backlog(state, ev):
    """How long a telemetry line waited between the node printing it and the harness reading it:
    (harness clock - node clock) above its least value in the run (clock rates are equal)."""
    t = ev.get("t")
    if not isinstance(t, int):
        return
    d = int(time.monotonic() * 1e6) - t
    if state.offset is None or d < state.offset:
        state.offset = d
    wait = d - state.offset
    if state.backlog is None or wait > state.backlog[0]:
        state.backlog = (wait, t)


def _waited_for(state):
    """What a node that did not finish was waiting for: its last `waiting` event, else the step it
    was in, else the kind of the last event it emitted."""
    w = state.last_wait
    if w is None:
        return {"last_event": state.last_kind}
    if w.get("ev") == "waiting":
        return {"p": w.get("p"), "i": w.get("i"), "on": w.get("on"), "ms": w.get("ms")}
    return {"step": w.get("ev"), "i": w.get("i")}


def fault_timeline(nodes):
    """Every fault event of the run on one clock: `at_us` is the event's time from the start of
    slot 0 (each node's clock aligned at the start barrier, `ready.t0`); `t` stays the node's own
    clock. Sorted by `at_us`, then node."""
    faults = []
    for key in sorted(nodes, key=int):
        events = nodes[key]["events"]
        t0 = next((e.get("t0") for e in events if e.get("ev") == "ready" and isinstance(e.get("t0"), int)),
                  None)
        for e in events:
            if e.get("ev") == "fault":
                f = dict(e)
                if t0 is not None and isinstance(e.get("t"), int):
                    f["at_us"] = e["t"] - t0
                faults.append(f)
    faults.sort(key=lambda f: (f.get("at_us", f.get("t", 0)), f.get("n", 0)))
    return faults
