"""Runs one node from a run config: start, run the app, report, close. Used by PC nodes
(`python -m flhil.pc`), by the Pico W `main.py`, and in-process by the virtual-time lab.

Two shapes of app: fl-hil's `async def run(node, args)`, and an MPT-FLA script (upstream's
`async def main()` under `if __name__ == "__main__"`), which the harness ships with a generated
`__flhil_main__` (harness/run/apps.py): its `PtbFla` is bound here to the node of the run."""
import json
import sys

from flhil.compat import asyncio, format_exception
from flhil.node import Node
from flhil import mptfla

CONFIG_FILE = "flhil_run.json"
PLACEHOLDERS = ("nodes", "id", "server", "master")


def load_app(cfg):
    """The app module of a run config: a built-in (flhil/apps/) or the user's, from app_path."""
    path = cfg.get("app_path")
    if path:
        if path not in sys.path:
            sys.path.insert(0, path)
        name = cfg["app"]
        mod = __import__(name)
        for part in name.split(".")[1:]:
            mod = getattr(mod, part)
        return mod
    mod = __import__("flhil.apps." + cfg["app"])
    return getattr(mod.apps, cfg["app"])


def script_argv(cfg):
    """The script's sys.argv: `args.argv` with {nodes}, {id}, {server}, {master} filled in."""
    values = {"nodes": cfg["nodes"], "id": cfg["node"], "server": cfg.get("server", 0), "master": "localhost"}
    argv = [cfg["app"]]
    for item in (cfg.get("args") or {}).get("argv") or ():
        item = str(item)
        for k in PLACEHOLDERS:
            item = item.replace("{" + k + "}", str(values[k]))
        argv.append(item)
    return argv


def bind_script(app, cfg, runtime, made):
    """Make the script's `PtbFla(...)` the harness's node for this run; `made` collects them."""
    node_id = cfg["node"]

    class HarnessPtbFla(Node):
        def __init__(self, noNodes, nodeId, flSrvId=0, masterIpAdr="localhost"):
            if noNodes != cfg["nodes"] or nodeId != node_id:
                raise ValueError("the script built PtbFla(noNodes=%r, nodeId=%r) on node %d of a %d-node run: "
                                 "check the scenario's [args] argv" % (noNodes, nodeId, node_id, cfg["nodes"]))
            rt = dict(runtime)
            if rt.get("new_transport") is not None:
                rt["transport"] = rt["new_transport"]()
            rt.pop("new_transport", None)
            Node.__init__(self, cfg, **rt)
            made.append(self)

        async def start(self):
            for old in made[:-1]:  # upstream's `del ptb` before the next PtbFla
                await old.net.close()
            await Node.start(self)

    app.PtbFla = HarnessPtbFla
    app.__flhil_argv__ = script_argv(cfg)


async def run_script(app, cfg, runtime):
    made = []
    bind_script(app, cfg, runtime, made)
    try:
        await app.__flhil_main__()
    except SystemExit as e:  # upstream's scripts exit() on a wrong argv
        if e.args and e.args[0] not in (0, None):
            await _close_all(made)
            raise ValueError("the script exited with %r (argv %r)" % (e.args[0], app.__flhil_argv__))
    except BaseException:
        await _close_all(made)
        raise
    if not made:
        raise ValueError("the script returned without building a PtbFla")
    node = made[-1]
    for old in made[:-1]:
        for k in old.counts:
            node.counts[k] += old.counts[k]
    return node


async def _close_all(nodes):
    for node in nodes:
        await node.net.close()


async def run_node(cfg, transport=None, clock=None, tel=None, app=None, new_transport=None):
    """Run one node to its end. Returns the Node (its status and telemetry tell what happened).
    `app`: the app module (default: the one the config names); `new_transport()`: a fresh
    transport for each PtbFla a script builds (in-memory runs)."""
    if transport is None and new_transport is not None:
        transport = new_transport()
    node = Node(cfg, transport=transport, clock=clock, tel=tel)
    try:
        app = app or load_app(cfg)
        if hasattr(app, "run"):
            await node.start()
            value = await app.run(node, cfg.get("args") or {})
        elif hasattr(app, "__flhil_main__"):
            runtime = {"clock": clock, "tel": node.tel}  # the unskewed clock: each node skews its own
            if new_transport is not None:
                runtime["new_transport"] = new_transport
            await node.net.close()
            node = await run_script(app, cfg, runtime)
            value = getattr(app, "__flhil_value__", None)  # what the script's main returned
            if value is None:
                value = node.value  # else what its last exchange returned
        else:
            raise ValueError("app %s has neither `async def run(node, args)` nor an MPT-FLA main" % cfg["app"])
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
