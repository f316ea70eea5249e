"""A twin rack: emulated Pico W boards that the harness uses as real boards (`fl-hil emulate N
--rack FILE`).

Each twin has a USB serial number and registers its port in the twins' registry
(`discovery.registry_dir()`), which discovery reads beside pyserial's list; `machine.reset()`
re-enumerates it under another device name with the same serial number. Its Wi-Fi shim checks the
rack's access point (ssid, password). The rack writes a lab file listing the twins as `[[boards]]`
by serial number, by port and (one) by an rfc2217:// URL exported on loopback; each board's
`power` command is `fl-hil twin power SERIAL`, served by the rack's control socket.

Misbehaviour for tests (`misbehave={name: kind}`): `garbage` (random bytes, never a prompt),
`silence` (no answer, for good), `hang` (no answer until power-cycled), `wifi-wrong-password`,
`wifi-slow` (the join takes `SLOW_JOIN_MS`)."""
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading

from flhil.harness.config.lab import DEFAULT_SUBNET
from flhil.harness.errors import HarnessError
from flhil.harness.lab import discovery
from flhil.harness.lab.boards.emulated import EmulatedRack
from flhil.harness.lab.lab import reserve_subnet_blocks, subnet_hosts

DEFAULT_SSID = "fl-hil-twins"
DEFAULT_PASSWORD_ENV = "FLHIL_WIFI_PASSWORD"
SERIAL_PREFIX = "E6614C31"  # the first bytes of a Pico's flash unique id, as in its USB serial number
SLOW_JOIN_MS = 3000
MISBEHAVIOURS = ("garbage", "silence", "hang", "wifi-wrong-password", "wifi-slow")
BOARD_STATES = ("garbage", "silence", "hang")


