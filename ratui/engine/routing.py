"""Host-name routing on a shared port (ratui extension ``sni``/``http_host``/``default_route``).

Pure functions and values, no I/O: what a visitor's first bytes say about where it wants to go,
and which service of a shared port takes it.

* :func:`sniff` looks at the bytes a visitor sent so far and says whether they are a TLS
  ClientHello (and its ``server_name``), an HTTP/1.x request head (and its ``Host``), or
  something else, or that more bytes are needed. Nothing is consumed or changed: the caller
  forwards every byte as it came, the ClientHello included (TLS passthrough).
* :func:`parse_pattern` checks a route pattern: an exact host name (``pi.example.com``) or a
  wildcard (``*.example.com``, which matches one *or more* labels in front of
  ``example.com``, never ``example.com`` itself). Host names and patterns are
  case-insensitive and a trailing dot is ignored.
* :class:`RouteTable` picks the service: an exact pattern beats any wildcard, the longest
  wildcard beats shorter ones, and the port's default route (if any) takes the rest.

Garbage never raises anything but :class:`NeedMore` and :class:`Malformed` inside the
parsers, and :func:`sniff` turns both into a verdict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

#: At most this many bytes are read from a visitor before deciding where it goes. A ClientHello
#: (even with post-quantum key shares) and an ordinary request head fit easily.
MAX_SNIFF_BYTES = 16 * 1024

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_MAX_HOST = 253
_TLS_HANDSHAKE = 22
_CLIENT_HELLO = 1
_SERVER_NAME = 0
_MAX_RECORD = 1 << 14
_METHOD = re.compile(rb"[A-Z]{1,16}")
_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [!-~]+ HTTP/\d\.\d")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class NeedMore(Exception):
    """The bytes so far are a valid beginning; the rest has not arrived yet."""


class Malformed(ValueError):
    """The bytes are not what they started to look like (or a host name is not valid)."""


class Kind(StrEnum):
    TLS = "tls"
    HTTP = "http"
    OTHER = "other"  # neither TLS nor HTTP/1.x, or too long to tell


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a visitor's first bytes are: ``host`` is the name it asked for (normalised), None
    when it names none or its bytes are malformed."""

    kind: Kind
    host: str | None = None


# --------------------------------------------------------------------------- host names


def normalize_host(name: str) -> str:
    """Lower-case, one trailing dot removed; :class:`Malformed` unless a valid DNS name (or an
    IPv4 literal, which has the same shape)."""
    host = name.lower().removesuffix(".")
    if len(host) > _MAX_HOST or not host.isascii() or not _HOST.fullmatch(host):
        raise Malformed(f"not a valid host name: {name[:80]!r}")
    return host


def parse_pattern(text: str) -> str:
    """The normalised form of a route pattern (``host`` or ``*.suffix``); :class:`Malformed`
    with a short reason otherwise."""
    if not isinstance(text, str) or not text:
        raise Malformed("empty pattern")
    if text.startswith("*."):
        suffix = text[2:]
        if "*" in suffix:
            raise Malformed("'*' may only be the whole first label, as in \"*.example.com\"")
        return "*." + normalize_host(suffix)
    if "*" in text:
        raise Malformed("'*' may only be the whole first label, as in \"*.example.com\"")
    return normalize_host(text)


# --------------------------------------------------------------------------- TLS ClientHello


