"""A MicroPython board on a serial port: by device path, USB serial number or rfc2217:// URL."""

import subprocess
import time
from pathlib import Path

import serial

from flhil.harness.lab import deploy as deploy_mod
from flhil.harness.lab import discovery
from flhil.harness.lab.boards.base import Board
from flhil.harness.lab.boards.rawrepl import RawRepl
from flhil.harness.errors import BoardError
from flhil.harness.secrets import redact, secrets_of


POWER_CYCLE_S = 15.0  # a Pico W is back on USB ~1 s after power returns
MAIN_ERROR = "flhil main: error:"  # what the board's main.py prints when the node cannot run
WIFI_STATUS = {-1: "connection failed", -2: "no access point with that ssid", -3: "wrong password",
               0: "idle", 1: "still connecting", 2: "no IP address yet"}
# Run on the board: join, wait for an address or a failure, one answer line. The password is in the
# code sent, never in what the board prints.
WIFI_JOIN = """import network, time
w = network.WLAN(network.STA_IF)
w.active(True)
try:
    w.config(pm=0xA11140)
except Exception:
    pass
if not w.isconnected():
    w.connect(%(ssid)r, %(password)r)
t = time.ticks_ms()
while not w.isconnected() and w.status() >= 0 and time.ticks_diff(time.ticks_ms(), t) < %(ms)d:
    time.sleep_ms(50)
if w.isconnected():
    print("IP %%s" %% w.ifconfig()[0])
else:
    print("FAIL %%d %%d" %% (w.status(), time.ticks_diff(time.ticks_ms(), t)))
"""


