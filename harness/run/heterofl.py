"""The run configs of a HeteroFL run: each client's level and data shard, the server's level map.

A client's level comes from the spec's `heterofl.levels` (a mix or a per-client table) or, by
default, from its node kind: a PC trains level a, a board (emulated or real) the widest level
whose measured peak heap (PEAK_HEAP_KB, bench/bench_heterofl.py) fits its heap. A mix gives the
widest levels to the clients with the most heap; a board is never given more than fits, and a
per-client table that asks for more is refused, naming the node. Shards: digits.split by the run
seed, shard k to the k-th client in id order (the host evaluation reads the same split)."""
from flhil import mlp
from flhil.apps.heterofl import ARGS, D_IN, D_OUT
from flhil.harness.config.heterofl import HeteroFLConfig, parse_mix
from flhil.harness.config.model import validate
from flhil.harness.config.toml import At, Source
from flhil.harness.data import digits
from flhil.harness.errors import ConfigError, HarnessError

BOARD_KINDS = ("emulated", "serial")
BOARD_HEAP_KB = 192  # a board whose heap is not known is taken to be a Pico W's
# Smallest heap (KB, -X heapsize) a whole board node at each level completes a client round in,
# hidden = 128, 100 samples, MicroPython's unix port (bench/bench_heterofl.py bisects it in 8 KB
# steps). A level fits a board whose heap holds this plus HEAP_MARGIN_KB: the heap fragments
# differently from run to run.
# Measured before the strict frame parser and the connection bookkeeping of the hardened node,
# which cost a board node about 16 KB more (tests/firmware/test_hostile_nodes.py, bench_hostile.py):
# added here, so level d no longer fits a 192 KB board
HARDENING_KB = 16
PEAK_HEAP_KB = {level: kb + HARDENING_KB for level, kb in
                {"a": 435, "b": 274, "c": 211, "d": 176, "e": 144}.items()}
HEAP_MARGIN_KB = 16
RUNTIME_KB = 100 + HARDENING_KB  # heap a board node uses before its app trains (boot event)
PEAK_HIDDEN = 128


def settings(table):
    """The [heterofl] table with its defaults (a spec that has none gets all of them)."""
    return validate(HeteroFLConfig, dict(table or {}), At(Source(None), ("heterofl",))).data()


MAX_HIDDEN = 512  # a level-a model of 512 units is a 200 KB message: beyond it, a mistake


def hidden_of(args):
    """The `hidden` argument (units at level a), checked."""
    hidden = (args or {}).get("hidden", ARGS["hidden"])
    if type(hidden) is not int or not 1 <= hidden <= MAX_HIDDEN:
        raise ConfigError(None, "args.hidden", "expected an integer between 1 and %d, got %r" % (MAX_HIDDEN, hidden))
    return hidden


def peak_heap_kb(level, hidden):
    """Measured peak heap of a level, scaled by the parameter count for another width."""
    kb = PEAK_HEAP_KB[level]
    if hidden == PEAK_HIDDEN:
        return kb
    base = RUNTIME_KB  # the runtime's own share: not scaled
    ratio = mlp.param_count(D_IN, mlp.width(hidden, level), D_OUT) / \
        mlp.param_count(D_IN, mlp.width(PEAK_HIDDEN, level), D_OUT)
    return base + (kb - base) * ratio


def budget_level(kind, heap_kb, hidden):
    """A node kind's default level: a for a PC (or virtual node), for a board the widest level
    whose peak heap fits `heap_kb`; None when not even level e fits."""
    if kind not in BOARD_KINDS:
        return "a"
    heap = heap_kb or BOARD_HEAP_KB
    for level in mlp.LEVELS:
        if peak_heap_kb(level, hidden) + HEAP_MARGIN_KB <= heap:
            return level
    return None