class TwinRack:
    """`count` twins `twin0..`; `start()` boots them, `write_lab(path)` describes them; close()
    reaps every process and removes the registry entries."""

    def __init__(self, count, password, ssid=DEFAULT_SSID, password_env=DEFAULT_PASSWORD_ENV, heap_kb=192,
                 micropython=None, root=None, misbehave=None, rfc2217=True, log_dir=None, join_ms=0):
        if count < 1:
            raise HarnessError("a twin rack needs at least one board")
        misbehave = dict(misbehave or {})
        for name, kind in misbehave.items():
            if kind not in MISBEHAVIOURS:
                raise HarnessError("twin %s: unknown misbehaviour %r (one of %s)"
                                   % (name, kind, ", ".join(MISBEHAVIOURS)))
        self.count = count
        self.ssid = ssid
        self.password_env = password_env
        self.heap_kb = heap_kb
        self.rack_id = secrets.token_hex(2).upper()
        # the same stepping as labs (two blocks a lock), so a rack and a lab never share addresses
        offset, self._subnet_lock = reserve_subnet_blocks(DEFAULT_SUBNET)
        hosts = subnet_hosts(DEFAULT_SUBNET, offset)
        addresses = [next(hosts) for _ in range(count)]
        self.serials = ["%s%s%04X" % (SERIAL_PREFIX, self.rack_id, i) for i in range(count)]
        self._tmp = None
        if root is None:
            root = self._tmp = tempfile.mkdtemp(prefix="flhil-twins-")
        self.root = root
        self.control = os.path.join(discovery.registry_dir(), "rack-%s-%d.sock" % (self.rack_id, os.getpid()))
        ap = {"ssid": ssid, "password": password, "join_ms": join_ms}
        self.rack = EmulatedRack(count, root=root, heap="%dk" % heap_kb, micropython=micropython, prefix="twin",
                                 addresses=addresses, serials=self.serials, access_point=ap,
                                 on_port_change=self._register, log_dir=log_dir)
        for board in self.rack:
            kind = misbehave.pop(board.name, None)
            if kind == "wifi-wrong-password":
                board.access_point = dict(ap, password=password + "-not")
            elif kind == "wifi-slow":
                board.access_point = dict(ap, join_ms=SLOW_JOIN_MS)
            elif kind:
                board.misbehave = kind
        if misbehave:
            raise HarnessError("no twin named %s (twins: twin0..twin%d)" % (", ".join(misbehave), count - 1))
        self.exporter = None
        self.want_rfc2217 = rfc2217 and count >= 2
        self._server = None

    def __iter__(self):
        return iter(self.rack)

    def board(self, serial):
        for b in self.rack:
            if b.serial_number.lower() == serial.lower():
                return b
        raise KeyError(serial)

    def _register(self, board):
        discovery.register_twin({"serial": board.serial_number, "port": board.port, "name": board.name,
                                 "pid": os.getpid(), "control": self.control})

    def start(self, timeout=20.0):
        try:
            self.rack.start(timeout)
            for board in self.rack:
                self._register(board)
            self._serve_control()
            if self.want_rfc2217:
                last = self.rack[len(self.rack) - 1]
                self.exporter = _exporter(last)
        except BaseException:
            self.close()
            raise
        return self

    # -- the lab file ----------------------------------------------------------------------------
    def lab_text(self, pc=8):
        """A lab file listing the twins as real boards: twin0 by serial number, twin1 by port (with
        three or more), the last over RFC 2217 (with two or more), the others by serial number."""
        n = len(self.rack)
        lines = ["# A twin rack: %d emulated Pico W boards served by `fl-hil emulate %d --rack` (pid %d)."
                 % (n, n, os.getpid()),
                 "# Each board is a MicroPython unix port behind a pseudo-terminal, with a USB serial number.", ""]
        for i, board in enumerate(self.rack):
            lines += ["[[boards]]", "name = %s" % _q(board.name)]
            if self.exporter is not None and i == n - 1:
                lines.append("url = %s" % _q(self.exporter.url))
            elif i == 1 and n >= 3:
                lines.append("port = %s" % _q(board.port))
            else:
                lines.append("serial = %s" % _q(board.serial_number))
            power = [sys.executable, "-m", "flhil.harness", "twin", "power", board.serial_number]
            lines.append("power = [%s]" % ", ".join(_q(a) for a in power))
            lines += ["heap_kb = %d" % self.heap_kb, ""]
        lines += ["[pc]", "count = %d" % pc, "interpreter = \"cpython\"", "",
                  "[network]", "ssid = %s" % _q(self.ssid),
                  "password_env = %s   # the twins' Wi-Fi checks this password" % _q(self.password_env),
                  "host_address = \"127.0.0.1\"   # where twins reach the PC nodes", ""]
        return "\n".join(lines)

    def write_lab(self, path, pc=8):
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write(self.lab_text(pc))
        os.replace(tmp, path)  # a reader never sees half a file
        return path

    # -- control: power -------------------------------------------------------------------------
    def _serve_control(self):
        os.makedirs(os.path.dirname(self.control), exist_ok=True)
        try:
            os.unlink(self.control)
        except FileNotFoundError:
            pass
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.control)
        server.listen(8)
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._control_loop, daemon=True, name="twin-rack-control").start()

    def _control_loop(self):
        while self._server is not None:
            try:
                conn, _ = self._server.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(30)
            try:
                words = conn.makefile().readline().split()
                if len(words) == 2 and words[0] == "power":
                    self.board(words[1]).power_cycle(timeout=20)
                    reply = "ok"
                elif len(words) == 3 and words[0] == "misbehave":
                    self.board(words[1]).misbehave = None if words[2] == "none" else words[2]
                    reply = "ok"
                else:
                    reply = "error: unknown command %r" % " ".join(words)
            except KeyError as e:
                reply = "error: no twin with serial number %s in this rack" % e
            except Exception as e:  # noqa: BLE001 - the answer says what went wrong
                reply = "error: %s" % e
            try:
                conn.sendall((reply + "\n").encode())
            except OSError:
                pass

    def close(self):
        server, self._server = self._server, None
        if server is not None:
            server.close()
            try:
                os.unlink(self.control)
            except FileNotFoundError:
                pass
        if self.exporter is not None:
            self.exporter.close()
        for serial in self.serials:
            discovery.unregister_twin(serial)
        self.rack.close()
        if self._subnet_lock is not None:
            self._subnet_lock.close()
            self._subnet_lock = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _exporter(board):
    from flhil.harness.lab.rfc2217 import Rfc2217Exporter
    return Rfc2217Exporter(board.name, lambda: board.port).start()


def _q(text):
    return '"%s"' % str(text).replace("\\", "\\\\").replace('"', '\\"')


def send_command(serial, command, *args, timeout=40.0):
    """Ask the rack serving the twin with this serial number to do `command` ("power", or
    "misbehave" with a kind or "none")."""
    entry = discovery.twin_entry(serial)
    if entry is None:
        known = ", ".join(e["serial"] for e in discovery.twin_entries()) or "none"
        raise HarnessError("no twin with serial number %s is registered (twins: %s)" % (serial, known))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(entry["control"])
            s.sendall((" ".join((command, serial) + args) + "\n").encode())
            reply = s.makefile().readline().strip()
        except OSError as e:
            raise HarnessError("twin %s: its rack did not answer %r: %s" % (serial, command, e)) from e
    if reply != "ok":
        raise HarnessError("twin %s: %s" % (serial, reply or "no answer from its rack"))
