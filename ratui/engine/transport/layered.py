"""Sessions (Noise, TLS, WebSocket) layered over a TCP connection, seen by the engine as TCP.

The engine only ever sees a :class:`~ratui.engine.channel.Channel` whose ``.transport`` is an
asyncio Transport carrying plaintext, and after the handshake it hands that transport to
:mod:`ratui.engine.forward` with ``set_protocol``. A layered transport therefore has two halves,
the same split as asyncio's own ``sslproto``:

* :class:`SecureLink`, an asyncio Protocol on the TCP transport. It runs the layer's handshake,
  then de-frames and decrypts what arrives and calls the app protocol's ``data_received``,
  ``eof_received`` and ``connection_lost``. The TCP transport's ``pause_writing`` /
  ``resume_writing`` go straight to the app protocol.
* :class:`SecureTransport`, the asyncio Transport the app protocol holds. ``write`` encrypts at
  once and writes the ciphertext into the TCP transport; ``pause_reading`` /
  ``resume_reading`` pause the TCP transport; buffer sizes and limits are the TCP transport's.

Nothing is buffered between the two, so flow control is exactly plain TCP's: the TCP write
buffer is the only write buffer (its watermarks pause the app protocol), and a paused reader
stops the socket, leaving at most one partial frame and one read's worth of ciphertext here.

What a layer does is a :class:`Session` (``noise.py``, ``tls.py``, ``websocket.py``): a
synchronous codec with no I/O of its own; :class:`StackedSession` runs one inside another
(WebSocket over TLS). A session that cannot half-close (WebSocket) makes ``can_write_eof()``
False, and the peer's end of stream closes the whole connection. Client connections go
through ``[client.transport.tcp] proxy`` when it is set (``proxy.py``), before any layer.
Handshake failures become one clear log line on the server (the connection is dropped, other
accepts go on) and a :class:`HandshakeError` from ``connect`` on the client.
Each server-side handshake has :data:`HANDSHAKE_TIMEOUT` seconds, as rathole's (server.rs:183).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..channel import Channel, format_addr
from ..config import TcpTransportConfig, split_host_port
from .base import LISTEN_BACKLOG, AcceptHandler, Transport
from .base import TransportSetupError as TransportSetupError  # where it used to live
from .proxy import open_connection
from .tcp import apply_socket_options

log = logging.getLogger("ratui.transport")

#: Seconds a connection has for the layer's handshake, on both sides (rathole: 5 s, server only).
HANDSHAKE_TIMEOUT = 5.0


class HandshakeError(ConnectionError):
    """The layer's handshake failed; ``str()`` says with whom and what is probably wrong."""


class LayerError(Exception):
    """A layer-level protocol error: the reason, without the peer (the link adds it)."""


class Session(ABC):
    """One connection's codec: drives the handshake, then encrypts and decrypts.

    Methods raise :class:`LayerError` for anything the peer got wrong. None of them does I/O;
    bytes to send are returned (``encrypt``) or collected with :meth:`take_output`.
    """

    #: "noise" or "tls", for log lines.
    kind: str = "secure"

    #: Whether the layer can end one direction and keep the other (TLS close_notify, Noise:
    #: a bare FIN). If not (WebSocket: a Close frame ends the whole connection), the
    #: transport's ``can_write_eof()`` is False and the peer's end of stream, or its
    #: end-of-connection message, closes the whole connection.
    can_half_close: bool = True

    @abstractmethod
    def start(self) -> None:
        """The connection is up; an initiator queues its first handshake message."""

    @abstractmethod
    def handshake(self, data: bytes) -> bytes | None:
        """Feed handshake bytes. Returns None while the handshake goes on, else the bytes that
        arrived behind it (still encrypted; the link passes them to :meth:`decrypt`)."""

    @abstractmethod
    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        """Plaintext -> the bytes to write (a fresh object the caller may keep)."""

    @abstractmethod
    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        """Ciphertext -> (plaintext, whether the peer ended its stream inside the layer)."""

    @abstractmethod
    def take_output(self) -> bytes:
        """Bytes the session wants sent that no call returned (handshake replies, alerts)."""

    def finish(self) -> bytes:
        """Our side's end of stream inside the layer (TLS close_notify); b'' if none."""
        return b""

    def closed_during_handshake(self, server_side: bool) -> str:
        """The reason to log when the peer closes mid-handshake."""
        who = "client" if server_side else "server"
        return f"the {who} closed the connection during the handshake"

    def extra_info(self, name: str) -> Any:
        """Layer-specific ``get_extra_info`` values (e.g. ``ssl_object``); None if unknown."""
        return None

    def describe_progress(self) -> str:
        """How far the handshake got, for timeout messages."""
        return ""


