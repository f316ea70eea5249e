"""The fault layer's effect on small runs (all nodes on one event loop, TCP on loopback), and its
determinism. Runs under CPython and MicroPython (tests/firmware/mprun.py)."""
import fwkit


def faults_of(r, kind):
    return [e for e in r.all_ev("fault") if e["kind"] == kind]


def ends(r, node, kind="round_end"):
    return r.ev(node, kind)


# ---------------------------------------------------------------- link faults

async def test_lost_reply_lowers_aggregated():
    faults = {"links": [{"src": 2, "dst": 0, "loss": 1.0, "rounds": [1, 1]}]}
    r = await fwkit.run(fwkit.configs("f_lost", 4, "central_avg", {"iterations": 3}, faults=faults))
    assert [e["got"] for e in ends(r, 0)] == [3, 2, 3], ends(r, 0)
    assert not any(e["skipped"] for e in ends(r, 0))
    lost = faults_of(r, "loss")
    assert [(e["n"], e["dst"], e["p"], e["i"]) for e in lost] == [(2, 0, "cu", 1)], lost
    assert r.counts(2)["drop_fault"] == 1 and r.counts(0)["drop_fault"] == 0
    assert r.results() == fwkit.central_avg(4, 3, lost=[(2, 1)]), r.results()


async def test_random_loss_counted_and_missed():
    # every lost TDM message is one fault event, one drop_fault at its sender and one miss at its
    # receiver in that slot, and nothing else is missed
    n, slots = 3, 6
    faults = {"links": [{"src": "*", "dst": "*", "loss": 0.3}]}
    r = await fwkit.run(fwkit.configs("f_randloss", n, "getmeas", {"slots": slots}, faults=faults, seed=4))
    lost = faults_of(r, "loss")
    assert lost, "seed 4 loses at least one message"
    for i in range(n):
        assert r.counts(i)["drop_fault"] == len([e for e in lost if e["n"] == i])
    misses = set()
    for i in range(n):
        for e in ends(r, i, "slot_end"):
            for src in e["miss"]:
                misses.add((src, i, e["i"]))
    assert misses == set((e["n"], e["dst"], e["i"]) for e in lost), (misses, lost)


async def test_duplicate_counted_and_ignored():
    # client 2's reply is late, so client 1's two copies both reach the server inside the round
    faults = {"links": [{"src": 1, "dst": 0, "dup": 1.0}, {"src": 2, "dst": 0, "delay_ms": 30}]}
    r = await fwkit.run(fwkit.configs("f_dup", 3, "central_avg", {"iterations": 3}, faults=faults,
                                      timing={"quorum": 1.0}))
    assert r.results() == fwkit.central_avg(3, 3), r.results()
    assert len(faults_of(r, "dup")) == 3 and len(faults_of(r, "delay")) == 3
    c = r.counts(0)
    assert c["duplicate"] >= 1 and c["duplicate"] + c["stale"] == 3, c
    assert [e["got"] for e in ends(r, 0)] == [2, 2, 2], ends(r, 0)


async def test_delay_beyond_guard_misses_slot():
    # 10 ms of delay fits in an 80 ms slot with a 10 ms guard; 100 ms does not
    faults = {"links": [{"src": 1, "dst": 0, "delay_ms": 10}, {"src": 0, "dst": 1, "delay_ms": 100}]}
    r = await fwkit.run(fwkit.configs("f_delay", 2, "getmeas", {"slots": 3}, faults=faults))
    assert [e["miss"] for e in ends(r, 0, "slot_end")] == [[], [], []]
    assert [e["miss"] for e in ends(r, 1, "slot_end")] == [[0], [0], [0]]
    assert r.result(0)["slots"] == [[2.0]] * 3 and r.result(1)["slots"] == [[None]] * 3
    assert r.counts(1)["stale"] >= 1


async def test_reorder_keeps_result():
    faults = {"links": [{"src": "*", "dst": "*", "reorder": 0.5}]}
    r = await fwkit.run(fwkit.configs("f_reorder", 3, "decentral_avg", {"iterations": 3}, faults=faults,
                                      seed=2, timing={"quorum": 1.0}))
    assert faults_of(r, "reorder")
    assert r.results() == [1.984375, 2.0, 2.015625], r.results()


async def test_partition_window_heals():
    faults = {"partitions": [{"groups": [[0, 1], [2]], "rounds": [1, 2]}]}
    r = await fwkit.run(fwkit.configs("f_part", 3, "central_avg", {"iterations": 5}, faults=faults,
                                      timing={"recv_ms": 300}))
    assert [e["got"] for e in ends(r, 0)] == [2, 1, 1, 2, 2], ends(r, 0)
    cut = faults_of(r, "partition")
    assert sorted((e["n"], e["dst"], e["i"]) for e in cut) == [(0, 2, 1), (0, 2, 2)], cut
    assert [r.status(i) for i in range(3)] == ["ok"] * 3
    # node 2 took part again after the heal: its last rounds were not skipped
    assert [e["skipped"] for e in ends(r, 2)][-2:] == [False, False], ends(r, 2)


