"""Transports move messages between nodes.

`Transport` is the interface the node runtime uses. `FramedTransport` implements what the real
media share (encoding, authentication, counting, delivery); `TcpTransport` puts its frames on
asyncio streams, one persistent connection per peer and direction, and `MemoryTransport`
(memnet.py) on an in-memory network in virtual time. The fault layer (`faults.FaultyTransport`)
is a Transport that wears another one, so any transport can carry faults."""
from flhil.compat import asyncio, MICROPYTHON, TimeoutError
from flhil.vocab import new_counts
from flhil.wire import Rejected, HEADER


class FrameTooLarge(ValueError):
    """A message larger than the run's frame limit: raised at the sender, where it can be fixed."""

    def __init__(self, node, msg, detail, limit):
        ValueError.__init__(self, "node %s: the %s message of step %s is too large (%s, limit %d bytes); "
                            "raise max_frame_kb in the scenario's [nodes] table (run config: max_frame)"
                            % (node, msg.get("p"), msg.get("i"), detail, limit))


class Transport:
    """What a node needs from its network. `send` never blocks and raises only FrameTooLarge: a
    message that cannot go out is counted. `counts` and `tel` are the node's (the runtime sets them)."""

    counts = None
    tel = None
    needs_table = True  # False: peers are reached by id and need no address table at start-up

    @property
    def address(self):
        """(host, port) this node listens on, once started."""
        raise NotImplementedError

    @property
    def peers(self):
        """{node id: (host, port)} known so far."""
        raise NotImplementedError

    def set_sink(self, fn):
        """fn(message dict) receives every accepted message."""
        raise NotImplementedError

    def set_peers(self, table):
        raise NotImplementedError

    async def start(self):
        """Start listening; returns this node's address."""
        raise NotImplementedError

    def send(self, dst, msg):
        raise NotImplementedError

    def broadcast(self, dsts, msg):
        """The same message to several peers."""
        for dst in dsts:
            self.send(dst, msg)

    async def flush(self, timeout_s):
        """Wait (bounded) until what was sent has left."""

    def left_step(self, phase, floor):
        """The node accepts no more messages of `phase` below step `floor` (a fault layer that
        replays late arrivals delivers them now)."""

    async def close(self):
        raise NotImplementedError

    def close_now(self):
        """Free the node's port at once, from outside a running loop (upstream's `del ptb`, or a
        node left over by an event loop that has ended). Never raises."""


class FramedTransport(Transport):
    """Frames (wire.py) on a medium: subclasses implement `start`, `_send_frame` and `close`."""

    def __init__(self, node_id, codec, counts, tel, max_queue=256):
        self.node_id = node_id
        self.codec = codec
        self.counts = counts if counts is not None else new_counts()
        self.tel = tel
        self.max_queue = max_queue
        self._peers = {}
        self._address = None
        self._sink = None

    @property
    def address(self):
        return self._address

    @property
    def peers(self):
        return self._peers

    def set_sink(self, fn):
        self._sink = fn

    def set_peers(self, table):
        for k in table:
            self._peers[int(k)] = (table[k][0], int(table[k][1]))

    def send(self, dst, msg):
        frame = self._encode(msg, dst)
        if frame is not None:
            self.counts["sent"] += 1
            self._send_frame(dst, frame)

    def broadcast(self, dsts, msg):
        """Encoded once: on a 192 KB heap, n copies of a frame (the start-up peer table, a model)
        fragment the heap of a server with many peers."""
        frame = self._encode(msg, None)
        if frame is None:
            return
        for dst in dsts:
            self.counts["sent"] += 1
            self._send_frame(dst, frame)

    def _encode(self, msg, dst):
        try:
            return self.codec.encode(msg)
        except Rejected as e:
            if e.why == "oversize":  # no receiver could take it: the app's mistake, said at once
                raise FrameTooLarge(self.node_id, msg, e.detail, self.codec.max_frame) from None
            self.counts["overflow"] += 1
            self.tel.emit("drop", why=e.why, dst=dst, p=msg.get("p"), i=msg.get("i"))
            return None

    def _send_frame(self, dst, frame):
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


class TcpTransport(FramedTransport):
    def __init__(self, node_id, listen, codec, counts, tel, max_queue=256):
        FramedTransport.__init__(self, node_id, codec, counts, tel, max_queue)
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
        self._address = (host, port)
        return self._address

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
        except asyncio.CancelledError:
            # the app's event loop ended (asyncio.run returned): a quiet end of this connection,
            # not a traceback on the app's console
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

    def close_now(self):
        links, self._links = self._links, {}
        for link in links.values():
            try:
                link.close()
            except Exception:  # the loop that ran it has ended
                link._drop_writer()
        server, self._server = self._server, None
        if server is not None:
            try:
                server.close()
            except Exception:
                for sock in getattr(server, "_sockets", None) or ():
                    try:
                        sock.close()
                    except OSError:
                        pass

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