class StackedSession(Session):
    """``inner`` over ``outer`` over TCP (WebSocket over TLS): the outer handshake, then the
    inner one inside it; inner bytes are encrypted by the outer session on the way out and
    decrypted by it on the way in."""

    def __init__(self, outer: Session, inner: Session, *, server_side: bool) -> None:
        self.outer = outer
        self.inner = inner
        self.server_side = server_side
        self.kind = f"{inner.kind} over {outer.kind}"
        self.can_half_close = outer.can_half_close and inner.can_half_close
        self._outer_done = False
        self._stash = b""  # inner bytes behind the inner handshake, already outer-decrypted

    def start(self) -> None:
        self.outer.start()

    def handshake(self, data: bytes) -> bytes | None:
        if not self._outer_done:
            rest = self.outer.handshake(data)
            if rest is None:
                return None
            self._outer_done = True
            self.inner.start()
            data = rest
        # Run the outer decoder even for b"": records may wait behind its handshake.
        plain, eof = self.outer.decrypt(data)
        rest = self.inner.handshake(plain)
        if rest is None:
            if eof:
                raise LayerError(self.inner.closed_during_handshake(self.server_side))
            return None
        self._stash = rest
        return b""

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        inner = self.inner.encrypt(data)
        return self.outer.encrypt(inner) if inner else b""

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        plain, eof = self.outer.decrypt(data)
        if self._stash:
            plain, self._stash = self._stash + plain, b""
        inner, inner_eof = self.inner.decrypt(plain)
        return inner, eof or inner_eof

    def take_output(self) -> bytes:
        out = self.outer.take_output()
        if self._outer_done:
            inner = self.inner.take_output()
            if inner:
                out += self.outer.encrypt(inner)
        return out

    def finish(self) -> bytes:
        tail: bytes | bytearray = b""
        if self._outer_done:
            inner = self.inner.finish()
            if inner:
                tail = self.outer.encrypt(inner)
        return bytes(tail) + self.outer.finish()

    def closed_during_handshake(self, server_side: bool) -> str:
        if self._outer_done:
            return self.inner.closed_during_handshake(server_side)
        return self.outer.closed_during_handshake(server_side)

    def extra_info(self, name: str) -> Any:
        value = self.outer.extra_info(name)
        return value if value is not None else self.inner.extra_info(name)

    def describe_progress(self) -> str:
        if self._outer_done:
            return f"{self.outer.kind} done, {self.inner.describe_progress()}"
        return self.outer.describe_progress()


_HANDSHAKING, _OPEN, _FAILED, _CLOSED = range(4)


