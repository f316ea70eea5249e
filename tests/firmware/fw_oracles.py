"""Fault-free runs against the upstream examples' oracle values (mpt-fla.md), all nodes of a run on
one event loop over TCP on loopback. Runs under CPython and MicroPython (tests/firmware/mprun.py)."""
import fwkit
from flhil.apps import common, fedmean


# ---------------------------------------------------------------- ex2: centralized averaging

async def test_ex2_n3_one_iteration():
    r = await fwkit.run(fwkit.configs("ex2_n3_1", 3, "central_avg", {"iterations": 1}))
    assert r.results() == [1.75, 1.5, 2.0], r.results()
    assert [r.status(i) for i in range(3)] == ["ok"] * 3


async def test_ex2_n3_ten_iterations():
    r = await fwkit.run(fwkit.configs("ex2_n3_10", 3, "central_avg", {"iterations": 10}))
    assert r.results() == [1.75, 1.74951171875, 1.75048828125], r.results()
    ends = r.ev(0, "round_end")
    assert [e["i"] for e in ends] == list(range(10))
    assert all(e["got"] == 2 and not e["skipped"] for e in ends)


async def test_ex2_n6_matches_formula():
    r = await fwkit.run(fwkit.configs("ex2_n6", 6, "central_avg", {"iterations": 4}))
    assert r.results() == fwkit.central_avg(6, 4), r.results()


async def test_ex2_n18_server():
    r = await fwkit.run(fwkit.configs("ex2_n18", 18, "central_avg", {"iterations": 2},
                                      timing={"quorum": 1.0}), timeout_s=15)
    assert r.result(0) == 5.5, r.result(0)
    assert r.results() == fwkit.central_avg(18, 2)


async def test_ex2_other_server():
    r = await fwkit.run(fwkit.configs("ex2_srv2", 4, "central_avg", {"iterations": 3}, server=2))
    assert r.results() == fwkit.central_avg(4, 3, server=2), r.results()


# ---------------------------------------------------------------- ex3: decentralized averaging

async def test_ex3_n3_one_iteration():
    r = await fwkit.run(fwkit.configs("ex3_n3_1", 3, "decentral_avg", {"iterations": 1}))
    assert r.results() == [1.75, 2.0, 2.25], r.results()


async def test_ex3_n3_three_iterations():
    r = await fwkit.run(fwkit.configs("ex3_n3_3", 3, "decentral_avg", {"iterations": 3}))
    assert r.results() == [1.984375, 2.0, 2.015625], r.results()


async def test_ex3_n5_mean_preserved():
    r = await fwkit.run(fwkit.configs("ex3_n5", 5, "decentral_avg", {"iterations": 3}))
    vals = r.results()
    assert fwkit.all_close(vals, fwkit.decentral_avg(5, 3)), vals
    assert fwkit.close(sum(vals) / 5, 3.0)
    # every node heard all n-1 peers in every iteration
    for i in range(5):
        assert [e["got"] for e in r.ev(i, "round_end")] == [4, 4, 4]


# ---------------------------------------------------------------- ex6: ODTS on get1Meas

async def _odts(name, n, blocks, slots, timing=None):
    r = await fwkit.run(fwkit.configs(name, n, "odts", {"blocks": blocks, "slots": slots}, timing=timing))
    for i in range(n):
        assert not any(e["miss"] for e in r.ev(i, "slot_end")), r.ev(i, "slot_end")
        assert len(r.ev(i, "slot_value")) == blocks * slots
    return r


async def test_ex6_n2_one_slot():
    r = await _odts("ex6_2_1_1", 2, 1, 1)
    assert r.results() == [1.5, 1.5], r.results()


async def test_ex6_n4_three_slots():
    r = await _odts("ex6_4_1_3", 4, 1, 3)
    assert r.results() == [3.125, 2.375, 2.625, 1.875], r.results()
    # per-slot values in telemetry: node 0 is paired with 3, 1, then 3 again (ids rotated by one
    # per slot, neighbours paired)
    assert [e["v"] for e in r.ev(0, "slot_value")] == [2.5, 2.25, 3.125]


