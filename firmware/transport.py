"""Transports move frames between nodes. `Transport` holds what every transport shares (encoding,
authentication, counting, delivery); `TcpTransport` implements it on asyncio streams with one
persistent connection per peer and direction. The in-memory transport lives in `memnet.py`."""
from flhil.compat import asyncio, MICROPYTHON, TimeoutError
from flhil.wire import Rejected, HEADER

COUNTERS = ("sent", "recv", "drop_fault", "duplicate", "stale", "rejected", "overflow")


def new_counts():
    counts = {}
    for k in COUNTERS:
        counts[k] = 0
    return counts


class Transport:
    """send(dst, msg) never blocks and never raises: a frame that cannot go out is counted."""

    def __init__(self, node_id, codec, counts, tel, max_queue=256):
        self.node_id = node_id
        self.codec = codec
        self.counts = counts
        self.tel = tel
        self.max_queue = max_queue
        self.peers = {}
        self.address = None
        self._sink = None

    def set_sink(self, fn):
        self._sink = fn

    def set_peers(self, table):
        for k in table:
            self.peers[int(k)] = (table[k][0], int(table[k][1]))

    async def start(self):
        raise NotImplementedError

    def send(self, dst, msg):
        try:
            frame = self.codec.encode(msg)
        except Rejected as e:
            self.counts["overflow"] += 1
            self.tel.emit("drop", why=e.why, dst=dst, p=msg.get("p"), i=msg.get("i"))
            return
        self.counts["sent"] += 1
        self._send_frame(dst, frame)

    def broadcast(self, dsts, msg):
        """The same message to several peers, encoded once: on a 192 KB heap, n copies of a
        frame (the start-up peer table, a model) fragment the heap of a server with many peers."""
        try:
            frame = self.codec.encode(msg)
        except Rejected as e:
            self.counts["overflow"] += 1
            self.tel.emit("drop", why=e.why, p=msg.get("p"), i=msg.get("i"))
            return
        for dst in dsts:
            self.counts["sent"] += 1
            self._send_frame(dst, frame)

    def _send_frame(self, dst, frame):
        raise NotImplementedError

    async def flush(self, timeout_s):
        """Wait (bounded) until queued frames are written."""

    async def close(self):
        raise NotImplementedError

    def reject(self, why, detail="", src=None):
        self.counts["rejected"] += 1
        self.tel.emit("drop", why=why, src=src, detail=detail[:80])

    def receive_body(self, body):
        try:
            msg = self.codec.decode(body)
        except Rejected as e:
            self.reject(e.why, e.detail)
            return
        self.counts["recv"] += 1
        if self._sink is not None:
            self._sink(msg)


class _Link:
    """Outgoing frames to one peer over one persistent connection, reconnecting with backoff."""

    def __init__(self, transport, dst):
        self.t = transport
        self.dst = dst
        self.queue = []
        self.wake = asyncio.Event()
        self.writer = None
        self.task = asyncio.create_task(self._run())

    def put(self, frame):
        if len(self.queue) >= self.t.max_queue:
            self.queue.pop(0)
            self.t.counts["overflow"] += 1
            self.t.tel.emit("drop", why="overflow", dst=self.dst)
        self.queue.append(frame)
        self.wake.set()

    async def _connect(self):
        backoff = 0.01
        while True:
            addr = self.t.peers.get(self.dst)
            if addr is not None:
                try:
                    _, w = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), 2)
                    return w
                except (OSError, TimeoutError):
                    pass
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)

    async def _run(self):
        backoff = 0.01
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            if self.writer is None:
                self.writer = await self._connect()
            try:
                while self.queue:
                    self.writer.write(self.queue[0])
                    await self.writer.drain()
                    self.queue.pop(0)  # popped after the write: a broken link resends it
                    backoff = 0.01
            except OSError:
                self._drop_writer()
                # MicroPython's open_connection returns before the connect completes and a refused
                # connect fails at the first write: without a pause a dead peer is retried in a
                # busy loop (thousands of sockets a second)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.5)

    def _drop_writer(self):
        w, self.writer = self.writer, None
        if w is not None:
            try:
                w.close()
            except OSError:
                pass

    def close(self):
        self.task.cancel()
        self._drop_writer()


class TcpTransport(Transport):
    def __init__(self, node_id, listen, codec, counts, tel, max_queue=256):
        Transport.__init__(self, node_id, codec, counts, tel, max_queue)
        self.listen = (listen[0], int(listen[1]))
        self._server = None
        self._links = {}
        self._readers = []

    async def start(self):
        host, port = self.listen
        if port == 0 and MICROPYTHON:
            raise ValueError("listen port 0 needs socket.getsockname, which MicroPython lacks; give a port")
        self._server = await asyncio.start_server(self._serve, host, port)
        if port == 0:
            port = self._server.sockets[0].getsockname()[1]
        self.address = (host, port)
        return self.address

    def _send_frame(self, dst, frame):
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = _Link(self, dst)
        link.put(frame)

    async def _serve(self, reader, writer):
        self._readers.append(writer)
        try:
            while True:
                try:
                    header = await reader.readexactly(HEADER)
                except EOFError as e:
                    if getattr(e, "partial", b""):
                        self.reject("truncated", "connection closed inside a header")
                    return
                try:
                    n = self.codec.body_length(header)
                except Rejected as e:
                    self.reject(e.why, e.detail)  # cannot resynchronise: drop the connection
                    return
                try:
                    body = await reader.readexactly(n)
                except EOFError:
                    self.reject("truncated", "connection closed inside a %d-byte body" % n)
                    return
                self.receive_body(body)
        except OSError:
            return
        finally:
            if writer in self._readers:
                self._readers.remove(writer)
            try:
                writer.close()
            except OSError:
                pass

    async def flush(self, timeout_s):
        step = 0.005
        waited = 0.0
        while waited < timeout_s and any(l.queue for l in self._links.values()):
            await asyncio.sleep(step)
            waited += step

    async def close(self):
        for link in self._links.values():
            link.close()
        self._links = {}
        for w in self._readers:
            try:
                w.close()
            except OSError:
                pass
        self._readers = []
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1)
            except (TimeoutError, OSError):
                pass
            self._server = None
