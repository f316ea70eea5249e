"""Declared config: pydantic models for fl-hil's files, with fl-hil's error messages.

Each key is declared once, as a field of a `ConfigModel`: its type and range (pydantic checks
them), its one-line doc (`description`, shown in `fl-hil schema` and the docs' key tables) and, where
the wording matters, the phrase for "expected ..." (`Expect`). Rules that span keys, or depend on
the run (node ids against the node count), are a model's `check(at, ctx)`; they run after pydantic,
on the validated tree, where every value's key path is known.

`validate(model, data, at, ctx)` returns the model or raises `ConfigError` naming the file, the
key path (`faults.links[1].loss`), its line, what was expected and what was found, with a
"did you mean" for unknown keys and choices.
"""

from __future__ import annotations

import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at_
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from flhil.harness.config.toml import At, describe, format_key_path, suggestion


class Expect:
    """Field metadata: the phrase for "expected ..."; a callable gets the validation context."""

    def __init__(self, text):
        self.text = text

    def phrase(self, ctx):
        return self.text(ctx or {}) if callable(self.text) else self.text


class Unique:
    """Field metadata: the items of this list must differ."""


class NodeRef:
    """Field metadata: a node id (or "*" when `star`), checked against the node count of the run
    (`ctx["nodes"]`) when it is known; in a list's item type it applies to every item."""

    def __init__(self, star=False):
        self.star = star


class ConfigModel(BaseModel):
    """A table of a config file: unknown keys are refused, scalars are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False,
                              validate_default=False, populate_by_name=True)

    def check(self, at: At, ctx: dict) -> None:
        """Rules across this table's keys; call at.fail / (at / key).fail."""

    def data(self) -> dict:
        """The plain-dict form: defaults filled, absent optional keys left out."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


def fail(why: str, kind="flhil"):
    """Raise from a pydantic validator with fl-hil's wording."""
    raise PydanticCustomError(kind, "{why}", {"why": why})


# -- field types --------------------------------------------------------------------------------

def _num(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def range_text(noun, lo=None, hi=None, lo_open=False, hi_open=False):
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"{noun} between {_num(lo)} and {_num(hi)}"
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_open else '>='} {_num(lo)}")
    if hi is not None:
        bounds.append(f"{'<' if hi_open else '<='} {_num(hi)}")
    return " ".join([noun] + ([" and ".join(bounds)] if bounds else []))


def Int(lo=None, hi=None, expected=None, **field):
    """An integer (never a float or a bool) in [lo, hi]."""
    return Annotated[int, Field(ge=lo, le=hi, strict=True, **field),
                     Expect(expected or range_text("an integer", lo, hi))]


def Float(lo=None, hi=None, lo_open=False, hi_open=False, expected=None, **field):
    """A number (an integer is taken as a float, a bool never) in the range."""
    bounds = {("gt" if lo_open else "ge"): lo, ("lt" if hi_open else "le"): hi}
    return Annotated[float, Field(strict=True, **{k: v for k, v in bounds.items() if v is not None},
                                  **field),
                     Expect(expected or range_text("a number", lo, hi, lo_open, hi_open))]


def Probability(**field):
    return Float(0, 1, expected="a probability between 0 and 1", **field)


def Text(pattern=None, expected=None, allow_empty=False, **field):
    """A string; `pattern` must match the whole string."""
    pattern = None if pattern is None else f"^(?:{pattern})$"
    return Annotated[str, Field(strict=True, pattern=pattern, min_length=None if allow_empty else 1, **field),
                     Expect(expected or ("a string" if allow_empty else "a non-empty string"))]


def OneOf(choices, **field):
    """One of the given strings; a near miss gets a "did you mean"."""
    choices = tuple(choices)
    return Annotated[Literal[choices], Field(**field),
                     Expect("one of " + ", ".join(json.dumps(c) for c in choices))]


def node_phrase(ctx, star=False):
    n = (ctx or {}).get("nodes")
    text = "a node id (an integer >= 0)" if n is None else f"a node id from 0 to {n - 1}"
    return text + ' or "*"' if star else text


