"""Plain TCP: the socket is the channel. Applies rathole's nodelay and keepalive options.

Client connections go through ``[client.transport.tcp] proxy`` when it is set (``proxy.py``);
the options are then those of the socket to the proxy, as in rathole.
"""

from __future__ import annotations

import asyncio
import socket

from ..channel import Channel
from ..config import TcpTransportConfig, split_host_port
from .base import LISTEN_BACKLOG, AcceptHandler, Transport
from .proxy import open_connection


def apply_socket_options(
    sock: socket.socket | None, nodelay: bool, cfg: TcpTransportConfig
) -> None:
    """Set TCP_NODELAY and keepalive (``keepalive_secs`` idle, ``keepalive_interval`` apart)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, cfg.keepalive_secs))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, cfg.keepalive_interval))


class TcpTransport(Transport):
    def __init__(self, cfg: TcpTransportConfig) -> None:
        self.cfg = cfg

    async def connect(self, addr: str, *, nodelay: bool | None = None) -> Channel:
        host, port = split_host_port(addr)
        transport, channel = await open_connection(Channel, host, port, self.cfg.proxy)
        assert isinstance(channel, Channel)
        apply_socket_options(
            transport.get_extra_info("socket"),
            self.cfg.nodelay if nodelay is None else nodelay,
            self.cfg,
        )
        return channel

    async def listen(self, addr: str, on_channel: AcceptHandler) -> asyncio.AbstractServer:
        host, port = split_host_port(addr)
        cfg = self.cfg

        class _Accepted(Channel):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                apply_socket_options(transport.get_extra_info("socket"), cfg.nodelay, cfg)
                on_channel(self)

        loop = asyncio.get_running_loop()
        return await loop.create_server(
            _Accepted, host or None, port, reuse_address=True, backlog=LISTEN_BACKLOG
        )
