"""The WebSocket transport (PROTOCOL.md §5.4), as rathole's (tokio-tungstenite) on the wire.

rathole's only reference build here has no WebSocket support, so this follows PROTOCOL.md and
RFC 6455; the framing is the ``websockets`` library's sans-I/O protocol, not a framer of
ratui's own.

* Client: ``GET / HTTP/1.1`` to ``ws://<remote_addr>/``, also over TLS (rathole never uses
  ``wss://``): ``Host`` is ``remote_addr`` (``:80`` dropped, as the url crate does), no
  subprotocol, no extension, no Origin.
* Server: accepts any path and any Host; it answers ``101`` with ``Sec-WebSocket-Accept``.
* Each ``write`` is one Binary message of exactly those bytes (split only above 16 MiB,
  tungstenite's largest frame). Incoming Binary messages and their continuation frames are
  one byte stream; message boundaries mean nothing. Clients mask, servers do not; an unmasked
  client frame is an error (the library enforces both). Incoming limits are tungstenite's:
  64 MiB per message, 16 MiB per frame.
* Anything that is not Binary data is an error, as in rathole: Text, Ping and Pong break
  the connection (with a log line). ratui never sends a Ping.
* End of connection: ``close()`` sends a Close frame with no payload and then closes TCP, as
  rathole's ``poll_shutdown`` does. A Close frame from the peer (or its TCP FIN) ends the
  whole connection. WebSocket cannot half-close, so ``can_write_eof()`` is False and the
  relay (``forward.py``) closes both sides when either side finishes, which is what rathole
  does over WebSocket too.
* ``[*.transport.websocket] tls = true``: the same over the TLS transport's session
  (``tls.py``): WebSocket over TLS over TCP, with the TLS settings and checks of
  ``type = "tls"``.

Everything else (the 5 s handshake limit, one log line per failed handshake, flow control,
the proxy) is the layered transport's (``layered.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from ..config import TcpTransportConfig, TlsConfig, WebsocketConfig
from .layered import LayeredTransport, LayerError, Session, StackedSession, TransportSetupError

#: tungstenite 0.20's defaults, which rathole keeps.
MAX_MESSAGE = 64 << 20
MAX_FRAME = 16 << 20

_PLAIN_HELLOS = (b"\x00\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01")
_BINARY, _CONT, _CLOSE = Opcode.BINARY, Opcode.CONT, Opcode.CLOSE
_OPCODE_NAMES = {Opcode.TEXT: "Text", Opcode.PING: "Ping", Opcode.PONG: "Pong"}
_OPEN = State.OPEN


def _quiet_logger() -> logging.Logger:
    """The library logs "connection open" at INFO for every connection: ratui logs its own
    lines, so give it a logger that is never enabled and reaches no handler."""
    logger = logging.Logger("ratui.transport.websocket.library", logging.CRITICAL + 1)
    logger.propagate = False
    logger.disabled = True
    return logger


_QUIET = _quiet_logger()


def _sniff(data: bytes, from_server: bool) -> str | None:
    """Name what a peer that does not speak WebSocket sent, if it is recognisable."""
    other = "server" if from_server else "client"
    if data[:5] in _PLAIN_HELLOS:
        return (
            f"the {other} sent a plain rathole Hello, not a WebSocket request: it uses type = "
            '"tcp"; both sides need type = "websocket"'
        )
    if data[:1] in (b"\x16", b"\x15") and data[1:2] == b"\x03":
        return (
            f'the {other} speaks TLS: it uses type = "tls", or websocket with tls = true; '
            "both sides need the same type and the same [*.transport.websocket] tls"
        )
    if len(data) >= 2 and data[0] | data[1] << 8 in (32, 48):
        return f'the {other} speaks Noise: it uses type = "noise"; both sides need the same type'
    return None


class WebSocketSession(Session):
    """One connection's WebSocket state, on ``websockets``' sans-I/O protocol objects."""

    kind = "websocket"
    can_half_close = False

    def __init__(self, *, server_side: bool, addr: str | None = None) -> None:
        self._server_side = server_side
        self._ws: ClientProtocol | ServerProtocol
        if server_side:
            self._ws = ServerProtocol(max_size=(MAX_MESSAGE, MAX_FRAME), logger=_QUIET)
        else:
            assert addr is not None
            try:
                uri = parse_uri(f"ws://{addr}/")
            except Exception as exc:  # InvalidURI
                raise TransportSetupError(
                    f"remote_addr {addr} cannot be used in a WebSocket URL ({exc})"
                ) from None
            self._ws = ClientProtocol(uri, max_size=(MAX_MESSAGE, MAX_FRAME), logger=_QUIET)
        self._seen = 0
        self._pending: list[Any] = []  # frames that arrived with the handshake
        self._finished = False

    # handshake ----------------------------------------------------------------------------
    def start(self) -> None:
        ws = self._ws
        if isinstance(ws, ClientProtocol):
            ws.send_request(ws.connect())

    def handshake(self, data: bytes) -> bytes | None:
        if not data:
            return None
        if self._seen == 0:
            self._check_first_bytes(data)
        self._seen += len(data)
        ws = self._ws
        ws.receive_data(data)
        events = ws.events_received()
        if isinstance(ws, ServerProtocol):
            if ws.handshake_exc is not None:
                raise LayerError(self._bad_request(ws.handshake_exc))
            for i, event in enumerate(events):
                if isinstance(event, Request):
                    response = ws.accept(event)
                    ws.send_response(response)
                    if response.status_code != 101:
                        raise LayerError(self._bad_request(ws.handshake_exc))
                    self._pending = events[i + 1 :]
                    return b""
            return None
        if ws.handshake_exc is not None:
            raise LayerError(self._bad_response(ws.handshake_exc))
        for i, event in enumerate(events):
            if isinstance(event, Response):
                self._pending = events[i + 1 :]
                return b""
        return None

    def _check_first_bytes(self, data: bytes) -> None:
        """Refuse at once a peer that plainly speaks something else (HTTP starts with an
        upper-case method name or ``HTTP/``), instead of waiting for a line end that may never
        come."""
        from_server = not self._server_side
        if from_server:
            expected = b"HTTP/"
            if data[: len(expected)] == expected[: len(data)]:
                return
        elif 65 <= data[0] <= 90:  # GET, or another method the library will answer
            return
        sniffed = _sniff(data, from_server)
        if sniffed is not None:
            raise LayerError(sniffed)
        other = "server" if from_server else "client"
        what = "HTTP" if from_server else "an HTTP request"
        raise LayerError(
            f"the {other} did not send {what} (first bytes {data[:8].hex(' ')}); both sides "
            'need type = "websocket" with the same tls setting'
        )

    def _bad_request(self, exc: Exception | None) -> str:
        cause = f"{exc}; {exc.__cause__}" if exc is not None and exc.__cause__ else f"{exc}"
        return f"not a WebSocket upgrade request ({cause})"

    def _bad_response(self, exc: Exception) -> str:
        if isinstance(exc, InvalidStatus):
            response = exc.response
            return (
                f"the server refused the WebSocket upgrade ({response.status_code} "
                f"{response.reason_phrase}) - is remote_addr a ratui/rathole server with "
                'type = "websocket"?'
            )
        if isinstance(exc, InvalidHandshake) and exc.__cause__ is not None:
            return f"the server's answer is not a WebSocket handshake ({exc}: {exc.__cause__})"
        return f"the server's answer is not a WebSocket handshake ({exc})"

    def closed_during_handshake(self, server_side: bool) -> str:
        if server_side:
            return "the client closed the connection during the WebSocket handshake"
        return (
            "the server closed the connection during the WebSocket handshake - does it use "
            'type = "websocket" with the same [*.transport.websocket] tls?'
        )

    def describe_progress(self) -> str:
        if self._server_side:
            return f"{self._seen} bytes of the WebSocket request received"
        if self._seen == 0:
            return 'no answer from the server - does it use type = "websocket"?'
        return f"{self._seen} bytes of the WebSocket answer received"

    def take_output(self) -> bytes:
        chunks = self._ws.data_to_send()  # b"" entries mean "send EOF": closing does that
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # messages -----------------------------------------------------------------------------
    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        ws = self._ws
        if ws.state is not _OPEN:  # the peer's Close came in: the connection is ending
            return b""
        size = len(data)
        if size <= MAX_FRAME:
            ws.send_binary(data)
        else:
            view = memoryview(data)
            for start in range(0, size, MAX_FRAME):
                ws.send_binary(view[start : start + MAX_FRAME])
        return self.take_output()

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        ws = self._ws
        if data:
            ws.receive_data(data)
        events = ws.events_received()
        if self._pending:
            events = self._pending + events
            self._pending = []
        parts = []
        eof = False
        for frame in events:
            if not isinstance(frame, Frame):
                continue
            opcode = frame.opcode
            if opcode is _BINARY or opcode is _CONT:
                parts.append(frame.data)
            elif opcode is _CLOSE:
                eof = True
                break
            else:
                raise LayerError(
                    f"unexpected {_OPCODE_NAMES.get(opcode, opcode.name)} frame: rathole's "
                    "WebSocket transport carries only Binary messages (no pings)"
                )
        if not eof and ws.parser_exc is not None:
            raise LayerError(f"invalid WebSocket data ({ws.parser_exc})")
        if not parts:
            return b"", eof
        if len(parts) == 1:
            return bytes(parts[0]) if not isinstance(parts[0], bytes) else parts[0], eof
        return b"".join(parts), eof

    def finish(self) -> bytes:
        """A Close frame with no payload, as tungstenite's ``close(None)``."""
        if self._finished or self._ws.state is not _OPEN:
            return b""
        self._finished = True
        self._ws.send_close()
        return self.take_output()


