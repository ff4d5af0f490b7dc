"""Client egress through ``[client.transport.tcp] proxy`` (PROTOCOL.md §5.5).

Every client connection, control and data channel alike and under every transport type, is a
TCP connection that :func:`open_connection` opens; with a proxy set it connects to the proxy,
runs the proxy's handshake on the raw socket and only then hands the socket to the
transport's protocol (plain :class:`~ratui.engine.channel.Channel`, or the Noise / TLS /
WebSocket link), which never knows a proxy was there.

* ``socks5://[user:password@]host:port``: RFC 1928 CONNECT, offering "no authentication"
  and, when the URL has credentials, RFC 1929 username/password. The target goes as a
  domain name (address type 3) even for an IP literal, as rathole's ``async-socks5`` does;
  an IPv6 literal goes without its brackets.
* ``http://[user:password@]host:port``: ``CONNECT host:port HTTP/1.1`` with a ``Host``
  header and, with credentials, ``Proxy-Authorization: Basic``; any 2xx answer opens the
  tunnel (as ``async-http-proxy``: it wants 200).

Credentials are used when the user name is not empty or a password is present (rathole:
helper.rs). Unlike rathole, ratui percent-decodes them (``p%40ss`` is sent as ``p@ss``, the
way curl reads proxy URLs; rathole sends the text as written, so credentials without ``%``
are sent the same by both), and it does not resolve ``remote_addr`` locally when a proxy is
set (rathole does, and fails when only the proxy can resolve the name).

The handshakes are sans-I/O (:class:`Socks5Handshake`, :class:`HttpConnectHandshake`): bytes
in, bytes out. A failure is a :class:`ProxyError` whose text names the proxy (never its
credentials) and what went wrong; the proxy has :data:`PROXY_TIMEOUT` seconds to answer.
"""

from __future__ import annotations

import asyncio
import base64
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

#: Seconds the proxy has to complete its handshake (the client's own connect limit is 5 s).
PROXY_TIMEOUT = 5.0

#: The longest HTTP answer to CONNECT accepted (async-http-proxy allows 4096 bytes too).
MAX_HTTP_RESPONSE = 4096

_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the target",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class ProxyError(ConnectionError):
    """The proxy could not be reached or refused the tunnel; ``str()`` is the whole reason."""


@dataclass(frozen=True)
class ProxyUrl:
    """A parsed ``proxy`` setting. ``repr``/``str`` never show the credentials."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> ProxyUrl:
        """Parse a URL the config loader has already checked (scheme, host, explicit port)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("socks5", "http") or not parts.hostname or port is None:
            raise ProxyError(
                'the proxy setting is not "socks5://[user:password@]host:port" or '
                '"http://[user:password@]host:port"'
            )
        user = parts.username
        password = parts.password
        if not user and password is None:
            user = None
        return cls(
            parts.scheme,
            parts.hostname,
            port,
            None if user is None else unquote(user),
            None if password is None else unquote(password),
        )

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme} proxy {host}:{self.port}"


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyHandshake(ABC):
    """One proxy handshake: :meth:`start`, then :meth:`feed` what the proxy sends until it
    returns ``done``; :attr:`rest` then holds any bytes that came behind the proxy's answer
    (already the tunnelled server's). Raise :class:`ProxyError` (reason only)."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None):
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.rest = b""
        self._buf = bytearray()

    @abstractmethod
    def start(self) -> bytes:
        """The first bytes to send."""

    @abstractmethod
    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Bytes from the proxy -> (bytes to send now, whether the tunnel is open)."""

    @abstractmethod
    def closed(self) -> str:
        """The reason to report when the proxy closes the connection at this point."""


