"""Runs one node from a run config: start, run the app, report, close. Used by PC nodes
(`python -m firmware.pc`), by the Pico W `main.py`, and in-process by the virtual-time lab."""
import json

from flhil.compat import asyncio, format_exception
from flhil.node import Node
from flhil import mptfla

CONFIG_FILE = "flhil_run.json"


def load_app(name):
    mod = __import__("flhil.apps." + name)
    return getattr(mod.apps, name)


async def run_node(cfg, transport=None, clock=None, tel=None):
    """Run one node to its end. Returns the Node (its status and telemetry tell what happened)."""
    mptfla.use_config(cfg)
    node = Node(cfg, transport=transport, clock=clock, tel=tel)
    value = None
    try:
        app = load_app(cfg["app"])
        await node.start()
        value = await app.run(node, cfg.get("args") or {})
        await node.finish(value)
    except Exception as e:  # a node reports its error and exits cleanly; the harness decides
        node.status = "error"
        node.tel.emit("error", msg="%s: %s" % (type(e).__name__, e), tb=format_exception(e))
        await node.close()
    return node


def read_config(path=CONFIG_FILE):
    with open(path) as f:
        return json.load(f)


def main(path=CONFIG_FILE):
    asyncio.run(run_node(read_config(path)))
