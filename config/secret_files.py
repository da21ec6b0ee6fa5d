"""Files that hold secrets: node private keys and API bearer tokens.

A secret readable by another local user is a leaked secret, so the daemon
refuses any secret file whose mode grants group or others anything, and
says the one command that fixes it. New secret files are created with
``O_EXCL`` and mode 0600 in a single call, so there is no moment when the
file exists with looser permissions and an existing secret is never
overwritten by accident.
"""

import os
import stat
from pathlib import Path

from config.errors import ConfigError


def check_secret_file(path: str | Path) -> None:
    """Raise ConfigError unless ``path`` is a regular file only its owner can use."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: secret file is missing") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot stat secret file: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: secret file is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path}: mode {mode:04o} lets group or others access this secret; "
            f"run: chmod 600 {path}"
        )


def write_secret_file(path: str | Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuse if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: already exists; refusing to overwrite a secret") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot create secret file: {err.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def read_secret_file(path: str | Path) -> bytes:
    """The contents of a secret file, after ``check_secret_file``."""
    check_secret_file(path)
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read secret file: {err.strerror}") from None
