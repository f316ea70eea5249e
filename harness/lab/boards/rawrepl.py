"""MicroPython raw REPL over any pyserial-like port (read, write, in_waiting, timeout).

Code goes to the board and files come and go through mpremote's transport (raw-paste and its flow
control, plain raw mode, fs_writefile/readfile/mkdir/rmfile), run on a port whose every read ends at
fl-hil's deadline (`mpremote_link.py`). fl-hil's own code here is what mpremote lacks: the prompt
hunt through garbage, streaming a running node's output line by line under one deadline with reset
detection, redaction of secrets and the board log.

Every read has a deadline (a `time.monotonic()` value); running out raises BoardError naming the
board, what was awaited and the tail of what arrived. Prompts are searched for, so stray bytes
before them do no harm.
"""

import contextlib
import struct
import time

from flhil.harness.errors import BoardError
from flhil.harness.lab.boards import mpremote_link as mp
from flhil.harness.secrets import redact

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"soft reboot\r\n"
# Seen while streaming when the board restarted under us.
RESET_SIGNS = (b"MPY: soft reboot", b"Type \"help()\" for more")
FILE_CHUNK = 2048  # file bytes per exec; the repr of a chunk must fit the board's heap comfortably
TAIL = 200  # bytes of received data quoted in errors


def _text(data):
    return data.decode("utf-8", "replace")


class Stream:
    """The output of code started with `RawRepl.start`: stdout lines, then stderr at the end."""

    def __init__(self, repl):
        self.repl = repl
        self.done = False
        self.stderr = None

    def readline(self, deadline):
        """Next stdout line (str, without line end), or None once the code has finished.

        Raises BoardError at the deadline, on a board reset, or (after the end) never.
        """
        if self.done:
            return None
        repl = self.repl
        while True:
            buf = repl._buf
            nl = buf.find(b"\n")
            eot = buf.find(b"\x04")
            if eot != -1 and (nl == -1 or eot < nl):
                line = bytes(buf[:eot])
                del buf[: eot + 1]
                self._finish(deadline)
                if line.strip(b"\r"):
                    return _text(line.rstrip(b"\r"))
                return None
            if nl != -1:
                line = bytes(buf[: nl + 1])
                del buf[: nl + 1]
                self._check_reset(line)
                return _text(line.rstrip(b"\r\n"))
            self._check_reset(bytes(buf))
            repl._fill(deadline, "a line of output (or the end of the running code)")

    def _check_reset(self, data):
        for sign in RESET_SIGNS:
            if sign in data:
                self.done = True
                self.repl.in_raw = False
                raise self.repl.error(f"board reset while running code (saw {sign!r})", data)

    def _finish(self, deadline):
        err = self.repl.read_until(b"\x04", deadline, "the end of stderr")
        self.stderr = _text(err[:-1])
        prompt = self.repl.read_until(b">", deadline, "the raw REPL prompt after running code")
        self.repl._prompt_taken = True
        self.done = True
        self._check_reset(err + prompt)  # code that reset the board ends with a boot banner


