"""What happened to each FL message at its receiver, and which steps started late: read from the
nodes' telemetry once per run by the collector, kept in the record (`fates`, `stalls`), and turned
into a `[[faults.script]]` by replay, so a virtual replay reproduces the run's timing as well as
its injected faults.

A message's fate is `in_time` (the receiver used it in its step), `lost` (an injected fault),
`stale` (it came after the receiver had left its step and was dropped), `unheard` (the receiver
ended its step without it and it never came before the receiver's end) or `dropped` (a drop reason
other than stale: duplicate, overflow, a rejected frame). Only messages that were not in time are
listed one by one; `counts` sums every fate. Telemetry gives this per step, without an event per
message: `slot_end` and `round_end` name the peers a step missed (`miss`), `drop` events the stale
and dropped ones, `fault` events the injected ones; a message is known to have been sent from its
sender's own step events (a client that did not skip round k sent its reply of k).

A step's stall: a TDM slot that started late beyond its injected jitter (`slot_start.late`), or a
round during which the node's event loop ran late (its `lag` telemetry), or a replayed stall."""
from __future__ import annotations

from flhil.vocab import CENTRALIZED_ALGORITHMS, LOST_KINDS, MESSAGE_FAULT_KINDS, STALL_KIND

STALL_MIN_MS = 5.0  # a step that starts less late than this is on time: the OS wakes a receiver about as
# late, so it still takes a message that came that much after its deadline (the replay could not)


def _events(record, node, kinds):
    return [e for e in record.node(node).get("events") or [] if e.get("ev") in kinds]


class _Telemetry:
    """The facts of one record that fates need, indexed once."""

    def __init__(self, record):
        self.record = record
        self.ids = record.node_ids()
        self.lost = set()       # (src, dst, p, i) of injected losses
        self.faulted = {}       # (src, dst, p, i) -> kind of another injected fault (delay, ...)
        self.jitter = {}        # (node, slot) -> ms of injected slot jitter
        self.stall_faults = {}  # (node, step) -> ms of replayed stalls
        self.stale = {}         # (src, dst, p, i) -> first stale drop event at dst
        self.dropped = []       # (dst, drop event) of other drop reasons
        self.round_end = {}     # (node, i) -> round_end event (the last per step)
        self.round_start = {}   # (node, i) -> t of the first round_start
        self.slot_end = {}
        self.slot_start = {}
        for n in self.ids:
            for e in record.node(n).get("events") or []:
                ev = e.get("ev")
                if ev == "fault":
                    kind = e.get("kind")
                    if kind in LOST_KINDS and e.get("dst") is not None:
                        self.lost.add((n, e.get("dst"), e.get("p"), e.get("i")))
                    elif kind in MESSAGE_FAULT_KINDS and e.get("dst") is not None:
                        self.faulted.setdefault((n, e.get("dst"), e.get("p"), e.get("i")), kind)
                    elif kind == "slot_jitter":
                        self.jitter[(n, e.get("i"))] = e.get("ms") or 0.0
                    elif kind == STALL_KIND:
                        self.stall_faults[(n, e.get("i"))] = e.get("ms") or 0.0
                elif ev == "drop" and e.get("src") is not None and e.get("p") is not None:
                    if e.get("why") == "stale":
                        self.stale.setdefault((e["src"], n, e["p"], e.get("i")), e)
                    else:
                        self.dropped.append((n, e))
                elif ev == "round_end":
                    self.round_end[(n, e.get("i"))] = e
                elif ev == "round_start":
                    self.round_start.setdefault((n, e.get("i")), e.get("t"))
                elif ev == "slot_end":
                    self.slot_end[(n, e.get("i"))] = e
                elif ev == "slot_start":
                    self.slot_start.setdefault((n, e.get("i")), e)

    def fate(self, src, dst, p, i, end_event):
        """lost, stale (with ms after the receiver's step end) or unheard, for a message the
        receiver's step did not have in time."""
        key = (src, dst, p, i)
        if key in self.lost:
            return {"fate": "lost"}
        out = {"fate": "unheard"}
        drop = self.stale.get(key)
        if drop is not None:
            ms = 0.0
            if end_event is not None and isinstance(drop.get("t"), int) and isinstance(end_event.get("t"), int):
                ms = max(0.0, (drop["t"] - end_event["t"]) / 1000.0)
            out = {"fate": "stale", "ms": round(ms, 3)}
        if key in self.faulted:
            out["after"] = self.faulted[key]  # an injected fault (a delay) may explain it
        return out


def _up(e):
    return e is not None and not e.get("down")