class SerialBoard(Board):
    """A board reached through its REPL. Every line it prints goes to `<log_dir>/<name>.log`.

    Lines of the current run stay in `received` even after a BoardError, which is kept in `error`.
    `power_cycle_cmd` is an argv list (e.g. uhubctl) that cuts and restores the board's power.
    """

    kind = "serial"

    def __init__(self, name, port=None, serial_number=None, url=None, baudrate=115200, log_dir=None,
                 address=None, power_cycle_cmd=None, cache_dir=None, prefix="", line_timeout=30.0,
                 heap_kb=None):
        if not (port or serial_number or url):
            raise ValueError("SerialBoard needs a port, a serial number or a URL")
        self.name = name
        self.port = port
        self.serial_number = serial_number
        self.url = url
        self.baudrate = baudrate
        self.address = address
        self.power_cycle_cmd = list(power_cycle_cmd) if power_cycle_cmd else None
        self.cache_dir = cache_dir
        self.prefix = prefix
        self.line_timeout = line_timeout
        self.heap_kb = heap_kb  # the heap budget of heap expectations (the lab's heap_kb)
        self.listen_port = None  # the TCP port of its node (set per run by the lab)
        self.recoveries = []  # what made the harness power-cycle the board, one line each
        self.secrets = []
        self.received = []
        self.stderr = None
        self.error = None
        self._serial = None
        self._repl = None
        self._stream = None
        self._log = None
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            self.log_path = Path(log_dir) / f"{name}.log"
        else:
            self.log_path = None

    @classmethod
    def from_spec(cls, spec, log_dir=None, **kw):
        """The board of a lab file's [[boards]] entry (a config.lab.BoardSpec)."""
        return cls(spec.name, port=spec.port, serial_number=spec.serial, url=spec.url, log_dir=log_dir,
                   power_cycle_cmd=spec.power, heap_kb=spec.heap_kb, **kw)

    # -- port ----------------------------------------------------------------------------------
    def _device(self):
        if self.url:
            return self.url
        if self.serial_number:
            found = discovery.find_port(self.serial_number)
            if found:
                return found
            if not self.port:
                attached = ", ".join(f"{b.serial_number} ({b.port})" for b in discovery.list_boards()
                                     if b.serial_number) or "none"
                stuck = discovery.bootloader_boards()
                hint = (f"; in the bootloader (BOOTSEL: a USB drive, no serial port, no REPL): "
                        f"{', '.join(stuck)}, power-cycle it without BOOTSEL pressed or flash MicroPython"
                        if stuck else "")
                raise BoardError(self.name, f"no board with USB serial number {self.serial_number} "
                                            f"attached; attached Pico boards: {attached}{hint}")
        return self.port

    def open(self):
        """Open the port (if closed) and return the raw REPL driver."""
        if self._repl is not None:
            return self._repl
        device = self._device()
        try:
            if device.startswith(("rfc2217://", "socket://", "loop://")):
                ser = serial.serial_for_url(device, baudrate=self.baudrate, timeout=0.02)
            else:
                ser = serial.Serial(device, self.baudrate, timeout=0.02, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            busy = "busy" in str(e).lower() or "in use" in str(e).lower() or "lock" in str(e).lower()
            hint = " (the port is in use by another program: close it there)" if busy else ""
            raise BoardError(self.name, f"cannot open {device}: {e}{hint}") from e
        self.port = device if not self.url else self.port
        if self.serial_number is None and not self.url:
            self.serial_number = discovery.serial_number_of(device)
        self._serial = ser
        self._repl = RawRepl(ser, self.name, on_line=self._log_line, secrets=self.secrets)
        return self._repl

    @property
    def repl(self):
        return self.open()

    def _log_line(self, text):
        if self.log_path is None:
            return
        if self._log is None:
            self._log = open(self.log_path, "a", encoding="utf-8")
        self._log.write(f"{time.strftime('%H:%M:%S')} {redact(text, self.secrets)}\n")
        self._log.flush()

    def _close_port(self):
        if self._repl is not None:
            self._repl.flush_log()
        if self._serial is not None:
            try:
                self._serial.close()
            except Exception:  # noqa: BLE001 - a vanished port may fail to close
                pass
        self._serial = self._repl = self._stream = None

    # -- Board ------------------------------------------------------------------------------------
    def prepare(self, firmware, compile=True, force=False, timeout=60.0):
        """Deploy a firmware tree (or a prebuilt {remote: local} map); returns a DeployResult."""
        files = firmware if isinstance(firmware, dict) else deploy_mod.build(
            firmware, self.cache_dir, compile=compile, prefix=self.prefix)
        repl = self.open()
        repl.enter(timeout=10.0)
        return deploy_mod.deploy(repl, files, force=force, timeout=timeout)

    def start(self, run_config):
        """Write `flhil_run.json`, soft-reset for a fresh interpreter and run `import main`."""
        self.secrets[:] = secrets_of(run_config)  # shared with the REPL driver, so errors are masked too
        self.received, self.stderr, self.error = [], None, None
        repl = self.answer()
        deploy_mod.write_run_config(repl, run_config)
        repl.soft_reset(timeout=15.0)  # a module imported before would not run again
        self._stream = repl.start("import main", timeout=10.0)

    def lines(self, deadline):
        """Lines printed by the running node, then its traceback if it raised; until `deadline`."""
        stream = self._stream
        if stream is None:
            return
        try:
            while True:
                line = stream.readline(min(deadline, time.monotonic() + self.line_timeout))
                if line is None:
                    break
                self.received.append(line)
                yield line
                if line.startswith(MAIN_ERROR):  # main.py gave up (it blinks until reset): say so now
                    raise BoardError(self.name, line[len(MAIN_ERROR):].strip())
        except BoardError as e:
            self.error = e
            raise
        self.stderr = stream.stderr
        for line in (stream.stderr or "").splitlines():
            self.received.append(line)
            yield line

    def stop(self, timeout=3.0):
        """Ctrl-C, collect what was still printed, remove the run config from flash (it holds the
        Wi-Fi password, and main.py would run it again at the next boot), back to the friendly
        REPL. Never raises."""
        if self._repl is None:
            return
        started = self._stream is not None
        try:
            self._repl.interrupt()
            if self._stream is not None and not self._stream.done:
                for _ in self.lines(time.monotonic() + timeout):
                    pass
            if started:
                self._repl.enter(timeout=timeout)
                deploy_mod.remove_file(self._repl, deploy_mod.RUN_CONFIG, timeout)
            self._repl.leave()
        except BoardError as e:
            self.error = self.error or e
        finally:
            self._stream = None

    def close(self):
        self.stop()
        self._close_port()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- provisioning ----------------------------------------------------------------------------
    def answer(self, timeout=5.0):
        """The raw REPL, power-cycling the board once (when it has a power command) if it does
        not answer; the reason is kept in `recoveries`."""
        try:
            repl = self.open()
            repl.enter(timeout=timeout)
            return repl
        except BoardError as e:
            first = e
        if self.serial_number and not self.url and discovery.find_port(self.serial_number) not in (None, self.port):
            # it reset and came back under another device name: the same board, found again
            self._reconnect(timeout)
            return self.repl
        if not self.power_cycle_cmd:
            raise first
        self.recoveries.append(f"did not answer ({first.why}); power-cycled with {' '.join(self.power_cycle_cmd)}")
        self.power_cycle(timeout=POWER_CYCLE_S)
        return self.repl

    def join_wifi(self, ssid, password, timeout=20.0):
        """Join the Wi-Fi network and return the board's address, within `timeout` seconds."""
        self.secrets[:] = [password] if password else []
        repl = self.answer()
        code = WIFI_JOIN % {"ssid": ssid, "password": password, "ms": int(timeout * 1000)}
        out = repl.eval_ok(code, timeout=timeout + 5.0).strip().splitlines()
        last = out[-1].split() if out else []
        if len(last) == 2 and last[0] == "IP":
            self.address = last[1]
            return self.address
        if len(last) == 3 and last[0] == "FAIL":
            status, ms = int(last[1]), int(last[2])
            why = WIFI_STATUS.get(status, "status %d" % status)
            if status >= 0:
                why = f"no address within {timeout:.0f} s ({why})"
            raise BoardError(self.name, f"Wi-Fi join to {ssid!r} failed: {why} after {ms / 1000:.1f} s")
        raise BoardError(self.name, f"Wi-Fi join to {ssid!r}: unexpected answer {' '.join(out)[-200:]!r}")

    def heap_total_kb(self, timeout=10.0):
        """The board's heap (free + used after a collection), KB."""
        out = self.answer().eval_ok("import gc\ngc.collect()\nprint(gc.mem_free()+gc.mem_alloc())", timeout)
        return int(out.strip()) // 1024

    # -- resets --------------------------------------------------------------------------------
    def hard_reset(self, timeout=20.0):
        """machine.reset(), then wait for the port to return (maybe under another name)."""
        repl = self.open()
        repl.enter(timeout=5.0)
        repl.write(b"import machine\nmachine.reset()\x04")
        try:  # the board may vanish before it answers, so this is a courtesy wait only
            repl.read_until(b"OK", time.monotonic() + 2.0, "'OK' before the reset")
        except BoardError:
            pass
        self._reconnect(timeout)

    def power_cycle(self, timeout=30.0):
        """Run the power-cycle command, then wait for the port to return."""
        if not self.power_cycle_cmd:
            raise BoardError(self.name, "no power-cycle command configured")
        self._close_port()
        try:
            proc = subprocess.run(self.power_cycle_cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as e:
            raise BoardError(self.name, f"power-cycle command failed: {e}") from e
        if proc.returncode != 0:
            raise BoardError(self.name, f"power-cycle command exited {proc.returncode}: "
                                        f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        self._reconnect(timeout)

    def _reconnect(self, timeout):
        self._close_port()
        deadline = time.monotonic() + timeout
        time.sleep(0.2)  # give USB time to drop the old device
        last = None
        while time.monotonic() < deadline:
            try:
                self.open().enter(timeout=max(0.5, min(3.0, deadline - time.monotonic())))
                return
            except BoardError as e:
                last = e
                self._close_port()
                time.sleep(0.2)
        where = f"serial number {self.serial_number}" if self.serial_number else self.port
        raise BoardError(self.name, f"did not come back after reset within {timeout:.0f}s ({where}): "
                                    f"{last.why if last else 'no attempt'}")

    def __repr__(self):
        return f"SerialBoard({self.name!r}, port={self.port!r}, serial_number={self.serial_number!r})"
