"""Emulated-lab bring-up time (cold and warm deploy), the largest emulated lab that completes a
centralized run on this machine, and host memory per emulated board.

    python bench/bench_lab.py [--quick] [--sizes 16,32,64]

Bring-up of 8 emulated boards: boot (interpreters up, REPL ready), build (mpy-cross, cached by
content hash), deploy (raw-REPL copy of the files whose hash differs from the board's manifest)
and ready (the run's `phases.ready`: run config written, soft reset, every node at the start
barrier's end) of a 1-iteration central_avg run. Cold: an empty mpy cache (a private cache
directory, emptied, so other users of ~/.cache/flhil are not disturbed) and fresh flash
directories. Warm: a second lab on the same flash directories and cache, so the manifests say
every file is unchanged. Ratio = cold / warm.

Scale: central_avg, 4 iterations, round_ms 2000, startup_ms 60000, on 16, 32, 64 (then 96 if 64
passed in under 60 s) emulated boards, each a MicroPython unix-port interpreter with a 192 KB heap;
stops at the first size that fails. Once a size fails with board 0 as the FL server (a 192 KB
board itself), that size and the larger ones run with one extra CPython PC node as the server, to
measure how many emulated boards the host carries apart from the server's heap. Host memory: the sum of VmRSS
of the interpreters (sampled
during the run, peak) divided by the number of boards; also PSS (shared pages split among the
processes), the fairer figure when many interpreters share one binary. Note: when `micropython`
on PATH is the `micropython_unix` pip wrapper, each board is a CPython process hosting the unix
port as an extension module, and its RSS includes that CPython.
Twin rack (`--twins-only` runs just this part): 8 twins of `fl-hil emulate 8 --rack` used as
real boards through the rack path (`Lab.allocate(..., hil=True)`: answer, deploy, heap, Wi-Fi join
with the twins' access point). Cold: an empty mpy cache and fresh flash; warm: a second lab on the
same running rack (every manifest hit). Per board: the deploy time (build + copy, the build counted
once); then the round latency of central_avg (8 twins, the server one of them) from the server's
round_start -> round_end, and RSS per twin.
Figures go to reports/bench/bench_lab.json. Nothing here asserts a time limit."""

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, pss_kb, ratio, rss_kb, sigterm_as_interrupt, table, write_json  # noqa: E402
from _common import run_main  # noqa: E402

from flhil.harness.lab import deploy
from flhil.harness.run import pipeline  # noqa: E402
from flhil.harness.run.realtime import LabBackend  # noqa: E402
from flhil.harness.run.spec import RunSpec  # noqa: E402
from flhil.harness.lab.lab import FIRMWARE_DIR, Lab  # noqa: E402
from flhil.harness.config.lab import default_emulated_lab  # noqa: E402

# subnet offsets (x 256 addresses above 127.77.0.0): unique to this benchmark
OFFSET_BRINGUP = 210
OFFSET_SCALE = 220


class RssSampler(threading.Thread):
    """Peak of the summed VmRSS of the given pids, sampled every `period` seconds."""

    def __init__(self, pids, period=0.5):
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.period = period
        self.peak_kb = 0
        self.peak_pss_kb = 0
        self.samples = 0
        self._halt = threading.Event()

    def sample(self):
        vals = [rss_kb(p) for p in self.pids]
        total = sum(v for v in vals if v)
        self.peak_kb = max(self.peak_kb, total)
        pss = [pss_kb(p) for p in self.pids]
        self.peak_pss_kb = max(self.peak_pss_kb, sum(v for v in pss if v))
        self.samples += 1
        return total

    def run(self):
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join(2)
        self.sample()


def private_cache(root):
    """Point harness.deploy at a cache directory of our own (the default lives in ~/.cache)."""
    cache = Path(root) / "mpy-cache"
    deploy.default_cache_dir = lambda: cache
    return cache