def client_levels(slots, server, table, hidden):
    """{client: level} (with a dynamic mix: each client's widest level, its cap)."""
    caps = {}
    for s in slots:
        if s.node == server:
            continue
        cap = budget_level(s.kind, s.heap_kb, hidden)
        if cap is None:
            raise HarnessError("node %d (%s %s, heap %s KB): not even level e fits (it needs about %.0f KB)"
                               % (s.node, s.kind, s.name, s.heap_kb or BOARD_HEAP_KB,
                                  peak_heap_kb("e", hidden)))
        caps[s.node] = cap
    levels = table.get("levels")
    if table.get("dynamic"):
        return _override(caps, table.get("caps") or {}, slots, hidden, "caps")
    if levels is None:
        return caps
    if isinstance(levels, dict):
        return _override(caps, levels, slots, hidden, "levels")
    return deal_mix(parse_mix(levels), caps)


def _override(caps, table, slots, hidden, key):
    """caps with the levels a per-client table gives; a board asked for more than fits is refused."""
    out = dict(caps)
    kinds = {s.node: s for s in slots}
    for name, level in table.items():
        node = int(name)
        if node not in caps:
            raise HarnessError("[heterofl] %s: node %d is not a client of this run" % (key, node))
        if mlp.SHIFT[level] < mlp.SHIFT[caps[node]]:
            s = kinds[node]
            raise HarnessError("[heterofl] %s: node %d is a %s board with %s KB of heap; level %s needs about "
                               "%.0f KB, the widest that fits is %s"
                               % (key, node, s.kind, s.heap_kb or BOARD_HEAP_KB, level,
                                  peak_heap_kb(level, hidden) + HEAP_MARGIN_KB, caps[node]))
        out[node] = level
    return out


def deal_mix(mix, caps):
    """Levels of a mix for clients with caps {client: widest level}: counts per level by the
    largest remainder, the widest levels to the clients with the widest caps (then lower ids);
    a client whose cap is narrower than its share gets its cap."""
    clients = sorted(caps, key=lambda c: (mlp.SHIFT[caps[c]], c))
    n = len(clients)
    total = sum(w for _, w in mix)
    exact = [(lv, n * w / total) for lv, w in mix]
    counts = {lv: int(x) for lv, x in exact}
    rest = n - sum(counts.values())
    for lv, x in sorted(exact, key=lambda e: (-(e[1] - int(e[1])), mlp.SHIFT[e[0]]))[:rest]:
        counts[lv] += 1
    order = [lv for lv, _ in mix for _ in range(counts[lv])]
    out = {}
    for c, lv in zip(clients, order):
        out[c] = lv if mlp.SHIFT[lv] >= mlp.SHIFT[caps[c]] else caps[c]
    return out


def shards(nodes, server, seed, table):
    """{client: packed shard} and the test set (x, y) of a run."""
    clients = [c for c in range(nodes) if c != server]
    kw = dict(iid=table["split"] == "iid", classes=table["classes"], samples=table["samples"])
    _, parts = digits.split(seed, len(clients), **kw)
    return ({c: digits.pack(parts[k]) for k, c in enumerate(clients)},
            digits.test_set(seed, len(clients), **kw))


def node_tables(spec, slots):
    """One `heterofl` run-config table per node (slots in node order). The levels resolved for
    these slots are written back into `spec.heterofl` as a per-client table (`caps` for a dynamic
    mix), so the run record holds them and a replay in virtual time trains the same levels."""
    table = settings(spec.heterofl)
    hidden = hidden_of(spec.args)
    levels = client_levels(slots, spec.server, table, hidden)
    resolved = {str(c): lv for c, lv in sorted(levels.items())}
    spec.heterofl = dict(table, **({"caps": resolved} if table["dynamic"] else {"levels": resolved}))
    packed, _ = shards(spec.nodes, spec.server, spec.seed, table)
    out = []
    for s in slots:
        if s.node == spec.server:
            entry = {"levels": {str(c): lv for c, lv in sorted(levels.items())},
                     "dynamic": bool(table["dynamic"])}
            if table["dynamic"]:
                entry["mix"] = [list(m) for m in parse_mix(table["levels"])]
        else:
            entry = dict(packed[s.node], level=levels[s.node])
        out.append(entry)
    return out


def frame_bytes(args):
    """A frame that holds a level-a model message (base64 float32) with room for the envelope."""
    hidden = hidden_of(args)
    raw = 4 * mlp.param_count(D_IN, hidden, D_OUT)
    return 4 * ((raw + 2) // 3) + 4096
