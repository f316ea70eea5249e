"""Run configs (docs/design.md, "Run config"): what each node of a run is told, built once per run
for every backend."""
import hashlib
import secrets

from flhil.harness.run.apps import BOARD_APP_PATH, payload_shape
from flhil.auth import pair_table
from flhil.harness.run.spec import DEFAULT_PORT
from flhil.lagmon import PERIOD_MS as LAG_PERIOD_MS
from flhil.wire import DEFAULT_MAX_FRAME

MEMORY = "mem"  # the pseudo host of an in-memory (virtual-time) node
ANNOUNCED = "auto"  # a board that learns its address at boot (DHCP) announces it at the barrier


def run_identity(spec, deterministic):
    """(run id, key hex): from the seed in virtual time (so traces are exact), random otherwise."""
    if deterministic:
        return "v-%d" % spec.seed, hashlib.sha256(b"fl-hil virtual run key %d" % spec.seed).hexdigest()[:32]
    return "r-" + secrets.token_hex(4), secrets.token_hex(16)


def _port(slot):
    return getattr(slot, "port", None) or DEFAULT_PORT


def max_frame(nodes, spec=None):
    """Largest frame: the spec's (max_frame_kb), else the default, or room for the start-up address
    table of a large run (or for a HeteroFL level-a model)."""
    if spec is not None and spec.max_frame_kb is not None:
        return spec.max_frame_kb * 1024
    frame = max(DEFAULT_MAX_FRAME, 32 * nodes + 4096)
    if spec is not None and spec.algorithm == "heterofl":
        from flhil.harness.run import heterofl
        frame = max(frame, heterofl.frame_bytes(spec.args))
    return frame


def node_configs(spec, slots, run_id, key, wifi=None):
    """One run config per node; node i runs where slots[i] says; `key` (hex) is the run's secret,
    from which each node's pair secrets are derived (auth.py). Every address known in advance
    goes into the config, so the coordinator's go stays small (a server with 63 clients cannot send
    63 copies of a table on a 192 KB heap)."""
    memory = all(s.address == MEMORY for s in slots)
    peers = {} if memory else {str(s.node): [s.address, _port(s)] for s in slots
                               if s.address not in (None, ANNOUNCED)}
    common = {"run": run_id, "nodes": spec.nodes, "server": spec.server, "peers": peers,
              "app": spec.app, "args": spec.args, "timing": spec.timing, "strict": spec.strict,
              "seed": spec.seed, "faults": spec.faults, "max_frame": max_frame(spec.nodes, spec),
              "payload": payload_shape(spec)}
    if not memory:  # in real time a node measures its own scheduling lag (virtual time has none)
        common["monitor_ms"] = LAG_PERIOD_MS
    user = spec.user_app
    if user is not None:
        common["app"] = user.module
    per_node = _app_tables(spec, slots)
    configs = []
    secret = bytes.fromhex(key)
    for s in slots:
        # the node's own links only (its pair secrets, 16 bytes a node), never the run's secret:
        # a node can sign as itself only
        cfg = dict(common, node=s.node, listen=[MEMORY, s.node] if memory else [s.address, _port(s)],
                   links=pair_table(secret, s.node, spec.nodes).hex())
        cfg.update(per_node[s.node])
        if user is not None:  # a board has the app on its flash; PC and in-memory nodes read it here
            cfg["app_path"] = user.dir if memory or s.kind == "pc" else BOARD_APP_PATH
        if wifi and s.kind == "serial":
            cfg["wifi"] = wifi
        configs.append(cfg)
    return configs


def _app_tables(spec, slots):
    """What an app's nodes get each for themselves (HeteroFL: levels and data shards)."""
    if spec.algorithm == "heterofl":
        from flhil.harness.run import heterofl
        return [{"heterofl": t} for t in heterofl.node_tables(spec, slots)]
    return [{} for _ in slots]
