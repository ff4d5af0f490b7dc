"""Host-name routing on a shared port (ratui extension ``sni``/``http_host``/``default_route``).

Pure functions and values, no I/O: what a visitor's first bytes say about where it wants to go,
and which service of a shared port takes it.

* :class:`Sniff` (and :func:`sniff`, for bytes that are all here) looks at the bytes a
  visitor sent so far and says whether they are a TLS ClientHello (and its ``server_name``),
  an HTTP/1.x request head (and the host it names: the authority of an absolute-form target,
  else its ``Host``; an IPv6 literal names none), a malformed HTTP/1.x request head, or
  something else, or that more bytes are needed. Nothing is consumed or changed: the caller
  forwards every byte as it came, the ClientHello included (TLS passthrough). Only the first
  request of a connection is looked at.
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

import ipaddress
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
_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} ([!-~]+) HTTP/\d\.\d")
_ABSOLUTE_TARGET = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class NeedMore(Exception):
    """The bytes so far are a valid beginning; the rest has not arrived yet."""


class Malformed(ValueError):
    """The bytes are not what they started to look like (or a host name is not valid)."""


class BadRequest(Malformed):
    """A valid HTTP/1.x request line, and a request head that is not valid after it."""


class Kind(StrEnum):
    TLS = "tls"
    HTTP = "http"
    OTHER = "other"  # neither TLS nor HTTP/1.x, or too long to tell


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What a visitor's first bytes are: ``host`` is the name it asked for (normalised), None
    when it names none or its bytes are malformed. ``malformed`` marks an HTTP request whose
    head is not valid HTTP/1.x (answered ``400 Bad Request``, never routed)."""

    kind: Kind
    host: str | None = None
    malformed: bool = False


# --------------------------------------------------------------------------- host names


def normalize_host(name: str) -> str:
    """Lower-case, one trailing dot removed; :class:`Malformed` unless a valid DNS name (or an
    IPv4 literal, which has the same shape)."""
    if not name.isascii():  # before lower(): "\u212a" (Kelvin sign) lowers to "k"
        raise Malformed(f"not a valid host name: {name[:80]!r}")
    host = name.lower().removesuffix(".")
    if len(host) > _MAX_HOST or not _HOST.fullmatch(host):
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


class _ClientHelloReader:
    """Collects the ClientHello from the TLS records at the start of a growing buffer. Each
    complete record is copied once; a record still arriving costs a few header bytes per look,
    and the ClientHello is parsed only once the handshake header says all of it is here."""

    def __init__(self) -> None:
        self.pos = 0  # where the first record not yet collected starts
        self.handshake = bytearray()  # the bodies of the records before it
        self.scanned = 0  # bytes looked at or copied, all calls together

    def server_name(self, data: bytes | bytearray, end: int) -> str | None:
        """The ``server_name`` of the ClientHello in ``data[:end]``; :class:`NeedMore` until
        all of it is there."""
        while True:
            header = bytes(data[self.pos : min(self.pos + 5, end)])
            self.scanned += len(header)
            if header[:1] and header[0] != _TLS_HANDSHAKE:
                raise Malformed("not a TLS handshake record")
            if header[1:2] and header[1] != 3:
                raise Malformed("not a TLS record version")
            if len(header) < 5:
                raise NeedMore
            length = int.from_bytes(header[3:5], "big")
            if not 0 < length <= _MAX_RECORD:
                raise Malformed(f"TLS record length {length}")
            body = self.pos + 5
            have = min(length, end - body)
            start = self.handshake[:4]
            start += data[body : body + min(have, 4 - len(start))]
            self.scanned += len(start)
            if start and start[0] != _CLIENT_HELLO:
                raise Malformed("first handshake message is not a ClientHello")
            if len(start) == 4:
                size = 4 + int.from_bytes(start[1:4], "big")
                missing = size - len(self.handshake)
                if missing <= have:
                    self.scanned += missing
                    hello = self.handshake + data[body : body + missing]
                    return _client_hello_server_name(hello[4:])
            if have < length:
                raise NeedMore
            self.handshake += data[body : body + length]
            self.scanned += length
            self.pos = body + length


def tls_server_name(data: bytes | bytearray) -> str | None:
    """The ``server_name`` (host_name) of the ClientHello at the start of ``data``, None if it
    has none. The handshake message may span several TLS records, and each record may be cut
    anywhere: :class:`NeedMore` until the whole ClientHello is here."""
    return _ClientHelloReader().server_name(data, len(data))


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


def _request_target(line: bytes) -> bytes:
    """The request target of an HTTP/1.x request line; :class:`Malformed` if it is none."""
    match = _REQUEST_LINE.fullmatch(line.removesuffix(b"\r"))
    if match is None:
        raise Malformed("not an HTTP/1.x request line")
    return match[1]


def _head_host(target: bytes, headers: bytes) -> str | None:
    """The host a request names: the authority of an absolute-form target (RFC 9112 §3.2.2),
    else its ``Host``; None if it names none. :class:`BadRequest` for a malformed header
    section: a line that is no header (a folded line among them), two Host headers, a Host
    that is empty or not a host name, a Host other than an absolute target's authority."""
    hosts = []
    for raw in headers.split(b"\n") if headers else ():
        name, colon, value = raw.removesuffix(b"\r").partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest("not an HTTP header line")
        if name.lower() == b"host":
            hosts.append(value.strip(b" \t"))
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    host = _authority_host(hosts[0]) if hosts else None
    absolute = _ABSOLUTE_TARGET.match(target)
    if absolute is None:
        return host
    authority = _authority_host(absolute[1].rpartition(b"@")[2])
    if hosts and host != authority:
        raise BadRequest("Host is not the authority of the absolute request target")
    return authority


