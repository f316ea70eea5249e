"""The virtual-time backend: every node of a run as a task in one asyncio loop whose clock jumps
forward whenever every task waits, talking over an in-memory network (firmware/memnet.py).

The nodes run the real runtime (`flhil.entry.run_node`): the codec, authentication, fault layer,
deadlines and apps are the same code as on boards and PC nodes; only time and the medium are
simulated. Nothing real happens in a virtual run: the loop has no selector and no sockets, and its
time advances only by jumping to the next timer, so the same (seed, spec, code) gives the same
trace, byte for byte, on any machine and at any load.

    record = run_virtual(RunSpec(app="central_avg", nodes=4, args={"iterations": 3}))
    record["trace_hash"], record.result(0)

Virtual time is kept in whole microseconds (the nodes' clock unit): every timer is rounded up to
the next microsecond, so a waiter never wakes early and clocks read exact values.
"""
import asyncio
import gc
import hashlib
import json
import math
import time

from flhil.clock import LoopClock
from flhil.entry import run_node
from flhil.harness.run.apps import load_instance
from flhil.harness.run.backend import Backend
from flhil.harness.run.collector import NodeSlot
from flhil.harness.run.configs import MEMORY
from flhil.memnet import MemoryNetwork, MemoryTransport
from flhil.telemetry import Telemetry
from flhil.wire import Codec

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


class VirtualBackend(Backend):
    """Runs every node of a run in one VirtualLoop over a MemoryNetwork.

    `latency_us`: a frame's time on the wire; `max_wall_s`: real seconds a run may take before it
    is stopped (`stopped: wall_limit`); `keep_events=False` keeps only the essential events of each
    node (large runs); `run_dirs(name)` gives each run a directory for its record and logs (None:
    runs stay in memory)."""

    name = "virtual"
    deterministic = True

    def __init__(self, latency_us=DEFAULT_LATENCY_US, max_wall_s=DEFAULT_MAX_WALL_S, keep_events=True,
                 run_dirs=None):
        self.latency_us = latency_us
        self.max_wall_s = max_wall_s
        self.keep_events = keep_events
        self.run_dirs = run_dirs

    def run_dir(self, name):
        return None if self.run_dirs is None else self.run_dirs(name)

    def place(self, spec, run_dir):
        return [NodeSlot(i, "virtual", "mem%d" % i, MEMORY) for i in range(spec.nodes)]

    def label(self, slots):
        return "virtual"

    def run(self, spec, configs, collector):
        deadline_s = spec.deadline_s()
        network = MemoryNetwork(self.latency_us)
        loop = VirtualLoop(self.max_wall_s)
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
        collector.phases["run"] = wall
        for i, msg in sorted(crashed.items()):
            collector.node_error(i, msg)
        trace = collector.trace or []
        extra = {"trace": trace, "trace_hash": trace_hash(trace),
                 "virtual": {"t_end_s": t_end_us / 1e6, "deadline_s": deadline_s, "stopped": reason,
                             "unfinished": unfinished, "wall_s": wall, "latency_us": self.latency_us,
                             "frames_sent": network.sent, "frames_delivered": network.delivered,
                             "frames_lost": network.lost, "jumps": loop.jumps}}
        return unfinished, reason, extra


def _printer(log):
    """`print` for an in-process node's app: its lines go to the node's log, as a board's would."""
    def app_print(*args, sep=" ", end="\n", file=None, flush=False):
        for line in (sep.join(str(a) for a in args) + end).splitlines():
            log(line)
    return app_print


async def _node_task(cfg, network, sink, log=None):
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    tel = Telemetry(cfg["node"], clock, sink=sink)
    codec = Codec.from_config(cfg)
    app = None
    if cfg.get("app_path"):  # a user's app: one module object per node, as one interpreter per node
        app = load_instance(cfg["app_path"], cfg["app"], cfg["node"])
        if log is not None:
            app.print = _printer(log)
    node = await run_node(cfg, clock=clock, tel=tel, app=app,
                          new_transport=lambda: MemoryTransport(network, cfg["node"], codec, None, tel))
    return node.status


async def _main(loop, configs, network, collector, deadline_s):
    def sink_for(i):
        return lambda ev: collector.event(i, ev)

    def log_for(i):
        return lambda text: collector.line(i, text)

    tasks = [loop.create_task(_node_task(cfg, network, sink_for(cfg["node"]), log_for(cfg["node"])))
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


def run_virtual(spec, deadline_s=None, max_wall_s=None, keep_events=True, latency_us=None, run_dir=None):
    """Run `spec` (a RunSpec or its dict form) in virtual time; returns the RunRecord, with
    `trace` (every event in emission order), `trace_hash` (sha256 of its canonical JSON) and
    `virtual` (end time, stop reason, frame counts, wall seconds)."""
    from flhil.harness.run import pipeline
    from flhil.harness.run.spec import RunSpec
    spec = RunSpec.of(spec)
    if deadline_s is not None:
        spec = spec.replace(deadline_s=deadline_s)
    backend = VirtualBackend(DEFAULT_LATENCY_US if latency_us is None else latency_us,
                             max_wall_s or DEFAULT_MAX_WALL_S, keep_events)
    return pipeline.execute(spec, backend, run_dir=run_dir)
