"""Helpers for the daemon tests: a real ``ratui --daemon`` subprocess with its control socket
in a short private directory, configs with one tunnelled echo service, and a blocking client
for the control socket's JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import Proc, Procs, free_port, wait_port

TOKEN = "daemon-test-token-Q7"


def both_toml(control: int, public: int, local: str, *, extra_services: str = "") -> str:
    """A server and a client in one file: service ``echo`` from 127.0.0.1:public to local."""
    return f"""
[server]
bind_addr = "127.0.0.1:{control}"
default_token = "{TOKEN}"

[server.services.echo]
bind_addr = "127.0.0.1:{public}"
{extra_services}
[client]
remote_addr = "127.0.0.1:{control}"
default_token = "{TOKEN}"
retry_interval = 1

[client.services.echo]
local_addr = "{local}"
"""


def extra_service(name: str, public: int, local: str) -> str:
    """A second service, for both tables; goes in ``both_toml(extra_services=...)``."""
    return f"""
[server.services.{name}]
bind_addr = "127.0.0.1:{public}"

[client.services.{name}]
local_addr = "{local}"
"""


def private_dir() -> Iterator[Path]:
    """For a ``sockdir`` fixture: a short private directory for control sockets (a Unix
    socket's path has room for about 100 bytes, less than pytest's tmp_path may take)."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Daemon:
    proc: Proc
    config: Path
    socket: Path
    control: int
    public: int

    def wait_up(self, timeout: float = 15.0) -> None:
        wait_port(self.control, timeout)
        wait_port(self.public, timeout)
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"no control socket; output:\n{self.proc.output()}")
            time.sleep(0.05)
        self.proc.wait_for_output("Control socket at", timeout)


def start_daemon(
    procs: Procs,
    tmp_path: Path,
    sockdir: Path,
    local: str,
    *args: str,
    env: dict[str, str] | None = None,
    name: str = "ctl/control.sock",
) -> Daemon:
    control, public = free_port(), free_port()
    config = tmp_path / f"{name.replace('/', '-')}.toml"
    config.write_text(both_toml(control, public, local))
    config.chmod(0o600)
    sock = sockdir / name
    proc = procs.ratui(
        "--daemon",
        str(config),
        "--control-socket",
        str(sock),
        *args,
        env={"RATUI_WATCH": "off", **(env or {})},
    )
    daemon = Daemon(proc, config, sock, control, public)
    daemon.wait_up()
    return daemon


class Client:
    """A blocking JSON-lines client of the control socket, for tests."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(os.fspath(path))
        self.file = self.sock.makefile("rwb")
        self.next_id = 0
        self.pushes: list[dict[str, Any]] = []

    def send_raw(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()

    def read(self) -> dict[str, Any]:
        line = self.file.readline()
        if not line:
            raise EOFError("the daemon closed the connection")
        return json.loads(line)

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """The whole answer to one request; pushes that arrive meanwhile are kept."""
        self.next_id += 1
        self.send_raw(json.dumps({"v": 1, "id": self.next_id, "op": op, **args}).encode() + b"\n")
        while True:
            message = self.read()
            if "push" in message:
                self.pushes.append(message)
                continue
            assert message["id"] == self.next_id, message
            assert message["v"] == 1
            return message

    def result(self, op: str, **args: Any) -> dict[str, Any]:
        reply = self.call(op, **args)
        assert reply["ok"], reply
        return reply["result"]

    def push(self) -> dict[str, Any]:
        if self.pushes:
            return self.pushes.pop(0)
        message = self.read()
        assert "push" in message, message
        return message

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for(condition, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
