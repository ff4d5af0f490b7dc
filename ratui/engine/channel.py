"""A connection during its handshake: await whole protocol messages, then hand the socket on.

Every transport (plain TCP, and the layered ones) delivers a connection to the engine as a
:class:`Channel`: an asyncio Protocol that buffers what arrives in a
:class:`~ratui.engine.protocol.MessageReader` so that coroutines can await whole messages. Once
the handshake is over, :meth:`Channel.detach` gives the underlying asyncio transport plus any
bytes that arrived behind the last message to :mod:`ratui.engine.forward`, which then moves
bytes with callbacks only.

A channel is read in one of two ways: a coroutine awaits a message with :meth:`Channel.receive`,
or a callback given to :meth:`Channel.watch` runs whenever bytes, an EOF or the loss arrive and
pops what it needs from :attr:`Channel.reader` itself. The second costs no task and no future,
which matters on the paths taken once per visitor (the handshake of each data channel).
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from typing import TypeVar

from .config import split_host_port
from .protocol import MessageReader

T = TypeVar("T")

#: Handshake messages are tiny; a peer that sends more than this before being forwarded is
#: not speaking the protocol.
MAX_HANDSHAKE_BUFFER = 256 * 1024


class ChannelClosed(ConnectionError):
    """The peer closed the connection (or it broke) while a message was awaited."""


class Channel(asyncio.Protocol):
    """Buffers incoming bytes and lets one coroutine at a time await a decoded message."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = MessageReader()
        self.eof = False
        self.closed = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_lost: Callable[[Channel], None] | None = None
        self._watcher: Callable[[Channel], None] | None = None

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if len(self.reader) > MAX_HANDSHAKE_BUFFER and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        # Keep the transport open: bytes that came before the EOF may still have to be
        # forwarded once this channel is handed to the relay.
        self.eof = True
        self._wake()
        self._fire_lost()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._error = exc
        self._wake()
        self._fire_lost()

    # API --------------------------------------------------------------------------------
    @property
    def peer(self) -> str:
        """The remote address as ``host:port`` (for logs and the dashboard)."""
        if self.transport is None:
            return "?"
        addr = self.transport.get_extra_info("peername")
        return format_addr(addr)

    def on_lost(self, callback: Callable[[Channel], None] | None) -> None:
        """Call ``callback(self)`` once when the peer closes or the connection breaks, unless the
        channel is detached first. An EOF counts: no peer half-closes a channel that is still
        in its handshake or idle in a pool."""
        self._on_lost = callback

    def watch(self, callback: Callable[[Channel], None] | None) -> None:
        """Call ``callback(self)`` each time bytes, an EOF or the loss of the connection arrive,
        until it is replaced or cleared (``None``). The callback reads :attr:`reader`, and
        :attr:`eof` and :attr:`closed` tell whether more can come."""
        self._watcher = callback

    @property
    def ended(self) -> bool:
        """Nothing more will arrive: the peer sent an EOF, or the connection is gone."""
        return self.closed or self.eof

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def set_nodelay(self, enabled: bool) -> None:
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(enabled))

    async def receive(self, pop: Callable[[MessageReader], T | None]) -> T:
        """Await the next message, e.g. ``await ch.receive(MessageReader.next_hello)``.

        Raises :class:`ChannelClosed` if the connection ends first and
        :class:`~ratui.engine.protocol.ProtocolError` if the bytes are not that message.
        """
        while True:
            message = pop(self.reader)
            if message is not None:
                return message
            if self.closed or self.eof:
                raise self.closed_error()
            if self.transport is not None and len(self.reader) <= MAX_HANDSHAKE_BUFFER:
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def closed_error(self) -> ChannelClosed:
        """The error for a message that can no longer come: the peer closed, or the
        connection broke."""
        detail = f": {self._error}" if self._error else ""
        return ChannelClosed(f"connection closed by {self.peer}{detail}")

    def detach(self) -> tuple[asyncio.Transport, bytes, bool]:
        """Stop being the transport's protocol; return (transport, leftover bytes, eof seen)."""
        assert self.transport is not None
        self._on_lost = self._watcher = None
        return self.transport, self.reader.take_rest(), self.eof

    def _fire_lost(self) -> None:
        if self._on_lost is not None:
            callback, self._on_lost = self._on_lost, None
            callback(self)

    def _wake(self) -> None:
        if self._watcher is not None:
            self._watcher(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def format_addr(addr: object) -> str:
    """``('1.2.3.4', 80)`` -> ``1.2.3.4:80``; ``('::1', 80, 0, 0)`` -> ``[::1]:80``."""
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr) if addr else "?"


@functools.lru_cache(maxsize=256)
def host_port(addr: str) -> tuple[str, int]:
    """:func:`~ratui.engine.config.split_host_port`, remembered: the same few addresses are
    connected to once per visitor."""
    return split_host_port(addr)
