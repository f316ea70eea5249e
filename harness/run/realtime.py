"""The real-time backend: a run's nodes on a lab's boards (real or emulated) and PC processes.

Phases, each with a deadline: start (every node gets its config and starts), ready (every node
passes the start barrier), run (every node reaches `done`). A reader thread per node feeds what
the node prints to the collector; a node that misses the deadline is stopped, and the record says
what it waited for, with whatever it printed until then."""
import threading
import time

from flhil.harness.run.backend import Backend
from flhil.harness.run.collector import NodeSlot
from flhil.harness.run.hostlag import HarnessLagMonitor
from flhil.vocab import TERMINAL_EVENT


class LabBackend(Backend):
    """`boards` of a run's nodes on boards (real ones under `hil`, else emulated), the rest PC
    processes; `boards=None` puts every node on a board. With `nodes` (prepared boards and PC
    nodes, one per FL node) instead of a lab, runs go on those and the caller keeps them."""

    name = "realtime"

    def __init__(self, lab=None, boards=None, hil=False, nodes=None):
        if (lab is None) == (nodes is None):
            raise ValueError("LabBackend takes a lab or a list of nodes")
        self.lab = lab
        self.boards = boards
        self.hil = hil
        self.given = list(nodes) if nodes is not None else None
        self._nodes = []

    def run_dir(self, name):
        return None if self.lab is None else self.lab.run_dir(name)

    def place(self, spec, run_dir):
        if self.given is not None:
            if len(self.given) != spec.nodes:
                raise ValueError("the spec wants %d nodes, %d given" % (spec.nodes, len(self.given)))
            self._nodes = list(self.given)
        else:
            app_files = spec.user_app.board_files() if spec.user_app is not None else None
            self._nodes = self.lab.allocate(spec.nodes, self.boards, self.hil, run_dir, app_files)
        return [NodeSlot(i, n.kind, n.name, n.address, getattr(n, "heap_kb", None),
                         getattr(n, "listen_port", None))
                for i, n in enumerate(self._nodes)]

    def label(self, slots):
        kinds = sorted(set(s.kind for s in slots))
        return kinds[0] if len(kinds) == 1 else "mixed"

    def wifi(self):
        if self.hil and self.lab is not None and self.lab.spec.network is not None:
            return {"ssid": self.lab.spec.network.ssid, "password": self.lab.spec.wifi_password()}
        return None

    def secrets(self):
        return [] if self.lab is None else self.lab.secrets()

    def run(self, spec, configs, collector):
        nodes = self._nodes
        t = time.monotonic()
        run_end = t + spec.deadline_s()
        readers = []
        monitor = HarnessLagMonitor(collector._t0)
        monitor.start()
        try:
            for i, (node, cfg) in enumerate(zip(nodes, configs)):
                recovered = len(getattr(node, "recoveries", ()))
                try:
                    node.start(cfg)
                except Exception as e:  # noqa: BLE001 - one board must not take the run down
                    collector.node_error(i, "could not start on %s: %s" % (node.name, e))
                    continue
                finally:
                    for why in getattr(node, "recoveries", [])[recovered:]:
                        collector.note(i, "board %s %s" % (node.name, why))
                reader = _Reader(i, node, run_end, collector)
                reader.start()
                readers.append(reader)
            collector.phase("start")
            ready_end = time.monotonic() + spec.startup_deadline_s()
            for r in readers:
                r.ready.wait(max(0, ready_end - time.monotonic()))
            collector.phase("ready")
            for r in readers:
                r.join(max(0, run_end - time.monotonic()))
            collector.phase("run")
        finally:
            for i, node in enumerate(nodes):
                try:
                    node.stop()
                except Exception as e:  # noqa: BLE001
                    collector.node_error(i, "stop failed on %s: %s" % (node.name, e))
            for r in readers:
                r.join(2)
            harness_lag = monitor.stop()
        unfinished = [r.index for r in readers if not r.finished and r.error is None]
        return unfinished, "done" if not unfinished else "deadline", {"harness_lag": harness_lag}

    def release(self, slots):
        if self.given is None:
            for node in self._nodes:
                if node.kind == "pc":
                    node.close()
        self._nodes = []


class _Reader(threading.Thread):
    """Reads one node's output until `done`, EOF or the deadline, into the collector."""

    def __init__(self, index, node, deadline, collector):
        super().__init__(daemon=True, name="node-%d" % index)
        self.index = index
        self.node = node
        self.deadline = deadline
        self.collector = collector
        self.ready = threading.Event()
        self.error = None
        self.finished = False

    def run(self):
        state = self.collector.nodes[self.index]
        try:
            for line in self.node.lines(self.deadline):
                self.collector.line(self.index, line)
                if state.ready:
                    self.ready.set()
                if state.done:
                    self.finished = True
                    return
        except Exception as e:  # noqa: BLE001 - a broken board must not take the others' results
            self.error = "%s: %s" % (type(e).__name__, e)
            self.collector.node_error(self.index, self.error)
        finally:
            self.ready.set()
            self.collector.flush_node(self.index)


__all__ = ["LabBackend", "TERMINAL_EVENT"]
