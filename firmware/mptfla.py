"""Upstream MPT-FLA's API on the fl-hil runtime: an upstream-style application runs with its import
line changed to `from flhil.mptfla import *`.

The star import gives what upstream's does: `PtbFla` and the modules upstream's own module imports
(`asyncio`, `sys`, `time`, `json`, `socket`), which upstream's examples use without importing them.

Standalone (no harness), upstream's conventions: node k listens on port 6000+k of its own address
(`localhost` when the master is `localhost`, else the board's Wi-Fi address or the PC's address
towards the master; FLHIL_MY_IP overrides it on a PC with several), announces it to node flSrvId at
masterIpAdr, and takes the others' addresses from it. Telemetry is off unless FLHIL_TELEMETRY names
a file. A new PtbFla closes the ones before it (upstream's `del ptb`), so one process can run
several. Under the harness, the harness binds `PtbFla` to the node it runs (see entry.py)."""
import json
import sys
import time

from flhil.compat import asyncio
from flhil.node import Node
from flhil.telemetry import Telemetry
from flhil.clock import LoopClock

try:
    import socket
except ImportError:  # pragma: no cover - every MicroPython port with a network has it
    socket = None

PORT_BASE = 6000
_open = []  # nodes of this process not closed yet: a new one closes them before it listens


def _getenv(name):
    try:
        import os
        return os.getenv(name)
    except (ImportError, AttributeError):  # a board has no environment
        return None


def my_address(master):
    """The address this node listens on and announces, as upstream chooses it."""
    override = _getenv("FLHIL_MY_IP")
    if override:
        return override
    if master == "localhost":
        return master
    try:
        import network
        wlan = network.WLAN(network.STA_IF)
        if wlan.isconnected():
            return wlan.ifconfig()[0]
    except (ImportError, AttributeError, OSError):
        pass
    # a PC: the address its route to the master leaves from (connecting a UDP socket sends nothing)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect((master, PORT_BASE))
        return s.getsockname()[0]
    except (AttributeError, OSError):
        raise OSError("cannot tell this host's address towards %s; set FLHIL_MY_IP" % master)
    finally:
        s.close()


def standalone_config(noNodes, nodeId, flSrvId, masterIpAdr):
    """Upstream's launch: fixed ports, the coordinator's address known, every other announced."""
    return {"run": "standalone", "key": "00", "node": nodeId, "nodes": noNodes, "server": flSrvId,
            "payload": "json",  # upstream's apps send any JSON value
            "listen": [my_address(masterIpAdr), PORT_BASE + nodeId],
            "peers": {str(flSrvId): [masterIpAdr, PORT_BASE + flSrvId]}}


class _FileLines:
    """Telemetry lines appended to a file (FLHIL_TELEMETRY), or nowhere."""

    def __init__(self, path):
        self.path = path

    def __call__(self, line):
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


class PtbFla(Node):
    def __init__(self, noNodes, nodeId, flSrvId=0, masterIpAdr="localhost", **runtime):
        cfg = standalone_config(noNodes, nodeId, flSrvId, masterIpAdr)
        if "tel" not in runtime:
            clock = runtime.get("clock") or LoopClock()
            runtime["clock"] = clock
            runtime["tel"] = Telemetry(nodeId, clock, write=_FileLines(_getenv("FLHIL_TELEMETRY")))
        Node.__init__(self, cfg, **runtime)

    async def start(self):
        await close_open()
        _open.append(self)
        await Node.start(self)

    async def close(self):
        if self in _open:
            _open.remove(self)
        await Node.close(self)

    def __del__(self):
        # `del ptb` on CPython: the listening socket goes now, the rest with the loop
        self.net.close_now()


async def close_open():
    while _open:
        node = _open.pop()
        try:
            await node.close()
        except Exception:  # a node of an earlier, finished event loop: free its port anyway
            node.net.close_now()
