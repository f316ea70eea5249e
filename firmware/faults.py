"""The fault layer: a transport that wears another and misbehaves on purpose, deterministically,
and the node-level faults (dropout and rejoin, slot jitter, clock skew) as one object.

Link faults act on the sender's side, per (src, dst) link, each link drawing from its own
generator seeded by (seed, src, dst), a fixed number of draws per matching rule and message, so the
same seed and the same message sequence give the same faults whatever the timing. A `script` in the
plan replaces the rules with exact per-message decisions (a recorded run, replayed): the sender's
(loss, delay, ...) and, at the receiver, the late arrivals the recorded run saw (`late`: held until
the receiver has left the message's step, so it is dropped as stale as it was); node stalls of the
script (`stall`) are node-level faults. Start-up messages (hello, go) are never faulted: the faults
under test are those of the FL protocol."""
from flhil.compat import asyncio
from flhil.prng import XorShift32, mix
from flhil.transport import Transport
from flhil.vocab import LOST_KINDS, STARTUP_PHASES, LATE_KIND, STALL_KIND

REORDER_HOLD_MS = 50  # a held message goes out behind the next one, or after this long


def _matches(sel, node):
    return sel is None or sel == "*" or sel == node


def _in_rounds(rule, i):
    r = rule.get("rounds")
    return r is None or (i is not None and r[0] <= i <= r[1])


class _LinkState:
    def __init__(self, seed, src, dst):
        self.rng = XorShift32(mix(seed, src, dst, 0x11))
        self.bad = {}       # rule index -> Gilbert-Elliott state is "bad"
        self.held = None    # a message held back for reordering
        self.hold_task = None


