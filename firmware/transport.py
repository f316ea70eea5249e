"""Transports move messages between nodes.

`Transport` is the interface the node runtime uses. `FramedTransport` implements what the real
media share (encoding, authentication, counting, delivery); `TcpTransport` puts its frames on
asyncio streams, one persistent connection per peer and direction, and `MemoryTransport`
(memnet.py) on an in-memory network in virtual time. The fault layer (`faults.FaultyTransport`)
is a Transport that wears another one, so any transport can carry faults."""
from flhil.compat import asyncio, MICROPYTHON, TimeoutError
from flhil.compat import mem_free, heap
from flhil.vocab import new_counts, DROP_EVENTS_MAX
from flhil.wire import Rejected, HEADER, PREFIX


def count_drop(counts, tel, why, detail="", ev="drop", total="rejected", **fields):
    """One refused input: counted under its reason and `total`, and reported while its reason has
    not been reported DROP_EVENTS_MAX times (a flood must not flood the telemetry)."""
    if total is not None:
        counts[total] += 1
    n = counts.get(why, 0) + 1
    counts[why] = n
    if n <= DROP_EVENTS_MAX:
        tel.emit(ev, why=why, detail=detail[:120], **fields)


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

    async def flush(self, timeout_s, in_flight=True):
        """Wait (bounded) until what was sent has left the node; `in_flight`: and what a fault
        layer holds on its way (delayed messages)."""

    def left_step(self, phase, floor):
        """The node accepts no more messages of `phase` below step `floor` (a fault layer that
        replays late arrivals delivers them now)."""

    async def close(self):
        raise NotImplementedError

    def close_now(self):
        """Free the node's port at once, from outside a running loop (upstream's `del ptb`, or a
        node left over by an event loop that has ended). Never raises."""


class FramedTransport(Transport):
    """Frames (wire.py) on a medium: subclasses implement `start`, `_send_frame` and `close`.
    A frame handed to `_send_frame` is a (prefix, text) pair: the text of a broadcast is shared
    by every destination's frame, only the 38-byte prefix (header, sender, tag) is per link."""

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
        data = self._encode(msg, dst)
        if data is not None:
            self.counts["sent"] += 1
            self._send_frame(dst, self.codec.frame(dst, data))

    def broadcast(self, dsts, msg):
        """Encoded once: on a 192 KB heap, n copies of a frame (the start-up peer table, a model)
        fragment the heap of a server with many peers; each link adds only its own tag."""
        data = self._encode(msg, None)
        if data is None:
            return
        for dst in dsts:
            self.counts["sent"] += 1
            self._send_frame(dst, self.codec.frame(dst, data))

    def _encode(self, msg, dst):
        try:
            return self.codec.encode_data(msg)
        except Rejected as e:
            if e.why == "oversize":  # no receiver could take it: the app's mistake, said at once
                raise FrameTooLarge(self.node_id, msg, e.detail, self.codec.max_frame) from None
            self.counts["overflow"] += 1
            self.tel.emit("drop", why=e.why, dst=dst, p=msg.get("p"), i=msg.get("i"))
            return None

    def _send_frame(self, dst, frame):
        raise NotImplementedError

    def reject(self, why, detail="", src=None):
        """A frame refused (vocab.FRAME_REJECTS)."""
        count_drop(self.counts, self.tel, why, detail, src=src)

    def refuse(self, why, detail=""):
        """A connection closed by a limit (vocab.CONN_REFUSALS)."""
        count_drop(self.counts, self.tel, why, detail, ev="refused", total="refused")

    def receive(self, decode, *args):
        """Parse one frame (decode(*args), the last of args the peer the connection is bound
        to, or None) and hand its message to the node. Returns the sender, or None when the frame
        was refused."""
        try:
            msg = decode(*args)
        except Rejected as e:
            self.reject(e.why, e.detail, src=args[-1])
            return None
        except MemoryError:
            self.refuse("low_heap", "parsing a frame")
            return None
        self.counts["recv"] += 1
        if self._sink is not None:
            try:
                self._sink(msg)
            except Exception as e:  # the node's own guard missed it: the reader must live on
                count_drop(self.counts, self.tel, "cb_error", "%s: %s" % (type(e).__name__, e), total=None,
                           src=msg["s"], p=msg["p"], i=msg["i"])
        return msg["s"]