class _Cursor:
    """Reads length-prefixed fields of a TLS structure; short input is :class:`Malformed`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, size: int) -> memoryview:
        end = self.pos + size
        if end > len(self.data):
            raise Malformed("truncated ClientHello")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> _Cursor:
        return _Cursor(self.take(self.number(length_size)))

    def rest(self) -> bytes:
        return bytes(self.take(self.left))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def tls_server_name(data: bytes | bytearray) -> str | None:
    """The ``server_name`` (host_name) of the ClientHello at the start of ``data``, None if it
    has none. The handshake message may span several TLS records, and each record may be cut
    anywhere: :class:`NeedMore` until the whole ClientHello is here."""
    handshake = bytearray()
    pos = 0
    while True:
        header = data[pos : pos + 5]
        if header[:1] and header[0] != _TLS_HANDSHAKE:
            raise Malformed("not a TLS handshake record")
        if header[1:2] and header[1] != 3:
            raise Malformed("not a TLS record version")
        if len(header) < 5:
            raise NeedMore
        length = int.from_bytes(header[3:5], "big")
        if not 0 < length <= _MAX_RECORD:
            raise Malformed(f"TLS record length {length}")
        body = data[pos + 5 : pos + 5 + length]
        handshake += body
        if handshake and handshake[0] != _CLIENT_HELLO:
            raise Malformed("first handshake message is not a ClientHello")
        if len(handshake) >= 4:
            size = 4 + int.from_bytes(handshake[1:4], "big")
            if len(handshake) >= size:
                return _client_hello_server_name(handshake[4:size])
        if len(body) < length:
            raise NeedMore
        pos += 5 + length


def _client_hello_server_name(body: bytes | bytearray) -> str | None:
    hello = _Cursor(body)
    hello.take(2 + 32)  # legacy_version, random
    hello.vector(1)  # legacy_session_id
    hello.vector(2)  # cipher_suites
    hello.vector(1)  # legacy_compression_methods
    if not hello.left:
        return None  # no extensions at all
    extensions = hello.vector(2)
    while extensions.left:
        kind = extensions.number(2)
        ext = extensions.vector(2)
        if kind != _SERVER_NAME:
            continue
        names = ext.vector(2)
        while names.left:
            name_type = names.number(1)
            name = names.vector(2).rest()
            if name_type == 0:
                try:
                    return normalize_host(name.decode("ascii"))
                except UnicodeDecodeError:
                    raise Malformed("server_name is not ASCII") from None
        return None
    return None


# --------------------------------------------------------------------------- HTTP/1.x


def http_host(data: bytes | bytearray) -> str | None:
    """The ``Host`` of the HTTP/1.x request head at the start of ``data`` (port stripped,
    normalised), None if the head has none. :class:`NeedMore` until the blank line that ends
    the head; :class:`Malformed` for anything that is not a request head, and for two Host
    headers (which servers must refuse, and which could route one way and be read another)."""
    end = _HEAD_END.search(data)
    if end is None:
        line_end = data.find(b"\n")
        first = bytes(data if line_end < 0 else data[:line_end]).removesuffix(b"\r")
        if line_end >= 0 and not _REQUEST_LINE.fullmatch(first):
            raise Malformed("not an HTTP/1.x request line")
        raise NeedMore
    lines = bytes(data[: end.start()]).split(b"\n")
    if not _REQUEST_LINE.fullmatch(lines[0].removesuffix(b"\r")):
        raise Malformed("not an HTTP/1.x request line")
    hosts = []
    for raw in lines[1:]:
        line = raw.removesuffix(b"\r")
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise Malformed("not an HTTP header line")
        if name.lower() == b"host":
            hosts.append(value.strip())
    if len(hosts) > 1:
        raise Malformed("more than one Host header")
    if not hosts:
        return None
    try:
        text = hosts[0].decode("ascii")
    except UnicodeDecodeError:
        raise Malformed("Host is not ASCII") from None
    return normalize_host(_strip_port(text))


def _strip_port(host: str) -> str:
    """``example.com:8080`` -> ``example.com``; an IPv6 literal keeps its address only."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        return name
    return host


def could_be_http(data: bytes | bytearray) -> bool:
    """True while ``data`` can still be the start of an HTTP/1.x request (a method in capitals
    and a space); what follows is checked by :func:`http_host`."""
    space = data.find(b" ", 0, 17)
    if space < 0:
        return len(data) <= 16 and _METHOD.fullmatch(bytes(data)) is not None
    return _METHOD.fullmatch(bytes(data[:space])) is not None


# --------------------------------------------------------------------------- sniffing


def sniff(data: bytes | bytearray, *, final: bool = False) -> Sniffed | None:
    """What ``data``, the first bytes of a visitor, is; None while more bytes are needed.

    ``final`` says no more will come (the visitor half-closed, or the caller stops waiting):
    an incomplete TLS or HTTP start is then a verdict without a host. Past
    :data:`MAX_SNIFF_BYTES` the same happens, so a visitor never makes the caller buffer more.
    """
    if not data:
        return Sniffed(Kind.OTHER) if final else None
    final = final or len(data) >= MAX_SNIFF_BYTES
    window = data[:MAX_SNIFF_BYTES]
    if window[0] == _TLS_HANDSHAKE:
        kind, parse = Kind.TLS, tls_server_name
    elif could_be_http(window):
        kind, parse = Kind.HTTP, http_host
    else:
        return Sniffed(Kind.OTHER)
    try:
        return Sniffed(kind, parse(window))
    except NeedMore:
        return Sniffed(kind) if final else None
    except Malformed:
        return Sniffed(kind) if kind is Kind.TLS else Sniffed(Kind.OTHER)


