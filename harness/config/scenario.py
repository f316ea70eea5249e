"""Scenario files (design.md, "Scenario file"): load, validate and expand into cases.

A `Scenario` is one validated TOML file. `Scenario.cases()` expands it into one `ScenarioCase` per
(combination of [params] values x seed); each combination is substituted into the file's data and
validated again, so a parameter value that breaks a rule (a node id beyond `nodes.count`, say) is
reported like a mistake in the file itself, plus the combination that caused it.
"""

import copy
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from flhil.harness.errors import ConfigError
from flhil.vocab import ALGORITHMS
from pydantic import ConfigDict, Field

from flhil.harness.config.faults import SEED_MAX, FaultPlanConfig, normalise_fault_plan
from flhil.harness.config.heterofl import HeteroFLConfig
from flhil.harness.config.flower import FlowerConfig, check_fault_plan as check_flower_faults
from flhil.harness.config.model import (ConfigModel, Expect, Float, Int, OneOf, Text, Unique,
                                        field_for_path, validate)
from flhil.harness.config.toml import (At, Source, describe, format_key_path, parse_key_path, parse_toml,
                                       read_toml)
from flhil.harness.results.expectations import expect_model

ALGORITHM_APPS = ALGORITHMS  # algorithm -> its default app
FLOWER = "flower"  # a Flower project on a Flower lab (harness/flower/), not a fl-hil app
SCENARIO_ALGORITHMS = tuple(ALGORITHMS) + (FLOWER,)
MAX_NODES = 254  # a lab gives each kind of node one /24 loopback block: 254 addresses
MAX_MS = 3_600_000  # no deadline of a run is longer than an hour: beyond it, a mistake

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
    max_frame_kb: int | None = None


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
    heterofl: dict | None = None  # the [heterofl] table (levels, data), for algorithm heterofl
    flower: dict | None = None  # the [flower] table (project made absolute) of a Flower scenario
    _doc: dict = field(repr=False, compare=False, default_factory=dict)
    _source: Source = field(repr=False, compare=False, default=None)

    def cases(self, seeds=None) -> list["ScenarioCase"]:
        """One case per (params combination x seed), combinations in file order, seeds inner.
        `seeds` replace the file's seeds (a command line's --seed)."""
        if seeds:
            return list(self._cases_for(tuple(seeds)))
        return list(self._cases)

    @cached_property
    def _cases(self) -> tuple["ScenarioCase", ...]:
        return self._cases_for(self.seeds)

    def _cases_for(self, seeds) -> tuple["ScenarioCase", ...]:
        paths = list(self.params)
        cases = []
        for values in itertools.product(*(self.params[p] for p in paths)):
            chosen = dict(zip(paths, values))
            resolved = self._resolve(chosen) if chosen else self
            for seed in seeds:
                label = "-".join([f"{p}={format_param_value(v)}" for p, v in chosen.items()]
                                 + [f"seed={seed}"])
                faults = normalise_fault_plan(resolved.faults, resolved.nodes.count, run_seed=seed)
                cases.append(ScenarioCase(label, seed, chosen, resolved, faults))
        return tuple(cases)

    def _resolve(self, chosen: dict[str, Any]) -> "Scenario":
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
    heterofl = property(lambda self: self.scenario.heterofl)
    flower = property(lambda self: self.scenario.flower)


def format_param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# The file's keys


class NodesConfig(ConfigModel):
    count: Int(2, MAX_NODES, description="total nodes of the run")
    boards: Int(0, description="of them on boards (real under hil, emulated under sim); default: all") \
        | None = None
    server: Int(0, description="id of the FL server, also the start-up coordinator") = 0
    max_frame_kb: Int(1, 4096, description="largest message a node sends or takes, in KiB (default 64, "
                      "more for a large run's start-up table)") | None = None

    def check(self, at, ctx):
        if self.boards is None:
            self.boards = self.count
        if self.boards > self.count:
            (at / "boards").fail(f"expected at most count = {self.count} boards, got {self.boards}")
        if self.server >= self.count:
            (at / "server").fail(f"expected a node id from 0 to {self.count - 1}, got {self.server}")


def _ms(lo_open, doc):
    return Float(0, MAX_MS, lo_open=lo_open,
                 expected="a time in ms %s 0 and <= %d (an hour)" % (">" if lo_open else ">=", MAX_MS),
                 description=doc)


