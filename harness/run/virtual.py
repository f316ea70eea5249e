"""The virtual-time backend: every node of a run as a task in one asyncio loop whose clock jumps
forward whenever every task waits, talking over an in-memory network (firmware/memnet.py).

The nodes run the real runtime (`firmware.entry.run_node`): the codec, authentication, fault layer,
deadlines and apps are the same code as on boards and PC nodes; only time and the medium are
simulated. Nothing real happens in a virtual run: the loop has no selector and no sockets, and its
time advances only by jumping to the next timer, so the same (seed, spec, code) gives the same
trace, byte for byte, on any machine and at any load.

    record = run_virtual({"app": "central_avg", "nodes": 4, "args": {"iterations": 3}, "seed": 1})
    record["trace_hash"], record["nodes"]["0"]["result"]

Virtual time is kept in whole microseconds (the nodes' clock unit): every timer is rounded up to
the next microsecond, so a waiter never wakes early and clocks read exact values.
"""
from __future__ import annotations

import asyncio
import copy
import gc
import hashlib
import json
import math
import time

from flhil.clock import LoopClock, SkewedClock
from flhil.entry import run_node
from flhil.faults import clock_skew
from flhil.memnet import MemoryNetwork, MemoryTransport
from flhil.telemetry import Telemetry
from flhil.transport import new_counts
from flhil.wire import Codec, DEFAULT_MAX_FRAME
from flhil.harness.run.realtime import full_timing, node_summary, step_count
from flhil.vocab import ALGORITHMS as ALGORITHM_APPS, MESSAGE_FAULT_KINDS, PHASES

# algorithm -> default app (as the scenario loader)
DEFAULT_LATENCY_US = 100
DEFAULT_MAX_WALL_S = 300.0
_OFFSET_US = 0.25  # virtual instants sit a quarter microsecond past the whole microsecond:
# int(t * 1e6) and round(t * 1e6) then both give the whole microsecond, free of float noise


class VirtualDeadlock(RuntimeError):
    """Every task waits, nothing is ready and no timer is set: nothing can ever happen again."""


class _NoSelector:
    """Stands in for the loop's selector: 'waiting for I/O for `timeout` seconds' means jumping
    the clock to the next timer. There is no I/O to wait for."""

    def __init__(self, loop):
        self._loop = loop

    def select(self, timeout):
        return self._loop._advance(timeout)

    def close(self):
        pass


class VirtualLoop(asyncio.BaseEventLoop):
    """An asyncio event loop on a virtual clock.

    `time()` is the virtual time (seconds, from 0). When no callback is ready the loop jumps to the
    earliest timer instead of sleeping. If nothing is ready and no timer is set, every task waits
    for something that can never happen: `VirtualDeadlock` is raised out of the loop. Sockets,
    pipes and readers are not available (NotImplementedError from BaseEventLoop).

    `max_wall_s` bounds real time: once exceeded, `on_overrun()` (if set) is called once, from
    the loop, so the run can be stopped; `overrun` tells it happened."""

    def __init__(self, max_wall_s=None):
        super().__init__()
        self._selector = _NoSelector(self)
        self._now_us = 0
        self._wall_end = None if max_wall_s is None else time.perf_counter() + max_wall_s
        self._polls = 0
        self.on_overrun = None
        self.overrun = False
        self.jumps = 0

    # -- the clock ------------------------------------------------------------------------------
    def time(self):
        return (self._now_us + _OFFSET_US) / 1e6

    def now_us(self):
        return self._now_us

    def call_at(self, when, callback, *args, context=None):
        # whole microseconds, rounded up (a tolerance of 1 ns absorbs float noise in time() + delay)
        us = math.ceil(when * 1e6 - _OFFSET_US - 1e-3)
        if us < self._now_us:
            us = self._now_us
        return super().call_at((us + _OFFSET_US) / 1e6, callback, *args, context=context)

    def _advance(self, timeout):
        self._polls += 1
        if self._wall_end is not None and not self.overrun and (self._polls & 63) == 0 \
                and time.perf_counter() > self._wall_end:
            self.overrun = True
            if self.on_overrun is not None:
                self.call_soon(self.on_overrun)
                return []
        if timeout is None:
            raise VirtualDeadlock("every task waits and no timer is set")
        if timeout > 0 and self._scheduled:
            when = self._scheduled[0]._when
            us = round(when * 1e6 - _OFFSET_US)
            if us > self._now_us:
                self._now_us = us
                self.jumps += 1
        return []

    # -- what BaseEventLoop leaves to subclasses -------------------------------------------------
    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass  # call_soon_threadsafe: the loop never sleeps for real, nothing to wake

    def close(self):
        super().close()


