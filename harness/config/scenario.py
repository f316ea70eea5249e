"""Scenario files (design.md, "Scenario file"): load, validate and expand into cases.

A `Scenario` is one validated TOML file. `Scenario.cases()` expands it into one `ScenarioCase` per
(combination of [params] values x seed); each combination is substituted into the file's data and
validated again, so a parameter value that breaks a rule (a node id beyond `nodes.count`, say) is
reported like a mistake in the file itself, plus the combination that caused it.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from flhil.harness.errors import ConfigError
from flhil.vocab import ALGORITHMS, DROP_COUNTERS, FAULT_KINDS
from flhil.harness.config.faults import SEED_MAX, fault_plan_spec, normalise_fault_plan
from flhil.harness.config.schema import (At, AnyValue, Bool, Checked, Float, Int, ListOf, Number, Source, Spec,
                            Str, Table, format_key_path, optional, parse_key_path, parse_toml,
                            read_toml, required, spec_at)

ALGORITHM_APPS = ALGORITHMS
MAX_NODES = 256

# top-level keys a [params] path may not target: they describe the file, not a run
_NOT_PARAMETERS = {
    "seeds": "list the seeds in seeds = [...] instead",
    "params": "params cannot vary themselves",
    "name": "the name is not a run parameter",
    "description": "the description is not a run parameter",
}


@dataclass(frozen=True)
class Nodes:
    count: int
    boards: int
    server: int


@dataclass(frozen=True)
class Scenario:
    path: str
    name: str
    algorithm: str
    app: str
    description: str
    seeds: tuple[int, ...]
    strict: bool
    nodes: Nodes
    args: dict
    timing: dict
    faults: dict  # normalised fault plan; `seed` only when the file sets it
    expect: dict
    params: dict[str, list]  # dotted path -> values, in file order
    _doc: dict = field(repr=False, compare=False, default_factory=dict)
    _source: Source = field(repr=False, compare=False, default=None)

    def cases(self) -> list[ScenarioCase]:
        """One case per (params combination x seed), combinations in file order, seeds inner."""
        return list(self._cases)

    @cached_property
    def _cases(self) -> tuple[ScenarioCase, ...]:
        paths = list(self.params)
        cases = []
        for values in itertools.product(*(self.params[p] for p in paths)):
            chosen = dict(zip(paths, values))
            resolved = self._resolve(chosen) if chosen else self
            for seed in self.seeds:
                label = "-".join([f"{p}={format_param_value(v)}" for p, v in chosen.items()]
                                 + [f"seed={seed}"])
                faults = normalise_fault_plan(resolved.faults, resolved.nodes.count, run_seed=seed)
                cases.append(ScenarioCase(label, seed, chosen, resolved, faults))
        return tuple(cases)

    def _resolve(self, chosen: dict[str, Any]) -> Scenario:
        """The scenario with one value substituted per parameter, validated again."""
        doc = copy.deepcopy(self._doc)
        doc["params"] = {path: [value] for path, value in chosen.items()}
        for path, value in chosen.items():
            _substitute(doc, parse_key_path(path), copy.deepcopy(value), At(self._source, ("params", path)))
        try:
            return _build(doc, self._source)
        except ConfigError as error:
            label = ", ".join(f"{p}={format_param_value(v)}" for p, v in chosen.items())
            line = error.line
            for path in chosen:  # a value straight from [params]: point at its line there
                target = format_key_path(parse_key_path(path))
                if error.where == target or error.where.startswith((target + ".", target + "[")):
                    line = self._source.line_of(("params", path)) or line
            raise ConfigError(error.path, error.where, f"{error.why} (with params {label})",
                              line) from None


@dataclass(frozen=True)
class ScenarioCase:
    """One run of a scenario: a params combination and a seed. `id` is a pytest id."""

    id: str
    seed: int
    params: dict[str, Any]
    scenario: Scenario  # with the params substituted
    faults: dict  # normalised fault plan with `seed` filled (the run seed unless the file sets one)

    name = property(lambda self: self.scenario.name)
    path = property(lambda self: self.scenario.path)
    algorithm = property(lambda self: self.scenario.algorithm)
    app = property(lambda self: self.scenario.app)
    strict = property(lambda self: self.scenario.strict)
    nodes = property(lambda self: self.scenario.nodes)
    args = property(lambda self: self.scenario.args)
    timing = property(lambda self: self.scenario.timing)
    expect = property(lambda self: self.scenario.expect)


def format_param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# Schema


def _nodes_fit(nodes, at):
    if nodes["boards"] > nodes["count"]:
        (at / "boards").fail(f"expected at most count = {nodes['count']} boards, got {nodes['boards']}")
    if nodes["server"] >= nodes["count"]:
        (at / "server").fail(f"expected a node id from 0 to {nodes['count'] - 1}, got {nodes['server']}")


def _boards_default_to_all(nodes, at):
    nodes.setdefault("boards", nodes["count"])


NODES_SPEC = Table({
    "count": required(Int(2, MAX_NODES)),
    "boards": Int(0),
    "server": optional(Int(0), 0),
}, checks=[_boards_default_to_all, _nodes_fit], expected="a table [nodes] with count, boards, server")


def _guard_below_slot(timing, at):
    if "guard_ms" in timing and "slot_ms" in timing and timing["guard_ms"] >= timing["slot_ms"]:
        (at / "guard_ms").fail(f"expected guard_ms < slot_ms ({timing['slot_ms']}), "
                               f"got {timing['guard_ms']}")


_POSITIVE_MS = Number(0, min_open=True, expected="a time in ms > 0")
_MS = Number(0, expected="a time in ms >= 0")

TIMING_SPEC = Table({
    "round_ms": _POSITIVE_MS,
    "recv_ms": _POSITIVE_MS,
    "quorum": Float(0, 1, expected="a fraction of the clients between 0 and 1"),
    "slot_ms": _POSITIVE_MS,
    "guard_ms": _MS,
    "startup_ms": _POSITIVE_MS,
    "start_delay_ms": _MS,
    "linger_ms": _MS,
    "hang_report_ms": _POSITIVE_MS,
}, checks=[_guard_below_slot])

# app arguments are free-form; the common counters are checked
ARGS_SPEC = Table({"iterations": Int(1), "slots": Int(1), "blocks": Int(1)}, open=True)


def _at_least_one(*keys):
    def check(table, at):
        if not any(key in table for key in keys):
            at.fail("expected at least one of " + ", ".join(keys))
    return check


def _min_not_above_max(prefix_pairs):
    def check(table, at):
        for low, high in prefix_pairs:
            if low in table and high in table and table[low] > table[high]:
                (at / low).fail(f"expected {low} <= {high} ({table[high]}), got {table[low]}")
    return check


def _seen_kind(kind, at):
    if kind == "dropout":
        at.fail('a dropout shows up as fault events of kind "crash" (and "rejoin"); use those')


def _expect_spec(count: int | None) -> Table:
    def aggregated_possible(table, at):
        if count is not None and table.get("min", 0) > count - 1:
            (at / "min").fail(f"expected at most {count - 1} (the clients of {count} nodes), "
                              f"got {table['min']}")

    fault_kind = Checked(Str(choices=FAULT_KINDS + ("dropout",),
                             expected="a fault kind: " + ", ".join(FAULT_KINDS)), _seen_kind)
    drop_keys = [f"{counter}_{bound}" for counter in DROP_COUNTERS for bound in ("min", "max")]
    return Table({
        "oracle": Bool(),
        "all_return": Bool(),
        "consensus": Table({"eps": required(Float(0, min_open=True)),
                            "safety": optional(Float(0, min_open=True), 2.0)}),
        "mass_conserved": Table({"tol": optional(Float(0), 1e-9)}),
        "accuracy": Table({"min": required(Float(0, 1, expected="an accuracy between 0 and 1"))}),
        "accuracy_vs_clean": Table({"margin": required(Float(0, 1, expected="a margin between 0 and 1"))}),
        "aggregated": Table({"min": Int(0), "max": Int(0)},
                            checks=[_at_least_one("min", "max"),
                                    _min_not_above_max([("min", "max")]), aggregated_possible]),
        "skipped_rounds": Table({"max": required(Int(0))}),
        "slot_late_ms": Table({"max_ms": required(Float(0))}),
        "round_ms": Table({"p95_max": required(Float(0, min_open=True))}),
        "heap": Table({"max_kb": required(Float(0, min_open=True))}),
        "faults_seen": ListOf(fault_kind, unique=True, expected="a list of fault kinds"),
        "drops": Table({key: Int(0) for key in drop_keys},
                       checks=[_min_not_above_max([(f"{c}_min", f"{c}_max") for c in DROP_COUNTERS])]),
    })


class _ParamValues(ListOf):
    """The values of one [params] entry; spots `nodes.count = [...]` written without quotes."""

    def __init__(self):
        super().__init__(AnyValue(), min_len=1, unique=True, expected="a non-empty list of values")

    def validate(self, value, at):
        if isinstance(value, dict):  # TOML read the unquoted dotted key as nested tables
            inner = format_key_path(at.parts[-1:] + (next(iter(value), ""),))
            at.fail(f'expected a list of values; quote dotted paths: "{inner}" = [...]')
        return super().validate(value, at)


def _scenario_spec(count: int | None) -> Table:
    return Table({
        "name": Str(),
        "algorithm": required(Str(choices=ALGORITHM_APPS)),
        "app": Str(pattern=r"[A-Za-z_][A-Za-z0-9_]*", expected="a module name in firmware/apps/"),
        "description": optional(Str(allow_empty=True), ""),
        "seeds": optional(ListOf(Int(0, SEED_MAX), min_len=1, unique=True), [1]),
        "strict": optional(Bool(), False),
        "nodes": required(NODES_SPEC),
        "params": optional(Table({}, open=True, values=_ParamValues()), {}),
        "args": optional(ARGS_SPEC, {}),
        "timing": optional(TIMING_SPEC, {}),
        "faults": optional(fault_plan_spec(count), {}),
        "expect": optional(_expect_spec(count), {}),
    })


def _check_param_paths(params: dict, spec: Spec, doc: dict, at: At) -> None:
    """Each [params] key must be a dotted path to a key the scenario can have."""
    parsed = {}
    for text in params:
        here = at / text
        try:
            parts = parse_key_path(text)
        except ValueError as error:
            here.fail(f"bad params path: {error}")
        if parts[0] in _NOT_PARAMETERS:
            here.fail(f"bad params path {json.dumps(text)}: {_NOT_PARAMETERS[parts[0]]}")
        try:
            spec_at(spec, parts)
        except LookupError as error:
            depth, why = error.args
            bad = format_key_path(parts[:depth + 1])
            here.fail(f"bad params path {json.dumps(text)}: at {bad}: {why}")
        _substitute(copy.deepcopy(doc), parts, None, here)  # list entries it names must exist
        for other, other_parts in parsed.items():
            shorter = min(len(parts), len(other_parts))
            if parts[:shorter] == other_parts[:shorter]:
                here.fail(f"bad params path {json.dumps(text)}: overlaps params {json.dumps(other)}")
        parsed[text] = parts


def _substitute(doc: dict, parts: tuple, value: Any, at: At) -> None:
    """Set doc[parts] = value, creating missing tables; list entries must already exist."""
    node: Any = doc
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = format_key_path(parts[:depth])
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                at.fail(f"bad params path: {format_key_path(parts[:depth + 1])} does not exist "
                        f"({where} has {size} entr{'y' if size == 1 else 'ies'})")
        elif not isinstance(node, dict):
            at.fail(f"bad params path: {where} is not a table")
        elif not last and part not in node:
            node[part] = [] if isinstance(parts[depth + 1], int) else {}
        if last:
            node[part] = value
        else:
            node = node[part]


def _build(doc: dict, source: Source) -> Scenario:
    root = At(source)
    count = None
    if isinstance(doc.get("nodes"), dict):
        count = NODES_SPEC.validate(doc["nodes"], root / "nodes")["count"]
    spec = _scenario_spec(count)
    data = spec.validate(doc, root)
    _check_param_paths(data["params"], spec, doc, root / "params")
    nodes = data["nodes"]
    default_name = Path(source.path).stem if source.path else "scenario"
    return Scenario(
        path=source.path,
        name=data.get("name", default_name),
        algorithm=data["algorithm"],
        app=data.get("app", ALGORITHM_APPS[data["algorithm"]]),
        description=data["description"],
        seeds=tuple(data["seeds"]),
        strict=data["strict"],
        nodes=Nodes(nodes["count"], nodes["boards"], nodes["server"]),
        args=data["args"],
        timing=data["timing"],
        faults=data["faults"],
        expect=data["expect"],
        params=data["params"],
        _doc=doc,
        _source=source,
    )


def parse_scenario(text: str, path: Any = "<scenario>") -> Scenario:
    """Validate scenario text and every params combination; ConfigError on the first mistake."""
    doc, source = parse_toml(text, path)
    scenario = _build(doc, source)
    scenario.cases()  # validate every combination now, not when a case runs
    return scenario


def load_scenario(path: str | os.PathLike) -> Scenario:
    doc, source = read_toml(path)
    scenario = _build(doc, source)
    scenario.cases()
    return scenario


def load_scenarios(directory: str | os.PathLike) -> list[Scenario]:
    """Every *.toml under `directory`, sorted by path."""
    root = Path(directory)
    if not root.is_dir():
        raise ConfigError(directory, "", "no such directory")
    return [load_scenario(path) for path in sorted(root.rglob("*.toml"))]