def central_spec(n, iterations):
    return RunSpec(
        app="central_avg",
        nodes=n,
        algorithm="centralized",
        args={"iterations": iterations},
        timing={"round_ms": 2000, "recv_ms": 4000, "startup_ms": 60000},
        seed=1,
    )


def bring_up(lab, n, label):
    """Boot, build, deploy and run a 1-iteration round on n emulated boards of `lab`."""
    t = time.monotonic()
    boards = lab.emulated_boards(n)
    boot_s = time.monotonic() - t
    t = time.monotonic()
    files = deploy.build_firmware(FIRMWARE_DIR)
    build_s = time.monotonic() - t
    t = time.monotonic()
    written = skipped = 0
    for b in boards:
        res = b.prepare(files)
        written += len(res.written)
        skipped += len(res.skipped)
    deploy_s = time.monotonic() - t
    rec = pipeline.execute(central_spec(n, 1), LabBackend(nodes=boards), run_dir=lab.run_dir(label))
    ok = all(v["status"] == "ok" for v in rec["nodes"].values())
    ready_s = rec["phases"].get("ready")
    return {
        "boards": n,
        "boot_s": boot_s,
        "build_s": build_s,
        "deploy_s": deploy_s,
        "files_written": written,
        "files_skipped": skipped,
        "ready_s": ready_s,
        "start_s": rec["phases"].get("start"),
        "total_s": boot_s + build_s + deploy_s + (ready_s or 0),
        "ok": ok,
    }


def bench_bring_up(root, n):
    cache = private_cache(root)
    deploy.clear_cache(cache)
    workdir = os.path.join(root, "bringup")
    out = {}
    for label in ("cold", "warm"):
        lab = Lab(default_emulated_lab(n), workdir, subnet_offset=OFFSET_BRINGUP)
        try:
            out[label] = bring_up(lab, n, label)
        finally:
            lab.close()
        print(
            "  %s bring-up of %d boards: %.2f s (%s)"
            % (label, n, out[label]["total_s"], "ok" if out[label]["ok"] else "FAILED"),
            flush=True,
        )
    out["ratio_cold_over_warm"] = ratio(out["cold"]["total_s"], out["warm"]["total_s"])
    out["deploy_ratio_cold_over_warm"] = ratio(
        out["cold"]["deploy_s"] + out["cold"]["build_s"], out["warm"]["deploy_s"] + out["warm"]["build_s"]
    )
    return out