def _late_centralized(tm, server):
    out, in_time = [], 0
    clients = [n for n in tm.ids if n != server]
    for (n, k), e in sorted(tm.round_end.items()):
        if n == server:
            if not _up(e):
                continue
            if isinstance(e.get("got"), int):
                in_time += e["got"]
            for c in e.get("miss") or []:
                sent = tm.round_end.get((c, k))
                if _up(sent) and not sent.get("skipped"):  # the client answered round k
                    out.append(dict(src=c, dst=n, p="cu", i=k, **tm.fate(c, n, "cu", k, e)))
        elif n in clients:
            if _up(e) and not e.get("skipped"):
                in_time += 1
            if not _up(e) or not e.get("skipped"):
                continue
            served = tm.round_end.get((server, k))
            if _up(served):  # the server broadcast round k's model
                out.append(dict(src=server, dst=n, p="cd", i=k, **tm.fate(server, n, "cd", k, e)))
    return out, in_time


def _late_decentralized(tm):
    out, in_time = [], 0
    for (r, k), e in sorted(tm.round_end.items()):
        if not _up(e):
            continue
        if isinstance(e.get("got"), int):
            in_time += e["got"]
        for j in e.get("miss") or []:
            if not _up(tm.round_end.get((j, k))) and (j, k) not in tm.round_start:
                continue  # the peer never reached round k (dead, or down: a planned fault)
            if (r, j, "d1", k) in tm.lost:
                continue  # the request was lost: an injected fault, replayed as such
            if (r, j, "d1", k) in tm.stale:
                out.append(dict(src=r, dst=j, p="d1", i=k, fate="stale", ms=0.0))
                continue
            out.append(dict(src=j, dst=r, p="d2", i=k, **tm.fate(j, r, "d2", k, e)))
    return out, in_time


def _late_tdm(tm):
    out, in_time = [], 0
    for (n, s), e in sorted(tm.slot_end.items()):
        if e.get("skipped"):
            continue
        in_time += len(e.get("got") or [])
        for p in e.get("miss") or []:
            sent_end = tm.slot_end.get((p, s))
            sent_start = tm.slot_start.get((p, s))
            if sent_end is None or sent_end.get("skipped") or sent_start is None or \
                    n not in (sent_start.get("peers") or []):
                continue  # the peer did not send to us in this slot
            out.append(dict(src=p, dst=n, p="t", i=s, **tm.fate(p, n, "t", s, e)))
    return out, in_time


def message_fates(record) -> dict:
    """{"late": [...], "dropped": [...], "counts": {fate: n}}: every message that was not used in
    its step, with its fate at the receiver, and the count of each fate."""
    tm = _Telemetry(record)
    algo = record.algorithm
    if algo in CENTRALIZED_ALGORITHMS:
        late, in_time = _late_centralized(tm, record.server)
    elif tm.slot_end:
        late, in_time = _late_tdm(tm)
    else:
        late, in_time = _late_decentralized(tm)
    dropped = [{"src": e.get("src"), "dst": n, "p": e.get("p"), "i": e.get("i"), "fate": "dropped",
                "why": e.get("why")} for n, e in tm.dropped]
    counts = {"in_time": in_time, "stale": 0, "unheard": 0, "lost": len(tm.lost), "dropped": len(dropped)}
    for f in late:
        if f["fate"] in ("stale", "unheard"):
            counts[f["fate"]] += 1
    return {"late": [f for f in late if f["fate"] != "lost"], "dropped": dropped, "counts": counts}


def step_stalls(record) -> list[dict]:
    """Steps a node began late: [{"n", "i", "ms", "kind": "slot" | "round"}]. A slot's stall is its
    lateness beyond its injected jitter; a round's, the lateness of the node's event loop during
    the round (`lag` events whose worst moment falls in it, their total), or a replayed stall."""
    tm = _Telemetry(record)
    out = []
    for (n, s), e in sorted(tm.slot_start.items()):
        late = e.get("late")
        if not isinstance(late, (int, float)):
            continue
        ms = late / 1000.0 - tm.jitter.get((n, s), 0.0)
        if ms >= STALL_MIN_MS:
            out.append({"n": n, "i": s, "ms": round(ms, 3), "kind": "slot"})
    if tm.slot_start:
        return out
    for n in tm.ids:
        starts = sorted((i, t) for (m, i), t in tm.round_start.items() if m == n and isinstance(t, int))
        if not starts:
            continue
        stall = {}
        for e in _events(record, n, ("lag",)):
            at = e.get("at")
            if not isinstance(at, int):
                continue
            k = None
            for i, t in starts:
                if t <= at:
                    k = i
            if k is not None:
                stall[k] = stall.get(k, 0.0) + (e.get("sum") or 0) / 1000.0
        for (m, i), ms in tm.stall_faults.items():
            if m == n:
                stall[i] = stall.get(i, 0.0) + ms
        for i in sorted(stall):
            if stall[i] >= STALL_MIN_MS:
                out.append({"n": n, "i": i, "ms": round(stall[i], 3), "kind": "round"})
    return out
