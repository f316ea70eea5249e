"""flhil.harness.report.allure: the Allure environment, executor and failure categories.

The categories are checked against the failure messages the harness really produces (real
`analysis` checks on small records, real harness exceptions, formatted by pytest the way
allure-pytest stores them), with both matching rules: Allure 3 (JavaScript `RegExp.test`, first
matching category wins) and Allure 2 (Java `Pattern.matches`, the whole message)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from flhil.harness.report import html

from flhil.harness.report import allure as allure_env
from flhil.harness.results.expectations import Evidence, evaluate
from flhil.harness.results.record import RunRecord
from flhil.harness.results.verdict import HostOverloaded
from flhil.harness.config import lab as labfile
from flhil.harness.errors import BoardError, ConfigError, HarnessError
from flhil.harness.lab.lab import LabError

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ failure messages

def _record(nodes, hang=None, events=None):
    spec = {"app": "central_avg", "algorithm": "centralized", "nodes": len(nodes), "server": 0,
            "args": {"iterations": 1}, "timing": {}, "faults": {}, "seed": 5}
    out = {}
    for n, (status, error) in enumerate(nodes):
        evs = list(events(n)) if events else []
        node = {"kind": "pc", "events": evs, "status": status, "error": error}
        if status == "ok":
            node["result"] = 1.0
            evs.append({"ev": "result", "n": n, "t": 900000, "value": 1.0, "status": "ok"})
        out[str(n)] = node
    return RunRecord({"spec": spec, "seed": 5, "run": "r-test", "backend": "pc", "nodes": out, "faults": [],
                      "phases": {}, "hang": hang, "errors": []})


def _round(n, skipped=False):
    return [{"ev": "round_start", "n": n, "i": 0, "t": 0},
            {"ev": "round_end", "n": n, "i": 0, "t": 500000, "got": 1, "need": 1, "skipped": skipped, "v": 1.0}]


def _failure(raise_it):
    """(allure status, message) as allure-pytest records them: excinfo.exconly()."""
    with pytest.raises(BaseException) as info:
        raise_it()
    if isinstance(info.value, pytest.skip.Exception):
        return "skipped", info.exconly()
    failed = isinstance(info.value, (AssertionError, pytest.fail.Exception))
    return ("failed" if failed else "broken"), info.exconly()


def _expectations(record, expect, oracle_values=None):
    return lambda: evaluate(record, expect, Evidence(oracle=oracle_values)).raise_if_failed()


def _inconclusive(record, expect):
    """What the plugin does with a verdict the host's stalls make inconclusive: skip, saying why."""
    def go():
        try:
            evaluate(record, expect).raise_if_failed()
        except HostOverloaded as e:
            pytest.skip(str(e))
    return go


def _stalled_slot(n):
    """A slot 5 ms late on node n, at a moment its loop lost 5 ms to the host."""
    return [{"ev": "slot_start", "n": n, "i": 1, "t": 1000, "late": 5000, "peers": [1 - n]},
            {"ev": "lag", "n": n, "t": 50000, "w": 100000, "max": 6000, "at": 1000, "sum": 6000,
             "host": 6000, "host_sum": 6000}]


def _raise(exc):
    def go():
        raise exc
    return go


ADDRESS_IN_USE = ("OSError: [Errno 98] error while attempting to bind on address ('127.77.1.2', 6000): "
                  "address already in use")
HUNG = _record([("timeout", None), ("ok", None)],
               hang={"node": 0, "phase": "run", "waiting": {"p": "cu", "i": 3, "on": [1]}})
