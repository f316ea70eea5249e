"""Benchmark of the virtual-time lab: a TDM run (getMeas on a ring) with many nodes in one process.

    python bench/bench_virtual.py                      # 10,000 nodes, plus 100 and 1,000 for scale
    python bench/bench_virtual.py --nodes 10000 --slots 10 --sizes 100,1000

Per size, in a fresh process: wall seconds, virtual seconds, speed-up over real time
(virtual / wall: how much faster than the same run on real boards with 100 ms slots), the same for
the steady state (the extra slots of a second, longer run: start-up excluded), node-seconds
simulated per wall second, and host memory per node (peak RSS growth over the interpreter's
baseline / nodes). Prints figures; asserts nothing about wall-clock time."""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def one(nodes, slots, slot_ms):
    """Run one size in this process; a dict of figures."""
    from flhil.harness.run.virtual import run_virtual
    spec = {"app": "getmeas", "nodes": nodes, "args": {"slots": slots, "topology": "ring"},
            "timing": {"slot_ms": slot_ms}, "seed": 1}
    base_kb = _rss_kb()
    t = time.perf_counter()
    r = run_virtual(spec, keep_events=False, max_wall_s=3600)
    wall = time.perf_counter() - t
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = sum(1 for e in r["nodes"].values() if e["status"] == "ok")
    return {"nodes": nodes, "slots": slots, "wall_s": wall, "virtual_s": r["virtual"]["t_end_s"],
            "ok": ok, "frames": r["virtual"]["frames_sent"],
            "mem_per_node_kb": (peak_kb - base_kb) / nodes, "stopped": r["virtual"]["stopped"]}


def measure(nodes, slots, slot_ms):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(nodes), str(slots),
                          str(slot_ms)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10000)
    ap.add_argument("--slots", type=int, default=10)
    ap.add_argument("--slot-ms", type=float, default=100)
    ap.add_argument("--sizes", default="100,1000", help="smaller sizes to show the trend ('' for none)")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(int(args.one[0]), int(args.one[1]), float(args.one[2]))))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()] + [args.nodes]
    print("virtual-time lab: getmeas on a ring, %d slots of %g ms (steady state: %d extra slots)"
          % (args.slots, args.slot_ms, args.slots))
    head = ("nodes", "wall s", "virtual s", "speed-up", "steady", "node-s/s", "KB/node", "ok")
    print("%7s %9s %10s %9s %9s %10s %8s %7s" % head)
    for n in sizes:
        a = measure(n, args.slots, args.slot_ms)
        b = measure(n, 2 * args.slots, args.slot_ms)
        speed = a["virtual_s"] / a["wall_s"]
        dw = b["wall_s"] - a["wall_s"]
        steady = (b["virtual_s"] - a["virtual_s"]) / dw if dw > 0 else float("inf")
        print("%7d %9.2f %10.3f %8.1fx %8.1fx %10.0f %8.1f %7s"
              % (n, a["wall_s"], a["virtual_s"], speed, steady, n * a["virtual_s"] / a["wall_s"],
                 a["mem_per_node_kb"], "%d/%d" % (a["ok"], n)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
