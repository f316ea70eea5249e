"""Fixtures for the harness tests: emulated boards and raw REPL connections to them."""

import shutil

import pytest
import serial

from flhil.harness.lab.boards.rawrepl import RawRepl


def _micropython_or_skip():
    from flhil.harness.lab.boards.emulated import resolve_micropython
    from flhil.harness.errors import HarnessError
    try:
        return resolve_micropython()
    except HarnessError as e:
        pytest.skip(f"emulated boards need the MicroPython unix port: {e}")


@pytest.fixture
def emu(tmp_path):
    """One booted emulated board with its flash in tmp_path/flash."""
    _micropython_or_skip()
    from flhil.harness.lab.boards.emulated import EmulatedBoard
    board = EmulatedBoard("emu-t", tmp_path / "flash", address="127.77.0.9", number=9,
                          log_dir=tmp_path / "logs")
    try:
        board.boot().wait_ready(10)
        yield board
    finally:
        board.close()


@pytest.fixture
def port(emu):
    ser = serial.Serial(emu.port, 115200, timeout=0.02)
    yield ser
    ser.close()


@pytest.fixture
def repl(port, emu):
    r = RawRepl(port, emu.name)
    r.enter(timeout=5)
    return r


@pytest.fixture
def mpremote():
    path = shutil.which("mpremote")
    if path is None:
        pytest.skip("mpremote is not installed")
    return path
