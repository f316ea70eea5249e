"""Host-aware verdicts: a real-time run whose failures all depend on timing, at moments when the
host kept its nodes from running, proves nothing about the algorithm. Its verdict is
*inconclusive: host overloaded*, with the evidence (which node, how late, when).

Evidence comes from the nodes' own `lag` telemetry (flhil/lagmon.py): the lateness of their event
loop that was not spent on their own CPU (`host`), which is what a loaded host does to a process.
A board has no CPU clock and shares its CPU with nothing, so its lag is its own and never evidence.

A failed finding is explained by the host when
- it depends on timing: a timing check (`slot_late_ms`, `round_ms`), or any other check (values,
  liveness, drops) of a run in which messages missed their step (their fate was `stale` or
  `unheard`) or slots started late, at or before the failing round;
- and the nodes involved (the late slot's node; the late message's sender and receiver; for a
  round latency every node) lost at least STALL_FRACTION of the scenario's margin to the host in
  the step concerned (one lag window either side).
A run whose every failure is explained is inconclusive; one failure that is not keeps the run
failed. A failure without late messages or late slots (a wrong value from a broken callback)
is never explained by the host.
"""
from __future__ import annotations

from flhil.harness.results.fates import message_fates, step_stalls

TIMING_CHECKS = ("slot_late_ms", "round_ms")
STALL_FRACTION = 0.25  # of the margin: host lateness measured is a lower bound of what it cost
MIN_STALL_MS = 5.0     # below this no host stall explains anything
SLACK_US = 100000      # a lag window's summary lands up to one window after its stall


class Stall:
    """Host lateness of one node in one lag window (node clock, microseconds)."""

    def __init__(self, node, ev):
        self.node = node
        self.end = ev.get("t") or 0
        self.start = self.end - (ev.get("w") or 0)
        self.at = ev.get("at", self.end)
        self.host_ms = (ev.get("host") or 0) / 1000.0
        self.host_sum_ms = (ev.get("host_sum") or ev.get("host") or 0) / 1000.0
        self.max_ms = (ev.get("max") or 0) / 1000.0

    def overlaps(self, a, b):
        return self.start - SLACK_US <= b and self.end + SLACK_US >= a

    def describe(self, t0):
        when = "%.0f ms after slot 0" % ((self.at - t0) / 1000.0) if t0 is not None else "t=%d" % self.at
        return "node %d lost %.1f ms to the host (worst %.1f ms at once, loop %.1f ms late) %s" % (
            self.node, self.host_sum_ms, self.host_ms, self.max_ms, when)


def host_stalls(record) -> dict:
    """{node: [Stall]} from the nodes' lag events that carry a host part."""
    out = {}
    for n in record.node_ids():
        for e in record.events(n, "lag"):
            if e.get("host") is not None:
                out.setdefault(n, []).append(Stall(n, e))
    return out


def margin_ms(record) -> float:
    """The scenario's slack: how late a step may run before its outcome changes. TDM: the receive
    window (slot - guard) less the largest injected delay; rounds: the deadline less two delayed
    hops."""
    t = dict(record.timing)
    delay = 0.0
    for link in record.fault_plan.get("links") or []:
        delay = max(delay, (link.get("delay_ms") or 0.0) + (link.get("jitter_ms") or 0.0))
    if record.slot_starts(record.node_ids()[0] if record.node_ids() else 0) or record.algorithm == "tdm":
        slack = t.get("slot_ms", 100) - t.get("guard_ms", 20) - delay
    else:
        slack = t.get("round_ms", 2000) - 2 * delay
    return max(slack, MIN_STALL_MS / STALL_FRACTION)


def _t0(record, node):
    for e in record.events(node, "ready"):
        if isinstance(e.get("t0"), int):
            return e["t0"]
    return None


class _Windows:
    """Where each node's steps lie on its own clock."""

    def __init__(self, record):
        self.record = record
        self.slot_ms = dict(record.timing).get("slot_ms", 100)
        self.starts, self.ends = {}, {}
        for n in record.node_ids():
            for e in record.events(n, ("round_start", "slot_start")):
                self.starts.setdefault((n, e.get("i")), e.get("t"))
            for e in record.events(n, ("round_end", "slot_end")):
                self.ends[(n, e.get("i"))] = e.get("t")

    def of(self, node, i):
        a, b = self.starts.get((node, i)), self.ends.get((node, i))
        if a is None and b is None:
            return None
        return (a if a is not None else b - int(self.slot_ms * 1000)), (b if b is not None else a)


