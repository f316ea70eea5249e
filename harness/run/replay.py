"""Replay a recorded run in virtual time: its injected faults, and what the host's timing did to
it (the messages that missed their step, the steps that began late), so the replay reproduces the
recorded run's verdict, timing failures included.

    fl-hil replay RECORD.json [--idle] [--out NEW.json] [--rel 0]

The record may come from any backend (virtual, emulated, PC, hardware): its fault timeline becomes a
`[[faults.script]]` plan with its `fates` (a message that came after its receiver had left the step,
or never came, arrives late: `late`) and its `stalls` (a step that began late: `stall`); node-level
faults come from its spec. `--idle` replays the injected faults only: the run on an idle host.
Prints each node's recorded and replayed status and result, and "verdict reproduced" or the first
divergence (node, step, what differed); exit status 0 when the verdict is reproduced (or, for a
record without expectations, every node matches), 1 when not, 2 on a usage or input error."""
import argparse
import copy
import json
import math
import sys

from flhil.harness.results.fates import message_fates, step_stalls
from flhil.harness.results.record import RunRecord
from flhil.harness.run.spec import RunSpec
from flhil.harness.run.virtual import run_virtual
from flhil.vocab import LATE_KIND, MESSAGE_FAULT_KINDS, PHASES, STALL_KIND

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


def replay_plan(record, timing=True):
    """A fault plan that replays the record's message faults exactly: every loss, burst_loss,
    partition, delay (with its ms), dup and reorder event of the fault timeline becomes a
    `[[faults.script]]` entry (src = the event's node, dst, p, i, kind); the plan's random link
    rules and partitions are dropped (the script replaces them), node-level faults (dropouts,
    slot jitter, clock skew) and the fault seed are carried over from the recorded spec's plan.
    A message with several recorded faults keeps one (a drop first, else delay, dup, reorder):
    the firmware's script holds one decision per message. With `timing` the record's late messages
    (`fates`) become `late` entries and its late steps (`stalls`) `stall` entries."""
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
    script = list(entries.values())
    if timing:
        script += timing_script(record)
    plan["script"] = sorted(script, key=lambda e: (e["i"], _PHASE_ORDER.get(e.get("p"), 9), e.get("p") or "",
                                                   e["src"], e.get("dst", -1), e["kind"]))
    return plan


def timing_script(record):
    """`late` and `stall` script entries: what the host's timing did to the recorded run."""
    rec = record.data
    fates = rec.get("fates")
    if fates is None:
        fates = message_fates(record)
    stalls = rec.get("stalls")
    if stalls is None:
        stalls = step_stalls(record)
    out = []
    for f in fates.get("late") or []:
        entry = {"src": int(f["src"]), "dst": int(f["dst"]), "p": f["p"], "i": int(f["i"]), "kind": LATE_KIND}
        if f.get("fate") == "stale":
            entry["ms"] = f.get("ms") or 0.0
        out.append(entry)
    for st in stalls:
        out.append({"src": int(st["n"]), "i": int(st["i"]), "kind": STALL_KIND, "ms": st["ms"]})
    return out


def replay_spec(record, timing=True):
    """The record's run spec (a RunSpec) with its fault plan replaced by replay_plan(record)."""
    rec = record.data
    spec = copy.deepcopy(rec.get("spec") or {})
    if not spec.get("nodes"):
        spec["nodes"] = len(rec.get("nodes") or {})
    if spec.get("seed") is None and rec.get("seed") is not None:
        spec["seed"] = rec["seed"]
    spec.pop("deadline_s", None)
    spec["faults"] = replay_plan(record, timing)
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


STEP_FIELDS = ("v", "got", "miss", "skipped")


def _steps(record, node):
    """{(step, field): value} of a node's step ends and per-step values."""
    out = {}
    for e in record.steps(node):
        for k in STEP_FIELDS:
            if k in e:
                v = e[k]
                out[(e.get("i"), k)] = sorted(v) if isinstance(v, list) and k in ("got", "miss") else v
    for i, v in record.step_values(node).items():
        out[(i, "v")] = v
    return out


def first_divergence(recorded, replayed, rel=0.0):
    """The first step (then node) whose outcome differs, as text, or None: a step's value, the
    peers it heard or missed, whether it was skipped; then a node's status or result."""
    noun = "slot" if any(recorded.slot_starts(n) for n in recorded.node_ids()) else "round"
    diffs = []
    for n in sorted(set(recorded.node_ids()) | set(replayed.node_ids())):
        a, b = _steps(recorded, n), _steps(replayed, n)
        for key in set(a) | set(b):
            va, vb = a.get(key), b.get(key)
            if not same_value(va, vb, rel):
                diffs.append((key[0] if isinstance(key[0], int) else -1, n, key[1], va, vb))
    if diffs:
        i, n, what, va, vb = min(diffs, key=lambda d: (d[0], d[1], STEP_FIELDS.index(d[2])))
        return "node %d, %s %d: %s recorded %s, replay %s" % (n, noun, i, what, _short(va), _short(vb))
    for i, s0, r0, s1, r1, ok in compare(recorded, replayed, rel):
        if not ok:
            return "node %d: recorded %s %s, replay %s %s" % (i, s0, _short(r0), s1, _short(r1))
    return None


