"""Helpers shared by the tunnel tests (ratui <-> ratui and ratui <-> rathole): a rathole-style
config, and blocking visitors that read an exact number of bytes, send-and-check one echo,
see whether a port refuses, and wait for a condition with a bound."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable


def toml(role: str, addr: str, services: dict[str, dict[str, str]], **top: object) -> str:
    """A rathole-style config: ``[role]`` with ``addr`` (bind_addr or remote_addr), extra
    top-level keys, and one ``[role.services.NAME]`` table per service."""
    key = "bind_addr" if role == "server" else "remote_addr"
    lines = [f"[{role}]", f"{key} = {json.dumps(addr)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in top.items()]
    for name, fields in services.items():
        lines.append(f"[{role}.services.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 16))
        if not chunk:
            raise ConnectionError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def echo_check(port: int, payload: bytes, timeout: float = 5.0) -> bool:
    """One visitor: send ``payload``, read the same number of bytes back, close; False on any
    socket error. It never half-closes, so it also works over WebSocket."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            writer = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
            writer.start()
            echoed = recv_exact(sock, len(payload))
            writer.join(timeout)
            return echoed == payload
    except OSError:
        return False


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