async def test_partition_by_time_heals():
    faults = {"partitions": [{"groups": [[0], [1]], "start_ms": 0, "end_ms": 90}]}
    r = await fwkit.run(fwkit.configs("f_part_t", 2, "getmeas", {"slots": 5}, faults=faults))
    got = [e["got"] for e in ends(r, 0, "slot_end")]
    assert got[0] == [] and got[-1] == [1], got
    assert faults_of(r, "partition")


async def test_burst_loss():
    # Gilbert-Elliott: once bad, stays bad (r = 0) and loses everything
    faults = {"links": [{"src": 1, "dst": 0, "burst": {"p": 1.0, "r": 0.0, "loss_bad": 1.0}}]}
    r = await fwkit.run(fwkit.configs("f_burst", 2, "getmeas", {"slots": 3}, faults=faults))
    assert len(faults_of(r, "burst_loss")) == 3
    assert [e["miss"] for e in ends(r, 0, "slot_end")] == [[1], [1], [1]]


# ---------------------------------------------------------------- node faults

async def test_dropout_silent():
    faults = {"dropouts": [{"node": 3, "at": 1}]}
    r = await fwkit.run(fwkit.configs("f_dead", 4, "central_avg", {"iterations": 3}, faults=faults))
    assert r.result(3) is None and r.status(3) == "crashed"
    assert [r.status(i) for i in range(3)] == ["ok"] * 3
    assert all(type(r.result(i)) is float for i in range(3)), r.results()
    assert [e["got"] for e in ends(r, 0)] == [3, 2, 2]
    crash = faults_of(r, "crash")
    assert [(e["n"], e["i"]) for e in crash] == [(3, 1)], crash


async def test_dropout_rejoin_centralized():
    faults = {"dropouts": [{"node": 2, "at": 1, "down": 1}]}
    r = await fwkit.run(fwkit.configs("f_rejoin", 3, "central_avg", {"iterations": 4}, faults=faults))
    assert r.status(2) == "ok" and type(r.result(2)) is float, (r.status(2), r.result(2))
    assert [e["kind"] for e in r.ev(2, "fault")] == ["crash", "rejoin"]
    assert [e["got"] for e in ends(r, 0)][:2] == [2, 1]
    assert ends(r, 2)[-1]["skipped"] is False


async def test_dropout_rejoin_resets_tdm_state():
    # n=2 ODTS: slot 0 both average to 1.5; node 1 is down in slot 1; it rejoins in slot 2 from its
    # initial state 2.0: node 0 -> (1.5 + 2) / 2, node 1 -> (2 + 1) / 2
    faults = {"dropouts": [{"node": 1, "at": 1, "down": 1}]}
    r = await fwkit.run(fwkit.configs("f_rejoin_tdm", 2, "odts", {"slots": 3}, faults=faults))
    assert r.results() == [1.75, 1.5], r.results()
    assert [e["miss"] for e in ends(r, 0, "slot_end")] == [[], [1], []]


async def test_slot_jitter_beyond_guard_misses():
    # seed 18: node 1's slot starts are 0..118 ms late; beyond slot - guard = 100 ms node 0 misses
    # it (slots of 120 ms here, for margins on a loaded machine)
    faults = {"slot_jitter": [{"node": 1, "max_ms": 118}]}
    r = await fwkit.run(fwkit.configs("f_jitter", 2, "getmeas", {"slots": 8}, faults=faults, seed=18,
                                      timing={"slot_ms": 120, "guard_ms": 20}))
    jit = {}
    for e in faults_of(r, "slot_jitter"):
        assert e["n"] == 1
        jit[e["i"]] = e["ms"]
    assert sorted(jit) == list(range(8)), jit
    end0 = {}
    for e in ends(r, 0, "slot_end"):
        end0[e["i"]] = e
    # node 1's slots also start later than node 0's by the latency of the start barrier's go
    go_ms = (r.ev(1, "ready")[0]["t0"] - r.ev(0, "ready")[0]["t0"]) / 1000.0
    late = [s for s in jit if jit[s] > 106]
    early = [s for s in jit if jit[s] + go_ms < 80]
    assert late and early, jit
    for s in late:
        assert end0[s]["miss"] == [1], (s, jit[s], end0[s])
    for s in early:
        assert end0[s]["got"] == [1], (s, jit[s], end0[s])
    for e in r.ev(1, "slot_start"):
        assert e["late"] >= int(jit[e["i"]] * 1000) - 1, (e, jit[e["i"]])


