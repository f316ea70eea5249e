"""HeteroFL figures: global accuracy after R rounds for all-a, the a-b-c-d-e mix and all-e (IID and
non-IID digits), bytes per round per level, and per level under MicroPython (an emulated board,
the unix port) the peak heap of a client, the smallest heap a client round completes in, and
the local training time per round.

    python bench/bench_heterofl.py [--quick] [--rounds 10] [--no-heap]

Accuracy: virtual time, 5 clients + 1 server, hidden = 128, the app's defaults (2 epochs of
per-sample SGD, lr 0.01, 100 samples per client), seeds 1-3 (--quick: seed 1); the global model
is the widest level trained (all-e trains an 8-unit model), evaluated on the 449 held-out digits.
Bytes: the base64 float32 model text of one slice, each way (the frame adds ~150 bytes).
Heap: a 2-node run, the client on an emulated board (MicroPython, -X heapsize), the server a
CPython PC node, 2 rounds. `peak used` is heap total - lowest free heap the board reported
(after a collection, at each round's end); `smallest heap` bisects -X heapsize (8 KB steps)
for the smallest heap the run completes with, which is what a board must have. Training time
is the client's own measure of mlp.train (node clock) on this host's unix port, not a Pico W
(a Pico's RP2040 is slower). Figures go to reports/bench/bench_heterofl.json."""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import parse_args, run_main, sigterm_as_interrupt, table, write_json  # noqa: E402

from flhil import mlp  # noqa: E402
from flhil.harness.config.lab import parse_lab  # noqa: E402
from flhil.harness.lab.lab import Lab  # noqa: E402
from flhil.harness.results import heterofl as hf  # noqa: E402
from flhil.harness.run import heterofl as setup  # noqa: E402
from flhil.harness.run import pipeline  # noqa: E402
from flhil.harness.run.backend import make_backend  # noqa: E402
from flhil.harness.run.spec import RunSpec  # noqa: E402

MIXES = {"all-a": "a1", "a-b-c-d-e": "a1-b1-c1-d1-e1", "all-e": "e1"}
PUBLISHED = {"all-a": 99.47, "a-b-c-d-e": 99.23, "all-e": 98.46}  # Flower's MNIST CNN, for the shape
CLIENTS = 5
OFFSET = 230  # loopback blocks of this benchmark's labs


def accuracy_runs(rounds, seeds, splits):
    rows, out = [], {}
    backend = make_backend("virtual")
    for split in splits:
        for name, mix in MIXES.items():
            accs, per_level = [], {}
            t = time.monotonic()
            for seed in seeds:
                spec = RunSpec(app="heterofl", nodes=CLIENTS + 1, server=CLIENTS, seed=seed,
                               args={"iterations": rounds}, heterofl={"levels": mix, "split": split},
                               timing={"round_ms": 60000, "recv_ms": 120000})
                record = pipeline.execute(spec, backend)
                v = hf.view(record)
                accs.append(hf.global_accuracy(record))
                for level in "ae":
                    per_level.setdefault(level, []).append(v.accuracy(v.final(), level))
            mean = sum(accs) / len(accs)
            out["%s/%s" % (split, name)] = {"global": mean, "per_seed": accs,
                                            "level_a": sum(per_level["a"]) / len(seeds),
                                            "level_e": sum(per_level["e"]) / len(seeds),
                                            "wall_s": time.monotonic() - t}
            rows.append([split, name, 100 * mean, 100 * min(accs), 100 * max(accs), PUBLISHED[name]])
    print("\nGlobal accuracy after %d rounds (%% on held-out digits, mean of seeds %s)" % (rounds, list(seeds)))
    table(["split", "clients", "global %", "min %", "max %", "published MNIST CNN %"], rows)
    return out


