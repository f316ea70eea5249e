"""The virtual-time backend and emulated boards agree where theory says they must: without
faults both give the exact oracle values (so each other's); with faults both give the same
verdict on the scenario's expectations. The faulted cases are ones whose verdict theory fixes
(partitions, dropouts, duplicates), not slot-lateness bounds that a loaded host can move."""
import os

import pytest

from flhil.harness.config.scenario import load_scenario
from flhil.harness.run import pipeline as scenario_run
from flhil.harness.run.backend import make_backend

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scenarios")
FAULT_FREE = ["centralized/clean", "decentralized/clean", "tdm/clean", "getmeas/clean", "logreg/clean",
              "fedmean/clean"]
FAULTED = ["centralized/dup_reorder", "decentralized/partition", "tdm/partition", "getmeas/partition",
           "logreg/dropout", "fedmean/dropout"]


def _first_case(name):
    return load_scenario(os.path.join(ROOT, name + ".toml")).cases()[0]


def _both(lab, case):
    spec = scenario_run.spec_for(case)
    realtime = scenario_run.execute(spec, make_backend("realtime", lab=lab, boards=case.nodes.boards),
                                    name="cross-" + case.id)
    return realtime, scenario_run.execute(spec, make_backend("virtual"))


@pytest.mark.sim
@pytest.mark.parametrize("name", FAULT_FREE)
def test_backends_agree_exactly_without_faults(lab, name):
    case = _first_case(name)
    realtime, virtual = _both(lab, case)
    for node in realtime.node_ids():
        assert realtime.result(node) == virtual.result(node), "node %d" % node
    assert scenario_run.analyse(virtual, {"oracle": True}, scenario_run.spec_for(case)).ok


@pytest.mark.sim
@pytest.mark.parametrize("name", FAULTED)
def test_backends_give_the_same_verdict_with_faults(lab, name):
    case = _first_case(name)
    realtime, virtual = _both(lab, case)
    spec = scenario_run.spec_for(case)
    verdicts = [scenario_run.analyse(r, case.expect, spec).ok for r in (realtime, virtual)]
    assert verdicts[0] == verdicts[1], "realtime %s, virtual %s" % tuple(verdicts)
