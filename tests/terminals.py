"""``python -m ratui ARGS`` on a fresh pseudo-terminal, for the tests that drive the dashboard
as a user would: everything it writes is kept, escape sequences included."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator, Mapping


class Terminal:
    """``python -m ratui ARGS`` on a fresh ``cols`` x ``rows`` pseudo-terminal (TERM
    xterm-256color, plus ``env``); everything it writes is kept, escape sequences included."""

    def __init__(
        self, *args: str, rows: int = 24, cols: int = 80, env: Mapping[str, str] | None = None
    ) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        environ = {**os.environ, "TERM": "xterm-256color", **(env or {})}
        environ.pop("TEXTUAL", None)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ratui", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environ,
            start_new_session=True,
        )
        os.close(slave)
        self.output = b""

    def read(self, timeout: float = 0.1) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], timeout)
            if not ready:
                return
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read()
            if match := re.search(pattern, self.text()):
                return match
            if self.popen.poll() is not None:
                self.read()
                break
        raise AssertionError(f"{pattern!r} not seen; output:\n{self.text()[-3000:]}")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            if self.master >= 0:
                self.read()
            else:
                time.sleep(0.05)
        if self.master >= 0:
            self.read()
        return self.popen.wait(1)

    def hang_up(self) -> None:
        """The terminal goes away, as when an SSH connection drops."""
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        if self.master >= 0:
            os.close(self.master)


def open_terminals(**options: object) -> Iterator[Callable[..., Terminal]]:
    """The body of a ``terminal`` fixture: a factory of :class:`Terminal` (with ``options``)
    whose terminals are all closed at teardown."""
    opened: list[Terminal] = []

    def open_(*args: str) -> Terminal:
        opened.append(Terminal(*args, **options))  # type: ignore[arg-type]
        return opened[-1]

    yield open_
    for term in opened:
        term.close()