class FaultyTransport(Transport):
    """A Transport that wears any other: faults are decided here, per message, and what passes
    goes through the inner transport."""

    def __init__(self, inner, plan, node_id, seed, clock, tel, counts):
        self.inner = inner
        self.node_id = node_id
        self.seed = plan.get("seed", seed)
        self.clock = clock
        self.tel = tel
        self.counts = counts
        self.rules = [r for r in plan.get("links", ()) if _matches(r.get("src"), node_id)]
        self.partitions = plan.get("partitions", ())
        # replayed faults: exact decisions recorded from an earlier run, by (dst, phase, iteration)
        self.script = {}
        self.late_in = {}  # (src, phase, iteration) -> a late arrival at this node
        for f in plan.get("script", ()):
            kind = f.get("kind")
            if kind == LATE_KIND:
                if f.get("dst") == node_id:
                    self.late_in[(f["src"], f["p"], f["i"])] = f
            elif kind != STALL_KIND and f.get("src") == node_id:
                self.script[(f["dst"], f["p"], f["i"])] = f
        self._sink = None
        self._held = []    # late arrivals waiting for the node to leave their step
        self._floors = {}  # phase -> the step below which the node takes no more messages
        self.t_start = None  # set by the node when the start barrier is passed
        self._links = {}
        self._tasks = []

    # -- pass-through -------------------------------------------------------------------------
    @property
    def address(self):
        return self.inner.address

    @property
    def peers(self):
        return self.inner.peers

    def set_sink(self, fn):
        self._sink = fn
        self.inner.set_sink(self._arrive if self.late_in else fn)

    def set_peers(self, table):
        self.inner.set_peers(table)

    async def start(self):
        return await self.inner.start()

    async def flush(self, timeout_s, in_flight=True):
        # delayed and held messages are still on their way: let them out before the inner flush,
        # or close() cancels them and a node's last message under delay is silently lost (at the
        # node's end; after each exchange only what the node itself holds is waited for, as a
        # delayed message is already in the network)
        step = 0.005
        waited = 0.0
        while in_flight and waited < timeout_s and any(not t.done() for t in self._tasks):
            await asyncio.sleep(step)
            waited += step
        await self.inner.flush(max(0.0, timeout_s - waited))

    async def close(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        await self.inner.close()

    # -- faults -------------------------------------------------------------------------------
    def _fault(self, kind, msg, dst, **extra):
        self.tel.emit("fault", kind=kind, dst=dst, p=msg.get("p"), i=msg.get("i"), q=msg.get("q"), **extra)

    def _partitioned(self, dst, i):
        for part in self.partitions:
            if "rounds" in part:
                if not _in_rounds(part, i):
                    continue
            else:
                if self.t_start is None:
                    continue
                t_ms = (self.clock.now_us() - self.t_start) / 1000
                if not part.get("start_ms", 0) <= t_ms < part.get("end_ms", 1e18):
                    continue
            gs = gd = None
            for gi, group in enumerate(part["groups"]):
                if self.node_id in group:
                    gs = gi
                if dst in group:
                    gd = gi
            if gs is not None and gd is not None and gs != gd:
                return True
        return False

    def broadcast(self, dsts, msg):
        if msg.get("p") in STARTUP_PHASES:
            self.inner.broadcast(dsts, msg)
            return
        for dst in dsts:  # every link draws its own faults
            self.send(dst, msg)

    def send(self, dst, msg):
        if msg.get("p") in STARTUP_PHASES:
            self.inner.send(dst, msg)
            return
        i = msg.get("i")
        if self.script:
            self._replay(dst, msg)
            return
        if self._partitioned(dst, i):
            self.counts["drop_fault"] += 1
            self._fault("partition", msg, dst)
            return
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = _LinkState(self.seed, self.node_id, dst)
        delay_ms = 0.0
        copies = 1
        hold = False
        for idx, rule in enumerate(self.rules):
            if not _matches(rule.get("dst"), dst) or not _in_rounds(rule, i):
                continue
            rng = link.rng
            u_loss, u_dup, u_reorder, u_delay = rng.random(), rng.random(), rng.random(), rng.random()
            burst = rule.get("burst")
            if burst is not None:
                bad = link.bad.get(idx, False)
                # state moves first, then this message is lost with the new state's probability
                if bad:
                    bad = not (u_delay < burst.get("r", 1.0))
                else:
                    bad = u_delay < burst.get("p", 0.0)
                link.bad[idx] = bad
                p_lost = burst.get("loss_bad", 1.0) if bad else burst.get("loss_good", 0.0)
                if u_loss < p_lost:
                    self.counts["drop_fault"] += 1
                    self._fault("burst_loss", msg, dst)
                    return
                u_delay = rng.random()  # the state change used this draw
            if u_loss < rule.get("loss", 0.0):
                self.counts["drop_fault"] += 1
                self._fault("loss", msg, dst)
                return
            if rule.get("delay_ms") or rule.get("jitter_ms"):
                jitter = rule.get("jitter_ms", 0.0)
                d = rule.get("delay_ms", 0.0) + (2 * u_delay - 1) * jitter
                if d > 0:
                    delay_ms += d
            if u_dup < rule.get("dup", 0.0):
                copies += 1
            if u_reorder < rule.get("reorder", 0.0):
                hold = True
        if delay_ms > 0:
            self._fault("delay", msg, dst, ms=round(delay_ms, 3))
        if copies > 1:
            self._fault("dup", msg, dst, copies=copies)
        if hold:
            self._fault("reorder", msg, dst)
        self._emit_later(link, dst, msg, copies, delay_ms, hold)

    def _replay(self, dst, msg):
        f = self.script.get((dst, msg["p"], msg["i"]))
        kind = f["kind"] if f else None
        if kind in LOST_KINDS:
            self.counts["drop_fault"] += 1
            self._fault(kind, msg, dst)
            return
        if kind is not None:
            self._fault(kind, msg, dst, **({"ms": f["ms"]} if "ms" in f else {}))
        link = self._links.get(dst)
        if link is None:
            link = self._links[dst] = _LinkState(self.seed, self.node_id, dst)
        self._emit_later(link, dst, msg, 2 if kind == "dup" else 1, f.get("ms", 0) if kind == "delay" else 0,
                         kind == "reorder")

    # -- replayed late arrivals (receiver side) -------------------------------------------------
    def _arrive(self, msg):
        key = (msg.get("s"), msg.get("p"), msg.get("i"))
        f = self.late_in.get(key)
        if f is None:
            self._sink(msg)
            return
        del self.late_in[key]  # its copies pass as they came
        if msg["i"] < self._floors.get(msg["p"], 0):
            self._sink(msg)  # late already (the replay's own faults made it so): nothing to hold
            return
        self._held.append((f, msg))

    def left_step(self, phase, floor):
        self._floors[phase] = floor
        keep = []
        for f, msg in self._held:
            if msg["p"] == phase and msg["i"] < floor:
                if f.get("ms") is not None:  # without ms it never arrived before the receiver's end
                    self._spawn(self._late(f, msg))
            else:
                keep.append((f, msg))
        self._held = keep

    async def _late(self, f, msg):
        await asyncio.sleep(self.clock.real_s(f["ms"] * 1000))
        self.tel.emit("fault", kind=LATE_KIND, src=msg["s"], p=msg["p"], i=msg["i"], ms=f["ms"])
        self._sink(msg)

    def _emit_later(self, link, dst, msg, copies, delay_ms, hold):
        if delay_ms > 0:
            self._spawn(self._after(delay_ms, link, dst, msg, copies, hold))
        else:
            self._put(link, dst, msg, copies, hold)

    async def _after(self, delay_ms, link, dst, msg, copies, hold):
        await asyncio.sleep(self.clock.real_s(delay_ms * 1000))
        self._put(link, dst, msg, copies, hold)

    def _put(self, link, dst, msg, copies, hold):
        held = link.held
        if hold and held is None:
            link.held = (msg, copies)
            link.hold_task = self._spawn(self._release_later(link, dst))
            return
        for _ in range(copies):
            self.inner.send(dst, msg)
        if held is not None:  # the held message goes out behind this one
            link.held = None
            link.hold_task.cancel()
            for _ in range(held[1]):
                self.inner.send(dst, held[0])

    async def _release_later(self, link, dst):
        await asyncio.sleep(self.clock.real_s(REORDER_HOLD_MS * 1000))
        held, link.held = link.held, None
        if held is not None:
            for _ in range(held[1]):
                self.inner.send(dst, held[0])

    def _spawn(self, coro):
        task = asyncio.create_task(coro)
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(task)
        return task


def has_link_faults(plan):
    return bool(plan.get("links") or plan.get("partitions") or plan.get("script"))


def clock_skew(plan, node_id):
    """(ppm, offset_ms) for this node, or None."""
    for s in plan.get("clock_skew", ()):
        if _matches(s.get("node", "*"), node_id):
            return s.get("ppm", 0.0), s.get("offset_ms", 0.0)
    return None


def scripted_stalls(plan, node_id):
    """{step: ms} of the script's stalls of this node."""
    out = {}
    for f in plan.get("script", ()):
        if f.get("kind") == STALL_KIND and f.get("src") == node_id:
            out[f["i"]] = f.get("ms", 0)
    return out


UP = "up"
DOWN = "down"        # dropped out, comes back at a later step
DEAD = "dead"        # dropped out for good
BACK = "back"        # up again at this step after being down at the step before


class NodeFaults:
    """The node-level faults of one node's plan, in one place: dropouts and rejoins by step
    (iteration or slot), slot jitter and clock skew. `step(k)` tells the runtime what the node is
    at step k and emits the crash and rejoin events at the edges."""

    def __init__(self, plan, node_id, seed, tel):
        self.tel = tel
        self.dropouts = [d for d in plan.get("dropouts", ()) if d.get("node") == node_id]
        worst = 0.0
        for j in plan.get("slot_jitter", ()):
            if _matches(j.get("node", "*"), node_id):
                worst = max(worst, j.get("max_ms", 0.0))
        self.jitter_ms = worst
        self._jitter_rng = XorShift32(mix(plan.get("seed", seed), node_id, 0x5107))
        self.skew = clock_skew(plan, node_id)  # (ppm, offset_ms) or None
        self.stalls = scripted_stalls(plan, node_id)
        self.down = False
        self.dead = False
        self.up_at = None  # while down: the step the node comes back at (None: never)

    def step(self, k):
        """UP, DOWN, DEAD or BACK at step k (BACK: up, and down when last asked)."""
        state = UP
        self.up_at = None
        for d in self.dropouts:
            at, down = d["at"], d.get("down")
            if k == at:
                self.tel.emit("fault", kind="crash", i=k, down=down)
            if down is not None and k == at + down:
                self.tel.emit("fault", kind="rejoin", i=k)
            if k >= at and (down is None or k < at + down):
                state = DEAD if down is None else DOWN
                self.up_at = None if down is None else at + down
        was_down = self.down
        self.down = state != UP
        if state == DEAD:
            self.dead = True
        if state == UP and was_down:
            return BACK
        return state

    def rejoined(self, k):
        """True at the step where the node comes back from a planned dropout."""
        for d in self.dropouts:
            if d.get("down") is not None and k == d["at"] + d["down"]:
                return True
        return False

    def slot_delay_ms(self, slot):
        """How late this slot's send starts (0 without slot jitter or a stall); the jitter draw
        and the stall are fault events."""
        stall = self.stall_ms(slot)
        if not self.jitter_ms:
            return stall
        j = self._jitter_rng.uniform(0, self.jitter_ms)
        self.tel.emit("fault", kind="slot_jitter", i=slot, ms=round(j, 3))
        return j + stall

    def stall_ms(self, step):
        """A replayed stall of this node at this step (its loop did not run for that long when
        the step began in the recorded run), as a fault event; 0 when the script has none."""
        ms = self.stalls.get(step)
        if not ms:
            return 0
        self.tel.emit("fault", kind=STALL_KIND, i=step, ms=ms)
        return ms
