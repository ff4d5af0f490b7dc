"""UDP services: every visitor's datagrams on one data channel, as rathole v0.5 frames them
(PROTOCOL.md §2.8, §3.1, §4).

Server side, :class:`UdpServer`: while the control channel is up, the service's ``bind_addr``
is a UDP socket. The first data channel gets StartForwardUdp and then carries every datagram,
each framed with the visitor's address; replies come back framed with that same address and
are sent to it from the service socket.

Client side, :class:`UdpForwarder`, one per UDP data channel: each visitor address gets its
own UDP socket connected to ``local_addr``, and what the service answers on that socket goes
back framed with the visitor's address. A mapping with no traffic either way for
``UDP_TIMEOUT`` seconds is closed, with its socket.

Where ratui does better than rathole, the bytes on the wire stay the same:

* Datagrams up to 65507 bytes (65527 over IPv6) are carried. rathole reads every datagram into
  a 2048-byte buffer, so with rathole at the other end a datagram *it reads from a socket* is
  cut to 2048 bytes (visitor datagrams when it is the server, the service's replies when it
  is the client); longer frames that it receives from ratui it forwards intact.
* A data channel whose write buffer is full drops datagrams (UDP semantics) instead of
  queueing them without bound; so does a UDP socket that cannot send. Every drop is counted in
  ``ServiceStats.udp_dropped``.
* The server keeps the second data channel it asked for as a spare. When the active one breaks
  (or sends a frame that cannot be parsed) it switches to the spare at once and asks for a
  replacement, with a backoff if channels keep dying young. rathole leaves the service dead
  until the client reconnects its control channel.
* A frame whose payload is too big for any UDP socket is dropped with a log line, the channel
  stays up. A frame that cannot be parsed ends that data channel, with one log line.
* An ICMP "port unreachable" from the local service does not tear the visitor's mapping down.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import Protocol

from .channel import Channel, format_addr
from .config import ClientServiceConfig, ServerServiceConfig, split_host_port
from .protocol import (
    DataCmd,
    ProtocolError,
    UdpFrameDecoder,
    UdpPacket,
    encode_data_cmd,
    encode_udp_packet,
)
from .state import EngineState, EventKind, Level, ServiceStats, VisitorRecord

log = logging.getLogger("ratui.udp")

UDP_POOL_SIZE = 2  # data channels a server asks for when a UDP client authenticates (rathole)
UDP_TIMEOUT = 60.0  # seconds a visitor mapping lives without traffic (rathole's constant)
UDP_MAX_DATAGRAM_V4 = 65507  # largest payload a UDP socket can send over IPv4
UDP_MAX_DATAGRAM_V6 = 65527  # ... and over IPv6 (no jumbograms)
#: A data channel with more than this many bytes waiting to be written drops datagrams.
CHANNEL_BUFFER_LIMIT = 1 << 20
#: A UDP socket with more than this many bytes waiting to be sent drops datagrams.
SOCKET_BUFFER_LIMIT = 256 << 10
#: Server: receive buffer asked for on the service socket, to ride out bursts (the kernel
#: caps it at net.core.rmem_max).
SERVICE_RCVBUF = 1 << 20
#: Server: bytes of visitor datagrams held while no data channel is up (then dropped).
PENDING_LIMIT = 256 << 10
#: Server: visitor addresses tracked one by one (stats records); more share one record.
MAX_VISITORS = 65536
#: Client: visitor sockets per data channel; datagrams from more visitors are dropped, so
#: a flood of source addresses cannot use up the process's file descriptors.
MAX_MAPPINGS = 16384
#: Server: idle data channels kept as spares beyond the active one.
MAX_SPARE_CHANNELS = 2
#: Server: a data channel that dies younger than this makes the next request wait (backoff).
YOUNG_CHANNEL = 5.0
MAX_REQUEST_DELAY = 30.0
#: Datagrams taken from a data channel before reading it pauses for one loop iteration.
READ_BUDGET = 128
#: Client: datagrams read from one local socket per readiness callback (fairness).
READ_BATCH = 64
#: Repeated warnings of one kind (drops, oversized frames) are logged at most this often.
WARN_INTERVAL = 10.0

_START_UDP = encode_data_cmd(DataCmd.START_FORWARD_UDP)
_U16 = struct.Struct("<H")

Addr = tuple[str, int]


def frame_prefix(addr: Addr) -> bytes:
    """Everything of a frame for visitor ``addr`` but the payload length and the payload:
    header length, address tag, IP, port. Computed once per visitor with protocol.py's
    encoder, so that sending a datagram only appends its u16 LE length and its bytes."""
    return encode_udp_packet(UdpPacket(addr, b""))[:-2]


def sweep_interval(timeout: float) -> float:
    """How often idle mappings are looked for: a quarter of the timeout, at most 5 s."""
    return max(0.01, min(timeout / 4, 5.0))


class _Owner(Protocol):
    """What a :class:`FrameChannel` reports to: the server's or the client's UDP side."""

    def packet(self, addr: Addr, data: bytes) -> None: ...

    def channel_closed(self, channel: FrameChannel, reason: str | None) -> None: ...


class Warner:
    """Logs a repeated warning at most once per ``WARN_INTERVAL``, with the count since."""

    __slots__ = ("_emit", "_last", "_suppressed")

    def __init__(self, emit: Callable[[str, Level], None]) -> None:
        self._emit = emit
        self._last = -WARN_INTERVAL
        self._suppressed = 0

    def __call__(self, now: float, message: str) -> None:
        if now - self._last < WARN_INTERVAL:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last report)"
        self._last = now
        self._suppressed = 0
        self._emit(message, Level.WARNING)


def emit_error(state: EngineState, stats: ServiceStats, message: str, level: Level) -> None:
    """An ERROR event (and log line) about the UDP service that ``stats`` describes."""
    state.emit(EventKind.ERROR, message, level=level, service=stats.name, role=stats.role)


# ------------------------------------------------------------------------ the data channel


class FrameChannel(asyncio.Protocol):
    """A data channel after StartForwardUdp: UdpTraffic frames both ways.

    Outgoing frames are gathered during one event-loop iteration and written together (the
    receiver reads a byte stream, so rathole takes any split or merge). Once the transport
    says its buffer is full (``pause_writing``) or more than ``CHANNEL_BUFFER_LIMIT`` bytes
    wait, :meth:`send` refuses datagrams and the caller counts them as dropped.
    """

    def __init__(self, owner: _Owner, transport: asyncio.Transport) -> None:
        self.owner = owner
        self.transport = transport
        self.peer = format_addr(transport.get_extra_info("peername"))
        self.decoder = UdpFrameDecoder()
        self.loop = asyncio.get_running_loop()
        self.started_at = self.loop.time()
        self.paused = False
        self.closed = False
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush: asyncio.Handle | None = None
        self._reason: str | None = None
        self._taken = 0  # datagrams decoded since reading was last paused
        self._resume: asyncio.Handle | None = None

    def start(self, leftover: bytes, eof: bool) -> None:
        transport = self.transport
        transport.set_protocol(self)
        with contextlib.suppress(AttributeError, NotImplementedError):  # layered transports
            transport.set_write_buffer_limits(high=CHANNEL_BUFFER_LIMIT)
        if leftover:
            self.data_received(leftover)
        if self.closed:
            return
        if transport.is_closing():
            self.connection_lost(None)
        elif eof:
            self.eof_received()
            transport.close()
        else:
            transport.resume_reading()

    # sending ----------------------------------------------------------------------------
    def send(self, prefix: bytes, data: bytes) -> bool:
        """Queue one datagram from/for the visitor whose :func:`frame_prefix` is ``prefix``;
        False if it has to be dropped."""
        if self.paused or self.closed or self._out_size > CHANNEL_BUFFER_LIMIT:
            return False
        out = self._out
        out.append(prefix + _U16.pack(len(data)))
        out.append(data)
        self._out_size += len(data) + 26
        if self._flush is None:
            self._flush = self.loop.call_soon(self._write)
        return True

    def _write(self) -> None:
        self._flush = None
        out, self._out, self._out_size = self._out, [], 0
        if not self.closed and out:
            self.transport.writelines(out)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    # receiving --------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            packets = self.decoder.feed(data)
        except ProtocolError as exc:
            self.fail(f"malformed UDP frame from {self.peer}: {exc}")
            return
        packet = self.owner.packet
        for p in packets:
            packet(p.addr, p.data)
            if self.closed:
                return
        self._taken += len(packets)
        if self._taken >= READ_BUDGET and self._resume is None:
            # Let the other side's sockets have their turn before reading more (uvloop
            # would otherwise read this channel up to 32 times in one go): under overload the
            # channel backs up and the peer drops at its entry, instead of the replies being
            # lost after all the work.
            self.transport.pause_reading()
            self._resume = self.loop.call_soon(self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        self._taken = 0
        if not self.closed:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        if len(self.decoder):
            self._reason = f"{self.peer} closed the data channel in the middle of a frame"
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        for handle in (self._flush, self._resume):
            if handle is not None:
                handle.cancel()
        self._flush = self._resume = None
        self._out.clear()
        reason = self._reason or (f"{self.peer}: {exc}" if exc else None)
        self.owner.channel_closed(self, reason)

    def fail(self, reason: str) -> None:
        """Close the channel because of ``reason`` (reported once, by the owner)."""
        self._reason = reason
        self.transport.abort()
        self.connection_lost(None)

    def close(self) -> None:
        """Close without reporting to the owner (it is shutting down)."""
        self.closed = True
        for handle in (self._flush, self._resume):
            if handle is not None:
                handle.cancel()
        self._flush = self._resume = None
        self.transport.abort()


def _max_datagram(family: int) -> int:
    return UDP_MAX_DATAGRAM_V6 if family == socket.AF_INET6 else UDP_MAX_DATAGRAM_V4


# --------------------------------------------------------------------------- server side


class _Seen:
    """A visitor address the server has seen recently: its stats record, last activity and
    frame prefix."""

    __slots__ = ("last", "prefix", "record")

    def __init__(self, record: VisitorRecord, last: float, prefix: bytes) -> None:
        self.record = record
        self.last = last
        self.prefix = prefix


class _ServiceSocket(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpServer) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.owner.visitor_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.owner.send_failed(exc)


class UdpServer:
    """The server's UDP service while one control channel is up: the service socket, the
    active data channel, spare data channels and the visitors seen recently."""

    def __init__(
        self,
        state: EngineState,
        stats: ServiceStats,
        cfg: ServerServiceConfig,
        request_channel: Callable[[], None],
        timeout: float | None = None,
    ) -> None:
        self.state = state
        self.stats = stats
        self.cfg = cfg
        self.request_channel = request_channel
        self.timeout = UDP_TIMEOUT if timeout is None else timeout
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.family = socket.AF_INET
        self.max_datagram = UDP_MAX_DATAGRAM_V4
        self.active: FrameChannel | None = None
        self.spares: deque[Channel] = deque()
        self.visitors: dict[Addr, _Seen] = {}
        self.overflow: VisitorRecord | None = None
        self.pending: deque[tuple[bytes, bytes]] = deque()
        self.pending_size = 0
        self.closed = False
        self._request_delay = 0.0
        self._request_handle: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._warn_drop = Warner(self._emit)
        self._warn_size = Warner(self._emit)

    def _emit(self, message: str, level: Level = Level.INFO) -> None:
        emit_error(self.state, self.stats, message, level)

    # the service socket -----------------------------------------------------------------
    async def bind(self, host: str, port: int) -> None:
        """Bind ``host:port`` (an IPv6 socket is dual-stack, as rathole's is on Linux)."""
        infos = await self.loop.getaddrinfo(
            host or None, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
        )
        error: OSError | None = None
        for family, _, _, _, sockaddr in infos:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVICE_RCVBUF)
                sock.setblocking(False)
                sock.bind(sockaddr)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            break
        else:
            raise error or OSError(errno.EADDRNOTAVAIL, f"no address for {host}")
        try:
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda: _ServiceSocket(self), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        if self.closed:
            transport.close()
            return
        self.transport, self.sock, self.family = transport, sock, family
        self.max_datagram = _max_datagram(family)
        self._sweeper = self.loop.call_later(sweep_interval(self.timeout), self._sweep)

    def visitor_datagram(self, data: bytes, addr: tuple) -> None:
        if len(addr) != 2:
            addr = (addr[0], addr[1])  # IPv6: flowinfo and scope are not on the wire
        seen = self.visitors.get(addr)
        if seen is None:
            seen = self._open(addr)
        seen.last = self.loop.time()
        seen.record.rx += len(data)
        active = self.active
        if active is not None:
            if not active.send(seen.prefix, data):
                self._drop("the data channel is full")
        elif self.pending_size + len(data) <= PENDING_LIMIT:
            self.pending.append((seen.prefix, data))
            self.pending_size += len(data)
        else:
            self._drop("no data channel is up yet")

    def send_failed(self, exc: Exception) -> None:
        self.stats.udp_dropped += 1
        log.debug("Service %s: sending a reply failed: %s", self.cfg.name, exc)

    def _open(self, addr: Addr) -> _Seen:
        if len(self.visitors) >= MAX_VISITORS:
            # Not remembered: counted on one shared record, its frame prefix made each time.
            if self.overflow is None:
                peer = f"(visitors beyond the first {MAX_VISITORS})"
                self.overflow = self.state.open_visitor(self.stats, peer)
            return _Seen(self.overflow, self.loop.time(), frame_prefix(addr))
        record = self.state.open_visitor(self.stats, format_addr(addr))
        seen = _Seen(record, self.loop.time(), frame_prefix(addr))
        self.visitors[addr] = seen
        return seen

    def _drop(self, why: str) -> None:
        self.stats.udp_dropped += 1
        self._warn_drop(self.loop.time(), f"UDP datagrams dropped: {why}")

    # replies from the client --------------------------------------------------------------
    def packet(self, addr: Addr, data: bytes) -> None:
        """A reply for visitor ``addr`` arrived on the data channel: send it from the socket."""
        transport = self.transport
        size = len(data)
        if size > self.max_datagram:
            self.stats.udp_dropped += 1
            self._warn_size(
                self.loop.time(),
                f"dropped a {size}-byte reply for {format_addr(addr)}: larger than the "
                f"largest UDP datagram ({self.max_datagram} bytes)",
            )
            return
        if transport is None or transport.is_closing():
            self.stats.udp_dropped += 1
            return
        target = self._target(addr)
        if target is None:
            self.stats.udp_dropped += 1
            self._warn_size(
                self.loop.time(), f"cannot reply to {format_addr(addr)} from an IPv4 socket"
            )
            return
        if transport.get_write_buffer_size() > SOCKET_BUFFER_LIMIT:
            self._drop("the service socket cannot send fast enough")
            return
        seen = self.visitors.get(addr)
        if seen is None:
            seen = self._open(addr)
        seen.last = self.loop.time()
        seen.record.tx += size
        try:
            if size:
                transport.sendto(data, target)
            elif self.sock is not None:
                self.sock.sendto(b"", target)  # uvloop's sendto skips empty datagrams
        except (OSError, ValueError) as exc:
            self.send_failed(exc if isinstance(exc, OSError) else OSError(str(exc)))

    def _target(self, addr: Addr) -> Addr | None:
        """``addr`` in the service socket's family (IPv4-mapped where that is needed)."""
        host = addr[0]
        if self.family == socket.AF_INET6:
            return addr if ":" in host else ("::ffff:" + host, addr[1])
        if ":" not in host:
            return addr
        if host.startswith("::ffff:") and "." in host:
            return (host[7:], addr[1])
        return None

    # data channels ----------------------------------------------------------------------
    def add_data_channel(self, channel: Channel) -> None:
        """A data channel arrived: it carries the service if none does, else it waits."""
        if self.closed:
            channel.close()
        elif self.active is None:
            self._activate(channel)
        elif len(self.spares) < MAX_SPARE_CHANNELS:
            channel.on_lost(self._spare_lost)
            self.spares.append(channel)
            self.stats.idle_data_channels = len(self.spares)
        else:
            channel.close()

    def _spare_lost(self, channel: Channel) -> None:
        if channel in self.spares:
            self.spares.remove(channel)
        self.stats.idle_data_channels = len(self.spares)
        channel.close()

    def _activate(self, channel: Channel) -> None:
        channel.write(_START_UDP)
        transport, leftover, eof = channel.detach()
        active = FrameChannel(self, transport)
        self.active = active
        self.stats.idle_data_channels = len(self.spares)
        log.debug(
            "Service %s: UDP traffic goes over the data channel from %s", self.cfg.name, active.peer
        )
        while self.pending:
            prefix, data = self.pending.popleft()
            if not active.send(prefix, data):
                self._drop("the data channel is full")
        self.pending_size = 0
        active.start(leftover, eof)

    def channel_closed(self, channel: FrameChannel, reason: str | None) -> None:
        if channel is not self.active or self.closed:
            return
        self.active = None
        young = self.loop.time() - channel.started_at < YOUNG_CHANNEL
        if young:
            self._request_delay = min(max(0.5, self._request_delay * 2), MAX_REQUEST_DELAY)
        else:
            self._request_delay = 0.0
        if reason:
            what = f"the UDP data channel closed: {reason}"
        else:
            what = f"{channel.peer} closed the UDP data channel"
        if self.spares:
            spare = self.spares.popleft()
            spare.on_lost(None)
            self._emit(f"{what}; switching to a spare data channel", Level.WARNING)
            self._activate(spare)
        else:
            self._emit(f"{what}; asking the client for a new one", Level.WARNING)
        if self._request_handle is None:
            if self._request_delay:
                self._request_handle = self.loop.call_later(self._request_delay, self._request)
            else:
                self._request()

    def _request(self) -> None:
        self._request_handle = None
        if not self.closed:
            self.request_channel()

    # idle visitors ----------------------------------------------------------------------
    def _sweep(self) -> None:
        limit = self.loop.time() - self.timeout
        expired = [addr for addr, seen in self.visitors.items() if seen.last <= limit]
        for addr in expired:
            self.state.close_visitor(self.stats, self.visitors.pop(addr).record)
        self._sweeper = self.loop.call_later(sweep_interval(self.timeout), self._sweep)

    def close(self) -> None:
        """Stop the service: the socket, every data channel and every visitor record."""
        if self.closed:
            return
        self.closed = True
        for handle in (self._sweeper, self._request_handle):
            if handle is not None:
                handle.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.active is not None:
            self.active.close()
            self.active = None
        while self.spares:
            spare = self.spares.popleft()
            spare.on_lost(None)
            spare.close()
        self.stats.idle_data_channels = 0
        for seen in self.visitors.values():
            self.state.close_visitor(self.stats, seen.record)
        self.visitors.clear()
        if self.overflow is not None:
            self.state.close_visitor(self.stats, self.overflow)
        self.pending.clear()
        self.pending_size = 0


