"""Write a schema dataclass (see ``_schema``) as commented TOML text.

Reading TOML uses the standard library; writing has no standard-library
support, and the values written here are only the simple kinds the schema
allows (strings, paths, booleans, integers, arrays of strings), so a small
formatter avoids a dependency. Strings are always written as TOML basic
strings with every character that needs it escaped; the caller re-parses the
output with ``tomllib`` to prove it round-trips.
"""

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any, base_dir: Path | None) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) is int:
        return _int(value)
    if isinstance(value, Path):
        if base_dir is not None and value.is_relative_to(base_dir):
            return toml_string(str(value.relative_to(base_dir)) or ".")
        return toml_string(str(value))
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v, base_dir) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _int(value: int) -> str:
    """Group digits (``4_194_304``) so byte sizes read at a glance."""
    return f"{value:_}" if abs(value) >= 10_000 else str(value)


def render_table(obj: Any, base_dir: Path | None, dotted: str = "") -> list[str]:
    """Lines for one table: its scalars, then its sub-tables and arrays of tables."""
    lines: list[str] = []
    nested: list[str] = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        child = f"{dotted}.{f.name}" if dotted else f.name
        if "section" in f.metadata:
            nested += ["", f"# {f.metadata['doc']}", f"[{child}]"]
            nested += render_table(value, base_dir, child)
        elif "items" in f.metadata:
            for item in value:
                nested += ["", f"[[{child}]]", *render_table(item, base_dir, child)]
        else:
            lines += _render_key(f.name, value, f.metadata["doc"], f.default, base_dir)
    return lines + nested


def _render_key(name: str, value: Any, doc: str, default: Any, base_dir: Path | None) -> list[str]:
    if default is MISSING:
        note = "required"
    elif default is None:
        note = "default: unset"
    else:
        note = f"default: {toml_value(default, None)}"
    comment = f"# {doc} ({note})"
    if value is None:
        return [comment, f"# {name} ="]
    return [comment, f"{name} = {toml_value(value, base_dir)}"]