class RawRepl:
    """Raw REPL driver for one board. `name` appears in every error.

    `on_line(text)` receives every line the board sends (for the board log); `secrets` are masked in
    errors.
    """

    def __init__(self, port, name, on_line=None, secrets=()):
        self.port = port
        self.name = name
        self.on_line = on_line
        self.secrets = secrets if isinstance(secrets, list) else list(secrets)  # owner may update it
        self.in_raw = False
        self.paste = None  # raw-paste support: None unknown, True, False
        self._link = mp.DeadlinePort(port)  # what both fl-hil and mpremote read from
        self.transport = mp.transport_on(self._link, name)
        self._prompt_taken = False  # the raw prompt ">" was read here; mpremote expects to read it
        self._dirs = set()  # folders known to exist on the board (file writes)
        self._buf = bytearray()
        self._partial = bytearray()  # incomplete line not yet given to on_line
        self.received = 0
        try:
            port.timeout = 0.02
        except Exception:  # noqa: BLE001 - some port-like objects have a fixed timeout
            pass

    # -- low level -------------------------------------------------------------------------------
    def error(self, why, data=b""):
        tail = bytes(data[-TAIL:]) if data else bytes(self._buf[-TAIL:])
        return BoardError(self.name, redact(f"{why}; last bytes received: {tail!r}", self.secrets))

    def write(self, data):
        try:
            self.port.write(data)
            flush = getattr(self.port, "flush", None)
            if flush:
                flush()
        except Exception as e:  # pyserial raises SerialException or OSError when the port vanishes
            raise BoardError(self.name, f"port write failed ({type(e).__name__}: {e})") from e

    def _fill(self, deadline, what):
        """Read what is available (waiting at most until `deadline`) into the buffer."""
        if time.monotonic() >= deadline:
            raise self.error(f"timed out waiting for {what}")
        try:
            n = self._link.in_waiting or 1
            data = self._link.read(n)
        except Exception as e:
            raise BoardError(self.name, f"port read failed while waiting for {what} "
                                        f"({type(e).__name__}: {e}); is the board still attached?") from e
        if data:
            self.received += len(data)
            self._buf += data
            self._log(data)
        elif time.monotonic() >= deadline:
            raise self.error(f"timed out waiting for {what}")

    def _log(self, data):
        if self.on_line is None:
            return
        self._partial += data
        *lines, rest = self._partial.split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            text = _text(line.replace(b"\x04", b"").rstrip(b"\r"))
            self.on_line(redact(text, self.secrets))

    def flush_log(self):
        if self._partial and self.on_line:
            self.on_line(redact(_text(bytes(self._partial)), self.secrets))
        self._partial = bytearray()

    def read_until(self, marker, deadline, what):
        """Bytes up to and including `marker`; bytes after it stay buffered."""
        while True:
            i = self._buf.find(marker)
            if i != -1:
                out = bytes(self._buf[: i + len(marker)])
                del self._buf[: i + len(marker)]
                return out
            self._fill(deadline, what)

    def read_exact(self, n, deadline, what):
        while len(self._buf) < n:
            self._fill(deadline, what)
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def drain(self, quiet=0.05, deadline=None):
        """Discard input until the line has been quiet for `quiet` seconds."""
        deadline = deadline or time.monotonic() + 2.0
        last = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            before = self.received
            try:
                self._fill(deadline, "quiet")
            except BoardError:
                if time.monotonic() >= deadline:
                    break
                raise
            if self.received != before:
                last = time.monotonic()
        self._buf.clear()

    # -- protocol --------------------------------------------------------------------------------
    def interrupt(self):
        """Ctrl-C twice: stop running code."""
        self.write(b"\r\x03\x03")

    def enter(self, timeout=5.0):
        """Interrupt whatever runs and enter the raw REPL."""
        deadline = time.monotonic() + timeout
        self.interrupt()
        self.drain(0.05, min(deadline, time.monotonic() + 1.0))
        self.write(b"\r\x01")
        self.read_until(RAW_PROMPT, deadline, "the raw REPL prompt (after Ctrl-C, Ctrl-A)")
        self._prompt_taken = True
        self.in_raw = True

    def leave(self):
        """Back to the friendly REPL (Ctrl-B)."""
        self.write(b"\r\x02")
        self.in_raw = False
        self._prompt_taken = False

    def soft_reset(self, timeout=10.0):
        """Ctrl-D in the raw REPL: the board restarts its interpreter and returns to the raw REPL."""
        deadline = time.monotonic() + timeout
        if not self.in_raw:
            self.enter(timeout)
        self._buf.clear()
        self.write(b"\x04")
        self.read_until(SOFT_REBOOT, deadline, "'soft reboot' after Ctrl-D")
        self.read_until(RAW_PROMPT, deadline, "the raw REPL prompt after the soft reboot")
        self._prompt_taken = True

    @contextlib.contextmanager
    def _mpremote(self, deadline, what):
        """Run an mpremote transport operation until `deadline`; its errors become BoardErrors
        naming the board and what was awaited."""
        ahead = (b">" if self._prompt_taken else b"") + bytes(self._buf)
        self._link.unread(ahead)  # what fl-hil read ahead, mpremote reads first
        self._buf.clear()
        self._prompt_taken = False
        self._link.deadline = deadline
        try:
            yield self.transport
        except mp.DeadlinePassed:
            raise self.error(f"timed out waiting for {what}") from None
        except mp.TransportExecError as e:
            err = e.error_output.strip().splitlines()
            raise BoardError(self.name, redact(f"code raised on the board while {what}: "
                                               f"{err[-1] if err else e.status_code}", self.secrets)) from None
        except (mp.TransportError, struct.error) as e:
            raise self.error(f"{what}: {e}") from None
        except BoardError:
            raise
        except Exception as e:  # pyserial raises SerialException or OSError when the port vanishes
            raise BoardError(self.name, f"port failed while {what} ({type(e).__name__}: {e}); "
                                        f"is the board still attached?") from e
        finally:
            self._link.deadline = None

    def _send_raw(self, code, deadline):
        """Send code and the end marker (mpremote: raw-paste when the board has it, else raw)."""
        self.transport.use_raw_paste = self.paste is not False
        with self._mpremote(deadline, "the board to take the code (raw-paste or raw REPL)") as t:
            t.exec_raw_no_follow(code)
        self.paste = bool(self.transport.use_raw_paste)

    # -- files (mpremote's file operations) -----------------------------------------------------
    def write_file(self, remote, data, timeout=30.0):
        """Write bytes to a board file: folders made, written to `<remote>.tmp` and renamed over
        the old file, so a broken transfer never leaves half a file under the real name."""
        if self.in_raw is False:
            self.enter(min(timeout, 10.0))
        deadline = time.monotonic() + timeout
        with self._mpremote(deadline, f"writing {remote}") as t:
            path = ""
            for part in remote.strip("/").split("/")[:-1]:
                path += "/" + part
                if path in self._dirs:
                    continue
                try:
                    t.fs_mkdir(path)
                except (OSError, mp.TransportExecError):
                    pass  # it exists
                self._dirs.add(path)
            t.fs_writefile(remote + ".tmp", bytes(data), chunk_size=FILE_CHUNK)
            t.exec("import os\nos.rename(%r, %r)" % (remote + ".tmp", remote))

    def read_file(self, remote, timeout=10.0):
        """The bytes of a board file, or None when it does not exist."""
        if self.in_raw is False:
            self.enter(min(timeout, 10.0))
        with self._mpremote(time.monotonic() + timeout, f"reading {remote}") as t:
            try:
                return bytes(t.fs_readfile(remote, chunk_size=FILE_CHUNK))
            except OSError:
                return None

    def remove_file(self, remote, timeout=10.0):
        if self.in_raw is False:
            self.enter(min(timeout, 10.0))
        with self._mpremote(time.monotonic() + timeout, f"removing {remote}") as t:
            try:
                t.fs_rmfile(remote)
            except OSError:
                pass

    def start(self, code, timeout=10.0):
        """Send `code` and return a Stream of its output (the code keeps running)."""
        if isinstance(code, str):
            code = code.encode()
        deadline = time.monotonic() + timeout
        if not self.in_raw:
            self.enter(timeout)
        self._send_raw(code, deadline)
        return Stream(self)

    def exec(self, code, timeout=10.0):
        """Run `code` to its end; return (stdout, stderr) as text."""
        deadline = time.monotonic() + timeout
        stream = self.start(code, timeout)
        out = []
        while True:
            line = stream.readline(deadline)
            if line is None:
                break
            out.append(line)
        stdout = "\n".join(out) + ("\n" if out else "")
        return stdout, stream.stderr

    def eval_ok(self, code, timeout=10.0):
        """Run `code`; return stdout, raising BoardError if it raised."""
        out, err = self.exec(code, timeout)
        if err:
            raise BoardError(self.name, redact(f"code raised on the board: {err.strip()}", self.secrets))
        return out

    def exec_streaming(self, code, line_timeout=10.0, timeout=60.0):
        """Start `code` and yield its stdout lines as they come; ends at the end of the code.

        Each line must come within `line_timeout`, all of it within `timeout`. If the code raised,
        BoardError carries its traceback.
        """
        end = time.monotonic() + timeout
        stream = self.start(code, min(timeout, line_timeout))
        while True:
            line = stream.readline(min(end, time.monotonic() + line_timeout))
            if line is None:
                break
            yield line
        if stream.stderr:
            raise BoardError(self.name, redact(f"code raised on the board: {stream.stderr.strip()}",
                                               self.secrets))