def NodeId(**field):
    return Annotated[int, Field(ge=0, strict=True, **field), NodeRef(), Expect(node_phrase)]


def _node_or_all(value):
    if value == "*" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    fail("expected")  # worded by the translator, which knows the node count


def NodeOrAll(**field):
    from pydantic import PlainValidator, WithJsonSchema
    return Annotated[Union[int, str], PlainValidator(_node_or_all),
                     WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0}, {"const": "*"}]}),
                     Field(**field), NodeRef(star=True), Expect(lambda ctx: node_phrase(ctx, star=True))]


def Forbidden(why):
    """A key that must not appear, with the reason (e.g. a password in clear)."""
    from pydantic import PlainValidator, WithJsonSchema

    def refuse(_value):
        fail(why, "flhil_forbidden")
    return Annotated[Any, PlainValidator(refuse), WithJsonSchema({"not": {}}),
                     Field(default=None, exclude=True)]


# -- validation ---------------------------------------------------------------------------------

def validate(model: type[ConfigModel], data: Any, at: At, ctx: dict | None = None) -> ConfigModel:
    """`data` (found at `at`) as a `model`, or ConfigError at the first mistake."""
    ctx = dict(ctx or {})
    if not isinstance(data, dict):
        at.fail(f"expected a table, got {describe(data)}")
    try:
        value = model.model_validate(_plain(data), context=ctx)
    except ValidationError as error:
        raise _config_error(model, error, at, ctx) from None
    run_checks(value, at, ctx)
    return value


def _plain(value):
    """Tuples (from code) as lists, as TOML and JSON give them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def run_checks(value: Any, at: At, ctx: dict) -> None:
    """The cross-key rules of a validated tree, depth first, with each value's key path."""
    if isinstance(value, ConfigModel):
        for name, info in type(value).model_fields.items():
            child = getattr(value, name)
            if child is None:
                continue
            key = info.alias or name
            _field_rules(info, child, at / key, ctx)
            run_checks(child, at / key, ctx)
        value.check(at, ctx)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            run_checks(item, at / i, ctx)
    elif isinstance(value, dict):
        for key, item in value.items():
            run_checks(item, at / key, ctx)


def _field_rules(info: FieldInfo, value, at: At, ctx: dict) -> None:
    meta = info.metadata
    if any(isinstance(m, Unique) for m in meta) and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if item in value[:i]:
                (at / i).fail(f"{describe(item)} appears twice; each value must be unique")
    ref = _node_ref(info.annotation, meta)
    if ref is not None:
        check_node_ids(value, at, ctx, ref.star)


def _node_ref(tp, meta=()):
    """The NodeRef of a field or of its (nested) list items, or None."""
    tp, more = _unwrap(tp)
    for m in list(meta) + more:
        if isinstance(m, NodeRef):
            return m
    if get_origin(tp) in (list, tuple) and get_args(tp):
        return _node_ref(get_args(tp)[0])
    return None


def check_node_ids(value, at: At, ctx: dict, star=False) -> None:
    n = ctx.get("nodes")
    if n is None:
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_node_ids(item, at / i, ctx, star)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= n:
        at.fail(f"expected {node_phrase(ctx, star)}, got {value}")


# -- pydantic errors in fl-hil's words -----------------------------------------------------------

def _config_error(model, error: ValidationError, at: At, ctx: dict):
    errors = error.errors(include_url=False)
    # a misspelt key shows as an unknown key and a missing one: the unknown key, with its
    # "did you mean", is the useful message
    first = next((e for e in errors if e["type"] in ("extra_forbidden", "flhil_forbidden")), errors[0])
    loc = tuple(first["loc"])
    field, parts = _field_at(model, loc)
    where = at
    for part in parts:
        where = where / part
    kind = first["type"]
    value = first.get("input")
    if kind in ("flhil", "flhil_forbidden") and first["ctx"]["why"] != "expected":
        return where.source.error(where.parts, first["ctx"]["why"])
    expected = _expected(field, ctx)
    if kind == "missing":
        why = "missing required key" + (f", expected {expected}" if expected else "")
    elif kind == "extra_forbidden":
        owner = _owner_at(model, parts[:-1])
        keys = [f.alias or name for name, f in owner.model_fields.items()
                if not _is_forbidden(f)] if owner else []
        hint = suggestion(parts[-1], keys) or ("; expected one of: " + ", ".join(keys) if keys else "")
        why = f"unknown key {json.dumps(parts[-1])}{hint}"
    else:
        why = f"expected {expected or 'something else'}, got {describe(value)}"
        if kind == "literal_error":
            why += suggestion(value, _choices(field))
    return where.source.error(where.parts, why)


