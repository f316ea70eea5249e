"""A TCP fault proxy per SuperNode-SuperLink link, on loopback, in one asyncio loop of its own
thread. A SuperNode connects to its link's port; the proxy connects on to the SuperLink and
forwards both directions ("up": SuperNode to SuperLink, "down": back), each byte chunk delivered
in order after the link's current faults:

- delay and jitter (ms; jitter uniform in [-jitter, +jitter], clipped at 0; order kept),
- a bandwidth limit (kbit/s: a chunk leaves after the previous one has, at that rate),
- a black hole (partition): nothing passes, new connections wait; what was sent meanwhile is
  delivered when it heals, as TCP's retransmissions would, unless a side gave up and closed,
- a reset: every open connection of the link is closed with a TCP RST.

Faults change while the run goes (`LinkState` setters, thread-safe); random draws come from a
generator seeded per link, so a seed gives the same draws for the same chunks."""
import asyncio
import random
import socket
import struct
import threading

DIRECTIONS = ("up", "down")
CHUNK = 65536


class LinkState:
    """The faults of one link now, per direction."""

    def __init__(self, seed, node):
        self.rng = random.Random("%d/%d" % (seed, node))
        self.delay_ms = {"up": 0.0, "down": 0.0}
        self.jitter_ms = {"up": 0.0, "down": 0.0}
        self.kbps = {"up": None, "down": None}
        self.blackhole = False
        self.healed = None  # asyncio.Event, set when not black-holed (made in the loop)
        self.connections = set()
        self.bytes = {"up": 0, "down": 0}
        self.chunks = {"up": 0, "down": 0}
        self.held_s = {"up": 0.0, "down": 0.0}  # time chunks spent in the proxy, read to written

    def delay_s(self, direction):
        d, j = self.delay_ms[direction], self.jitter_ms[direction]
        if j:
            d += self.rng.uniform(-j, j)
        return max(0.0, d) / 1000.0


class FaultProxy:
    """`add_link(node, target_port)` -> the port its SuperNode connects to; `start()` / `close()`."""

    def __init__(self, seed=1, host="127.0.0.1"):
        self.seed = seed
        self.host = host
        self.links = {}
        self._servers = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="flower-fault-proxy")
        self._started = False

    # -- life cycle --------------------------------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def start(self):
        if not self._started:
            self._thread.start()
            self._started = True

    def _call(self, coro_or_fn, timeout=10.0):
        """Run a coroutine (or a function) in the proxy's loop and wait for its result."""
        self.start()
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self._loop).result(timeout)

        async def wrapper():
            return coro_or_fn()
        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def add_link(self, node, target_port, target_host="127.0.0.1"):
        state = LinkState(self.seed, node)
        self.links[node] = state

        async def open_server():
            state.healed = asyncio.Event()
            state.healed.set()
            server = await asyncio.start_server(
                lambda r, w: self._serve(state, r, w, target_host, target_port), self.host, 0)
            self._servers[node] = server
            return server.sockets[0].getsockname()[1]
        return self._call(open_server())

    def close(self):
        if not self._started:
            return

        async def shut():
            for server in self._servers.values():
                server.close()
            for state in self.links.values():
                for w in list(state.connections):
                    w.transport.abort()
            for server in self._servers.values():
                try:
                    await asyncio.wait_for(server.wait_closed(), 2)
                except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                    pass
        try:
            self._call(shut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # -- faults (from any thread) ------------------------------------------------------------
    def set_link(self, node, direction=None, delay_ms=None, jitter_ms=None, kbps=False):
        """Set delay/jitter/bandwidth of one direction (both when None); kbps None lifts the limit."""
        state = self.links[node]
        for d in ((direction,) if direction else DIRECTIONS):
            if delay_ms is not None:
                state.delay_ms[d] = float(delay_ms)
            if jitter_ms is not None:
                state.jitter_ms[d] = float(jitter_ms)
            if kbps is not False:
                state.kbps[d] = kbps

    def blackhole(self, node, on):
        state = self.links[node]

        def flip():
            state.blackhole = bool(on)
            if on:
                state.healed.clear()
            else:
                state.healed.set()
        self._call(flip)

    def reset(self, node):
        """Close every open connection of the link with a RST; returns how many."""
        state = self.links[node]

        def rst():
            n = 0
            for w in list(state.connections):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                w.transport.abort()
                n += 1
            state.connections.clear()
            return n // 2  # each proxied connection has two sockets
        return self._call(rst)

    # -- forwarding --------------------------------------------------------------------------
    async def _serve(self, state, client_r, client_w, host, port):
        state.connections.add(client_w)
        try:
            await state.healed.wait()  # a black hole: the connection goes nowhere until it heals
            try:
                up_r, up_w = await asyncio.open_connection(host, port)
            except OSError:
                client_w.transport.abort()
                return
            state.connections.add(up_w)
            try:
                await asyncio.gather(self._pump(state, "up", client_r, up_w),
                                     self._pump(state, "down", up_r, client_w), return_exceptions=True)
            finally:
                state.connections.discard(up_w)
                up_w.close()
        finally:
            state.connections.discard(client_w)
            client_w.close()

    async def _pump(self, state, direction, reader, writer):
        loop = asyncio.get_running_loop()
        queue = asyncio.Queue()

        async def feed():
            tx_free = 0.0   # when the link is free to send the next chunk (bandwidth)
            last = 0.0      # delivery time of the previous chunk (order)
            try:
                while True:
                    data = await reader.read(CHUNK)
                    if not data:
                        break
                    now = loop.time()
                    start = now
                    kbps = state.kbps[direction]
                    if kbps:
                        start = max(now, tx_free)
                        tx_free = start + len(data) * 8 / (kbps * 1000.0)
                        start = tx_free
                    at = max(start + state.delay_s(direction), last)
                    last = at
                    state.bytes[direction] += len(data)
                    state.chunks[direction] += 1
                    await queue.put((at, data, now))
            except (ConnectionError, OSError):
                pass
            await queue.put(None)

        async def drain():
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    at, data, arrived = item
                    wait = at - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if state.blackhole:
                        await state.healed.wait()
                    writer.write(data)
                    await writer.drain()
                    state.held_s[direction] += loop.time() - arrived
                if writer.can_write_eof():
                    writer.write_eof()  # a half close; the connection closes when both sides end
            except (ConnectionError, OSError):
                writer.transport.abort()

        await asyncio.gather(feed(), drain())
