"""The rack path as a user takes it: a twin rack (`fl-hil emulate N --rack FILE`) and
`pytest -m hil --lab FILE`; twins that reset, re-enumerate, are power-cycled and misbehave."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flhil.harness.config.lab import parse_lab
from flhil.harness.lab.boards.serial_board import SerialBoard
from flhil.harness.lab.lab import Lab, LabError, MIN_RUNTIME_HEAP_KB
from flhil.harness.lab.twins import TwinRack

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "twin-secret-7f3a9c"


@pytest.fixture(autouse=True)
def registry(tmp_path, monkeypatch):
    """Each test's twins register in a folder of their own; the twins' Wi-Fi password is set."""
    from flhil.harness.lab.boards.emulated import resolve_micropython
    from flhil.harness.errors import HarnessError
    try:
        resolve_micropython()
    except HarnessError as e:
        pytest.skip("twins need the MicroPython unix port: %s" % e)
    monkeypatch.setenv("FLHIL_TWIN_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.setenv("FLHIL_WIFI_PASSWORD", PASSWORD)
    return tmp_path / "registry"


def _rack(n, tmp_path, **kw):
    return TwinRack(n, PASSWORD, root=str(tmp_path / "flash"), **kw).start()


def _lab(rack, tmp_path, power=True, heap_kb=None):
    text = rack.lab_text(pc=2)
    if not power:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("power ="))
    if heap_kb is not None:
        text = text.replace("heap_kb = %d" % rack.heap_kb, "heap_kb = %d" % heap_kb)
    return Lab(parse_lab(text, "rack.toml"), str(tmp_path / "lab"))


def test_user_path_emulate_then_pytest_hil(tmp_path):
    """`fl-hil emulate 2 --rack FILE`, then `pytest -m hil --lab FILE` on a scenario: it passes, and
    the Wi-Fi password is nowhere in the reports."""
    rack_file = tmp_path / "rack.toml"
    env = dict(os.environ)
    emulate = subprocess.Popen([sys.executable, "-m", "flhil.harness", "emulate", "2", "--rack", str(rack_file)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not rack_file.exists():
            assert emulate.poll() is None, emulate.stdout.read().decode()
            assert time.monotonic() < deadline, "the rack file did not appear"
            time.sleep(0.1)
        reports = tmp_path / "reports"
        run = subprocess.run([sys.executable, "-m", "pytest", "-m", "hil", "--lab", str(rack_file),
                              str(REPO / "scenarios/fedmean/clean.toml"),
                              "-p", "no:cacheprovider", "-q", "--report-dir", str(reports)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
        assert "1 passed" in run.stdout
        for path in reports.rglob("*"):
            if path.is_file():
                assert PASSWORD not in path.read_text(errors="replace"), path
    finally:
        os.killpg(emulate.pid, signal.SIGTERM)
        emulate.wait(15)
    assert not rack_file.exists()  # a stopped rack takes its lab file with it


def test_reset_reenumerates_and_the_board_is_found_again_by_serial_number(tmp_path):
    rack = _rack(1, tmp_path)
    try:
        twin = rack.rack[0]
        board = SerialBoard("twin0", serial_number=twin.serial_number)
        board.answer()
        before = board.port
        board.hard_reset(timeout=10)
        assert board.port != before and board.port == twin.port
        assert board.repl.eval_ok("print(6 * 7)").strip() == "42"
        board.close()
    finally:
        rack.close()


def test_power_command_of_the_rack_file_power_cycles_the_twin(tmp_path):
    rack = _rack(1, tmp_path)
    try:
        twin = rack.rack[0]
        before, restarts = twin.port, twin.restarts
        out = subprocess.run([sys.executable, "-m", "flhil.harness", "twin", "power", twin.serial_number],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert twin.restarts == restarts + 1 and twin.port != before
        bad = subprocess.run([sys.executable, "-m", "flhil.harness", "twin", "power", "E66100000000"],
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1 and twin.serial_number in bad.stderr  # lists the twins there are
    finally:
        rack.close()


@pytest.mark.parametrize("kind, awaited", [
    ("garbage", "the raw REPL prompt"),
    ("silence", "the raw REPL prompt"),
    ("wifi-wrong-password", "Wi-Fi join to 'fl-hil-twins' failed: wrong password"),
])
def test_misbehaving_board_is_broken_with_a_clear_error_in_bounded_time(tmp_path, kind, awaited):
    rack = _rack(1, tmp_path, misbehave={"twin0": kind})
    try:
        with _lab(rack, tmp_path, power=False) as lab:
            t = time.monotonic()
            with pytest.raises(LabError) as first:
                lab.allocate(2, 1, True, str(tmp_path / "run1"))
            assert time.monotonic() - t < 30
            message = str(first.value)
            assert "board twin0 is broken for this session" in message and awaited in message
            assert PASSWORD not in message
            t = time.monotonic()
            with pytest.raises(LabError) as again:  # later runs fail at once, with the first error
                lab.allocate(2, 1, True, str(tmp_path / "run2"))
            assert time.monotonic() - t < 1 and str(again.value) == message
    finally:
        rack.close()


def test_a_hung_board_is_recovered_by_its_power_command(tmp_path):
    rack = _rack(1, tmp_path, misbehave={"twin0": "hang"})
    try:
        with _lab(rack, tmp_path) as lab:
            nodes = lab.allocate(2, 1, True, str(tmp_path / "run"))
            board = nodes[0]
            assert board.address == rack.rack[0].address  # the address its Wi-Fi join reported
            assert nodes[1].address == "127.0.0.1" and nodes[1].listen_port  # host_address
            assert board.recoveries and "power-cycled" in board.recoveries[0]
    finally:
        rack.close()


def test_heap_too_small_for_the_runtime_names_the_board_and_the_minimum(tmp_path):
    rack = _rack(1, tmp_path)
    try:
        with _lab(rack, tmp_path, heap_kb=32) as lab:
            with pytest.raises(LabError) as e:
                lab.allocate(1, 1, True, str(tmp_path / "run"))
            assert "twin0" in str(e.value) and "at least %d KB" % MIN_RUNTIME_HEAP_KB in str(e.value)
    finally:
        rack.close()


def test_pc_nodes_of_a_rack_never_see_the_wifi_password(tmp_path):
    from flhil.harness.lab.boards.pc import PcNode
    node = PcNode("pc0", "127.0.0.1", workdir=str(tmp_path / "pc0"), hidden_env=["FLHIL_WIFI_PASSWORD"])
    node.start({"bogus": True})
    try:
        environ = (Path("/proc") / str(node.proc.pid) / "environ").read_bytes()
        assert PASSWORD.encode() not in environ
    finally:
        node.close()


def test_a_second_run_of_an_eight_board_scenario_starts_from_a_clean_flash(tmp_path):
    """The run config of one run is not on the flash at the next (it would autorun at boot)."""
    scenario = tmp_path / "scenarios" / "eight.toml"
    scenario.parent.mkdir()
    text = (REPO / "scenarios/centralized/clean.toml").read_text()
    text = text.replace('"nodes.count" = [3, 8]', '"nodes.count" = [8]').replace("iterations = 10", "iterations = 3")
    scenario.write_text(text.replace("count = 4\nboards = 2", "count = 8\nboards = 8"))
    for attempt in (1, 2):
        run = subprocess.run([sys.executable, "-m", "flhil.harness", "run", str(scenario),
                              "--report-dir", str(tmp_path / "reports")], capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0 and "PASS" in run.stdout, (attempt, run.stdout[-2000:], run.stderr[-2000:])
    flash = tmp_path / "reports" / "cli-lab" / "flash"
    assert not list(flash.rglob("flhil_run.json"))


def test_a_board_reset_mid_session_is_found_again_and_the_next_run_passes(tmp_path):
    """Between two runs of one session the board power-cycles on its own: its port re-enumerates,
    the harness finds it by serial number and runs on it (no power command needed)."""
    from flhil.harness.run import pipeline
    from flhil.harness.run.realtime import LabBackend
    from flhil.harness.run.spec import RunSpec
    rack = _rack(1, tmp_path)
    spec = RunSpec(app="central_avg", algorithm="centralized", nodes=2, args={"iterations": 2})
    try:
        with _lab(rack, tmp_path, power=False) as lab:
            backend = LabBackend(lab=lab, boards=1, hil=True)
            first = pipeline.execute(spec, backend)
            assert [first.status(i) for i in (0, 1)] == ["ok", "ok"], first.data["errors"]
            twin = rack.rack[0]
            before = twin.port
            twin.power_cycle()
            assert twin.port != before
            second = pipeline.execute(spec, backend)
            assert [second.status(i) for i in (0, 1)] == ["ok", "ok"], second.data["errors"]
            assert lab.real[0].port == twin.port and not second.data["notes"]
    finally:
        rack.close()


def test_a_slow_wifi_join_is_waited_for(tmp_path):
    from flhil.harness.lab.twins import SLOW_JOIN_MS
    rack = _rack(1, tmp_path, misbehave={"twin0": "wifi-slow"})
    try:
        with _lab(rack, tmp_path) as lab:
            t = time.monotonic()
            board = lab.allocate(1, 1, True, str(tmp_path / "run"))[0]
            assert time.monotonic() - t >= SLOW_JOIN_MS / 1000 and board.address == rack.rack[0].address
    finally:
        rack.close()


def test_a_board_that_resets_mid_run_fails_its_run_naming_it_and_the_others_results_are_kept(tmp_path):
    import threading
    from flhil.harness.run import pipeline
    from flhil.harness.run.realtime import LabBackend
    from flhil.harness.run.spec import RunSpec
    rack = _rack(1, tmp_path)
    spec = RunSpec(app="central_avg", algorithm="centralized", nodes=3, server=1, args={"iterations": 40},
                   timing={"round_ms": 300})
    try:
        with _lab(rack, tmp_path, power=False) as lab:
            backend = LabBackend(lab=lab, boards=1, hil=True)
            board = lab.provision(lab.real_boards()[0])
            lines = board.lines

            def lines_then_reset(deadline):  # the twin resets once the rounds run
                for k, line in enumerate(lines(deadline)):
                    if k == 15:
                        threading.Thread(target=rack.rack[0].power_cycle).start()
                    yield line
            board.lines = lines_then_reset
            t = time.monotonic()
            record = pipeline.execute(spec, backend)
            assert time.monotonic() - t < 60
            assert record.status(0) == "error"
            errors = " ".join(e["msg"] for e in record.data["errors"] if e["node"] == 0)
            assert "twin0" in errors and ("reset" in errors or "port" in errors), errors
            assert record.data["nodes"]["1"]["events"] and Path(record.data["nodes"]["1"]["log"]).exists()
    finally:
        rack.close()
