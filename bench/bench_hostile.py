"""A node under attack: rejects per second within 2x the clean round latency, connections held at 192 KB, HMAC cost.

1. HMAC cost per frame with per-link keys (bench/_auth_kernel.py under CPython and MicroPython):
   the per-link tag + verify (cached link, and a cache miss) against the one-key scheme before.
2. Inputs rejected per second: centralized averaging with 3 node processes; the server's median
   round latency (round_start -> round_end) clean, then with an insider flooding the server with
   correctly tagged frames of bad JSON (the costliest reject: tag, then the JSON check) at rising
   rates. The figure is the highest rate at which the median stays within 2x of clean (the mean of
   two clean runs) and the server counted at least 95% of what was sent. The attacker shares the
   host's cores with the three nodes, so on a 2-core host the figure is the host's as much as the
   node's.
3. Connections held at the 192 KB heap: a MicroPython server with its pending limit lifted
   (conn_pending 100000, auth_ms 10 min) takes idle connections until it reports `low_heap`; and
   with the default limits, 300 idle connections during a run (the issue's reproduction).

    python bench/bench_hostile.py [--quick]
"""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time

from _common import (REPO, median, parse_args, run_main, sigterm_as_interrupt, table, write_json)

from flhil.harness import attack, micropython_path

HEAP_KB = 192
RATES = (250, 500, 1000, 2000, 4000, 8000, 16000)


def auth_cost(quick):
    kernel = os.path.join(REPO, "bench", "_auth_kernel.py")
    runs = {"cpython": [sys.executable, kernel, "2000" if quick else "20000"]}
    if shutil.which("micropython"):
        runs["micropython"] = ["micropython", "-X", "heapsize=%dk" % HEAP_KB, kernel, "500" if quick else "5000"]
    env = dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen")
    out = {}
    for impl, argv in runs.items():
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
        out[impl] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def _base(k):
    return "127.%d.%d." % (200 + k % 50, 10 + (os.getpid() + k) % 200)


