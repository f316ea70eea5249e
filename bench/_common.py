"""Shared helpers of the benchmarks: argument parsing, statistics, tables, JSON output.

Benchmarks print figures and ratios against a baseline measured in the same run; they never
assert wall-clock limits."""
import argparse
import datetime
import json
import os
import platform
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

OUT_DIR = os.path.join(REPO, "reports", "bench")


def parse_args(description, extra=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a reduced run that finishes in under a minute")
    p.add_argument("--out", default=None, help="JSON output path (default reports/bench/<name>.json)")
    if extra:
        extra(p)
    return p.parse_args()


def sigterm_as_interrupt():
    """SIGTERM runs the same `finally` clean-up paths as Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def percentile(values, q):
    """Nearest-rank style percentile with linear interpolation; None for an empty list."""
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def median(values):
    return percentile(values, 50)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(x, digits=2):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "%.*f" % (digits, x)
    return str(x)


def table(headers, rows):
    """Print a plain text table."""
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    for n, r in enumerate(cells):
        print("  ".join(c.ljust(w) if (n == 0 or k == 0) else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def machine():
    """The machine and how busy it was (other processes skew every wall-clock figure)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "loadavg_1_5_15": list(os.getloadavg())}


def write_json(name, data, path=None):
    path = path or os.path.join(OUT_DIR, name + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(data)
    data.setdefault("machine", machine())
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    print("\nfigures written to %s" % os.path.relpath(path, REPO))
    return path


def _proc_kb(path, field):
    """A `Field:  N kB` line of a /proc file, in KiB, or None if the process is gone."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_kb(pid):
    """Resident set size of a process in KiB (VmRSS), or None if it is gone."""
    return _proc_kb("/proc/%d/status" % pid, "VmRSS:")


def pss_kb(pid):
    """Proportional set size in KiB (shared pages divided among their users), or None."""
    return _proc_kb("/proc/%d/smaps_rollup" % pid, "Pss:")


def run_main(main):
    """Run a benchmark's main; Ctrl-C ends it with status 130 after its own cleanup ran."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    return None
