"""``ratui --demo``: a whole tunnel on loopback, for a first look without any config.

One process runs a server and a client that talk over 127.0.0.1, plus a tiny built-in web
page standing in for the service at home. ``curl`` on the printed public address goes
visitor -> ratui server -> ratui client -> the page, and back.
"""

from __future__ import annotations

import asyncio
import secrets
import socket

from .engine.config import Config, parse_config

SERVICE_NAME = "demo-web"

PAGE = """\
Hello from ratui!

This page is served by the demo's built-in web service on {local}.
You reached it through a ratui tunnel:

  you -> {public} (ratui server, public side)
      -> {control} (control and data channels)
      -> ratui client -> {local} (the service "at home")

To stop the demo, press q in ratui's dashboard, or Ctrl-C where it runs without one.
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_config() -> Config:
    """A server + client config pair in one file, on fresh loopback ports."""
    token = secrets.token_urlsafe(24)
    control, public, local = (f"127.0.0.1:{free_port()}" for _ in range(3))
    text = f"""
[server]
bind_addr = "{control}"
[server.services.{SERVICE_NAME}]
bind_addr = "{public}"
token = "{token}"

[client]
remote_addr = "{control}"
[client.services.{SERVICE_NAME}]
local_addr = "{local}"
token = "{token}"
"""
    return parse_config(text, source="<demo>")


class _PageProtocol(asyncio.Protocol):
    """Answers one HTTP request with the demo page, then closes."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.request = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.request += data
        if b"\r\n\r\n" in self.request or len(self.request) > 65536:
            assert self.transport is not None
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            self.transport.write(head + self.body)
            self.transport.close()


async def serve_page(config: Config) -> asyncio.AbstractServer:
    """Start the built-in page on the client service's ``local_addr``."""
    assert config.server is not None and config.client is not None
    local = config.client.services[SERVICE_NAME].local_addr
    public = config.server.services[SERVICE_NAME].bind_addr
    body = PAGE.format(local=local, public=public, control=config.server.bind_addr).encode()
    host, _, port = local.rpartition(":")
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _PageProtocol(body), host, int(port))


def public_url(config: Config) -> str:
    assert config.server is not None
    return f"http://{config.server.services[SERVICE_NAME].bind_addr}/"
