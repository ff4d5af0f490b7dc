"""Shared fixtures: free loopback ports, real ratui/rathole subprocesses, a local echo service.

Everything here runs real processes and real sockets on 127.0.0.1 only, and every wait is
bounded so a broken tunnel fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None

REPO = Path(__file__).resolve().parent.parent
#: The reference rathole: ../shared/rathole/rathole, or RATUI_RATHOLE where CI rebuilt it.
RATHOLE = Path(os.environ.get("RATUI_RATHOLE", REPO.parent / "shared" / "rathole" / "rathole"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_closed(port: int, timeout: float = 10.0) -> None:
    """Wait until connections to 127.0.0.1:port are refused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise TimeoutError(f"127.0.0.1:{port} still accepts connections after {timeout} s")


class Proc:
    """A tunnel process whose combined output is kept in a log file for assertions."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in output of {self.argv}:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


class Procs:
    """Starts ratui or rathole processes and stops every one of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Proc] = []

    def ratui(self, *args: str, env: dict[str, str] | None = None) -> Proc:
        return self._start([sys.executable, "-m", "ratui", *args], "ratui", env)

    def rathole(self, *args: str) -> Proc:
        if not RATHOLE.exists():
            if os.environ.get("RATUI_REQUIRE_RATHOLE"):
                pytest.fail(f"reference rathole not found at {RATHOLE}")
            pytest.skip(f"reference rathole not found at {RATHOLE}")
        return self._start([str(RATHOLE), *args], "rathole", None)

    def _start(self, argv: list[str], name: str, env: dict[str, str] | None) -> Proc:
        log = self.tmp_path / f"{name}-{len(self.started)}.log"
        # No control socket unless a test asks for one: parallel processes would otherwise
        # compete for the default path.
        defaults = {"RATUI_LOG": "debug", "RATUI_CONTROL_SOCKET": "off"}
        proc = Proc(argv, log, {**defaults, **(env or {})})
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop(signal.SIGKILL if proc.popen.poll() is None else signal.SIGTERM)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    manager = Procs(tmp_path)
    try:
        yield manager
    finally:
        manager.stop_all()


class EchoServer:
    """A threaded TCP echo service standing in for the service at home (``local_addr``)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def roundtrip(port: int, payload: bytes, timeout: float = 20.0) -> bytes:
    """Send ``payload`` through 127.0.0.1:port, half-close, and return everything echoed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        writer = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        writer.start()
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
        writer.join(timeout)
        return bytes(received)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# in-process engine tests ------------------------------------------------------------------
def run(coro: Awaitable[Any]) -> Any:
    """Run ``coro`` to completion, on uvloop where it is installed (as ratui itself does)."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)  # pragma: no cover


@pytest.fixture
def manual_rate_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime samples once at start, then hourly: the tests call sample_rates() themselves
    so that a background sample cannot land between theirs."""
    monkeypatch.setattr("ratui.engine.runtime.RATE_SAMPLE_PERIOD", 3600.0)


async def aroundtrip(port: int, payload: bytes, timeout: float = 5.0) -> bytes:
    """One visitor on the running loop: connect, send ``payload``, half-close, read to the end."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(payload)
            writer.write_eof()
            return await reader.read(-1)
        finally:
            writer.close()


async def poll_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def serve_echo(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, half_close: bool = True
) -> None:
    """An asyncio echo service's handler: echoes until the visitor's EOF, then (with
    ``half_close``) sends its own EOF; closes on the way out, quiet about resets."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if half_close:
            writer.write_eof()
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    """A short private directory for a daemon's control socket (see daemons.private_dir)."""
    from daemons import private_dir

    yield from private_dir()
