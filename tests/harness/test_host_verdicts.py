"""The evidence rule of host-aware verdicts (harness/results/host.py): a timing failure that
coincides with host stalls is inconclusive, the same failure without them is a failure, and a
failure that does not depend on timing is a failure whatever the host did.

The records are virtual runs whose timing comes from replayed stalls and late arrivals (exact), with
the nodes' `lag` telemetry added as a loaded host would have produced it."""
import copy

from flhil.harness.run.pipeline import verdict_of
from flhil.harness.run.spec import RunSpec
from flhil.harness.run.virtual import run_virtual

TDM = dict(algorithm="tdm", nodes=6, args={"blocks": 2, "slots": 4},
           timing={"slot_ms": 60, "guard_ms": 20}, seed=1)
TDM_EXPECT = {"oracle": True, "slot_late_ms": {"max_ms": 20.0}}


def _run(spec, script):
    spec = dict(spec, faults={"script": script})
    return RunSpec(**spec), run_virtual(spec)


def _lag(record, node, at_us, host_ms, cpu_clock=True):
    """Add a lag window to a node's telemetry: its loop ran `host_ms` late at `at_us` (its clock),
    off the CPU (host: a loaded host) or, without a CPU clock (a board), of unknown cause."""
    record = copy.deepcopy(record)
    us = int(host_ms * 1000)
    ev = {"ev": "lag", "n": node, "t": at_us + 50000, "w": 100000, "max": us, "at": at_us, "sum": us,
          "host": us if cpu_clock else None, "host_sum": us if cpu_clock else None}
    record.data["nodes"][str(node)]["events"].append(ev)
    return record


def _slot_start(record, node, slot):
    return next(e["t"] for e in record.slot_starts(node) if e["i"] == slot)


def test_a_late_slot_at_a_host_stall_is_inconclusive_with_the_evidence():
    spec, record = _run(TDM, [{"src": 2, "i": 3, "kind": "stall", "ms": 36.0}])
    plain = verdict_of(record, TDM_EXPECT, spec)
    assert plain.outcome == "fail"  # no lag telemetry: virtual time judges as it is
    assert [(f.check, f.node, f.round) for f in plain.failures] == [("slot_late_ms", 2, 3)]
    loaded = _lag(record, 2, _slot_start(record, 2, 3), host_ms=34.0)
    verdict = verdict_of(loaded, TDM_EXPECT, spec)
    assert verdict.outcome == "inconclusive"
    assert verdict.failures  # the findings stay as they were
    assert any(e.startswith("node 2 lost 34.0 ms to the host") for e in verdict.evidence), verdict.evidence


def test_the_same_late_slot_without_a_host_stall_fails():
    spec, record = _run(TDM, [{"src": 2, "i": 3, "kind": "stall", "ms": 36.0}])
    elsewhere = _lag(record, 2, _slot_start(record, 2, 7) + 30000, host_ms=34.0)  # a stall, but later
    other_node = _lag(record, 4, _slot_start(record, 4, 3), host_ms=34.0)       # another node's stall
    board = _lag(record, 2, _slot_start(record, 2, 3), host_ms=34.0, cpu_clock=False)  # its own lag
    small = _lag(record, 2, _slot_start(record, 2, 3), host_ms=2.0)             # too small to matter
    for rec in (elsewhere, other_node, board, small):
        assert verdict_of(rec, TDM_EXPECT, spec).outcome == "fail"


def test_a_wrong_value_without_late_messages_fails_whatever_the_host_did():
    spec, record = _run(TDM, [])
    loaded = record
    for n in range(6):
        for slot in range(8):
            loaded = _lag(loaded, n, _slot_start(record, n, slot), host_ms=40.0)
    ok = verdict_of(loaded, TDM_EXPECT, spec)
    assert ok.outcome == "pass"
    # a broken algorithm: values off the reference from the first slot, every message in time
    broken = copy.deepcopy(loaded)
    for e in broken.data["nodes"]["1"]["events"]:
        if e.get("ev") == "slot_value" or (e.get("ev") == "slot_end" and "v" in e):
            e["v"] = 99.0
    broken.data["nodes"]["1"]["result"] = 99.0
    assert broken.data["fates"]["late"] == []
    verdict = verdict_of(broken, {"oracle": True}, spec)
    assert verdict.outcome == "fail" and {f.check for f in verdict.failures} == {"oracle"}


def test_a_value_failure_from_replies_that_came_late_at_a_host_stall_is_inconclusive():
    spec = dict(algorithm="decentralized", nodes=5, args={"iterations": 6}, timing={"round_ms": 300}, seed=1)
    expect = {"oracle": True, "skipped_rounds": {"max": 0}}
    # node 3's reply of round 2 to node 0 never came in time (the host stalled node 3)
    rs, record = _run(spec, [{"src": 3, "dst": 0, "p": "d2", "i": 2, "kind": "late", "ms": 5.0}])
    assert [(f["src"], f["dst"], f["p"], f["i"], f["fate"]) for f in record["fates"]["late"]] == \
        [(3, 0, "d2", 2, "stale")]
    assert verdict_of(record, expect, rs).outcome == "fail"
    start = next(e["t"] for e in record.round_starts(3) if e["i"] == 2)
    stalled = _lag(record, 3, start + 1000, host_ms=150.0)
    verdict = verdict_of(stalled, expect, rs)
    assert verdict.outcome == "inconclusive", verdict.summary()
    assert any("3 -> 0 d2 2 (stale)" in e for e in verdict.evidence)
    # the same late reply with the host stall on an uninvolved node: a failure
    assert verdict_of(_lag(record, 1, start + 1000, host_ms=150.0), expect, rs).outcome == "fail"
