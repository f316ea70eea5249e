"""Find Raspberry Pi Pico boards (USB vendor 0x2E8A) among the host's serial ports, and the
twins of a twin rack (`fl-hil emulate --rack`), which register their pseudo-terminals in a
registry folder as USB devices would appear in pyserial's list."""

import json
import os
import tempfile
from dataclasses import dataclass
from types import SimpleNamespace

from serial.tools import list_ports

RPI_VID = 0x2E8A
BOOTLOADER_PIDS = (0x0003, 0x000F)  # RP2040 and RP2350 in BOOTSEL mode: a USB drive, no serial port
USB_DEVICES = "/sys/bus/usb/devices"


@dataclass(frozen=True)
class PortInfo:
    port: str  # device path, e.g. /dev/ttyACM0
    serial_number: str | None
    description: str
    vid: int | None = None
    pid: int | None = None
    location: str | None = None


def registry_dir():
    """Where twins register: $FLHIL_TWIN_REGISTRY, else a folder per user in the temp dir."""
    return os.environ.get("FLHIL_TWIN_REGISTRY") or os.path.join(
        tempfile.gettempdir(), "flhil-twins-%d" % os.getuid())


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def twin_entries(folder=None):
    """Registry entries (dicts: serial, port, name, pid, control) of twins whose rack is alive."""
    folder = folder or registry_dir()
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            continue  # half-written by a rack that died: ignored
        if isinstance(entry, dict) and _alive(int(entry.get("pid", 0))) and os.path.exists(entry.get("port", "")):
            out.append(entry)
    return out


def register_twin(entry, folder=None):
    """Write (atomically) the registry entry of one twin, keyed by its serial number."""
    folder = folder or registry_dir()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "%s.json" % entry["serial"])
    tmp = path + ".%d.tmp" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(entry, f)
    os.replace(tmp, path)
    return path


def unregister_twin(serial, folder=None):
    try:
        os.unlink(os.path.join(folder or registry_dir(), "%s.json" % serial))
    except FileNotFoundError:
        pass


def twin_entry(serial, folder=None):
    for entry in twin_entries(folder):
        if entry["serial"].lower() == serial.lower():
            return entry
    return None


def all_ports():
    """pyserial's port list plus the registered twins, as USB devices of vendor 0x2E8A."""
    ports = list(list_ports.comports())
    for e in twin_entries():
        ports.append(SimpleNamespace(device=e["port"], serial_number=e["serial"], vid=RPI_VID, pid=0x0005,
                                     description="Pico W twin %s (fl-hil emulate)" % e.get("name", "?"),
                                     location="twin"))
    return ports


def list_boards(comports=None):
    """Ports of Raspberry Pi USB devices (and twins), sorted by serial number then port.

    `comports` (a callable like serial.tools.list_ports.comports) is for tests.
    """
    found = []
    for p in (comports or all_ports)():
        if p.vid != RPI_VID:
            continue
        found.append(PortInfo(p.device, p.serial_number, p.description or "", p.vid, p.pid, p.location))
    return sorted(found, key=lambda i: (i.serial_number or "", i.port))


def find_port(serial_number, comports=None):
    """The device path of the board with this USB serial number, or None."""
    for info in list_boards(comports):
        if info.serial_number and info.serial_number.lower() == serial_number.lower():
            return info.port
    return None


def serial_number_of(port, comports=None):
    """The USB serial number of the device at `port` (any vendor), or None."""
    for p in (comports or all_ports)():
        if p.device == port:
            return p.serial_number
    return None


def bootloader_boards(root=USB_DEVICES):
    """USB serial numbers (or bus paths) of Picos attached in their bootloader (BOOTSEL), which
    have no serial port and no REPL; [] where sysfs is not there."""
    found = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return found
    for name in names:
        vid, pid = _sysfs(root, name, "idVendor"), _sysfs(root, name, "idProduct")
        if vid and pid and int(vid, 16) == RPI_VID and int(pid, 16) in BOOTLOADER_PIDS:
            found.append(_sysfs(root, name, "serial") or name)
    return found


def _sysfs(root, device, key):
    try:
        with open(os.path.join(root, device, key)) as f:
            return f.read().strip()
    except OSError:
        return None
