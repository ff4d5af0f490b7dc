"""The one interface the server and client use to open and accept channels.

A transport kind (plain TCP here; Noise, TLS and WebSocket layer on top of it) turns a socket
into a :class:`~ratui.engine.channel.Channel` whose asyncio transport carries plaintext
protocol bytes. The server and the client never ask which kind they run on.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable

from ..channel import Channel

#: Listen backlog of every port ratui serves (rathole's too); Python's default of 100 made a
#: burst of 1,000 visitors wait a second for the kernel to accept them.
LISTEN_BACKLOG = 1024

#: Called with each accepted channel, from the event loop, once the transport's own
#: handshake (if any) is done.
AcceptHandler = Callable[[Channel], None]


class TransportSetupError(OSError):
    """The transport cannot run with this config (a missing key, an unreadable PKCS#12).

    An ``OSError`` so that the engine reports it where it reports a port that cannot be bound
    (server) or a connection that cannot be opened (client). ``str()`` is the whole message.
    """


class Transport(ABC):
    """Opens channels to a server (client side) and accepts them (server side)."""

    def check_server(self) -> None:
        """Raise :class:`OSError` with a clear message if this config cannot serve (a key or
        identity the server side needs is missing); called before anything starts."""
        return None

    def check_client(self) -> None:
        """The same for the client side."""
        return None

    @abstractmethod
    async def connect(self, addr: str, *, nodelay: bool | None = None) -> Channel:
        """Open a channel to ``host:port``; ``nodelay`` overrides the transport setting."""

    @abstractmethod
    async def listen(self, addr: str, on_channel: AcceptHandler) -> asyncio.AbstractServer:
        """Accept channels on ``host:port`` until the returned server is closed."""
