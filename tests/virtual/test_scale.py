"""1,000 nodes in one process, in virtual time, with exact oracle values."""
from flhil.apps.getmeas import neighbours
from flhil.harness.run.virtual import run_virtual

N = 1000


def test_tdm_getmeas_ring_with_1000_nodes():
    slots = 3
    r = run_virtual({"app": "getmeas", "nodes": N, "args": {"slots": slots, "topology": "ring"}, "seed": 1})
    assert r["virtual"]["stopped"] == "done"
    assert set(r.statuses().values()) == {"ok"}
    res = r.results()
    for i in range(N):
        peers = neighbours("ring", N, i)
        assert res[i] == {"peers": peers, "slots": [[1.0 + p for p in peers]] * slots}, i
    # slot 0 starts start_delay_ms after the coordinator's go; three 100 ms slots
    assert 0.3 < r["virtual"]["t_end_s"] < 0.5


def test_centralized_averaging_with_1000_clients():
    r = run_virtual({"app": "central_avg", "nodes": N, "args": {"iterations": 1}, "seed": 1})
    assert r["virtual"]["stopped"] == "done"
    assert set(r.statuses().values()) == {"ok"}
    x = [float(i + 1) for i in range(N)]
    res = r.results()
    assert res[0] == (x[0] + sum(x[1:]) / (N - 1)) / 2
    assert all(res[i] == (x[i] + x[0]) / 2 for i in range(1, N))
    server_round = [e for e in r["nodes"]["0"]["events"] if e["ev"] == "round_end"]
    assert server_round[0]["got"] == N - 1 and not server_round[0]["skipped"]


def test_tdm_odts_with_1000_nodes():
    from flhil.harness.results.oracles import odts_final
    slots = 4
    r = run_virtual({"app": "odts", "nodes": N, "args": {"blocks": 1, "slots": slots}, "seed": 1})
    assert r["virtual"]["stopped"] == "done"
    assert set(r.statuses().values()) == {"ok"}
    res = r.results()
    assert [res[i] for i in range(N)] == odts_final(N, 1, slots)