def _is_forbidden(info):
    return info.exclude is True


def _unwrap(tp):
    """(inner type, metadata) of Annotated[...] / Optional[...]."""
    meta = []
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            args = get_args(tp)
            tp, meta = args[0], meta + list(args[1:])
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, meta


class _Field:
    """What the error translator needs of the value at a location: type and metadata."""

    def __init__(self, tp, meta):
        self.tp, self.meta = _unwrap(tp)
        self.meta = list(meta) + self.meta

    def item(self, part):
        origin = get_origin(self.tp)
        if isinstance(part, int) and origin in (list, tuple):
            args = get_args(self.tp)
            return _Field(args[0] if args else Any, [])
        if isinstance(part, str) and origin is dict:
            args = get_args(self.tp)
            return _Field(args[1] if len(args) == 2 else Any, [])
        if isinstance(part, str) and isinstance(self.tp, type) and issubclass(self.tp, BaseModel):
            info = _model_field(self.tp, part)
            if info is not None:
                return _Field(info.annotation, info.metadata)
        return None


def _model_field(model, key):
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info
    return None


def _field_at(model, loc):
    """The field at a pydantic location, and the location as key-path parts (union member tags
    and pydantic's own suffixes dropped)."""
    field = _Field(model, [])
    parts = []
    for part in loc:
        nxt = field.item(part) if field is not None else None
        if nxt is None:
            if field is not None and isinstance(part, str) and isinstance(field.tp, type) and \
                    issubclass(field.tp, BaseModel):
                parts.append(part)  # an unknown key: no field, but part of the path
                field = None
                continue
            if field is not None and get_origin(field.tp) in (dict,) or field is None:
                parts.append(part)
                continue
            break  # a union member tag or a validator's suffix: the field is the last one
        parts.append(part)
        field = nxt
    return field, tuple(parts)


def _owner_at(model, parts):
    field = _Field(model, [])
    for part in parts:
        field = field.item(part) if field is not None else None
    tp = field.tp if field is not None else None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _expected(field, ctx):
    if field is None:
        return None
    for m in reversed(field.meta):  # the outermost annotation's phrase wins
        if isinstance(m, Expect):
            return m.phrase(ctx)
    return type_phrase(field.tp, field.meta)


def _choices(field):
    if field is None:
        return ()
    tp = field.tp
    if get_origin(tp) is Literal:
        return [str(c) for c in get_args(tp)]
    return ()