class HostJudge:
    def __init__(self, record):
        self.record = record
        self.stalls = host_stalls(record)
        self.margin = margin_ms(record)
        self.need = max(MIN_STALL_MS, STALL_FRACTION * self.margin)
        self.windows = _Windows(record)
        fates = record.data.get("fates") or message_fates(record)
        self.late = fates.get("late") or []
        stalls = record.data.get("stalls")
        self.late_steps = stalls if stalls is not None else step_stalls(record)

    def lost(self, node, span):
        """(host ms lost by `node` in `span` of its clock, the stalls)."""
        if span is None:
            return 0.0, []
        hit = [s for s in self.stalls.get(node, ()) if s.overlaps(*span)]
        return sum(s.host_sum_ms for s in hit), hit

    def _step_evidence(self, nodes_spans, need):
        total, hits = 0.0, []
        for node, span in nodes_spans:
            ms, hit = self.lost(node, span)
            total += ms
            hits.extend(hit)
        return (total >= need, hits)

    def explain(self, finding):
        """The stalls that explain a failed finding, or None."""
        rec = self.record
        if finding.check == "slot_late_ms" and finding.node is not None and finding.round is not None:
            got = _ms(finding.got)
            bound = _ms(finding.expected)
            need = max(MIN_STALL_MS, STALL_FRACTION * ((got or 0) - (bound or 0)))
            ok, hits = self._step_evidence([(finding.node, self.windows.of(finding.node, finding.round))], need)
            return hits if ok else None
        if finding.check == "round_ms" and finding.node is not None:
            lat = rec.round_latencies_ms(finding.node)
            if not lat:
                return None
            i = max(lat, key=lat.get)
            span = self.windows.of(finding.node, i)
            ok, hits = self._step_evidence([(n, span if n == finding.node else self.windows.of(n, i))
                                            for n in rec.node_ids()], self.need)
            return hits if ok else None
        # any other check: explained only by messages that missed their step or slots that began late
        upto = finding.round
        hits, explained = [], False
        for f in self.late:
            if f.get("after"):
                continue  # late after an injected delay: the fault plan's doing, not the host's
            if upto is not None and f.get("i") is not None and f["i"] > upto:
                continue
            i = f.get("i")
            ok, h = self._step_evidence([(f["dst"], self.windows.of(f["dst"], i)),
                                         (f["src"], self.windows.of(f["src"], i))], self.need)
            if ok:
                explained = True
                hits.extend(h)
        for s in self.late_steps:
            if s.get("kind") != "slot" or (upto is not None and s["i"] > upto):
                continue
            ok, h = self._step_evidence([(s["n"], self.windows.of(s["n"], s["i"]))],
                                        max(MIN_STALL_MS, STALL_FRACTION * s["ms"]))
            if ok:
                explained = True
                hits.extend(h)
        return hits if explained else None


def judge(record, verdict):
    """Mark `verdict` inconclusive when every failure is explained by host stalls (see the module's
    doc); its `evidence` then says which node lost how much, when. Records without lag telemetry
    (virtual time, boards) are judged as they are."""
    failures = verdict.failures
    if not failures or not any(record.events(n, "lag") for n in record.node_ids()):
        return verdict
    judge_ = HostJudge(record)
    if not judge_.stalls:
        return verdict
    evidence = {}
    for f in failures:
        hits = judge_.explain(f)
        if hits is None:
            return verdict  # a failure the host does not explain: the run failed
        for s in hits:
            evidence[(s.node, s.start)] = s
    ranked = sorted(evidence.values(), key=lambda s: -s.host_sum_ms)
    verdict.inconclusive = True
    verdict.evidence = ["%s" % s.describe(_t0(record, s.node)) for s in ranked[:5]]
    late = judge_.late
    if late:
        f = late[0]
        verdict.evidence.append("%d message(s) missed their step, first %s -> %s %s %s (%s)" % (
            len(late), f["src"], f["dst"], f["p"], f["i"], f["fate"]))
    verdict.evidence.append("scenario margin %.0f ms; every failure (%d) coincides with host stalls"
                            % (judge_.margin, len(failures)))
    return verdict


def _ms(text):
    """The number of a finding's '<= 20 ms' / '36.100 ms' text, or None."""
    if isinstance(text, (int, float)):
        return float(text)
    if not isinstance(text, str):
        return None
    for tok in text.replace("<=", " ").split():
        try:
            return float(tok)
        except ValueError:
            continue
    return None