class WebsocketTransport(LayeredTransport):
    """``type = "websocket"``: WebSocket over TCP, or over TLS with ``tls = true``."""

    def __init__(
        self, tcp: TcpTransportConfig, cfg: WebsocketConfig, tls: TlsConfig | None = None
    ) -> None:
        super().__init__(tcp)
        self.cfg = cfg
        self._tls = None
        if cfg.tls:
            if tls is None:
                raise TransportSetupError(
                    "[*.transport.websocket] tls = true needs a [*.transport.tls] table"
                )
            from .tls import TlsTransport

            self._tls = TlsTransport(tcp, tls)

    def check_server(self) -> None:
        if self._tls is not None:
            self._tls.check_server()

    def client_session(self, addr: str) -> Session:
        ws = WebSocketSession(server_side=False, addr=addr)
        if self._tls is None:
            return ws
        return _OverTls(self._tls.client_session(addr), ws, server_side=False)

    def server_session(self) -> Session:
        ws = WebSocketSession(server_side=True)
        if self._tls is None:
            return ws
        return _OverTls(self._tls.server_session(), ws, server_side=True)


class _OverTls(StackedSession):
    """WebSocket over TLS, with a hint when the peer's WebSocket has no TLS."""

    def handshake(self, data: bytes) -> bytes | None:
        try:
            return super().handshake(data)
        except LayerError as exc:
            if "plain HTTP" in str(exc):
                raise LayerError(
                    f"{exc}: it uses websocket without tls; both sides need the same "
                    "[*.transport.websocket] tls"
                ) from None
            raise

    def closed_during_handshake(self, server_side: bool) -> str:
        if server_side or self._outer_done:
            return super().closed_during_handshake(server_side)
        return (
            "the server closed the connection during the TLS handshake - does it use "
            'type = "websocket" with tls = true?'
        )
