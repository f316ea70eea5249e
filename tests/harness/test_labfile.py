"""Lab file loading and its error messages."""

from pathlib import Path

import pytest

from flhil.harness.errors import ConfigError, HarnessError
from flhil.harness.config.lab import LabConfig, default_emulated_lab, load_lab, parse_lab

LABS = Path(__file__).resolve().parents[2] / "labs"

RACK = """\
[[boards]]
name = "pico1"
serial = "E661"
power = ["uhubctl", "-l", "1-1", "-p", "2", "-a", "cycle"]
heap_kb = 180

[[boards]]
name = "pico2"
port = "/dev/ttyACM1"

[[boards]]
name = "pico3"
url = "rfc2217://lab-pi:4001"

[emulated]
count = 2

[pc]
count = 1
interpreter = "micropython"

[network]
ssid = "lab"
password_env = "LAB_WIFI"
host_address = "192.168.4.10"
"""


def write(tmp_path, text, name="lab.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path, text, name="lab.toml") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_lab(write(tmp_path, text, name))
    return caught.value


def test_valid_lab_loads(tmp_path):
    lab = load_lab(write(tmp_path, RACK))
    assert isinstance(lab, LabConfig)
    assert [b.name for b in lab.boards] == ["pico1", "pico2", "pico3"]
    assert lab.boards[0].serial == "E661"
    assert lab.boards[0].power == ("uhubctl", "-l", "1-1", "-p", "2", "-a", "cycle")
    assert lab.boards[0].heap_kb == 180
    assert lab.boards[1].port == "/dev/ttyACM1" and lab.boards[1].power is None
    assert lab.board("pico3").url == "rfc2217://lab-pi:4001"
    assert (lab.emulated.count, lab.emulated.heap_kb, lab.emulated.micropython,
            lab.emulated.subnet) == (2, 192, "micropython", "127.77.0.0/24")
    assert lab.emulated.addresses() == ("127.77.0.1", "127.77.0.2")
    assert (lab.pc.count, lab.pc.interpreter) == (1, "micropython")
    assert lab.network.host_address == "192.168.4.10"
    with pytest.raises(AttributeError):
        lab.path = "other"  # frozen


def test_example_labs_load():
    rack = load_lab(LABS / "example-rack.toml")
    assert len(rack.boards) == 4 and all(b.serial and b.power for b in rack.boards)
    assert rack.emulated.count == 4 and rack.pc.count == 2
    assert rack.network.password_env
    assert load_lab(LABS / "emulated.toml").emulated.count == 8


def test_default_emulated_lab():
    lab = default_emulated_lab(count=5)
    assert lab.path is None and lab.boards == () and lab.network is None
    assert lab.emulated.count == 5 and lab.pc.count == 5
    assert default_emulated_lab(count=3, pc=0).pc.count == 0


def test_wifi_password_is_read_from_the_environment_at_use_time(tmp_path, monkeypatch):
    lab = load_lab(write(tmp_path, RACK))
    monkeypatch.delenv("LAB_WIFI", raising=False)
    with pytest.raises(ConfigError) as caught:
        lab.wifi_password()
    assert "LAB_WIFI" in str(caught.value) and "lab.toml" in str(caught.value)
    monkeypatch.setenv("LAB_WIFI", "s3cret")
    assert lab.wifi_password() == "s3cret"
    assert "s3cret" not in repr(lab)


def test_wifi_password_without_network(tmp_path):
    with pytest.raises(ConfigError, match=r"\[network\]"):
        default_emulated_lab().wifi_password()


@pytest.mark.parametrize("text, where, line, why", [
    # unknown key, with a suggestion
    ('[emulated]\ncount = 2\nheapkb = 100\n', "emulated.heapkb", 3, 'did you mean "heap_kb"?'),
    ('[[boards]]\nname = "a"\nserial = "1"\n\n[[boards]]\nname = "b"\nserail = "2"\n'
     '[network]\nssid = "x"\npassword_env = "P"\n',
     "boards[1].serail", 7, 'did you mean "serial"?'),
    ('[emulated]\ncount = 2\n[emulatd]\ncount = 1\n', "emulatd", 3, 'did you mean "emulated"?'),
    # wrong type
    ('[emulated]\ncount = "four"\n', "emulated.count", 2, 'expected an integer >= 0, got "four"'),
    ('[pc]\ncount = 1\ninterpreter = "pypy"\n', "pc.interpreter", 3,
     'expected one of "cpython", "micropython", got "pypy"'),
    ('[[boards]]\nname = "a"\nserial = "1"\npower = "uhubctl -a cycle"\n'
     '[network]\nssid = "x"\npassword_env = "P"\n', "boards[0].power", 4, "list of strings"),
    # out of range
    ('[emulated]\ncount = 2\nheap_kb = 4\n', "emulated.heap_kb", 3, "between 16 and"),
    ('[emulated]\ncount = -1\n', "emulated.count", 2, "got -1"),
    # password in clear
    ('[[boards]]\nname = "a"\nserial = "1"\n[network]\nssid = "x"\npassword = "hunter2"\n',
     "network.password", 6, "password_env"),
    # subnet outside loopback
    ('[emulated]\ncount = 2\nsubnet = "10.0.0.0/24"\n', "emulated.subnet", 3,
     'expected a subnet inside 127.0.0.0/8 (loopback), got "10.0.0.0/24"'),
    ('[emulated]\ncount = 9\nsubnet = "127.9.0.0/29"\n', "emulated.count", 2, "6 usable addresses"),
    # board locators
    ('[[boards]]\nname = "a"\nserial = "1"\nport = "/dev/ttyACM0"\n[network]\nssid = "x"\n'
     'password_env = "P"\n', "boards[0]", 1, "exactly one of serial"),
    ('[[boards]]\nname = "a"\nurl = "tcp://pi:4000"\n[network]\nssid = "x"\npassword_env = "P"\n',
     "boards[0].url", 3, "rfc2217://host:port"),
    ('[[boards]]\nname = "a"\nserial = "1"\n[[boards]]\nname = "a"\nserial = "2"\n'
     '[network]\nssid = "x"\npassword_env = "P"\n', "boards[1].name", 5, "also boards[0].name"),
    # network rules
    ('[[boards]]\nname = "a"\nserial = "1"\n', "", None, "need a [network] table"),
    ('[[boards]]\nname = "a"\nserial = "1"\n[network]\nssid = "x"\npassword_env = "my-var"\n',
     "network.password_env", 6, "the name of an environment variable"),
    ('[[boards]]\nname = "a"\nserial = "1"\n[pc]\ncount = 1\n[network]\nssid = "x"\n'
     'password_env = "P"\n', "network.host_address", 6, "reach the PCs"),
    ('[[boards]]\nname = "a"\nserial = "1"\n[network]\nssid = "x"\npassword_env = "P"\n'
     'host_address = "0.0.0.0"\n', "network.host_address", 7, "unspecified"),
    ('[emulated]\ncount = 0\n', "", None, "the lab has no nodes"),
    # missing required key: points at the enclosing table
    ('[pc]\ninterpreter = "cpython"\n', "pc.count", 1, "missing required key"),
])
def test_mistakes_name_file_key_line_and_reason(tmp_path, text, where, line, why):
    error = load_error(tmp_path, text, name="rack.toml")
    assert isinstance(error, HarnessError)
    assert error.where == where
    assert error.line == line
    assert why in error.why
    message = str(error)
    assert "rack.toml" in message and why in message
    if where:
        assert where in message
    if line:
        assert f"(line {line})" in message


def test_error_message_format(tmp_path):
    error = load_error(tmp_path, "[emulated]\ncount = 2\nsubnet = \"10.0.0.0/8\"\n", name="x.toml")
    assert str(error) == (f"{tmp_path / 'x.toml'}: emulated.subnet (line 3): expected a subnet "
                          f'inside 127.0.0.0/8 (loopback), got "10.0.0.0/8"')


def test_toml_syntax_error_and_missing_file(tmp_path):
    error = load_error(tmp_path, "[emulated]\ncount = \n")
    assert "not valid TOML" in error.why and error.line == 2
    with pytest.raises(ConfigError, match="file not found"):
        load_lab(tmp_path / "nope.toml")


def test_parse_lab_from_text():
    lab = parse_lab('[pc]\ncount = 3\n', path="inline.toml")
    assert lab.pc.count == 3 and lab.path == "inline.toml"
    with pytest.raises(ConfigError, match=r"^inline.toml: pc.count \(line 2\)"):
        parse_lab('[pc]\ncount = 1.5\n', path="inline.toml")


def test_a_password_pasted_into_password_env_is_never_echoed(tmp_path):
    error = load_error(tmp_path, '[[boards]]\nname = "a"\nserial = "1"\n[network]\nssid = "x"\n'
                                 'password_env = "hunter2!secret"\n')
    assert error.where == "network.password_env" and "hunter2" not in str(error)
    assert "not the password" in error.why