def expectations_of(record):
    """The [expect] table the record was judged on (kept by the pipeline's analyse), or None."""
    expect = record.data.get("expect")
    return expect if isinstance(expect, dict) else None


def raw_verdict(record, expect):
    """The record's verdict on `expect`, without the host's judgement (its findings as they are)."""
    from flhil.harness.run import pipeline
    spec = RunSpec(**{k: v for k, v in record.spec.items()})
    clean = [run_virtual(pipeline.clean_spec(spec))] if pipeline.needs_clean_run(expect) else ()
    verdict = pipeline.verdict_of(record, expect, spec, clean)
    verdict.inconclusive = False
    return verdict


def failed_set(verdict):
    return sorted({(f.check, f.node, f.round) for f in verdict.failures}, key=str)


class Replay:
    """A replay's outcome: the new record, the node rows, whether the injected faults match, and,
    for a record with expectations, both verdicts and whether the replay reproduces the recorded
    one (the same checks fail, on the same nodes and rounds)."""

    def __init__(self, recorded, new, rel, timing):
        self.recorded, self.new, self.timing = recorded, new, timing
        self.rows = compare(recorded, new, rel)
        self.faults_match = replay_plan(recorded, False)["script"] == replay_plan(new, False)["script"]
        self.divergence = first_divergence(recorded, new, rel)
        expect = expectations_of(recorded)
        self.verdicts = None
        if expect is not None:
            self.verdicts = (raw_verdict(recorded, expect), raw_verdict(new, expect))

    @property
    def reproduced(self):
        if self.verdicts is None:
            return all(r[-1] for r in self.rows)
        a, b = self.verdicts
        return a.ok == b.ok and failed_set(a) == failed_set(b)


def replay(recorded, rel=0.0, timing=True, **run_kw):
    """Replay a recorded run (RunRecord) in virtual time; returns a `Replay`. `timing=False`
    replays the injected faults only: the same run on an idle host."""
    new = run_virtual(replay_spec(recorded, timing), **run_kw)
    new.data["replay_of"] = {"run": recorded.run_id, "backend": recorded.backend, "timing": timing,
                             "trace_hash": recorded.data.get("trace_hash")}
    return Replay(recorded, new, rel, timing)


def _short(v, width=40):
    text = json.dumps(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def _failures_text(verdict):
    return "; ".join(str(f) for f in verdict.failures) or "all checks pass"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fl-hil replay",
                                 description="Replay a run record in virtual time: its injected faults and "
                                             "what the host's timing did to it.")
    ap.add_argument("record", help="run record JSON (or a run directory)")
    ap.add_argument("--idle", action="store_true",
                    help="replay the injected faults only, as on an idle host (no late messages, no stalls)")
    ap.add_argument("--out", help="write the replay's run record here")
    ap.add_argument("--rel", type=float, default=0.0,
                    help="relative tolerance for results (default 0: exact)")
    args = ap.parse_args(argv)
    try:
        recorded = RunRecord.load(args.record)
        if not recorded.spec:
            raise ValueError("not a run record (no spec)")
        result = replay(recorded, args.rel, timing=not args.idle)
    except (OSError, ValueError, KeyError) as e:
        print("replay: %s: %s" % (args.record, e), file=sys.stderr)
        return 2
    new = result.new
    script = new.spec["faults"].get("script", [])
    timing = sum(1 for e in script if e["kind"] in (LATE_KIND, STALL_KIND))
    print("replayed %s (%s) in virtual time: %d scripted faults (%d of them late messages and stalls), "
          "stopped: %s at %.3f s" % (recorded.run_id, recorded.backend, len(script), timing,
                                     new["virtual"]["stopped"], new["virtual"]["t_end_s"]))
    print("%4s  %-8s %-40s %-8s %-40s %s" % ("node", "recorded", "", "replay", "", "match"))
    for i, s0, r0, s1, r1, ok in result.rows:
        print("%4d  %-8s %-40s %-8s %-40s %s" % (i, s0, _short(r0), s1, _short(r1), "yes" if ok else "NO"))
    print("injected faults %s" % ("match" if result.faults_match else "differ"))
    if result.verdicts is not None:
        a, b = result.verdicts
        print("recorded verdict: %s: %s" % ("pass" if a.ok else "FAIL", _failures_text(a)))
        print("replay verdict:   %s: %s" % ("pass" if b.ok else "FAIL", _failures_text(b)))
    if result.reproduced:
        print("verdict reproduced" if result.verdicts is not None else "results match (no expectations in the record)")
    else:
        print("verdict NOT reproduced" if result.verdicts is not None else "results DIFFER")
    if result.divergence:
        print("first divergence: %s" % result.divergence)
    if args.out:
        new.save(args.out)
        print("wrote", args.out)
    return 0 if result.reproduced else 1


if __name__ == "__main__":
    sys.exit(main())
