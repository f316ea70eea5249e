"""The lab file: which boards, emulated boards and PC nodes a run may use (TOML), as a LabConfig.

```toml
[[boards]]                      # a real Pico W, found by one of serial / port / url
name = "pico1"
serial = "E6614C311B4A8B2A"     # USB serial number (survives re-enumeration after a reset)
power = ["uhubctl", "-l", "1-1", "-p", "2", "-a", "cycle"]   # optional power-cycle command
heap_kb = 180                   # optional

[emulated]                      # MicroPython unix-port processes standing in for boards
count = 4
heap_kb = 192
micropython = "micropython"
subnet = "127.77.0.0/24"        # each gets its own loopback address

[pc]
count = 2
interpreter = "cpython"         # or "micropython"

[network]                       # needed when there are real boards
ssid = "fl-lab"
password_env = "FLHIL_WIFI_PASSWORD"   # the NAME of the variable holding the password
host_address = "192.168.4.10"   # where boards reach the PCs
```
"""

import ipaddress
import re
import os
from dataclasses import dataclass
from typing import Any

from typing import Annotated

from pydantic import Field

from flhil.harness.config.model import ConfigModel, Expect, Forbidden, Int, OneOf, Text, validate
from flhil.harness.config.toml import At, Source, describe, parse_toml, read_toml
from flhil.harness.errors import ConfigError

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
DEFAULT_SUBNET = "127.77.0.0/24"
DEFAULT_HEAP_KB = 192


@dataclass(frozen=True)
class BoardSpec:
    """A real board and how to find it: exactly one of serial, port, url is set."""

    name: str
    serial: str | None = None
    port: str | None = None
    url: str | None = None
    power: tuple[str, ...] | None = None  # argv of a power-cycle command
    heap_kb: int | None = None


@dataclass(frozen=True)
class EmulatedSpec:
    count: int = 0
    heap_kb: int = DEFAULT_HEAP_KB
    micropython: str = "micropython"
    subnet: str = DEFAULT_SUBNET

    def addresses(self) -> tuple[str, ...]:
        """One loopback address per emulated board, in order."""
        hosts = ipaddress.ip_network(self.subnet).hosts()
        return tuple(str(next(hosts)) for _ in range(self.count))


@dataclass(frozen=True)
class PcSpec:
    count: int = 0
    interpreter: str = "cpython"


@dataclass(frozen=True)
class NetworkSpec:
    ssid: str
    password_env: str
    host_address: str | None = None


@dataclass(frozen=True)
class LabConfig:
    path: str | None
    boards: tuple[BoardSpec, ...] = ()
    emulated: EmulatedSpec = EmulatedSpec()
    pc: PcSpec = PcSpec()
    network: NetworkSpec | None = None

    def board(self, name: str) -> BoardSpec:
        for board in self.boards:
            if board.name == name:
                return board
        raise KeyError(name)

    def wifi_password(self) -> str:
        """The Wi-Fi password, read from the environment now (never stored in the lab file)."""
        if self.network is None:
            raise ConfigError(self.path, "network",
                              "real boards need a [network] table with ssid and password_env")
        name = self.network.password_env
        password = os.environ.get(name)
        if password is None:
            raise ConfigError(self.path, "network.password_env",
                              f"the environment variable {name} holding the Wi-Fi password is not set")
        return password


# ---------------------------------------------------------------------------------------------
# The file's keys

_URL = r"rfc2217://(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]?\d{1,4})"
_LOCATORS = ("serial", "port", "url")
_PASSWORD_IN_CLEAR = ("do not write the Wi-Fi password in the lab file; set password_env to the "
                      "name of an environment variable that holds it")


class BoardConfig(ConfigModel):
    name: Text(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*", expected="a name of letters, digits, _ . -",
               description="unique name of the board")
    serial: Text(expected="a USB serial number",
                 description="USB serial number (survives re-enumeration after a reset)") | None = None
    port: Text(expected="a serial device path like /dev/ttyACM0", description="device path") | None = None
    url: Text(pattern=_URL, expected="an URL rfc2217://host:port",
              description="a board exported over RFC 2217 (rfc2217://host:port)") | None = None
    power: Annotated[list[Text(allow_empty=True)], Field(min_length=1),
                     Expect('a command as a list of strings, like ["uhubctl", "-a", "cycle"]')] | None = \
        Field(None, description="argv of a power-cycle command")
    heap_kb: Int(1, description="free heap expected on the board, KB") | None = None

    def check(self, at, ctx):
        given = [key for key in _LOCATORS if getattr(self, key) is not None]
        if len(given) != 1:
            found = f"found {', '.join(given)}" if given else "found none"
            at.fail(f"give exactly one of serial (USB serial number), port (device path) or url "
                    f"(rfc2217://host:port) to find the board; {found}")


