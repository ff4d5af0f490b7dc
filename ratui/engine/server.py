"""The server role: accept control and data channels on one port, expose each service's port
while its client is connected, and pair every visitor with a data channel (PROTOCOL.md §1, §4).

Everything here runs on callbacks, the handshake of each new channel included (no task per
connection: a data channel arrives once per visitor). Where rathole waits forever for a first
message, ratui gives a connection ``HANDSHAKE_TIMEOUT`` seconds to say Hello and Auth, and
holds at most ``MAX_PENDING_HANDSHAKES`` such connections (the oldest goes first), which keeps
silent or half-open peers from holding memory. A control channel gets a TCP user timeout, so
that a client that vanished without closing is noticed although the server never reads from
it. Data channels get none: a visitor whose reader pauses (a paused download) leaves its data
channel at a zero window, which a user timeout would abort; keepalive finds a vanished client
on idle ones. The bytes on the wire are unchanged.

Services that share a port by host name (ratui extension) are listened for by a
:class:`~ratui.engine.shared_listener.SharedPort` instead of a listener of their own; a visitor
it routes then queues and is forwarded like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from .backoff import listen_backoff
from .channel import Channel
from .config import (
    DEFAULT_HEARTBEAT_INTERVAL,
    ServerConfig,
    ServerServiceConfig,
    ServiceType,
    split_host_port,
)
from .forward import Relay
from .protocol import (
    Ack,
    ControlChannelHello,
    ControlCmd,
    DataCmd,
    MessageReader,
    ProtocolError,
    auth_digest,
    encode_ack,
    encode_control_cmd,
    encode_data_cmd,
    encode_hello,
    service_digest,
)
from .proxy_header import encode as encode_proxy_header
from .routing import Match
from .shared_listener import Pending, SharedPort, Sniffer
from .state import ControlState, EngineState, EventKind, Level, Role, VisitorRecord
from .transport.base import LISTEN_BACKLOG, Transport
from .udp import UDP_POOL_SIZE, UdpServer, Warner

log = logging.getLogger("ratui.server")

TCP_POOL_SIZE = 8  # data channels requested as soon as a client authenticates
MAX_WAITING_VISITORS = 2048  # visitors queued for a data channel, per service
MAX_IDLE_DATA_CHANNELS = 4096  # idle data channels kept per service
HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection has for its Hello (and Auth)
#: Connections that have not finished their Hello (and Auth) yet, all services together. When
#: one more arrives, the oldest of them is closed: a flood of silent or half-open connections
#: then costs bounded memory and cannot lock out a real client, whose handshake takes one
#: round trip. Twice the listen backlog, so a full accept queue of genuine data channels
#: (a burst of visitors) never evicts its own members.
MAX_PENDING_HANDSHAKES = 2 * LISTEN_BACKLOG
#: Floor of the TCP_USER_TIMEOUT on an authenticated control channel (see
#: :func:`control_user_timeout`).
MIN_CONTROL_USER_TIMEOUT = 5.0

_CREATE = encode_control_cmd(ControlCmd.CREATE_DATA_CHANNEL)
_HEARTBEAT = encode_control_cmd(ControlCmd.HEARTBEAT)
_START_TCP = encode_data_cmd(DataCmd.START_FORWARD_TCP)
_M = TypeVar("_M")


class Server:
    """Listens on ``[server] bind_addr`` and runs every configured service."""

    def __init__(self, cfg: ServerConfig, state: EngineState, transport: Transport) -> None:
        self.cfg = cfg
        self.state = state
        self.transport = transport
        self.services: dict[bytes, ServerService] = {}
        self.sessions: dict[bytes, ControlChannel] = {}
        #: Ports shared by routed services (ratui extension), by (host, port), and their
        #: visitors being sniffed (or drained after a refusal): a bound of their own, as
        #: large as that of connections in their handshake.
        self.shared: dict[tuple[str, int], SharedPort] = {}
        self.sniffing = Pending(MAX_PENDING_HANDSHAKES, Warner(self._flood_warning))
        self._listener: asyncio.AbstractServer | None = None
        #: Connections in their handshake, oldest first, each with its deadline (loop time).
        self._handshakes: dict[Channel, float] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the first accept's
        self._warn_flood = Warner(self._flood_warning)
        for svc in cfg.services.values():
            self.add_service(svc)

    async def start(self) -> None:
        self._listener = await self.transport.listen(self.cfg.bind_addr, self._accept)
        log.info("Listening at %s", self.cfg.bind_addr)

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for channel in list(self._handshakes):
            self._handshake_done(channel)
            channel.abort()
        for service in list(self.services.values()):
            self.remove_service(service.cfg.name)
        self.sniffing.close()

    # services ---------------------------------------------------------------------------
    def add_service(self, cfg: ServerServiceConfig) -> None:
        """Start serving ``cfg``; an existing service of that name is replaced and its client
        has to reconnect (as rathole does for a changed service)."""
        self.remove_service(cfg.name)
        self.warn_same_address(cfg)
        service = ServerService(cfg, self)
        self.services[service.digest] = service

    def remove_service(self, name: str) -> None:
        service = self.services.pop(service_digest(name), None)
        if service is not None:
            service.stop()
            if service.shared is not None:
                service.shared.remove(name)
                if service.shared.empty:
                    del self.shared[split_host_port(service.shared.addr)]

    def shared_port(self, cfg: ServerServiceConfig, warn: Warner) -> SharedPort:
        """The shared port of a routed service's ``bind_addr``, with its routes added;
        ``warn`` reports the visitors refused for the service."""
        key = split_host_port(cfg.bind_addr)
        port = self.shared.get(key)
        if port is None:
            port_warn = Warner(self._route_warning)
            port = self.shared[key] = SharedPort(cfg.bind_addr, self.sniffing, port_warn)
        port.add(cfg.name, cfg.routes, warn)
        return port

    def warn_same_address(self, cfg: ServerServiceConfig) -> None:
        """Services without routes on one address load, as in rathole, but only one of them
        can listen at a time: whichever client connects first; the others retry."""
        place = (cfg.type, split_host_port(cfg.bind_addr))
        others = [
            s.cfg.name
            for s in self.services.values()
            if s.cfg.name != cfg.name and (s.cfg.type, split_host_port(s.cfg.bind_addr)) == place
        ]
        if others and not cfg.routes.any:
            self.state.emit(
                EventKind.ERROR,
                f"{cfg.bind_addr} is also the bind_addr of {', '.join(others)}: only one of "
                "these services can listen at a time (the others retry until it stops)",
                level=Level.WARNING,
                service=cfg.name,
                role=Role.SERVER,
            )

    def _route_warning(self, message: str, level: Level) -> None:
        self.state.emit(EventKind.ERROR, message, level=level, role=Role.SERVER)

    # accepting channels -----------------------------------------------------------------
    # A handshake runs on callbacks (Channel.watch): no task and no timer per connection. The
    # pending connections sit in ``_handshakes`` in order of arrival with their deadlines, so
    # one timer, set for the oldest deadline, is enough to expire them all.
    def _accept(self, channel: Channel) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if len(self._handshakes) >= MAX_PENDING_HANDSHAKES:
            evicted = next(iter(self._handshakes))
            self._handshake_done(evicted)
            evicted.abort()
            self._warn_flood(
                loop.time(),
                f"{MAX_PENDING_HANDSHAKES} connections are in their handshake at once: closed "
                f"the oldest, from {evicted.peer}",
            )
        self._handshakes[channel] = loop.time() + HANDSHAKE_TIMEOUT
        if self._expiry is None:
            self._expiry = loop.call_at(self._handshakes[channel], self._expire)
        channel.watch(self._on_hello)
        self._on_hello(channel)  # bytes may have come with the connection (layered transports)

    def _handshake_done(self, channel: Channel) -> None:
        """The channel's handshake is over, whichever way it ended."""
        channel.watch(None)
        self._handshakes.pop(channel, None)

    def _expire(self) -> None:
        """Drop every connection whose deadline passed; set the timer for the next one."""
        self._expiry = None
        now = asyncio.get_running_loop().time()
        while self._handshakes:
            channel, deadline = next(iter(self._handshakes.items()))
            if deadline > now:
                self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)
                return
            self._bad_peer(
                channel,
                f"{channel.peer} sent no complete handshake within {HANDSHAKE_TIMEOUT:g} s",
            )

    def _flood_warning(self, message: str, level: Level) -> None:
        self.state.emit(EventKind.BAD_PEER, message, level=level, role=Role.SERVER)

    def _next(self, channel: Channel, read: Callable[[MessageReader], _M | None]) -> _M | None:
        """The channel's next handshake message; None while it is not all here, or when the
        peer was dropped for it (garbage, or the connection ended halfway)."""
        try:
            message = read(channel.reader)
        except ProtocolError as exc:
            self._bad_peer(channel, f"{channel.peer} does not speak the protocol: {exc}")
            return None
        if message is None and channel.ended:
            self._closed_in_handshake(channel)
        return message

    def _on_hello(self, channel: Channel) -> None:
        hello = self._next(channel, MessageReader.next_hello)
        if hello is None:
            return
        if isinstance(hello, ControlChannelHello):
            self._control_handshake(channel, hello.digest)
            return
        self._handshake_done(channel)
        self._data_channel(channel, hello.session_key)

    def _closed_in_handshake(self, channel: Channel) -> None:
        pending = len(channel.reader)
        if pending:
            self._bad_peer(
                channel,
                f"{channel.peer} closed the connection in the middle of a handshake message "
                f"({pending} bytes of it sent)",
            )
        else:
            self._handshake_done(channel)
            log.debug("%s closed during the handshake", channel.peer)
            channel.close()

    def _bad_peer(self, channel: Channel, message: str) -> None:
        self._handshake_done(channel)
        channel.abort()
        self.state.emit(EventKind.BAD_PEER, message, level=Level.WARNING, role=Role.SERVER)

    def _control_handshake(self, channel: Channel, digest: bytes) -> None:
        """Answer a control channel's Hello with a nonce, then wait for its Auth."""
        nonce = secrets.token_bytes(32)
        channel.write(encode_hello(ControlChannelHello(nonce)))
        service = self.services.get(digest)
        if service is None:
            self._handshake_done(channel)
            channel.write(encode_ack(Ack.SERVICE_NOT_EXIST))
            channel.close()
            self.state.emit(
                EventKind.UNKNOWN_SERVICE,
                f"{channel.peer} asked for a service that does not exist here "
                f"(digest {digest.hex()[:16]}...)",
                level=Level.WARNING,
                role=Role.SERVER,
            )
            return
        expected = auth_digest(service.cfg.token, nonce)
        channel.watch(lambda ch: self._on_auth(ch, service, expected))
        self._on_auth(channel, service, expected)

    def _on_auth(self, channel: Channel, service: ServerService, session_key: bytes) -> None:
        auth = self._next(channel, MessageReader.next_auth)
        if auth is None:
            return
        self._handshake_done(channel)
        if not hmac.compare_digest(auth.digest, session_key):
            channel.write(encode_ack(Ack.AUTH_FAILED))
            channel.close()
            service.stats.auth_failures += 1
            self.state.emit(
                EventKind.AUTH_FAILED,
                f"{channel.peer} sent an incorrect token",
                level=Level.WARNING,
                service=service.cfg.name,
                role=Role.SERVER,
            )
            return
        channel.set_nodelay(True)  # control channels always, as rathole (PROTOCOL.md §3.4)
        channel.write(encode_ack(Ack.OK))
        service.attach(channel, session_key)

    def _data_channel(self, channel: Channel, session_key: bytes) -> None:
        control = self.sessions.get(session_key)
        if control is None:
            self._bad_peer(
                channel, f"data channel from {channel.peer} has an incorrect session key"
            )
            return
        if control.service.cfg.nodelay is not None:
            channel.set_nodelay(control.service.cfg.nodelay)
        control.add_data_channel(channel)