class Socks5Handshake(ProxyHandshake):
    """RFC 1928 CONNECT with an optional RFC 1929 username/password step."""

    _GREETING, _AUTH, _CONNECT = range(3)

    def __init__(self, host: str, port: int, username: str | None, password: str | None):
        super().__init__(host, port, username, password)
        self._state = self._GREETING
        target = host.encode() if host.isascii() else host.encode("idna")
        if len(target) > 255:
            raise ProxyError(f"the host name {host!r} is too long for SOCKS5 (255 bytes)")
        self._target = target
        if username is not None:
            user, secret = username.encode(), (password or "").encode()
            if len(user) > 255 or len(secret) > 255:
                raise ProxyError("the proxy user name or password is longer than 255 bytes")
            self._auth = b"\x01" + bytes([len(user)]) + user + bytes([len(secret)]) + secret
        else:
            self._auth = b""

    def start(self) -> bytes:
        # As async-socks5: always offer "no authentication", and username/password too when
        # the URL has credentials.
        return b"\x05\x02\x00\x02" if self._auth else b"\x05\x01\x00"

    def _request(self) -> bytes:
        return (
            b"\x05\x01\x00\x03"
            + bytes([len(self._target)])
            + self._target
            + self.port.to_bytes(2, "big")
        )

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        buf = self._buf
        buf += data
        if self._state == self._GREETING:
            if len(buf) < 2:
                return b"", False
            if buf[0] != 5:
                raise ProxyError(self._not_socks(bytes(buf[:8])))
            method = buf[1]
            del buf[:2]
            if method == 0:
                self._state = self._CONNECT
                return self._request(), False
            if method == 2 and self._auth:
                self._state = self._AUTH
                return self._auth, False
            if method == 2 or (method == 0xFF and not self._auth):
                raise ProxyError(
                    "the proxy requires a user name and password, and the proxy URL has none "
                    '(use "socks5://user:password@host:port")'
                )
            if method == 0xFF:
                raise ProxyError(
                    "the proxy accepts neither no authentication nor username/password"
                )
            raise ProxyError(f"the proxy chose an authentication method not offered ({method})")
        if self._state == self._AUTH:
            if len(buf) < 2:
                return b"", False
            status = buf[1]
            del buf[:2]
            if status != 0:
                raise ProxyError(
                    f"the proxy rejected the user name or password (status {status}) - check "
                    "them in [client.transport.tcp] proxy"
                )
            self._state = self._CONNECT
            return self._request(), False
        # CONNECT reply: VER REP RSV ATYP BND.ADDR BND.PORT
        if len(buf) < 2:
            return b"", False
        if buf[0] != 5:
            raise ProxyError(f"the proxy's answer to CONNECT is not SOCKS5 (version {buf[0]})")
        if buf[1] != 0:
            reason = _SOCKS_REPLIES.get(buf[1], f"error code {buf[1]}")
            raise ProxyError(
                f"the proxy could not connect to {_authority(self.host, self.port)}: {reason}"
            )
        if len(buf) < 5:
            return b"", False
        atyp = buf[3]
        if atyp == 1:
            size = 4 + 4 + 2
        elif atyp == 4:
            size = 4 + 16 + 2
        elif atyp == 3:
            size = 4 + 1 + buf[4] + 2
        else:
            raise ProxyError(f"the proxy answered CONNECT with an unknown address type {atyp}")
        if len(buf) < size:
            return b"", False
        self.rest = bytes(buf[size:])
        buf.clear()
        return b"", True

    def _not_socks(self, head: bytes) -> str:
        if head.startswith(b"HTTP/"):
            return 'the proxy speaks HTTP, not SOCKS5: use "http://..." as the proxy URL'
        return f"the proxy does not speak SOCKS5 (it answered {head.hex(' ')})"

    def closed(self) -> str:
        if self._state == self._GREETING:
            if not self._auth:
                return (
                    "the proxy closed the connection after the greeting - does it need a user "
                    'name and password ("socks5://user:password@host:port")?'
                )
            return "the proxy closed the connection after the greeting"
        if self._state == self._AUTH:
            return (
                "the proxy closed the connection after the user name and password were sent - "
                "check them in [client.transport.tcp] proxy"
            )
        return (
            "the proxy closed the connection after CONNECT "
            f"{_authority(self.host, self.port)} - can it reach that address?"
        )


