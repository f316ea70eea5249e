"""Find Raspberry Pi Pico boards (USB vendor 0x2E8A) among the host's serial ports."""

from dataclasses import dataclass

from serial.tools import list_ports

RPI_VID = 0x2E8A


@dataclass(frozen=True)
class PortInfo:
    port: str  # device path, e.g. /dev/ttyACM0
    serial_number: str | None
    description: str
    vid: int | None = None
    pid: int | None = None
    location: str | None = None


def list_boards(comports=None):
    """Ports of Raspberry Pi USB devices, sorted by serial number then port.

    `comports` (a callable like serial.tools.list_ports.comports) is for tests.
    """
    found = []
    for p in (comports or list_ports.comports)():
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
    for p in (comports or list_ports.comports)():
        if p.device == port:
            return p.serial_number
    return None