# --------------------------------------------------------------------------- client side


class _Mapping:
    """One visitor on the client: a UDP socket connected to ``local_addr``."""

    __slots__ = ("addr", "last", "prefix", "record", "sock")

    def __init__(self, addr: Addr, sock: socket.socket, record: VisitorRecord, now: float):
        self.addr = addr
        self.sock = sock
        self.record = record
        self.last = now
        self.prefix = frame_prefix(addr)


class UdpForwarder:
    """The client's side of one UDP data channel: a socket per visitor address."""

    def __init__(
        self,
        channel: Channel,
        cfg: ClientServiceConfig,
        state: EngineState,
        stats: ServiceStats,
        registry: set[UdpForwarder],
        timeout: float | None = None,
    ) -> None:
        self.raw = channel
        self.cfg = cfg
        self.state = state
        self.stats = stats
        self.registry = registry
        self.timeout = UDP_TIMEOUT if timeout is None else timeout
        self.loop = asyncio.get_running_loop()
        self.channel: FrameChannel | None = None
        self.family = socket.AF_INET
        self.local: tuple = ()
        self.max_datagram = UDP_MAX_DATAGRAM_V4
        self.visitors: dict[Addr, _Mapping] = {}
        self.closed = False
        self._buf = bytearray(65536)
        self._view = memoryview(self._buf)
        self._sweeper: asyncio.TimerHandle | None = None
        self._warn_drop = Warner(self._emit)
        self._warn_size = Warner(self._emit)
        self._warn_socket = Warner(self._emit)

    def _emit(self, message: str, level: Level = Level.INFO) -> None:
        emit_error(self.state, self.stats, message, level)

    async def start(self) -> None:
        """Resolve ``local_addr`` (once per data channel) and start forwarding."""
        try:
            host, port = split_host_port(self.cfg.local_addr)
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            self.raw.close()
            self.stats.last_error = f"cannot resolve {self.cfg.local_addr}: {exc}"
            self._emit(self.stats.last_error, Level.WARNING)
            return
        except BaseException:  # cancelled: the service stops
            self.raw.close()
            raise
        self.family, _, _, _, self.local = infos[0]
        self.max_datagram = _max_datagram(self.family)
        transport, leftover, eof = self.raw.detach()
        self.channel = FrameChannel(self, transport)
        self.registry.add(self)
        self._sweeper = self.loop.call_later(sweep_interval(self.timeout), self._sweep)
        log.debug("Service %s: UDP data channel forwarding to %s", self.cfg.name, self.local)
        self.channel.start(leftover, eof)

    # from the server: visitor datagrams -------------------------------------------------
    def packet(self, addr: Addr, data: bytes) -> None:
        size = len(data)
        if size > self.max_datagram:
            self.stats.udp_dropped += 1
            self._warn_size(
                self.loop.time(),
                f"dropped a {size}-byte datagram from {format_addr(addr)}: larger than the "
                f"largest UDP datagram ({self.max_datagram} bytes)",
            )
            return
        mapping = self.visitors.get(addr)
        if mapping is None:
            mapping = self._open(addr)
            if mapping is None:
                self.stats.udp_dropped += 1
                return
        mapping.last = self.loop.time()
        mapping.record.rx += size
        try:
            mapping.sock.send(data)
        except BlockingIOError:
            self.stats.udp_dropped += 1
            self._warn_drop(
                self.loop.time(),
                f"{self.cfg.local_addr} cannot take datagrams fast enough; dropping",
            )
        except OSError as exc:
            # e.g. ECONNREFUSED after an ICMP port unreachable: the service is not up (yet).
            # The mapping stays: the next datagram may find the service up.
            self.stats.udp_dropped += 1
            self._warn_socket(
                self.loop.time(), f"cannot send to {self.cfg.local_addr}: {exc.strerror or exc}"
            )

    def _open(self, addr: Addr) -> _Mapping | None:
        if len(self.visitors) >= MAX_MAPPINGS:
            self._warn_socket(
                self.loop.time(),
                f"datagrams from {format_addr(addr)} dropped: {MAX_MAPPINGS} visitors already "
                "have a socket on this data channel",
            )
            return None
        try:
            sock = socket.socket(self.family, socket.SOCK_DGRAM)
        except OSError as exc:
            self._warn_socket(self.loop.time(), f"cannot open a UDP socket: {exc}")
            return None
        try:
            sock.setblocking(False)
            sock.connect(self.local)
        except OSError as exc:
            sock.close()
            self._warn_socket(
                self.loop.time(),
                f"cannot open a UDP socket to {self.cfg.local_addr} for {format_addr(addr)}: "
                f"{exc.strerror or exc}",
            )
            return None
        record = self.state.open_visitor(self.stats, format_addr(addr))
        mapping = _Mapping(addr, sock, record, self.loop.time())
        self.visitors[addr] = mapping
        self.loop.add_reader(sock.fileno(), self._readable, mapping)
        return mapping

    # from the local service: replies ----------------------------------------------------
    def _readable(self, mapping: _Mapping) -> None:
        sock, buf, view = mapping.sock, self._buf, self._view
        channel = self.channel
        assert channel is not None
        for _ in range(READ_BATCH):
            try:
                size = sock.recv_into(buf)
            except BlockingIOError:
                return
            except OSError as exc:
                log.debug("Service %s: %s: %s", self.cfg.name, self.local, exc)
                continue
            mapping.last = self.loop.time()
            mapping.record.tx += size
            if not channel.send(mapping.prefix, bytes(view[:size])):
                self.stats.udp_dropped += 1
                self._warn_drop(self.loop.time(), "UDP replies dropped: the data channel is full")
            if self.closed:
                return

    def _sweep(self) -> None:
        limit = self.loop.time() - self.timeout
        expired = [m for m in self.visitors.values() if m.last <= limit]
        for mapping in expired:
            self._close_mapping(mapping)
            del self.visitors[mapping.addr]
        self._sweeper = self.loop.call_later(sweep_interval(self.timeout), self._sweep)

    def _close_mapping(self, mapping: _Mapping) -> None:
        self.loop.remove_reader(mapping.sock.fileno())
        mapping.sock.close()
        self.state.close_visitor(self.stats, mapping.record)

    # teardown ---------------------------------------------------------------------------
    def channel_closed(self, channel: FrameChannel, reason: str | None) -> None:
        if reason:
            self._emit(f"UDP data channel closed: {reason}", Level.WARNING)
        else:
            log.debug("Service %s: UDP data channel closed by the server", self.cfg.name)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.channel is not None:
            self.channel.close()
        else:
            self.raw.close()
        for mapping in self.visitors.values():
            self._close_mapping(mapping)
        self.visitors.clear()
        self.registry.discard(self)
