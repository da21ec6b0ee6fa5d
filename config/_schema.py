"""Load a TOML table into a frozen dataclass, field by field.

Why generic: the settings schema (names, defaults, checks, one-line docs)
lives once, as the dataclass fields in ``settings.py``. The loader, the
renderer used by ``pbftd init`` and the test that keeps the example files
complete all read it from there, so adding a key is one field and its checks
cannot be forgotten.

Rules the loader keeps: every key in a table must be a field (an unknown key is
an error, with a suggestion); every value goes through its field's parser,
which returns the typed value or raises ValueError saying what it expected;
after a table is built, its ``problems()`` (cross-field rules) must be empty.
"""

import difflib
from collections.abc import Callable, Iterator
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from config._values import describe
from config.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Ctx:
    """What parsers need besides the value: the file name and its directory."""

    source: str
    base_dir: Path


Parser = Callable[[object, Ctx], Any]


def setting(default: Any = MISSING, *, parse: Parser, doc: str) -> Any:
    """A scalar key; no default means the key is required."""
    return field(default=default, metadata={"parse": parse, "doc": doc})


def section(cls: type, *, doc: str) -> Any:
    """A ``[name]`` table whose keys are the fields of ``cls``."""
    return field(default_factory=cls, metadata={"section": cls, "doc": doc})


def table_array(cls: type, *, items_max: int, doc: str) -> Any:
    """An ``[[section.name]]`` array of tables, loaded as a tuple of ``cls``."""
    return field(default=(), metadata={"items": cls, "items_max": items_max, "doc": doc})


def is_required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def label(dotted: str) -> str:
    """How a table is named in messages: ``[p2p]``, ``[rpc.tokens[0]]``, or nothing."""
    return f"[{dotted}] " if dotted else ""


def load_table(cls: type, table: object, ctx: Ctx, dotted: str = "") -> Any:
    """Build ``cls`` from a parsed TOML table; any problem is a ConfigError."""
    where = f"{ctx.source}: {label(dotted)}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}expected a table, got {describe(table)}")
    known = {f.name: f for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}unknown key {key!r}{_suggest(key, known)}")
    values: dict[str, Any] = {}
    for f in known.values():
        if f.name in table:
            values[f.name] = _load_value(f, table[f.name], ctx, dotted)
        elif is_required(f):
            raise ConfigError(f"{where}missing required key {f.name!r}")
    obj = cls(**values)
    for key, message in problems(obj):
        raise ConfigError(f"{where}{key}: {message}")
    return obj


def problems(obj: object) -> Iterator[tuple[str, str]]:
    check = getattr(obj, "problems", None)
    return iter(check()) if check is not None else iter(())


def _load_value(f: Field, value: object, ctx: Ctx, dotted: str) -> Any:
    child = f"{dotted}.{f.name}" if dotted else f.name
    if "section" in f.metadata:
        if not isinstance(value, dict):
            raise ConfigError(
                f"{ctx.source}: {label(dotted)}{f.name}: expected a table [{child}], "
                f"got {describe(value)}"
            )
        return load_table(f.metadata["section"], value, ctx, child)
    if "items" in f.metadata:
        items_max = f.metadata["items_max"]
        if not isinstance(value, list) or len(value) > items_max:
            raise ConfigError(
                f"{ctx.source}: {label(dotted)}{f.name}: expected at most {items_max} "
                f"[[{child}]] tables, got {describe(value)}"
            )
        cls = f.metadata["items"]
        return tuple(load_table(cls, item, ctx, f"{child}[{i}]") for i, item in enumerate(value))
    try:
        return f.metadata["parse"](value, ctx)
    except ValueError as err:
        raise ConfigError(f"{ctx.source}: {label(dotted)}{f.name}: {err}") from None


def _suggest(key: str, known: dict[str, Field]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def absolute_paths(obj: Any) -> Any:
    """A copy of a schema dataclass with every Path made absolute (against the cwd)."""
    changes: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Path) and not value.is_absolute():
            changes[f.name] = value.absolute()
        elif "section" in f.metadata:
            changes[f.name] = absolute_paths(value)
    return replace(obj, **changes)
