"""Reports: plots are real PNGs, tables and CSV carry the data, Allure attachments are redacted."""
import csv
import io
import json
import types

import pytest

from flhil.harness.results.expectations import Evidence, evaluate
from flhil.harness.report import plots as report
from flhil.harness.results.record import RunRecord
from flhil.harness.secrets import redact
from flhil.harness.report.allure import attach_to_allure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PASSWORD = "hunter2-wifi!"
RUN_KEY = "a1b2c3d4e5f6"


def run_record():
    """A 3-node centralized run with faults, TDM-free, secrets in the spec."""
    nodes = {}
    for n in range(3):
        events, t = [{"ev": "boot", "n": n, "t": 0, "impl": "cpython", "heap": None}], 0
        for i in range(1, 5):
            events.append({"ev": "round_start", "n": n, "t": t, "i": i})
            t += 1000 * (5 + n + i)
            events.append({"ev": "round_end", "n": n, "t": t, "i": i, "got": 2 if n == 0 else 1,
                           "need": 2, "skipped": False, "v": 1.75 + (n - 1) / 2 ** i})
        events.append({"ev": "result", "n": n, "t": t, "value": 1.75, "status": "ok"})
        nodes[str(n)] = {"kind": "pc", "events": events, "result": 1.75, "status": "ok",
                         "log": None, "error": None}
    faults = [{"n": 1, "t": 2000, "kind": "loss", "dst": 0, "p": "cu", "i": 1},
              {"n": 2, "t": 9000, "kind": "delay", "dst": 0, "p": "cu", "i": 3, "ms": 5},
              {"n": 0, "t": 500, "kind": "dup", "dst": 2, "p": "cd", "i": 1, "copies": 1}]
    return RunRecord({
        "spec": {"algorithm": "centralized", "nodes": 3, "server": 0, "args": {"iterations": 4},
                 "timing": {"round_ms": 400}, "seed": 3, "key": RUN_KEY,
                 "wifi": {"ssid": "lab", "password": PASSWORD}},
        "seed": 3, "run": "r-rep", "backend": "pc", "nodes": nodes, "faults": faults})


def tdm_record():
    nodes = {}
    for n in range(2):
        events = []
        for s in range(4):
            events.append({"ev": "slot_start", "n": n, "t": s * 10000, "i": s, "peers": [1 - n],
                           "late": 200 * (s + n)})
            events.append({"ev": "slot_end", "n": n, "t": s * 10000 + 5000, "i": s,
                           "got": [1 - n], "miss": [], "v": 1.5})
        nodes[str(n)] = {"kind": "emulated", "events": events, "status": "ok", "result": 1.5}
    return RunRecord({"spec": {"algorithm": "tdm", "nodes": 2, "timing": {"guard_ms": 1.0},
                               "args": {"slots": 4}}, "seed": 5, "nodes": nodes})


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_convergence_and_timing_plots(tmp_path):
    rec = run_record()
    assert_png(report.convergence_plot(rec, tmp_path / "conv.png"))
    assert_png(report.timing_plot(rec, tmp_path / "sub" / "timing.png"))


def test_tdm_timing_plot_and_sparse_records(tmp_path):
    assert_png(report.timing_plot(tdm_record(), tmp_path / "late.png"))
    assert_png(report.convergence_plot(tdm_record(), tmp_path / "tdm.png"))
    # a crashed run with almost no telemetry still gives (empty) figures, not exceptions
    sparse = RunRecord({"spec": {}, "nodes": {"0": {"status": "crashed", "events": []}}})
    assert_png(report.convergence_plot(sparse, tmp_path / "empty.png"))
    assert report.timing_table(sparse).count("\n") == 3


def test_fault_timeline_csv_is_sorted_with_extras():
    rows = list(csv.DictReader(io.StringIO(report.fault_timeline_csv(run_record()))))
    assert [r["kind"] for r in rows] == ["dup", "loss", "delay"]
    assert rows[0]["extra"] == '{"copies": 1}' and rows[2]["ms"] == "5"


def test_timing_table_has_a_row_per_node():
    table = report.timing_table(run_record())
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 3 and lines[2].startswith("| 0 | 4 |")
    # node 2, round 4: 5 + 2 + 4 = 11 ms is its slowest
    assert "| 11.000 |" in lines[4]
    assert "| 0.800 |" in report.timing_table(tdm_record())  # node 1, slot 3: 800 µs


def test_redact_plain_and_json_escaped():
    secret = 'pa"ss'
    text = "x %s y %s" % (secret, json.dumps({"p": secret}))
    out = redact(text, [secret])
    assert secret not in out and 'pa\\"ss' not in out and out.count("***") == 2


@pytest.fixture
def fake_allure():
    """Stands in for the allure module and records every attachment."""
    attached = []

    def attach(body, name=None, attachment_type=None, extension=None):
        attached.append((name, body, attachment_type))

    def attach_file(source, name=None, attachment_type=None, extension=None):
        with open(source, "rb") as f:
            attached.append((name, f.read(), attachment_type))

    attach.file = attach_file
    kinds = types.SimpleNamespace(TEXT="text", CSV="csv", JSON="json", PNG="png")
    return types.SimpleNamespace(attach=attach, attachment_type=kinds), attached


def test_attach_to_allure_redacts_every_text(fake_allure, tmp_path):
    rec = run_record()
    log_file = tmp_path / "node1.log"
    log_file.write_text("connecting to lab with password %s\nok\n" % PASSWORD)
    logs = {0: "boot\nwifi password=%s key=%s\n" % (PASSWORD, RUN_KEY), 1: str(log_file)}
    rep = evaluate(rec, {"oracle": True}, Evidence(oracle=[1.75, 1.75, 1.75]))
    sink, fake_allure = fake_allure
    assert attach_to_allure(rec, rep, logs, secrets=[PASSWORD, RUN_KEY], sink=sink)

    names = [name for name, _, _ in fake_allure]
    assert names[:2] == ["convergence", "timing"]
    assert {"fault timeline", "timing", "findings", "run record", "log node 0",
            "log node 1"} <= set(names)
    for name, body, kind in fake_allure:
        if kind == "png":
            assert body.startswith(PNG_MAGIC)
            continue
        assert PASSWORD not in body and RUN_KEY not in body, name
    record_json = dict((n, b) for n, b, _ in fake_allure)["run record"]
    assert json.loads(record_json)["spec"]["wifi"]["password"] == "***"
    log1 = dict((n, b) for n, b, _ in fake_allure)["log node 1"]
    assert "password ***" in log1 and log1.endswith("ok\n")


def test_attach_to_allure_without_allure():
    assert attach_to_allure(run_record(), None, {}, sink=None) is False