class SecureLink(asyncio.Protocol):
    """The Protocol on the TCP transport: handshake, then decrypt into the app protocol.

    ``on_open(protocol)`` is called once the handshake is done and ``protocol`` (made by
    ``app_factory``) holds its :class:`SecureTransport`; ``on_failed(error)`` is called if the
    handshake fails, times out or the connection ends first. Exactly one of the two is called.
    """

    def __init__(
        self,
        session: Session,
        *,
        server_side: bool,
        app_factory: Callable[[], asyncio.Protocol],
        on_open: Callable[[asyncio.Protocol], None],
        on_failed: Callable[[HandshakeError], None],
        configure: Callable[[asyncio.Transport], None] | None = None,
        timeout: float = HANDSHAKE_TIMEOUT,
    ) -> None:
        self.session = session
        self.server_side = server_side
        self.raw: asyncio.Transport | None = None
        self.app: SecureTransport | None = None
        self.protocol: asyncio.Protocol | None = None
        self.peer = "?"
        self._app_factory = app_factory
        self._on_open: Callable[[asyncio.Protocol], None] | None = on_open
        self._on_failed: Callable[[HandshakeError], None] | None = on_failed
        self._configure = configure
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._state = _HANDSHAKING
        self._received = 0
        self._write_paused = False
        self._peer_eof = False
        self._error: BaseException | None = None

    # asyncio.Protocol on the TCP transport ----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]
        self.peer = format_addr(transport.get_extra_info("peername"))
        if self._configure is not None:
            self._configure(self.raw)
        self._timer = asyncio.get_running_loop().call_later(self._timeout, self._timed_out)
        try:
            self.session.start()
        except LayerError as exc:
            self._fail(str(exc))
            return
        self._flush()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _OPEN:
            if self._error is None:  # else the link is being aborted: ignore the rest
                self._deliver(data)
        elif state == _HANDSHAKING:
            self._received += len(data)
            try:
                rest = self.session.handshake(data)
            except LayerError as exc:
                self._fail(str(exc))
                return
            self._flush()
            if rest is not None:
                self._open(rest)

    def eof_received(self) -> bool:
        if self._state == _HANDSHAKING:
            if self._received == 0 and self.server_side:
                # A port probe or health check: not worth a warning.
                self._fail("the client closed the connection before sending anything", quiet=True)
            else:
                self._fail(self.session.closed_during_handshake(self.server_side))
            return False
        if self._state == _OPEN:
            self._eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self._state == _HANDSHAKING:
            if exc is None:
                self._fail("the connection was closed", quiet=True)
            elif self.server_side:
                self._fail(f"the connection broke: {exc}")
            else:  # a reset: the server dropped us, which says as much as a close
                self._fail(f"{self.session.closed_during_handshake(False)} ({exc})")
        state, self._state = self._state, _CLOSED
        if state == _OPEN and self.protocol is not None:
            self.protocol.connection_lost(exc or self._error)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._state == _OPEN and self.protocol is not None:
            self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._state == _OPEN and self.protocol is not None:
            self.protocol.resume_writing()

    # internals ------------------------------------------------------------------------------
    def _flush(self) -> None:
        out = self.session.take_output()
        if out and self.raw is not None and not self.raw.is_closing():
            self.raw.write(out)

    def _open(self, rest: bytes) -> None:
        self._cancel_timer()
        self._state = _OPEN
        self.app = SecureTransport(self)
        protocol = self._app_factory()
        self.protocol = protocol
        protocol.connection_made(self.app)
        on_open, self._on_open, self._on_failed = self._on_open, None, None
        if on_open is not None:
            on_open(protocol)
        if self._write_paused and self.protocol is not None:
            self.protocol.pause_writing()
        # Always run the decoder once: a TLS record behind the handshake may already sit in
        # the session's buffer even when ``rest`` is empty.
        if self._state == _OPEN:
            self._deliver(rest)

    def _deliver(self, data: bytes) -> None:
        try:
            plain, eof = self.session.decrypt(data)
        except LayerError as exc:
            self._broken(str(exc))
            return
        self._flush()
        if plain and self.protocol is not None:
            self.protocol.data_received(plain)
        if eof and self._state == _OPEN:
            self._eof()

    def _eof(self) -> None:
        if self._peer_eof or self.protocol is None:
            return
        self._peer_eof = True
        if not self.session.can_half_close:
            # The peer ended the whole connection: answer what the layer wants answered
            # (a WebSocket Close) and close; the app protocol sees connection_lost(None).
            self._flush()
            if self.raw is not None:
                self.raw.close()
            return
        if not self.protocol.eof_received() and self.app is not None:
            self.app.close()

    def _broken(self, reason: str) -> None:
        """The peer sent something invalid after the handshake: drop the connection."""
        message = f"{self.session.kind} connection with {self.peer} broken: {reason}"
        log.warning("%s", message)
        self._error = ConnectionError(message)
        if self.raw is not None:
            self.raw.abort()

    def _timed_out(self) -> None:
        self._timer = None
        if self._state == _HANDSHAKING:
            progress = self.session.describe_progress()
            detail = f" ({progress})" if progress else ""
            self._fail(f"timed out after {self._timeout:g} s{detail}")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, reason: str, *, quiet: bool = False) -> None:
        if self._state != _HANDSHAKING:
            return
        self._state = _FAILED
        self._cancel_timer()
        error = HandshakeError(f"{self.session.kind} handshake with {self.peer} failed: {reason}")
        if self.raw is not None and not self.raw.is_closing():
            self._flush()  # e.g. a TLS alert that tells the peer why
            self.raw.close()
        on_failed, self._on_open, self._on_failed = self._on_failed, None, None
        if self.server_side:
            log.log(logging.DEBUG if quiet else logging.WARNING, "%s", error)
        if on_failed is not None:
            on_failed(error)


