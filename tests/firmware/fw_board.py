"""The Pico W entry (firmware/board/main.py) on the emulated board's machine/network/rp2 shims
(harness/boards/emulated_modules): Wi-Fi up with power saving off, listen address "auto" replaced
by the Wi-Fi address, the node runs, the password is never printed, the LED ends off.
Runs under CPython and MicroPython (tests/firmware/mprun.py)."""
import json
import os
import sys

import fwkit
from flhil import entry
from flhil.clock import LoopClock
from flhil.compat import asyncio
from flhil.telemetry import Telemetry


def _up(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else "."


ROOT = _up(_up(_up(fwkit.__file__)))
SHIMS = ROOT + "/harness/lab/boards/emulated_modules/"
MAIN = ROOT + "/firmware/board/main.py"
PASSWORD = "pw-never-printed-7731"


class _Module:
    pass


def _load(path, name, extra=None):
    ns = {"__name__": name}
    if extra:
        ns.update(extra)
    with open(path) as f:
        exec(f.read(), ns)
    return ns


def _as_module(ns):
    m = _Module()
    for k in ns:
        setattr(m, k, ns[k])
    return m


class Shims:
    """machine, network and rp2 from the emulated board, put in sys.modules for one test."""

    def __init__(self, ip):
        self.wlans = []
        self.saved = {}
        rp2 = _load(SHIMS + "rp2.py", "rp2")
        machine = _load(SHIMS + "machine.py", "machine")
        network = _load(SHIMS + "network.py", "network")
        network["_ip"] = ip
        base = network["WLAN"]
        wlans = self.wlans

        class WLAN(base):
            def __init__(self, interface=0):
                base.__init__(self, interface)
                wlans.append(self)

        network["WLAN"] = WLAN
        self.rp2 = rp2
        self.modules = {"rp2": _as_module(rp2), "machine": _as_module(machine), "network": _as_module(network)}

    def __enter__(self):
        for k in self.modules:
            self.saved[k] = sys.modules.get(k)
            sys.modules[k] = self.modules[k]
        return self

    def __exit__(self, *exc):
        for k in self.saved:
            if self.saved[k] is None:
                del sys.modules[k]
            else:
                sys.modules[k] = self.saved[k]


def _tmp_path(name):
    return "/tmp/flhil_fw_%s_%d.json" % (name, fwkit.name_hash(name))


async def test_board_main_runs_a_client_node():
    cfgs = fwkit.configs("b_main", 3, "central_avg", {"iterations": 2})
    board = cfgs[1]
    ip, port = board["listen"]
    board["listen"] = ["auto", port]
    board["wifi"] = {"ssid": "flhil-lab", "password": PASSWORD, "country": "RS"}
    path = _tmp_path("b_main")
    with open(path, "w") as f:
        json.dump(board, f)
    printed = []
    lines = []
    events = []
    orig = entry.run_node

    async def run_node(cfg, transport=None, clock=None, tel=None):
        tel = Telemetry(cfg["node"], LoopClock(), write=lines.append, sink=events.append)
        return await orig(cfg, transport, clock, tel)

    def fake_print(*args):
        printed.append(" ".join(str(a) for a in args))

    entry.run_node = run_node
    try:
        with Shims(ip) as shims:
            ns = _load(MAIN, "flhil_board_test", {"print": fake_print})
            node, others = await asyncio.gather(ns["start"](path), fwkit.run([cfgs[0], cfgs[2]]))
            assert shims.rp2["_country"] == "RS"
            assert len(shims.wlans) == 1 and shims.wlans[0]._cfg["pm"] == 0xA11140
            assert ns["LED"] is not None and ns["LED"].value() == 0  # on while running, off after
    finally:
        entry.run_node = orig
        os.remove(path)
    assert node is not None and node.status == "ok", printed
    assert node.cfg["listen"] == [ip, port]
    want = fwkit.central_avg(3, 2)
    assert [e["value"] for e in events if e["ev"] == "result"] == [want[1]]
    assert others.result(0) == want[0] and others.result(2) == want[2]
    for text in printed + lines:
        assert PASSWORD not in text, text
    assert any("Wi-Fi up, address " + ip in p for p in printed), printed


async def test_board_main_reports_a_bad_config():
    printed = []

    def fake_print(*args):
        printed.append(" ".join(str(a) for a in args))

    with Shims("127.0.0.1"):
        ns = _load(MAIN, "flhil_board_test", {"print": fake_print})
        node = await ns["start"]("/tmp/flhil_fw_no_such_config.json")
    assert node is None
    assert any("error" in p for p in printed), printed


def test_board_boot_imports():
    _load(ROOT + "/firmware/board/boot.py", "boot")