class ServerService:
    """One ``[server.services.NAME]``: its stats, and the control channel of its client."""

    def __init__(self, cfg: ServerServiceConfig, server: Server) -> None:
        self.cfg = cfg
        self.server = server
        self.digest = service_digest(cfg.name)
        self.stats = server.state.register(Role.SERVER, cfg.name, str(cfg.type), cfg.bind_addr)
        self.stats.set_state(ControlState.WAITING)
        self.stats.routes = cfg.routes.labels()
        self.warn_refused = Warner(self._warn)
        #: The port this service shares with others, if it is routed (ratui extension).
        self.shared = server.shared_port(cfg, self.warn_refused) if cfg.routes.any else None
        self.control: ControlChannel | None = None
        self.relays: set[Relay] = set()

    def _warn(self, message: str, level: Level) -> None:
        self.server.state.emit(
            EventKind.ERROR, message, level=level, service=self.cfg.name, role=Role.SERVER
        )

    def attach(self, channel: Channel, session_key: bytes) -> None:
        """A client authenticated: it replaces any earlier one (the newest client wins)."""
        if self.control is not None:
            self.control.close(f"replaced by a newer client from {channel.peer}")
        self.control = ControlChannel(self, channel, session_key)
        self.control.start()

    def detached(self, control: ControlChannel) -> None:
        if self.control is control:
            self.control = None
            self.stats.peer = None
            self.stats.set_state(ControlState.WAITING)

    def forward_done(self, relay: Relay) -> None:
        self.relays.discard(relay)
        self.server.state.close_visitor(self.stats, relay.record)

    def stop(self) -> None:
        if self.control is not None:
            self.control.close("service stopped", Level.INFO)
        for relay in list(self.relays):
            relay.close()
        self.stats.set_state(ControlState.STOPPED)
        self.server.state.unregister(self.stats)