# -- run spec -> node configs --------------------------------------------------------------------

def _spec_dict(spec):
    if hasattr(spec, "to_dict"):
        spec = spec.to_dict()
    spec = copy.deepcopy(dict(spec))
    if not spec.get("app"):
        algo = spec.get("algorithm")
        if algo not in ALGORITHM_APPS:
            raise ValueError("the spec names neither an app nor a known algorithm: %r" % (algo,))
        spec["app"] = ALGORITHM_APPS[algo]
    nodes = spec.get("nodes")
    if isinstance(nodes, dict):
        if "server" in nodes and "server" not in spec:
            spec["server"] = nodes["server"]
        nodes = nodes.get("count")
    elif isinstance(nodes, (list, tuple)):
        nodes = len(nodes)
    if not isinstance(nodes, int) or nodes < 1:
        raise ValueError("the spec needs nodes = a count >= 1, got %r" % (spec.get("nodes"),))
    spec["nodes"] = nodes
    spec.setdefault("server", 0)
    spec.setdefault("seed", 1)
    spec.setdefault("strict", False)
    for k in ("args", "timing", "faults"):
        spec[k] = dict(spec.get(k) or {})
    return spec


def default_deadline_s(spec):
    """Virtual seconds a healthy run may take: every step at its deadline, plus slack."""
    t = full_timing(spec.get("timing"))
    steps = step_count(spec.get("args"))
    per_step = max(t["round_ms"], t["recv_ms"], t["slot_ms"]) / 1000.0
    return t["startup_ms"] / 1000.0 + t["start_delay_ms"] / 1000.0 + steps * per_step * 1.5 \
        + t["linger_ms"] / 1000.0 + 10


def run_key(seed):
    return hashlib.sha256(b"fl-hil virtual run key %d" % seed).hexdigest()[:32]


def node_configs(spec):
    """One run config (design.md, "Run config") per node of a normalised spec."""
    n = spec["nodes"]
    run_id = spec.get("run") or "v-%d" % spec["seed"]
    key = spec.get("key") or run_key(spec["seed"])
    # the coordinator's go carries the address table when the transport needs one: room for it
    max_frame = spec.get("max_frame") or max(DEFAULT_MAX_FRAME, 32 * n + 4096)
    configs = []
    for i in range(n):
        configs.append({"run": run_id, "key": key, "node": i, "nodes": n, "server": spec["server"],
                        "listen": ["mem", i], "peers": {}, "app": spec["app"], "args": spec["args"],
                        "timing": spec["timing"], "strict": spec["strict"], "seed": spec["seed"],
                        "faults": spec["faults"], "max_frame": max_frame})
    return configs


# -- the run ---------------------------------------------------------------------------------------

class _Collector:
    """Telemetry sink of all nodes: per-node event lists and the global trace, in emission order."""

    def __init__(self, n, keep_events=True):
        self.events = [[] for _ in range(n)]
        self.trace = []
        self.keep = keep_events
        self.closed = False
        self.last = [None] * n          # kind of each node's last event
        self.last_wait = [None] * n     # last waiting / round_start / slot_start of each node
        self.result = [None] * n

    def sink_for(self, node_id):
        events = self.events[node_id]
        trace = self.trace
        keep = self.keep
        last = self.last
        last_wait = self.last_wait
        result = self.result

        def sink(ev):
            if self.closed:
                return
            kind = ev["ev"]
            if keep:
                events.append(ev)
                trace.append(ev)
            elif kind in ("fault", "error", "result", "drop", "counts"):
                events.append(ev)
                trace.append(ev)
            last[node_id] = kind  # the kind only: a ready event holds a list of every node
            if kind in ("waiting", "round_start", "slot_start"):
                last_wait[node_id] = ev
            elif kind == "result":
                result[node_id] = ev
        return sink


async def _node_task(cfg, network, sink):
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    tel_clock = clock
    skew = clock_skew(cfg.get("faults") or {}, cfg["node"])
    if skew is not None and skew[0]:
        # the node wraps its clock the same way at this same instant: telemetry reads the node's time
        tel_clock = SkewedClock(clock, skew[0])
    tel = Telemetry(cfg["node"], tel_clock, sink=sink)
    codec = Codec(cfg["run"], bytes.fromhex(cfg["key"]), cfg.get("max_frame", DEFAULT_MAX_FRAME))
    transport = MemoryTransport(network, cfg["node"], codec, new_counts(), tel)
    node = await run_node(cfg, transport=transport, clock=clock, tel=tel)
    return node.status


