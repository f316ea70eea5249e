"""Discovery of Pico boards among serial ports."""

from types import SimpleNamespace

from flhil.harness.lab import discovery


def _port(device, vid, serial, desc="Board CDC"):
    return SimpleNamespace(device=device, vid=vid, pid=0x0005, serial_number=serial, description=desc,
                           location="1-1.2:1.0")


PORTS = [
    _port("/dev/ttyACM1", 0x2E8A, "E6614103E7AB2B2F"),
    _port("/dev/ttyUSB0", 0x0403, "FTDI123", "FT232R"),
    _port("/dev/ttyACM0", 0x2E8A, "E6614103E7000001"),
    _port("/dev/ttyS0", None, None, "n/a"),
]


def test_lists_only_raspberry_pi_ports_sorted():
    boards = discovery.list_boards(lambda: PORTS)
    assert [(b.port, b.serial_number) for b in boards] == [
        ("/dev/ttyACM0", "E6614103E7000001"), ("/dev/ttyACM1", "E6614103E7AB2B2F")]
    assert boards[0].description == "Board CDC" and boards[0].vid == 0x2E8A


def test_find_port_by_serial_number_after_renumbering():
    assert discovery.find_port("e6614103e7ab2b2f", lambda: PORTS) == "/dev/ttyACM1"
    moved = [_port("/dev/ttyACM7", 0x2E8A, "E6614103E7AB2B2F")]
    assert discovery.find_port("E6614103E7AB2B2F", lambda: moved) == "/dev/ttyACM7"
    assert discovery.find_port("nope", lambda: PORTS) is None


def test_serial_number_of_any_port():
    assert discovery.serial_number_of("/dev/ttyUSB0", lambda: PORTS) == "FTDI123"
    assert discovery.serial_number_of("/dev/ttyX", lambda: PORTS) is None


def test_real_host_listing_does_not_fail():
    assert isinstance(discovery.list_boards(), list)