class _Visitor(Channel):
    """A visitor waiting for a data channel. What it sends meanwhile is buffered (bounded by
    :data:`~ratui.engine.channel.MAX_HANDSHAKE_BUFFER`, past which reading pauses) and handed
    to the relay with the EOF, if any: a visitor may send its whole request and half-close
    before a data channel is free, and must still be served. Only a real connection loss
    takes it out of the queue."""

    def __init__(self, control: ControlChannel, route: str | None = None) -> None:
        super().__init__()
        self.control = control
        self.route = route
        self.record: VisitorRecord | None = None

    @classmethod
    def adopt(cls, sniffer: Sniffer, control: ControlChannel, match: Match) -> None:
        """Take over a visitor routed on a shared port: what it sent while it was sniffed
        comes first, unchanged, and it then queues like any other visitor."""
        transport = sniffer.transport
        assert transport is not None
        visitor = cls(control, match.label)
        visitor.reader.feed(bytes(sniffer.buffer))
        visitor.eof = sniffer.eof
        transport.set_protocol(visitor)
        visitor.connection_made(transport)
        transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.control.visitor_arrived(self)

    def eof_received(self) -> bool:
        self.eof = True
        return True


class ControlChannel:
    """The server's side of one authenticated client: its heartbeat, the service port, the
    queue of visitors and the pool of idle data channels."""

    def __init__(self, service: ServerService, channel: Channel, session_key: bytes) -> None:
        self.service = service
        self.channel = channel
        self.session_key = session_key
        self.state = service.server.state
        self.stats = service.stats
        self.loop = asyncio.get_running_loop()
        self.visitors: deque[_Visitor] = deque()
        self.pool: deque[Channel] = deque()
        self.listener: asyncio.AbstractServer | None = None
        self.closed = False
        self._last_send = self.loop.time()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._binder: asyncio.Task[None] | None = None
        self._creates = 0  # CreateDataChannel commands asked for in this loop pass, not sent
        self.udp: UdpServer | None = None
        if service.cfg.type is ServiceType.UDP:
            self.udp = UdpServer(self.state, self.stats, service.cfg, self.request_data_channel)

    def start(self) -> None:
        server = self.service.server
        server.sessions[self.session_key] = self
        self.channel.on_lost(self._lost)
        set_user_timeout(self.channel, control_user_timeout(server.cfg.heartbeat_interval))
        self._send(_CREATE * (TCP_POOL_SIZE if self.udp is None else UDP_POOL_SIZE))
        interval = server.cfg.heartbeat_interval
        if interval > 0:
            self._heartbeat = self.loop.call_later(interval, self._beat)
        self.stats.peer = self.channel.peer
        self._binder = self.loop.create_task(self._bind())

    def _lost(self, channel: Channel) -> None:
        error = getattr(channel, "_error", None)
        if isinstance(error, TimeoutError):
            reason = "the client stopped acknowledging what the server sends (TCP user timeout)"
        elif error is not None:
            reason = f"the connection to the client broke: {error}"
        else:
            reason = "the client closed the control channel"
        self.close(reason)

    def _send(self, data: bytes) -> None:
        self.channel.write(data)
        self._last_send = self.loop.time()

    def request_data_channel(self) -> None:
        """Ask the client for one more data channel. The commands asked for during one pass of
        the event loop (a burst of visitors accepted together) go out in one write at the end
        of it: the same bytes on the wire, one system call here and one read on the client
        instead of one per visitor."""
        self._creates += 1
        if self._creates == 1:
            self.loop.call_soon(self._send_creates)

    def _send_creates(self) -> None:
        count, self._creates = self._creates, 0
        if not self.closed:
            self._send(_CREATE * count)

    def _beat(self) -> None:
        """Idle timer: a HeartBeat goes out only after ``heartbeat_interval`` with no command."""
        interval = self.service.server.cfg.heartbeat_interval
        idle = self.loop.time() - self._last_send
        if idle >= interval:
            self._send(_HEARTBEAT)
            idle = 0.0
        self._heartbeat = self.loop.call_later(interval - idle, self._beat)

    async def _bind(self) -> None:
        host, port = split_host_port(self.service.cfg.bind_addr)
        backoff = listen_backoff()
        while not self.closed:
            try:
                if self.udp is not None:
                    await self.udp.bind(host, port)
                elif self.service.shared is not None:
                    await self.service.shared.attach(self.service.cfg.name, self.routed_visitor)
                else:
                    self.listener = await self.loop.create_server(
                        lambda: _Visitor(self),
                        host or None,
                        port,
                        reuse_address=True,
                        backlog=LISTEN_BACKLOG,
                    )
                self.stats.last_error = None
                self.stats.set_state(ControlState.UP)
                self.state.emit(
                    EventKind.CONTROL_UP,
                    f"client {self.channel.peer} connected; visitors welcome at "
                    f"{self.service.cfg.bind_addr}",
                    service=self.service.cfg.name,
                    role=Role.SERVER,
                )
                return
            except OSError as exc:
                delay = backoff.next() or 1.0
                self.stats.last_error = (
                    f"cannot listen at {self.service.cfg.bind_addr}: {exc.strerror}"
                )
                self.state.emit(
                    EventKind.ERROR,
                    f"{self.stats.last_error}; retrying in {delay:.1f} s",
                    level=Level.ERROR,
                    service=self.service.cfg.name,
                    role=Role.SERVER,
                )
                await asyncio.sleep(delay)

    # visitors and data channels ---------------------------------------------------------
    def visitor_arrived(self, visitor: _Visitor) -> None:
        if self.closed or len(self.visitors) >= MAX_WAITING_VISITORS:
            visitor.abort()
            self.service.warn_refused(
                self.loop.time(),
                f"visitor {visitor.peer} refused: {MAX_WAITING_VISITORS} visitors already wait "
                "for a data channel",
            )
            return
        visitor.record = self.state.open_visitor(self.stats, visitor.peer, visitor.route)
        visitor.on_lost(self._visitor_left)
        self.visitors.append(visitor)
        self.request_data_channel()
        self._pair()

    def routed_visitor(self, sniffer: Sniffer, match: Match) -> None:
        """A visitor of the shared port chose this service."""
        _Visitor.adopt(sniffer, self, match)

    def _visitor_left(self, visitor: Channel) -> None:
        """A waiting visitor hung up before a data channel came."""
        assert isinstance(visitor, _Visitor) and visitor.record is not None
        self.visitors.remove(visitor)
        self.state.close_visitor(self.stats, visitor.record)

    def add_data_channel(self, channel: Channel) -> None:
        if self.closed or len(self.pool) >= MAX_IDLE_DATA_CHANNELS:
            channel.close()
            return
        if self.udp is not None:
            self.udp.add_data_channel(channel)
            return
        channel.on_lost(self._data_channel_lost)
        self.pool.append(channel)
        self.stats.idle_data_channels = len(self.pool)
        self._pair()

    def _data_channel_lost(self, channel: Channel) -> None:
        self.pool.remove(channel)
        self.stats.idle_data_channels = len(self.pool)
        channel.close()

    def _pair(self) -> None:
        """Serve waiting visitors in order, each with whichever idle data channel is next."""
        service = self.service
        while self.visitors and self.pool:
            channel = self.pool.popleft()
            visitor = self.visitors.popleft()
            record = visitor.record
            assert record is not None
            channel.write(_START_TCP)
            if service.cfg.proxy_protocol is not None:  # ratui extension: before any byte
                channel.write(proxy_header(service.cfg.proxy_protocol, visitor))
            relay = Relay(visitor.detach(), channel.detach(), record, service.forward_done)
            service.relays.add(relay)
            relay.start()
        self.stats.idle_data_channels = len(self.pool)

    # teardown ---------------------------------------------------------------------------
    def close(self, reason: str, level: Level = Level.WARNING) -> None:
        """Drop this client: stop the service port, idle channels and waiting visitors.
        Visitors already being forwarded keep going until they finish."""
        if self.closed:
            return
        self.closed = True
        server = self.service.server
        if server.sessions.get(self.session_key) is self:
            del server.sessions[self.session_key]
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._binder is not None:
            self._binder.cancel()
        if self.listener is not None:
            self.listener.close()
        if self.service.shared is not None:
            self.service.shared.detach(self.service.cfg.name, self.routed_visitor)
        if self.udp is not None:
            self.udp.close()
        self.channel.on_lost(None)
        # abort, not close: a stalled client may never read what is still buffered for it,
        # and close() would keep the socket until it does.
        self.channel.abort()
        while self.pool:
            idle = self.pool.popleft()
            idle.on_lost(None)
            idle.close()
        while self.visitors:
            visitor = self.visitors.popleft()
            visitor.on_lost(None)
            visitor.abort()
            if visitor.record is not None:
                self.state.close_visitor(self.stats, visitor.record)
        self.stats.idle_data_channels = 0
        self.service.detached(self)
        self.state.emit(
            EventKind.CONTROL_DOWN,
            f"control channel closed: {reason}",
            level=level,
            service=self.service.cfg.name,
            role=Role.SERVER,
        )


