"""Per-round latency and start-up time of centralized averaging on loopback PC nodes, peak node
heap under a 192 KB MicroPython heap, and the cost of frame authentication.

    python bench/bench_rounds.py [--quick]

Per-round latency: the FL server's `round_start` -> `round_end` in its own clock (central_avg, no
faults) with 8, 18 and 32 nodes, all CPython PC nodes and all MicroPython (unix port,
-X heapsize=192k) PC nodes. Start-up: from the first node spawned to the last node `ready`, as the
host sees it (`phases.ready` of the run record), plus the server's own boot -> ready. Both are
compared with the upstream MPT-FLA anchors measured on a 2-core machine (docs: mpt-fla.md,
"Timing anchors"): ratio = upstream / fl-hil, so > 1 means fl-hil is faster.

Peak heap: used = heap_total - lowest free reported (boot, round_end.heap, heap.min_free), per node
of the 18-node MicroPython run; the free figures are taken after gc.collect() at round ends, so
they are the live data at round boundaries, not the transient peak inside a round.

Authentication: encode+decode of typical frames with firmware.wire.Codec (HMAC-SHA256) against
the same JSON with no tag (bench/_auth_kernel.py), under CPython and MicroPython.
Figures go to reports/bench/bench_rounds.json. Nothing here asserts a time limit."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, median, parse_args, percentile, ratio, sigterm_as_interrupt, table, write_json  # noqa: E402
from _common import run_main  # noqa: E402

from flhil.harness.run import pipeline  # noqa: E402
from flhil.harness.run.realtime import LabBackend  # noqa: E402
from flhil.harness.run.spec import RunSpec  # noqa: E402
from flhil.harness.lab.boards.pc import PcNode  # noqa: E402

UPSTREAM_ROUND_MS = {8: 11.0, 18: 28.0, 32: 62.0}  # MPT-FLA, 2-core machine, CPython, localhost
UPSTREAM_STARTUP_S = 11.0  # at least: fixed sleeps
TARGET_ROUND_MS_18_CPYTHON = 3.0
TARGET_READY_S = 1.0
HEAP_KB = 192
SUBNET = {"cpython": "127.0.201.", "micropython": "127.0.202."}


def run_config(interp, n, iterations, workdir, quick):
    """One central_avg run on n PC nodes; returns the run record (nodes always closed)."""
    nodes = [
        PcNode(
            "pc%d" % k,
            SUBNET[interp] + str(k + 1),
            interp,
            workdir=os.path.join(workdir, "pc%d" % k),
            heap_kb=HEAP_KB if interp == "micropython" else None,
        )
        for k in range(n)
    ]
    # no faults: rounds end when every client answered; the deadlines only bound a broken run
    timing = {"round_ms": 2000, "recv_ms": 2000, "startup_ms": 5000 if quick else 10000}
    spec = RunSpec(
        app="central_avg",
        nodes=n,
        algorithm="centralized",
        args={"iterations": iterations},
        timing=timing,
        seed=1,
        deadline_s=15 if quick else 30,
    )
    try:
        for node in nodes:
            node.prepare()
        return pipeline.execute(spec, LabBackend(nodes=nodes), run_dir=os.path.join(workdir, "log"))
    finally:
        for node in nodes:
            node.close()


def events(record, node, kind):
    return [e for e in record["nodes"][str(node)]["events"] if e.get("ev") == kind]


def round_latencies_ms(record, server=0):
    start = {e["i"]: e["t"] for e in events(record, server, "round_start")}
    return [
        (e["t"] - start[e["i"]]) / 1000.0
        for e in events(record, server, "round_end")
        if e["i"] in start and not e.get("skipped")
    ]


def boot_to_ready_ms(record, node):
    b, r = events(record, node, "boot"), events(record, node, "ready")
    return (r[0]["t"] - b[0]["t"]) / 1000.0 if b and r else None


def heap_peak(record, node):
    """(peak used bytes, total bytes) of a MicroPython node, or (None, None)."""
    total, low = None, None
    for e in record["nodes"][str(node)]["events"]:
        ev = e.get("ev")
        frees = []
        if ev == "boot":
            total = e.get("heap_total") or total
            frees.append(e.get("heap"))
        elif ev == "round_end":
            frees.append(e.get("heap"))
        elif ev == "heap":
            total = e.get("total") or total
            frees += [e.get("free"), e.get("min_free")]
        for f in frees:
            if isinstance(f, int):
                low = f if low is None else min(low, f)
    if total is None or low is None:
        return None, None
    return total - low, total


def summarize(interp, n, iterations, record, wall_s):
    statuses = [v["status"] for v in record["nodes"].values()]
    lat = round_latencies_ms(record)
    errors = sorted(set(v["error"] for v in record["nodes"].values() if v.get("error")))
    # CPython nodes share CLOCK_MONOTONIC (asyncio's loop.time), so first boot -> last ready is
    # meaningful across nodes; MicroPython nodes each start their clock at 0
    span = None
    if interp == "cpython":
        boots = [e["t"] for k in record["nodes"] for e in events(record, k, "boot")]
        readies = [e["t"] for k in record["nodes"] for e in events(record, k, "ready")]
        if boots and len(readies) == n:
            span = (max(readies) - min(boots)) / 1e6
    out = {
        "interpreter": interp,
        "nodes": n,
        "iterations": iterations,
        "ok": statuses.count("ok") == n and len(lat) == iterations,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "rounds_measured": len(lat),
        "round_ms_median": median(lat),
        "round_ms_p95": percentile(lat, 95),
        "round_ms_min": min(lat) if lat else None,
        "round_ms_max": max(lat) if lat else None,
        "ready_s_host": record["phases"].get("ready"),
        "first_boot_to_last_ready_s": span,
        "server_boot_to_ready_ms": boot_to_ready_ms(record, 0),
        "run_s_host": record["phases"].get("run"),
        "wall_s": wall_s,
        "upstream_round_ms": UPSTREAM_ROUND_MS.get(n),
        "errors": errors[:3],
        "hang": record.get("hang"),
    }
    out["ratio_upstream_over_flhil"] = ratio(UPSTREAM_ROUND_MS.get(n), out["round_ms_median"])
    # a failed run's "ready" is only its start-up deadline: no ratio for it
    out["startup_ratio_upstream_over_flhil"] = ratio(UPSTREAM_STARTUP_S, out["ready_s_host"]) if out["ok"] else None
    if interp == "micropython":
        peaks = {}
        for k in record["nodes"]:
            used, total = heap_peak(record, k)
            if used is not None:
                peaks[int(k)] = (used, total)
        if peaks:
            srv = peaks.get(0)
            worst = max((k for k in peaks if k != 0), key=lambda k: peaks[k][0], default=None)
            out["heap"] = {
                "total": srv[1] if srv else None,
                "server_peak_used": srv[0] if srv else None,
                "worst_client": worst,
                "worst_client_peak_used": peaks[worst][0] if worst is not None else None,
            }
    return out


def auth_cost(quick):
    """Run bench/_auth_kernel.py under CPython and MicroPython; returns {impl: result}."""
    kernel = os.path.join(REPO, "bench", "_auth_kernel.py")
    runs = {"cpython": [sys.executable, kernel, "2000" if quick else "20000"]}
    mp = shutil.which("micropython")
    if mp:
        runs["micropython"] = [mp, "-X", "heapsize=%dk" % HEAP_KB, kernel, "500" if quick else "5000"]
    env = dict(os.environ, PYTHONPATH=REPO, MICROPYPATH=REPO + ":.frozen")
    out = {}
    for impl, argv in runs.items():
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
            res = json.loads(p.stdout.strip().splitlines()[-1])
        except (subprocess.SubprocessError, ValueError, IndexError) as e:
            out[impl] = {"error": "%s: %s" % (type(e).__name__, e)}
            continue
        for m in res["messages"].values():
            m["ratio_hmac_over_plain"] = ratio(m["hmac_us"], m["plain_us"])
            m["tag_cost_us"] = m["hmac_us"] - m["plain_us"]
        out[impl] = res
    return out


def main():
    args = parse_args(__doc__.splitlines()[0])
    sigterm_as_interrupt()
    iterations = 20 if args.quick else 40
    sizes = (8, 18, 32)
    interps = ["cpython"] + (["micropython"] if shutil.which("micropython") else [])
    load_at_start = list(os.getloadavg())  # other processes on the 2 cores skew every figure
    workdir = tempfile.mkdtemp(prefix="flhil-bench-rounds-")
    results = []
    try:
        for interp in interps:
            for n in sizes:
                t = time.monotonic()
                rec = run_config(interp, n, iterations, os.path.join(workdir, "%s-%d" % (interp, n)), args.quick)
                res = summarize(interp, n, iterations, rec, time.monotonic() - t)
                results.append(res)
                print(
                    "  %-11s %2d nodes: median %s ms, ready %.2f s, %s"
                    % (
                        interp,
                        n,
                        "%.2f" % res["round_ms_median"] if res["round_ms_median"] is not None else "-",
                        res["ready_s_host"] or 0,
                        "ok" if res["ok"] else "FAILED %s %s" % (res["statuses"], res["errors"]),
                    ),
                    flush=True,
                )
        auth = auth_cost(args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print("\nPer-round latency of central_avg (server round_start -> round_end, own clock), %d iterations" % iterations)
    table(
        [
            "interpreter",
            "nodes",
            "ok",
            "median ms",
            "p95 ms",
            "upstream ms",
            "upstream/fl-hil",
            "ready s (host)",
            "server boot->ready ms",
            "11 s/ready",
        ],
        [
            [
                r["interpreter"],
                r["nodes"],
                r["ok"],
                r["round_ms_median"],
                r["round_ms_p95"],
                r["upstream_round_ms"],
                r["ratio_upstream_over_flhil"],
                r["ready_s_host"],
                r["server_boot_to_ready_ms"],
                r["startup_ratio_upstream_over_flhil"],
            ]
            for r in results
        ],
    )
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        print("  FAILED: %s %d nodes: %s; errors: %s" % (r["interpreter"], r["nodes"], r["statuses"], r["errors"]))

    c18 = next((r for r in results if r["interpreter"] == "cpython" and r["nodes"] == 18), None)
    targets = {}
    if c18:
        targets = {
            "round_ms_18_cpython": {"target": TARGET_ROUND_MS_18_CPYTHON, "measured": c18["round_ms_median"]},
            "ready_s_18_cpython": {"target": TARGET_READY_S, "measured": c18["ready_s_host"]},
        }
        print(
            "\nTargets (18 CPython nodes): round <= %.0f ms: measured median %.2f ms (p95 %.2f); "
            "all ready <= %.0f s: measured %.2f s"
            % (
                TARGET_ROUND_MS_18_CPYTHON,
                c18["round_ms_median"] or -1,
                c18["round_ms_p95"] or -1,
                TARGET_READY_S,
                c18["ready_s_host"] or -1,
            )
        )

    m18 = next((r for r in results if r["interpreter"] == "micropython" and r["nodes"] == 18), None)
    if m18 and m18.get("heap"):
        h = m18["heap"]
        print(
            "\nPeak heap, 18-node MicroPython run (-X heapsize=%dk, total %s B, after gc at round ends)"
            % (HEAP_KB, h["total"])
        )
        table(
            ["node", "peak used KB", "of total KB"],
            [
                [
                    "server (0)",
                    h["server_peak_used"] / 1024 if h["server_peak_used"] is not None else None,
                    h["total"] / 1024,
                ],
                [
                    "worst client (%s)" % h["worst_client"],
                    h["worst_client_peak_used"] / 1024 if h["worst_client_peak_used"] is not None else None,
                    h["total"] / 1024,
                ],
            ],
        )
    heap_rows = [
        [r["nodes"], r["heap"]["server_peak_used"] / 1024, r["heap"]["worst_client_peak_used"] / 1024]
        for r in results
        if r["interpreter"] == "micropython"
        and r.get("heap")
        and r["heap"]["server_peak_used"] is not None
        and r["heap"]["worst_client_peak_used"] is not None
    ]
    if heap_rows:
        print("  all MicroPython runs:")
        table(["nodes", "server KB", "worst client KB"], heap_rows)

    print("\nFrame authentication: encode+decode per frame, Codec (HMAC-SHA256) vs plain JSON")
    rows = []
    for impl, res in auth.items():
        if "error" in res:
            rows.append([impl, "-", "-", "-", "-", res["error"]])
            continue
        for name, m in sorted(res["messages"].items()):
            rows.append([impl, name, m["frame_bytes"], m["hmac_us"], m["plain_us"], m["ratio_hmac_over_plain"]])
    table(["interpreter", "message", "frame B", "with tag us", "plain us", "ratio"], rows)

    write_json(
        "bench_rounds",
        {
            "quick": args.quick,
            "loadavg_at_start": load_at_start,
            "iterations": iterations,
            "heap_kb": HEAP_KB,
            "upstream_round_ms": UPSTREAM_ROUND_MS,
            "upstream_startup_s": UPSTREAM_STARTUP_S,
            "runs": results,
            "targets": targets,
            "auth": auth,
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
