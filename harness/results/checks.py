"""The built-in `[expect]` checks, each registered once with its parameters and its doc
(`harness.results.expectations`), plus `check_protocol`: the runtime invariants upstream proved on
its CSP model. Every check returns a list of `Finding`s, passing ones included, so a report shows
what was verified."""
from __future__ import annotations

import math

from typing import Annotated

from pydantic import AfterValidator, Field, create_model

from flhil.apps import common
from flhil.harness.config.model import ConfigModel, Expect, Float, Int, OneOf, Unique, fail
from flhil.harness.results import heterofl, oracles
from flhil.harness.results.expectations import expectation
from flhil.harness.results.verdict import DEFAULT_REL, Finding, fmt_value, values_match
from flhil.vocab import CENTRALIZED_ALGORITHMS, DROP_COUNTERS, FAULT_KINDS


def _index_base(record):
    """Iterations/slots in telemetry may count from 0 or 1; oracle lists count from 0."""
    seen = [e.get("i") for n in record.node_ids() for e in record.steps(n)
            if isinstance(e.get("i"), int)]
    return 1 if seen and min(seen) == 1 else 0


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    k = max(0, math.ceil(p / 100.0 * len(ordered)) - 1)
    return ordered[k]


def _oracle(record, oracle_values):
    if isinstance(oracle_values, Exception):  # the reference could not be had: the finding says why
        raise ValueError(str(oracle_values))
    if oracle_values is None:
        return oracles.oracle_for(record.algorithm, record.n_nodes, record.args,
                                  record.seed, record.server)
    if isinstance(oracle_values, dict) and "final" in oracle_values:
        return oracle_values
    return {"final": list(oracle_values), "rounds": None}


# ------------------------------------------------------------------ expectation checks

ORACLE_VALUE = Annotated[bool | str, Expect('true or false, or "FILE.py:FUNCTION" or "FILE.json" (a user\'s app)')]


@expectation("oracle", ORACLE_VALUE, "final values (and each round's, for the averaging algorithms) equal "
             "the fault-free reference: exact for dyadic values, else relative 1e-6; true for a built-in "
             "app, \"FILE.py:FUNCTION\" or \"FILE.json\" for a user's app", needs=("oracle",))
def check_oracle(record, oracle_values=None, rel=DEFAULT_REL, rounds=None, value=True):
    """Final values (and, for the averaging algorithms, every round's `v`) equal the fault-free
    reference. `oracle_values`: a list (one final value per node) or {"final", "rounds"};
    computed from the record's spec when None. HeteroFL: every round against its numpy reference
    (results/heterofl.py)."""
    if record.algorithm == "heterofl":
        return heterofl.check_rounds(record)
    try:
        oracle = _oracle(record, oracle_values)
    except ValueError as exc:
        return [Finding("oracle", False, message=str(exc))]
    out = []
    for node, expected in enumerate(oracle["final"]):
        if not record.has_result(node):
            out.append(Finding("oracle", False, node, None, expected, None,
                               "no result (status %s)" % record.status(node)))
            continue
        got = record.result(node)
        out.append(Finding("oracle", values_match(expected, got, rel), node, None, expected, got,
                           "final value"))
    if rounds is None:
        rounds = record.algorithm in ("centralized", "decentralized", "tdm")
    if rounds and oracle.get("rounds"):
        base = _index_base(record)
        for node in record.node_ids():
            for i, v in sorted(record.step_values(node).items()):
                k = i - base
                if 0 <= k < len(oracle["rounds"]) and node < len(oracle["rounds"][k]):
                    expected = oracle["rounds"][k][node]
                    if not values_match(expected, v, rel):
                        out.append(Finding("oracle", False, node, i, expected, v,
                                           "value after this round/slot"))
                        break  # the first divergence per node is the informative one
    return out


@expectation("all_return", bool, "liveness: every node the fault plan does not kill for good reports a "
             "result, status ok")
