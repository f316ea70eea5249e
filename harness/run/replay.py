"""Replay a recorded run in virtual time with exactly its recorded message faults.

    python -m harness.replay_cli RECORD.json [--out NEW.json] [--rel 0]

The record may come from any backend (virtual, emulated, PC, hardware): its fault timeline becomes a
`[[faults.script]]` plan (harness.virtual.replay_plan), node-level faults come from its spec. Prints
each node's recorded and replayed status and result and whether they match; exit status 0 when
every node matches, 1 when some differ, 2 on a usage or input error."""
import argparse
import json
import math
import sys

from flhil.harness.run.virtual import replay_plan, replay_spec, run_virtual


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
    ids = sorted(set(int(k) for k in recorded.get("nodes", {})) | set(int(k) for k in replayed["nodes"]))
    for i in ids:
        a = recorded.get("nodes", {}).get(str(i)) or {}
        b = replayed["nodes"].get(str(i)) or {}
        match = a.get("status") == b.get("status") and same_value(a.get("result"), b.get("result"), rel)
        rows.append((i, a.get("status"), a.get("result"), b.get("status"), b.get("result"), match))
    return rows


def replay(recorded, rel=0.0, **run_kw):
    """(replayed record, comparison rows, faults match) for a recorded run (dict). The message
    faults match when the replay's fault timeline turns into the same script as the record's."""
    new = run_virtual(replay_spec(recorded), **run_kw)
    new["replay_of"] = {"run": recorded.get("run"), "backend": recorded.get("backend"),
                        "trace_hash": recorded.get("trace_hash")}
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
        with open(args.record, encoding="utf-8") as f:
            recorded = json.load(f)
        if not isinstance(recorded, dict) or not isinstance(recorded.get("spec"), dict):
            raise ValueError("not a run record (no spec)")
        new, rows, faults_match = replay(recorded, args.rel)
    except (OSError, ValueError, KeyError) as e:
        print("replay: %s: %s" % (args.record, e), file=sys.stderr)
        return 2
    script = new["spec"]["faults"].get("script", [])
    print("replayed %s (%s) in virtual time: %d scripted message faults, stopped: %s at %.3f s"
          % (recorded.get("run"), recorded.get("backend"), len(script), new["virtual"]["stopped"],
             new["virtual"]["t_end_s"]))
    print("%4s  %-8s %-40s %-8s %-40s %s" % ("node", "recorded", "", "replay", "", "match"))
    for i, s0, r0, s1, r1, ok in rows:
        print("%4d  %-8s %-40s %-8s %-40s %s" % (i, s0, _short(r0), s1, _short(r1), "yes" if ok else "NO"))
    all_match = all(r[-1] for r in rows)
    print("results %s; message faults %s" % ("match" if all_match else "DIFFER",
                                              "match" if faults_match else "differ"))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(new, f)
        print("wrote", args.out)
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main())