def type_phrase(tp, meta=()):
    """'an integer >= 1', 'a list of ...', 'a table': the expected form of a type."""
    tp, more = _unwrap(tp)
    meta = list(meta) + more
    for m in reversed(meta):
        if isinstance(m, Expect):
            return m.phrase({})
    origin = get_origin(tp)
    if tp is bool:
        return "true or false"
    if tp is int or tp is float:
        lo = hi = None
        lo_open = hi_open = False
        for m in meta:
            for c in getattr(m, "metadata", [m]):
                if isinstance(c, at_.Ge):
                    lo = c.ge
                elif isinstance(c, at_.Gt):
                    lo, lo_open = c.gt, True
                elif isinstance(c, at_.Le):
                    hi = c.le
                elif isinstance(c, at_.Lt):
                    hi, hi_open = c.lt, True
        return range_text("an integer" if tp is int else "a number", lo, hi, lo_open, hi_open)
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(json.dumps(c) for c in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return "a list of " + (type_phrase(args[0]) if args else "values")
    if origin is dict or (isinstance(tp, type) and issubclass(tp, BaseModel)):
        return "a table"
    return "a value"


# -- key paths into a model (for [params]) --------------------------------------------------------

def field_for_path(model, parts):
    """The type governing a key path inside `model`; LookupError(depth, why) at the first part
    that cannot be there."""
    field = _Field(model, [])
    for depth, part in enumerate(parts):
        tp = field.tp
        if tp is Any:
            return field
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if isinstance(part, int):
                raise LookupError(depth, f"expected a key, got an index [{part}] (a table)")
            nxt = field.item(part)
            if nxt is None:
                if tp.model_config.get("extra") == "allow":
                    return _Field(Any, [])
                keys = [f.alias or n for n, f in tp.model_fields.items() if not _is_forbidden(f)]
                hint = suggestion(part, keys) or "; expected one of: " + ", ".join(keys)
                raise LookupError(depth, f"unknown key {json.dumps(part)}{hint}")
            field = nxt
        elif origin in (list, tuple):
            if not isinstance(part, int):
                raise LookupError(depth, f"expected an index like [0] ({_expected(field, {})}), "
                                         f"got {json.dumps(part)}")
            field = field.item(part)
        elif origin is dict:
            field = field.item(part)
        else:
            raise LookupError(depth, f"nothing can be nested in {_expected(field, {})}")
    return field


def _description(info, field):
    """A field's doc: its own description, else the one given inside its type (Int(..., description=))."""
    if info.description:
        return info.description
    for m in field.meta:
        if isinstance(m, FieldInfo) and m.description:
            return m.description
    return ""


def doc_rows(model, prefix="", ctx=None):
    """(key path, type phrase, doc) for every key of a model, nested tables expanded: the docs'
    key tables are generated from this."""
    rows = []
    for name, info in model.model_fields.items():
        if _is_forbidden(info):
            continue
        key = prefix + (info.alias or name)
        field = _Field(info.annotation, info.metadata)
        tp = field.tp
        origin = get_origin(tp)
        inner = get_args(tp)[0] if origin in (list, tuple) and get_args(tp) else None
        nested = tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
        if inner is not None:
            inner, _ = _unwrap(inner)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                rows.append((key + "[]", "array of tables", _description(info, field)))
                rows += doc_rows(inner, key + "[].", ctx)
                continue
        if nested is not None:
            rows.append((key, "table", _description(info, field)))
            rows += doc_rows(nested, key + ".", ctx)
            continue
        rows.append((key, _expected(field, ctx or {}) or "", _description(info, field)))
    return rows


def json_schema(model, title=None) -> dict:
    """The model's JSON Schema, shaped for TOML (which has no null: an optional key is just
    absent), for editors that complete and check files (taplo / Even Better TOML)."""
    schema = _no_null(model.model_json_schema(by_alias=True))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    if title:
        schema["title"] = title
    return schema


def _no_null(node):
    if isinstance(node, list):
        return [_no_null(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _no_null(v) for k, v in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if node.get("default", 0) is None:
            del node["default"]
        if len(rest) == 1:
            node = {**rest[0], **node}
        else:
            node["anyOf"] = rest
    return node


def markdown_table(model, ctx=None) -> str:
    """The docs' key table of a model: key, what it takes, what it means."""
    lines = ["| key | takes | meaning |", "| --- | --- | --- |"]
    for key, takes, doc in doc_rows(model, ctx=ctx):
        lines.append("| `%s` | %s | %s |" % (key, takes.replace("|", "\\|"), doc.replace("|", "\\|")))
    return "\n".join(lines) + "\n"


__all__ = ["ConfigModel", "Expect", "Unique", "NodeRef", "Int", "Float", "Probability", "Text",
           "OneOf", "NodeId", "NodeOrAll", "Forbidden", "validate", "run_checks", "fail",
           "field_for_path", "doc_rows", "json_schema", "type_phrase", "format_key_path"]
