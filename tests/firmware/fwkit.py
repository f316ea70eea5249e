"""Helpers of the firmware tests (CPython and MicroPython): run configs for n nodes on distinct
loopback addresses, and a run of all of them on ONE event loop with telemetry collected as dicts.

Addresses: 127.A.B.(k+1) for node k, one fixed port, with A, B and the port hashed from the
test's name, the interpreter and a per-process nonce, so tests (the two interpreters, two copies of
the suite) do not share an address."""

from flhil.compat import asyncio, TimeoutError, MICROPYTHON
from flhil.clock import LoopClock
from flhil.entry import run_node
from flhil.prng import mix
from flhil.telemetry import Telemetry
from flhil.transport import TcpTransport, new_counts
from flhil.wire import Codec

class Skip(Exception):
    """A test that cannot run here (mprun prints SKIP, pytest skips)."""


# Bytes of MicroPython heap one in-process node needs (node, transport, connections, telemetry
# kept by the test), measured on the unix port: ~5 KB per node plus ~3 KB per connection pair,
# and the fragmentation of a heap shared by several nodes.
NODE_HEAP = 22000


def need_heap(n, per_node=NODE_HEAP):
    """Skip under MicroPython when the heap cannot hold n nodes in one process. A board runs one
    node; the test runs them all in one interpreter (192 KB heap, ~65 KB of it taken by code)."""
    if not MICROPYTHON:
        return
    import gc
    gc.collect()
    free = gc.mem_free()
    if free < n * per_node:
        raise Skip("%d nodes in one MicroPython process need ~%d KB of heap, %d KB free"
                   % (n, n * per_node // 1024, free // 1024))


# Telemetry kinds the tests never look at are not kept (the MicroPython heap is small).
NOT_KEPT = ("boot", "listen", "round_start", "heap")

KEY = "6b65792d6f662d7468652d746573742d72756e"  # "key-of-the-test-run"

TIMING = {
    "round_ms": 200,
    "recv_ms": 400,
    "quorum": 0.5,
    # clients start their slots later than the server by the start barrier's go latency (a new
    # connection each): a wide receive window keeps TDM tests steady on a loaded machine
    "slot_ms": 80,
    "guard_ms": 10,
    "startup_ms": 3000,
    "start_delay_ms": 30,
    "linger_ms": 50,
    "hang_report_ms": 1000,
    # the nodes of a test share one heap: a board's low-heap mark would refuse their connections
    "low_heap": 0,
}


def _nonce():
    import os
    b = os.urandom(4)
    return b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24


# one per process: two processes running the same test at once get different addresses
NONCE = _nonce()


def name_hash(name):
    return mix(NONCE, *[ord(c) for c in name + ("/micropython" if MICROPYTHON else "/cpython")])


def net_base(name):
    """('127.A.B.', port) for a test name."""
    h = name_hash(name)
    return "127.%d.%d." % (16 + h % 224, (h >> 8) & 0xFF), 30000 + (h >> 16) % 20000


def configs(name, n, app, args=None, timing=None, faults=None, strict=False, seed=1, server=0):
    base, port = net_base(name)
    t = dict(TIMING)
    t.update(timing or {})
    cfgs = []
    for k in range(n):
        cfgs.append({
            "run": "fw-" + name, "key": KEY, "node": k, "nodes": n, "server": server,
            "listen": [base + str(k + 1), port],
            "peers": {str(server): [base + str(server + 1), port]},
            "app": app, "args": dict(args or {}), "timing": t, "strict": strict, "seed": seed,
            "faults": faults or {},
        })
    return cfgs


class Run:
    def __init__(self, cfgs):
        self.cfgs = cfgs
        self.n = cfgs[0]["nodes"] if cfgs else 0  # cfgs may hold only some of the run's nodes
        self.events = [[] for _ in range(self.n)]
        self.nodes = None
        self.timed_out = False
        self.transports = []

    def ev(self, node, kind):
        return [e for e in self.events[node] if e["ev"] == kind]

    def all_ev(self, kind):
        out = []
        for i in range(self.n):
            out.extend(self.ev(i, kind))
        return out

    def result(self, node):
        r = self.ev(node, "result")
        return r[0]["value"] if r else None

    def results(self):
        return [self.result(i) for i in range(self.n)]

    def status(self, node):
        r = self.ev(node, "result")
        return r[0]["status"] if r else None

    def counts(self, node):
        c = self.ev(node, "counts")
        return c[0] if c else None

    def errors(self):
        return self.all_ev("error")


def _keeper(events, not_kept):
    def keep(e):
        if e["ev"] not in not_kept:
            events.append(e)
    return keep


async def run(cfgs, timeout_s=10.0, expect_timeout=False, not_kept=()):
    """Run every node of cfgs on this event loop. Returns a Run. A run that outlives timeout_s
    fails the test unless expect_timeout (then run.timed_out is True). Events of the kinds in
    not_kept (beside NOT_KEPT) are not kept."""
    need_heap(len(cfgs))
    r = Run(cfgs)
    clock = LoopClock()
    coros = []
    for cfg in cfgs:
        i = cfg["node"]
        tel = Telemetry(i, clock, sink=_keeper(r.events[i], NOT_KEPT + tuple(not_kept)))
        tr = TcpTransport(i, cfg["listen"], Codec.from_config(cfg), new_counts(), tel,
                          limits=cfg.get("timing"))
        r.transports.append(tr)
        coros.append(run_node(cfg, tr, clock, tel))
    try:
        r.nodes = await asyncio.wait_for(asyncio.gather(*coros), timeout_s)
    except TimeoutError:
        r.timed_out = True
    finally:
        for tr in r.transports:
            await tr.close()
    if r.timed_out and not expect_timeout:
        raise AssertionError("run did not end within %s s" % timeout_s)
    if not r.timed_out:
        errs = r.errors()
        assert not errs, "node errors: %r" % (errs,)
    return r


# ---------------------------------------------------------------- raw connections (attacks)

async def connect(addr):
    """(reader, writer) of a raw connection to a node, retrying until it listens."""
    for _ in range(400):
        try:
            rd, w = await asyncio.open_connection(addr[0], addr[1])
            return rd, w
        except OSError:
            await asyncio.sleep(0.005)
    raise AssertionError("cannot connect to %r" % (addr,))


async def send_raw(addr, data, hold_s=0.01):
    """Connect, send raw bytes, close. MicroPython's connect completes at the first write: a
    refused one shows there."""
    for _ in range(400):
        w = None
        try:
            _, w = await asyncio.open_connection(addr[0], addr[1])
            w.write(data)
            await w.drain()
            break
        except OSError:
            if w is not None:
                w.close()
            await asyncio.sleep(0.005)
    else:
        raise AssertionError("cannot connect to %r" % (addr,))
    await asyncio.sleep(hold_s)
    await close_stream(w)


async def close_stream(w):
    try:
        w.close()
        await w.wait_closed()  # MicroPython closes the socket here only
    except OSError:
        pass


def close(a, b, rel=1e-9):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def all_close(xs, ys, rel=1e-9):
    if len(xs) != len(ys):
        return False
    for a, b in zip(xs, ys):
        if type(a) in (list, tuple):
            if not all_close(a, b, rel):
                return False
        elif not close(a, b, rel):
            return False
    return True


# ---------------------------------------------------------------- host oracles (fault-free)

def central_avg(n, iterations, server=0, lost=()):
    """Ex2 values; `lost` holds (client, round) pairs whose reply never reaches the server."""
    x = [1.0 + i for i in range(n)]
    for k in range(iterations):
        sent = x[server]
        for i in range(n):
            if i != server:
                x[i] = (x[i] + sent) / 2
        msgs = [x[i] for i in range(n) if i != server and (i, k) not in lost]
        x[server] = sum(msgs) / len(msgs)
    return x


def decentral_avg(n, iterations):
    x = [1.0 + i for i in range(n)]
    for _ in range(iterations):
        new = []
        for i in range(n):
            msgs = [(x[i] + x[j]) / 2 for j in range(n) if j != i]
            new.append(sum(msgs) / len(msgs))
        x = new
    return x