class EmulatedConfig(ConfigModel):
    count: Int(0, description="emulated Pico W boards: MicroPython unix-port processes")
    heap_kb: Int(16, 1 << 20, description="-X heapsize of each, KB") = DEFAULT_HEAP_KB
    micropython: Text(expected="the path or name of the micropython binary",
                      description="the unix-port binary") = "micropython"
    subnet: Text(expected="a subnet inside 127.0.0.0/8",
                 description="one loopback address per emulated board") = DEFAULT_SUBNET

    def check(self, at, ctx):
        try:
            subnet = ipaddress.ip_network(self.subnet, strict=False)
        except ValueError:
            subnet = None
        if subnet is None or subnet.version != 4 or not subnet.subnet_of(LOOPBACK):
            (at / "subnet").fail(f"expected a subnet inside 127.0.0.0/8 (loopback), got {describe(self.subnet)}")
        self.subnet = str(subnet)
        usable = subnet.num_addresses - 2 if subnet.prefixlen < 31 else subnet.num_addresses
        if self.count > usable:
            (at / "count").fail(f"subnet {subnet} has {usable} usable addresses, fewer than "
                                f"count = {self.count}")


class PcConfig(ConfigModel):
    count: Int(0, description="PC nodes: processes on this host")
    interpreter: OneOf(["cpython", "micropython"], description="what runs them") = "cpython"


class NetworkConfig(ConfigModel):
    ssid: Text(description="the Wi-Fi network the boards join")
    password_env: Text(expected="the name of an environment variable",
                       description="the NAME of the environment variable holding the Wi-Fi password")
    host_address: Text(expected="an IP address",
                       description="the address boards use to reach the PC nodes (loopback for a twin rack)") \
        | None = None
    password: Forbidden(_PASSWORD_IN_CLEAR)

    def check(self, at, ctx):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.password_env):
            # never echoed: a value that is not a variable name may be the password itself
            (at / "password_env").fail("expected the name of an environment variable (letters, digits, _), "
                                       "not the password; the value given is not shown")
        if self.host_address is None:
            return
        try:
            address = ipaddress.ip_address(self.host_address)
        except ValueError:
            (at / "host_address").fail(f"expected an IP address, got {describe(self.host_address)}")
        if address.is_unspecified:
            (at / "host_address").fail(f"expected an address boards can reach over Wi-Fi, got "
                                       f"{self.host_address} (unspecified)")
        # a loopback address is right for a twin rack (fl-hil emulate --rack), whose boards are
        # processes on this PC; real boards on Wi-Fi need the PC's address on their network


class LabFile(ConfigModel):
    boards: Annotated[list[BoardConfig], Expect("an array of tables [[boards]]")] = Field(
        default_factory=list, description="real Pico W boards")
    emulated: EmulatedConfig | None = Field(None, description="emulated boards standing in for real ones")
    pc: PcConfig | None = Field(None, description="PC nodes")
    network: NetworkConfig | None = Field(None, description="the boards' Wi-Fi; required with real boards")

    def check(self, at, ctx):
        for key in ("name",) + _LOCATORS:
            seen: dict[str, int] = {}
            for i, board in enumerate(self.boards):
                value = getattr(board, key)
                if value is None:
                    continue
                if value in seen:
                    (at / "boards" / i / key).fail(f"{describe(value)} is also boards[{seen[value]}].{key}; "
                                                   f"each board needs its own")
                seen[value] = i
        if self.boards and self.network is None:
            at.fail("real boards need a [network] table with ssid, password_env and host_address")
        if self.boards and self.pc is not None and self.pc.count and self.network.host_address is None:
            (at / "network" / "host_address").fail(
                "missing required key: boards and PC nodes together need the address boards use to "
                "reach the PCs")
        if not self.boards and not (self.emulated and self.emulated.count) and not (self.pc and self.pc.count):
            at.fail("the lab has no nodes: add [[boards]], [emulated] count or [pc] count")


def _build_lab(model: LabFile, path: str | None) -> LabConfig:
    boards = tuple(BoardSpec(name=b.name, serial=b.serial, port=b.port, url=b.url,
                             power=tuple(b.power) if b.power is not None else None, heap_kb=b.heap_kb)
                   for b in model.boards)
    return LabConfig(path=path, boards=boards,
               emulated=EmulatedSpec(**model.emulated.data()) if model.emulated else EmulatedSpec(),
               pc=PcSpec(**model.pc.data()) if model.pc else PcSpec(),
               network=NetworkSpec(**model.network.data()) if model.network else None)


def parse_lab(text: str, path: Any = "<lab>") -> LabConfig:
    """Validate lab-file text; ConfigError names the file, key, line and what was expected."""
    data, source = parse_toml(text, path)
    return _build_lab(validate(LabFile, data, At(source)), source.path)


def load_lab(path: str | os.PathLike) -> LabConfig:
    data, source = read_toml(path)
    return _build_lab(validate(LabFile, data, At(source)), source.path)


def default_emulated_lab(count: int = 8, pc: int | None = None,
                         micropython: str = "micropython") -> LabConfig:
    """The lab used when no lab file is given: `count` emulated boards and `pc` PC nodes
    (default: as many as `count`), all on loopback."""
    data = {"emulated": {"count": count, "micropython": micropython},
            "pc": {"count": count if pc is None else pc}}
    return _build_lab(validate(LabFile, data, At(Source("<default lab>"))), None)