class TimingConfig(ConfigModel):
    round_ms: _ms(True, "the server's deadline for the clients' replies in one round") | None = None
    recv_ms: _ms(True, "a client's wait for the server's next model") | None = None
    quorum: Float(0, 1, expected="a fraction of the clients between 0 and 1",
                  description="fraction of the clients needed to aggregate a round") | None = None
    slot_ms: _ms(True, "TDM slot length") | None = None
    guard_ms: _ms(False, "end of a slot kept free of receiving") | None = None
    startup_ms: _ms(True, "start barrier deadline") | None = None
    start_delay_ms: _ms(False, "from the coordinator's go to slot 0") | None = None
    linger_ms: _ms(False, "after the last round, keep answering late peers") | None = None
    hang_report_ms: _ms(True, "a wait longer than this is reported as `waiting`") | None = None
    conn_pending: Int(1, description="connections a node holds before their first valid frame "
                      "(default 4 on MicroPython, 16 on CPython); the quietest goes for a new one") | None = None
    auth_ms: _ms(True, "a connection without a valid frame by then is closed (idle)") | None = None
    frame_ms: _ms(True, "a frame unfinished this long after its first byte closes its connection (slow)") | None = None
    low_heap: Int(0, description="MicroPython: below this many free heap bytes a node refuses new "
                  "connections and reports `low_heap`") | None = None

    def check(self, at, ctx):
        if self.guard_ms is not None and self.slot_ms is not None and self.guard_ms >= self.slot_ms:
            (at / "guard_ms").fail(f"expected guard_ms < slot_ms ({self.slot_ms:g}), got {self.guard_ms:g}")


class ArgsConfig(ConfigModel):
    """The app's arguments: free-form, the common step counts checked."""
    model_config = ConfigDict(extra="allow")
    iterations: Int(1, description="rounds (centralized, decentralized)") | None = None
    slots: Int(1, description="TDM slots per block") | None = None
    blocks: Int(1, description="TDM blocks") | None = None


def _check_param_values(params, at):
    for path, values in params.items():
        here = at / path
        if isinstance(values, dict):  # TOML read the unquoted dotted key as nested tables
            inner = format_key_path((path, next(iter(values), "")))
            here.fail(f'expected a list of values; quote dotted paths: "{inner}" = [...]')
        if not isinstance(values, list) or not values:
            here.fail(f"expected a non-empty list of values, got {describe(values)}")
        for i, value in enumerate(values):
            if value in values[:i]:
                (here / i).fail(f"{describe(value)} appears twice; each value must be unique")


def _scenario_model():
    ExpectModel = expect_model()

    class ScenarioConfig(ConfigModel):
        name: Text(description="shown in reports; default: the file name") | None = None
        algorithm: OneOf(SCENARIO_ALGORITHMS, description="the algorithm under test; \"flower\": the Flower "
                         "project of [flower] on a Flower lab")
        app: Text(description="the app under test: a built-in, a Python file (relative to this file) "
                  "or a module on the app path; default per algorithm") | None = None
        description: Text(allow_empty=True, description="why this scenario exists") = ""
        seeds: Annotated[list[Int(0, SEED_MAX)], Field(min_length=1), Unique(),
                         Expect("a non-empty list of seeds")] = Field(
            default_factory=lambda: [1], description="one item per seed")
        strict: Annotated[bool, Field(description="upstream-strict semantics: no deadlines, no quorum")] = False
        nodes: NodesConfig | None = Field(None, description="how many nodes and where (not for flower: "
                                          "[flower] supernodes)")
        flower: FlowerConfig | None = Field(None, description="the Flower project and lab (algorithm = \"flower\")")
        params: dict[str, Any] = Field(
            default_factory=dict, description='a cartesian product of overrides: "key.path" = [values]')
        args: ArgsConfig = Field(default_factory=ArgsConfig, description="passed to the app")
        timing: TimingConfig = Field(default_factory=TimingConfig, description="deadlines and slots")
        faults: FaultPlanConfig = Field(default_factory=FaultPlanConfig, description="the fault plan")
        expect: ExpectModel = Field(default_factory=ExpectModel, description="the assertions on the run")
        heterofl: HeteroFLConfig | None = Field(None, description="HeteroFL: client levels and data split")

        def check(self, at, ctx):
            _check_param_values(self.params, at / "params")
            if self.heterofl is not None and self.algorithm != "heterofl":
                (at / "heterofl").fail(f"[heterofl] configures algorithm heterofl, this scenario runs "
                                       f"{self.algorithm}")
            if self.algorithm == FLOWER:
                if self.flower is None:
                    (at / "flower").fail("algorithm = \"flower\" needs a [flower] table: project, supernodes")
                if self.nodes is not None:
                    (at / "nodes").fail("a Flower scenario's nodes are the SuperLink and [flower] supernodes; "
                                        "leave [nodes] out")
                if self.app is not None:
                    (at / "app").fail("a Flower scenario runs its [flower] project, not an app")
                check_flower_faults(self.faults.data(), at / "faults")
            else:
                if self.nodes is None:
                    (at / "nodes").fail("missing required key, expected a table")
                if self.flower is not None:
                    (at / "flower").fail("a [flower] table needs algorithm = \"flower\"")
    return ScenarioConfig


