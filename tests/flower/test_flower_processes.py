"""A Flower process and the processes it starts, in sessions of their own as Flower's SuperExec
starts flwr-serverapp and flwr-clientapp: paused, resumed and killed together (no flwr needed)."""
import os
import sys
import time

import pytest

from flhil.harness.flower.backend import _Proc, descendants

DETACHING = ("import subprocess, sys, time\n"
             "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
             "print('started', flush=True)\n"
             "time.sleep(60)\n")


def state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def wait_for(cond, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_pause_resume_and_kill_reach_detached_children():
    lines = []
    proc = _Proc([sys.executable, "-c", DETACHING], dict(os.environ), None, lines.append, "t")
    try:
        assert wait_for(lambda: "started" in lines and descendants(proc.proc.pid))
        [child] = descendants(proc.proc.pid)
        assert os.getsid(child) != os.getsid(proc.proc.pid)  # its own session, like Flower's
        proc.signal(__import__("signal").SIGSTOP)
        assert wait_for(lambda: state(child) == "T" and state(proc.proc.pid) == "T")
        proc.signal(__import__("signal").SIGCONT)
        assert wait_for(lambda: state(child) != "T")
    finally:
        proc.kill()
    for pid in (proc.proc.pid, child):
        assert wait_for(lambda pid=pid: not os.path.exists("/proc/%d" % pid) or state(pid) == "Z")
    with pytest.raises(ProcessLookupError):
        os.kill(proc.proc.pid, 0)