# --------------------------------------------------------------------------- route table


@dataclass(frozen=True, slots=True)
class Routes:
    """The routes of one service: ``sni`` and ``http_host`` patterns (normalised, see
    :func:`parse_pattern`), and whether it takes what matches nothing."""

    sni: tuple[str, ...] = ()
    http_host: tuple[str, ...] = ()
    default: bool = False

    @property
    def any(self) -> bool:
        return bool(self.sni or self.http_host or self.default)

    def labels(self) -> tuple[str, ...]:
        """How the dashboard names them: the patterns (each once), then ``default``."""
        names = dict.fromkeys((*self.sni, *self.http_host, *(("default",) if self.default else ())))
        return tuple(names)


@dataclass(frozen=True, slots=True)
class Match:
    """Where a visitor goes: ``service``, for ``host`` (None if it named none), and whether
    only the default route took it."""

    service: str
    host: str | None
    default: bool = False

    @property
    def label(self) -> str:
        """The route as recorded on the visitor: the host name, marked when by default."""
        if not self.default:
            return self.host or ""
        return f"{self.host} (default)" if self.host else "(default)"


def conflicts(services: Mapping[str, Routes]) -> list[str]:
    """Why these services cannot share one port (empty if they can): a pattern in two of
    them, or two defaults. Each reason names the services."""
    problems = []
    defaults = [name for name, routes in services.items() if routes.default]
    if len(defaults) > 1:
        problems.append(f"default_route = true in more than one service: {', '.join(defaults)}")
    for key in ("sni", "http_host"):
        owner: dict[str, str] = {}
        for name, routes in services.items():
            for pattern in getattr(routes, key):
                first = owner.setdefault(pattern, name)
                if first != name:
                    problems.append(
                        f'{key} pattern "{pattern}" is in both {first} and {name} (ambiguous)'
                    )
    return problems


class RouteTable:
    """The routes of every service on one port. The config refuses conflicts (see
    :func:`conflicts`); should two services still claim a pattern or the default, as for a
    moment during a reload, the later one in ``services`` has it."""

    def __init__(self, services: Mapping[str, Routes]) -> None:
        self.default: str | None = None
        self._exact: dict[Kind, dict[str, str]] = {Kind.TLS: {}, Kind.HTTP: {}}
        self._wild: dict[Kind, dict[str, str]] = {Kind.TLS: {}, Kind.HTTP: {}}
        for name, routes in services.items():
            if routes.default:
                self.default = name
            for kind, patterns in ((Kind.TLS, routes.sni), (Kind.HTTP, routes.http_host)):
                for pattern in patterns:
                    if pattern.startswith("*."):
                        self._wild[kind][pattern[2:]] = name
                    else:
                        self._exact[kind][pattern] = name

    def match(self, sniffed: Sniffed) -> Match | None:
        """The service for a sniffed visitor, or None when nothing (not even a default)
        takes it."""
        host = sniffed.host
        if host is not None and sniffed.kind in self._exact:
            name = self._exact[sniffed.kind].get(host)
            if name is not None:
                return Match(name, host)
            wild = self._wild[sniffed.kind]
            if wild:
                rest = host
                while "." in rest:  # longest suffix first: the longest wildcard wins
                    rest = rest.partition(".")[2]
                    name = wild.get(rest)
                    if name is not None:
                        return Match(name, host)
        if self.default is not None:
            return Match(self.default, host, default=True)
        return None


# --------------------------------------------------------------------------- refusals

#: TLS alert descriptions (RFC 8446 §6.2) sent to a TLS visitor that is not forwarded.
ALERT_UNRECOGNIZED_NAME = 112
ALERT_INTERNAL_ERROR = 80


def tls_alert(description: int) -> bytes:
    """A fatal TLS alert record, as a server may send instead of its ServerHello."""
    return bytes((21, 3, 3, 0, 2, 2, description))


def http_response(status: str) -> bytes:
    """A short ``HTTP/1.1 <status>`` response that closes the connection."""
    body = f"{status}\n".encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
