"""The TCP hot path: move bytes between a visitor and a data channel, on callbacks only.

Two small Protocols, one per connection, write what they receive straight into the other
connection's transport. Flow control follows the transports' own watermarks: when one side's
write buffer passes its high-water mark asyncio calls ``pause_writing`` on that side's
protocol, which pauses reading on the other side until the buffer drains. Memory per visitor
therefore stays bounded by two write buffers, however slow either end is.

A half-close (EOF) is passed on with ``write_eof`` so request/response protocols that shut down
their sending side keep working, and the pair is closed once both directions are finished.

Bulk transfers switch to zero-copy. On Linux, once one direction of a pair whose two ends are
plain TCP sockets has carried :data:`SPLICE_AFTER` bytes, the pair leaves its transports and
moves on with ``splice(2)`` (still callbacks, now on the raw sockets): socket -> pipe -> socket
inside the kernel, so the bytes are never copied into Python (the two copies through user space
were about two thirds of the relay's CPU, the Python calls a few percent). Short request/response
visitors never pay for the switch, and layered transports (Noise, TLS, WebSocket), which
must see the plaintext, always stay on callbacks. Spliced, each direction reads only while its
pipe is empty, so the pipe (at most :data:`PIPE_SIZE` bytes) replaces the write buffer in the
flow control; pipes are pooled and held only while they hold data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Callable

from .state import VisitorRecord

#: (asyncio transport, bytes already read behind the handshake, EOF already seen)
Detached = tuple[asyncio.Transport, bytes, bool]

#: Bytes one direction carries on callbacks before its pair moves to splice(2).
SPLICE_AFTER = 1 << 20
#: Largest splice per call, and the capacity asked for each pipe (Linux allows 1 MiB unprivileged).
PIPE_SIZE = 1 << 20
_RETRY = 1 << 16  # a write buffer was not empty: look again after this many more bytes
_NEVER = 1 << 62
_IDLE_PIPES = 8  # empty pipes kept for the next transfers (two descriptors each)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


def _plain_transports() -> tuple[type, ...]:
    """Transport classes whose socket carries the stream as is, i.e. may be spliced."""
    if not hasattr(os, "splice") or sys.platform != "linux":
        return ()
    kinds: list[type] = []
    with contextlib.suppress(ImportError, AttributeError):
        from asyncio.selector_events import _SelectorSocketTransport

        kinds.append(_SelectorSocketTransport)
    with contextlib.suppress(ImportError, AttributeError):
        from uvloop.loop import TCPTransport

        kinds.append(TCPTransport)
    return tuple(kinds)


_PLAIN = _plain_transports()


class _Pump(asyncio.Protocol):
    """Receives on its own transport and writes into its peer's transport."""

    __slots__ = ("budget", "eof", "lost", "pair", "peer", "record", "transport")

    def __init__(self, transport: asyncio.Transport, record: VisitorRecord, pair: Relay) -> None:
        self.transport = transport
        self.record = record
        self.pair = pair
        self.peer: _Pump = self
        self.budget = _NEVER  # bytes left before the pair tries to splice
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
        self.budget -= len(data)
        if self.budget < 0:
            self.pair.splice(self)


class _Outbound(_Pump):
    """The local service's replies, on their way back to the visitor."""

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self.peer.transport.write(data)
        self.record.tx += len(data)
        self.budget -= len(data)
        if self.budget < 0:
            self.pair.splice(self)


class Relay:
    """Both halves of one forwarded visitor. :meth:`start` hands the two transports to the
    pumps; ``on_done(relay)`` is called once, when both connections are closed."""

    __slots__ = ("_sides", "_spliced", "inbound", "on_done", "outbound", "record")

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
        self._spliced: tuple[_Spliced, _Spliced] | None = None

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
        if type(self.inbound.transport) in _PLAIN and type(self.outbound.transport) in _PLAIN:
            self.inbound.budget = self.outbound.budget = SPLICE_AFTER
        self._sides = ()

    def close(self) -> None:
        if self._spliced is not None:
            self._close_spliced()
            return
        self.inbound.transport.close()
        self.outbound.transport.close()

    def lost(self) -> None:
        if self.inbound.lost and self.outbound.lost and self.on_done is not None:
            callback, self.on_done = self.on_done, None
            callback(self)

    # zero-copy --------------------------------------------------------------------------
    def splice(self, pump: _Pump) -> None:
        """Leave the transports for splice(2), once nothing waits in either write buffer."""
        ends = (self.inbound, self.outbound)
        if self._spliced is not None or any(p.transport.is_closing() for p in ends):
            self.inbound.budget = self.outbound.budget = _NEVER
            return
        if any(p.transport.get_write_buffer_size() for p in ends):
            pump.budget = _RETRY
            return
        self.inbound.budget = self.outbound.budget = _NEVER
        socks: list[socket.socket] = []
        try:
            for p in ends:
                fd = os.dup(p.transport.get_extra_info("socket").fileno())
                try:
                    socks.append(socket.socket(fileno=fd))
                except OSError:
                    os.close(fd)
                    raise
        except OSError:  # out of descriptors: stay on callbacks
            for sock in socks:
                sock.close()
            return
        for p in ends:
            p.transport.pause_reading()
            p.transport.set_protocol(asyncio.Protocol())  # its connection_lost is not ours
            p.transport.close()  # closes its descriptor only: the duplicate keeps the socket
        visitor, local = socks
        loop = asyncio.get_running_loop()
        self._spliced = (
            _Spliced(self, loop, visitor, local, inbound=True),
            _Spliced(self, loop, local, visitor, inbound=False),
        )
        self._spliced[0].start(self.inbound.eof)
        self._spliced[1].start(self.outbound.eof)

    def _direction_done(self) -> None:
        if self._spliced and all(d.done for d in self._spliced):
            self._close_spliced()

    def _close_spliced(self) -> None:
        spliced, self._spliced = self._spliced or (), ()  # once: descriptors get reused
        for direction in spliced:
            direction.stop()
        for direction in spliced:
            direction.src.close()
        self.inbound.lost = self.outbound.lost = True
        self.lost()


