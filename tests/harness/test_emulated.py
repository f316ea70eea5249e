"""Emulated Pico W: behaves like a board to pyserial and mpremote, and never leaks processes."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flhil.harness.lab.boards.rawrepl import RawRepl

REPO = Path(__file__).resolve().parents[2]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): count it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_heap_is_like_a_pico_w(repl):
    out, _ = repl.exec("import gc; gc.collect(); print(gc.mem_free())", timeout=5)
    assert 100_000 < int(out) < 200_000


def test_pico_w_shims_work_from_main(repl, emu):
    (emu.flash_dir / "main.py").write_text(textwrap.dedent("""
        import machine, network, rp2
        led = machine.Pin("LED", machine.Pin.OUT)
        led.on(); led.toggle(); led.toggle()
        w = network.WLAN(network.STA_IF)
        w.active(True)
        w.config(pm=0xa11140)
        w.connect("lab", "pw")
        rp2.country("DE")
        print(led.value(), w.isconnected(), w.status() == network.STAT_GOT_IP, w.ifconfig()[0], rp2.country())
    """))
    lines = list(repl.exec_streaming("import main", line_timeout=5, timeout=10))
    assert lines == ["1 True True 127.77.0.9 DE"]


def test_flash_is_cwd_and_first_on_path(repl, emu):
    (emu.flash_dir / "pkg").mkdir()
    (emu.flash_dir / "pkg" / "__init__.py").write_text("")
    (emu.flash_dir / "pkg" / "m.py").write_text("X = 41 + 1\n")
    out, err = repl.exec("import os, sys, pkg.m\nprint(os.getcwd(), sys.path[0], pkg.m.X)", timeout=5)
    assert (out, err) == (f"/ {emu.flash_dir} 42\n", "")


def test_absolute_paths_stay_in_flash(repl, emu):
    out, err = repl.exec("import os\nos.mkdir('/sub')\nf = open('/sub/a.txt', 'w'); f.write('in flash'); f.close()\n"
                         "os.chdir('/sub')\nprint(os.getcwd(), os.listdir('/../..'), os.uname().sysname)", timeout=5)
    assert (out, err) == ("/sub ['sub'] rp2\n", "")
    assert (emu.flash_dir / "sub" / "a.txt").read_text() == "in flash"


def test_soft_reset_keeps_files(repl, emu):
    repl.exec("f = open('kept.txt', 'w'); f.write('still here'); f.close()", timeout=5)
    repl.soft_reset(timeout=10)
    assert repl.exec("print(open('kept.txt').read())", timeout=5) == ("still here\n", "")


def test_ctrl_d_in_friendly_repl_soft_reboots(port, emu):
    before = emu.restarts
    port.write(b"\r\x04")
    r = RawRepl(port, emu.name)
    r.read_until(b"MPY: soft reboot\r\n", time.monotonic() + 5, "soft reboot")
    r.read_until(b">>> ", time.monotonic() + 5, "the friendly prompt")
    assert emu.restarts == before + 1


def test_machine_reset_restarts_the_interpreter(repl, emu):
    (emu.flash_dir / "main.py").write_text("print('main ran')\n")
    pid = emu.pid
    repl.write(b"import machine\nmachine.reset()\x04")
    repl.read_until(b"main ran", time.monotonic() + 5, "main.py after the reset")
    repl.read_until(b">>> ", time.monotonic() + 5, "the friendly prompt")
    assert emu.pid != pid and not _alive(pid)
    repl.enter(timeout=5)
    assert repl.exec("print(8)", timeout=5) == ("8\n", "")


def test_ctrl_c_interrupts_main_py_at_boot(tmp_path):
    from flhil.harness.lab.boards.emulated import EmulatedBoard
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text("import time\nwhile True:\n time.sleep(0.01)\n")
    with EmulatedBoard("busy", flash) as board:
        board.boot()
        time.sleep(0.3)
        import serial
        with serial.Serial(board.port, timeout=0.02) as ser:
            r = RawRepl(ser, board.name)
            r.enter(timeout=5)
            assert r.exec("print(9)", timeout=5) == ("9\n", "")


def test_mpremote_exec_and_fs(emu, mpremote, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_text("hello board\n")

    def run(*args):
        p = subprocess.run([mpremote, "connect", emu.port, *args], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert run("exec", "print(42)").strip() == "42"
    run("fs", "cp", str(src), ":hello.txt")
    assert "hello.txt" in run("fs", "ls")
    run("fs", "mkdir", ":/lib")
    run("fs", "cp", str(src), ":/lib/abs.txt")
    assert "abs.txt" in run("fs", "ls", ":/lib")
    assert (emu.flash_dir / "lib" / "abs.txt").exists()
    assert (emu.flash_dir / "hello.txt").read_text() == "hello board\n"
    run("fs", "cp", ":hello.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_text() == "hello board\n"
    code = tmp_path / "hello.py"
    code.write_text("print('hi from flash')\n")
    run("fs", "cp", str(code), ":")  # into the current folder, as on a board
    sizes = {line.split()[1]: int(line.split()[0]) for line in run("fs", "ls").splitlines()[1:]}
    assert sizes["hello.py"] == len(code.read_bytes()) and sizes["hello.txt"] == 12
    assert run("exec", "import hello").strip() == "hi from flash"


def test_eight_boards_start_fast_and_close_clean():
    from flhil.harness.lab.boards.emulated import start_emulated
    t0 = time.monotonic()
    lab = start_emulated(8, timeout=20)
    took = time.monotonic() - t0
    pids = [b.pid for b in lab]
    try:
        assert len({b.address for b in lab}) == 8 and len({b.port for b in lab}) == 8
        print(f"8 emulated boards ready in {took:.3f}s")
        assert took < 10  # sanity deadline only; the figure is printed
    finally:
        lab.close()
    assert _wait_gone(pids), "a micropython child outlived close()"


OWNER = """
import sys, time
sys.path.insert(0, {repo!r})
from flhil.harness.lab.boards.emulated import start_emulated
lab = start_emulated(2)
print(" ".join(str(b.pid) for b in lab), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_child_outlives_a_killed_owner(sig):
    proc = subprocess.Popen([sys.executable, "-c", OWNER.format(repo=str(REPO))], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert _wait_gone(pids), f"micropython children survived {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
