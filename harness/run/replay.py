"""Replay a recorded run in virtual time with exactly its recorded message faults.

    fl-hil replay RECORD.json [--out NEW.json] [--rel 0]

The record may come from any backend (virtual, emulated, PC, hardware): its fault timeline becomes a
`[[faults.script]]` plan, node-level faults come from its spec. Prints each node's recorded and
replayed status and result and whether they match; exit status 0 when every node matches, 1 when
some differ, 2 on a usage or input error."""
import argparse
import copy
import json
import math
import sys

from flhil.harness.results.record import RunRecord
from flhil.harness.run.spec import RunSpec
from flhil.harness.run.virtual import run_virtual
from flhil.vocab import MESSAGE_FAULT_KINDS, PHASES

# -- replay ----------------------------------------------------------------------------------------

NODE_FAULT_KEYS = ("seed", "dropouts", "slot_jitter", "clock_skew")
_PHASE_ORDER = {p: k for k, p in enumerate(PHASES)}
# one script entry per message: a message that was dropped was neither delayed nor duplicated
# as far as its receiver could tell; among the others the delay (timing) is kept first
_KIND_RANK = {"loss": 0, "burst_loss": 0, "partition": 0, "delay": 1, "dup": 2, "reorder": 3}


def recorded_faults(record):
    """The fault events of a record: its `faults` timeline, else the nodes' fault events."""
    rec = record.data
    faults = rec.get("faults")
    if faults:
        return list(faults)
    out = []
    for entry in (rec.get("nodes") or {}).values():
        out.extend(e for e in entry.get("events") or [] if e.get("ev") == "fault")
    return out


def replay_plan(record):
    """A fault plan that replays the record's message faults exactly: every loss, burst_loss,
    partition, delay (with its ms), dup and reorder event of the fault timeline becomes a
    `[[faults.script]]` entry (src = the event's node, dst, p, i, kind); the plan's random link
    rules and partitions are dropped (the script replaces them), node-level faults (dropouts,
    slot jitter, clock skew) and the fault seed are carried over from the recorded spec's plan.
    A message with several recorded faults keeps one (a drop first, else delay, dup, reorder):
    the firmware's script holds one decision per message."""
    rec = record.data
    spec_plan = (rec.get("spec") or {}).get("faults") or {}
    entries = {}
    for f in recorded_faults(record):
        kind = f.get("kind")
        if kind not in MESSAGE_FAULT_KINDS:
            continue
        src, dst, p, i = f.get("n"), f.get("dst"), f.get("p"), f.get("i")
        if src is None or dst is None or p is None or i is None:
            continue
        entry = {"src": int(src), "dst": int(dst), "p": p, "i": int(i), "kind": kind}
        if kind == "delay" and f.get("ms") is not None:
            entry["ms"] = f["ms"]
        key = (entry["src"], entry["dst"], p, entry["i"])
        prev = entries.get(key)
        if prev is None or _KIND_RANK[kind] < _KIND_RANK[prev["kind"]]:
            entries[key] = entry
    plan = {}
    for k in NODE_FAULT_KEYS:
        if k in spec_plan:
            plan[k] = copy.deepcopy(spec_plan[k])
    if "seed" not in plan and rec.get("seed") is not None:
        plan["seed"] = rec["seed"]
    plan["script"] = sorted(entries.values(), key=lambda e: (e["i"], _PHASE_ORDER.get(e["p"], 9), e["p"],
                                                              e["src"], e["dst"]))
    return plan


def replay_spec(record):
    """The record's run spec (a RunSpec) with its fault plan replaced by replay_plan(record)."""
    rec = record.data
    spec = copy.deepcopy(rec.get("spec") or {})
    if not spec.get("nodes"):
        spec["nodes"] = len(rec.get("nodes") or {})
    if spec.get("seed") is None and rec.get("seed") is not None:
        spec["seed"] = rec["seed"]
    spec.pop("deadline_s", None)
    spec["faults"] = replay_plan(record)
    return RunSpec(**spec)


def script_faults(record):
    """The message faults of a record as a sorted list of (src, dst, p, i, kind) (for comparing a
    run with its replay)."""
    out = set()
    for f in recorded_faults(record):
        if f.get("kind") in MESSAGE_FAULT_KINDS:
            out.add((f.get("n"), f.get("dst"), f.get("p"), f.get("i"), f.get("kind")))
    return sorted(out, key=lambda x: tuple(str(v) for v in x))


def same_value(a, b, rel=0.0):
    """Equal, or numbers within `rel` (relative), element by element in lists and dicts."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return set(map(str, a)) == set(map(str, b)) and \
            all(same_value(a[k], b.get(k, b.get(str(k))), rel) for k in a)
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return a == b or (rel > 0 and math.isclose(a, b, rel_tol=rel, abs_tol=1e-12))
    return a == b


def compare(recorded, replayed, rel=0.0):
    """[(node, recorded status, recorded result, replay status, replay result, match)]."""
    rows = []
    ids = sorted(set(recorded.node_ids()) | set(replayed.node_ids()))
    for i in ids:
        a, b = recorded.node(i), replayed.node(i)
        match = a.get("status") == b.get("status") and same_value(a.get("result"), b.get("result"), rel)
        rows.append((i, a.get("status"), a.get("result"), b.get("status"), b.get("result"), match))
    return rows


def replay(recorded, rel=0.0, **run_kw):
    """(replayed record, comparison rows, faults match) for a recorded run (RunRecord). The
    message faults match when the replay's fault timeline turns into the same script as the
    record's."""
    new = run_virtual(replay_spec(recorded), **run_kw)
    new.data["replay_of"] = {"run": recorded.run_id, "backend": recorded.backend,
                             "trace_hash": recorded.data.get("trace_hash")}
    faults_match = replay_plan(recorded)["script"] == replay_plan(new)["script"]
    return new, compare(recorded, new, rel), faults_match


def _short(v, width=40):
    text = json.dumps(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fl-hil replay",
                                 description="Replay a run record in virtual time with its recorded faults.")
    ap.add_argument("record", help="run record JSON")
    ap.add_argument("--out", help="write the replay's run record here")
    ap.add_argument("--rel", type=float, default=0.0,
                    help="relative tolerance for results (default 0: exact)")
    args = ap.parse_args(argv)
    try:
        recorded = RunRecord.load(args.record)
        if not recorded.spec:
            raise ValueError("not a run record (no spec)")
        new, rows, faults_match = replay(recorded, args.rel)
    except (OSError, ValueError, KeyError) as e:
        print("replay: %s: %s" % (args.record, e), file=sys.stderr)
        return 2
    script = new.spec["faults"].get("script", [])
    print("replayed %s (%s) in virtual time: %d scripted message faults, stopped: %s at %.3f s"
          % (recorded.run_id, recorded.backend, len(script), new["virtual"]["stopped"],
             new["virtual"]["t_end_s"]))
    print("%4s  %-8s %-40s %-8s %-40s %s" % ("node", "recorded", "", "replay", "", "match"))
    for i, s0, r0, s1, r1, ok in rows:
        print("%4d  %-8s %-40s %-8s %-40s %s" % (i, s0, _short(r0), s1, _short(r1), "yes" if ok else "NO"))
    all_match = all(r[-1] for r in rows)
    print("results %s; message faults %s" % ("match" if all_match else "DIFFER",
                                              "match" if faults_match else "differ"))
    if args.out:
        new.save(args.out)
        print("wrote", args.out)
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
