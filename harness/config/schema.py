"""A small declarative validator for the harness's TOML and JSON data.

A schema is a tree of specs (`Table`, `ListOf`, `Number`, `Str`, ...). `validate` checks a value
against it and returns a normalised copy (defaults filled, numbers coerced); the first mistake
raises `ConfigError` naming the file, the key path (`faults.links[1].loss`), the line of that key
when it can be found, what was expected and what was found. Unknown keys are rejected with a
"did you mean" suggestion.

tomllib does not report line numbers, so `Source` finds the line of a key by a light scan of the
TOML text. That is best effort and only ever feeds error messages.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable, NoReturn

from flhil.harness.errors import ConfigError


class _Missing:
    def __repr__(self):
        return "MISSING"


MISSING: Any = _Missing()

# ---------------------------------------------------------------------------------------------
# Key paths


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key_path(parts: Iterable[str | int]) -> str:
    """("faults", "links", 1, "loss") -> 'faults.links[1].loss'; odd keys are quoted."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            out += ("." if out else "") + key
    return out


_PATH_SEGMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)")


def parse_key_path(text: str) -> tuple[str | int, ...]:
    """'faults.links[0].loss' -> ("faults", "links", 0, "loss"). Raises ValueError."""
    parts: list[str | int] = []
    for segment in text.split("."):
        match = _PATH_SEGMENT.fullmatch(segment.strip())
        if not match:
            raise ValueError(f"{text!r} is not a key path like 'nodes.count' or 'faults.links[0].loss'")
        parts.append(match[1])
        parts.extend(int(index) for index in re.findall(r"\[(\d+)\]", match[2]))
    return tuple(parts)


def describe(value: Any) -> str:
    """A short TOML-flavoured rendering of a value for 'got ...' in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 40 else "a list"
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "nothing"
    return repr(value)


def suggestion(word: Any, options: Iterable[str]) -> str:
    """'; did you mean "loss"?' when `word` is close to one of `options`, else ''."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {json.dumps(close[0])}?" if close else ""