def check_all_return(record):
    """Liveness: every node the fault plan does not kill for good reports a result, status ok."""
    out = []
    killed = record.planned_permanent_crashes()
    hang = record.hang or {}
    for node in range(record.n_nodes):
        if node in killed:
            out.append(Finding("all_return", True, node, message="crashed by the fault plan; "
                               "status %s" % record.status(node)))
            continue
        status = record.status(node)
        ok = status == "ok" and record.has_result(node)
        msg = "status %s" % status
        if record.error(node):
            msg += ", error: %s" % record.error(node)
        if not ok and hang.get("node") == node:
            msg += ", hung in %s waiting on %s" % (hang.get("phase"), hang.get("waiting"))
        out.append(Finding("all_return", ok, node, None, "a result, status ok",
                           "result" if record.has_result(node) else "no result", msg))
    if hang and hang.get("node") is None:
        out.append(Finding("all_return", False, message="run hung: %s" % hang))
    return out


class Consensus(ConfigModel):
    eps: Float(0, lo_open=True, description="relative spread to reach")
    safety: Float(0, lo_open=True, description="factor on theory's number of rounds") = 2.0


@expectation("consensus", Consensus, "the spread of the nodes' values falls to eps x the initial spread "
             "within theory's rounds x safety, and stays there")
def check_consensus(record, eps=1e-3, safety=2.0, scale=None):
    """The spread (max - min) of the nodes' per-round values falls to eps x the initial spread
    within ceil(safety x rounds_to_eps) rounds, and stays there at the end. The initial spread is
    that of the upstream data x_i = i + 1 unless `scale` is given."""
    algo, n = record.algorithm, record.n_nodes
    try:
        bound = math.ceil(safety * oracles.rounds_to_eps(algo, n, eps))
    except ValueError as exc:
        return [Finding("consensus", False, message=str(exc))]
    if scale is None:
        init = oracles.initial_values(n)
        scale = max(init) - min(init)
    by_round = {}
    for node in record.node_ids():
        for i, v in record.step_values(node).items():
            if _number(v):
                by_round.setdefault(i, []).append(v)
    rounds = sorted(i for i, vs in by_round.items() if len(vs) >= 2)
    if not rounds:
        return [Finding("consensus", False, message="no round with values of two nodes")]
    base = _index_base(record)
    spread = {i: max(by_round[i]) - min(by_round[i]) for i in rounds}
    target = eps * scale
    reached = next((i for i in rounds if spread[i] <= target), None)
    last = rounds[-1]
    if reached is None or spread[last] > target:
        return [Finding("consensus", False, None, last, "spread <= %g" % target, spread[last],
                        "not reached by the last round (theory: %d rounds x %g safety = %d)"
                        % (oracles.rounds_to_eps(algo, n, eps), safety, bound))]
    count = reached - base + 1
    return [Finding("consensus", count <= bound, None, reached, "within %d rounds" % bound,
                    "%d rounds" % count, "spread %g <= %g" % (spread[reached], target))]


class MassConserved(ConfigModel):
    tol: Float(0, description="relative tolerance on the mean") = 1e-9


@expectation("mass_conserved", MassConserved, "the mean of the nodes' values stays the initial mean")
def check_mass_conserved(record, tol=1e-9):
    """The mean of all nodes' values stays the initial mean (x_i = i + 1), in every round where
    every node reported, else on the final results. |mean - m0| <= tol x max(1, |m0|)."""
    n = record.n_nodes
    m0 = sum(oracles.initial_values(n)) / n
    limit = tol * max(1.0, abs(m0))
    by_round = {}
    for node in record.node_ids():
        for i, v in record.step_values(node).items():
            if _number(v):
                by_round.setdefault(i, {})[node] = v
    complete = sorted(i for i, vs in by_round.items() if len(vs) == n)
    if complete:
        for i in complete:
            mean = sum(by_round[i].values()) / n
            if abs(mean - m0) > limit:
                return [Finding("mass_conserved", False, None, i, m0, mean,
                                "mean of the %d nodes' values moved by %g" % (n, mean - m0))]
        return [Finding("mass_conserved", True, None, complete[-1], m0,
                        sum(by_round[complete[-1]].values()) / n, "%d rounds checked" % len(complete))]
    results = [record.result(node) for node in range(n)]
    if not all(_number(r) for r in results):
        return [Finding("mass_conserved", False, message="no round or result set with all %d "
                        "nodes' values" % n)]
    mean = sum(results) / n
    return [Finding("mass_conserved", abs(mean - m0) <= limit, None, None, m0, mean,
                    "mean of final results")]