class _Spliced:
    """One direction after the switch: ``src`` socket -> pipe -> ``dst`` socket, in the
    kernel. Bytes are counted when they leave ``src``, as on the callback path."""

    __slots__ = (
        "done",
        "dst",
        "dst_fd",
        "eof",
        "inbound",
        "loop",
        "pending",
        "pipe",
        "record",
        "relay",
        "src",
        "src_fd",
        "stalled",
    )

    def __init__(
        self,
        relay: Relay,
        loop: asyncio.AbstractEventLoop,
        src: socket.socket,
        dst: socket.socket,
        inbound: bool,
    ) -> None:
        self.relay = relay
        self.loop = loop
        self.record = relay.record
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.inbound = inbound
        self.pipe: tuple[int, int] | None = None
        self.pending = 0  # bytes in the pipe
        self.stalled = False  # waiting for dst to take the pipe's bytes; src not read
        self.eof = False
        self.done = False

    def start(self, eof: bool) -> None:
        if eof:  # passed on already, but the transport's shutdown may not have run: again
            self.eof = True
            self.flush()
        else:
            self.loop.add_reader(self.src_fd, self.readable)

    def readable(self) -> None:
        try:
            pipe = self.pipe = self.pipe or _take_pipe()
            n = os.splice(self.src_fd, pipe[1], PIPE_SIZE, flags=_FLAGS)
        except BlockingIOError:
            n = -1
        except OSError:  # a reset (or no pipe to be had): as a lost connection on callbacks
            self.relay._close_spliced()
            return
        if n > 0:
            self.pending += n
            if self.inbound:
                self.record.rx += n
            else:
                self.record.tx += n
        elif n == 0:
            self.eof = True
            self.loop.remove_reader(self.src_fd)
        self.flush()

    def flush(self) -> None:
        """Empty the pipe into ``dst``; also ``dst``'s writer callback while stalled."""
        if self.pending:
            assert self.pipe is not None
            try:
                self.pending -= os.splice(self.pipe[0], self.dst_fd, self.pending, flags=_FLAGS)
            except BlockingIOError:
                pass
            except OSError:
                self.relay._close_spliced()
                return
            if self.pending:
                if not self.stalled:
                    self.stalled = True
                    self.loop.remove_reader(self.src_fd)
                    self.loop.add_writer(self.dst_fd, self.flush)
                return
        if self.stalled:
            self.stalled = False
            self.loop.remove_writer(self.dst_fd)
            if not self.eof:
                self.loop.add_reader(self.src_fd, self.readable)
        if self.pipe is not None:
            _give_pipe(self.pipe)
            self.pipe = None
        if self.eof and not self.done:
            self.done = True
            with contextlib.suppress(OSError):
                self.dst.shutdown(socket.SHUT_WR)
            self.relay._direction_done()

    def stop(self) -> None:
        """Stop watching both sockets and drop the pipe (with whatever it still holds)."""
        self.done = True
        self.loop.remove_reader(self.src_fd)
        if self.stalled:
            self.loop.remove_writer(self.dst_fd)
        if self.pipe is not None:
            if self.pending:
                os.close(self.pipe[0])
                os.close(self.pipe[1])
            else:
                _give_pipe(self.pipe)
            self.pipe = None


_pipes: list[tuple[int, int]] = []  # empty pipes, ready for the next direction that reads


def _take_pipe() -> tuple[int, int]:
    if _pipes:
        return _pipes.pop()
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    with contextlib.suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


def _give_pipe(pipe: tuple[int, int]) -> None:
    if len(_pipes) < _IDLE_PIPES:
        _pipes.append(pipe)
    else:
        os.close(pipe[0])
        os.close(pipe[1])
