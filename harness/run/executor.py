"""Where the cases of a sweep run. One interface, three implementations, chosen by name:

    executor = make_executor("ray", jobs=2)                  # a local Ray, 2 CPUs
    executor = make_executor("ray", address="ray://head:10001")   # a Ray cluster
    executor = make_executor("processes", jobs=2)            # no Ray: worker processes here
    executor = make_executor("inline")                       # this process, one case at a time
    for index, result in executor.imap(fn, items, timeout_s=300):
        ...
    executor.close()

`imap` keeps at most `slots` tasks in flight, so every task it hands out starts at once and its
deadline counts from then; a task past its deadline is stopped (its worker killed) and comes back
as a `Result` of kind "timeout" that says who waited for what. Nothing a task raises escapes:
it comes back as kind "error" with the traceback. `fn` and the items must pickle (a cluster's
workers import fl-hil themselves: install the same version there).

Ray is what Flower's simulation runs on; it goes from a laptop to a cluster with one argument.
A local Ray here listens on loopback only, has no dashboard, reports no usage statistics and is
shut down by `close()` (also on Ctrl-C), so no Ray process outlives the sweep.
"""
from __future__ import annotations

import abc
import faulthandler
import multiprocessing
import os
import signal
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_connections

from flhil.harness.errors import HarnessError

DEFAULT_JOBS = 2  # the machine is shared: a sweep takes this many CPUs unless told otherwise
LOCAL_RAY_OBJECT_STORE = 256 * 1024 * 1024  # bytes; a case's record is kilobytes
RAY_INIT_TIMEOUT_S = 120.0
WORKER_START_TIMEOUT_S = 60.0
POLL_S = 0.5  # longest wait between two deadline checks


class ExecutorUnavailable(HarnessError):
    """The executor asked for cannot be had here (Ray not installed, an unknown name)."""


@dataclass
class Result:
    """What one task gave: kind "ok" (value), "error" (the traceback) or "timeout" (the report)."""
    kind: str
    value: object = None
    message: str = ""
    where: str = ""  # the worker: pid@host

    @property
    def ok(self):
        return self.kind == "ok"


def _where():
    return "pid %d on %s" % (os.getpid(), socket.gethostname())


def call(fn, item):
    """Run one task in a worker: a Result, never an exception."""
    try:
        return Result("ok", fn(item), where=_where())
    except Exception:  # noqa: BLE001 - a task's failure is its result, the sweep goes on
        return Result("error", message=traceback.format_exc(), where=_where())


