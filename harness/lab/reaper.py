"""No process outlives the harness: every child is started in its own process group and recorded
here; they are killed at exit and on SIGINT/SIGTERM, whatever the test outcome."""
import atexit
import os
import signal
import subprocess
import threading

_lock = threading.Lock()
_children = set()
_installed = False


def spawn(argv, **kwargs):
    """subprocess.Popen in a new session (its own process group), reaped at exit."""
    _install()
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    with _lock:
        _children.add(proc)
    return proc


def kill(proc, grace_s=1.0):
    """Terminate the process group, then kill it if it is still there after `grace_s`."""
    with _lock:
        _children.discard(proc)
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(proc, signal.SIGKILL)  # also reaps grandchildren left in the group
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_all():
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
        raise SystemExit(128 + signum)


_previous = {}


def _install():
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(reap_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            _previous[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_signal)
