"""Flower lab figures: start-up of a Flower lab of 8 SuperNodes, and the per-round overhead of the
fault proxy against a direct connection, measured in one run (SuperNodes 1-4 through idle fault
proxies, 5-8 straight to the SuperLink, the same rounds).

Start-up: from starting the SuperLink to (a) the SuperLink listening, (b) all 8 SuperNodes
registered (their "SuperNode ID" line), (c) the ServerApp's start (`ready`), from the run
record's events (harness clock, monotonic). Overhead: (1) the time chunks spent inside the proxy
(read to written, measured by the proxy), per round and per proxied SuperNode; (2) the ServerApp's
reply time (from pushing a round's messages to pulling the node's reply, polled every poll_s)
of proxied against direct SuperNodes, median over rounds. Needs flwr (pip install "fl-hil[flower]")."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import REPO, median, parse_args, ratio, run_main  # noqa: E402
from _common import sigterm_as_interrupt, table, write_json  # noqa: E402

EXAMPLE = os.path.join(REPO, "examples", "flower-digits")
SUPERNODES = 8
PROXIED = (1, 2, 3, 4)


def main():
    args = parse_args(__doc__.splitlines()[0])
    sigterm_as_interrupt()
    import tempfile

    from flhil.harness.flower.backend import FlowerBackend
    from flhil.harness.flower.project import check_flwr
    from flhil.harness.run import pipeline
    from flhil.harness.run.spec import RunSpec
    version = check_flwr()
    rounds = 2 if args.quick else 3
    root = tempfile.mkdtemp(prefix="flhil-bench-flower-")
    spec = RunSpec(algorithm="flower", nodes=SUPERNODES + 1, flower={
        "project": EXAMPLE, "supernodes": SUPERNODES, "poll_s": 0.05,
        "run_config": {"num-server-rounds": rounds, "min-nodes": SUPERNODES, "round-timeout": 120.0}})
    direct = [i for i in range(1, SUPERNODES + 1) if i not in PROXIED]
    load0 = list(os.getloadavg())
    t = time.monotonic()
    record = pipeline.execute(spec, FlowerBackend(run_dirs=lambda name: os.path.join(root, name), direct=direct))
    wall = time.monotonic() - t
    boot = record.events(0, "boot")[0]["t"]
    registered = [e["t"] for n in range(1, SUPERNODES + 1) for e in record.events(n, "listen")[:1]]
    ready = [e["t"] for e in record.events(0, "ready")]
    up_s = (max(registered) - boot) / 1e6 if len(registered) == SUPERNODES else None
    ready_s = (ready[0] - boot) / 1e6 if ready else None
    calls = [e for e in record.events(0, "call") if e.get("p") == "train"]
    per_round = []
    for e in calls:
        rm = e.get("reply_ms") or {}
        prox = [rm[str(n)] for n in PROXIED if str(n) in rm]
        dirc = [rm[str(n)] for n in direct if str(n) in rm]
        per_round.append({"round": e["i"], "proxied_ms": median(prox), "direct_ms": median(dirc),
                          "answered": len(rm)})
    proxy = record["flower"]["proxy"] or {}
    held = {n: sum(v["held_ms"].values()) for n, v in proxy.items()}
    chunks = {n: sum(v["chunks"].values()) for n, v in proxy.items()}
    n_rounds = max(1, len(calls))
    held_per_round = median([h / n_rounds for h in held.values()])
    chunk_ms = ratio(sum(held.values()), sum(chunks.values()))
    figures = {
        "flwr": version, "supernodes": SUPERNODES, "rounds": rounds, "stopped": record["stopped"],
        "startup": {"superlink_up_to_all_registered_s": up_s, "to_serverapp_ready_s": ready_s,
                    "phases": record["phases"]},
        "proxy": {"held_ms_per_round_per_node_median": held_per_round, "ms_per_chunk": chunk_ms,
                  "chunks_per_round_per_node": ratio(sum(chunks.values()) / max(1, len(chunks)), n_rounds),
                  "per_node": proxy},
        "reply_time_per_round": per_round,
        "reply_overhead_ms_median": median([r["proxied_ms"] - r["direct_ms"] for r in per_round
                                            if r["proxied_ms"] is not None and r["direct_ms"] is not None]),
        "wall_s": wall, "loadavg_at_start": load0,
        "command": "python bench/bench_flower.py" + (" --quick" if args.quick else ""),
    }
    print("Flower lab of %d SuperNodes (flwr %s), %d rounds, run %s in %.1f s (load %.1f at start)"
          % (SUPERNODES, version, rounds, record["stopped"], wall, load0[0]))
    table(["start-up", "s"], [["SuperLink start -> all 8 SuperNodes registered", up_s],
                              ["SuperLink start -> ServerApp started", ready_s]])
    print()
    table(["round", "reply proxied ms (median of 4)", "reply direct ms (median of 4)", "answered"],
          [[r["round"], r["proxied_ms"], r["direct_ms"], r["answered"]] for r in per_round])
    print()
    table(["fault proxy (idle)", "value"], [
        ["time in proxy per round per SuperNode, ms", held_per_round],
        ["per chunk, ms", chunk_ms],
        ["chunks per round per SuperNode", figures["proxy"]["chunks_per_round_per_node"]],
        ["reply time proxied - direct, ms (median)", figures["reply_overhead_ms_median"]]])
    write_json("bench_flower", figures, args.out)
    import shutil
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    run_main(main)