def accuracy_of(record, node):
    """Test accuracy of a node's model: a result that is a number in [0, 1] (a user's app that
    returns its accuracy), the result's `accuracy`/`acc` if it is a dict, else the last
    round_end's `acc`, else the model (result [w, b, ...] or result["w"]) evaluated on the
    shared test set logreg_test_data(seed, test_samples). HeteroFL's server: its global model on the
    held-out digits, evaluated on the host."""
    if record.algorithm == "heterofl" and node == record.server:
        return heterofl.global_accuracy(record)
    result = record.result(node)
    if _number(result) and 0 <= result <= 1:
        return float(result)
    if isinstance(result, dict):
        for key in ("accuracy", "acc"):
            if _number(result.get(key)):
                return float(result[key])
    rounds = record.rounds(node)
    if rounds and _number(rounds[-1].get("acc")):
        return float(rounds[-1]["acc"])
    if isinstance(result, dict) and isinstance(result.get("w"), (list, tuple)):
        result = result["w"]
    if isinstance(result, (list, tuple)) and len(result) >= 2 and all(map(_number, result[:2])):
        n_test = record.args.get("test_samples", common.LOGREG_DEFAULTS["test_samples"])
        xs, ys = common.logreg_test_data(record.seed if record.seed is not None else 1, n_test)
        return common.logreg_accuracy(result[:2], xs, ys)
    return None


class Accuracy(ConfigModel):
    min: Float(0, 1, expected="an accuracy between 0 and 1", description="lowest test accuracy")


@expectation("accuracy", Accuracy, "the model's test accuracy (the server's) is at least min")
def check_accuracy(record, min, node=None):  # noqa: A002 - the [expect] key is `min`
    """The model's test accuracy (the server's unless `node` is given) is at least `min`."""
    node = record.server if node is None else node
    acc = accuracy_of(record, node)
    if acc is None:
        return [Finding("accuracy", False, node, None, ">= %g" % min, None,
                        "no accuracy: result %s" % fmt_value(record.result(node)))]
    return [Finding("accuracy", acc >= min, node, None, ">= %g" % min, acc)]


class AccuracyVsClean(ConfigModel):
    margin: Float(0, 1, expected="a margin between 0 and 1", description="largest accuracy loss against "
                  "the fault-free run of the same spec")


@expectation("accuracy_vs_clean", AccuracyVsClean, "accuracy under faults >= the clean run's - margin",
             needs=("clean",))
def check_accuracy_vs_clean(record, clean, margin=0.05, node=None):
    """Accuracy under faults >= clean accuracy - margin. `clean`: a fault-free run record,
    its accuracy, or a list of either (several seeds: their mean)."""
    node = record.server if node is None else node
    cleans = clean if isinstance(clean, (list, tuple)) else [clean]
    accs = []
    for c in cleans:
        accs.append(float(c) if _number(c) else accuracy_of(c, node))
    if not accs or any(a is None for a in accs):
        return [Finding("accuracy_vs_clean", False, node, message="no clean accuracy")]
    clean_acc = sum(accs) / len(accs)
    acc = accuracy_of(record, node)
    if acc is None:
        return [Finding("accuracy_vs_clean", False, node, None, ">= %g" % (clean_acc - margin),
                        None, "no accuracy under faults")]
    return [Finding("accuracy_vs_clean", acc >= clean_acc - margin, node, None,
                    ">= %g (clean %g - margin %g)" % (clean_acc - margin, clean_acc, margin), acc)]


