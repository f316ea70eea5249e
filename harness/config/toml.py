"""TOML documents: reading them, key paths, and finding the line of a key for error messages.

tomllib does not report line numbers, so `Source` finds the line of a key by a light scan of the
TOML text. That is best effort and only ever feeds error messages.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Iterable, NoReturn

from flhil.harness.errors import ConfigError

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
