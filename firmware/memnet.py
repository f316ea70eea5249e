"""An in-memory network for the virtual-time lab: every node of a run in one event loop.

`MemoryNetwork` is shared by the nodes of one run; `MemoryTransport` is a `FramedTransport` like the TCP
one, so encoding, authentication, the codec's checks, counting and the fault layer all run exactly
as over TCP: frames travel as bytes (4-byte length + body) and are parsed again at the receiver.
A frame arrives `latency_us` after it was sent, in order per (sender, receiver) link, like a TCP
connection (frames sent at one instant arrive together, in sending order). Addresses are implicit
(a node is reached by its id), so the transport needs no address table: `peers` is the network's
table of attached nodes, one dict shared by all of them, and `start()` returns the pseudo address
("mem", id).

CPython is what runs it (its event loop's `call_later` schedules the arrivals); the syntax stays
MicroPython-compatible because it lives in firmware/. No module-level state: everything belongs to
a network object."""
from flhil.compat import asyncio
from flhil.transport import FramedTransport


class MemoryNetwork:
    """The medium shared by the nodes of one run. `sent`, `delivered` and `lost` count frames
    (lost: the receiver was not attached or had closed when the frame arrived)."""

    def __init__(self, latency_us=100):
        self.latency_us = latency_us
        self.members = {}     # node id -> MemoryTransport (attached at start(), kept after close)
        self.addresses = {}   # node id -> ("mem", id): the address table every node shares
        self._due = {}        # arrival instant (us) -> [(dst, frame)] in sending order
        self.sent = 0
        self.delivered = 0
        self.lost = 0

    def attach(self, transport):
        self.members[transport.node_id] = transport
        self.addresses[transport.node_id] = ("mem", transport.node_id)

    def send(self, src, dst, frame):
        """Put `frame` (bytes) on the wire from src to dst; it arrives after the latency."""
        self.sent += 1
        loop = asyncio.get_event_loop()
        now = getattr(loop, "time", None)
        # without a loop clock (MicroPython) every frame gets its own key, so its own timer
        due = (int(now() * 1e6) if now is not None else -self.sent) + self.latency_us
        batch = self._due.get(due)
        if batch is None:
            # one timer per arrival instant, not per frame: the frames sent at one instant arrive
            # together, in the order they were sent (so in order on every link, as over TCP)
            batch = self._due[due] = []
            later = getattr(loop, "call_later", None)
            if later is not None:
                later(self.latency_us / 1e6, self._arrive, due)
            else:  # an event loop without call_later (MicroPython): a small task
                asyncio.create_task(self._arrive_after(self.latency_us / 1e6, due))
        batch.append((src, dst, frame))

    async def _arrive_after(self, delay_s, due):
        await asyncio.sleep(delay_s)
        self._arrive(due)

    def _arrive(self, due):
        batch = self._due.pop(due)
        members = self.members
        for src, dst, frame in batch:
            t = members.get(dst)
            if t is None or t.closed:
                self.lost += 1
                continue
            self.delivered += 1
            t.receive_frame(frame, src)


class MemoryTransport(FramedTransport):
    """A node's end of a MemoryNetwork. `counts` and `tel` may be None when the node runtime sets
    them (it does: Node replaces both with its own)."""

    needs_table = False  # peers are reached by id: the start-up go needs no address table

    def __init__(self, network, node_id, codec, counts=None, tel=None, max_queue=256):
        FramedTransport.__init__(self, node_id, codec, counts, tel, max_queue)
        self.network = network
        self._peers = network.addresses  # shared, never written by a node (set_peers ignores tables)
        self.closed = False

    def set_peers(self, table):
        """Addresses are implicit in memory: a table (from the config or the coordinator) is ignored."""

    async def start(self):
        self._address = ("mem", self.node_id)
        self.closed = False
        self.network.attach(self)
        return self._address

    def _send_frame(self, dst, frame):
        if self.closed:
            return
        self.network.send(self.node_id, dst, frame[0] + frame[1])

    def receive_frame(self, frame, src=None):
        """A whole frame from the network, parsed as a TCP reader parses it; `src` is the sender
        the medium knows (the link the frame came on), as a TCP connection's bound peer."""
        self.receive(self.codec.decode_frame, frame, src)

    async def flush(self, timeout_s, in_flight=True):
        """Frames are in the network as soon as they are sent: nothing to wait for."""

    async def close(self):
        self.closed = True
