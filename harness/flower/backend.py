"""The Flower backend: a run's nodes are Flower's own processes on this host, on loopback.

    node 0         flower-superlink --insecure (its ServerApp in a flwr-serverapp subprocess)
    node 1..N      flower-supernode --insecure, partition-id i-1 of N, each through its own
                   fault proxy (proxy.py) to the SuperLink

Phases, each with a deadline: start (the SuperLink answers, the run is submitted with `flwr run`),
ready (the ServerApp started), run (the ServerApp ended). The ServerApp's rounds come as fl-hil
telemetry from the hook (hook/sitecustomize.py), Flower node ids turned into fl-hil ones; a run
whose ServerApp says nothing new for `stall_s` is stopped as a hang with what it waited for.
Every process is started through the reaper and killed when the run ends, however it ends."""
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time

from flhil.harness.flower import faults as schedule
from flhil.harness.flower.project import FlowerError, check_flwr, command, preflight
from flhil.harness.flower.proxy import FaultProxy
from flhil.harness.lab import reaper
from flhil.harness.run.backend import Backend
from flhil.harness.run.collector import NodeSlot
from flhil.harness.run.telemetry import parse_line

HOST = "127.0.0.1"
HOOK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hook")
CONNECTION = "fl-hil"
TICK_S = 0.05
STALL_SLACK_S = 20.0
NODE_ID_LINE = re.compile(r"SuperNode ID:\s*(\d+)")
READY_LINE = "Uvicorn running"
SUBMIT_TIMEOUT_S = 120.0
NODE_ID_FIELDS = ("got", "miss", "on", "sent")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def now_us():
    return int(time.monotonic() * 1e6)


class FlowerBackend(Backend):
    """Runs specs of algorithm "flower". `run_dirs(name)` gives a run's directory (a lab's), else
    each run gets a temporary one, removed when it is released unless `keep` is set."""

    name = "flower"
    keep_events = True

    def __init__(self, run_dirs=None, direct=()):
        self.run_dirs = run_dirs
        self.direct = direct  # SuperNodes straight to the SuperLink, no proxy (True: all; the bench's baseline)
        self._project = None
        self._tmp = None

    def run_dir(self, name):
        if self.run_dirs is not None:
            return self.run_dirs(name)
        self._tmp = tempfile.mkdtemp(prefix="flhil-flower-")
        return self._tmp

    def place(self, spec, run_dir):
        if spec.flower is None:
            raise FlowerError("the Flower backend runs Flower scenarios (algorithm = \"flower\"), not %s" % spec.app)
        flower = spec.flower
        self._project = preflight(flower["project"], flower.get("run_config") or {})
        slots = [NodeSlot(0, "flower", "superlink", HOST)]
        slots += [NodeSlot(i, "flower", "supernode%d" % i, HOST) for i in range(1, flower["supernodes"] + 1)]
        return slots

    def label(self, slots):
        return "flower"

    def run(self, spec, configs, collector):
        run_dir = collector.run_dir or self._tmp or tempfile.mkdtemp(prefix="flhil-flower-")
        lab = FlowerLab(spec, self._project, run_dir, collector, direct=self.direct)
        return lab.run()

    def release(self, slots):
        if self._tmp is not None and self.run_dirs is None:
            import shutil
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


class _Proc:
    """One Flower process: its Popen, its output read into the collector by a thread."""

    def __init__(self, argv, env, cwd, on_line, name):
        self.name = name
        self.proc = reaper.spawn(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
        self.paused = False
        self.thread = threading.Thread(target=self._read, args=(on_line,), daemon=True, name=name)
        self.thread.start()

    def _read(self, on_line):
        for line in self.proc.stdout:
            on_line(_strip_ansi(line.rstrip("\n")))

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        """Signal its process group and the processes it started in sessions of their own."""
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in descendants(self.proc.pid):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def kill(self):
        """Kill it and every process it started, those Flower detaches into their own sessions
        (SuperExec's flwr-serverapp and flwr-clientapp) included."""
        tree = descendants(self.proc.pid)
        if self.paused:
            self.signal(signal.SIGCONT)
        reaper.kill(self.proc, grace_s=0.5)
        kill_pids(tree)
        self.thread.join(2)


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid):
    """Every live descendant of pid (Linux /proc), whatever its session."""
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def processes_naming(ports):
    """Processes whose command line names one of these loopback ports (orphans of a Flower lab)."""
    marks = ["%s:%d" % (HOST, p) for p in ports]
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m + " " in cmd + " " for m in marks):
            out.append(int(entry))
    return out


