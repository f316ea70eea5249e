"""Sweeps: many scenario cases (files x params x seeds) on one backend, run by an executor (a local
Ray, a Ray cluster, worker processes or this process), resumable, gathered into one Allure report.

    cases = plan(["my-scenarios/"], seeds=[1, 2, 3], backend="virtual")
    with make_executor("auto", jobs=2) as executor:
        summary = run_sweep(cases, "reports/sweep", executor)

Each case runs the one path of a run (`pipeline.spec_for`, `execute`, `analyse`), as `fl-hil run`
and the pytest plugin do, so its verdict is theirs. A worker gets the scenario's text, not its
path, and sends back everything the case left (verdict, record, the Allure test with its plots):
the driver writes it, so a cluster needs no shared file system.

The output directory (`out`):

    cases/<key>/case.json         identity, status (passed, failed, broken), findings; written last
    cases/<key>/record.json       the run record
    cases/<key>/allure/           the case's Allure test and attachments
    allure-results/               this sweep's cases, gathered for `fl-hil report`
    summary.json                  every case of the sweep and its status

`key` is a content hash of (scenario file text, case id, seed, backend, firmware hash): a case that
passed or failed is not run again while all of these stay the same. A broken case (it hung, its
worker died, the harness raised) is run again next time.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flhil.harness.errors import ConfigError

DEFAULT_CASE_TIMEOUT_S = 300.0
WALL_SHARE = 0.8  # of a case's timeout, the virtual backend's own wall limit: it stops a slow run
# itself, with a record that says so, before the executor has to kill the worker
STORE_VERSION = 1  # part of every key: what a case stores changed, old results are not reused
BACKENDS = ("virtual", "realtime")
PASSED, FAILED, BROKEN = "passed", "failed", "broken"
DONE = (PASSED, FAILED)


@functools.lru_cache(maxsize=1)
def firmware_hash():
    from flhil.harness.report.allure import firmware_hash as digest
    return digest()


@dataclass(frozen=True)
class SweepCase:
    """One case of a sweep: everything a worker needs to run it (it pickles)."""
    path: str  # the scenario file, as the user named it
    text: str  # its text: a worker parses this, not the file
    case: str  # the case id (params and seed)
    seed: int
    backend: str  # "virtual" or "realtime"
    mode: str  # "sim" or "hil", as the plugin's marker
    firmware: str
    key: str
    timeout_s: float = DEFAULT_CASE_TIMEOUT_S

    @property
    def label(self):
        return "%s %s[%s]" % (self.path, self.mode, self.case)

    @property
    def full_name(self):
        return "%s#%s[%s]" % (self.path, self.mode, self.case)


def case_key(text, case_id, seed, backend, firmware):
    blob = json.dumps([STORE_VERSION, text, case_id, seed, backend, firmware], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def scenario_files(paths):
    """The scenario files named: files as given, directories by every *.toml below them (sorted).
    ConfigError for a path that does not exist or a directory without scenario files."""
    files = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("*.toml"))
            if not found:
                raise ConfigError(p, "", "no scenario files (*.toml) in this directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(p, "", "no such file or directory")
    return [_shown(f) for f in dict.fromkeys(f.resolve() for f in files)]


def _shown(path):
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive
        return str(path)


def plan(paths, seeds=None, backend="virtual", hil=False, lab_text="", timeout_s=DEFAULT_CASE_TIMEOUT_S):
    """The cases of a sweep, in file order, then each file's case order. Every file is validated
    here (ConfigError names the file, key and line), so a broken file stops the sweep before it
    starts. `seeds` replace the files' seeds; `lab_text` (real time) is part of each case's key."""
    from flhil.harness.config.scenario import parse_scenario
    if backend not in BACKENDS:
        raise ValueError("unknown backend %r: %s" % (backend, " or ".join(BACKENDS)))
    mode = "hil" if hil else "sim"
    backend_id = backend if backend == "virtual" else "%s:%s:%s" % (
        backend, mode, hashlib.sha256(lab_text.encode("utf-8")).hexdigest()[:16])
    firmware = firmware_hash()
    cases = []
    for path in scenario_files(paths):
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(path, "", "cannot read the file: %s" % e) from None
        for c in parse_scenario(text, path).cases(seeds=seeds):
            cases.append(SweepCase(path, text, c.id, c.seed, backend, mode, firmware,
                                   case_key(text, c.id, c.seed, backend_id, firmware), timeout_s))
    return cases


# ------------------------------------------------------------------ one case, in a worker

def run_case(case, lab=None):
    """Run one case through the pipeline; what it left, as a picklable dict. `lab`: the Lab of a
    real-time sweep (which runs in the process that holds the lab)."""
    from flhil.harness.config.scenario import parse_scenario
    from flhil.harness.report import plots
    from flhil.harness.report import allure_results
    from flhil.harness.run import pipeline
    from flhil.harness.run.backend import make_backend
    from flhil.harness.secrets import redact

    scenario_case = next(c for c in parse_scenario(case.text, case.path).cases(seeds=[case.seed])
                         if c.id == case.case)
    spec = pipeline.spec_for(scenario_case)
    if case.backend == "virtual":
        backend = make_backend("virtual", max_wall_s=case.timeout_s * WALL_SHARE)
    else:
        backend = make_backend("realtime", lab=lab, boards=scenario_case.nodes.boards, hil=case.mode == "hil")
    start = time.time()
    clean = []
    if pipeline.needs_clean_run(scenario_case.expect):
        clean = [pipeline.execute(pipeline.clean_spec(spec), backend, name="clean-" + case.case)]
    record = pipeline.execute(spec, backend, name=case.case)
    verdict = pipeline.analyse(record, scenario_case.expect, spec, clean=clean)
    secrets = backend.secrets()
    parameters = {"mode": case.mode, **scenario_case.params, "seed": scenario_case.seed}
    target = plots.plot_target(record, pipeline.oracle_values(spec), scenario_case.expect)
    test = allure_results.collect(spec, record, verdict, parameters, "%s %s[%s]" % (
        scenario_case.name, case.mode, case.case), scenario_case.scenario.description, target, secrets)
    stop = time.time()
    return {"ok": verdict.ok, "verdict": verdict.to_dict(), "summary": verdict.summary(),
            "failures": [str(f) for f in verdict.failures], "record": redact(record.to_json(), secrets),
            "test": test, "firmware": firmware_hash(), "start": start, "stop": stop}


# ------------------------------------------------------------------ what finished, on disk

class CaseStore:
    """The cases of sweeps under one output directory, by key."""

    def __init__(self, out):
        self.root = Path(out) / "cases"

    def dir(self, key):
        return self.root / key

    def load(self, key):
        """The case.json of a case, or None when it never finished."""
        try:
            return json.loads((self.dir(key) / "case.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def is_done(self, key, rerun_failed=False):
        entry = self.load(key)
        return entry is not None and entry["status"] in ((PASSED,) if rerun_failed else DONE)

    def save(self, case, status, message, outcome=None, where=""):
        """Keep what a case left; case.json goes last, so a case cut short is not counted done."""
        from flhil.harness.report import allure_results
        d = self.dir(case.key)
        (d / "case.json").unlink(missing_ok=True)
        shutil.rmtree(d / "allure", ignore_errors=True)
        (d / "allure").mkdir(parents=True)
        outcome = outcome or {}
        if outcome.get("record"):
            _write_atomic(d / "record.json", outcome["record"])
        allure_status = {PASSED: "passed", FAILED: "failed", BROKEN: "broken"}[status]
        allure_results.write(d / "allure", outcome.get("test") or {"title": case.label}, case.full_name,
                             allure_status, message=message or None,
                             start=_ms(outcome.get("start")), stop=_ms(outcome.get("stop")),
                             labels=[("suite", case.path)] + _worker_labels(where))
        entry = {"key": case.key, "scenario": case.path, "case": case.case, "seed": case.seed,
                 "backend": case.backend, "mode": case.mode, "firmware": case.firmware, "status": status,
                 "message": message, "where": where, "verdict": outcome.get("verdict"),
                 "wall_s": None if outcome.get("start") is None else outcome["stop"] - outcome["start"],
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_atomic(d / "case.json", json.dumps(entry, indent=1))
        return entry


def _worker_labels(where):
    """Allure's host and thread labels from an executor's "pid N on HOST"."""
    pid, _, host = where.partition(" on ")
    return [("host", host), ("thread", pid)] if host else []


def _ms(t):
    return None if t is None else int(t * 1000)


def _write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def judge(case, result):
    """(status, message, outcome, where) of a case from its executor Result."""
    where = result.where
    if result.kind == "timeout":
        return BROKEN, "hang: the sweep waited %gs for %s (seed %s) on %s: %s" % (
            case.timeout_s, case.label, case.seed, where or "its worker", result.message), None, where
    if result.kind != "ok":
        return BROKEN, "the case did not run to its verdict (%s):\n%s" % (where or "worker", result.message), \
            None, where
    outcome = result.value
    if outcome["firmware"] != case.firmware:
        return BROKEN, ("the worker (%s) runs firmware %s, this sweep %s: install the same fl-hil on every "
                        "machine of the cluster" % (where, outcome["firmware"][:12], case.firmware[:12])), None, where
    if outcome["ok"]:
        return PASSED, "", outcome, where
    replay = "replay with seed=%s" % case.seed
    return FAILED, "\n".join(outcome["failures"] + [replay]), outcome, where


# ------------------------------------------------------------------ the sweep

@dataclass
class SweepSummary:
    out: str
    total: int
    ran: int
    skipped: int
    passed: int
    failed: int
    broken: int
    interrupted: bool
    results_dir: str
    cases: list  # case.json entries of every case of the sweep (None: not run yet)

    @property
    def ok(self):
        return self.passed == self.total

    def to_dict(self):
        return asdict(self)


def run_sweep(cases, out, executor, progress=None, rerun_failed=False, fn=run_case, say=None):
    """Run the cases not done yet on `executor` (an Executor, or a function that makes one, called
    only when there is a case to run, and closed here); keep each case as it finishes; gather the
    sweep's Allure results, also when interrupted. Returns the SweepSummary; Ctrl-C propagates
    after what finished is kept and the executor is closed."""
    from flhil.harness.run.progress import Progress
    say = say or (lambda text: None)
    store = CaseStore(out)
    todo = [c for c in cases if not store.is_done(c.key, rerun_failed)]
    if len(todo) < len(cases):
        say("%d of %d cases already done in %s: not run again" % (len(cases) - len(todo), len(cases), out))
    ran = 0
    interrupted = True
    owned = None
    try:
        if todo and not hasattr(executor, "imap"):
            executor = owned = executor()
        if todo:
            say(executor.note)
            progress = progress or Progress(len(cases), skipped=len(cases) - len(todo))
        for index, result in executor.imap(fn, todo, max(c.timeout_s for c in todo)) if todo else ():
            case = todo[index]
            status, message, outcome, where = judge(case, result)
            store.save(case, status, message, outcome, where)
            ran += 1
            wall = "" if outcome is None else " (%.1fs)" % (outcome["stop"] - outcome["start"])
            head = message.splitlines()[0] if message else ""
            progress.case(status == PASSED, "%s %s%s%s" % (status.upper(), case.label, wall,
                                                          "  " + head if head else ""))
        interrupted = False
    finally:
        if progress is not None:
            progress.close()
        if owned is not None:
            owned.close()
        summary = _summarise(cases, out, store, ran, len(cases) - len(todo), interrupted)
    return summary


def _summarise(cases, out, store, ran, skipped, interrupted):
    entries = [store.load(c.key) for c in cases]
    statuses = [e["status"] if e else None for e in entries]
    results = gather_allure(out, cases, store)
    summary = SweepSummary(str(out), len(cases), ran, skipped, statuses.count(PASSED), statuses.count(FAILED),
                           statuses.count(BROKEN), interrupted, str(results), entries)
    _write_atomic(Path(out) / "summary.json", json.dumps(summary.to_dict(), indent=1))
    return summary


def gather_allure(out, cases, store):
    """`out/allure-results`: exactly the Allure tests of this sweep's cases (a case of an earlier,
    different sweep in the same directory stays in cases/ but not in the report)."""
    from flhil.harness.report.allure import write_results_metadata
    results = Path(out) / "allure-results"
    shutil.rmtree(results, ignore_errors=True)
    results.mkdir(parents=True)
    for case in cases:
        src = store.dir(case.key) / "allure"
        if not (store.dir(case.key) / "case.json").is_file():
            continue
        for f in src.iterdir():
            try:
                os.link(f, results / f.name)
            except OSError:
                shutil.copyfile(f, results / f.name)
    write_results_metadata(results)
    return results