async def _run(interp, iterations, k, rate=None, timing=None):
    """One run; flood the server at `rate` frames/s while it lasts. Returns figures."""
    cfgs = attack.run_configs(3, "central_avg", {"iterations": iterations}, _base(k), timing or {})
    procs = attack.NodeProcs(cfgs, interp, HEAP_KB)
    sent = 0
    try:
        await procs.start()
        await procs.wait_event(0, "ready", 30)
        if rate:
            c2 = attack.insider_codec(cfgs, 2)
            head, data = c2.frame(0, b'{"r" "%s", "s": 2}' % cfgs[0]["run"].encode())  # no colon
            frame = head + data
            t0 = time.monotonic()
            while procs.first(0, "result") is None and time.monotonic() - t0 < 60:
                sent += await attack.flood(cfgs[0]["listen"], frame, rate, 0.2, per_connection=max(5, rate // 40))
        ok = await procs.wait(120)
    finally:
        await procs.kill()
    c = procs.first(0, "counts") or {}
    lat = procs.round_ms(0)
    return {"ok": ok and procs.first(0, "done") is not None, "median_ms": median(lat), "rounds": len(lat),
            "sent": sent, "rejected": c.get("bad_json", 0), "refused": c.get("refused", 0),
            "errors": [e.get("msg") for e in procs.ev(0, "error")]}


async def flood_figures(interp, quick):
    iterations = 150 if quick else 400
    # the clean latency: the mean of two runs' medians (the host's load moves it run to run)
    cleans = [(await _run(interp, iterations, k))["median_ms"] for k in (0, 20)]
    clean = sum(cleans) / 2
    out = {"clean_median_ms": clean, "clean_runs_ms": cleans, "steps": []}
    best = None
    for n, rate in enumerate(RATES[:4] if quick else RATES):
        r = await _run(interp, iterations, n + 1, rate)
        r["rate"] = rate
        r["within_2x"] = r["median_ms"] is not None and r["median_ms"] <= 2 * clean
        r["counted"] = r["sent"] > 0 and r["rejected"] >= 0.95 * r["sent"]
        out["steps"].append(r)
        if r["within_2x"] and r["counted"] and r["ok"]:
            best = rate
    out["best_rate_per_s"] = best  # the highest rate that met both (a noisy host may fail one below)
    return out


async def held_connections(quick):
    """Idle connections a MicroPython server holds before `low_heap`, limits lifted."""
    timing = {"conn_pending": 100000, "auth_ms": 600000, "round_ms": 1000}
    cfgs = attack.run_configs(3, "central_avg", {"iterations": 400},  _base(40),
                              timing, {"links": [{"src": "*", "delay_ms": 20}]})
    procs = attack.NodeProcs(cfgs, "micropython", HEAP_KB)
    writers = []
    try:
        await procs.start()
        await procs.wait_event(0, "ready", 30)
        free0 = procs.first(0, "boot")["heap"]
        while procs.first(0, "low_heap") is None and len(writers) < 2000:
            ws, failed = await attack.idle_connections(cfgs[0]["listen"], 10)
            writers += ws
            if failed:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        low = procs.first(0, "low_heap")
        for w in writers:
            attack.close(w)
        await procs.wait(60)
    finally:
        await procs.kill()
    return {"opened": len(writers), "low_heap_event": low, "boot_free": free0,
            "bytes_per_connection": (free0 - low["free"]) / low["conns"] if low else None,
            "node0_done": procs.first(0, "done") is not None,
            "node0_result_ok": procs.first(0, "result") is not None}


async def idle_during_run(interp, n_idle=300):
    cfgs = attack.run_configs(3, "central_avg", {"iterations": 200}, _base(60 + len(interp)),
                              {"round_ms": 1000}, {"links": [{"src": "*", "delay_ms": 20}]})
    procs = attack.NodeProcs(cfgs, interp, HEAP_KB)
    try:
        await procs.start()
        await procs.wait_event(0, "ready", 30)
        writers, failed = await attack.idle_connections(cfgs[0]["listen"], n_idle)
        await asyncio.sleep(3.5)
        for w in writers:
            attack.close(w)
        ok = await procs.wait(60)
    finally:
        await procs.kill()
    c = procs.first(0, "counts") or {}
    results = [(procs.first(k, "result") or {}).get("value") for k in range(3)]
    return {"idle": n_idle, "connect_failed": failed, "finished": ok, "results": results,
            "refused": c.get("refused"), "conn_limit": c.get("conn_limit"), "idle_closed": c.get("idle"),
            "slow": c.get("slow"), "errors": [e.get("msg") for k in range(3) for e in procs.ev(k, "error")]}


def main():
    args = parse_args(__doc__.splitlines()[0])
    sigterm_as_interrupt()
    interps = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
    out = {"auth": auth_cost(args.quick), "flood": {}, "idle_during_run": {}}
    print("HMAC-SHA256 per frame (tag + verify), microseconds")
    rows = []
    for impl, res in out["auth"].items():
        for name, m in sorted(res["messages"].items()):
            rows.append([impl, name, m["frame_bytes"], m["tag_shared_key_us"], m["tag_us"], m["tag_miss_us"],
                         m["check_us"], m["plain_us"], m["hmac_us"]])
    table(["interpreter", "message", "bytes", "one run key", "per-link", "per-link miss", "strict JSON check",
           "plain JSON", "whole codec"], rows)
    for interp in interps:
        out["flood"][interp] = asyncio.run(flood_figures(interp, args.quick))
        out["idle_during_run"][interp] = asyncio.run(idle_during_run(interp))
    print("\nrejects per second while the server's round latency stays within 2x of clean")
    rows = []
    for interp, f in out["flood"].items():
        for s in f["steps"]:
            rows.append([interp, s["rate"], f["clean_median_ms"], s["median_ms"], s["sent"], s["rejected"],
                         s["within_2x"], s["counted"]])
    table(["interpreter", "rate/s", "clean ms", "median ms", "sent", "rejected", "within 2x", "counted"], rows)
    for interp, f in out["flood"].items():
        print("%s: %s rejects/s within 2x" % (interp, f["best_rate_per_s"]))
    print("\n300 idle connections during a run (default limits)")
    for interp, r in out["idle_during_run"].items():
        print(interp, json.dumps(r))
    if "micropython" in interps:
        out["held"] = asyncio.run(held_connections(args.quick))
        print("\nMicroPython 192 KB, limits lifted: connections held at low_heap:", json.dumps(out["held"]))
    write_json("bench_hostile", out, args.out)


if __name__ == "__main__":
    run_main(main)