class Aggregated(ConfigModel):
    min: Int(0, description="fewest clients aggregated in a round") | None = None
    max: Int(0, description="most clients aggregated in a round") | None = None

    def check(self, at, ctx):
        if self.min is None and self.max is None:
            at.fail("expected at least one of min, max")
        if self.min is not None and self.max is not None and self.min > self.max:
            (at / "min").fail(f"expected min <= max ({self.max}), got {self.min}")
        n = ctx.get("nodes")
        if n is not None and self.min is not None and self.min > n - 1:
            (at / "min").fail(f"expected at most {n - 1} (the clients of {n} nodes), got {self.min}")


def bounds_text(low, high, noun):
    """'3..5 clients', '>= 3 clients', '<= 5 clients'."""
    if low is not None and high is not None:
        return "%s..%s %s" % (low, high, noun)
    return ">= %s %s" % (low, noun) if low is not None else "<= %s %s" % (high, noun)


@expectation("aggregated", Aggregated, "clients aggregated by the server in every centralized round")
def check_aggregated(record, min=None, max=None):  # noqa: A002
    """Clients aggregated by the server (round_end `got`) in every centralized round."""
    server = record.server
    rounds = record.rounds(server)
    if not rounds:
        return [Finding("aggregated", False, server, message="no round_end at the server")]
    out = []
    for e in rounds:
        got = e.get("got")
        count = len(got) if isinstance(got, (list, tuple)) else got
        ok = _number(count) and (min is None or count >= min) and (max is None or count <= max)
        if not ok:
            out.append(Finding("aggregated", False, server, e.get("i"),
                               bounds_text(min, max, "clients"), count))
    if not out:
        out.append(Finding("aggregated", True, server, None, bounds_text(min, max, "clients"),
                           sorted({e.get("got") if not isinstance(e.get("got"), list)
                                   else len(e["got"]) for e in rounds}, key=str)))
    return out


class SkippedRounds(ConfigModel):
    max: Int(0, description="most skipped rounds per node")


@expectation("skipped_rounds", SkippedRounds, "at most max rounds skipped (below quorum or down) per node")
def check_skipped_rounds(record, max=0):  # noqa: A002
    """At most `max` skipped rounds (round_end `skipped`) per node."""
    out = []
    for node in record.node_ids():
        skipped = [e.get("i") for e in record.rounds(node) if e.get("skipped")]
        out.append(Finding("skipped_rounds", len(skipped) <= max, node,
                           skipped[0] if skipped else None, "<= %d skipped" % max, len(skipped),
                           "skipped rounds %s" % skipped if skipped else ""))
    return out


class SlotLate(ConfigModel):
    max_ms: Float(0, description="latest slot start, ms after its scheduled time")


@expectation("slot_late_ms", SlotLate, "every TDM slot starts at most max_ms late")
def check_slot_late(record, max_ms=None):
    """Every slot starts at most max_ms late (slot_start `late`, the node's own clock); the
    default bound is the run's guard time."""
    if max_ms is None:
        max_ms = record.timing.get("guard_ms")
    if max_ms is None:
        return [Finding("slot_late_ms", False, message="no max_ms and no timing.guard_ms")]
    out = []
    for node in record.node_ids():
        late = record.slot_lateness_ms(node)
        if not late:
            continue
        slot, worst = max(late.items(), key=lambda kv: kv[1])
        out.append(Finding("slot_late_ms", worst <= max_ms, node, slot, "<= %g ms" % max_ms,
                           "%.3f ms" % worst, "worst slot start of %d" % len(late)))
    return out or [Finding("slot_late_ms", False, message="no slot_start events with `late`")]


class RoundMs(ConfigModel):
    p95_max: Float(0, lo_open=True, description="95th percentile of round latency, ms")