# ---------------------------------------------------------------------------------------------
# Finding the line of a key in TOML text

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_ARRAY_HEADER = re.compile(rf"\s*\[\[\s*({_DOTTED_KEY})\s*\]\]")
_TABLE_HEADER = re.compile(rf"\s*\[\s*({_DOTTED_KEY})\s*\]")
_KEY_VALUE = re.compile(rf"\s*({_DOTTED_KEY})\s*=")
_INLINE_KEY = re.compile(rf"[{{,]\s*({_DOTTED_KEY})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for match in re.finditer(_KEY_PART, dotted):
        part = match[0]
        if part.startswith('"'):
            try:
                part = json.loads(part)
            except ValueError:
                part = part[1:-1]
        elif part.startswith("'"):
            part = part[1:-1]
        parts.append(part)
    return tuple(parts)


def _bracket_depth_change(text: str) -> int:
    """Net [ and { opened on a line, ignoring strings and comments (for multi-line values)."""
    depth, quote, i = 0, None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        i += 1
    return depth


def scan_key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map key paths (with array-of-tables indices) to the 1-based line that sets them."""
    index: dict[tuple, int] = {}
    table: tuple = ()
    arrays: dict[tuple, int] = {}  # path of an array of tables -> index of its last element
    depth = 0
    in_string = None  # the delimiter of a multi-line string we are inside

    def resolve(keys):  # insert the current element index after every array-of-tables prefix
        out: tuple = ()
        for key in keys:
            out += (key,)
            if out in arrays:
                out += (arrays[out],)
        return out

    for number, line in enumerate(text.splitlines(), 1):
        if in_string:
            if line.count(in_string) % 2:
                in_string = None
            continue
        if depth > 0:  # continuation of a multi-line array or inline table
            depth = max(0, depth + _bracket_depth_change(line))
            continue
        if match := _ARRAY_HEADER.match(line):
            keys = _split_key(match[1])
            base = resolve(keys[:-1]) + keys[-1:]
            arrays[base] = arrays.get(base, -1) + 1
            table = base + (arrays[base],)
            index.setdefault(base, number)
            index[table] = number
        elif match := _TABLE_HEADER.match(line):
            table = resolve(_split_key(match[1]))
            index.setdefault(table, number)
        elif match := _KEY_VALUE.match(line):
            key = table + _split_key(match[1])
            for end in range(len(table) + 1, len(key) + 1):
                index.setdefault(key[:end], number)
            rest = line[match.end():]
            for inline in _INLINE_KEY.finditer(rest):
                index.setdefault(key + _split_key(inline[1]), number)
            for delimiter in ('"""', "'''"):
                if rest.count(delimiter) % 2:
                    in_string = delimiter
            depth = max(0, _bracket_depth_change(rest))
    return index


class Source:
    """The document being validated: its file name for messages and its text for line numbers."""

    def __init__(self, path: Any = None, text: str | None = None):
        self.path = None if path is None else str(path)
        self.text = text
        self._lines: dict | None = None

    def line_of(self, parts: Iterable[str | int]) -> int | None:
        """Line of the key, or of its nearest enclosing key that could be found."""
        if self.text is None:
            return None
        if self._lines is None:
            self._lines = scan_key_lines(self.text)
        parts = tuple(parts)
        while parts:
            if parts in self._lines:
                return self._lines[parts]
            parts = parts[:-1]
        return None

    def error(self, parts: Iterable[str | int], why: str, line: int | None = None) -> ConfigError:
        parts = tuple(parts)
        return ConfigError(self.path, format_key_path(parts), why,
                           line if line is not None else self.line_of(parts))


class At:
    """Where a value sits: the document and the key path from its root."""

    __slots__ = ("source", "parts")

    def __init__(self, source: Source, parts: tuple = ()):
        self.source = source
        self.parts = tuple(parts)

    def __truediv__(self, part: str | int) -> At:
        return At(self.source, self.parts + (part,))

    @property
    def key(self) -> str:
        return format_key_path(self.parts)

    def fail(self, why: str) -> NoReturn:
        raise self.source.error(self.parts, why)


# ---------------------------------------------------------------------------------------------
# Specs


class Spec:
    """A rule for one value. `validate` returns the normalised value or raises ConfigError."""

    expected = "a value"

    def validate(self, value: Any, at: At) -> Any:
        raise NotImplementedError

    def child(self, part: str | int) -> Spec:
        """Spec of a nested value, for checking key paths; LookupError(why) if there is none."""
        raise LookupError(f"nothing can be nested in {self.expected}")

    def mismatch(self, value: Any, at: At, extra: str = "") -> NoReturn:
        at.fail(f"expected {self.expected}, got {describe(value)}{extra}")


class AnyValue(Spec):
    expected = "any value"

    def validate(self, value, at):
        return copy.deepcopy(value)

    def child(self, part):
        return self


class Bool(Spec):
    expected = "true or false"

    def validate(self, value, at):
        if not isinstance(value, bool):
            self.mismatch(value, at)
        return value


def _number_text(x):
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range_text(low, high, low_open, high_open, noun):
    if low is not None and high is not None and not low_open and not high_open:
        return f"{noun} between {_number_text(low)} and {_number_text(high)}"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {_number_text(low)}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {_number_text(high)}")
    return " ".join([noun] + [" and ".join(bounds)] if bounds else [noun])


class Number(Spec):
    """An int or float (never a bool) in a range; `integer` rejects floats, `to_float` coerces."""

    def __init__(self, min=None, max=None, *, min_open=False, max_open=False, integer=False,
                 to_float=False, expected=None):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open
        self.integer, self.to_float = integer, to_float
        self.expected = expected or _range_text(min, max, min_open, max_open,
                                                "an integer" if integer else "a number")

    def validate(self, value, at):
        kinds = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            self.mismatch(value, at)
        if isinstance(value, float) and not math.isfinite(value):
            self.mismatch(value, at)
        if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
            self.mismatch(value, at)
        if self.max is not None and (value > self.max or (self.max_open and value == self.max)):
            self.mismatch(value, at)
        return float(value) if self.to_float else value


def Int(min=None, max=None, *, expected=None) -> Number:
    return Number(min, max, integer=True, expected=expected)


def Float(min=None, max=None, *, min_open=False, max_open=False, expected=None) -> Number:
    return Number(min, max, min_open=min_open, max_open=max_open, to_float=True, expected=expected)


def Probability() -> Number:
    return Float(0, 1, expected="a probability between 0 and 1")


class Str(Spec):
    def __init__(self, choices: Iterable[str] | None = None, pattern: str | None = None,
                 expected: str | None = None, allow_empty: bool = False):
        self.choices = None if choices is None else tuple(choices)
        self.pattern = None if pattern is None else re.compile(pattern)
        self.allow_empty = allow_empty
        if expected:
            self.expected = expected
        elif self.choices:
            self.expected = "one of " + ", ".join(json.dumps(c) for c in self.choices)
        else:
            self.expected = "a string" if allow_empty else "a non-empty string"

    def validate(self, value, at):
        if not isinstance(value, str) or (not value and not self.allow_empty):
            self.mismatch(value, at)
        if self.choices is not None and value not in self.choices:
            self.mismatch(value, at, suggestion(value, self.choices))
        if self.pattern is not None and not self.pattern.fullmatch(value):
            self.mismatch(value, at)
        return value


class ListOf(Spec):
    """A list (a tuple is accepted from code) of items of one spec, returned as a list."""

    def __init__(self, item: Spec, *, min_len=0, max_len=None, unique=False, expected=None):
        self.item, self.min_len, self.max_len, self.unique = item, min_len, max_len, unique
        if expected:
            self.expected = expected
        elif min_len and min_len == max_len:
            self.expected = f"a list of {min_len} items, each {item.expected}"
        elif min_len:
            self.expected = f"a non-empty list of {item.expected}" if min_len == 1 else \
                f"a list of at least {min_len} items, each {item.expected}"
        else:
            self.expected = f"a list of {item.expected}"

    def validate(self, value, at):
        if not isinstance(value, (list, tuple)):
            self.mismatch(value, at)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            self.mismatch(value, at)
        out = [self.item.validate(item, at / i) for i, item in enumerate(value)]
        if self.unique:
            for i, item in enumerate(out):
                if item in out[:i]:
                    (at / i).fail(f"{describe(item)} appears twice; each value must be unique")
        return out

    def child(self, part):
        if not isinstance(part, int):
            raise LookupError(f"expected an index like [0] ({self.expected}), got {json.dumps(part)}")
        return self.item


class Field:
    """A key of a table: its spec, whether it must be present, and the default filled if absent."""

    def __init__(self, spec: Spec, *, required: bool = False, default: Any = MISSING):
        self.spec, self.required, self.default = spec, required, default


def required(spec: Spec) -> Field:
    return Field(spec, required=True)


def optional(spec: Spec, default: Any = MISSING) -> Field:
    return Field(spec, default=default)


Check = Callable[[dict, At], None]


class Table(Spec):
    """A table with known keys. `open` tables keep unknown keys (checked against `values`).

    `forbidden` maps keys to the message given when they appear (e.g. a password in clear);
    `checks` are cross-key rules run on the normalised table.
    """

    expected = "a table"

    def __init__(self, fields: dict[str, Field | Spec], *, open: bool = False,
                 values: Spec | None = None, checks: Iterable[Check] = (),
                 forbidden: dict[str, str] | None = None, expected: str | None = None):
        self.fields = {name: f if isinstance(f, Field) else Field(f) for name, f in fields.items()}
        self.open, self.values = open, values
        self.checks, self.forbidden = tuple(checks), dict(forbidden or {})
        if expected:
            self.expected = expected

    def validate(self, value, at):
        if not isinstance(value, dict):
            self.mismatch(value, at)
        for key in value:
            if key in self.forbidden:
                (at / key).fail(self.forbidden[key])
            if key not in self.fields and not self.open:
                (at / key).fail(self.unknown_key(key))
        out = {}
        for name, field in self.fields.items():
            if name in value:
                out[name] = field.spec.validate(value[name], at / name)
            elif field.required:
                (at / name).fail(f"missing required key, expected {field.spec.expected}")
            elif field.default is not MISSING:  # defaults are normalised like given values
                out[name] = field.spec.validate(copy.deepcopy(field.default), at / name)
        for key, item in value.items():
            if key not in self.fields:
                out[key] = (self.values or AnyValue()).validate(item, at / key)
        for check in self.checks:
            check(out, at)
        return out

    def unknown_key(self, key) -> str:
        hint = suggestion(key, self.fields)
        if not hint:
            hint = "; expected one of: " + ", ".join(self.fields)
        return f"unknown key {json.dumps(key)}{hint}"

    def child(self, part):
        if isinstance(part, int):
            raise LookupError(f"expected a key, got an index [{part}] ({self.expected})")
        if part in self.fields:
            return self.fields[part].spec
        if self.open:
            return self.values or AnyValue()
        raise LookupError(self.unknown_key(part))


class AnyOf(Spec):
    """The first of several specs that accepts the value, e.g. a node id or "*"."""

    def __init__(self, *options: Spec, expected: str):
        self.options, self.expected = options, expected

    def validate(self, value, at):
        for option in self.options:
            try:
                return option.validate(value, at)
            except ConfigError:
                continue
        self.mismatch(value, at)

    def child(self, part):
        for option in self.options:
            try:
                return option.child(part)
            except LookupError:
                continue
        raise LookupError(f"nothing can be nested in {self.expected}")


class Checked(Spec):
    """A spec plus a rule on the normalised value, `rule(value, at)`, which calls at.fail."""

    def __init__(self, spec: Spec, rule: Callable[[Any, At], None], expected: str | None = None):
        self.spec, self.rule = spec, rule
        self.expected = expected or spec.expected

    def validate(self, value, at):
        value = self.spec.validate(value, at)
        self.rule(value, at)
        return value

    def child(self, part):
        return self.spec.child(part)


def spec_at(spec: Spec, parts: Iterable[str | int]) -> Spec:
    """The spec that governs a key path; LookupError(why) naming the first bad part."""
    for depth, part in enumerate(parts):
        try:
            spec = spec.child(part)
        except LookupError as error:
            raise LookupError(depth, str(error)) from None
    return spec


def validate(spec: Spec, value: Any, *, path: Any = None, text: str | None = None,
             root: tuple = ()) -> Any:
    """Validate `value` (found at key path `root` of the file `path` whose text is `text`)."""
    return spec.validate(value, At(Source(path, text), root))


# ---------------------------------------------------------------------------------------------
# Reading TOML with errors in the same format


def parse_toml(text: str, path: Any = None) -> tuple[dict, Source]:
    """Parse TOML text; a syntax error becomes a ConfigError with the line tomllib reports."""
    source = Source(path, text)
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        line = None
        found = re.search(r"\(at line (\d+)", message)
        if found:
            line = int(found[1])
        raise ConfigError(source.path, "", f"not valid TOML: {message}", line) from None


def read_toml(path: Any) -> tuple[dict, Source]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(path, "", f"cannot read the file: {error}") from None
    return parse_toml(text, path)