def _waited_for(last_wait, last):
    if last_wait is None:
        return {"last_event": last}  # the kind of event the node emitted last
    if last_wait["ev"] == "waiting":
        return {"p": last_wait.get("p"), "i": last_wait.get("i"), "on": last_wait.get("on"),
                "ms": last_wait.get("ms")}
    return {"step": last_wait["ev"], "i": last_wait.get("i")}


async def _main(loop, configs, network, collector, deadline_s):
    tasks = [loop.create_task(_node_task(cfg, network, collector.sink_for(cfg["node"])))
             for cfg in configs]
    stop = loop.create_future()

    def finish(reason):
        if not stop.done():
            stop.set_result(reason)

    remaining = [len(tasks)]

    def one_done(_task):
        remaining[0] -= 1
        if remaining[0] == 0:
            finish("done")

    for t in tasks:
        t.add_done_callback(one_done)
    timer = loop.call_at((deadline_s * 1e6 + _OFFSET_US) / 1e6, finish, "deadline")
    loop.on_overrun = lambda: finish("wall_limit")
    reason = await stop
    timer.cancel()
    collector.closed = True  # nothing after the stop decision goes into the trace
    t_end_us = loop.now_us()
    unfinished = [i for i, t in enumerate(tasks) if not t.done()]
    for i in unfinished:
        tasks[i].cancel()
    current = asyncio.current_task()
    rest = [t for t in asyncio.all_tasks(loop) if t is not current and not t.done()]
    for t in rest:
        t.cancel()
    await asyncio.gather(*tasks, *rest, return_exceptions=True)
    crashed = {}
    for i, t in enumerate(tasks):
        if i not in unfinished and t.exception() is not None:
            e = t.exception()
            crashed[i] = "%s: %s" % (type(e).__name__, e)
    return reason, t_end_us, unfinished, crashed


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def trace_hash(trace):
    return hashlib.sha256(canonical_json(trace).encode()).hexdigest()


def run_virtual(spec, deadline_s=None, max_wall_s=None, keep_events=True, latency_us=None):
    """Run `spec` (a dict shaped like a run config, or a harness.runner.RunSpec) in virtual time.

    Spec keys: app or algorithm, nodes (count, or {count, server}), server, args, timing, faults,
    seed, strict; optional run, key, max_frame, latency_us, deadline_s (virtual; a RunSpec's
    run_deadline_s is read too), max_wall_s.
    Returns a run record (design.md) with backend "virtual", `trace` (every event in emission
    order), `trace_hash` (sha256 of the trace's canonical JSON) and `virtual` (end time, stop
    reason, frame counts, wall seconds). `keep_events=False` keeps only fault, drop, error, result
    and counts events (large runs)."""
    spec = _spec_dict(spec)
    if deadline_s is None:
        deadline_s = spec.get("deadline_s") or spec.get("run_deadline_s") or default_deadline_s(spec)
    if max_wall_s is None:
        max_wall_s = spec.get("max_wall_s") or DEFAULT_MAX_WALL_S
    if latency_us is None:
        latency_us = spec.get("latency_us", DEFAULT_LATENCY_US)
    configs = node_configs(spec)
    n = spec["nodes"]
    network = MemoryNetwork(latency_us)
    collector = _Collector(n, keep_events)
    loop = VirtualLoop(max_wall_s)
    wall0 = time.perf_counter()
    # thousands of live nodes make every full garbage collection walk all of them: collect less
    # often during the run (restored afterwards; the trace does not depend on it)
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], 50000), max(threshold[1], 20), max(threshold[2], 100))
    try:
        reason, t_end_us, unfinished, crashed = loop.run_until_complete(
            _main(loop, configs, network, collector, deadline_s))
    finally:
        loop.close()
        gc.set_threshold(*threshold)
    wall = time.perf_counter() - wall0
    nodes = {}
    hang = None
    errors = []
    for i in range(n):
        timed_out = i in unfinished
        entry = node_summary("virtual", "mem%d" % i, collector.events[i], crashed.get(i), timed_out,
                             result=collector.result[i])
        if timed_out:
            entry["waiting"] = _waited_for(collector.last_wait[i], collector.last[i])
            if hang is None:
                ready = any(e.get("ev") == "ready" for e in collector.events[i]) if keep_events else True
                hang = {"node": i, "phase": "run" if ready else "start", "waiting": entry["waiting"]}
        if crashed.get(i):
            errors.append({"node": i, "msg": crashed[i]})
        elif entry["status"] == "error":
            errors.append({"node": i, "msg": entry["error"]})
        nodes[str(i)] = entry
    trace = collector.trace
    faults = [e for e in trace if e.get("ev") == "fault"]
    record = {
        "run": configs[0]["run"], "seed": spec["seed"], "spec": spec, "backend": "virtual",
        "nodes": nodes, "faults": faults, "phases": {"run": wall}, "hang": hang, "errors": errors,
        "trace": trace, "trace_hash": trace_hash(trace),
        "virtual": {"t_end_s": t_end_us / 1e6, "deadline_s": deadline_s, "stopped": reason,
                    "unfinished": unfinished, "wall_s": wall, "latency_us": latency_us,
                    "frames_sent": network.sent, "frames_delivered": network.delivered,
                    "frames_lost": network.lost, "jumps": loop.jumps},
    }
    return record


