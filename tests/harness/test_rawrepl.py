"""Raw REPL driver against emulated boards and scripted ports."""

import os
import time

import pytest
import serial

from flhil.harness.lab.boards.rawrepl import RawRepl
from flhil.harness.errors import BoardError


def test_exec_keeps_stdout_and_stderr_apart(repl):
    out, err = repl.exec("print(1); raise ValueError('x')", timeout=5)
    assert out == "1\n"
    assert "ValueError: x" in err and "1" not in err.splitlines()[-1]


def test_raw_paste_is_used_and_plain_raw_works_too(repl):
    out, _ = repl.exec("print('paste')", timeout=5)
    assert out == "paste\n" and repl.paste is True
    repl.paste = False  # as with a board that refuses raw-paste
    code = "x = 0\n" + "".join(f"x += {i}\n" for i in range(300)) + "print(x)"
    out, err = repl.exec(code, timeout=10)
    assert (out, err) == (f"{sum(range(300))}\n", "")


def test_long_code_through_raw_paste_flow_control(repl):
    code = "s = 0\n" + "".join(f"s += {i}  # padding padding padding\n" for i in range(500)) + "print(s)"
    assert repl.exec(code, timeout=10) == (f"{sum(range(500))}\n", "")


def test_soft_reset_returns_to_raw_repl(repl, emu):
    before = emu.restarts
    repl.exec("import sys; sys.modules['flag'] = 1", timeout=5)
    repl.soft_reset(timeout=10)
    assert emu.restarts == before + 1
    out, _ = repl.exec("import sys; print('flag' in sys.modules)", timeout=5)
    assert out == "False\n"


def test_streaming_yields_lines_as_they_come(repl):
    code = "import time\nfor i in range(5):\n print('line', i)\n time.sleep(0.05)"
    t0 = time.monotonic()
    got = []
    for line in repl.exec_streaming(code, line_timeout=2, timeout=10):
        got.append((line, time.monotonic() - t0))
    assert [g[0] for g in got] == [f"line {i}" for i in range(5)]
    assert got[-1][1] - got[0][1] > 0.1  # not all at the end


def test_streaming_line_deadline_names_the_board(repl):
    with pytest.raises(BoardError) as e:
        for _ in repl.exec_streaming("import time\nprint('a')\ntime.sleep(5)", line_timeout=0.5, timeout=10):
            pass
    assert e.value.board == "emu-t" and "timed out waiting for a line" in str(e.value)
    repl.interrupt()


def test_streaming_raises_with_traceback(repl):
    lines = []
    with pytest.raises(BoardError, match="ZeroDivisionError"):
        for line in repl.exec_streaming("print('before')\n1/0", line_timeout=2, timeout=5):
            lines.append(line)
    assert lines == ["before"]


def test_interrupt_stops_running_code(repl):
    stream = repl.start("import time\nwhile True:\n print('x')\n time.sleep(0.01)", timeout=5)
    assert stream.readline(time.monotonic() + 2) == "x"
    repl.interrupt()
    while stream.readline(time.monotonic() + 3) is not None:
        pass
    assert "KeyboardInterrupt" in stream.stderr
    assert repl.exec("print(5)", timeout=5) == ("5\n", "")


def test_reset_while_streaming_raises(repl):
    lines = []
    with pytest.raises(BoardError, match="reset while running"):
        for line in repl.exec_streaming("print('a')\nimport machine\nmachine.soft_reset()",
                                        line_timeout=3, timeout=10):
            lines.append(line)
    assert lines == ["a"]


def test_non_utf8_output_is_replaced(repl):
    out, err = repl.exec("import sys\nsys.stdout.buffer.write(b'\\xff\\xfeok\\n')", timeout=5)
    assert err == "" and out.endswith("ok\n") and "\ufffd" in out


class GarblingPort:
    """A pyserial-like wrapper that prepends noise to what the board sends."""

    def __init__(self, ser, noise):
        self.ser, self.noise = ser, bytearray(noise)
        self.timeout = ser.timeout

    def write(self, data):
        return self.ser.write(data)

    def flush(self):
        self.ser.flush()

    @property
    def in_waiting(self):
        return len(self.noise) or self.ser.in_waiting

    def read(self, n):
        if self.noise:
            out, self.noise = bytes(self.noise[:n]), self.noise[n:]
            return out
        return self.ser.read(n)


def test_garbage_on_the_line_is_survived(port, emu):
    noise = b"\x00\xff\xfe garbage raw REPL; CTRL-B\r\n>>> \x04>" + bytes(range(256))
    r = RawRepl(GarblingPort(port, noise), emu.name)
    r.enter(timeout=5)
    assert r.exec("print(6)", timeout=5) == ("6\n", "")
    # Noise written by the board itself before a prompt.
    r.leave()
    port.write(b"print('\\x01junk>', end='')\r")
    r.enter(timeout=5)
    assert r.exec("print(7)", timeout=5) == ("7\n", "")


def test_silent_board_raises_board_error_with_its_name():
    master, slave = os.openpty()  # nobody answers on the other end
    try:
        ser = serial.Serial(os.ttyname(slave), timeout=0.02)
        r = RawRepl(ser, "mute-board")
        t0 = time.monotonic()
        with pytest.raises(BoardError) as e:
            r.enter(timeout=0.5)
        assert time.monotonic() - t0 < 3
        assert e.value.board == "mute-board"
        assert "raw REPL prompt" in str(e.value) and "mute-board" in str(e.value)
        ser.close()
    finally:
        os.close(master)
        os.close(slave)


def test_timeout_error_quotes_received_bytes():
    master, slave = os.openpty()
    try:
        ser = serial.Serial(os.ttyname(slave), timeout=0.02)
        os.write(master, b"something else entirely")
        r = RawRepl(ser, "odd-board")
        with pytest.raises(BoardError, match="something else"):
            r.read_until(b"never", time.monotonic() + 0.3, "a marker")
        ser.close()
    finally:
        os.close(master)
        os.close(slave)


def test_vanished_port_raises_board_error(repl, emu):
    stream = repl.start("import time\nwhile True:\n print('x')\n time.sleep(0.01)", timeout=5)
    assert stream.readline(time.monotonic() + 2) == "x"
    emu.close()
    with pytest.raises(BoardError) as e:
        while stream.readline(time.monotonic() + 3) is not None:
            pass
    assert e.value.board == "emu-t"
