"""Fault-schedule search: let hypothesis look for a fault plan under which a small virtual-time run
breaks a property, shrink it to a minimal schedule, and write it out as a scenario file that can
be committed as a regression test.

    from flhil.harness.run.search import base_spec, expect_property, find_counterexample, write_scenario
    spec = base_spec("decentralized", nodes=4)
    prop = expect_property({"all_return": True, "mass_conserved": {"tol": 1e-9}})
    plan, message = find_counterexample(spec, prop, max_examples=200)
    write_scenario("scenarios/regressions/x.toml", spec, plan, expect, message)

CLI: fl-hil search --algorithm decentralized --nodes 4 --out scenarios/regressions/x.toml

Wider searches run as shards on the sweep's executors (`flhil.harness.run.executor`: a local Ray,
a Ray cluster, worker processes): `search(spec, expect, shards=8, executor=...)`, or
`fl-hil search --shards 8 [--address ray://head:10001]`. Hypothesis picks each candidate plan from
what the last ones did, so one search is sequential; a shard is a search of its own with its own
seed (shard 0 is the search without shards), its candidate runs in the worker that runs it. The
answer is the smallest plan any shard found (the lowest shard on a tie), whatever order they end in.

A property is a function record -> None (holds) or a message (broken); `expect_property` makes one
from a scenario's [expect] table through flhil.harness.results.checks, so what the search finds is exactly what
the committed scenario asserts. Runs are in virtual time and deterministic, so a plan that breaks
the property once breaks it every time: shrinking and replaying are exact.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys

from flhil.harness.results.record import RunRecord
from flhil.harness.run.virtual import run_virtual
from flhil.vocab import ALGORITHMS as ALGORITHM_APPS

# what each algorithm's regression search asserts by default (scenario [expect] keys)
DEFAULT_EXPECT = {
    "decentralized": {"all_return": True, "mass_conserved": {"tol": 1e-9}},
    "centralized": {"all_return": True, "oracle": True},
    "getmeas": {"all_return": True, "oracle": True},
    "tdm": {"all_return": True, "oracle": True},
    "fedmean": {"all_return": True, "oracle": True},
    "logreg": {"all_return": True},
}
SEARCH_KINDS = ("loss", "partition", "dropout", "dup")


# -- specs and properties ----------------------------------------------------------------------

def base_spec(algorithm, nodes=4, iterations=3, seed=1, timing=None, args=None, strict=False):
    """A small virtual-time run of `algorithm` to search fault plans over."""
    a = {"iterations": iterations} if algorithm not in ("getmeas", "tdm") else \
        {"slots": iterations, "topology": "ring"}
    a.update(args or {})
    t = {"round_ms": 500, "recv_ms": 1000, "linger_ms": 200}
    t.update(timing or {})
    return {"algorithm": algorithm, "app": ALGORITHM_APPS[algorithm], "nodes": nodes, "server": 0,
            "args": a, "timing": t, "faults": {}, "seed": seed, "strict": strict}


def expect_property(expect):
    """A property from a scenario [expect] table: None when every expectation holds, else the
    failures, one per line."""
    from flhil.harness.results.expectations import evaluate

    def prop(record):
        report = evaluate(record if isinstance(record, RunRecord) else RunRecord(record), expect)
        if report.ok:
            return None
        return "\n".join(str(f) for f in report.failures)
    return prop


def check(spec, plan, prop):
    """Run spec with the fault plan in virtual time; (record, message or None)."""
    s = copy.deepcopy(spec)
    s["faults"] = plan
    record = run_virtual(s)
    return record, prop(record)


# -- fault-plan strategies -------------------------------------------------------------------------

def plan_from_entries(entries):
    """A fault plan from a list of (kind, entry) pairs. A node's second dropout that would
    overlap its first is left out (the plan schema forbids overlapping dropouts)."""
    plan = {}
    busy = {}
    for kind, e in entries:
        if kind == "dropouts":
            node = e["node"]
            start, end = e["at"], e["at"] + e["down"] if "down" in e else math.inf
            if any(s < end and start < f for s, f in busy.get(node, ())):
                continue
            busy.setdefault(node, []).append((start, end))
        plan.setdefault(kind, []).append(dict(e))
    return plan


def plan_size(plan):
    """Number of fault entries in a plan (links, partitions, dropouts, ...)."""
    return sum(len(v) for v in plan.values() if isinstance(v, list))


def fault_plans(nodes, steps, kinds=SEARCH_KINDS, max_entries=4):
    """Hypothesis strategy of fault plans for a run of `nodes` nodes and `steps` rounds or slots.
    Every choice shrinks towards the simplest: fewer entries, certain loss (probability 1), no
    round window, low node ids, permanent dropouts last."""
    from hypothesis import strategies as st

    node = st.integers(0, nodes - 1)
    step = st.integers(0, steps - 1)
    window = st.one_of(st.none(), st.tuples(step, step).map(lambda r: [min(r), max(r)]))

    def link(field, probs):
        def build(src, dst, p, rounds):
            e = {"src": src, "dst": dst, field: p}
            if rounds is not None:
                e["rounds"] = rounds
            return ("links", e)
        return st.builds(build, node, node, st.sampled_from(probs), window) \
            .filter(lambda kv: kv[1]["src"] != kv[1]["dst"])

    def partition(side, rounds):
        a = sorted(set(side))
        b = [j for j in range(nodes) if j not in a]
        e = {"groups": [a, b]}
        if rounds is not None:
            e["rounds"] = rounds
        return ("partitions", e)

    def dropout(n, at, down):
        e = {"node": n, "at": at}
        if down is not None:
            e["down"] = down
        return ("dropouts", e)

    options = []
    if "loss" in kinds:
        options.append(link("loss", [1.0, 0.5, 0.25]))
    if "partition" in kinds and nodes >= 2:
        options.append(st.builds(partition, st.lists(node, min_size=1, max_size=nodes - 1, unique=True),
                                 window))
    if "dropout" in kinds:
        options.append(st.builds(dropout, node, step, st.one_of(st.integers(1, steps), st.none())))
    if "dup" in kinds:
        options.append(link("dup", [1.0, 0.5]))
    entry = st.one_of(*options)
    return st.lists(entry, min_size=1, max_size=max_entries).map(plan_from_entries)


def find_counterexample(spec, prop, max_examples=200, kinds=SEARCH_KINDS, max_entries=4, shard=0):
    """Search fault plans for one under which `prop` fails on `spec` (run in virtual time), shrunk
    by hypothesis to a minimal one. Returns (plan, message), or (None, None) when no plan among
    `max_examples` breaks the property. Deterministic (no example database; shard 0 derandomized,
    shard k seeded with k, so shards explore different plans)."""
    import random
    from hypothesis import HealthCheck, find, settings
    from hypothesis.errors import NoSuchExample

    spec = copy.deepcopy(spec)
    steps = spec["args"].get("iterations") or spec["args"].get("slots") or 1
    strategy = fault_plans(spec["nodes"] if isinstance(spec["nodes"], int) else spec["nodes"]["count"],
                           steps, kinds, max_entries)

    def breaks(plan):
        return check(spec, plan, prop)[1] is not None

    cfg = settings(max_examples=max_examples, database=None, derandomize=shard == 0, deadline=None,
                   suppress_health_check=list(HealthCheck))
    try:
        plan = find(strategy, breaks, settings=cfg, random=random.Random(shard) if shard else None)
    except NoSuchExample:
        return None, None
    return plan, check(spec, plan, prop)[1]


def search_shard(task):
    """One shard of a search, in a worker: {"plan", "message"} (both None: nothing broke)."""
    plan, message = find_counterexample(task["spec"], expect_property(task["expect"]), task["max_examples"],
                                        tuple(task["kinds"]), task["max_entries"], task["shard"])
    return {"shard": task["shard"], "plan": plan, "message": message}


def search(spec, expect, max_examples=200, kinds=SEARCH_KINDS, max_entries=4, shards=1, executor=None,
           timeout_s=600.0, on_shard=None):
    """`shards` searches of `max_examples` plans each, on `executor` (default: this process).
    Returns (plan, message, broken): the smallest plan that broke `expect` (None when none did)
    and the messages of shards that did not finish (hung, worker died). `on_shard(index, Result)`
    hears of each shard as it ends."""
    from flhil.harness.run.executor import InlineExecutor
    tasks = [{"spec": spec, "expect": expect, "max_examples": max_examples, "kinds": list(kinds),
              "max_entries": max_entries, "shard": k} for k in range(shards)]
    found, broken = [], []
    for index, result in (executor or InlineExecutor()).imap(search_shard, tasks, timeout_s):
        if on_shard:
            on_shard(index, result)
        if not result.ok:
            broken.append("shard %d (%s): %s" % (index, result.where or "worker", result.message))
        elif result.value["plan"] is not None:
            found.append((plan_size(result.value["plan"]), index, result.value))
    if not found:
        return None, None, broken
    best = min(found, key=lambda f: f[:2])[2]
    return best["plan"], best["message"], broken


# -- scenario files --------------------------------------------------------------------------------

def _toml_key(k):
    k = str(k)
    if k and all(c.isalnum() or c in "_-" for c in k):
        return k
    return _toml_str(k)


def _toml_str(s):
    out = ['"']
    for c in s:
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (_toml_key(k), toml_value(x)) for k, x in v.items()) + " }"
    raise TypeError("no TOML form for %r" % (v,))


def _table(lines, name, table, array=False):
    lines.append("")
    lines.append(("[[%s]]" if array else "[%s]") % name)
    for k, v in table.items():
        lines.append("%s = %s" % (_toml_key(k), toml_value(v)))


def scenario_toml(spec, plan, expect, name=None, description=None):
    """A scenario file (design.md, "Scenario file") for the run spec with this fault plan."""
    algorithm = spec.get("algorithm") or next((a for a, app in ALGORITHM_APPS.items()
                                               if app == spec.get("app")), spec.get("app"))
    lines = ["# Written by harness.search: a minimal fault schedule that broke the expectations below.",
             "# Commit it as a regression test; it runs on every backend."]
    lines.append("name = %s" % _toml_str(name or "regression: %s, %d nodes" % (algorithm, spec["nodes"])))
    lines.append("algorithm = %s" % _toml_str(algorithm))
    lines.append("app = %s" % _toml_str(spec["app"]))
    if description:
        lines.append("description = %s" % _toml_str(description))
    lines.append("seeds = [%d]" % spec.get("seed", 1))
    lines.append("strict = %s" % toml_value(bool(spec.get("strict", False))))
    _table(lines, "nodes", {"count": spec["nodes"], "server": spec.get("server", 0)})
    if spec.get("args"):
        _table(lines, "args", spec["args"])
    if spec.get("timing"):
        _table(lines, "timing", spec["timing"])
    scalars = {k: v for k, v in plan.items() if not isinstance(v, list)}
    lists = {k: v for k, v in plan.items() if isinstance(v, list)}
    lines.append("")
    lines.append("[faults]")
    for k, v in scalars.items():
        lines.append("%s = %s" % (_toml_key(k), toml_value(v)))
    for k, entries in lists.items():
        for e in entries:
            _table(lines, "faults.%s" % _toml_key(k), e, array=True)
    _table(lines, "expect", expect)
    return "\n".join(lines) + "\n"


def write_scenario(path, spec, plan, expect, message=None, name=None):
    """Write the scenario file; the failure message goes into its description."""
    description = None
    if message:
        description = "Found by harness.search; it failed with: " + " | ".join(message.splitlines())
    text = scenario_toml(spec, plan, expect, name=name, description=description)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def spec_from_scenario(doc, seed=None):
    """A virtual-time run spec from a parsed scenario file (a dict as tomllib gives)."""
    nodes = doc.get("nodes") or {}
    algorithm = doc.get("algorithm")
    seeds = doc.get("seeds") or [1]
    return {"algorithm": algorithm, "app": doc.get("app") or ALGORITHM_APPS[algorithm],
            "nodes": nodes.get("count"), "server": nodes.get("server", 0),
            "args": dict(doc.get("args") or {}), "timing": dict(doc.get("timing") or {}),
            "faults": copy.deepcopy(doc.get("faults") or {}),
            "seed": seeds[0] if seed is None else seed, "strict": bool(doc.get("strict", False))}


def run_scenario_file(path, seed=None):
    """Run a scenario file's first seed in virtual time: (record, failure message or None)."""
    import tomllib
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    spec = spec_from_scenario(doc, seed)
    record = run_virtual(spec)
    return record, expect_property(doc.get("expect") or {})(record)