class Executor(abc.ABC):
    name = "?"
    slots = 1  # tasks in flight at once
    note = ""  # said to the user when the executor starts

    @abc.abstractmethod
    def start(self, fn, item):
        """Hand one task to a free worker; returns a handle."""

    @abc.abstractmethod
    def wait(self, handles, timeout):
        """Block up to `timeout` seconds; the finished handles, each with its Result."""

    @abc.abstractmethod
    def stop(self, handle):
        """Stop a task past its deadline (kill its worker); returns what is known of where it
        was stuck (a stack, or "")."""

    def close(self):  # noqa: B027 - an executor that holds nothing has nothing to release
        """Release the workers; always safe to call, also twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def imap(self, fn, items, timeout_s):
        """Run fn(item) for every item; yields (index, Result) as tasks finish. Each task has
        `timeout_s` seconds of wall time from its start."""
        items = list(items)
        queue = list(range(len(items)))[::-1]
        running = {}  # handle -> (index, deadline)
        while queue or running:
            while queue and len(running) < self.slots:
                index = queue.pop()
                running[self.start(fn, items[index])] = (index, time.monotonic() + timeout_s)
            soonest = min(deadline for _, deadline in running.values())
            for handle, result in self.wait(list(running), max(0.0, min(POLL_S, soonest - time.monotonic()))):
                yield running.pop(handle)[0], result
            now = time.monotonic()
            for handle, (index, deadline) in list(running.items()):
                if now >= deadline:
                    del running[handle]
                    stack = self.stop(handle)
                    message = "no result within %gs from its worker; the worker was stopped" % timeout_s
                    yield index, Result("timeout", message=message + ("\n" + stack if stack else ""),
                                        where=getattr(handle, "where", ""))


# ------------------------------------------------------------------ in this process

class _Done:
    def __init__(self, result):
        self.result = result
        self.where = result.where


class InlineExecutor(Executor):
    """One task at a time in this process: no start-up, a debugger works, but a deadline cannot
    stop a task that never returns (the virtual backend's own wall limit still does)."""
    name = "inline"
    note = "running in this process, one at a time"

    def start(self, fn, item):
        return _Done(call(fn, item))

    def wait(self, handles, timeout):
        return [(h, h.result) for h in handles]

    def stop(self, handle):
        return ""


# ------------------------------------------------------------------ worker processes

def _worker_main(conn, stack_file):
    """A worker process: run the tasks it is sent until it is sent None. Ctrl-C is the driver's
    to handle (it stops the workers), and SIGUSR1 writes every thread's stack for a hang report."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(stack_file, "w") as stacks:
        faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
        conn.send(_where())
        while True:
            task = conn.recv()
            if task is None:
                return
            conn.send(call(*task))


class _Worker:
    def __init__(self, context, tmp):
        self.stack_file = os.path.join(tmp, "stack-%d.txt" % id(self))
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, self.stack_file), daemon=True)
        self.process.start()
        child.close()
        self.where = ""

    def ready(self, deadline):
        if not self.conn.poll(max(0.0, deadline - time.monotonic())):
            self.kill()
            raise RuntimeError("a sweep worker process did not start within %gs" % WORKER_START_TIMEOUT_S)
        self.where = self.conn.recv()

    def stack(self):
        """The worker's stacks, asked for with SIGUSR1 (a hang report), or ""."""
        try:
            os.kill(self.process.pid, signal.SIGUSR1)
        except OSError:
            return ""
        time.sleep(0.3)
        try:
            with open(self.stack_file) as f:
                return f.read().strip()
        except OSError:
            return ""

    def kill(self):
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessExecutor(Executor):
    """`jobs` worker processes on this host (started fresh, not forked): the fallback without
    Ray. A task past its deadline has its worker's stacks taken for the report, then the worker
    is killed and replaced."""
    name = "processes"

    def __init__(self, jobs=None):
        self.slots = max(1, jobs or DEFAULT_JOBS)
        self.note = "running on %d worker process%s on this host" % (self.slots, "es" * (self.slots != 1))
        self._context = multiprocessing.get_context("spawn")
        self._tmp = tempfile.TemporaryDirectory(prefix="flhil-sweep-")
        self._idle = []
        self._busy = {}  # conn -> worker
        try:
            deadline = time.monotonic() + WORKER_START_TIMEOUT_S
            workers = [_Worker(self._context, self._tmp.name) for _ in range(self.slots)]
            self._idle.extend(workers)
            for w in workers:
                w.ready(deadline)
        except BaseException:
            self.close()
            raise

    def start(self, fn, item):
        if not self._idle:
            worker = _Worker(self._context, self._tmp.name)
            self._idle.append(worker)
            worker.ready(time.monotonic() + WORKER_START_TIMEOUT_S)
        worker = self._idle.pop()
        worker.conn.send((fn, item))
        self._busy[worker.conn] = worker
        return worker

    def wait(self, handles, timeout):
        done = []
        for conn in wait_connections([h.conn for h in handles], timeout):
            worker = self._busy.pop(conn)
            try:
                result = conn.recv()
                self._idle.append(worker)
            except (EOFError, OSError):
                code = worker.process.exitcode
                worker.kill()
                result = Result("error", message="the worker process died (exit code %s)" % code,
                                where=worker.where)
            done.append((worker, result))
        return done

    def stop(self, handle):
        self._busy.pop(handle.conn, None)
        stack = handle.stack()
        handle.kill()
        return stack

    def close(self):
        for w in self._idle + list(self._busy.values()):
            try:
                if w.process.is_alive() and w in self._idle:
                    w.conn.send(None)
            except OSError:
                pass
            w.process.join(1)
            w.kill()
        self._idle, self._busy = [], {}
        self._tmp.cleanup()


# ------------------------------------------------------------------ Ray

def ray_available():
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class RayExecutor(Executor):
    """Tasks on Ray: a local Ray of `jobs` CPUs that this executor starts and stops (address None
    or "local"), or a running cluster (`auto`, `host:port`, `ray://host:port`) it joins and
    leaves. A task past its deadline is cancelled with its worker killed."""
    name = "ray"

    def __init__(self, jobs=None, address=None):
        # before ray is imported: keep a local Ray on loopback (Ray then binds to 127.0.0.1 only,
        # as it does on laptops) and without usage reports
        local = address in (None, "local")
        if local:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        self.ray = ray
        self.local = local
        if local:
            self.slots = max(1, jobs or DEFAULT_JOBS)
            ray.init(address="local", num_cpus=self.slots, include_dashboard=False,
                     object_store_memory=LOCAL_RAY_OBJECT_STORE, log_to_driver=False,
                     logging_level="ERROR", configure_logging=True)
            self.note = "running on a local Ray (%d CPUs, loopback only, session %s)" % (
                self.slots, self.session())
        else:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.slots = max(1, min(jobs or cpus, cpus))
            self.note = "running on the Ray cluster at %s (%d CPUs, %d in use)" % (address, cpus, self.slots)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(call)
        self._refs = {}

    def session(self):
        """The local Ray's session directory: every process of it names it on its command line."""
        try:
            return self.ray.get_runtime_context().get_session_dir()  # newer Ray
        except AttributeError:
            return self.ray._private.worker._global_node.get_session_dir_path()

    def start(self, fn, item):
        ref = self._remote.remote(fn, item)
        self._refs[ref] = ref
        return ref

    def wait(self, handles, timeout):
        ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=timeout)
        done = []
        for ref in ready:
            self._refs.pop(ref, None)
            try:
                result = self.ray.get(ref, timeout=RAY_INIT_TIMEOUT_S)
            except Exception as e:  # noqa: BLE001 - a worker that died: the task failed
                result = Result("error", message="the Ray task failed: %s: %s" % (type(e).__name__, e))
            done.append((ref, result))
        return done

    def stop(self, handle):
        self._refs.pop(handle, None)
        try:
            self.ray.cancel(handle, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        return ""

    def close(self):
        if self.ray is None:
            return
        for ref in list(self._refs):
            self.stop(ref)
        self.ray.shutdown()  # a local Ray: its raylet, store and workers end here
        self.ray = None


def _processes_or_ray(jobs=None, address=None):
    if address:
        raise ExecutorUnavailable("--address needs Ray: pip install 'fl-hil[sweep]'")
    return ProcessExecutor(jobs)


EXECUTORS = {
    "ray": lambda jobs=None, address=None: RayExecutor(jobs, address),
    "processes": _processes_or_ray,
    "inline": lambda jobs=None, address=None: InlineExecutor(),
}


def make_executor(kind="auto", jobs=None, address=None):
    """The executor named `kind`; "auto" is Ray when it is installed, else worker processes
    (with a note saying so)."""
    if kind == "auto":
        if ray_available():
            kind = "ray"
        else:
            executor = _processes_or_ray(jobs, address)
            executor.note += " (Ray is not installed: pip install 'fl-hil[sweep]' for Ray)"
            return executor
    if kind not in EXECUTORS:
        raise ExecutorUnavailable("unknown executor %r: %s" % (kind, ", ".join(["auto"] + sorted(EXECUTORS))))
    if kind == "ray" and not ray_available():
        raise ExecutorUnavailable("Ray is not installed: pip install 'fl-hil[sweep]', or --executor processes")
    return EXECUTORS[kind](jobs=jobs, address=address)