class _Link:
    """Outgoing frames to one peer over one persistent connection, reconnecting with backoff."""

    def __init__(self, transport, dst):
        self.t = transport
        self.dst = dst
        self.queue = []
        self.wake = asyncio.Event()
        self.writer = None
        self.failing = False  # the last connect or write failed: a dead or unreachable peer
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
                    self.failing = True
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
                    head, data = self.queue[0]
                    self.writer.write(head)
                    self.writer.write(data)
                    await self.writer.drain()
                    self.queue.pop(0)  # popped after the write: a broken link resends it
                    backoff = 0.01
                    self.failing = False
            except OSError:
                self.failing = True
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


# Limits of the receiving side (docs/design.md "Bounded resources"); a run config's `timing`
# may set each. A bound connection has carried a valid frame and belongs to that peer (one per
# peer: a peer's new connection replaces its old one); a pending connection has not yet.
LIMITS = {
    "conn_pending": 4 if MICROPYTHON else 16,  # pending connections; the oldest goes for a new one
    "auth_ms": 3000,     # a pending connection that carried no valid frame by then is closed (idle)
    "frame_ms": 2000,    # a frame whose last byte has not come this long after its first (slow)
    "low_heap": 16384,   # MicroPython: below this many free bytes, new connections are refused
}
WATCH_MS = 100  # period of the limit watch
PER_PEER = 2    # bound connections a peer may hold


async def _shut(writer):
    """Close a stream: on MicroPython `close()` does nothing and `wait_closed()` closes the
    socket, so a connection closed with `close()` alone stays open until the GC finds it."""
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass


def _quietest(conns):
    """The connection whose last frame (or its opening) is the oldest."""
    q = conns[0]
    for c in conns:
        if c.last < q.last:
            q = c
    return q


class _Conn:
    def __init__(self, writer, now_ms):
        self.writer = writer
        self.task = None
        self.src = None        # the peer, once a valid frame came
        self.opened = now_ms
        self.frame_at = None   # first byte of the frame being read
        self.last = now_ms     # the end of its last frame (or its opening)
        self.why = None        # why the watch closed it


def _now_ms():
    return int(asyncio.get_event_loop().time() * 1000) if not MICROPYTHON else _ticks_ms()


def _ticks_ms():
    import time
    return time.ticks_ms()