CASES = {
    "hung node": (_expectations(HUNG, {"all_return": True, "oracle": True}, oracle_values=[1.0, 1.0]),
                  "Hang or deadline"),
    "start-up barrier missed": (_expectations(_record([("ok", None), ("error", "no go from coordinator 0 before "
                                                       "the start-up deadline")]), {"all_return": True}),
                                "Hang or deadline"),
    "skipped rounds": (_expectations(_record([("ok", None), ("ok", None)], events=lambda n: _round(n, skipped=True)),
                                     {"skipped_rounds": {"max": 0}}), "Hang or deadline"),
    "node could not start": (_expectations(_record([("ok", None), ("error", "could not start on emu3: BoardError")]),
                                           {"all_return": True}), "Infrastructure"),
    "address in use": (_expectations(_record([("ok", None), ("error", ADDRESS_IN_USE)]),
                                     {"all_return": True}), "Infrastructure"),
    "wrong values": (_expectations(_record([("ok", None), ("ok", None)]), {"oracle": True}, oracle_values=[1.5, 1.5]),
                     "Divergence"),
    "wrong values and slow": (_expectations(_record([("ok", None), ("ok", None)], events=_round),
                                            {"round_ms": {"max": 1}, "oracle": True}, oracle_values=[1.5, 1.5]),
                              "Divergence"),
    "slow rounds": (_expectations(_record([("ok", None), ("ok", None)], events=_round), {"round_ms": {"p95_max": 1}}),
                    "Timing"),
    "late slots": (_expectations(_record([("ok", None), ("ok", None)], events=lambda n: [
        {"ev": "slot_start", "n": n, "i": 1, "t": 1000, "late": 5000, "peers": [1 - n]}]),
        {"slot_late_ms": {"max_ms": 2.0}}), "Timing"),
    "late slots at host stalls": (_inconclusive(_record([("ok", None), ("ok", None)], events=_stalled_slot),
                                                {"slot_late_ms": {"max_ms": 0.5}}), "Host overloaded (inconclusive)"),
    "board error": (_raise(BoardError("pico2", "timed out waiting for the raw REPL")), "Infrastructure"),
    "lab file error": (_raise(ConfigError("labs/rack.toml", "boards[1].serial", "expected a string", line=9)),
                       "Infrastructure"),
    "lab error": (_raise(LabError("the run needs 4 boards, the lab has 2 real ones")), "Infrastructure"),
    "no micropython": (_raise(HarnessError("MicroPython unix port not found: 'micropython'")), "Infrastructure"),
    "lab failure in a fixture": (lambda: pytest.fail("lab: board pico1 is in use by another run", pytrace=False),
                                 "Infrastructure"),
    "plain assertion": (_raise(AssertionError("assert 2 == 3")), None),
}


def _first_match(categories, status, message, full):
    for c in categories:
        if status not in c.get("matchedStatuses", [status]):
            continue
        pattern = c["messageRegex"]
        if (re.fullmatch if full else re.search)(pattern, message):
            return c["name"]
    return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_category_of_harness_failures(case):
    raise_it, expected = CASES[case]
    status, message = _failure(raise_it)
    categories = allure_env.categories()
    assert _first_match(categories, status, message, full=False) == expected, message
    if expected is not None:  # Allure 2 lists every matching category; ours must be among them
        assert any(c["name"] == expected and status in c["matchedStatuses"]
                   and re.fullmatch(c["messageRegex"], message) for c in categories), message


