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


def test_a_pico_in_its_bootloader_is_found_in_sysfs(tmp_path):
    for name, vid, pid, serial in (("1-1.2", "2e8a", "0003", "E6614C31BOOT"), ("1-1.3", "2e8a", "0005", "X"),
                                   ("1-1.4", "0403", "6001", "FTDI")):
        d = tmp_path / name
        d.mkdir()
        (d / "idVendor").write_text(vid + "\n")
        (d / "idProduct").write_text(pid + "\n")
        (d / "serial").write_text(serial + "\n")
    assert discovery.bootloader_boards(str(tmp_path)) == ["E6614C31BOOT"]
    assert discovery.bootloader_boards(str(tmp_path / "none")) == []


def test_a_missing_serial_number_lists_the_attached_boards(tmp_path, monkeypatch):
    from flhil.harness.errors import BoardError
    from flhil.harness.lab.boards.serial_board import SerialBoard
    import pytest
    monkeypatch.setattr(discovery, "all_ports", lambda: PORTS)
    monkeypatch.setattr(discovery, "bootloader_boards", lambda: ["E6614C31BOOT"])
    with pytest.raises(BoardError) as e:
        SerialBoard("pico9", serial_number="E66100000009").open()
    text = str(e.value)
    assert "pico9" in text and "E6614103E7AB2B2F (/dev/ttyACM1)" in text and "BOOTSEL" in text
