"""Plain TCP: the socket is the channel. Applies rathole's nodelay and keepalive options.

On the server the keepalive options are set once, on the listening sockets, before they
listen: Linux (and the BSDs) copy them to every socket accepted from there, so an accepted
data channel costs no system call for them. The event loop turns TCP_NODELAY on for every
socket it accepts or connects, so only ``nodelay = false`` is set per connection for it; a
client connection still gets its keepalive options, as in rathole.

Client connections go through ``[client.transport.tcp] proxy`` when it is set (``proxy.py``,
imported only then); the options are then those of the socket to the proxy, as in rathole.
"""

from __future__ import annotations

import asyncio
import socket

from ..channel import Channel, host_port
from ..config import TcpTransportConfig
from .base import LISTEN_BACKLOG, AcceptHandler, Transport


def apply_socket_options(
    sock: socket.socket | None, nodelay: bool | None, cfg: TcpTransportConfig
) -> None:
    """Set TCP_NODELAY (``None`` leaves it as it is) and keepalive (``keepalive_secs`` idle,
    ``keepalive_interval`` apart)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    real = _borrow(sock)
    try:
        if nodelay is not None:
            real.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        _keepalive(real, cfg)
    finally:
        _give_back(sock, real)


def apply_keepalive(sock: socket.socket, cfg: TcpTransportConfig) -> None:
    """Keepalive on ``sock`` (a TCP socket), ``keepalive_secs`` idle, ``keepalive_interval``
    between probes."""
    real = _borrow(sock)
    try:
        _keepalive(real, cfg)
    finally:
        _give_back(sock, real)


def _keepalive(sock: socket.socket, cfg: TcpTransportConfig) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, cfg.keepalive_secs))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, cfg.keepalive_interval))


def _borrow(sock: socket.socket) -> socket.socket:
    """A socket object for ``sock``'s descriptor. uvloop hands out a wrapper that builds a new
    socket object for every ``setsockopt``; one borrowed object serves all the options of a
    connection. Give it back with :func:`_give_back`, which leaves the descriptor open."""
    if isinstance(sock, socket.socket):
        return sock
    return socket.socket(sock.family, sock.type, sock.proto, sock.fileno())


def _give_back(sock: socket.socket, borrowed: socket.socket) -> None:
    if borrowed is not sock:
        borrowed.detach()


class TcpTransport(Transport):
    def __init__(self, cfg: TcpTransportConfig) -> None:
        self.cfg = cfg

    async def connect(self, addr: str, *, nodelay: bool | None = None) -> Channel:
        host, port = host_port(addr)
        wanted = self.cfg.nodelay if nodelay is None else nodelay
        if self.cfg.proxy is None:
            loop = asyncio.get_running_loop()
            transport, channel = await loop.create_connection(Channel, host, port)
            # The event loop turned TCP_NODELAY on already: only "off" needs a system call.
            apply_socket_options(
                transport.get_extra_info("socket"), None if wanted else False, self.cfg
            )
        else:
            from .proxy import open_connection  # only configs with a proxy need its code

            transport, channel = await open_connection(Channel, host, port, self.cfg.proxy)
            apply_socket_options(transport.get_extra_info("socket"), wanted, self.cfg)
        assert isinstance(channel, Channel)
        return channel

    async def listen(self, addr: str, on_channel: AcceptHandler) -> asyncio.AbstractServer:
        host, port = host_port(addr)
        nodelay_off = not self.cfg.nodelay

        class _Accepted(Channel):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                if nodelay_off:
                    self.set_nodelay(False)
                on_channel(self)

        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            _Accepted,
            host or None,
            port,
            reuse_address=True,
            backlog=LISTEN_BACKLOG,
            start_serving=False,  # the sockets listen only once the options are set
        )
        for sock in server.sockets:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                apply_keepalive(sock, self.cfg)
        await server.start_serving()
        return server