class HttpConnectHandshake(ProxyHandshake):
    """``CONNECT host:port HTTP/1.1`` with optional Basic proxy authentication."""

    def start(self) -> bytes:
        target = _authority(self.host, self.port)
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            lines.append(f"Proxy-Authorization: Basic {token}")
        lines.append("Proxy-Connection: Keep-Alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        buf = self._buf
        buf += data
        if buf[:5] != b"HTTP/"[: len(buf)]:
            raise ProxyError(self._not_http(bytes(buf[:8])))
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HTTP_RESPONSE:
                raise ProxyError(
                    f"the proxy's answer to CONNECT is longer than {MAX_HTTP_RESPONSE} bytes"
                )
            return b"", False
        head = bytes(buf[:end]).decode("latin-1")
        self.rest = bytes(buf[end + 4 :])
        buf.clear()
        status_line = head.split("\r\n", 1)[0]
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ProxyError(f"the proxy's answer is not HTTP ({status_line[:60]!r})")
        code = int(parts[1])
        reason = parts[2].strip() if len(parts) > 2 else ""
        status = f"{code} {reason}".strip()
        if 200 <= code < 300:
            return b"", True
        if code == 407:
            if self.username is None:
                raise ProxyError(
                    f"the proxy requires a user name and password ({status}), and the proxy "
                    'URL has none (use "http://user:password@host:port")'
                )
            raise ProxyError(
                f"the proxy rejected the user name or password ({status}) - check them in "
                "[client.transport.tcp] proxy"
            )
        raise ProxyError(f"the proxy refused CONNECT {_authority(self.host, self.port)} ({status})")

    def _not_http(self, head: bytes) -> str:
        if head[:1] == b"\x05":
            return 'the proxy speaks SOCKS5, not HTTP: use "socks5://..." as the proxy URL'
        return f"the proxy does not speak HTTP (it answered {head.hex(' ')})"

    def closed(self) -> str:
        return (
            "the proxy closed the connection before answering CONNECT "
            f"{_authority(self.host, self.port)} - can it reach that address?"
        )


def make_handshake(proxy: ProxyUrl, host: str, port: int) -> ProxyHandshake:
    kind = Socks5Handshake if proxy.scheme == "socks5" else HttpConnectHandshake
    return kind(host, port, proxy.username, proxy.password)


class _ProxyLink(asyncio.Protocol):
    """Drives a :class:`ProxyHandshake` on the connection to the proxy."""

    def __init__(self, handshake: ProxyHandshake, done: asyncio.Future[None]) -> None:
        self.handshake = handshake
        self.done = done
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.handshake.start())

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            self.handshake.rest += data  # only if the server spoke before the swap
            return
        try:
            reply, finished = self.handshake.feed(data)
        except ProxyError as exc:
            self.done.set_exception(exc)
            return
        assert self.transport is not None
        if reply:
            self.transport.write(reply)
        if finished:
            # Hold everything that follows until the transport's own protocol takes over.
            self.transport.pause_reading()
            self.done.set_result(None)

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_exception(ProxyError(self.handshake.closed()))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            reason = self.handshake.closed()
            if exc is not None:
                reason = f"{reason} ({exc})"
            self.done.set_exception(ProxyError(reason))


async def open_connection(
    protocol_factory: Callable[[], asyncio.Protocol],
    host: str,
    port: int,
    proxy: str | None,
) -> tuple[asyncio.Transport, asyncio.Protocol]:
    """``loop.create_connection(protocol_factory, host, port)``, through ``proxy`` if set.

    Through a proxy the returned transport is the connection to the proxy; the protocol
    sees ``connection_made`` only once the tunnel to ``host:port`` is open.
    """
    loop = asyncio.get_running_loop()
    if proxy is None:
        return await loop.create_connection(protocol_factory, host, port)  # type: ignore[return-value]
    url = ProxyUrl.parse(proxy)
    target = _authority(host, port)
    prefix = f"cannot reach {target} through the {url}"
    try:
        handshake = make_handshake(url, host, port)
    except ProxyError as exc:
        raise ProxyError(f"{prefix}: {exc}") from None
    done: asyncio.Future[None] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(
            lambda: _ProxyLink(handshake, done), url.host, url.port
        )
    except OSError as exc:
        raise ProxyError(
            f"cannot connect to the {url}: {exc.strerror or exc} (to reach {target})"
        ) from None
    try:
        try:
            async with asyncio.timeout(PROXY_TIMEOUT):
                await done
        except TimeoutError:
            raise ProxyError(
                f"{prefix}: no complete answer from the proxy within {PROXY_TIMEOUT:g} s"
            ) from None
        except ProxyError as exc:
            raise ProxyError(f"{prefix}: {exc}") from None
        if transport.is_closing():
            raise ProxyError(f"{prefix}: the proxy closed the connection right after CONNECT")
        protocol = protocol_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if not transport.is_closing():
            transport.resume_reading()
            if handshake.rest:
                protocol.data_received(handshake.rest)
    except BaseException:
        transport.abort()
        raise
    return transport, protocol  # type: ignore[return-value]
