"""The `[expect]` registry: each key of a scenario's `[expect]` table is declared once, here, with
the form of its value (a parameter model, a flag or a list), its check and its one-line doc. The
scenario loader builds the `[expect]` model from the registry, `evaluate` runs what a run's
`[expect]` asks for, and `fl-hil schema` and the docs list the keys from it.

    @expectation("aggregated", AggregatedParams, "clients aggregated by the server per round")
    def check_aggregated(record, min=None, max=None): ...

A check is `check(record, **params) -> list[Finding]`. Some checks need evidence from outside the
record (`needs`): "oracle" (the reference values), "clean" (fault-free runs of the same spec);
the caller passes them in an `Evidence`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import Field, create_model

from flhil.harness.config.model import ConfigModel, validate
from flhil.harness.config.toml import At, Source
from flhil.harness.results.host import judge as judge_host
from flhil.harness.results.verdict import Finding, Verdict


@dataclass(frozen=True)
class Expectation:
    key: str
    check: Callable
    value: Any            # the value's type: a ConfigModel (a table), bool (a flag), or a list type
    doc: str
    needs: tuple = ()     # evidence the check takes besides the record: "oracle", "clean"
    default: bool = False  # run even when [expect] does not name it (unless the run is strict)
    always: bool = False   # run even on strict runs, and `false` cannot turn it off

    @property
    def is_table(self):
        return isinstance(self.value, type) and issubclass(self.value, ConfigModel)


REGISTRY: dict[str, Expectation] = {}


def expectation(key, value=bool, doc="", needs=(), default=False, always=False):
    """Register `check` as the check of `[expect] key`."""
    def register(check):
        if key in REGISTRY:
            raise ValueError(f"[expect] key {key!r} is registered twice")
        REGISTRY[key] = Expectation(key, check, value, doc or (check.__doc__ or "").split("\n")[0],
                                    tuple(needs), default, always)
        return check
    return register


def expect_model() -> type[ConfigModel]:
    """The model of an `[expect]` table: one optional key per registered expectation."""
    _load_builtin()
    fields = {key: (e.value | None, Field(None, description=e.doc)) for key, e in REGISTRY.items()}
    return create_model("Expect", __base__=ConfigModel, **fields)


@dataclass
class Evidence:
    """What checks need besides the record: the reference values (None: computed from the spec,
    where theory gives them) and fault-free runs of the same spec (records)."""
    oracle: Any = None
    clean: list = field(default_factory=list)


def validate_expect(expect: dict, path=None, nodes=None) -> dict:
    """An `[expect]` table given in code, checked like one in a scenario file."""
    model = validate(expect_model(), dict(expect or {}), At(Source(path), ("expect",)), {"nodes": nodes})
    return {k: v for k, v in model.model_dump(mode="json", exclude_none=True).items()}


def evaluate(record, expect: dict, evidence: Evidence | None = None) -> Verdict:
    """Run the checks a validated `[expect]` table asks for (a false flag skips its key), plus the
    default ones, on a RunRecord."""
    _load_builtin()
    evidence = evidence or Evidence()
    verdict = Verdict(seed=record.seed, run=record.run_id)
    keys = [k for k, v in expect.items() if v is not None and (v is not False or
                                                              getattr(REGISTRY.get(k), "always", False))]
    keys += [k for k, e in REGISTRY.items() if k not in keys and
             (e.always or (e.default and k not in expect and not record.strict))]
    for key in keys:
        entry = REGISTRY.get(key)
        if entry is None:
            verdict.findings.append(Finding(key, False, message=f"unknown [expect] key {key!r}"))
            continue
        value = expect.get(key, True)
        kwargs = dict(value) if entry.is_table else ({} if entry.value is bool else {"value": value})
        if "oracle" in entry.needs:
            kwargs["oracle_values"] = evidence.oracle
        if "clean" in entry.needs:
            if not evidence.clean:
                verdict.findings.append(Finding(key, False, message="no clean run given"))
                continue
            kwargs["clean"] = evidence.clean
        verdict.findings.extend(entry.check(record, **kwargs))
    return judge_host(record, verdict)


def _load_builtin():
    from flhil.harness.results import checks  # noqa: F401 - registers the built-in expectations