class SecureTransport(asyncio.Transport):
    """The plaintext side of a :class:`SecureLink`, handed to the app protocol."""

    def __init__(self, link: SecureLink) -> None:
        super().__init__()
        self._link = link
        self._raw: asyncio.Transport = link.raw  # type: ignore[assignment]
        self._session = link.session
        self._closing = False
        self._eof_written = False
        self._reading = True

    # asyncio.BaseTransport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        value = self._session.extra_info(name)
        if value is not None:
            return value
        return self._raw.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._finish()
        self._raw.close()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._link.protocol = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._link.protocol  # type: ignore[return-value]

    # asyncio.ReadTransport
    def is_reading(self) -> bool:
        return self._reading and not self.is_closing()

    def pause_reading(self) -> None:
        self._reading = False
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._reading = True
        self._raw.resume_reading()

    # asyncio.WriteTransport
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._raw.get_write_buffer_limits()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._eof_written or self._raw.is_closing():
            return
        self._raw.write(self._session.encrypt(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return self._session.can_half_close

    def write_eof(self) -> None:
        if not self._session.can_half_close:
            raise NotImplementedError(f"{self._session.kind} cannot half-close a connection")
        if self._eof_written or self._closing:
            return
        self._finish()
        self._raw.write_eof()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def _finish(self) -> None:
        if not self._eof_written:
            self._eof_written = True
            tail = self._session.finish()
            if tail and not self._raw.is_closing():
                self._raw.write(tail)


class LayeredTransport(Transport):
    """Connects and listens over TCP and runs a :class:`Session` on every connection."""

    def __init__(self, tcp: TcpTransportConfig) -> None:
        self.tcp = tcp

    @abstractmethod
    def client_session(self, addr: str) -> Session:
        """A new session for a connection to ``addr`` (raises TransportSetupError)."""

    @abstractmethod
    def server_session(self) -> Session:
        """A new session for an accepted connection."""

    def check_server(self) -> None:
        """Raise TransportSetupError if this config cannot serve (also called by listen)."""

    async def connect(self, addr: str, *, nodelay: bool | None = None) -> Channel:
        host, port = split_host_port(addr)
        session = self.client_session(addr)
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[asyncio.Protocol] = loop.create_future()
        tcp = self.tcp
        delay = tcp.nodelay if nodelay is None else nodelay

        def settle(result: asyncio.Protocol | HandshakeError) -> None:
            if opened.done():
                return
            if isinstance(result, HandshakeError):
                opened.set_exception(result)
            else:
                opened.set_result(result)

        def factory() -> SecureLink:
            return SecureLink(
                session,
                server_side=False,
                app_factory=Channel,
                on_open=settle,
                on_failed=settle,
                configure=lambda raw: apply_socket_options(
                    raw.get_extra_info("socket"), delay, tcp
                ),
            )

        raw, _ = await open_connection(factory, host, port, tcp.proxy)
        try:
            channel = await opened
        except BaseException:
            raw.abort()
            raise
        assert isinstance(channel, Channel)
        return channel

    async def listen(self, addr: str, on_channel: AcceptHandler) -> asyncio.AbstractServer:
        self.check_server()
        host, port = split_host_port(addr)
        tcp = self.tcp
        listener: asyncio.AbstractServer | None = None

        def accepted(protocol: asyncio.Protocol) -> None:
            assert isinstance(protocol, Channel)
            if listener is not None and not listener.is_serving():
                protocol.abort()  # the listener was closed while this handshake ran
                return
            on_channel(protocol)

        def factory() -> SecureLink:
            return SecureLink(
                self.server_session(),
                server_side=True,
                app_factory=Channel,
                on_open=accepted,
                on_failed=lambda error: None,  # already logged by the link
                configure=lambda raw: apply_socket_options(
                    raw.get_extra_info("socket"), tcp.nodelay, tcp
                ),
            )

        loop = asyncio.get_running_loop()
        listener = await loop.create_server(
            factory, host or None, port, reuse_address=True, backlog=LISTEN_BACKLOG
        )
        return listener
