"""Value checks shared by the genesis (JSON) and settings (TOML) loaders.

Each check takes a value of unknown type, straight from the parser, and
returns it typed or raises ValueError whose text says what was expected and
what was found. The loaders prefix the file and key path, so the wording here
serves both formats. Types are tested with ``type(x) is int``: a boolean is an
int subclass in Python but never a number in a config file.
"""

import ipaddress
import re

COURT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
HEX64_RE = re.compile(r"[0-9a-f]{64}")
_HOSTNAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_PORT_RE = re.compile(r"[0-9]{1,5}")
_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}


def describe(value: object) -> str:
    """Show a parsed value the way an operator wrote it, with its type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (boolean)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    name = _TYPE_NAMES.get(type(value), type(value).__name__)
    return f"{value!r} ({name})"


def want_int(value: object, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"expected an integer from {lo} to {hi}, got {describe(value)}")
    return value


def want_bool(value: object) -> bool:
    if type(value) is not bool:
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def want_text(value: object, length_max: int) -> str:
    """A non-blank string without control characters (names end up in logs)."""
    if type(value) is not str or not value.strip() or len(value) > length_max:
        raise ValueError(
            f"expected a non-empty string of at most {length_max} characters, got {describe(value)}"
        )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"must not contain control characters, got {describe(value)}")
    return value


def want_choice(value: object, choices: tuple[str, ...]) -> str:
    if type(value) is not str or value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {describe(value)}")
    return value


def want_match(value: object, regex: re.Pattern[str], what: str) -> str:
    if type(value) is not str or not regex.fullmatch(value):
        raise ValueError(f"expected {what}, got {describe(value)}")
    return value


def want_court_id(value: object) -> str:
    return want_match(value, COURT_ID_RE, "a court id matching [a-z0-9][a-z0-9-]{0,63}")


def want_hex64(value: object) -> str:
    return want_match(value, HEX64_RE, "64 lowercase hex characters")


def want_address(value: object) -> str:
    """A ``host:port`` string; IPv6 hosts in brackets, as in URLs."""
    if type(value) is not str:
        raise ValueError(f"expected a 'host:port' string, got {describe(value)}")
    try:
        parse_address(value)
    except ValueError as err:
        raise ValueError(f"expected 'host:port', got {value!r}: {err}") from None
    return value


def parse_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` into its parts; raise ValueError if either is invalid."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError("missing host or ':port'")
    if not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise ValueError("port must be a number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("an IPv6 host must be written in brackets, e.g. [::1]:7000")
    elif len(host) > 253 or not _HOSTNAME_RE.fullmatch(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host, int(port)
