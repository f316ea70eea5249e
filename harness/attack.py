"""Hostile peers against live nodes: a small run of node processes (CPython, or the MicroPython
unix port with a board's heap) on loopback, and the attacks of tests/firmware/test_hostile_nodes.py
and bench/bench_hostile.py: idle, slow and flooding connections, malformed frames, and insiders
that hold a link key. Host-side only (CPython asyncio); every wait has a deadline and every
process is killed at the end."""
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

from flhil.auth import pair_table
from flhil.harness import micropython_path
from flhil.telemetry import PREFIX
from flhil.wire import Codec

LISTEN_PORT = 6000


def run_configs(n, app, args, base, timing=None, faults=None, secret=None, run=None):
    """Run configs of n nodes listening on base + str(k + 1) (base like "127.31.7."), server 0,
    every address known, each node holding its own links only."""
    secret = secret or secrets.token_bytes(16)
    run = run or "atk-" + secrets.token_hex(3)
    peers = {str(k): [base + str(k + 1), LISTEN_PORT] for k in range(n)}
    return [{"run": run, "node": k, "nodes": n, "server": 0, "listen": peers[str(k)], "peers": peers,
             "links": pair_table(secret, k, n).hex(), "app": app, "args": dict(args),
             "timing": dict(timing or {}), "strict": False, "seed": 1, "faults": faults or {}}
            for k in range(n)]


def insider_codec(configs, node):
    """The codec of `node` of a run: an insider signs with its own link keys only."""
    return Codec.from_config(configs[node])


class NodeProcs:
    """Node processes of one run; `events[k]` is node k's telemetry, as dicts."""

    def __init__(self, configs, interpreter="cpython", heap_kb=192):
        self.configs = configs
        self.interpreter = interpreter
        self.heap_kb = heap_kb
        self.events = [[] for _ in configs]
        self.other = [[] for _ in configs]  # lines that are not telemetry (tracebacks)
        self.procs = []
        self._dir = tempfile.mkdtemp(prefix="flhil-atk-")

    async def start(self):
        env = dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen")
        for cfg in self.configs:
            path = os.path.join(self._dir, "node%d.json" % cfg["node"])
            with open(path, "w") as f:
                json.dump(cfg, f)
            if self.interpreter == "micropython":
                argv = [shutil.which("micropython") or "micropython", "-X", "heapsize=%dk" % self.heap_kb,
                        "-m", "flhil.pc", path]
            else:
                argv = [sys.executable, "-u", "-m", "flhil.pc", path]
            p = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE,
                                                     stderr=subprocess.STDOUT, env=env, cwd=self._dir)
            self.procs.append(p)
        self._readers = [asyncio.ensure_future(self._read(k, p)) for k, p in enumerate(self.procs)]

    async def _read(self, k, p):
        while True:
            line = await p.stdout.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith(PREFIX):
                try:
                    self.events[k].append(json.loads(text[len(PREFIX):]))
                    continue
                except ValueError:
                    pass
            self.other[k].append(text)

    def ev(self, k, kind):
        return [e for e in self.events[k] if e["ev"] == kind]

    def first(self, k, kind):
        got = self.ev(k, kind)
        return got[0] if got else None

    async def wait_event(self, k, kind, timeout_s):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.first(k, kind) is not None:
                return self.first(k, kind)
            await asyncio.sleep(0.01)
        raise TimeoutError("node %d: no %s event within %s s" % (k, kind, timeout_s))

    async def wait(self, timeout_s):
        """Wait for every node to exit; True if they all did within timeout_s."""
        try:
            await asyncio.wait_for(asyncio.gather(*[p.wait() for p in self.procs]), timeout_s)
            await asyncio.wait_for(asyncio.gather(*self._readers), 5)
            return True
        except asyncio.TimeoutError:
            return False

    async def kill(self):
        for p in self.procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def round_ms(self, k=0):
        """Node k's round latencies (ms): round_start -> round_end of each round not skipped."""
        starts = {}
        out = []
        for e in self.events[k]:
            if e["ev"] == "round_start":
                starts[e["i"]] = e["t"]
            elif e["ev"] == "round_end" and not e.get("skipped") and e["i"] in starts:
                out.append((e["t"] - starts[e["i"]]) / 1000.0)
        return out


# -- attacks ---------------------------------------------------------------------------------
async def connect(addr, timeout_s=10.0):
    """A raw connection; a loaded host can take seconds to complete a connect."""
    return await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), timeout_s)


async def idle_connections(addr, count, first=b"\x00"):
    """`count` connections, each sending `first` (a byte of a header) and then nothing. Returns
    the writers (the caller closes them) and how many connects failed (refused by the node)."""
    writers, failed = [], 0
    for _ in range(count):
        try:
            _, w = await connect(addr, 2.0)
            w.write(first)
            await w.drain()
            writers.append(w)
        except (OSError, asyncio.TimeoutError):
            failed += 1
    return writers, failed


async def slow_sender(addr, data, per_byte_s):
    """Send `data` one byte per per_byte_s; returns how many bytes went before the node closed."""
    sent = 0
    try:
        _, w = await connect(addr)
        for b in data:
            w.write(bytes([b]))
            await w.drain()
            sent += 1
            await asyncio.sleep(per_byte_s)
        close(w)
    except (OSError, asyncio.TimeoutError):
        pass
    return sent


async def send_frames(addr, frames, per_connection=None):
    """Send byte strings, `per_connection` on each connection (all on one when None); a connect
    or write that fails raises (the caller's accounting would be wrong)."""
    frames = list(frames)
    step = per_connection or max(1, len(frames))
    for k in range(0, len(frames), step):
        _, w = await connect(addr)
        w.write(b"".join(frames[k:k + step]))
        await w.drain()
        await asyncio.sleep(0.01)
        close(w)


async def flood(addr, frame, rate_per_s, duration_s, per_connection=50):
    """Bad frames at `rate_per_s` for duration_s, `per_connection` a connection. Returns how many
    frames were written."""
    sent = 0
    end = time.monotonic() + duration_s
    batch = frame * per_connection
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            _, w = await connect(addr, 2.0)
            w.write(batch)
            await w.drain()
            close(w)
            sent += per_connection
        except (OSError, asyncio.TimeoutError):
            pass
        wait = per_connection / float(rate_per_s) - (time.monotonic() - t0)
        if wait > 0:
            await asyncio.sleep(wait)
    return sent


def close(w):
    try:
        w.close()
    except OSError:
        pass