@expectation("round_ms", RoundMs, "round latency (round_end - round_start, each node's clock) per node")
def check_round_ms(record, p95_max=None, max=None):  # noqa: A002
    """Round latency round_end.t - round_start.t (node's own clock): p95 and/or max per node."""
    out = []
    for node in record.node_ids():
        lat = record.round_latencies_ms(node)
        if not lat:
            continue
        if p95_max is not None:
            p95 = _percentile(list(lat.values()), 95)
            out.append(Finding("round_ms", p95 <= p95_max, node, None, "p95 <= %g ms" % p95_max,
                               "p95 %.3f ms" % p95, "%d rounds" % len(lat)))
        if max is not None:
            i, worst = _max_item(lat)  # `max` is shadowed by the [expect] key
            out.append(Finding("round_ms", worst <= max, node, i, "<= %g ms" % max,
                               "%.3f ms" % worst, "slowest round"))
    return out or [Finding("round_ms", False, message="no round_start/round_end pairs")]


def _max_item(d):
    best = None
    for k, v in d.items():
        if best is None or v > best[1]:
            best = (k, v)
    return best


class Heap(ConfigModel):
    max_kb: Float(0, lo_open=True, description="peak heap use on boards, KB")


@expectation("heap", Heap, "peak heap use on every node that reports heap figures is at most max_kb")
def check_heap(record, max_kb):
    """Peak heap use (heap total - lowest free, from boot/heap events) <= max_kb on every node
    that reports heap figures; nodes without them (CPython) are not judged."""
    out = []
    for node in record.node_ids():
        stats = record.heap_peak(node)
        if stats is None:
            continue
        if stats.peak_used is None:
            out.append(Finding("heap", True, node, None, "<= %g KB used" % max_kb, None,
                               "heap total unknown; lowest free heap %.1f KB"
                               % (stats.min_free / 1024.0)))
            continue
        used_kb = stats.peak_used / 1024.0
        out.append(Finding("heap", used_kb <= max_kb, node, None, "<= %g KB used" % max_kb,
                           "%.1f KB" % used_kb, "lowest free %.1f KB of %.1f KB"
                           % (stats.min_free / 1024.0, stats.total / 1024.0)))
    return out or [Finding("heap", True, message="no node reported heap figures")]


def _not_dropout(kind):
    if kind == "dropout":
        fail('a dropout shows up as fault events of kind "crash" (and "rejoin"); use those')
    return kind


FaultKindList = Annotated[list[Annotated[OneOf(FAULT_KINDS + ("dropout",)), AfterValidator(_not_dropout),
                                         Expect("a fault kind: " + ", ".join(FAULT_KINDS))]],
                          Unique(), Expect("a list of fault kinds")]


@expectation("faults_seen", FaultKindList, "these fault kinds were injected at least once")
def check_faults_seen(record, value=None, kinds=None):
    """Each fault kind was injected at least once (fault timeline)."""
    kinds = kinds if kinds is not None else value
    seen = record.fault_kinds()
    return [Finding("faults_seen", k in seen, None, None, k, sorted(seen),
                    "" if k in seen else "fault kind %r never injected" % k) for k in kinds]


def drop_total(record, name):
    """Sum over nodes of a receiver counter: the `counts` field `name` where nodes report it,
    else the number of drop events with why == name."""
    counted = [record.counts(n) for n in record.node_ids()]
    if any(name in c for c in counted):
        return sum(c.get(name, 0) or 0 for c in counted)
    return sum(1 for e in record.drops() if e.get("why") == name)


class _DropsBase(ConfigModel):
    def check(self, at, ctx):
        for c in DROP_COUNTERS:
            low, high = getattr(self, c + "_min"), getattr(self, c + "_max")
            if low is not None and high is not None and low > high:
                (at / (c + "_min")).fail(f"expected {c}_min <= {c}_max ({high}), got {low}")


Drops = create_model("Drops", __base__=_DropsBase, **{
    f"{c}_{side}": (Int(0) | None, Field(None, description=f"{'fewest' if side == 'min' else 'most'} {c}"))
    for c in DROP_COUNTERS for side in ("min", "max")})


