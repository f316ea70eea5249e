"""Run configs (docs/design.md, "Run config"): what each node of a run is told, built once per run
for every backend."""
import hashlib
import secrets

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


def max_frame(nodes):
    """Largest frame: the default, or room for the start-up address table of a large run."""
    return max(DEFAULT_MAX_FRAME, 32 * nodes + 4096)


def node_configs(spec, slots, run_id, key, wifi=None):
    """One run config per node; node i runs where slots[i] says. Every address known in advance
    goes into the config, so the coordinator's go stays small (a server with 63 clients cannot send
    63 copies of a table on a 192 KB heap)."""
    memory = all(s.address == MEMORY for s in slots)
    peers = {} if memory else {str(s.node): [s.address, _port(s)] for s in slots
                               if s.address not in (None, ANNOUNCED)}
    common = {"run": run_id, "key": key, "nodes": spec.nodes, "server": spec.server, "peers": peers,
              "app": spec.app, "args": spec.args, "timing": spec.timing, "strict": spec.strict,
              "seed": spec.seed, "faults": spec.faults, "max_frame": max_frame(spec.nodes)}
    if not memory:  # in real time a node measures its own scheduling lag (virtual time has none)
        common["monitor_ms"] = LAG_PERIOD_MS
    configs = []
    for s in slots:
        cfg = dict(common, node=s.node, listen=[MEMORY, s.node] if memory else [s.address, _port(s)])
        if wifi and s.kind == "serial":
            cfg["wifi"] = wifi
        configs.append(cfg)
    return configs