def kill_pids(pids):
    for pid in pids:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(text):
    return _ANSI.sub("", text)


class FlowerLab:
    """One run's Flower processes, proxies and fault schedule."""

    def __init__(self, spec, project, run_dir, collector, direct=()):
        self.spec, self.project, self.run_dir, self.collector = spec, project, run_dir, collector
        self.flower = spec.flower
        self.n = self.flower["supernodes"]
        self.direct = set(range(1, self.n + 1)) if direct is True else set(direct or ())
        self.cfg = dict(project.run_config)
        self.cfg.update(self.flower.get("run_config") or {})
        self.procs = {}             # fl-hil node -> _Proc
        self.flower_ids = {}        # Flower node id -> fl-hil node
        self.ids_of = {i: [] for i in range(1, self.n + 1)}
        self.connected = set()
        self.down = set()
        self.cut = set()
        self.answered = {i: 0 for i in range(1, self.n + 1)}
        self.t0 = None              # the ServerApp's start, µs (the run's time origin)
        self.round = 0
        self.last_progress = time.monotonic()
        self.server_done = False
        self.server_failed = None
        self.superlink_tail = []
        self.superlink_ready = threading.Event()
        self.lock = threading.Lock()
        self.proxy = None
        self.ports = {}
        self.env = None
        self.flwr_run_id = None

    # -- events -----------------------------------------------------------------------------
    def emit(self, node, ev, **fields):
        fields.update(ev=ev, n=node, t=now_us())
        self.collector.event(node, fields)

    def _superlink_line(self, text):
        self.collector.line(0, text)
        with self.lock:
            self.superlink_tail = (self.superlink_tail + [text])[-20:]
        if READY_LINE in text:
            self.superlink_ready.set()

    def _supernode_line(self, node, text):
        self.collector.line(node, text)
        m = NODE_ID_LINE.search(text)
        if m:
            fid = int(m.group(1))
            with self.lock:
                self.flower_ids[fid] = node
                self.ids_of[node].append(fid)
                self.connected.add(node)
            self.emit(node, "listen", addr=[HOST, self.ports.get(node)], flower_id=str(fid))
            if self.t0 is not None:
                self.emit(node, "ready", t0=self.t0, peers=1, missing=[])

    def _translate(self, ev):
        for key in NODE_ID_FIELDS:
            if isinstance(ev.get(key), list):
                ev[key] = sorted((self.flower_ids.get(int(x), "flower:%s" % x) if str(x).isdigit() else x
                                  for x in ev[key]), key=lambda v: (isinstance(v, str), v if isinstance(v, int) else 0,
                                                                    str(v)))
        if isinstance(ev.get("reply_ms"), dict):
            ev["reply_ms"] = {str(self.flower_ids.get(int(k), "flower:%s" % k)) if str(k).isdigit() else k: v
                              for k, v in ev["reply_ms"].items()}
        for e in ev.get("errors") or []:
            if isinstance(e, dict) and str(e.get("node", "")).isdigit():
                e["node"] = self.flower_ids.get(int(e["node"]), e["node"])
        return ev

    def _server_event(self, ev):
        ev = self._translate(ev)
        kind = ev.get("ev")
        if kind != "waiting":  # a wait that goes on is not progress
            self.last_progress = time.monotonic()
        if kind == "ready":
            self.t0 = ev.get("t0")
            for node in sorted(self.connected):
                self.emit(node, "ready", t0=self.t0, peers=1, missing=[])
        elif kind == "round_start":
            self.round = ev.get("i") or self.round
        elif kind == "round_end":
            for node in ev.get("got") or []:
                if node in self.answered:
                    self.answered[node] += 1
        elif kind == "done":
            self.server_done = True
        elif kind == "error":
            self.server_failed = ev.get("msg")
        self.collector.line(0, "@@flhil " + json.dumps(ev))

    def _tail_telemetry(self, path, stop):
        """Follow the hook's telemetry file until `stop` is set."""
        pos = 0
        buf = ""
        while not stop.is_set():
            try:
                with open(path, encoding="utf-8") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos = f.tell()
            except FileNotFoundError:
                chunk = ""
            if chunk:
                buf += chunk
                *lines, buf = buf.split("\n")
                for line in lines:
                    ev = parse_line(line)
                    if ev is None:
                        self.collector.line(0, line)
                    else:
                        self._server_event(ev)
            else:
                stop.wait(TICK_S)

    # -- processes --------------------------------------------------------------------------
    def _environment(self):
        env = dict(os.environ)
        home = os.path.join(self.run_dir, "flwr-home")
        os.makedirs(home, exist_ok=True)
        with open(os.path.join(home, "config.toml"), "w", encoding="utf-8") as f:
            f.write('[superlink]\ndefault = "%s"\n\n[superlink.%s]\naddress = "%s:%d"\ninsecure = true\n'
                    % (CONNECTION, CONNECTION, HOST, self.ports[0]))
        env.update(FLWR_HOME=home, FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1",
                   FLHIL_FLOWER_TELEMETRY=self.telemetry_path, FLHIL_FLOWER_POLL_S=str(self.flower.get("poll_s", 0.25)),
                   PYTHONPATH=os.pathsep.join([HOOK_DIR] + [p for p in [env.get("PYTHONPATH")] if p]),
                   COLUMNS="200", NO_COLOR="1")
        return env

    def _start_supernode(self, node):
        port = free_port()
        target = self.ports["proxy"].get(node, self.ports[0])
        argv = [command("flower-supernode"), "--insecure", "--superlink", "%s:%d" % (HOST, target),
                "--host", HOST, "--port", str(port),
                "--node-config", "partition-id=%d num-partitions=%d" % (node - 1, self.n)]
        self.ports[node] = port
        self.procs[node] = _Proc(argv, self.env, self.run_dir, lambda text, i=node: self._supernode_line(i, text),
                                 "supernode-%d" % node)
        self.emit(node, "boot", impl="flower-supernode", ver=self.version, heap=None, pid=self.procs[node].proc.pid)

    def _submit(self):
        overrides = self.flower.get("run_config") or {}
        argv = [command("flwr"), "run", self.project.path, CONNECTION, "--format", "json"]
        if overrides:
            argv += ["--run-config", " ".join("%s=%s" % (k, _toml_value(v)) for k, v in overrides.items())]
        self.collector.line(0, "fl-hil: " + " ".join(shlex.quote(a) for a in argv))
        proc = reaper.spawn(argv, env=self.env, cwd=self.run_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
        try:
            out, _ = proc.communicate(timeout=SUBMIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            reaper.kill(proc)
            raise FlowerError("flwr run did not return within %d s" % SUBMIT_TIMEOUT_S) from None
        finally:
            reaper.kill(proc, grace_s=0.1)
        for line in out.splitlines():
            self.collector.line(0, "flwr run: " + _strip_ansi(line))
        try:
            answer = json.loads(out[out.index("{"):])
        except ValueError:
            raise FlowerError("flwr run answered no JSON: %s" % out.strip()[-400:]) from None
        if not answer.get("success"):
            raise FlowerError("flwr run failed: %s" % answer.get("error-message", out.strip()[-400:]))
        self.flwr_run_id = answer.get("run-id")

    # -- faults -----------------------------------------------------------------------------
    def _apply(self, action, ms):
        node = action.node
        fields = {"kind": action.kind, "i": self.round}
        if action.kind == "delay":
            if node in self.proxy_links():
                self.proxy.set_link(node, action.args["direction"], delay_ms=action.args["ms"],
                                    jitter_ms=action.args["jitter_ms"])
            fields.update(dir=action.args["direction"], ms=action.args["ms"], jitter_ms=action.args["jitter_ms"])
            if action.args.get("heal"):
                fields["kind"], fields["heal"] = "delay", True
        elif action.kind == "bandwidth":
            if node in self.proxy_links():
                self.proxy.set_link(node, kbps=action.args["kbps"])
            fields["kbps"] = action.args["kbps"]
        elif action.kind in ("partition", "heal"):
            if node in self.proxy_links():
                self.proxy.blackhole(node, action.kind == "partition")
            (self.cut.add if action.kind == "partition" else self.cut.discard)(node)
            fields.update(kind="partition", heal=action.kind == "heal")
        elif action.kind == "reset":
            fields["connections"] = self.proxy.reset(node) if node in self.proxy_links() else 0
        elif action.kind == "crash":
            proc = self.procs.get(node)
            if proc is not None:
                proc.kill()
            self.down.add(node)
            self.connected.discard(node)
            fields["signal"] = "SIGKILL"
        elif action.kind == "rejoin":
            self.down.discard(node)
            self._start_supernode(node)
        elif action.kind in ("pause", "resume"):
            proc = self.procs.get(node)
            if proc is not None:
                proc.signal(signal.SIGSTOP if action.kind == "pause" else signal.SIGCONT)
                proc.paused = action.kind == "pause"
            fields["signal"] = "SIGSTOP" if action.kind == "pause" else "SIGCONT"
        if ms is not None:
            fields["ms_run"] = round(ms, 1)
        fields["dst"] = 0
        self.emit(node, "fault", **fields)

    def proxy_links(self):
        return self.proxy.links if self.proxy is not None else {}

    # -- the run ----------------------------------------------------------------------------
    def deadlines(self):
        rounds = int(self.cfg.get("num-server-rounds", 3) or 3)
        timeout = float(self.cfg.get("round-timeout", 60) or 60)
        stall = self.flower.get("stall_s") or 2 * timeout + STALL_SLACK_S
        total = self.flower.get("deadline_s") or self.spec.deadline or (
            self.flower.get("startup_s", 90.0) + rounds * 2 * timeout * 1.5 + STALL_SLACK_S)
        return float(self.flower.get("startup_s", 90.0)), float(stall), float(total)

    def run(self):
        self.version = check_flwr()
        startup_s, stall_s, total_s = self.deadlines()
        start = time.monotonic()
        run_end = start + total_s
        self.telemetry_path = os.path.join(self.run_dir, "serverapp.telemetry")
        open(self.telemetry_path, "w").close()
        self.ports[0] = free_port()
        self.env = self._environment()
        plan = schedule.build(self.spec.faults, self.flower, self.n)
        stop = threading.Event()
        tail = threading.Thread(target=self._tail_telemetry, args=(self.telemetry_path, stop), daemon=True)
        why, unfinished = "done", []
        waiting_for = None
        try:
            if len(self.direct) < self.n:
                self.proxy = FaultProxy(seed=self.spec.faults.get("seed", self.spec.seed))
            argv = [command("flower-superlink"), "--insecure", "--host", HOST, "--port", str(self.ports[0]),
                    "--disable-runtime-dependency-installation"]
            self.procs[0] = _Proc(argv, self.env, self.run_dir, self._superlink_line, "superlink")
            self.emit(0, "boot", impl="flower-superlink", ver=self.version, heap=None, pid=self.procs[0].proc.pid)
            if not self.superlink_ready.wait(max(0.0, min(startup_s, run_end - time.monotonic()))):
                raise _Hang("start", {"on": "the SuperLink to listen on %s:%d" % (HOST, self.ports[0]),
                                      "ms": round((time.monotonic() - start) * 1000)})
            self.ports["proxy"] = {}
            if self.proxy is not None:
                for i in range(1, self.n + 1):
                    if i not in self.direct:
                        self.ports["proxy"][i] = self.proxy.add_link(i, self.ports[0])
            for a in plan.initial():
                self._apply(a, None)
            for i in range(1, self.n + 1):
                self._start_supernode(i)
            tail.start()
            self._submit()
            self.collector.phase("start")
            ready_end = min(run_end, time.monotonic() + startup_s)
            self.last_progress = time.monotonic()
            while not self.server_done:
                t = time.monotonic()
                if self.t0 is None and t > ready_end:
                    raise _Hang("start", {"on": "the ServerApp to start (flwr run %s submitted)" % self.flwr_run_id,
                                          "ms": round((t - start) * 1000)})
                if self.t0 is not None and "ready" not in self.collector.phases:
                    self.collector.phase("ready")
                if t > run_end:
                    raise _Hang("run", None, "the run's deadline (%.0f s) passed" % total_s)
                if t - self.last_progress > stall_s:
                    raise _Hang("run", None, "the ServerApp said nothing new for %.0f s (stall_s)" % stall_s)
                if self.procs[0].proc.poll() is not None:
                    raise FlowerError("the SuperLink exited with status %s" % self.procs[0].proc.returncode)
                if self.t0 is not None:
                    ms = (now_us() - self.t0) / 1000.0
                    for a in plan.due(self.round, ms):
                        self._apply(a, ms)
                        plan.happened(a, ms)
                time.sleep(TICK_S)
            if "ready" not in self.collector.phases:
                self.collector.phase("ready")
        except _Hang as h:
            why, unfinished = "deadline", [0]
            waiting_for = h
        except FlowerError as e:
            self.collector.node_error(0, str(e))
            why, unfinished = "deadline", []
        finally:
            time.sleep(0.2)
            stop.set()
            if tail.is_alive():
                tail.join(2)
            for node in sorted(self.procs, reverse=True):
                self.procs[node].kill()
            kill_pids(processes_naming([v for k, v in self.ports.items() if k != "proxy"]))
            if self.proxy is not None:
                self.proxy.close()
            self.collector.phase("run")
        for i in range(1, self.n + 1):
            if why == "done":
                status = "crashed" if i in self.down else "ok"
                self.emit(i, "result", value={"answered": self.answered[i], "flower_ids": [str(x) for x in
                                                                                          self.ids_of[i]]},
                          status=status)
            self.emit(i, "done")
        extra = {"flower": {"version": self.version, "project": self.project.path, "run_id": self.flwr_run_id,
                            "run_config": self.cfg, "nodes": {str(i): [str(x) for x in v] for i, v in
                                                              self.ids_of.items()},
                            "proxy": None if self.proxy is None else {
                                str(i): {"bytes": dict(s.bytes), "chunks": dict(s.chunks),
                                         "held_ms": {d: round(v * 1000, 3) for d, v in s.held_s.items()}}
                                for i, s in self.proxy.links.items()},
                            "ports": {str(k): v for k, v in self.ports.items() if k != "proxy"}}}
        if waiting_for is not None:
            extra["hang"] = self._hang(waiting_for)
        return unfinished, why, extra

    def _hang(self, h):
        """What the run waited for: the ServerApp's last wait, the SuperLink's view of the nodes."""
        state = self.collector.nodes[0]
        w = state.last_wait
        waiting = h.waiting
        if waiting is None:
            if w is not None and w.get("ev") == "waiting":
                waiting = {"p": w.get("p"), "i": w.get("i"), "on": w.get("on"), "ms": w.get("ms")}
            elif w is not None:
                waiting = {"step": w.get("ev"), "i": w.get("i")}
            else:
                waiting = {"last_event": state.last_kind}
        with self.lock:
            tail = list(self.superlink_tail[-8:])
        return {"node": 0, "phase": h.phase, "waiting": waiting, "why": h.why or "no progress",
                "round": self.round,
                "superlink": {"connected": sorted(self.connected - self.down), "down": sorted(self.down),
                              "cut_off": sorted(self.cut), "log": tail}}


class _Hang(Exception):
    def __init__(self, phase, waiting, why=None):
        super().__init__(why or phase)
        self.phase, self.waiting, self.why = phase, waiting, why


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)