def proxy_header(version: str, visitor: Channel) -> bytes:
    """The PROXY protocol header for a visitor: its address, then the one it connected to."""
    transport = visitor.transport
    assert transport is not None
    return encode_proxy_header(
        version, transport.get_extra_info("peername"), transport.get_extra_info("sockname")
    )


def control_user_timeout(heartbeat_interval: int) -> float:
    """TCP_USER_TIMEOUT (seconds) for an authenticated control channel: twice the heartbeat
    interval (the default interval if heartbeats are off), at least
    :data:`MIN_CONTROL_USER_TIMEOUT`. The server never reads a control channel, so a client
    that vanished without a FIN or RST (a dead NAT mapping, a cable pulled, a stalled relay)
    is otherwise noticed only when the kernel gives up retransmitting, after many minutes.
    With it, a heartbeat or CreateDataChannel that stays unacknowledged (or unsent behind a
    zero window) that long breaks the control channel, which frees the service port and its
    waiting visitors. With keepalive on, it also bounds how long unanswered probes are
    tolerated."""
    interval = heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
    return max(MIN_CONTROL_USER_TIMEOUT, 2.0 * interval)


def set_user_timeout(channel: Channel, seconds: float) -> None:
    """Set TCP_USER_TIMEOUT on the channel's socket where the platform has it (Linux)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = channel.transport.get_extra_info("socket") if channel.transport else None
    if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))