ScenarioConfig = _scenario_model()


def _check_param_paths(params: dict, doc: dict, at: At) -> None:
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
            field_for_path(ScenarioConfig, parts)
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
    count = server = None
    if isinstance(doc.get("nodes"), dict):
        nodes = validate(NodesConfig, doc["nodes"], root / "nodes")
        count, server = nodes.count, nodes.server
    elif isinstance(doc.get("flower"), dict) and isinstance(doc["flower"].get("supernodes"), int):
        count = doc["flower"]["supernodes"] + 1  # node 0 the SuperLink, then the SuperNodes
    model = validate(ScenarioConfig, doc, root, {"nodes": count, "server": server})
    _check_param_paths(model.params, doc, root / "params")
    flower = None
    if model.algorithm == FLOWER:
        nodes = NodesConfig.model_construct(count=count, boards=0, server=0, max_frame_kb=None)
        flower = _flower_table(model.flower, source)
        app = FLOWER
    else:
        nodes = model.nodes
        app = _user_app(model, source, root)
    expect = model.expect.data()
    if isinstance(expect.get("oracle"), str):
        expect["oracle"] = _user_oracle(expect["oracle"], source, root / "expect" / "oracle")
    default_name = Path(source.path).stem if source.path else "scenario"
    return Scenario(
        path=source.path,
        name=model.name or default_name,
        algorithm=model.algorithm,
        app=app,
        description=model.description,
        seeds=tuple(model.seeds),
        strict=model.strict,
        nodes=Nodes(nodes.count, nodes.boards, nodes.server, nodes.max_frame_kb),
        args=model.args.data(),
        timing=model.timing.data(),
        faults=model.faults.data(),
        expect=expect,
        params=dict(model.params),
        heterofl=model.heterofl.data() if model.heterofl is not None else None,
        flower=flower,
        _doc=doc,
        _source=source,
    )


def _user_app(model, source: Source, root: At) -> str:
    """The app of a scenario: a built-in's name, or the absolute file of a user's app (staged and
    compiled now, so a mistake in it fails at load). A user's app has no built-in reference, so
    `oracle = true` must name one instead."""
    from flhil.harness.run import apps
    if model.app is None or apps.is_builtin(model.app):
        return model.app or ALGORITHMS[model.algorithm]
    base = Path(source.path).parent if source.path else None
    try:
        path = apps.locate(model.app, base)
        staged = apps.stage(path)
    except apps.AppError as error:
        (root / "app").fail(str(error))
    apps.check_args(staged.args, model.args.data(), root / "args", model.app)
    expect = model.expect.data()
    if expect.get("oracle") is True:
        (root / "expect" / "oracle").fail(
            f"app {model.app} has no built-in reference: name a function of yours, "
            f'oracle = "{Path(path).name}:reference" (nodes, args -> the final value of each node), '
            'or a JSON file of the final values, oracle = "expected.json"')
    return path


def _flower_table(flower, source: Source) -> dict:
    """The [flower] table as data, its project an absolute path (relative to the scenario file)."""
    data = flower.data()
    base = Path(source.path).parent if source.path else Path(".")
    data["project"] = str((base / data["project"]).resolve())
    data["run_config"] = flower.run_config.data()
    return data


def _user_oracle(ref: str, source: Source, at: At) -> str:
    """An oracle reference (FILE.py:FUNCTION or FILE.json, relative to the scenario), absolute."""
    from flhil.harness.run import apps
    file, func = apps.split_reference(ref)
    path = (Path(source.path).parent if source.path else Path(".")) / file
    if not path.is_file():
        at.fail(f"oracle file not found: {path}")
    if file.endswith(".py") and not func.isidentifier():
        at.fail(f"expected FILE.py:FUNCTION (the function gives each node's final value), got {ref!r}")
    if not file.endswith((".py", ".json")):
        at.fail(f"expected FILE.py:FUNCTION or FILE.json, got {ref!r}")
    return str(path.resolve()) + (":" + func if func else "")


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
