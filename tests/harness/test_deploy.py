"""Deploy: mpy-cross cache, manifest-based copying, run config, and a run through the Node interface."""

import json
import shutil
import time

import pytest

from flhil.harness.lab import deploy
from flhil.harness.lab.boards.serial_board import SerialBoard
from flhil.harness.errors import BoardError

MAIN = """
import json
cfg = json.load(open('flhil_run.json'))
import app.core
print('@@flhil ' + json.dumps({'ev': 'boot', 'n': cfg['node'], 't': 0, 'impl': 'micropython'}))
print('wifi', cfg['wifi']['password'])
print('@@flhil ' + json.dumps({'ev': 'result', 'n': cfg['node'], 't': 1, 'value': app.core.VALUE}))
print('@@flhil ' + json.dumps({'ev': 'done', 'n': cfg['node'], 't': 2}))
"""


@pytest.fixture
def mpy_cross():
    path = shutil.which("mpy-cross")
    if path is None:
        pytest.skip("mpy-cross is not installed")
    return path


@pytest.fixture
def tree(tmp_path):
    """A tiny stand-in firmware tree."""
    root = tmp_path / "fw"
    (root / "app").mkdir(parents=True)
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "core.py").write_text("VALUE = 1.75\n")
    (root / "app" / "util.py").write_text("def twice(x):\n    return 2 * x\n")
    (root / "main.py").write_text(MAIN)
    (root / "data.txt").write_text("not python\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "junk.pyc").write_bytes(b"x")
    return root


def test_build_compiles_and_caches(tree, tmp_path, mpy_cross):
    cache = tmp_path / "cache"
    files = deploy.build(tree, cache)
    assert sorted(files) == ["/app/__init__.mpy", "/app/core.mpy", "/app/util.mpy", "/data.txt", "/main.py"]
    assert files["/main.py"] == tree / "main.py"
    cached = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(cached) == 3
    again = deploy.build(tree, cache)
    assert again == files and {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == cached
    (tree / "app" / "util.py").write_text("def twice(x):\n    return x + x\n")
    assert deploy.build(tree, cache)["/app/util.mpy"] != files["/app/util.mpy"]
    assert deploy.build(tree, cache, prefix="/firmware")["/firmware/app/core.mpy"] == files["/app/core.mpy"]


def test_deploy_copies_once_then_skips(repl, emu, tree, tmp_path, mpy_cross):
    files = deploy.build(tree, tmp_path / "cache")
    first = deploy.deploy(repl, files)
    assert sorted(first.written) == sorted(files) and first.skipped == []
    assert (emu.flash_dir / "app" / "core.mpy").read_bytes() == files["/app/core.mpy"].read_bytes()
    manifest = json.loads((emu.flash_dir / "flhil_manifest.json").read_text())
    assert set(manifest) == set(files)

    second = deploy.deploy(repl, files)
    assert second.written == [] and sorted(second.skipped) == sorted(files)

    (tree / "app" / "core.py").write_text("VALUE = 2.5\n")
    (tree / "data.txt").unlink()
    third = deploy.deploy(repl, deploy.build(tree, tmp_path / "cache"))
    assert third.written == ["/app/core.mpy"] and third.removed == ["/data.txt"]
    assert not (emu.flash_dir / "data.txt").exists()
    out, err = repl.exec("import app.core, app.util\nprint(app.core.VALUE, app.util.twice(3))", timeout=5)
    assert (out, err) == ("2.5 6\n", "")


def test_binary_and_large_files_round_trip(repl, emu, tmp_path):
    blob = bytes(range(256)) * 40 + b"'\"\\\n\r\x00"
    deploy.write_file(repl, "/deep/er/blob.bin", blob)
    assert (emu.flash_dir / "deep" / "er" / "blob.bin").read_bytes() == blob


def test_run_through_the_node_interface(emu, tree, tmp_path, mpy_cross):
    config = {"run": "r-1", "node": 3, "nodes": 4, "wifi": {"ssid": "lab", "password": "hunter2-secret"}}
    board = emu.node()
    result = board.prepare(tree)
    assert "/main.py" in result.written
    board.start(config)
    assert json.loads((emu.flash_dir / "flhil_run.json").read_text())["node"] == 3
    lines = list(board.lines(time.monotonic() + 10))
    events = [json.loads(line[8:]) for line in lines if line.startswith("@@flhil ")]
    assert [e["ev"] for e in events] == ["boot", "result", "done"] and events[1]["value"] == 1.75
    board.stop()
    assert board.prepare(tree).written == []  # nothing changed since
    board.close()
    log = (tmp_path / "logs" / "emu-t.log").read_text()
    assert '"ev": "done"' in log
    assert "hunter2-secret" not in log and "wifi ***" in log


def test_reset_during_run_raises_and_keeps_lines(emu, tmp_path):
    (emu.flash_dir / "main.py").write_text("print('one')\nprint('two')\nimport machine\nmachine.soft_reset()\n")
    board = emu.node()
    board.start({"node": 0})
    got = []
    with pytest.raises(BoardError) as e:
        for line in board.lines(time.monotonic() + 10):
            got.append(line)
    assert e.value.board == "emu-t" and "reset" in str(e.value)
    assert got == ["one", "two"] and board.received == ["one", "two"] and board.error is e.value
    board.close()


def test_stop_interrupts_a_running_node(emu):
    (emu.flash_dir / "main.py").write_text("import time\nwhile True:\n print('tick')\n time.sleep(0.02)\n")
    board = emu.node()
    board.start({"node": 0})
    it = board.lines(time.monotonic() + 5)
    assert next(it) == "tick"
    t0 = time.monotonic()
    board.stop()
    assert time.monotonic() - t0 < 3
    assert any("KeyboardInterrupt" in line for line in board.received)
    board.close()


def test_hard_reset_comes_back(emu):
    board = emu.node()
    pid = emu.pid
    board.hard_reset(timeout=10)
    assert emu.pid != pid
    assert board.repl.exec("print(1)", timeout=5) == ("1\n", "")
    board.close()


def test_missing_board_by_serial_number():
    board = SerialBoard("ghost", serial_number="E66000000000DEAD")
    with pytest.raises(BoardError, match="ghost.*E66000000000DEAD"):
        board.open()
