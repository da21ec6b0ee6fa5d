"""Running store code in a child process and reading its report lines with a deadline.

Children print protocol lines on stdout and log to stderr. Reading waits on the
pipe with `selectors` (blocking until data or the deadline), never by sleeping.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LineReader", "spawn"]

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD_PREAMBLE = """
import sys
import structlog
structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
"""


def spawn(
    script: str, args: Sequence[str], *, prefix: Sequence[str] = (), stdin: int | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", CHILD_PREAMBLE + script, *args],
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


class LineReader:
    """Lines from a child's stdout, each wait bounded by a deadline."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self._child = child
        self._fd = child.stdout.fileno()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)
        self._pending = b""
        self.eof = False

    def readline(self, deadline_s: float) -> str | None:
        """The next line, or None at end of file; AssertionError past the deadline."""
        while b"\n" not in self._pending:
            if self.eof:
                return None
            remaining = deadline_s - time.monotonic()
            assert remaining > 0, f"child sent no line in time; stderr: {self.stderr_tail()}"
            if not self._selector.select(remaining):
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:
                self.eof = True
                if self._pending:
                    self._pending += b"\n"
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def rest(self, deadline_s: float) -> list[str]:
        lines = []
        while (line := self.readline(deadline_s)) is not None:
            lines.append(line)
        return lines

    def stderr_tail(self) -> str:
        if self._child.poll() is None or self._child.stderr is None:
            return "(child still running)"
        return self._child.stderr.read().decode(errors="replace")[-2000:]

    def close(self) -> None:
        self._selector.close()
