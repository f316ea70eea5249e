"""A real host stall for tests: the process of one PC node is stopped (SIGSTOP) for a while once
its run has reached a given TDM slot, and continued (SIGCONT): what a loaded host does to a node,
without loading the host. Runs whose directory names a re-run are left alone, so a plugin that
re-runs an inconclusive run gets a clean second attempt."""
import json
import os
import signal
import threading
import time

from flhil.harness.run.collector import Collector


def pc_node_pids():
    """{FL node id: pid} of the PC nodes this process started (children running flhil.pc)."""
    out = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().decode().split("\0")
            if ppid != me or "flhil.pc" not in argv:
                continue
            cfg = os.path.join(os.readlink("/proc/%s/cwd" % name), argv[argv.index("flhil.pc") + 1])
            with open(cfg) as f:
                out[json.load(f)["node"]] = int(name)
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return out


def install(victim, at_slot, stop_ms):
    """Patch the collector so that, in every run not named a re-run, node `victim` is stopped for
    `stop_ms` when the harness sees it start slot `at_slot`. Returns the list the stalls done are
    appended to, as (node, pid)."""
    done = []
    original = Collector.event

    def event(self, node, ev):
        if node == victim and ev.get("ev") == "slot_start" and ev.get("i") == at_slot and \
                "rerun" not in (self.run_dir or "") and not getattr(self, "_stalled", False):
            self._stalled = True
            threading.Thread(target=_stall, args=(victim, stop_ms, done), daemon=True).start()
        return original(self, node, ev)

    Collector.event = event
    return done


def _stall(node, stop_ms, done):
    pid = pc_node_pids().get(node)
    if pid is None:
        return
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(stop_ms / 1000.0)
    finally:
        os.kill(pid, signal.SIGCONT)
    done.append((node, pid))
