"""The shipped scenario suite: loads every file (no runs) and checks its coverage.

Every algorithm must be exercised against every fault kind, so a regression in any fault path of
any algorithm shows up in the sim suite. `none` is a scenario without faults.
"""
from pathlib import Path

import pytest

from flhil.harness.config.faults import FAULT_KINDS, fault_kinds
from flhil.harness.config.scenario import load_scenarios

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

ALGORITHMS = ("centralized", "decentralized", "tdm", "getmeas", "logreg")
# every kind harness.faultplan can report: none, loss, burst_loss, delay, dup, reorder, partition,
# dropout (silent), rejoin (dropout and rejoin), slot_jitter, clock_skew
KINDS = FAULT_KINDS
MIN_FILES = 40


@pytest.fixture(scope="module")
def suite():
    return load_scenarios(SCENARIOS)


def _covered(suite):
    pairs = set()
    for scenario in suite:
        for case in scenario.cases():
            for kind in fault_kinds(case.faults):
                pairs.add((case.algorithm, kind))
    return pairs


def test_suite_has_enough_files(suite):
    assert len(suite) >= MIN_FILES, "%d scenario files, want at least %d" % (len(suite), MIN_FILES)


def test_every_algorithm_meets_every_fault_kind(suite):
    covered = _covered(suite)
    missing = sorted((a, k) for a in ALGORITHMS for k in KINDS if (a, k) not in covered)
    assert not missing, "algorithm x fault kind pairs without a scenario: %s" % missing


def test_every_file_has_a_name_and_a_description(suite):
    bare = [s.path for s in suite if not s.description.strip()]
    assert not bare, "scenario files without a description: %s" % bare
    unnamed = [s.path for s in suite if s.name == Path(s.path).stem]
    assert not unnamed, "scenario files without a name: %s" % unnamed


def test_every_file_states_expectations(suite):
    empty = [s.path for s in suite if not s.expect]
    assert not empty, "scenario files without [expect]: %s" % empty


def test_every_faulty_scenario_proves_its_fault_was_injected(suite):
    """A scenario with link or node faults checks the fault timeline, except slot jitter on a
    round-based algorithm, which by design never fires (no slots are started)."""
    slotless = ("centralized", "decentralized", "logreg", "fedmean")
    unproved = []
    for scenario in suite:
        kinds = set(fault_kinds(scenario.cases()[0].faults)) - {"none"}
        if scenario.algorithm in slotless:
            kinds.discard("slot_jitter")
        if kinds and not scenario.expect.get("faults_seen"):
            unproved.append(scenario.path)
    assert not unproved, "faulty scenarios without faults_seen: %s" % unproved


def test_scenarios_sit_under_their_algorithm(suite):
    wrong = [s.path for s in suite if Path(s.path).parent.name != s.algorithm]
    assert not wrong, "scenario files outside scenarios/<algorithm>/: %s" % wrong
