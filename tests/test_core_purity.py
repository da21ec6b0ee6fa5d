"""The consensus core must stay pure: no I/O, clock, randomness or event loop.

Parses every module of pbftd/core and fails on any import outside a short
allow-list, so a convenience ``import time`` cannot slip in unnoticed.
"""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "pbftd" / "core"
ALLOWED_MODULES = {
    "__future__", "collections", "collections.abc", "dataclasses", "typing", "hashlib",
    "enum", "functools", "itertools", "cbor2",
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "cryptography.hazmat.primitives.serialization",
}
ALLOWED_NAMES = {("io", "BytesIO")}  # in-memory buffer for the CBOR decoder, no I/O


def _imports(path: Path) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            found.append(("__import__", None))
    return found


def test_core_modules_exist() -> None:
    assert len(list(CORE.glob("*.py"))) >= 8


def test_core_imports_nothing_that_does_io() -> None:
    bad = []
    for path in sorted(CORE.glob("*.py")):
        for module, name in _imports(path):
            if module in ALLOWED_MODULES or (module, name) in ALLOWED_NAMES:
                continue
            bad.append(f"{path.name}: {module}" + (f".{name}" if name else ""))
    assert not bad, "impure imports in the core: " + ", ".join(bad)


def test_purity_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import time\nfrom os import path\nfrom io import StringIO\n")
    names = _imports(sample)
    assert ("time", None) in names and ("os", "path") in names
    assert ("io", "StringIO") not in ALLOWED_NAMES