def bench_twin_rack(root, n=8, iterations=5):
    """Bring-up of a twin rack of n boards through the rack path, cold and warm; deploy per
    board; round latency of central_avg on the n twins; RSS per twin."""
    from flhil.harness.config.lab import parse_lab
    from flhil.harness.lab.twins import TwinRack
    cache = private_cache(root)
    deploy.clear_cache(cache)
    os.environ["FLHIL_TWIN_REGISTRY"] = os.path.join(root, "registry")
    os.environ["FLHIL_WIFI_PASSWORD"] = password = "bench-twins"
    out = {"boards": n}
    t = time.monotonic()
    rack = TwinRack(n, password, root=os.path.join(root, "twins")).start()
    out["rack_boot_s"] = time.monotonic() - t
    try:
        spec = parse_lab(rack.lab_text(pc=0), "twin-rack.toml")
        for label in ("cold", "warm"):
            lab = Lab(spec, os.path.join(root, "twin-lab-" + label))
            try:
                t = time.monotonic()
                files = deploy.build_firmware(FIRMWARE_DIR)
                build_s = time.monotonic() - t
                per_board = []
                for board in lab.real_boards():
                    t = time.monotonic()
                    res = board.prepare(files)
                    per_board.append({"board": board.name, "deploy_s": time.monotonic() - t,
                                      "written": len(res.written), "skipped": len(res.skipped)})
                t = time.monotonic()
                lab.allocate(n, n, True, lab.run_dir("provision"))  # answer, heap, Wi-Fi (deploy: manifest hit)
                provision_s = time.monotonic() - t
                deploys = [b["deploy_s"] for b in per_board]
                entry = {"build_s": build_s, "deploy_per_board_s": deploys,
                         "deploy_median_s": sorted(deploys)[len(deploys) // 2],
                         "files_written": sum(b["written"] for b in per_board),
                         "files_skipped": sum(b["skipped"] for b in per_board),
                         "provision_s": provision_s}
                entry["bring_up_s"] = build_s + sum(deploys) + provision_s
                if label == "warm":
                    pids = [b.pid for b in rack]
                    sampler = RssSampler(pids)
                    sampler.start()
                    t = time.monotonic()
                    try:
                        rec = pipeline.execute(central_spec(n, iterations), LabBackend(lab=lab, boards=n, hil=True),
                                               run_dir=lab.run_dir("rounds"))
                    finally:
                        sampler.stop()
                    srv = rec["nodes"]["0"]["events"]
                    st = {e["i"]: e["t"] for e in srv if e.get("ev") == "round_start"}
                    rounds = [(e["t"] - st[e["i"]]) / 1000 for e in srv
                              if e.get("ev") == "round_end" and e["i"] in st and not e.get("skipped")]
                    out["rounds"] = {"ok": all(v["status"] == "ok" for v in rec["nodes"].values()),
                                     "run_wall_s": time.monotonic() - t, "round_ms": rounds,
                                     "median_round_ms": sorted(rounds)[len(rounds) // 2] if rounds else None,
                                     "rss_peak_kb_per_twin": sampler.peak_kb / len(pids),
                                     "pss_peak_kb_per_twin": sampler.peak_pss_kb / len(pids)}
                out[label] = entry
            finally:
                lab.close()
            print("  twin rack %s bring-up of %d boards: %.2f s (deploy median %.2f s per board)"
                  % (label, n, out[label]["bring_up_s"], out[label]["deploy_median_s"]), flush=True)
    finally:
        rack.close()
    out["ratio_cold_over_warm"] = ratio(out["cold"]["bring_up_s"], out["warm"]["bring_up_s"])
    return out


def print_twins(tw):
    print("\nTwin rack of %d boards through the rack path (booted in %.2f s)" % (tw["boards"], tw["rack_boot_s"]))
    table(["cache", "build s", "deploy s/board (median)", "provision s", "bring-up s", "files written", "skipped"],
          [[k, tw[k]["build_s"], tw[k]["deploy_median_s"], tw[k]["provision_s"], tw[k]["bring_up_s"],
            tw[k]["files_written"], tw[k]["files_skipped"]] for k in ("cold", "warm")])
    r = tw.get("rounds") or {}
    print("cold/warm: %.2f; central_avg on %d twins: ok=%s, median round %s ms (%s), RSS/twin %.0f KB, PSS/twin %.0f KB"
          % (tw["ratio_cold_over_warm"] or 0, tw["boards"], r.get("ok"), r.get("median_round_ms"),
             ", ".join("%.0f" % x for x in r.get("round_ms", [])), r.get("rss_peak_kb_per_twin") or 0,
             r.get("pss_peak_kb_per_twin") or 0))


def scale_run(lab, n, iterations, pc_server):
    """central_avg on n emulated boards; the server is board 0, or an extra CPython PC node."""
    entry = {"boards": n, "server": "pc" if pc_server else "board"}
    t = time.monotonic()
    boards = lab.emulated_boards(n)
    entry["boot_s"] = time.monotonic() - t
    t = time.monotonic()
    files = deploy.build_firmware(FIRMWARE_DIR)
    for b in boards:
        b.prepare(files)  # a no-op copy when the manifest is current (lab grown or rerun)
    entry["deploy_s"] = time.monotonic() - t
    run_dir = lab.run_dir("scale-%d-%s" % (n, entry["server"]))
    nodes = list(boards)
    spec = central_spec(n, iterations)
    if pc_server:
        nodes += lab.allocate(1, 0, False, run_dir)  # one fresh CPython PC node
        spec = central_spec(n + 1, iterations)
        spec.server = n
    pids = [b.pid for b in boards if b.pid]
    sampler = RssSampler(pids)
    idle_kb = sampler.sample()
    sampler.start()
    t = time.monotonic()
    try:
        rec = pipeline.execute(spec, LabBackend(nodes=nodes), run_dir=run_dir)
    finally:
        sampler.stop()
    entry["run_wall_s"] = time.monotonic() - t
    statuses = [v["status"] for v in rec["nodes"].values()]
    entry["statuses"] = {s: statuses.count(s) for s in sorted(set(statuses))}
    entry["ok"] = statuses.count("ok") == spec.nodes
    entry["phases"] = rec["phases"]
    entry["errors"] = sorted(set(v["error"] for v in rec["nodes"].values() if v.get("error")))[:3]
    entry["hang"] = rec.get("hang")
    srv = rec["nodes"][str(spec.server)]["events"]
    st = {e["i"]: e["t"] for e in srv if e.get("ev") == "round_start"}
    entry["server_round_ms"] = [
        (e["t"] - st[e["i"]]) / 1000
        for e in srv
        if e.get("ev") == "round_end" and e["i"] in st and not e.get("skipped")
    ]
    entry["rss_idle_kb_per_board"] = idle_kb / len(pids) if pids else None
    entry["rss_peak_kb_per_board"] = sampler.peak_kb / len(pids) if pids else None
    entry["rss_peak_total_mb"] = sampler.peak_kb / 1024
    entry["pss_peak_kb_per_board"] = sampler.peak_pss_kb / len(pids) if pids else None
    return entry


def bench_scale(root, sizes, iterations, extra_size):
    """Grow one lab through `sizes`. Each size runs with board 0 as the server; once that fails
    (the server is itself a 192 KB board), the size and the larger ones run with a CPython PC
    node as the server, which measures how many emulated boards the host carries."""
    private_cache(root)
    lab = Lab(
        default_emulated_lab(max(sizes + ([extra_size] if extra_size else []))),
        os.path.join(root, "scale"),
        subnet_offset=OFFSET_SCALE,
    )
    results = []
    board_server_failed = False
    try:
        todo = list(sizes)
        while todo:
            n = todo.pop(0)
            modes = ([False] if not board_server_failed else []) + [True]
            ok_any = False
            for pc_server in modes:
                try:
                    entry = scale_run(lab, n, iterations, pc_server)
                except Exception as e:  # a size that cannot even boot is a result, not a crash
                    entry = {
                        "boards": n,
                        "server": "pc" if pc_server else "board",
                        "ok": False,
                        "errors": ["%s: %s" % (type(e).__name__, e)],
                    }
                entry["wall_s"] = entry.get("boot_s", 0) + entry.get("deploy_s", 0) + entry.get("run_wall_s", 0)
                results.append(entry)
                print(
                    "  %3d boards, %-5s server: %s, boot %.1f s, deploy %.1f s, run %.1f s, RSS/board %s KB %s"
                    % (
                        n,
                        entry["server"],
                        "ok" if entry["ok"] else "FAILED",
                        entry.get("boot_s", 0),
                        entry.get("deploy_s", 0),
                        entry.get("run_wall_s", 0),
                        "%.0f" % entry["rss_peak_kb_per_board"] if entry.get("rss_peak_kb_per_board") else "-",
                        "" if entry["ok"] else entry.get("errors"),
                    ),
                    flush=True,
                )
                if entry["ok"]:
                    ok_any = True
                    break  # a board server that passed needs no PC-server run
                if not pc_server:
                    board_server_failed = True
            if not ok_any:
                break
            if not todo and extra_size and n < extra_size and results[-1].get("run_wall_s", 1e9) < 60:
                todo.append(extra_size)
                extra_size = None
    finally:
        lab.close()
    return results


def main():
    def extra(p):
        p.add_argument("--sizes", default=None, help="comma-separated lab sizes (default 16,32,64; quick: 16)")
        p.add_argument("--twins-only", action="store_true", help="only the twin rack figures")

    args = parse_args(__doc__.splitlines()[0], extra)
    sigterm_as_interrupt()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([16] if args.quick else [16, 32, 64])
    extra_size = None if args.quick or args.sizes else 96
    iterations = 3 if args.quick else 4
    load_at_start = list(os.getloadavg())
    root = tempfile.mkdtemp(prefix="flhil-bench-lab-")
    if args.twins_only:
        try:
            twins = bench_twin_rack(root, 8, iterations)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print_twins(twins)
        write_json("bench_lab_twins", {"loadavg_at_start": load_at_start, "twin_rack": twins}, args.out)
        return
    try:
        twins = bench_twin_rack(root, 8, iterations)
        bring = bench_bring_up(root, 8)
        scale = bench_scale(root, sizes, iterations, extra_size)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print("\nBring-up of 8 emulated boards (boot + build + deploy + ready)")
    table(
        ["cache", "boot s", "build s", "deploy s", "ready s", "total s", "files written", "skipped", "ok"],
        [
            [
                k,
                bring[k]["boot_s"],
                bring[k]["build_s"],
                bring[k]["deploy_s"],
                bring[k]["ready_s"],
                bring[k]["total_s"],
                bring[k]["files_written"],
                bring[k]["files_skipped"],
                bring[k]["ok"],
            ]
            for k in ("cold", "warm")
        ],
    )
    print(
        "cold/warm: %.2f (total), %.2f (build + deploy)"
        % (bring["ratio_cold_over_warm"] or 0, bring["deploy_ratio_cold_over_warm"] or 0)
    )

    print("\nLargest emulated lab completing central_avg (%d iterations, 192 KB heap per board)" % iterations)
    table(
        [
            "boards",
            "server",
            "ok",
            "boot s",
            "deploy s",
            "ready s",
            "run s",
            "median round ms",
            "RSS/board KB (peak)",
            "RSS total MB",
            "PSS/board KB",
        ],
        [
            [
                e["boards"],
                e["server"],
                e["ok"],
                e.get("boot_s"),
                e.get("deploy_s"),
                (e.get("phases") or {}).get("ready"),
                e.get("run_wall_s"),
                sorted(e["server_round_ms"])[len(e["server_round_ms"]) // 2] if e.get("server_round_ms") else None,
                e.get("rss_peak_kb_per_board"),
                e.get("rss_peak_total_mb"),
                e.get("pss_peak_kb_per_board"),
            ]
            for e in scale
        ],
    )
    for e in scale:
        if not e["ok"]:
            print(
                "  FAILED at %d boards (%s server): %s %s hang=%s"
                % (e["boards"], e["server"], e.get("statuses"), e.get("errors"), e.get("hang"))
            )
    print_twins(twins)
    largest = max((e["boards"] for e in scale if e["ok"] and e["server"] == "board"), default=0)
    largest_pc = max((e["boards"] for e in scale if e["ok"]), default=0)
    print("largest lab that completed, all nodes on emulated boards: %d boards (target: at least 64)" % largest)
    print("largest number of emulated boards carried with a CPython server: %d" % largest_pc)
    write_json(
        "bench_lab",
        {
            "quick": args.quick,
            "loadavg_at_start": load_at_start,
            "iterations": iterations,
            "bring_up": bring,
            "twin_rack": twins,
            "scale": scale,
            "largest_ok": largest,
            "largest_ok_with_pc_server": largest_pc,
            "target_largest": 64,
        },
        args.out,
    )


if __name__ == "__main__":
    run_main(main)