class TcpTransport(FramedTransport):
    def __init__(self, node_id, listen, codec, counts, tel, max_queue=256, limits=None):
        FramedTransport.__init__(self, node_id, codec, counts, tel, max_queue)
        self.listen = (listen[0], int(listen[1]))
        self.limits = dict(LIMITS)
        for k in LIMITS:
            if limits and limits.get(k) is not None:
                self.limits[k] = limits[k]
        self._server = None
        self._links = {}
        self._conns = []       # every incoming connection, oldest first
        self._bound = {}       # peer id -> its bound connections, oldest first
        self._watch = None
        self._low = False      # the heap is below the low mark
        self.max_conns = 0     # most incoming connections held at once

    async def start(self):
        host, port = self.listen
        if port == 0 and MICROPYTHON:
            raise ValueError("listen port 0 needs socket.getsockname, which MicroPython lacks; give a port")
        if MICROPYTHON:  # a backlog beyond the pending limit: connects wait to be accepted and evicted
            self._server = await asyncio.start_server(self._serve, host, port,
                                                      backlog=2 * self.limits["conn_pending"] + 8)
        else:  # the stream's buffer holds at most one frame
            self._server = await asyncio.start_server(self._serve, host, port,
                                                      limit=self.codec.max_frame + HEADER)
        if port == 0:
            port = self._server.sockets[0].getsockname()[1]
        self._address = (host, port)
        self._watch = asyncio.create_task(self._watch_limits())
        return self._address

    def _send_frame(self, dst, frame):
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = _Link(self, dst)
        link.put(frame)

    # -- limits ------------------------------------------------------------------------------
    def _heap_low(self):
        """True while the free heap is below the low mark (checked after a collection)."""
        free = mem_free()
        if free is None or free >= self.limits["low_heap"]:
            if self._low and free is not None and free >= 2 * self.limits["low_heap"]:
                self._low = False
            return self._low
        free, _ = heap()
        if free < self.limits["low_heap"] and not self._low:
            self._low = True
            self.tel.emit("low_heap", free=free, conns=len(self._conns))
        return free < self.limits["low_heap"]

    def _close_conn(self, conn, why, detail=""):
        if conn.why is None and conn.task is not None:
            conn.why = why
            self.refuse(why, detail)
            conn.task.cancel()

    async def _watch_limits(self):
        while True:
            await asyncio.sleep(WATCH_MS / 1000)
            now = _now_ms()
            for conn in list(self._conns):
                late = conn.src is None and now - conn.opened > self.limits["auth_ms"]
                if conn.frame_at is not None and (late or now - conn.frame_at > self.limits["frame_ms"]):
                    self._close_conn(conn, "slow", "a frame unfinished")  # it started one
                elif late:
                    self._close_conn(conn, "idle", "no frame in %d ms" % self.limits["auth_ms"])
            if self._heap_low():
                for conn in [c for c in self._conns if c.src is None]:
                    self._close_conn(conn, "low_heap", "pending connection closed")

    def _admit(self, conn):
        """Make room for a new connection or refuse it: False when it is to be closed."""
        if self._heap_low():
            conn.why = "low_heap"
            self.refuse("low_heap", "new connection refused")
            return False
        pending = [c for c in self._conns if c.src is None and c.why is None and c is not conn]
        if len(pending) < self.limits["conn_pending"]:
            return True
        # a pending connection has a grace of auth_ms / 4 to show its first frame (a slow node
        # may not have read what its peer sent yet) before a newer one can take its place
        old = [c for c in pending if conn.opened - c.opened >= self.limits["auth_ms"] // 4]
        if not old:
            conn.why = "conn_limit"
            self.refuse("conn_limit", "new connection refused: every pending one is young")
            return False
        while len(pending) >= self.limits["conn_pending"] and old:
            quiet = _quietest(old)
            old.remove(quiet)
            pending.remove(quiet)
            self._close_conn(quiet, "conn_limit", "the quietest pending connection closed")
        return True

    def _bind(self, conn, src):
        """A connection's first valid frame binds it to its sender: at most PER_PEER bound
        connections a peer (its live one and the one it reconnects with after a break); beyond
        that its oldest is closed."""
        mine = self._bound.setdefault(src, [])
        mine.append(conn)
        conn.src = src
        while len(mine) > PER_PEER:
            old = _quietest(mine)
            mine.remove(old)
            if old.task is not None and old.why is None:
                old.why = "replaced"
                old.task.cancel()

    # -- receiving ---------------------------------------------------------------------------
    async def _serve(self, reader, writer):
        conn = _Conn(writer, _now_ms())
        conn.task = asyncio.current_task()
        self._conns.append(conn)
        if len(self._conns) > self.max_conns:
            self.max_conns = len(self._conns)
        try:
            if self._admit(conn):
                await self._read_frames(reader, conn)
        except (OSError, MemoryError) as e:
            if type(e) is MemoryError:
                self.refuse("low_heap", "reading a frame")
        except asyncio.CancelledError:
            pass  # closed by the watch, a newer connection of its peer, or close()
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            mine = self._bound.get(conn.src)
            if mine is not None and conn in mine:
                mine.remove(conn)
            await _shut(writer)

    async def _read_frames(self, reader, conn):
        while True:
            header = b""
            while len(header) < HEADER:  # piecewise: the first byte starts the frame's clock
                chunk = await reader.read(HEADER - len(header))
                if not chunk:
                    if header:
                        self.reject("truncated", "connection closed inside a header", src=conn.src)
                    return
                if not header:
                    conn.frame_at = _now_ms()
                header += chunk
            try:
                n = self.codec.body_length(header)
            except Rejected as e:
                self.reject(e.why, e.detail, src=conn.src)  # cannot resynchronise: drop the connection
                return
            try:  # in two reads: the text is parsed where it was read, not copied
                prefix = await reader.readexactly(PREFIX - HEADER)
                data = await reader.readexactly(n - len(prefix))
            except EOFError:
                self.reject("truncated", "connection closed inside a %d-byte body" % n, src=conn.src)
                return
            conn.frame_at = None
            src = self.receive(self.codec.decode, prefix, data, conn.src)
            data = None
            conn.last = _now_ms()
            if src is not None and conn.src is None:
                self._bind(conn, src)

    async def flush(self, timeout_s, in_flight=True):
        step = 0.005
        waited = 0.0
        # a link to a peer that cannot be reached is not waited for: its frames go when it is back
        while waited < timeout_s and any(l.queue and not l.failing for l in self._links.values()):
            await asyncio.sleep(step)
            waited += step

    def close_now(self):
        watch, self._watch = self._watch, None
        if watch is not None:
            try:
                watch.cancel()
            except Exception:  # the loop that ran it has ended
                pass
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
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for link in self._links.values():
            link.close()
        self._links = {}
        for conn in list(self._conns):
            if conn.task is not None:
                conn.why = conn.why or "closed"
                conn.task.cancel()
            await _shut(conn.writer)
        self._conns = []
        self._bound = {}
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1)
            except (TimeoutError, OSError):
                pass
            self._server = None