def results(record):
    """{node id: result value} of a record."""
    return {int(k): v.get("result") for k, v in record["nodes"].items()}


def statuses(record):
    return {int(k): v.get("status") for k, v in record["nodes"].items()}


# -- replay ----------------------------------------------------------------------------------------

NODE_FAULT_KEYS = ("seed", "dropouts", "slot_jitter", "clock_skew")
_PHASE_ORDER = {p: k for k, p in enumerate(PHASES)}
# one script entry per message: a message that was dropped was neither delayed nor duplicated
# as far as its receiver could tell; among the others the delay (timing) is kept first
_KIND_RANK = {"loss": 0, "burst_loss": 0, "partition": 0, "delay": 1, "dup": 2, "reorder": 3}


def _record_dict(record):
    return record.data if hasattr(record, "data") else record


def recorded_faults(record):
    """The fault events of a record: its `faults` timeline, else the nodes' fault events."""
    rec = _record_dict(record)
    faults = rec.get("faults")
    if faults:
        return list(faults)
    out = []
    for entry in (rec.get("nodes") or {}).values():
        out.extend(e for e in entry.get("events") or [] if e.get("ev") == "fault")
    return out


def replay_plan(record):
    """A fault plan that replays the record's message faults exactly: every loss, burst_loss,
    partition, delay (with its ms), dup and reorder event of the fault timeline becomes a
    `[[faults.script]]` entry (src = the event's node, dst, p, i, kind); the plan's random link
    rules and partitions are dropped (the script replaces them), node-level faults (dropouts,
    slot jitter, clock skew) and the fault seed are carried over from the recorded spec's plan.
    A message with several recorded faults keeps one (a drop first, else delay, dup, reorder):
    the firmware's script holds one decision per message."""
    rec = _record_dict(record)
    spec_plan = (rec.get("spec") or {}).get("faults") or {}
    entries = {}
    for f in recorded_faults(rec):
        kind = f.get("kind")
        if kind not in MESSAGE_FAULT_KINDS:
            continue
        src, dst, p, i = f.get("n"), f.get("dst"), f.get("p"), f.get("i")
        if src is None or dst is None or p is None or i is None:
            continue
        entry = {"src": int(src), "dst": int(dst), "p": p, "i": int(i), "kind": kind}
        if kind == "delay" and f.get("ms") is not None:
            entry["ms"] = f["ms"]
        key = (entry["src"], entry["dst"], p, entry["i"])
        prev = entries.get(key)
        if prev is None or _KIND_RANK[kind] < _KIND_RANK[prev["kind"]]:
            entries[key] = entry
    plan = {}
    for k in NODE_FAULT_KEYS:
        if k in spec_plan:
            plan[k] = copy.deepcopy(spec_plan[k])
    if "seed" not in plan and rec.get("seed") is not None:
        plan["seed"] = rec["seed"]
    plan["script"] = sorted(entries.values(), key=lambda e: (e["i"], _PHASE_ORDER.get(e["p"], 9), e["p"],
                                                              e["src"], e["dst"]))
    return plan


def replay_spec(record):
    """The record's run spec with its fault plan replaced by replay_plan(record)."""
    rec = _record_dict(record)
    spec = copy.deepcopy(rec.get("spec") or {})
    if not spec.get("nodes"):
        spec["nodes"] = len(rec.get("nodes") or {})
    if spec.get("seed") is None and rec.get("seed") is not None:
        spec["seed"] = rec["seed"]
    for k in ("run_deadline_s", "backend"):
        spec.pop(k, None)
    spec["faults"] = replay_plan(rec)
    return spec


def script_faults(record):
    """The message faults of a record as a sorted list of (src, dst, p, i, kind) (for comparing a
    run with its replay)."""
    out = set()
    for f in recorded_faults(record):
        if f.get("kind") in MESSAGE_FAULT_KINDS:
            out.add((f.get("n"), f.get("dst"), f.get("p"), f.get("i"), f.get("kind")))
    return sorted(out, key=lambda x: tuple(str(v) for v in x))