def bytes_per_level(hidden=128):
    rows, out = [], {}
    for level in mlp.LEVELS:
        h = mlp.width(hidden, level)
        params = mlp.param_count(64, h, 10)
        text = 4 * ((4 * params + 2) // 3)
        out[level] = {"width": h, "params": params, "bytes_each_way": text}
        rows.append([level, h, params, text, 2 * text, "%.1f%%" % (100.0 * params / mlp.param_count(64, hidden, 10))])
    print("\nBytes per round per client (hidden = %d; base64 float32 model text)" % hidden)
    table(["level", "width", "params", "bytes down", "bytes down+up", "of level a"], rows)
    return out


def board_run(heap_kb, level, rounds, workdir):
    """A 2-node run: client 0 on an emulated board with heap_kb at `level`, server 1 a PC node."""
    lab = Lab(parse_lab("[emulated]\ncount = 1\nheap_kb = %d\n[pc]\ncount = 1\n" % heap_kb, "<bench>"),
              os.path.join(workdir, "lab-%d-%s" % (heap_kb, level)))
    try:
        backend = make_backend("realtime", lab=lab, boards=1)
        spec = RunSpec(app="heterofl", nodes=2, server=1, args={"iterations": rounds},
                       heterofl={"levels": {"0": level}},
                       timing={"round_ms": 6000, "recv_ms": 12000, "startup_ms": 20000})
        return pipeline.execute(spec, backend, name="heap-%d-%s" % (heap_kb, level))
    finally:
        lab.close()


def trained(record, rounds):
    """The board (node 0) trained and was aggregated in every round (a node that runs out of heap
    while receiving may end `ok` with nothing trained)."""
    got = [0 in (e.get("got") or []) for e in record.events(1, "model")]
    return record.status(0) == "ok" and len(got) == rounds and all(got)


def train_ms(record):
    """Mean local training time of the board per round (the server's model events)."""
    times = [(e.get("ms") or {}).get("0") for e in record.events(1, "model")]
    times = [t for t in times if t is not None]
    return sum(times) / len(times) if times else None


def heap_runs(levels, rounds, bisect):
    saved = dict(setup.PEAK_HEAP_KB)
    setup.PEAK_HEAP_KB.update({lv: 1 for lv in mlp.LEVELS})  # ask for any level: this measures it
    rows, out = [], {}
    try:
        with tempfile.TemporaryDirectory(prefix="flhil-bench-heterofl-") as workdir:
            for level in levels:
                record = board_run(192, level, rounds, workdir)
                ok = trained(record, rounds)
                stats = record.heap_peak(0)
                entry = {"ok_192k": ok, "error": record.error(0),
                         "peak_used_kb": stats.peak_used / 1024.0 if stats and stats.peak_used else None,
                         "train_ms": train_ms(record) if ok else None}
                if bisect:
                    lo, hi = 64, 192 if ok else 512
                    while hi - lo > 8:  # smallest heap that completes: in (lo, hi]
                        mid = (lo + hi) // 2
                        if trained(board_run(mid, level, rounds, workdir), rounds):
                            hi = mid
                        else:
                            lo = mid
                    entry["smallest_heap_kb"] = hi
                out[level] = entry
                rows.append([level, mlp.width(128, level), "yes" if ok else "no", entry["peak_used_kb"],
                             entry.get("smallest_heap_kb"), entry["train_ms"]])
    finally:
        setup.PEAK_HEAP_KB.update(saved)
    print("\nPer level under MicroPython (unix port, emulated board; 2 rounds, 100 samples, 2 epochs)")
    table(["level", "width", "runs in 192 KB", "peak used KB (192 KB heap)", "smallest heap KB", "train ms/round"],
          rows)
    return out


TRAIN_SCRIPT = """
import time, binascii, gc, json
from flhil import mlp
packed = binascii.a2b_base64(%r)
labels = %r
g = mlp.init_model(1, 64, 128, 10)
out = {}
for level in %r:
    h = mlp.width(128, level)
    w = mlp.slice_model(g, 64, 128, 10, h)
    gc.collect()
    t = time.ticks_ms()
    for r in range(%d):
        mlp.train(w, 64, h, 10, 1.0 / mlp.rate(level), packed, labels, 0.01, 2, 1, 0, r)
    out[level] = time.ticks_diff(time.ticks_ms(), t) / %d
print(json.dumps(out))
"""


def train_times(levels, repeats=3):
    """ms per local round (2 epochs of 100 samples) per level under MicroPython, 192 KB heap,
    the training alone (no network), median-free: the mean of `repeats` rounds."""
    import json
    import subprocess
    from flhil.harness import micropython_path
    from flhil.harness.data import digits
    _, shards = digits.split(1, 5, samples=100)
    shard = digits.pack(shards[0])
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(TRAIN_SCRIPT % (shard["x"], shard["y"].encode(), levels, repeats, repeats))
    try:
        env = dict(os.environ, MICROPYPATH=micropython_path() + ":.frozen")
        done = subprocess.run(["micropython", "-X", "heapsize=192k", f.name], capture_output=True, text=True,
                              env=env, timeout=600)
    finally:
        os.unlink(f.name)
    if done.returncode:
        raise RuntimeError(done.stderr or done.stdout)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    print("\nLocal training per round under MicroPython (unix port, 192 KB heap; 2 epochs x 100 samples)")
    table(["level", "width", "ms per round"], [[lv, mlp.width(128, lv), out[lv]] for lv in levels])
    return out


def main():
    sigterm_as_interrupt()

    def extra(p):
        p.add_argument("--rounds", type=int, default=10)
        p.add_argument("--no-heap", action="store_true", help="skip the MicroPython runs")
    args = parse_args(__doc__.split("\n")[0], extra)
    seeds = [1] if args.quick else [1, 2, 3]
    rounds = 4 if args.quick else args.rounds
    figures = {"rounds": rounds, "seeds": seeds}
    figures["bytes"] = bytes_per_level()
    figures["accuracy"] = accuracy_runs(rounds, seeds, ["iid"] if args.quick else ["iid", "noniid"])
    figures["train_ms_micropython"] = train_times("abcde")
    if not args.no_heap:
        figures["micropython"] = heap_runs("edcba" if not args.quick else "ed", 2, bisect=not args.quick)
    write_json("bench_heterofl", figures, args.out)


if __name__ == "__main__":
    run_main(main)