async def test_clock_skew_shifts_slots():
    faults = {"clock_skew": [{"node": 1, "ppm": 1000, "offset_ms": 15}]}
    r = await fwkit.run(fwkit.configs("f_skew", 2, "getmeas", {"slots": 3}, faults=faults))
    skew = faults_of(r, "clock_skew")
    assert [(e["n"], e["ppm"], e["offset_ms"]) for e in skew] == [(1, 1000, 15)], skew
    ready = [r.ev(i, "ready")[0] for i in range(2)]
    # node 1's slot 0 starts start_delay (30 ms) + offset (15 ms) after the go reached it; node 0's
    # start_delay after it sent the go (its ready event comes a little later)
    assert 44000 <= ready[1]["t0"] - ready[1]["t"] <= 46000, ready
    assert ready[0]["t0"] - ready[0]["t"] <= 30000, ready
    shift0 = ready[1]["t0"] - ready[0]["t0"]
    assert shift0 >= 15000, ready
    for a, b in zip(r.ev(0, "slot_start"), r.ev(1, "slot_start")):
        # every scheduled start (event time minus lateness) keeps that shift
        shift = (b["t"] - b["late"]) - (a["t"] - a["late"])
        assert shift >= 14000 and abs(shift - shift0) < 2000, (a, b, shift0)
    # node 0's messages come early to node 1 and are kept; 15 ms (+ the go's latency) is inside
    # node 0's receive window (slot 80 ms - guard 10 ms)
    assert all(e["miss"] == [] for e in r.ev(1, "slot_end"))
    if shift0 < 60000:
        assert all(e["miss"] == [] for e in r.ev(0, "slot_end")), (shift0, r.ev(0, "slot_end"))


async def test_clock_skew_beyond_guard_misses():
    faults = {"clock_skew": [{"node": 1, "offset_ms": 90}]}  # node 0 stops listening at 70 ms
    r = await fwkit.run(fwkit.configs("f_skew35", 2, "getmeas", {"slots": 3}, faults=faults))
    assert [e["miss"] for e in ends(r, 0, "slot_end")] == [[1], [1], [1]]
    assert [e["miss"] for e in ends(r, 1, "slot_end")] == [[], [], []]


# ---------------------------------------------------------------- strict mode

async def test_strict_dead_client_hangs():
    faults = {"dropouts": [{"node": 2, "at": 1}]}
    cfgs = fwkit.configs("f_strict", 3, "central_avg", {"iterations": 3}, faults=faults, strict=True,
                         timing={"hang_report_ms": 300})
    r = await fwkit.run(cfgs, timeout_s=1.0, expect_timeout=True)
    assert r.timed_out
    waiting = r.ev(0, "waiting")
    assert waiting and waiting[0]["p"] == "cu" and waiting[0]["i"] == 1 and waiting[0]["on"] == [2], waiting
    assert r.result(0) is None and r.result(1) is None  # nobody finished


async def test_non_strict_dead_client_returns():
    faults = {"dropouts": [{"node": 2, "at": 1}]}
    cfgs = fwkit.configs("f_nonstrict", 3, "central_avg", {"iterations": 3}, faults=faults)
    # 3 rounds of 200 ms, and the server's exit flush may wait its 1 s for the dead client's link
    r = await fwkit.run(cfgs, timeout_s=2.5)
    assert not r.timed_out
    assert r.status(2) == "crashed" and r.result(2) is None
    assert type(r.result(0)) is float and type(r.result(1)) is float


# ---------------------------------------------------------------- determinism

def fault_trace(r):
    out = []
    for e in r.all_ev("fault"):
        out.append((e["n"], e["kind"], e.get("dst"), e.get("p"), e.get("i")))
    out.sort()
    return out


async def test_same_seed_same_faults():
    faults = {"links": [{"src": "*", "dst": 0, "loss": 0.3, "dup": 0.3}]}
    traces = []
    for attempt in range(2):
        cfgs = fwkit.configs("f_det%d" % attempt, 4, "central_avg", {"iterations": 4}, faults=faults, seed=11,
                             timing={"round_ms": 100, "quorum": 0.3})
        r = await fwkit.run(cfgs)
        traces.append(fault_trace(r))
    assert traces[0] and traces[0] == traces[1], traces
    kinds = set(t[1] for t in traces[0])
    assert "loss" in kinds and "dup" in kinds, kinds


async def test_dropout_rejoin_keeps_early_message_of_rejoin_slot():
    # node 1's slots start 5 ms after node 0's, so node 0's slot-2 message reaches node 1 before
    # node 1 wakes up from its dropout: it belongs to the slot it rejoins in and must be kept
    faults = {"dropouts": [{"node": 1, "at": 1, "down": 1}], "clock_skew": [{"node": 1, "offset_ms": 5}]}
    r = await fwkit.run(fwkit.configs("f_rejoin_early", 2, "odts", {"slots": 3}, faults=faults))
    assert r.results() == [1.75, 1.5], r.results()
    assert [e["miss"] for e in ends(r, 1, "slot_end")] == [[], [0], []], ends(r, 1, "slot_end")
    assert ends(r, 1, "slot_end")[1]["down"] is True
