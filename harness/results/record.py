"""The run record (docs/design.md, "Run spec and run record"): one JSON document per run.

`RunRecord` wraps the plain dict and answers the questions analysis and reports ask. It never
assumes optional parts exist: a crashed or missing node may have a handful of events or none.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flhil.vocab import ALGORITHMS

# the algorithm an app implements, for records whose spec names only the app
APP_ALGORITHMS = {app: algorithm for algorithm, app in ALGORITHMS.items()}


@dataclass
class HeapStats:
    """Heap figures of one node: `min_free` is the lowest free heap seen; `peak_used` is
    `total - min_free` when the total is known, else None."""
    min_free: int
    total: int | None = None

    @property
    def peak_used(self):
        return None if self.total is None else self.total - self.min_free


class RunRecord(Mapping):
    """A run record. It reads like its JSON document (`record["nodes"]`, `record.get("hang")`)
    and answers the questions checks and reports ask."""

    def __init__(self, data: dict | None = None, path=None):
        self.data = data if data is not None else {}
        self.data.setdefault("nodes", {})
        self.path = path  # the record.json it was loaded from or saved to, if any

    def __getitem__(self, key):
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)

    # ------------------------------------------------------------ persistence

    @classmethod
    def load(cls, path) -> "RunRecord":
        """A record from its record.json, or from a run directory: its record.json, else (a run
        that was killed before it could write one) the events it streamed to events.jsonl."""
        path = Path(path)
        if path.is_dir():
            if (path / "record.json").is_file():
                path = path / "record.json"
            else:
                return cls.from_stream(path / "events.jsonl")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("nodes", {}), dict):
            raise ValueError("%s is not a run record (expected a JSON object with nodes)" % path)
        return cls(data, path)

    @classmethod
    def from_stream(cls, path) -> "RunRecord":
        """A partial record, marked interrupted, from a run's events.jsonl."""
        nodes: dict = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    break  # the last line of a killed run may be cut short
                entry = nodes.setdefault(str(item["node"]), {"events": [], "status": "timeout", "result": None})
                ev = item["ev"]
                entry["events"].append(ev)
                if ev.get("ev") == "result":
                    entry["result"], entry["status"] = ev.get("value"), ev.get("status", "ok")
        return cls({"nodes": nodes, "stopped": "interrupted", "faults": [], "hang": None, "errors": []})

    @classmethod
    def from_json(cls, text: str) -> "RunRecord":
        return cls(json.loads(text))

    def to_json(self, indent=1) -> str:
        return json.dumps(self.data, indent=indent, default=str)

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        if self.path is None:
            self.path = path
        return path

    # ------------------------------------------------------------ run-level facts

    @property
    def spec(self) -> dict:
        spec = self.data.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def seed(self):
        seed = self.data.get("seed")
        return seed if seed is not None else self.spec.get("seed")

    @property
    def run_id(self):
        return self.data.get("run")

    @property
    def backend(self):
        return self.data.get("backend")

    @property
    def hang(self):
        return self.data.get("hang")

    @property
    def errors(self) -> list:
        return list(self.data.get("errors") or [])

    @property
    def args(self) -> dict:
        return dict(self.spec.get("args") or {})

    @property
    def timing(self) -> dict:
        return dict(self.spec.get("timing") or {})

    @property
    def fault_plan(self) -> dict:
        return dict(self.spec.get("faults") or {})

    @property
    def strict(self) -> bool:
        return bool(self.spec.get("strict", False))

    @property
    def server(self) -> int:
        return int(self.spec.get("server") or 0)

    @property
    def algorithm(self) -> str | None:
        algo = self.spec.get("algorithm")
        if algo:
            return algo
        app = self.spec.get("app")
        return APP_ALGORITHMS.get(app, app)

    @property
    def n_nodes(self) -> int:
        """Node count of the spec (of the record's nodes for a partial record)."""
        nodes = self.spec.get("nodes")
        if isinstance(nodes, int):
            return nodes
        ids = self.node_ids()
        return max(ids) + 1 if ids else 0

    # ------------------------------------------------------------ per node

    def node_ids(self) -> list[int]:
        return sorted(int(k) for k in self.data["nodes"])

    def node(self, node) -> dict:
        return self.data["nodes"].get(str(node)) or {}

    def events(self, node=None, ev=None) -> list[dict]:
        """Events of one node (or all nodes, node by node), optionally of one kind or of a
        tuple/set of kinds, in the order they were received."""
        ids = self.node_ids() if node is None else [node]
        kinds = None if ev is None else ({ev} if isinstance(ev, str) else set(ev))
        out = []
        for n in ids:
            for e in self.node(n).get("events") or []:
                if kinds is None or e.get("ev") in kinds:
                    out.append(e)
        return out

    def result(self, node):
        """The node's final value: the record's `result`, else the last `result` event's value."""
        entry = self.node(node)
        if entry.get("result") is not None:
            return entry["result"]
        results = self.events(node, "result")
        return results[-1].get("value") if results else None

    def results(self) -> dict:
        """{node id: final value} of every node."""
        return {n: self.result(n) for n in self.node_ids()}

    def statuses(self) -> dict:
        """{node id: status} of every node."""
        return {n: self.status(n) for n in self.node_ids()}

    def has_result(self, node) -> bool:
        entry = self.node(node)
        return entry.get("result") is not None or bool(self.events(node, "result"))

    def status(self, node) -> str:
        entry = self.node(node)
        if entry.get("status"):
            return entry["status"]
        results = self.events(node, "result")
        if results:
            return results[-1].get("status", "ok")
        return "missing" if not entry else "error"

    def error(self, node):
        return self.node(node).get("error")

    def log_path(self, node):
        return self.node(node).get("log")

    def rounds(self, node) -> list[dict]:
        """round_end events of the node, ordered by iteration (stable for repeats)."""
        return sorted(self.events(node, "round_end"), key=lambda e: _int(e.get("i")))

    def round_starts(self, node) -> list[dict]:
        return sorted(self.events(node, "round_start"), key=lambda e: _int(e.get("i")))

    def slots(self, node) -> list[dict]:
        """slot_end events of the node, ordered by slot."""
        return sorted(self.events(node, "slot_end"), key=lambda e: _int(e.get("i")))

    def slot_starts(self, node) -> list[dict]:
        return sorted(self.events(node, "slot_start"), key=lambda e: _int(e.get("i")))

    def steps(self, node) -> list[dict]:
        """Per-step ends, whichever the app emits: rounds, else TDM slots."""
        return self.rounds(node) or self.slots(node)

    def step_values(self, node) -> dict[int, object]:
        """{iteration or slot: v}: round_end / slot_end `v`, then the app's own per-step
        `slot_value` events (node.report), the last one per step winning."""
        out = {}
        for e in self.steps(node) + self.events(node, "slot_value"):
            if "v" in e:
                out[_int(e.get("i"))] = e["v"]
        return dict(sorted(out.items()))

    def round_latencies_ms(self, node) -> dict[int, float]:
        """{iteration: round_end.t - round_start.t in ms}, in the node's own clock."""
        starts = {}
        for e in self.round_starts(node):
            starts.setdefault(_int(e.get("i")), e.get("t"))
        out = {}
        for e in self.rounds(node):
            i = _int(e.get("i"))
            t0, t1 = starts.get(i), e.get("t")
            if isinstance(t0, (int, float)) and isinstance(t1, (int, float)):
                out[i] = (t1 - t0) / 1000.0
        return out

    def slot_lateness_ms(self, node) -> dict[int, float]:
        """{slot: slot_start.late in ms}."""
        return {_int(e.get("i")): e["late"] / 1000.0 for e in self.slot_starts(node)
                if isinstance(e.get("late"), (int, float))}

    def counts(self, node) -> dict:
        """The node's last `counts` event without the envelope fields ({} when absent)."""
        last = self.events(node, "counts")
        if not last:
            return {}
        return {k: v for k, v in last[-1].items() if k not in ("ev", "n", "t")}

    def drops(self, node=None) -> list[dict]:
        return self.events(node, "drop")

    def heap_peak(self, node) -> HeapStats | None:
        """Lowest free heap seen in boot/round_end/slot_end (`heap`) and heap (`free`,
        `min_free`) events, with the heap total when known (boot `heap_total`, heap `total`, or
        the node entry's `heap_total`). None when the node reported no heap figure (CPython)."""
        frees, total = [], self.node(node).get("heap_total")
        for e in self.events(node, ("boot", "heap", "round_end", "slot_end")):
            for key in ("heap", "free", "min_free"):
                if isinstance(e.get(key), (int, float)):
                    frees.append(e[key])
            for key in ("heap_total", "total"):
                if isinstance(e.get(key), (int, float)):
                    total = e[key]
        if not frees:
            return None
        return HeapStats(min_free=int(min(frees)), total=int(total) if total is not None else None)

    # ------------------------------------------------------------ faults

    def faults(self) -> list[dict]:
        """Fault timeline sorted by time: the record's `faults` list (on one clock, `at_us` from
        the start of slot 0), else the nodes' fault events (each on its node's own clock)."""
        faults = self.data.get("faults")
        if not faults:
            faults = self.events(ev="fault")
        return sorted((dict(f) for f in faults),
                      key=lambda f: (_num(f.get("at_us", f.get("t"))), _int(f.get("n"))))

    def fault_kinds(self) -> set[str]:
        return {f.get("kind") for f in self.faults() if f.get("kind")}

    def planned_permanent_crashes(self) -> set[int]:
        """Nodes the fault plan kills for good (a dropout without `down`)."""
        out = set()
        for d in self.fault_plan.get("dropouts") or []:
            if d.get("down") is None and d.get("node") is not None:
                out.add(int(d["node"]))
        return out


def _int(x, default=-1):
    try:
        return int(x)
    except (TypeError, ValueError):
        return default


def _num(x):
    return x if isinstance(x, (int, float)) else float("inf")
