"""Running a scenario case end to end without pytest: spec, provision, run, analyse.

`step(name)` is a context-manager factory that wraps each phase; the pytest plugin passes Allure's
`allure.step`, the CLI passes nothing."""
import contextlib
import time

from flhil.harness.results.expectations import Evidence, evaluate
from flhil.harness.results import oracles
from flhil.harness.results.record import RunRecord
from flhil.harness.run.realtime import RunSpec


def spec_for(case, seed=None):
    """The run spec of a scenario case (optionally with another seed)."""
    s = case.scenario
    return RunSpec(app=s.app, nodes=s.nodes.count, algorithm=s.algorithm, server=s.nodes.server,
                   args=dict(s.args), timing=dict(s.timing), faults=dict(case.faults),
                   seed=case.seed if seed is None else seed, strict=s.strict)


def oracle_values(spec):
    """Fault-free reference values for the spec's algorithm, or None if theory gives none."""
    try:
        return oracles.oracle_for(spec.algorithm, spec.nodes, spec.args, seed=spec.seed, server=spec.server)
    except (ValueError, KeyError):
        return None


def execute(lab, spec, boards=None, hil=False, name=None, step=None):
    """Provision and run one spec; returns a RunRecord. Virtual specs need no lab."""
    step = step or (lambda _name: contextlib.nullcontext())
    if spec.backend == "virtual":
        from flhil.harness.run.virtual import run_virtual
        with step("run in virtual time"):
            return RunRecord(run_virtual(spec))
    with step("provision and deploy"):
        t = time.monotonic()
        run_dir = lab.run_dir(name or spec.app)
        nodes = lab.allocate(spec.nodes, boards, hil, run_dir)
        provision_s = time.monotonic() - t
    with step("run %s on %d nodes" % (spec.app, spec.nodes)):
        record = lab.run_on(spec, nodes, run_dir, hil)
    record["phases"]["provision"] = provision_s
    return RunRecord(record)


def analyse(record, expect, spec, clean=None, step=None):
    step = step or (lambda _name: contextlib.nullcontext())
    with step("analyse"):
        oracle = oracle_values(spec) if "oracle" in expect or "accuracy" in expect else None
        return evaluate(record, expect, Evidence(oracle=oracle, clean=[clean] if clean is not None else []))


def needs_clean_run(expect):
    return "accuracy_vs_clean" in expect


def clean_spec(spec):
    """The same spec without faults: the baseline of `accuracy_vs_clean`."""
    d = spec.to_dict()
    d["faults"] = {}
    return RunSpec(**d)
