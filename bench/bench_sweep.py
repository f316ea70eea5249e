"""Benchmark of `fl-hil sweep`: cases per minute on each executor, against one process.

    python bench/bench_sweep.py [--quick] [--cases 48] [--jobs 2]

One scenario file (centralized averaging, 6 nodes, 10 rounds, 10% loss) swept over N seeds in
virtual time, each case with its full Allure test (plots, findings, record), as a user runs it:
`fl-hil sweep DIR --seed 1 ... --seed N -o OUT --no-report --executor X`, in a fresh process and a
fresh output directory. Per executor: wall time of the whole command (start-up included), cases
per minute over it, cases per minute of the case loop alone (the rate the sweep prints: start-up
excluded), and the ratio to `inline` (every case in the sweep's own process, one at a time: the
baseline). Also: a second invocation on the same output (every case already done), and
`fl-hil run` of the same cases (no Allure attachments: what the report costs). `ray` needs the
extra `sweep`; without it that row says so. At most `--jobs` CPUs (default 2)."""
import os
import re
import subprocess
import sys
import tempfile
import time

from _common import REPO, fmt, parse_args, ratio, run_main, sigterm_as_interrupt, table, write_json

SCENARIO = """\
name = "bench: centralized averaging, 10% loss"
algorithm = "centralized"

[nodes]
count = 6

[args]
iterations = 10

[[faults.links]]
src = "*"
dst = "*"
loss = 0.1

[expect]
all_return = true
"""
TIMEOUT_S = 1800
RATE = re.compile(r"(\d+)/(\d+) cases, (\d+) failed, ([\d.]+) cases/s in ([\d.]+)s")


def fl_hil(args, timeout=TIMEOUT_S):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flhil.harness", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, stdin=subprocess.DEVNULL)
    return proc, time.perf_counter() - t


def sweep(work, executor, cases, jobs):
    seeds = [a for s in range(1, cases + 1) for a in ("--seed", str(s))]
    out = os.path.join(work, "out-" + executor)
    proc, wall = fl_hil(["sweep", os.path.join(work, "scenarios"), "-o", out, "--no-report", "--executor",
                         executor, "-j", str(jobs), *seeds])
    if proc.returncode not in (0, 1):
        return {"executor": executor, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    m = RATE.search(proc.stderr)
    again, again_wall = fl_hil(["sweep", os.path.join(work, "scenarios"), "-o", out, "--no-report",
                                "--executor", executor, *seeds])
    return {"executor": executor, "cases": cases, "wall_s": wall, "per_min": 60 * cases / wall,
            "loop_per_min": 60 * float(m.group(4)) if m else None, "loop_s": float(m.group(5)) if m else None,
            "failed": int(m.group(3)) if m else None, "resume_s": again_wall,
            "resume_skipped": "%d of %d cases already done" % (cases, cases) in again.stdout}


def run_baseline(work, cases):
    """`fl-hil run` of the same cases: one process, no Allure attachments."""
    seeds = [a for s in range(1, cases + 1) for a in ("--seed", str(s))]
    proc, wall = fl_hil(["run", os.path.join(work, "scenarios", "bench.toml"), "--backend", "virtual",
                         "--report-dir", os.path.join(work, "run"), *seeds])
    return {"executor": "fl-hil run", "cases": cases, "wall_s": wall, "per_min": 60 * cases / wall,
            "ok": proc.returncode in (0, 1)}


def main():
    args = parse_args(__doc__.splitlines()[0], extra=lambda p: (
        p.add_argument("--cases", type=int, default=None, help="seeds swept (default 48, quick 12)"),
        p.add_argument("--jobs", type=int, default=2, help="CPUs of the parallel executors (default 2)")))
    sigterm_as_interrupt()
    cases = args.cases or (12 if args.quick else 48)
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="flhil-bench-sweep-") as work:
        os.makedirs(os.path.join(work, "scenarios"))
        with open(os.path.join(work, "scenarios", "bench.toml"), "w") as f:
            f.write(SCENARIO)
        for executor in ("inline", "processes", "ray"):
            results.append(sweep(work, executor, cases, args.jobs))
        results.append(run_baseline(work, cases))
    base = results[0]
    for r in results:
        if "error" in r:
            rows.append([r["executor"], "-", "-", "-", "-", "-", " ".join(r["error"])])
            continue
        rows.append([r["executor"], r["cases"], r["wall_s"], r["per_min"], r.get("loop_per_min"),
                     ratio(r["per_min"], base.get("per_min")),
                     "resume %ss, all skipped: %s" % (fmt(r["resume_s"]), fmt(r["resume_skipped"]))
                     if "resume_s" in r else "no Allure attachments"])
    print("sweep throughput, %d cases of %s, %d jobs" % (cases, "centralized 6 nodes x 10 rounds", args.jobs))
    table(["executor", "cases", "wall s", "cases/min", "loop cases/min", "x inline", "notes"], rows)
    write_json("bench_sweep", {"cases": cases, "jobs": args.jobs, "results": results}, args.out)


if __name__ == "__main__":
    run_main(main)
