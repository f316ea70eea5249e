"""A harness killed by SIGKILL leaves no emulated board and no PC node alive for more than ~1 s
(the reaper starts every child with a death signal, from a thread that lives as long as the
harness)."""
import os
import signal
import subprocess
import sys
import time

import pytest

OWNER = r"""
import os, sys, threading, time
from flhil.harness.lab.boards.emulated import EmulatedBoard
from flhil.harness.lab.boards.pc import PcNode
from flhil.harness.run.collector import NodeSlot
from flhil.harness.run.configs import node_configs
from flhil.harness.run.spec import RunSpec

spec = RunSpec(app="central_avg", algorithm="centralized", nodes=2, args={"iterations": 3},
               timing={"startup_ms": 60000, "hang_report_ms": 60000})
slots = [NodeSlot(0, "pc", "pc0", "127.0.0.1", port=1), NodeSlot(1, "pc", "pc1", "127.0.0.1", port=0)]
cfg = node_configs(spec, slots, "r-test", "00" * 16)[1]  # a client waiting for a coordinator
pc = PcNode("pc1", "127.0.0.1", workdir=sys.argv[1], port=0)
board = EmulatedBoard("emu-r", sys.argv[2])

def start():  # from a short-lived thread: the children must not die with it, only with us
    board.boot().wait_ready(10)
    pc.start(cfg)

t = threading.Thread(target=start)
t.start()
t.join()
time.sleep(0.5)
print(board.pid, pc.proc.pid, flush=True)
time.sleep(120)
"""


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkilled_harness_leaves_no_board_or_pc_node_alive(tmp_path):
    from flhil.harness.lab.boards.emulated import resolve_micropython
    resolve_micropython()
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(tmp_path / "pc"), str(tmp_path / "flash")],
                             stdout=subprocess.PIPE, text=True)
    pids = []
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids), "the children did not start"
        time.sleep(0.5)
        assert all(_alive(p) for p in pids), "a child died with the thread that started it"
        owner.send_signal(signal.SIGKILL)
        owner.wait(5)
        t = time.monotonic()
        while any(_alive(p) for p in pids) and time.monotonic() - t < 1.5:
            time.sleep(0.02)
        left = [p for p in pids if _alive(p)]
        assert not left, "alive 1.5 s after the harness was SIGKILLed: %s" % left
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
