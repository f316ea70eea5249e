"""The lab file: which boards, emulated boards and PC nodes a run may use (TOML).

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

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from flhil.harness.errors import ConfigError
from flhil.harness.config.schema import (At, Int, ListOf, Source, Str, Table, describe, optional, parse_toml,
                            read_toml, required)

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
class Lab:
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
# Schema

_URL = r"rfc2217://(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]?\d{1,4})"
_LOCATORS = ("serial", "port", "url")


def _one_locator(board, at):
    given = [key for key in _LOCATORS if key in board]
    if len(given) != 1:
        found = f"found {', '.join(given)}" if given else "found none"
        at.fail(f"give exactly one of serial (USB serial number), port (device path) or url "
                f"(rfc2217://host:port) to find the board; {found}")


def _unique_boards(boards, at):
    for key in ("name",) + _LOCATORS:
        seen: dict[str, int] = {}
        for i, board in enumerate(boards):
            value = board.get(key)
            if value is None:
                continue
            if value in seen:
                (at / i / key).fail(f"{describe(value)} is also boards[{seen[value]}].{key}; "
                                    f"each board needs its own")
            seen[value] = i


def _loopback_subnet(emulated, at):
    text = emulated["subnet"]
    try:
        subnet = ipaddress.ip_network(text, strict=False)
    except ValueError:
        subnet = None
    if subnet is None or subnet.version != 4 or not subnet.subnet_of(LOOPBACK):
        (at / "subnet").fail(f"expected a subnet inside 127.0.0.0/8 (loopback), got {describe(text)}")
    emulated["subnet"] = str(subnet)
    usable = subnet.num_addresses - 2 if subnet.prefixlen < 31 else subnet.num_addresses
    if emulated["count"] > usable:
        (at / "count").fail(f"subnet {subnet} has {usable} usable addresses, fewer than "
                            f"count = {emulated['count']}")


def _host_address(network, at):
    if "host_address" not in network:
        return
    text = network["host_address"]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        (at / "host_address").fail(f"expected an IP address, got {describe(text)}")
    if address.is_loopback or address.is_unspecified:
        (at / "host_address").fail(f"expected an address boards can reach over Wi-Fi, got {text} "
                                   f"(loopback or unspecified)")


def _lab_checks(lab, at):
    if lab["boards"] and "network" not in lab:
        at.fail("real boards need a [network] table with ssid, password_env and host_address")
    if lab["boards"] and lab.get("pc", {}).get("count") and "host_address" not in lab["network"]:
        (at / "network" / "host_address").fail(
            "missing required key: boards and PC nodes together need the address boards use to "
            "reach the PCs")
    if not lab["boards"] and not lab.get("emulated", {}).get("count") and \
            not lab.get("pc", {}).get("count"):
        at.fail("the lab has no nodes: add [[boards]], [emulated] count or [pc] count")


_PASSWORD_IN_CLEAR = ("do not write the Wi-Fi password in the lab file; set password_env to the "
                      "name of an environment variable that holds it")

LAB_SPEC = Table({
    "boards": optional(ListOf(Table({
        "name": required(Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
                             expected="a name of letters, digits, _ . -")),
        "serial": Str(expected="a USB serial number"),
        "port": Str(expected="a serial device path like /dev/ttyACM0"),
        "url": Str(pattern=_URL, expected="an URL rfc2217://host:port"),
        "power": ListOf(Str(allow_empty=True), min_len=1,
                        expected='a command as a list of strings, like ["uhubctl", "-a", "cycle"]'),
        "heap_kb": Int(1),
    }, checks=[_one_locator]), expected="an array of tables [[boards]]"), []),
    "emulated": Table({
        "count": required(Int(0)),
        "heap_kb": optional(Int(16, 1 << 20), DEFAULT_HEAP_KB),
        "micropython": optional(Str(expected="the path or name of the micropython binary"), "micropython"),
        "subnet": optional(Str(expected="a subnet inside 127.0.0.0/8"), DEFAULT_SUBNET),
    }, checks=[_loopback_subnet]),
    "pc": Table({
        "count": required(Int(0)),
        "interpreter": optional(Str(choices=["cpython", "micropython"]), "cpython"),
    }),
    "network": Table({
        "ssid": required(Str()),
        "password_env": required(Str(pattern=r"[A-Za-z_][A-Za-z0-9_]*",
                                     expected="the name of an environment variable")),
        "host_address": Str(expected="an IP address"),
    }, checks=[_host_address], forbidden={"password": _PASSWORD_IN_CLEAR}),
}, checks=[lambda lab, at: _unique_boards(lab["boards"], at / "boards"), _lab_checks])


def _build_lab(data: dict, path: str | None) -> Lab:
    boards = tuple(BoardSpec(name=b["name"], serial=b.get("serial"), port=b.get("port"),
                             url=b.get("url"),
                             power=tuple(b["power"]) if "power" in b else None,
                             heap_kb=b.get("heap_kb"))
                   for b in data["boards"])
    network = NetworkSpec(**data["network"]) if "network" in data else None
    return Lab(path=path, boards=boards,
               emulated=EmulatedSpec(**data["emulated"]) if "emulated" in data else EmulatedSpec(),
               pc=PcSpec(**data["pc"]) if "pc" in data else PcSpec(),
               network=network)


def parse_lab(text: str, path: Any = "<lab>") -> Lab:
    """Validate lab-file text; ConfigError names the file, key, line and what was expected."""
    data, source = parse_toml(text, path)
    return _build_lab(LAB_SPEC.validate(data, At(source)), source.path)


def load_lab(path: str | os.PathLike) -> Lab:
    data, source = read_toml(path)
    return _build_lab(LAB_SPEC.validate(data, At(source)), source.path)


def default_emulated_lab(count: int = 8, pc: int | None = None,
                         micropython: str = "micropython") -> Lab:
    """The lab used when no lab file is given: `count` emulated boards and `pc` PC nodes
    (default: as many as `count`), all on loopback."""
    data = {"emulated": {"count": count, "micropython": micropython},
            "pc": {"count": count if pc is None else pc}}
    return _build_lab(LAB_SPEC.validate(data, At(Source("<default lab>"))), None)
