"""The node runtime: start-up barrier, centralized and decentralized FL rounds and TDM slots, with
deadlines, quorum, duplicate and stale filtering, node-level faults and telemetry.

Every receive waits on the mailbox with a deadline (none in upstream-strict mode). Messages are
filed under (phase, iteration) and sender, which makes a duplicate a second entry for the same
sender (dropped, counted) and a message below the phase's floor stale (dropped, counted)."""

from flhil.compat import asyncio, TimeoutError, heap, is_number, MICROPYTHON, version
from flhil.clock import LoopClock, SkewedClock
from flhil.faults import FaultyTransport, NodeFaults, has_link_faults, UP, DOWN, DEAD, BACK
from flhil.telemetry import Telemetry
from flhil.transport import TcpTransport, count_drop
from flhil.vocab import new_counts
from flhil.wire import Codec

TIMING_DEFAULTS = {
    "round_ms": 2000,        # server: wait for clients' replies in one round
    "recv_ms": 4000,         # client: wait for the server's next model
    "quorum": 0.5,           # fraction of clients needed to aggregate a round
    "slot_ms": 100,          # TDM slot length
    "guard_ms": 20,          # end of slot kept free of receiving
    "startup_ms": 30000,     # start barrier deadline
    "start_delay_ms": 100,   # from the coordinator's go to slot 0
    "linger_ms": 500,        # after the last round, keep answering late peers
    "hang_report_ms": 2000,  # a wait longer than this is reported as `waiting`
}
MAX_BUFFERED_KEYS = 256
# iterations a receiver accepts above its floor, per phase: the current and the next step (d1's
# floor is one below the step, as a node still answers the peers one step behind); start-up: 0
AHEAD = {"hello": 0, "go": 0, "cd": 1, "cu": 1, "d1": 2, "d2": 1, "t": 1}
STARTUP_MARGIN_MS = 2000  # a client's wait for the go beyond the coordinator's barrier deadline
HELLO_RESEND_US = 1000000  # a client at the start barrier says hello again after this long
MAX_REPORT_US = 10000000  # a long wait is reported at least every 10 s, so a host sees it alive


