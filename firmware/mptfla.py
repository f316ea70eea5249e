"""Upstream MPT-FLA's API on the fl-hil runtime: an upstream-style application runs with its import
line changed to `from flhil.mptfla import *`.

Under the harness the run config written by the harness is used (see `entry.py`); standalone,
the upstream defaults apply: node k listens on masterIpAdr port 6000+k and node flSrvId coordinates."""
from flhil.node import Node

_run_config = None  # set by firmware.entry for upstream-style apps started by the harness


def use_config(cfg):
    global _run_config
    _run_config = cfg


def standalone_config(noNodes, nodeId, flSrvId, masterIpAdr):
    peers = {}
    for k in range(noNodes):
        peers[str(k)] = [masterIpAdr, 6000 + k]
    return {"run": "standalone", "key": "00", "node": nodeId, "nodes": noNodes, "server": flSrvId,
            "listen": [masterIpAdr, 6000 + nodeId], "peers": peers}


class PtbFla(Node):
    def __init__(self, noNodes, nodeId, flSrvId=0, masterIpAdr="localhost", **runtime):
        cfg = _run_config
        if cfg is None or cfg.get("node") != nodeId:
            cfg = standalone_config(noNodes, nodeId, flSrvId, masterIpAdr)
        Node.__init__(self, cfg, **runtime)