def _authority_host(value: bytes) -> str | None:
    """The normalised host name of ``host[:port]``; None for an IPv6 literal (no route names
    one); :class:`BadRequest` for anything else that is not a host name."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("Host is not ASCII") from None
    if text.startswith("["):
        literal, _, port = text[1:].partition("]")
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise BadRequest(f"not an IPv6 literal: {text[:80]!r}") from None
        if port and not (port.startswith(":") and port[1:].isdigit()):
            raise BadRequest(f"not a port: {port[:80]!r}")
        return None
    name, colon, port = text.rpartition(":")
    try:
        return normalize_host(name if colon and port.isdigit() else text)
    except Malformed as exc:
        raise BadRequest(str(exc)) from None


def http_host(data: bytes | bytearray) -> str | None:
    """The host named by the HTTP/1.x request head at the start of ``data`` (see
    :func:`_head_host`). :class:`NeedMore` until the blank line that ends the head;
    :class:`Malformed` if the first line is not a request line, :class:`BadRequest` if what
    follows it is malformed."""
    state = Sniff()
    state.feed(data)
    return state.http_host(len(data))


def _http_start(data: bytes | bytearray, start: int, end: int) -> bool | None:
    """Whether ``data[start:end]`` starts as an HTTP/1.x request does (a method in capitals,
    then a space): None while it still could."""
    space = data.find(b" ", start, min(end, start + 17))
    if space < 0:
        method = bytes(data[start:end])
        return None if len(method) <= 16 and _METHOD.fullmatch(method) else False
    return _METHOD.fullmatch(bytes(data[start:space])) is not None


# --------------------------------------------------------------------------- sniffing


class Sniff:
    """The first bytes of one visitor, kept in ``buffer`` as they arrive (see :meth:`feed`),
    and what they are (see :meth:`verdict`).

    However the bytes are cut, each is looked at a bounded number of times: the end of an
    HTTP head is searched for in the new bytes only (and the three before them), the request
    line is checked once, and a ClientHello is parsed once its records are all here.
    ``scanned`` counts the bytes the parsers looked at."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._kind: Kind | None = None
        self._result: Sniffed | None = None
        self._hello = _ClientHelloReader()
        self._http_scanned = 0
        self._start = 0  # HTTP: where the request line starts (after stray blank lines)
        self._line_end = -1  # HTTP: the request line's LF, once it came
        self._target = b""
        self._searched = 0  # HTTP: how far the buffer has been searched

    @property
    def scanned(self) -> int:
        return self._hello.scanned + self._http_scanned

    def feed(self, data: bytes | bytearray) -> None:
        self.buffer += data

    def verdict(self, final: bool = False) -> Sniffed | None:
        """What the bytes so far are; None while more are needed. ``final`` says no more
        will come (the visitor half-closed, or the caller stops waiting): an incomplete TLS
        or HTTP start is then a verdict without a host. Past :data:`MAX_SNIFF_BYTES` the same
        happens, so a visitor never makes the caller buffer more. Once given, a verdict
        stays."""
        if self._result is None:
            end = min(len(self.buffer), MAX_SNIFF_BYTES)
            self._result = self._decide(end, final or end == MAX_SNIFF_BYTES)
        return self._result

    def _decide(self, end: int, final: bool) -> Sniffed | None:
        if self._kind is None:
            self._kind = self._kind_of(end)
            if self._kind is None:
                if not final:
                    return None
                return Sniffed(Kind.HTTP if self._start < end else Kind.OTHER)
        kind = self._kind
        try:
            if kind is Kind.TLS:
                return Sniffed(kind, self._hello.server_name(self.buffer, end))
            if kind is Kind.HTTP:
                return Sniffed(kind, self.http_host(end))
        except NeedMore:
            return Sniffed(kind) if final else None
        except BadRequest:
            return Sniffed(Kind.HTTP, malformed=True)
        except Malformed:
            return Sniffed(Kind.TLS) if kind is Kind.TLS else Sniffed(Kind.OTHER)
        return Sniffed(Kind.OTHER)

    def _kind_of(self, end: int) -> Kind | None:
        """TLS, HTTP or other, from the first bytes; None while it cannot be told yet."""
        buf = self.buffer
        if not end:
            return None
        if buf[0] == _TLS_HANDSHAKE:
            return Kind.TLS
        while self._start < end and buf[self._start] in b"\r\n":
            self._start += 1
        if self._start == end:
            return None
        http = _http_start(buf, self._start, end)
        if http is None:
            return None
        return Kind.HTTP if http else Kind.OTHER

    def http_host(self, end: int) -> str | None:
        """The host the HTTP request head in ``buffer[:end]`` names (see :func:`http_host`)."""
        buf = self.buffer
        if self._line_end < 0:
            self._line_end = buf.find(b"\n", max(self._start, self._searched), end)
            self._http_scanned += end - max(self._start, self._searched)
            if self._line_end < 0:
                self._searched = end
                raise NeedMore
            self._target = _request_target(bytes(buf[self._start : self._line_end]))
            if self._start:
                raise BadRequest("blank line before the request line")
            self._searched = self._line_end
        start = max(self._line_end, self._searched - 3)
        head_end = _HEAD_END.search(buf, start, end)
        self._http_scanned += end - start
        if head_end is None:
            self._searched = end
            raise NeedMore
        headers = bytes(buf[self._line_end + 1 : max(self._line_end + 1, head_end.start())])
        return _head_host(self._target, headers)


def sniff(data: bytes | bytearray, *, final: bool = False) -> Sniffed | None:
    """What ``data``, the first bytes of a visitor, is; None while more bytes are needed (see
    :meth:`Sniff.verdict`, which does the same for bytes that arrive piece by piece)."""
    state = Sniff()
    state.feed(data)
    return state.verdict(final)


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