def test_categories_match_the_same_in_javascript():
    """Allure 3 evaluates the rules with JavaScript regular expressions: same answers as Python."""
    if shutil.which("node") is None:
        pytest.skip("node not on PATH")
    samples = [(name,) + _failure(raise_it) for name, (raise_it, _) in sorted(CASES.items())]
    script = """
const cats = JSON.parse(process.argv[1]); const samples = JSON.parse(process.argv[2]);
const out = {};
for (const [name, status, msg] of samples) {
  const c = cats.find(c => (c.matchedStatuses || [status]).includes(status) && new RegExp(c.messageRegex).test(msg));
  out[name] = c ? c.name : null;
}
console.log(JSON.stringify(out));
"""
    proc = subprocess.run(["node", "-e", script, json.dumps(allure_env.categories()), json.dumps(samples)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {name: expected for name, (_, expected) in CASES.items()}


def test_allurerc_reads_the_same_categories():
    text = (ROOT / "harness" / "report" / "allure" / "allurerc.mjs").read_text(encoding="utf-8")
    assert "FLHIL_ALLURE_CATEGORIES" in text
    assert html.CATEGORIES == allure_env.CATEGORIES_FILE
    assert "historyPath" in text
    names = {c["name"] for c in allure_env.categories()}
    assert names == {"Host overloaded (inconclusive)", "Infrastructure", "Hang or deadline", "Divergence", "Timing"}


# ------------------------------------------------------------------ environment and executor

RACK = """\
[[boards]]
name = "pico1"
serial = "E6614C311B4A1001"

[pc]
count = 2

[network]
ssid = "fl-hil-lab"
password_env = "FLHIL_TEST_WIFI_PASSWORD"
host_address = "192.168.50.10"
"""


def test_environment_never_holds_the_wifi_password(tmp_path, monkeypatch):
    secret = "correct-horse-battery-staple"
    monkeypatch.setenv("FLHIL_TEST_WIFI_PASSWORD", secret)
    lab_file = tmp_path / "rack.toml"
    lab_file.write_text(RACK, encoding="utf-8")
    spec = labfile.load_lab(lab_file)
    written = allure_env.write_results_metadata(tmp_path / "results", lab_spec=spec, secrets=[secret])
    assert {p.name for p in written} == {"environment.properties", "categories.json", "executor.json"}
    for path in written:
        assert secret not in path.read_text(encoding="utf-8"), path
    props = dict(line.split("=", 1) for line in (tmp_path / "results" / "environment.properties")
                 .read_text(encoding="utf-8").splitlines() if line and not line.startswith("#"))
    assert props["lab.file"] == str(lab_file)
    assert (props["lab.boards.real"], props["lab.boards.emulated"], props["lab.pc_nodes"]) == ("1", "0", "2")
    assert len(props["fl-hil.firmware.sha256"]) == 64
    assert props["cpython.version"].startswith("%d.%d." % sys.version_info[:2])
    assert json.loads((tmp_path / "results" / "categories.json").read_text()) == allure_env.categories()
    assert json.loads((tmp_path / "results" / "executor.json").read_text())["name"]


def test_firmware_hash_follows_content_and_names(tmp_path):
    fw = tmp_path / "fw"
    (fw / "apps").mkdir(parents=True)
    (fw / "node.py").write_text("x = 1\n")
    (fw / "apps" / "a.py").write_text("y = 2\n")
    (fw / "notes.txt").write_text("not code\n")
    first = allure_env.firmware_hash(fw)
    assert allure_env.firmware_hash(fw) == first
    (fw / "notes.txt").write_text("changed, still not code\n")
    assert allure_env.firmware_hash(fw) == first
    (fw / "apps" / "a.py").write_text("y = 3\n")
    assert allure_env.firmware_hash(fw) != first
    (fw / "apps" / "a.py").write_text("y = 2\n")
    (fw / "apps" / "a.py").rename(fw / "apps" / "b.py")
    assert allure_env.firmware_hash(fw) != first


def test_micropython_version_has_a_timeout(tmp_path, monkeypatch):
    slow = tmp_path / "slow-micropython"
    slow.write_text("#!/bin/sh\nsleep 10\n")
    slow.chmod(0o755)
    assert allure_env.micropython_version(str(slow), timeout=0.3).startswith("no answer within")
    assert allure_env.micropython_version(str(tmp_path / "missing")).startswith("not found")


def test_executor_names_the_ci_run(monkeypatch):
    for key in ("GITHUB_RUN_ID", "CI_PIPELINE_ID", "BUILD_URL", "JENKINS_URL"):
        monkeypatch.delenv(key, raising=False)
    assert allure_env.executor()["type"] == "local"
    monkeypatch.setenv("GITHUB_RUN_ID", "42")
    monkeypatch.setenv("GITHUB_REPOSITORY", "lab/fl-hil")
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "7")
    info = allure_env.executor()
    assert info["buildUrl"].endswith("/lab/fl-hil/actions/runs/42") and info["buildOrder"] == 7


def test_session_writes_metadata_next_to_results(tmp_path):
    """The plugin's sessionfinish hook, through a real pytest run with --alluredir."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    shutil.copy(ROOT / "scenarios" / "centralized" / "clean.toml", scenarios / "clean.toml")
    installed = any(ep.value == "flhil.fixtures.plugin" for ep in entry_points(group="pytest11"))
    skip = ("PYTEST_XDIST", "PYTEST_CURRENT", "PYTEST_ADDOPTS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    cmd = [sys.executable, "-m", "pytest", str(scenarios), "-c", str(ROOT / "pyproject.toml"),
           "--rootdir", str(tmp_path), *([] if installed else ["-p", "flhil.fixtures.plugin"]),
           "-m", "sim", "--backend", "virtual", "--flhil-seed", "3", "--alluredir", str(tmp_path / "results"),
           "-p", "no:cacheprovider", "--report-dir", str(tmp_path / "reports"), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    props = (tmp_path / "results" / "environment.properties").read_text(encoding="utf-8")
    assert "backend=virtual" in props and "seed=3" in props and "markers=sim" in props
    assert "lab.boards.emulated=8" in props
    assert (tmp_path / "results" / "categories.json").is_file()
