"""No process outlives the harness. One registry for every child (emulated boards' interpreters,
PC nodes) and every object that owns children (boards, racks):

- each child runs in its own session (its own process group, killed as one) and, on Linux, with
  PR_SET_PDEATHSIG = SIGKILL: the kernel kills it the moment the harness dies, even by SIGKILL;
- children are started from one long-lived spawner thread, because the kernel ties the death
  signal to the thread that forked (a child forked by a short-lived worker thread would die with
  that thread);
- at exit and on SIGINT/SIGTERM/SIGHUP the owners are closed and the children killed, whatever the
  test outcome.
"""
import atexit
import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref

PR_SET_PDEATHSIG = 1

_lock = threading.Lock()
_children = set()
_owners = weakref.WeakSet()
_installed = False
_previous = {}
_libc = None


def _death_signal():
    """In the child, before exec: be killed when the spawning thread (the spawner) dies."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class _Request:
    def __init__(self, argv, kwargs):
        self.argv, self.kwargs = argv, kwargs
        self.done = threading.Event()
        self.proc = self.error = None


class _Spawner(threading.Thread):
    """Forks every child, so each one's death signal is tied to a thread that lives as long as
    the process."""

    def __init__(self):
        super().__init__(daemon=True, name="flhil-reaper-spawner")
        self.requests = queue.Queue()

    def run(self):
        while True:
            req = self.requests.get()
            try:
                req.proc = subprocess.Popen(req.argv, **req.kwargs)
            except BaseException as e:  # noqa: BLE001 - raised in the caller
                req.error = e
            req.done.set()


_spawner = None


def _spawn_in_spawner(argv, kwargs):
    global _spawner
    with _lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = _Spawner()
            _spawner.start()
        spawner = _spawner
    req = _Request(argv, kwargs)
    spawner.requests.put(req)
    req.done.wait()
    if req.error is not None:
        raise req.error
    return req.proc


def spawn(argv, preexec=None, **kwargs):
    """subprocess.Popen in a new session (its own process group) that dies with the harness, and
    is reaped at exit. `preexec` runs in the child after the death signal is set."""
    _install()

    def child_setup():
        _death_signal()
        if preexec is not None:
            preexec()

    kwargs = dict(kwargs, start_new_session=True, preexec_fn=child_setup)
    if _libc is not None and threading.current_thread() is not _spawner:
        proc = _spawn_in_spawner(argv, kwargs)
    else:
        proc = subprocess.Popen(argv, **kwargs)
    with _lock:
        _children.add(proc)
    return proc


def track(owner):
    """An object whose close() must run at exit or on a signal (a board, a rack)."""
    _install()
    _owners.add(owner)
    return owner


def forget(owner):
    _owners.discard(owner)


def kill(proc, grace_s=1.0):
    """Terminate the process group, then kill it if it is still there after `grace_s`."""
    with _lock:
        _children.discard(proc)
    if proc.poll() is None and grace_s:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # also reaps grandchildren left in the group
    try:
        proc.wait(max(grace_s, 1.0))
    except subprocess.TimeoutExpired:
        pass


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_all():
    for owner in list(_owners):
        try:
            owner.close()
        except Exception:  # noqa: BLE001 - closing must go on
            pass
    with _lock:
        procs = list(_children)
    for p in procs:
        kill(p, grace_s=0.5)


def _on_signal(signum, frame):
    reap_all()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install():
    global _installed, _libc
    if _installed:
        return
    _installed = True
    if sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = None
    atexit.register(reap_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            current = signal.getsignal(sig)
            if sig != signal.SIGINT and current not in (signal.SIG_DFL, None):
                continue  # someone else handles it (fl-hil emulate's wait): leave it to them
            _previous[sig] = current if sig == signal.SIGINT else None
            signal.signal(sig, _on_signal)
