"""Wall time of the `sim` scenario suite, serial and with pytest-xdist `-n 2`.

    python bench/bench_suite.py [--quick]

Runs `python -m pytest scenarios -m sim -q -p no:cacheprovider [-n 2]` as subprocesses (15-minute
timeout each; a timed-out run is killed with its process group and reported as such), counts the
collected items (`--collect-only -q`) and the outcomes of each run, and prints the serial / -n 2
ratio. Target: the full suite in <= 2 minutes with -n 2. `--quick` runs only
scenarios/centralized/clean.toml. Figures go to reports/bench/bench_suite.json.
Nothing here asserts a time limit; failing scenarios are counted, not judged."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, parse_args, ratio, sigterm_as_interrupt, table, write_json  # noqa: E402
from _common import run_main  # noqa: E402

TIMEOUT_S = 15 * 60
QUICK_TARGET = "scenarios/centralized/clean.toml"
OUTCOMES = ("passed", "failed", "error", "errors", "skipped", "xfailed", "xpassed", "deselected")


def pytest_argv(target, extra):
    return [sys.executable, "-m", "pytest", target, "-m", "sim", "-q", "-p", "no:cacheprovider"] + extra


def run(argv, timeout):
    """(returncode or None on timeout, wall seconds, output); the process group dies on any exit."""
    with tempfile.TemporaryFile() as out:
        t = time.monotonic()
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            wall = time.monotonic() - t
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    proc.wait(3)
                except subprocess.TimeoutExpired:
                    pass
        out.seek(0)
        return rc, wall, out.read().decode("utf-8", "replace")


def outcomes(text):
    """Counts from pytest's final summary line, e.g. '12 passed, 1 failed in 40.1s'."""
    counts = {}
    lines = [ln for ln in text.splitlines() if re.search(r"\b(passed|failed|error|errors|skipped|no tests ran)\b", ln)]
    if lines:
        for num, word in re.findall(r"(\d+) (%s)\b" % "|".join(OUTCOMES), lines[-1]):
            counts["errors" if word == "error" else word] = int(num)
    return counts


def collected(target):
    rc, wall, text = run(pytest_argv(target, ["--collect-only"]), 300)
    m = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
    if m:
        return int(m.group(1)), wall
    items = [ln for ln in text.splitlines() if "::" in ln]
    return len(items), wall


def main():
    args = parse_args(__doc__.splitlines()[0])
    sigterm_as_interrupt()
    target = QUICK_TARGET if args.quick else "scenarios"
    timeout = 120 if args.quick else TIMEOUT_S
    items, collect_s = collected(target)
    print("  %d items collected from %s (-m sim) in %.1f s" % (items, target, collect_s), flush=True)
    results = {}
    for label, extra in (("serial", []), ("n2", ["-n", "2"])):
        rc, wall, text = run(pytest_argv(target, extra), timeout)
        results[label] = {"argv": " ".join(["python"] + pytest_argv(target, extra)[1:]), "returncode": rc,
                          "timed_out": rc is None, "wall_s": wall, "outcomes": outcomes(text),
                          "failed_items": [ln[len("FAILED "):] for ln in text.splitlines()
                                           if ln.startswith(("FAILED ", "ERROR "))][:50],
                          "tail": text.strip().splitlines()[-3:]}
        print("  %-6s %.1f s  rc=%s  %s" % (label, wall, rc, results[label]["outcomes"]), flush=True)

    print("\nsim suite wall time (%s, %d items)" % (target, items))
    table(["mode", "wall s", "timed out", "returncode", "outcomes"],
          [[k, v["wall_s"], v["timed_out"], v["returncode"],
            ", ".join("%d %s" % (n, w) for w, n in sorted(v["outcomes"].items()))] for k, v in results.items()])
    for k, v in results.items():
        for item in v["failed_items"]:
            print("  %s: FAILED %s" % (k, item))
    r = ratio(results["serial"]["wall_s"], results["n2"]["wall_s"])
    print("serial / -n 2: %s (target: full suite <= 120 s with -n 2; measured %.1f s)" % (
        "%.2f" % r if r else "-", results["n2"]["wall_s"]))
    write_json("bench_suite", {"quick": args.quick, "target": target, "items": items, "collect_s": collect_s,
                               "runs": results, "ratio_serial_over_n2": r, "target_n2_s": 120}, args.out)


if __name__ == "__main__":
    run_main(main)