# -- CLI -------------------------------------------------------------------------------------------

def _search_on_executor(args, spec, expect, kinds):
    if args.shards == 1 and args.executor in ("auto", "inline") and not args.address:
        return search(spec, expect, args.max_examples, kinds)
    from flhil.harness.errors import HarnessError
    from flhil.harness.run.executor import make_executor
    try:
        executor = make_executor(args.executor, args.jobs, args.address)
    except HarnessError as e:
        raise SystemExit("fl-hil search: %s" % e) from None
    with executor:
        print(executor.note, flush=True)

        def said(index, result):
            print("shard %d: %s" % (index, "broken" if not result.ok else
                                    "nothing broke" if result.value["plan"] is None else
                                    "%d entries" % plan_size(result.value["plan"])), flush=True)
        return search(spec, expect, args.max_examples, kinds, shards=args.shards, executor=executor,
                      timeout_s=args.shard_timeout, on_shard=said)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="fl-hil search",
                                 description="Search fault schedules that break an algorithm's expectations.")
    ap.add_argument("--algorithm", default="decentralized", choices=sorted(DEFAULT_EXPECT))
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=3, help="rounds (or TDM slots)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--max-examples", type=int, default=200)
    ap.add_argument("--kinds", default=",".join(SEARCH_KINDS),
                    help="fault kinds to search over (comma-separated: %s)" % ",".join(SEARCH_KINDS))
    ap.add_argument("--out", help="write the minimal failing schedule as a scenario TOML file here")
    ap.add_argument("--shards", type=int, default=1,
                    help="independent searches of --max-examples plans each, run on the executor (default 1: here)")
    ap.add_argument("--executor", choices=("auto", "ray", "processes", "inline"), default="auto",
                    help="with --shards > 1: where the shards run (auto: Ray when installed, else processes)")
    ap.add_argument("--address", default=None, help="a Ray cluster: auto, host:port or ray://host:port")
    ap.add_argument("-j", "--jobs", type=int, default=None, help="CPUs of a local Ray or worker processes (default 2)")
    ap.add_argument("--shard-timeout", type=float, default=600.0, help="seconds a shard may take")
    args = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    bad = [k for k in kinds if k not in SEARCH_KINDS]
    if bad:
        ap.error("unknown fault kinds: %s" % ", ".join(bad))
    if args.shards < 1:
        ap.error("--shards must be at least 1")
    spec = base_spec(args.algorithm, args.nodes, args.iterations, args.seed)
    expect = DEFAULT_EXPECT[args.algorithm]
    try:
        plan, message, broken = _search_on_executor(args, spec, expect, kinds)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    for line in broken:
        print("broken %s" % line, file=sys.stderr)
    if plan is None:
        print("no fault schedule among %d x %d examples broke %s" % (args.shards, args.max_examples, sorted(expect)))
        return 2 if broken else 0
    print("minimal failing fault schedule (%d entries): %s" % (plan_size(plan), plan))
    print(message)
    if args.out:
        write_scenario(args.out, spec, plan, expect, message)
        print("wrote", args.out)
    return 1


if __name__ == "__main__":
    sys.exit(main())