async def test_ex6_n10_three_slots():
    # ten nodes in one interpreter: a slot long enough for all of them on a loaded host
    r = await _odts("ex6_10_1_3", 10, 1, 3, timing={"slot_ms": 400, "guard_ms": 20})
    assert r.results() == [6.875, 2.375, 2.625, 4.375, 4.625, 6.375, 6.625, 8.375, 8.625, 4.125], r.results()


async def test_ex6_two_blocks_odd_n():
    # odd n: one node sits each slot out and keeps its state; the schedule repeats per block
    n, blocks, slots = 5, 2, 2
    r = await _odts("ex6_5_2_2", n, blocks, slots)
    state = [1.0 + i for i in range(n)]
    for _ in range(blocks):
        for s in range(slots):
            pairs = common.odts_schedule(n, s)
            state = [state[i] if pairs.get(i) is None else (state[i] + 1.0 + pairs[i]) / 2 for i in range(n)]
    assert r.results() == state, (r.results(), state)


# ---------------------------------------------------------------- ex8: getMeas

async def _getmeas(name, n, topology, slots):
    r = await fwkit.run(fwkit.configs(name, n, "getmeas", {"topology": topology, "slots": slots}))
    for i in range(n):
        res = r.result(i)
        assert res["slots"] == [[1.0 + p for p in res["peers"]]] * slots, (i, res)
    return r


async def test_ex8_complete_n3():
    r = await _getmeas("ex8_c3", 3, "complete", 2)
    assert r.result(1)["peers"] == [0, 2]


async def test_ex8_ring_n5():
    r = await _getmeas("ex8_r5", 5, "ring", 2)
    assert r.result(0)["peers"] == [1, 4]


async def test_ex8_star_n4():
    r = await _getmeas("ex8_s4", 4, "star", 1)
    assert r.result(0)["peers"] == [1, 2, 3]


# ---------------------------------------------------------------- apps: logistic regression, federated mean

def logreg_oracle(n, seed, it, epochs, lr, samples, test_samples):
    data = {}
    for i in range(1, n):
        data[i] = common.logreg_data(i, seed, common.logreg_sample_count(i, samples))
    w = [0.0, 0.0]
    replies = {}
    for _ in range(it):
        for i in range(1, n):
            replies[i] = common.logreg_client_update(w, data[i][0], data[i][1], epochs, lr)
        w = common.fedavg([replies[i] for i in range(1, n)])
    tx, ty = common.logreg_test_data(seed, test_samples)
    return w, common.logreg_accuracy(w, tx, ty), replies


async def test_logreg_fedavg_matches_host():
    args = {"iterations": 3, "epochs": 5, "lr": 0.5, "samples": 20, "test_samples": 100}
    r = await fwkit.run(fwkit.configs("logreg3", 3, "logreg", args, seed=5))
    w, acc, replies = logreg_oracle(3, 5, 3, 5, 0.5, 20, 100)
    res = r.result(0)
    assert fwkit.all_close(res["w"], w), (res, w)
    assert fwkit.close(res["acc"], acc) and acc >= 0.9, (res, acc)
    for i in (1, 2):
        assert fwkit.all_close(r.result(i), replies[i]), (r.result(i), replies[i])
    # round telemetry: server accuracy per round, clients' training loss falling
    assert len(r.ev(0, "round_end")) == 3 and 0.0 <= r.ev(0, "round_end")[-1]["v"] <= 1.0
    losses = [e["v"] for e in r.ev(1, "round_end")]
    assert losses[-1] < losses[0], losses


async def test_fedmean_thresholds_match_host():
    args = {"iterations": 4, "threshold": 0.0, "samples": 6}
    r = await fwkit.run(fwkit.configs("fedmean4", 4, "fedmean", args, seed=3))
    want = fedmean.oracle(4, 3, 4, 0.0, 6)
    got = r.results()
    assert fwkit.close(got[0], want[0]), (got, want)
    for i in (1, 2, 3):
        assert fwkit.all_close(got[i], want[i]), (got, want)
    # the threshold climbs: each round's threshold is above the previous one
    ts = [e["v"] for e in r.ev(0, "round_end")]
    assert all(ts[k] < ts[k + 1] for k in range(len(ts) - 1)), ts
