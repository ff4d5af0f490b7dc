"""The TCP hot path: move bytes between a visitor and a data channel with callbacks only.

Two small Protocols, one per connection, write what they receive straight into the other
connection's transport. Flow control follows the transports' own watermarks: when one side's
write buffer passes its high-water mark asyncio calls ``pause_writing`` on that side's
protocol, which pauses reading on the other side until the buffer drains. Memory per visitor
therefore stays bounded by two write buffers, however slow either end is.

A half-close (EOF) is passed on with ``write_eof`` so request/response protocols that shut down
their sending side keep working, and the pair is closed once both directions are finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .state import VisitorRecord

#: (asyncio transport, bytes already read behind the handshake, EOF already seen)
Detached = tuple[asyncio.Transport, bytes, bool]


class _Pump(asyncio.Protocol):
    """Receives on its own transport and writes into its peer's transport."""

    __slots__ = ("eof", "lost", "pair", "peer", "record", "transport")

    def __init__(self, transport: asyncio.Transport, record: VisitorRecord, pair: Relay) -> None:
        self.transport = transport
        self.record = record
        self.pair = pair
        self.peer: _Pump = self
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover
        self.transport = transport  # type: ignore[assignment]  # set_protocol never calls this

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.peer.transport.resume_reading()

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer.transport
        if self.peer.eof or not peer.can_write_eof():
            self.pair.close()
            return False
        peer.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.peer.transport.close()
        self.pair.lost()


class _Inbound(_Pump):
    """The visitor's direction: bytes that go towards the local service."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)
        self.record.rx += len(data)


class _Outbound(_Pump):
    """The local service's replies, on their way back to the visitor."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)
        self.record.tx += len(data)


class Relay:
    """Both halves of one forwarded visitor. :meth:`start` hands the two transports to the
    pumps; ``on_done(relay)`` is called once, when both connections are closed."""

    __slots__ = ("_sides", "inbound", "on_done", "outbound", "record")

    def __init__(
        self,
        inbound: Detached,
        outbound: Detached,
        record: VisitorRecord,
        on_done: Callable[[Relay], None],
    ) -> None:
        self.record = record
        self.on_done: Callable[[Relay], None] | None = on_done
        self.inbound = _Inbound(inbound[0], record, self)
        self.outbound = _Outbound(outbound[0], record, self)
        self.inbound.peer, self.outbound.peer = self.outbound, self.inbound
        self._sides = ((self.inbound, inbound), (self.outbound, outbound))

    def start(self) -> None:
        for pump, (transport, _, _) in self._sides:
            transport.set_protocol(pump)
        for pump, (transport, leftover, eof) in self._sides:
            if leftover:
                pump.data_received(leftover)
            if transport.is_closing():
                pump.connection_lost(None)
            elif eof:
                pump.eof_received()
            else:
                transport.resume_reading()
        self._sides = ()

    def close(self) -> None:
        self.inbound.transport.close()
        self.outbound.transport.close()

    def lost(self) -> None:
        if self.inbound.lost and self.outbound.lost and self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(self)
