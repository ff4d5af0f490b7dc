"""The client role: one control channel per service to the server, a data channel for every
CreateDataChannel, each forwarded to the service's ``local_addr`` (PROTOCOL.md §1, §3.2-3.3).

Reconnecting never stops, with rathole's backoff. Unlike rathole, ratui bounds the handshake
reads and the connect with ``HANDSHAKE_TIMEOUT`` so a server that stops answering midway is
noticed; the bytes on the wire are the same. The connects made once per visitor (its data
channel, then its ``local_addr``) are bounded by one shared timer (:class:`Deadlines`) rather
than a timeout context each.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Coroutine
from typing import TypeVar

from .backoff import Backoff, control_channel_backoff, data_channel_backoff
from .channel import Channel, format_addr, host_port
from .config import ClientConfig, ClientServiceConfig, ServiceType
from .forward import Relay
from .protocol import (
    Ack,
    Auth,
    ControlChannelHello,
    ControlCmd,
    DataChannelHello,
    DataCmd,
    MessageReader,
    ProtocolError,
    auth_digest,
    encode_auth,
    encode_hello,
    service_digest,
)
from .state import ControlState, EngineState, EventKind, Level, Role
from .transport.base import Transport
from .udp import UdpForwarder

log = logging.getLogger("ratui.client")

T = TypeVar("T")

HANDSHAKE_TIMEOUT = 10.0  # seconds for connect + Hello + Auth + Ack
LOCAL_CONNECT_TIMEOUT = 10.0  # seconds to reach local_addr for one visitor
#: A control channel that stayed up this long resets the backoff (as rathole does).
BACKOFF_RESET_AFTER = 3.0


class _Session:
    """What one authenticated control channel has opened and no visitor uses yet: data
    channels being connected (their tasks) and idle ones waiting for their command."""

    __slots__ = ("hello", "idle", "opening")

    def __init__(self, session_key: bytes) -> None:
        self.hello = encode_hello(DataChannelHello(session_key))
        self.opening: set[asyncio.Task[None]] = set()
        self.idle: set[Channel] = set()


class Deadlines:
    """Tasks that must get somewhere within ``seconds``, under one timer for all of them.

    Every entry gets the same delay, so entries expire in the order they were added, and one
    timer, set for the oldest deadline, is enough. An expired task is cancelled, and
    :meth:`timed_out` then tells its coroutine that the cancellation was this deadline. This
    costs a dict insert and pop per task where a timeout context costs a timer handle, a
    context manager and lookups of the running loop and task.
    """

    __slots__ = ("_entries", "_expired", "_loop", "_seconds", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._loop = loop
        self._seconds = seconds
        self._entries: dict[asyncio.Task[None], float] = {}
        self._expired: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, task: asyncio.Task[None]) -> None:
        """Give ``task`` ``seconds`` from now (again, if it had a deadline already)."""
        self._entries.pop(task, None)
        deadline = self._entries[task] = self._loop.time() + self._seconds
        if self._timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def discard(self, task: asyncio.Task[None]) -> None:
        """``task`` got there (or ended): no deadline any more."""
        self._entries.pop(task, None)
        self._expired.discard(task)

    def timed_out(self, task: asyncio.Task[None] | None) -> bool:
        """Whether ``task`` was cancelled by its deadline; if so it is no longer cancelling."""
        if task not in self._expired:
            return False
        assert task is not None
        self._expired.discard(task)
        task.uncancel()
        return True

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._entries.clear()
        self._expired.clear()

    def _expire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._entries:
            task, deadline = next(iter(self._entries.items()))
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            del self._entries[task]
            self._expired.add(task)
            task.cancel()


class AuthenticationFailed(Exception):
    """The server answered the Auth with something other than Ok."""


class Client:
    """Runs every ``[client.services.NAME]`` against ``[client] remote_addr``."""

    def __init__(self, cfg: ClientConfig, state: EngineState, transport: Transport) -> None:
        self.cfg = cfg
        self.state = state
        self.transport = transport
        self.services: dict[str, ClientService] = {}

    async def start(self) -> None:
        for svc in self.cfg.services.values():
            self.add_service(svc)

    async def stop(self) -> None:
        for name in list(self.services):
            self.remove_service(name)

    def add_service(self, cfg: ClientServiceConfig) -> None:
        """Start ``cfg``; a running service of the same name is replaced."""
        self.remove_service(cfg.name)
        service = ClientService(cfg, self)
        self.services[cfg.name] = service
        service.start()

    def remove_service(self, name: str) -> None:
        service = self.services.pop(name, None)
        if service is not None:
            service.stop()


class ClientService:
    """One service: its control channel loop, idle data channels and forwarded visitors."""

    def __init__(self, cfg: ClientServiceConfig, client: Client) -> None:
        self.cfg = cfg
        self.client = client
        self.state = client.state
        self.transport = client.transport
        self.digest = service_digest(cfg.name)
        self.stats = client.state.register(Role.CLIENT, cfg.name, str(cfg.type), cfg.local_addr)
        self.stats.peer = client.cfg.remote_addr
        self.relays: set[Relay] = set()
        self.udp: set[UdpForwarder] = set()
        self._idle: set[Channel] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        #: HANDSHAKE_TIMEOUT and LOCAL_CONNECT_TIMEOUT are equal: one sweep bounds both.
        self._deadlines = Deadlines(self._loop, min(HANDSHAKE_TIMEOUT, LOCAL_CONNECT_TIMEOUT))
        self._expected_cmd = (
            DataCmd.START_FORWARD_TCP if cfg.type is ServiceType.TCP else DataCmd.START_FORWARD_UDP
        )

    def start(self) -> None:
        self._main = self._loop.create_task(self._run())

    def stop(self) -> None:
        if self._main is not None:
            self._main.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._deadlines.close()
        for channel in list(self._idle):
            channel.close()
        for relay in list(self.relays):
            relay.close()
        for forwarder in list(self.udp):
            forwarder.close()
        self.stats.set_state(ControlState.STOPPED)
        self.state.unregister(self.stats)

    def _emit(self, kind: EventKind, message: str, level: Level = Level.INFO) -> None:
        self.state.emit(kind, message, level=level, service=self.cfg.name, role=Role.CLIENT)

    # control channel --------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = control_channel_backoff(self.cfg.retry_interval)
        while True:
            started = time.monotonic()
            self.stats.set_state(ControlState.CONNECTING)
            try:
                await self._control_channel()
            except AuthenticationFailed as exc:
                self.stats.auth_failures += 1
                self._lost(EventKind.AUTH_FAILED, str(exc))
            except (OSError, TimeoutError, ProtocolError) as exc:
                self._lost(EventKind.CONTROL_DOWN, describe(exc))
            if time.monotonic() - started > BACKOFF_RESET_AFTER:
                backoff.reset()
            delay = backoff.next() or self.cfg.retry_interval
            self.stats.set_state(ControlState.RETRYING)
            log.info("Service %s: retrying in %.1f s", self.cfg.name, delay)
            await asyncio.sleep(delay)
            self.stats.reconnects += 1

    def _lost(self, kind: EventKind, reason: str) -> None:
        was_up = self.stats.state is ControlState.UP
        self.stats.last_error = reason
        what = "control channel lost" if was_up else "cannot establish the control channel"
        remote = self.client.cfg.remote_addr
        if not was_up and remote not in reason:  # "Connection refused" alone names no server
            what += f" to {remote}"
        self._emit(kind, f"{what}: {reason}", Level.WARNING if was_up else Level.ERROR)

    async def _control_channel(self) -> None:
        remote = self.client.cfg.remote_addr
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            channel = await self.transport.connect(remote, nodelay=True)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                ack, session_key = await authenticate(channel, self.digest, self.cfg.token)
            if ack is not Ack.OK:
                raise AuthenticationFailed(f"Authentication failed: {ack.message}")
            self.stats.set_state(ControlState.UP)
            self.stats.last_error = None
            self._emit(EventKind.CONTROL_UP, f"control channel established with {remote}")
            session = _Session(session_key)
            try:
                await self._serve_commands(channel, session)
            finally:
                # The server drops this session's pool with its control channel; data
                # channels still being opened or waiting idle for it can never be used. Close
                # them now: through a path that stalled, the server's close never arrives,
                # and they would stay open for good.
                for task in session.opening:
                    task.cancel()
                for idle in list(session.idle):
                    self._idle_done(session, idle)
                    idle.abort()
        finally:
            channel.close()

    async def _serve_commands(self, channel: Channel, session: _Session) -> None:
        """Carry out the server's commands as they arrive, on callbacks (a burst of
        CreateDataChannel wakes no coroutine), until the control channel ends: then raise
        why. A silence longer than ``heartbeat_timeout`` ends it too."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        timeout = self.client.cfg.heartbeat_timeout
        heard = loop.time()

        def fail(exc: Exception) -> None:
            if not ended.done():
                ended.set_exception(exc)

        def on_bytes(ch: Channel) -> None:
            nonlocal heard
            try:
                while (cmd := MessageReader.next_control_cmd(ch.reader)) is not None:
                    heard = loop.time()
                    if cmd is ControlCmd.CREATE_DATA_CHANNEL:
                        self._open_data_channel(session)
                    else:
                        self.stats.last_heartbeat = time.time()
            except ProtocolError as exc:
                fail(exc)
                return
            if ch.ended:
                fail(ch.closed_error())

        def watchdog() -> None:
            nonlocal timer
            silent = loop.time() - heard
            if silent >= timeout:
                fail(TimeoutError(f"Heartbeat timed out after {timeout} s"))
            else:
                timer = loop.call_later(timeout - silent, watchdog)

        timer = loop.call_later(timeout, watchdog) if timeout else None
        channel.watch(on_bytes)
        try:
            on_bytes(channel)  # commands that came with the Ack
            await ended
        finally:
            channel.watch(None)
            if timer is not None:
                timer.cancel()

    # data channels ----------------------------------------------------------------------
    # A data channel is opened by a task, which ends once the Hello is sent; the channel then
    # waits for its command on a callback, and a visitor's forwarding gets a task of its own.
    def _open_data_channel(self, session: _Session) -> None:
        task = self._spawn(self._data_channel(session))
        session.opening.add(task)
        task.add_done_callback(session.opening.discard)

    def _spawn(
        self, work: Coroutine[object, object, None], bounded: bool = True
    ) -> asyncio.Task[None]:
        """Run ``work`` until it ends or the service stops. A ``bounded`` task connects and
        ends: what it connects to must answer within its deadline (see :meth:`_connected`)."""
        task = self._loop.create_task(work)
        self._tasks.add(task)
        if bounded:
            self._deadlines.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._deadlines.discard(task)

    async def _connected(self, connecting: Awaitable[T]) -> T:
        """Await ``connecting``, a connect of the current task; :class:`TimeoutError` once the
        task's deadline passes."""
        try:
            return await connecting
        except asyncio.CancelledError:
            if self._deadlines.timed_out(asyncio.current_task()):
                raise TimeoutError from None
            raise

    async def _data_channel(self, session: _Session) -> None:
        channel = await self._connect_data_channel()
        if channel is None:
            return
        channel.write(session.hello)
        session.idle.add(channel)
        self._idle.add(channel)
        self.stats.idle_data_channels = len(self._idle)
        channel.watch(functools.partial(self._on_data_cmd, session))
        self._on_data_cmd(session, channel)  # the command may have come with the connection

    def _idle_done(self, session: _Session, channel: Channel) -> None:
        channel.watch(None)
        session.idle.discard(channel)
        self._idle.discard(channel)
        self.stats.idle_data_channels = len(self._idle)

    def _on_data_cmd(self, session: _Session, channel: Channel) -> None:
        """An idle data channel got bytes (or its end): start what the command asks for. From
        here on the channel serves a visitor, whom losing the control channel does not
        affect."""
        try:
            cmd = MessageReader.next_data_cmd(channel.reader)
        except ProtocolError as exc:
            self._idle_done(session, channel)
            log.debug("Service %s: idle data channel ended: %s", self.cfg.name, exc)
            channel.close()
            return
        if cmd is None:
            if channel.ended:
                self._idle_done(session, channel)
                log.debug("Service %s: idle data channel ended: closed", self.cfg.name)
                channel.close()
            return
        self._idle_done(session, channel)
        if cmd is not self._expected_cmd:
            channel.close()
            self._emit(
                EventKind.ERROR,
                f"the server asked for {cmd.name} but this service is {self.cfg.type}; "
                "check that both sides configure the same type",
                Level.ERROR,
            )
            return
        if cmd is DataCmd.START_FORWARD_UDP:
            forwarder = UdpForwarder(channel, self.cfg, self.state, self.stats, self.udp)
            self._spawn(forwarder.start(), bounded=False)
            return
        self._spawn(self._forward_tcp(channel))

    async def _connect_data_channel(self) -> Channel | None:
        """A connection to the server, retried with rathole's data channel backoff (from the
        first failure on, so that the usual case builds no backoff). Each attempt has
        ``HANDSHAKE_TIMEOUT``; the waits between attempts do not count."""
        backoff: Backoff | None = None
        while True:
            try:
                return await self._connected(
                    self.transport.connect(self.client.cfg.remote_addr, nodelay=self.cfg.nodelay)
                )
            except (OSError, TimeoutError) as exc:
                backoff = backoff or data_channel_backoff()
                delay = backoff.next()
                if delay is None:
                    self._emit(
                        EventKind.ERROR,
                        f"cannot open a data channel: {describe(exc)}",
                        Level.WARNING,
                    )
                    return None
                task = asyncio.current_task()
                assert task is not None
                self._deadlines.discard(task)
                await asyncio.sleep(delay)
                self._deadlines.add(task)

    async def _forward_tcp(self, channel: Channel) -> None:
        host, port = host_port(self.cfg.local_addr)
        try:
            transport, local = await self._connected(
                self._loop.create_connection(Channel, host, port)
            )
        except (OSError, TimeoutError) as exc:
            reset(channel)
            self.stats.last_error = f"cannot connect to {self.cfg.local_addr}: {describe(exc)}"
            self._emit(EventKind.ERROR, self.stats.last_error, Level.WARNING)
            return
        record = self.state.open_visitor(
            self.stats, format_addr(transport.get_extra_info("sockname"))
        )
        relay = Relay(channel.detach(), local.detach(), record, self._forward_done)
        self.relays.add(relay)
        relay.start()

    def _forward_done(self, relay: Relay) -> None:
        self.relays.discard(relay)
        self.state.close_visitor(self.stats, relay.record)


def reset(channel: Channel) -> None:
    """Close ``channel`` with a TCP reset. A FIN would only half-close the visitor's relay on
    the server, which would then keep both sockets until the visitor hangs up; a reset makes
    the server close the visitor at once."""
    sock = channel.transport.get_extra_info("socket") if channel.transport else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    channel.abort()


_LINGER_RESET = struct.pack("ii", 1, 0)


async def authenticate(channel: Channel, digest: bytes, token: str) -> tuple[Ack, bytes]:
    """PROTOCOL.md §1.3 steps 1-4 from the client's side, for the service whose digest is
    ``digest``: the server's Ack, and the session key that opens data channels."""
    channel.write(encode_hello(ControlChannelHello(digest)))
    hello = await channel.receive(MessageReader.next_hello)
    if not isinstance(hello, ControlChannelHello):
        raise ProtocolError("Unexpected type of hello from the server")
    session_key = auth_digest(token, hello.digest)
    channel.write(encode_auth(Auth(session_key)))
    return await channel.receive(MessageReader.next_ack), session_key


def describe(exc: BaseException) -> str:
    """A one-line reason for logs: the message, or the exception's name when it has none."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