class Node:
    def __init__(self, cfg, transport=None, clock=None, tel=None):
        self.cfg = cfg
        self.id = cfg["node"]
        self.n = cfg["nodes"]
        self.server = cfg.get("server", 0)
        self.strict = cfg.get("strict", False)
        self.seed = cfg.get("seed", 0)
        timing = dict(TIMING_DEFAULTS)
        timing.update(cfg.get("timing") or {})
        self.timing = timing
        self.plan = cfg.get("faults") or {}
        clock = clock or LoopClock()
        self.tel = tel or Telemetry(self.id, clock)
        self.faults = NodeFaults(self.plan, self.id, self.seed, self.tel)
        skew = self.faults.skew
        if skew is not None and skew[0]:
            clock = SkewedClock(clock, skew[0])
            self.tel.clock = clock  # telemetry reads the node's own (skewed) time
        self.clock = clock
        self.counts = new_counts()
        if transport is None:
            listen = cfg.get("listen") or ["127.0.0.1", 6000 + self.id]
            transport = TcpTransport(self.id, listen, Codec.from_config(cfg), self.counts, self.tel,
                                     limits=timing)
        else:
            transport.counts = self.counts
            transport.tel = self.tel
        # False for a transport that reaches peers by id (memnet): the go then carries no table
        # nor when the run config already holds every node's address (the harness knows them)
        self._needs_table = getattr(transport, "needs_table", True) and \
            len(cfg.get("peers") or {}) < self.n
        if has_link_faults(self.plan):
            transport = FaultyTransport(transport, self.plan, self.id, self.seed, clock, self.tel, self.counts)
        self.net = transport
        self.net.set_sink(self._on_msg)
        self.net.set_peers(cfg.get("peers") or {})
        self._box = {}           # (phase, i) -> {sender: payload}
        self._floor = {}         # phase -> lowest iteration still accepted
        self._arrival = asyncio.Event()
        self._seq = 0
        self.status = "ok"
        self.t0 = None           # start of slot 0 in this node's clock
        self.slot = 0            # TDM slot counter, as upstream's timeSlot
        self.metric = None       # app hook: localData -> number or short list for telemetry
        self.downlink = None     # app hook: (client, round, data) -> that client's model (else broadcast)
        self._dec = None         # decentralized state while fl_decentralized runs
        self._min_free = None
        self._closed = False
        self._lag = None         # the lag monitor (lagmon.py) while the node runs in real time
        self.value = None        # what the last fl_* / getMeas call returned (a script's result)

    # -- upstream-compatible names -----------------------------------------------------------
    @property
    def nodeId(self):
        return self.id

    @property
    def noNodes(self):
        return self.n

    @property
    def flSrvId(self):
        return self.server

    # -- messages ----------------------------------------------------------------------------
    @property
    def down(self):
        return self.faults.down

    def _send(self, dst, phase, i, value):
        if self.down:
            return
        self._seq += 1
        self.net.send(dst, {"r": self.cfg.get("run", ""), "s": self.id, "d": dst, "p": phase,
                            "i": i, "q": self._seq, "v": value})

    def _broadcast(self, dsts, phase, i, value):
        """One message to many peers; `d` is -1, receivers file by sender, phase and iteration."""
        if self.down or not dsts:
            return
        self._seq += 1
        self.net.broadcast(dsts, {"r": self.cfg.get("run", ""), "s": self.id, "d": -1, "p": phase,
                                  "i": i, "q": self._seq, "v": value})

    def _on_msg(self, msg):
        """A message the parser accepted (wire.py: fields, roles, payload shape); here what depends
        on the node's state: its step (below the floor: stale; beyond the window: future)."""
        p, i, src = msg["p"], msg["i"], msg["s"]
        floor = self._floor.get(p, 0)
        if self.faults.down:
            if self.faults.up_at is None or i < self.faults.up_at:
                return  # a message of the step the node comes back at may arrive before it wakes up
            floor = max(floor, self.faults.up_at)
        if i < floor:
            self.counts["stale"] += 1
            self.tel.emit("drop", why="stale", src=src, p=p, i=i)
            return
        if i > floor + AHEAD[p]:
            if p != "cd":
                count_drop(self.counts, self.tel, "future", "%s %d, floor %d" % (p, i, floor), src=src, p=p, i=i)
                return
            # the server is ahead (only the server sends cd): a client that fell behind follows it,
            # keeping the newest two models at most
            self._raise_floor(p, i - AHEAD[p])
        key = (p, i)
        got = self._box.get(key)
        if got is None:
            if len(self._box) >= MAX_BUFFERED_KEYS:
                self.counts["overflow"] += 1
                self.tel.emit("drop", why="overflow", src=src, p=p, i=i)
                return
            got = self._box[key] = {}
        if src in got:
            if p == "hello":
                return  # a client repeating its hello at the barrier: not a duplicate of the network
            if not self.strict:
                self.counts["duplicate"] += 1
                self.tel.emit("drop", why="duplicate", src=src, p=p, i=i)
                return
            src = (src, msg.get("q"))  # upstream counts a duplicate as one more client
        got[src] = msg.get("v")
        if p == "d1" and self._dec is not None:
            self._answer_d1(i)
        self._arrival.set()

    def _cb_error(self, src, p, i, e):
        """A callback raised on a message: the message is dropped, counted with the error."""
        count_drop(self.counts, self.tel, "cb_error", "%s: %s" % (type(e).__name__, e), total=None,
                   src=src, p=p, i=i)

    def _aggregate(self, cb, priv, got, p, i):
        """cb(priv, payloads) over the messages heard, in sender order: (result, senders used).
        When it raises, each message is tried alone and the ones it raises on are dropped
        (callbacks are pure functions of their arguments); (None, 0) when none is left."""
        order = sorted(got, key=_sender_order)
        try:
            return cb(priv, [got[c] for c in order]), len(order)
        except Exception as e:
            err = e
        good = []
        for c in order:
            try:
                cb(priv, [got[c]])
                good.append(c)
            except Exception as e:
                self._cb_error(_sender_order(c), p, i, e)
        if good:
            try:
                return cb(priv, [got[c] for c in good]), len(good)
            except Exception as e:
                err = e
        self._cb_error(None, p, i, err)
        return None, 0

    def _raise_floor(self, phase, i):
        if i <= self._floor.get(phase, 0):
            return
        self._floor[phase] = i
        for key in [k for k in self._box if k[0] == phase and k[1] < i]:
            del self._box[key]
        self.net.left_step(phase, i)

    async def _await(self, phase, i, done, deadline_us, waiting_on):
        """Wait until done(received) or the deadline; report a wait that lasts long."""
        t_begin = self.clock.now_us()
        report_us = self.timing["hang_report_ms"] * 1000
        next_report = t_begin + report_us
        while True:
            got = self._box.get((phase, i)) or {}
            if done(got):
                return got
            now = self.clock.now_us()
            if deadline_us is not None and now >= deadline_us:
                return got
            until = next_report if deadline_us is None else min(deadline_us, next_report)
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), self.clock.real_s(until - now))
            except TimeoutError:
                pass
            now = self.clock.now_us()
            if now >= next_report:
                self.tel.emit("waiting", p=phase, i=i, on=waiting_on(got), ms=(now - t_begin) // 1000)
                report_us = min(report_us * 2, MAX_REPORT_US)  # below a serial line timeout
                next_report = now + report_us

    async def _delivered(self, value):
        """Upstream's send returns once the receiver has the message, so an app may block or exit
        right after its last exchange: every result is handed back only after what this node sent
        has left (bounded; the transport counts what could not)."""
        self.value = value
        await self.net.flush(self.timing["recv_ms"] / 1000, in_flight=False)
        return value

    def _deadline(self, start_us, ms):
        return None if self.strict else start_us + int(ms * 1000)

    # -- start-up ----------------------------------------------------------------------------
    async def start(self):
        free, total = heap()
        self.tel.emit("boot", impl="micropython" if MICROPYTHON else "cpython", ver=version(),
                      heap=free, heap_total=total)
        if self.cfg.get("monitor_ms"):  # real time only; imported then, to spare a board's heap
            from flhil.lagmon import LagMonitor
            self._lag = LagMonitor(self.clock, self.tel, self.cfg["monitor_ms"]).start()
        addr = await self.net.start()
        self.tel.emit("listen", addr=list(addr))
        deadline = self.clock.now_us() + int(self.timing["startup_ms"] * 1000)
        if self.id == self.server:
            others = [j for j in range(self.n) if j != self.id]
            got = await self._await("hello", 0, lambda g: len(g) >= len(others), deadline,
                                    lambda g: [j for j in others if j not in g])
            delay_us = int(self.timing["start_delay_ms"] * 1000)
            go = {"in": delay_us}
            if self._needs_table:
                table = {}
                for j in self.net.peers:
                    table[str(j)] = list(self.net.peers[j])
                for j in got:
                    table[str(j)] = got[j]
                table[str(self.id)] = list(addr)
                self.net.set_peers(table)
                go["peers"] = table
            self.t0 = self.clock.now_us() + delay_us
            self._broadcast(list(got), "go", 0, go)
            missing = [j for j in others if j not in got]
        else:
            # the coordinator sends go when every hello came or at its own deadline, which runs
            # from its own start: a client that started before it waits longer, so a node missing
            # at the barrier does not leave the healthy ones without a go
            wait_go = deadline + int(max(STARTUP_MARGIN_MS, self.timing["startup_ms"] / 2) * 1000)
            while True:
                # said again until the go comes: a hello can reach a coordinator's previous node on
                # the same port (an app that builds one node after another, upstream's `del ptb`)
                self._send(self.server, "hello", 0, list(addr))
                until = min(wait_go, self.clock.now_us() + HELLO_RESEND_US)
                got = await self._await("go", 0, lambda g: self.server in g, until, lambda g: [self.server])
                if self.server in got or self.clock.now_us() >= wait_go:
                    break
            go = got.get(self.server)
            if go is None:
                self.tel.emit("error", msg="no go from coordinator %d before the start-up deadline" % self.server)
                missing = [self.server]
                self.t0 = self.clock.now_us()
            else:
                if "peers" in go:
                    self.net.set_peers(go["peers"])
                self.t0 = self.clock.now_us() + go["in"]
                # built only now (a client waiting at the barrier holds no list of n ids), and only
                # when the table lacks some node
                missing = [] if len(self.net.peers) >= self.n else \
                    [j for j in range(self.n) if j != self.id and j not in self.net.peers]
        skew = self.faults.skew
        if skew is not None:
            self.t0 += int(skew[1] * 1000)
            self.tel.emit("fault", kind="clock_skew", ppm=skew[0], offset_ms=skew[1])
        if isinstance(self.net, FaultyTransport):
            self.net.t_start = self.clock.now_us()
        self.tel.emit("ready", peers=len(self.net.peers), missing=missing, t0=self.t0)

    # -- node-level faults -------------------------------------------------------------------
    def _fault_state(self, step):
        """UP, DOWN or DEAD at this step (faults.NodeFaults); a node that comes back remembers
        nothing it heard before (messages of this step that arrived while it came back are kept)."""
        state = self.faults.step(step)
        if state == BACK:
            for key in [k for k in self._box if k[1] < step]:
                del self._box[key]
            state = UP
        if state == DEAD:
            self.status = "crashed"
        return state

    def rejoined(self, step):
        """True at the step where this node comes back from a planned dropout: a restarted node
        has lost its RAM, so an app that keeps its own state (as ODTS does) resets it here."""
        return self.faults.rejoined(step)

    async def _begin_round(self, k, need, data, initial):
        """Round k under the node-level faults: (start, state, data). A node that is down sleeps
        through the round (and reports it skipped); one that comes back starts from `initial`."""
        state = self._fault_state(k)
        if state == DEAD:
            return None, state, data
        if self.rejoined(k):
            data = initial
        start = self.clock.now_us()
        self.tel.emit("round_start", i=k)
        stall = self.faults.stall_ms(k)  # a replayed stall of this node at this round
        if stall:
            await asyncio.sleep(self.clock.real_s(stall * 1000))
        if state == DOWN:
            await self.clock.sleep_until(start + int(self.timing["round_ms"] * 1000))
            self._round_end(k, 0, need, True, data, down=True)
        return start, state, data

    def _metric(self, data):
        if self.metric is not None:
            return self.metric(data)
        if is_number(data):
            return data
        if type(data) in (list, tuple) and len(data) <= 8 and all(is_number(x) for x in data):
            return list(data)
        return None

    def _round_end(self, i, got, need, skipped, data, ev="round_end", **extra):
        free, _ = heap()
        if free is not None and (self._min_free is None or free < self._min_free):
            self._min_free = free
        self.tel.emit(ev, i=i, got=got, need=need, skipped=skipped, v=self._metric(data), heap=free, **extra)

    # -- centralized FL ----------------------------------------------------------------------
    async def fl_centralized(self, server_cb, client_cb, localData, privateData, noIterations=1):
        if self.id == self.server:
            value = await self._central_server(server_cb, localData, privateData, noIterations)
        else:
            value = await self._central_client(client_cb, localData, privateData, noIterations)
        return await self._delivered(value)

    async def _central_server(self, server_cb, data, priv, iterations):
        initial = data
        clients = [j for j in range(self.n) if j != self.id]
        need = len(clients) if self.strict else _quorum(self.timing["quorum"], len(clients))
        for k in range(iterations):
            start, state, data = await self._begin_round(k, need, data, initial)
            if state == DEAD:
                return None
            if state == DOWN:
                continue
            self._raise_floor("cu", k)
            if self.downlink is None:
                self._broadcast(clients, "cd", k, data)
            else:  # a model per client (HeteroFL's slices)
                for c in clients:
                    self._send(c, "cd", k, self.downlink(c, k, data))
            got = await self._await("cu", k, lambda g: len(g) >= len(clients),
                                    self._deadline(start, self.timing["round_ms"]),
                                    lambda g: [c for c in clients if c not in g])
            heard = len(got)
            skipped = heard < need
            if not skipped:
                res, heard = self._aggregate(server_cb, priv, got, "cu", k)
                skipped = heard < need
                if not skipped:
                    data = res
            self._raise_floor("cu", k + 1)
            self._round_end(k, heard, need, skipped, data, miss=[c for c in clients if c not in got])
        return data

    async def _central_client(self, client_cb, data, priv, iterations):
        initial = data
        k = 0
        while k < iterations:
            start, state, data = await self._begin_round(k, 1, data, initial)
            if state == DEAD:
                return None
            if state == DOWN:
                k += 1
                continue
            self._raise_floor("cd", k)
            got_round = [None]

            def arrived(_, got_round=got_round, k=k):
                got_round[0] = self._lowest("cd", k)
                return got_round[0] is not None

            await self._await("cd", k, arrived, self._deadline(start, self.timing["recv_ms"]),
                              lambda g: [self.server])
            j = got_round[0]
            if j is None:
                self._round_end(k, 0, 1, True, data)
                k += 1
                continue
            if j > k:  # the server is ahead (we were slow or down): follow it
                for s in range(k, j):
                    self._round_end(s, 0, 1, True, data, behind=True)
                self.tel.emit("round_start", i=j)
            model = self._box[("cd", j)][self.server]
            try:
                new = client_cb(data, priv, model)
            except Exception as e:
                self._cb_error(self.server, "cd", j, e)
                self._raise_floor("cd", j + 1)
                self._round_end(j, 0, 1, True, data)
                k = j + 1
                continue
            data = new
            self._send(self.server, "cu", j, data)
            self._raise_floor("cd", j + 1)
            self._round_end(j, 1, 1, False, data)
            k = j + 1
        return data

    def _lowest(self, phase, at_least):
        best = None
        for (p, i), got in self._box.items():
            if p == phase and i >= at_least and got and (best is None or i < best):
                best = i
        return best

    # -- decentralized FL --------------------------------------------------------------------
    async def fl_decentralized(self, server_cb, client_cb, localData, privateData, noIterations=1):
        return await self._delivered(
            await self._decentralized(server_cb, client_cb, localData, privateData, noIterations))

    async def _decentralized(self, server_cb, client_cb, localData, privateData, noIterations):
        peers = [j for j in range(self.n) if j != self.id]
        initial = localData
        self._dec = {"hist": {}, "cb": client_cb, "priv": privateData, "step": 0, "answered": {}}
        data = localData
        for k in range(noIterations):
            start, state, data = await self._begin_round(k, len(peers), data, initial)
            if state == DEAD:
                return None
            if state == DOWN:
                continue
            hist = self._dec["hist"]
            hist[k] = data
            for old in [s for s in hist if s < k - 1]:
                del hist[old]
            self._dec["step"] = k
            self._raise_floor("d2", k)
            self._raise_floor("d1", k - 1)
            for j in peers:
                self._send(j, "d1", k, data)
            self._answer_d1(k)  # phase-1 messages of k that arrived early
            got = await self._await("d2", k, lambda g: len(g) >= len(peers),
                                    self._deadline(start, self.timing["round_ms"]),
                                    lambda g: [j for j in peers if j not in g])
            heard = 0
            if got:
                res, heard = self._aggregate(server_cb, privateData, got, "d2", k)
                if heard:
                    data = res
            self._round_end(k, heard, len(peers), not heard, data, miss=[j for j in peers if j not in got])
        self._dec["hist"][noIterations] = data
        self._dec["step"] = noIterations
        # as upstream, a node leaves only after answering every peer's last phase-1 message: a
        # peer still in its last iteration would otherwise wait for our reply until its deadline
        last = noIterations - 1
        if last >= 0:
            await self._await("d1", last, lambda g: len(self._dec["answered"].get(last, ())) >= len(peers),
                              self._deadline(self.clock.now_us(), self.timing["round_ms"]),
                              lambda g: [j for j in peers if j not in self._dec["answered"].get(last, ())])
        return data

    def _answer_d1(self, i):
        """Reply to every phase-1 message of iteration i not answered yet, with our value of i."""
        dec = self._dec
        value = dec["hist"].get(i)
        if value is None or i > dec["step"]:
            return  # not there yet: answered when we reach i
        got = self._box.get(("d1", i)) or {}
        answered = dec["answered"].setdefault(i, set())
        for src in got:
            if src not in answered:
                answered.add(src)
                peer = _sender_order(src)
                try:
                    reply = dec["cb"](value, dec["priv"], got[src])
                except Exception as e:
                    self._cb_error(peer, "d1", i, e)
                    continue
                self._send(peer, "d2", i, reply)
        for old in [s for s in dec["answered"] if s < i - 1]:
            del dec["answered"][old]

    # -- TDM ---------------------------------------------------------------------------------
    async def get1Meas(self, peerId, odata):
        res = await self.getMeas([peerId], odata)
        return await self._delivered(None if res is None else res[0])

    async def getMeas(self, peerIds, odata):
        return await self._delivered(await self._slot(peerIds, odata))

    async def _slot(self, peerIds, odata):
        s = self.slot
        self.slot += 1
        slot_us = int(self.timing["slot_ms"] * 1000)
        start = self.t0 + s * slot_us
        await self.clock.sleep_until(start + int(self.faults.slot_delay_ms(s) * 1000))
        state = self._fault_state(s)
        late = self.clock.now_us() - start
        self.tel.emit("slot_start", i=s, peers=list(peerIds), late=late)
        if state != UP or odata is None:
            self._raise_floor("t", s + 1)
            await self.clock.sleep_until(start + slot_us)
            self.tel.emit("slot_end", i=s, got=[], miss=[] if odata is None else list(peerIds),
                          skipped=True, down=state != UP)
            return None
        self._raise_floor("t", s)
        for p in peerIds:
            self._send(p, "t", s, odata)
        deadline = None if self.strict else start + slot_us - int(self.timing["guard_ms"] * 1000)
        got = await self._await("t", s, lambda g: all(p in g for p in peerIds), deadline,
                                lambda g: [p for p in peerIds if p not in g])
        self._raise_floor("t", s + 1)
        res = [got.get(p) for p in peerIds]
        free, _ = heap()
        self.tel.emit("slot_end", i=s, got=[p for p in peerIds if p in got],
                      miss=[p for p in peerIds if p not in got], heap=free)
        return res

    def report(self, value, ev="slot_value"):
        """Apps call this to put their own per-step metric into the telemetry (e.g. ODTS state)."""
        self.tel.emit(ev, i=self.slot - 1, v=value)

    # -- end ---------------------------------------------------------------------------------
    async def finish(self, value=None):
        """Report the result (by default what the last exchange returned), answer late peers for
        a while, then close the transport."""
        if value is None:
            value = self.value
        self.tel.emit("result", value=value, status=self.status)
        if self._dec is not None and self.status == "ok" and not self.strict:
            await asyncio.sleep(self.clock.real_s(self.timing["linger_ms"] * 1000))
        await self.net.flush(1.0)
        await self.close()

    async def close(self):
        if self._closed:
            return
        self._closed = True
        if self._lag is not None:
            self._lag.stop()
        free, total = heap()
        if free is not None:
            self.tel.emit("heap", free=free, min_free=min(free, self._min_free or free), total=total)
        self.tel.emit("counts", **self.counts)
        await self.net.close()
        self.tel.emit("done")


def _sender_order(src):
    return src if type(src) is int else src[0]


def _quorum(fraction, clients):
    """Clients needed to aggregate: ceil(fraction * clients), at least one."""
    x = round(fraction * clients, 6)
    need = int(x)
    if need < x:
        need += 1
    return max(1, need)