@expectation("drops", Drops, "receiver-side counters within bounds: <counter>_min / <counter>_max")
def check_drops(record, **limits):
    """Receiver-side counters within bounds: keys `<counter>_min` / `<counter>_max`, e.g.
    duplicate_min=1, bad_tag_max=0 (counters of `counts` events or `drop` reasons)."""
    out = []
    for key, bound in sorted(limits.items()):
        name, _, side = key.rpartition("_")
        if side not in ("min", "max") or not name:
            out.append(Finding("drops", False, message="bad drops key %r (want <counter>_min "
                               "or <counter>_max)" % key))
            continue
        total = drop_total(record, name)
        ok = total >= bound if side == "min" else total <= bound
        out.append(Finding("drops", ok, None, None, "%s %s %s" % (name, ">=" if side == "min"
                                                                  else "<=", bound), total))
    return out


@expectation("no_errors", bool, "no node that the fault plan did not crash ended in error (always on)",
             default=True, always=True)
def check_no_errors(record):
    """A node in error (it raised, its board failed, it could not start) fails the run with that
    node's error, whatever the other expectations say."""
    out = []
    killed = record.planned_permanent_crashes()
    for node in record.node_ids():
        if record.status(node) == "error" and node not in killed:
            out.append(Finding("no_errors", False, node, None, "no error", "error",
                               record.error(node) or "status error"))
    return out or [Finding("no_errors", True, message="%d nodes, none in error" % record.n_nodes)]


@expectation("protocol", bool, "upstream's proved invariants hold (on by default, off for strict runs)",
             default=True)
def check_protocol(record):
    """Upstream's proved invariants, judged from telemetry: per centralized round at most one
    message per client at the server (and one from the server at a client); per decentralized
    iteration at most one phase-2 reply per distinct neighbour; per TDM slot at most one message
    per listed peer and none from unlisted ones; no iteration ends twice; every node returns."""
    algo, n, server = record.algorithm, record.n_nodes, record.server
    out = []
    rejoined = {f.get("n") for f in record.faults() if f.get("kind") == "rejoin"}
    for node in record.node_ids():
        if algo in CENTRALIZED_ALGORITHMS:
            limit = n - 1 if node == server else 1
        else:
            limit = n - 1
        seen_i = set()
        for e in record.rounds(node):
            i, got = e.get("i"), e.get("got")
            if i in seen_i and node not in rejoined:
                out.append(Finding("protocol", False, node, i, "one round_end per iteration",
                                   "a second one"))
            seen_i.add(i)
            if isinstance(got, (list, tuple)):
                if len(set(got)) != len(got):
                    out.append(Finding("protocol", False, node, i, "distinct senders", list(got)))
                got = len(got)
            if _number(got) and got > limit:
                out.append(Finding("protocol", False, node, i, "<= %d messages" % limit, got,
                                   "more messages than distinct peers (duplicates counted?)"))
        peers_of = {}  # the peers of each slot as its slot_start listed them, in event order (an
        # app that builds several nodes in one run, as upstream's getMeas example does, counts slots anew)
        for e in record.events(node):
            if e.get("ev") == "slot_start":
                peers_of[e.get("i")] = e.get("peers")
                continue
            if e.get("ev") != "slot_end":
                continue
            i, got, miss = e.get("i"), e.get("got") or [], e.get("miss") or []
            if len(set(got)) != len(got):
                out.append(Finding("protocol", False, node, i, "one message per peer", list(got)))
            listed = peers_of.get(i)
            if isinstance(listed, (list, tuple)):
                extra = sorted(set(got) - set(listed), key=str)
                if extra:
                    out.append(Finding("protocol", False, node, i, "peers %s" % list(listed),
                                       list(got), "heard unlisted peers %s" % extra))
            both = sorted(set(got) & set(miss), key=str)
            if both:
                out.append(Finding("protocol", False, node, i, "got and miss disjoint", both))
    for f in check_all_return(record):
        if not f.ok:
            out.append(Finding("protocol", False, f.node, f.round, f.expected, f.got,
                               "node did not return: " + f.message))
    return out or [Finding("protocol", True, message="%d nodes, algorithm %s" % (n, algo))]


