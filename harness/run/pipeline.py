"""The one path of a run, for every backend and every caller (plugin, CLI, scripts):

    spec ──> backend.place (where each node runs) ──> run configs, built once
         ──> backend.run (nodes feed the collector) ──> collector.finish ──> RunRecord
         ──> analyse (the [expect] registry) ──> Verdict

`step(name)` is a context-manager factory wrapped around each phase: the pytest plugin passes
Allure's `allure.step`, the CLI nothing."""
import contextlib
import time

from flhil.harness.results import oracles
from flhil.harness.results.expectations import Evidence, evaluate
from flhil.harness.run.collector import Collector
from flhil.harness.run.configs import node_configs, run_identity
from flhil.harness.run import apps
from flhil.harness.run.spec import RunSpec


def _no_step(_name):
    return contextlib.nullcontext()


def execute(spec, backend, run_dir=None, name=None, step=None):
    """Place, configure and run one spec on a backend; returns the RunRecord (also saved as
    record.json in the run's directory when it has one)."""
    spec = RunSpec.of(spec).replace()  # the run's own copy: configs resolve parts of it for the
    step = step or _no_step            # slots (HeteroFL's levels), which the record then holds
    slots = []
    try:
        with step("provision and deploy"):
            t = time.monotonic()
            if run_dir is None and hasattr(backend, "run_dir"):
                run_dir = backend.run_dir(name or spec.app)
            slots = backend.place(spec, run_dir)
            provision_s = time.monotonic() - t
        run_id, key = run_identity(spec, backend.deterministic)
        configs = node_configs(spec, slots, run_id, key, wifi=backend.wifi())
        collector = Collector(spec, slots, run_id, backend.label(slots), run_dir,
                              keep_events=getattr(backend, "keep_events", True),
                              keep_trace=backend.deterministic)
        collector.phases["provision"] = provision_s
        with step("run %s on %d nodes" % (spec.app, spec.nodes)):
            try:
                unfinished, stopped, extra = backend.run(spec, configs, collector)
            except BaseException:
                # Ctrl-C, SIGTERM, a harness bug: what the nodes said so far is kept
                collector.finish(unfinished=range(spec.nodes), stopped="interrupted")
                raise
        return collector.finish(unfinished, stopped, extra)
    finally:
        if slots:
            backend.release(slots)


def oracle_values(spec, reference=None):
    """Fault-free reference values: from the user's `reference` (FILE.py:FUNCTION or FILE.json)
    when given, else for the spec's algorithm; None if theory gives none."""
    if isinstance(reference, str):
        return apps.reference_values(reference, spec.nodes, spec.args)
    if spec.user_app is not None or spec.flower is not None:
        return None
    try:
        return oracles.oracle_for(spec.algorithm, spec.nodes, spec.args, seed=spec.seed, server=spec.server)
    except (ValueError, KeyError):
        return None


def analyse(record, expect, spec, clean=(), step=None):
    """The verdict of a run on its [expect] table (host-aware: results/host.py); `clean`:
    fault-free records of the same spec."""
    step = step or _no_step
    with step("analyse"):
        verdict = verdict_of(record, expect, spec, clean)
        keep_verdict(record, expect, verdict)
        return verdict


def verdict_of(record, expect, spec, clean=()):
    """The verdict of a record on an [expect] table, the record left as it is."""
    spec = RunSpec.of(spec)
    oracle = None
    if "oracle" in expect or "accuracy" in expect:
        try:
            oracle = oracle_values(spec, expect.get("oracle"))
        except apps.AppError as e:
            oracle = e  # the oracle finding says why
        if oracle is None and spec.user_app is not None and expect.get("oracle") is True:
            oracle = apps.AppError("app %s has no built-in reference: give oracle = \"FILE.py:FUNCTION\" "
                                   "or \"FILE.json\"" % spec.app_name)
    return evaluate(record, expect, Evidence(oracle=oracle, clean=list(clean)))


def keep_verdict(record, expect, verdict):
    """The record keeps what it was judged on and the verdict (so `fl-hil replay` can tell whether
    a replay reproduces it), in its record.json too."""
    record.data["expect"] = dict(expect)
    record.data["verdict"] = verdict.to_dict()
    if getattr(record, "path", None) is not None:
        record.save(record.path)


def spec_for(case):
    """The run spec of a scenario case."""
    s = case.scenario
    return RunSpec(app=s.app, nodes=s.nodes.count, algorithm=s.algorithm, server=s.nodes.server,
                   args=dict(s.args), timing=dict(s.timing), faults=dict(case.faults),
                   seed=case.seed, strict=s.strict, max_frame_kb=s.nodes.max_frame_kb, heterofl=s.heterofl,
                   **({"flower": s.flower} if s.flower is not None else {}))


def needs_clean_run(expect):
    return "accuracy_vs_clean" in expect


def clean_spec(spec):
    """The same spec without faults: the baseline of `accuracy_vs_clean`."""
    return spec.replace(faults={})
