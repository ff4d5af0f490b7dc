"""rathole v0.5 configuration: schema, parsing, validation and hot-reload diffing.

The schema and defaults follow PROTOCOL.md §6. Parsing uses the stdlib ``tomllib``. Every
problem is reported as one :class:`ConfigError` line that names the file, the table, the key
and what is wrong. Secrets (tokens, passwords, private keys, proxy credentials) never appear in
``repr()`` of the dataclasses nor in error messages.

Where ratui is stricter than rathole, it refuses at load time what rathole would only refuse
(or panic on) at start-up or on first use:

* ``type = "noise"`` without ``[*.transport.noise]`` (rathole: "Missing noise config" at start);
* ``type = "websocket"`` without ``[*.transport.websocket]`` (rathole: "Missing websocket
  config" at start), and ``websocket.tls = true`` without ``[*.transport.tls]``;
* a TLS ``pkcs12`` without ``pkcs12_password`` (rathole unwraps and panics), and a server that
  uses TLS through WebSocket without ``pkcs12``/``pkcs12_password``;
* Noise keys that are not base64 of exactly 32 bytes, checked when ``type = "noise"`` (rathole
  only fails at start-up or in the handshake);
* a proxy URL without host or without an explicit, non-default port (rathole panics on use);
* addresses that are not ``host:port`` (rathole only fails when binding/connecting), including
  an IPv6 host without brackets.

It accepts a leading UTF-8 byte order mark, as rathole does.

ratui extensions (README "ratui extensions"; a rathole config means the same here, since none
of these keys exist in rathole and rathole's own examples hold no ``${`` nor ``$$``):

* ``${VAR}`` / ``${VAR:-default}`` in any string value is replaced by the environment variable
  (the default is used when VAR is unset or empty); ``$$`` is a literal ``$``; any other ``$``
  stays as written. An unset VAR without a default is a ConfigError naming the variable.
* ``token_file`` (services) and ``default_token_file`` ([server]/[client]): the token is read
  from that file (one trailing newline stripped), in place of ``token``/``default_token``.
* ``proxy_protocol = "v1" | "v2"`` in a TCP ``[server.services.NAME]``: the server sends a
  PROXY protocol header ahead of the visitor's bytes (see :mod:`ratui.engine.proxy_header`).
* ``sni``, ``http_host`` (arrays of host patterns) and ``default_route`` in a TCP
  ``[server.services.NAME]``: several services may share one ``bind_addr``, each visitor going
  to the service its TLS server name or HTTP Host names (see :mod:`ratui.engine.routing`).
  Where one service on a ``bind_addr`` has these keys, every service there must be TCP and
  routed; a pattern in two of them, or two defaults, is refused, and so are routed services
  whose addresses overlap on one port but are spelled differently (``0.0.0.0:443`` and
  ``[::]:443`` or ``127.0.0.1:443``; ``localhost:443`` and ``127.0.0.1:443``), which could
  not share one listener. Services without these keys on one address load as in rathole:
  only one of them listens at a time (the server warns at start and on reload).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import stat
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from .routing import Malformed, Routes, conflicts, parse_pattern

__all__ = [
    "ClientConfig",
    "ClientServiceConfig",
    "Config",
    "ConfigDiff",
    "ConfigError",
    "NoiseConfig",
    "ProxyProtocol",
    "ServerConfig",
    "ServerServiceConfig",
    "ServiceType",
    "TcpTransportConfig",
    "TlsConfig",
    "TransportConfig",
    "TransportType",
    "WebsocketConfig",
    "config_diff",
    "file_permissions_warning",
    "holds_secrets",
    "load_config",
    "parse_config",
    "permissions_warning",
    "redacted",
    "split_host_port",
    "token_file_warning",
    "token_files",
]

DEFAULT_HEARTBEAT_INTERVAL = 30
DEFAULT_HEARTBEAT_TIMEOUT = 40
DEFAULT_CLIENT_RETRY_INTERVAL = 1
DEFAULT_NODELAY = True
DEFAULT_KEEPALIVE_SECS = 20
DEFAULT_KEEPALIVE_INTERVAL = 8
DEFAULT_NOISE_PATTERN = "Noise_NK_25519_ChaChaPoly_BLAKE2s"

# rathole reads u64, but TOML (and rathole's toml 0.5) stops at i64; tomllib reads any size.
_INT_MAX = 2**63 - 1
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POS = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$", re.S)
_TOML_EOF = re.compile(r"^(?P<msg>.*) \(at end of document\)$", re.S)


# --------------------------------------------------------------------------- errors


class ConfigError(Exception):
    """One line: '<file>: [<table>] <key>: <what is wrong>'; str(e) is that line.

    ``table`` is the dotted TOML path of the table (``"server.services.web"``, names that are
    not bare keys are quoted) or ``""``; ``key`` is the raw key name or ``""``.
    ``line``/``column`` are set for TOML syntax errors.
    """

    def __init__(
        self,
        source: str,
        table: str = "",
        key: str = "",
        problem: str = "",
        *,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.source = source
        self.table = table
        self.key = key
        self.problem = problem
        self.line = line
        self.column = column
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [f"{self.source}:"]
        if self.table:
            parts.append(f"[{self.table}]")
        if self.key:
            parts.append(f"{_key_str(self.key)}:")
        parts.append(self.problem)
        return " ".join(parts)

    def __str__(self) -> str:
        return self._line()

    def __reduce__(self) -> tuple[Any, ...]:  # keep the attributes across pickling
        return (
            type(self),
            (self.source, self.table, self.key, self.problem),
            {"line": self.line, "column": self.column},
        )


# --------------------------------------------------------------------------- schema


class ProxyProtocol(StrEnum):
    V1 = "v1"
    V2 = "v2"


class ServiceType(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class TransportType(StrEnum):
    TCP = "tcp"
    TLS = "tls"
    NOISE = "noise"
    WEBSOCKET = "websocket"


@dataclass(frozen=True)
class TcpTransportConfig:
    nodelay: bool = DEFAULT_NODELAY
    keepalive_secs: int = DEFAULT_KEEPALIVE_SECS
    keepalive_interval: int = DEFAULT_KEEPALIVE_INTERVAL
    proxy: str | None = None

    def __repr__(self) -> str:
        # The proxy URL may carry a password: show it masked.
        proxy = None if self.proxy is None else _redact_url(self.proxy)
        return (
            f"TcpTransportConfig(nodelay={self.nodelay!r}, keepalive_secs={self.keepalive_secs!r},"
            f" keepalive_interval={self.keepalive_interval!r}, proxy={proxy!r})"
        )


@dataclass(frozen=True)
class TlsConfig:
    hostname: str | None = None
    trusted_root: str | None = None
    pkcs12: str | None = None
    pkcs12_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NoiseConfig:
    pattern: str = DEFAULT_NOISE_PATTERN
    local_private_key: str | None = field(default=None, repr=False)
    remote_public_key: str | None = None


@dataclass(frozen=True)
class WebsocketConfig:
    tls: bool


@dataclass(frozen=True)
class TransportConfig:
    type: TransportType = TransportType.TCP
    tcp: TcpTransportConfig = field(default_factory=TcpTransportConfig)
    tls: TlsConfig | None = None
    noise: NoiseConfig | None = None
    websocket: WebsocketConfig | None = None


@dataclass(frozen=True)
class ServerServiceConfig:
    name: str
    bind_addr: str
    token: str = field(repr=False)  # resolved: the service's own token or server.default_token
    type: ServiceType = ServiceType.TCP
    nodelay: bool | None = None
    proxy_protocol: ProxyProtocol | None = None  # ratui extension
    # ratui extension: where the token was read from (the token itself is compared)
    token_file: str | None = field(default=None, compare=False)
    # ratui extension: host-name routing on a shared bind_addr (see ratui.engine.routing)
    sni: tuple[str, ...] = ()
    http_host: tuple[str, ...] = ()
    default_route: bool = False

    @property
    def routes(self) -> Routes:
        return Routes(self.sni, self.http_host, self.default_route)


@dataclass(frozen=True)
class ClientServiceConfig:
    name: str
    local_addr: str
    token: str = field(repr=False)  # resolved: the service's own token or client.default_token
    type: ServiceType = ServiceType.TCP
    nodelay: bool | None = None
    retry_interval: int = DEFAULT_CLIENT_RETRY_INTERVAL  # resolved from client.retry_interval
    token_file: str | None = field(default=None, compare=False)  # ratui extension


def _empty_services() -> Mapping[str, Any]:
    return types.MappingProxyType({})


@dataclass(frozen=True)
class ServerConfig:
    bind_addr: str
    # Read-only mapping in file order; excluded from hash() (mappings are not hashable).
    services: Mapping[str, ServerServiceConfig] = field(default_factory=_empty_services, hash=False)
    default_token: str | None = field(default=None, repr=False)
    transport: TransportConfig = field(default_factory=TransportConfig)
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
    default_token_file: str | None = field(default=None, compare=False)  # ratui extension


@dataclass(frozen=True)
class ClientConfig:
    remote_addr: str
    services: Mapping[str, ClientServiceConfig] = field(default_factory=_empty_services, hash=False)
    default_token: str | None = field(default=None, repr=False)
    transport: TransportConfig = field(default_factory=TransportConfig)
    heartbeat_timeout: int = DEFAULT_HEARTBEAT_TIMEOUT
    retry_interval: int = DEFAULT_CLIENT_RETRY_INTERVAL
    default_token_file: str | None = field(default=None, compare=False)  # ratui extension


@dataclass(frozen=True)
class Config:
    server: ServerConfig | None = None
    client: ClientConfig | None = None
    source: str = field(default="<config>", compare=False)


# --------------------------------------------------------------------------- helpers


def split_host_port(addr: str) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[v6]:port"`` into ``(host, port)``; host without brackets.

    Raises ValueError (with a short reason) for anything else, including an IPv6 host without
    brackets, an empty host and a port outside 0..65535.
    """
    if not isinstance(addr, str):
        raise ValueError("not a string")
    host, sep, port_s = addr.rpartition(":")
    if not sep:
        raise ValueError("no port")
    if not port_s:
        raise ValueError("empty port")
    if not (port_s.isascii() and port_s.isdigit()):
        raise ValueError("port is not a number")
    if len(port_s.lstrip("0")) > 5 or int(port_s) > 65535:
        raise ValueError("port out of range 0..65535")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("unclosed [ in host")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("not an IPv6 address inside [ ]") from None
    elif ":" in host:
        raise ValueError('an IPv6 host needs brackets, e.g. "[::1]:2333"')
    elif "[" in host or "]" in host:
        raise ValueError("stray bracket in host")
    if not host:
        raise ValueError("empty host")
    if any(c.isspace() or not c.isprintable() for c in host):
        raise ValueError("space or control character in host")
    return host, int(port_s)


def _key_str(key: str) -> str:
    """A TOML key as written in a file: bare if possible, else quoted."""
    return key if _BARE_KEY.fullmatch(key) else _quote(key)


def _quote(s: str, limit: int | None = None) -> str:
    """A TOML basic string on one line; non-printable characters are escaped."""
    cut = limit is not None and len(s) > limit
    if cut:
        s = s[:limit]
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    return '"' + "".join(out) + ('..."' if cut else '"')


def _show(value: Any) -> str:
    """A short, one-line, TOML-like rendering of a parsed value for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _quote(value, limit=60)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return _kind(value)


def _kind(value: Any) -> str:
    """The TOML type of a value, with an article (used where the value itself is secret)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__  # pragma: no cover - tomllib yields nothing else


def _redact_url(url: str) -> str:
    """Mask the password in a URL's user info (the user name stays).

    Splits at the last "@" of the whole string, not of the authority, so that a password that
    contains "/" or "?" is still masked.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{after}"


def _decode_key(text: str) -> bytes | None:
    """Standard base64 (padding optional, canonical last symbol) -> bytes, or None."""
    if not text.isascii():
        return None
    unpadded = text.rstrip("=")
    if len(text) - len(unpadded) > 2:
        return None
    try:
        raw = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode().rstrip("=") != unpadded:
        return None  # non-canonical trailing bits, or padding in the wrong place
    return raw


# --------------------------------------------------------------------------- parsing

_T = TypeVar("_T")
_MISSING = object()


class _Table:
    """One parsed TOML table plus where it lives, with typed getters that raise ConfigError."""

    def __init__(self, source: str, path: str, data: dict[str, Any], allowed: tuple[str, ...]):
        self.source = source
        self.path = path
        self.data = data
        for key in data:
            if key not in allowed:
                self.fail(key, f"unknown key (expected one of {', '.join(allowed)})")

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.source, self.path, key, problem)

    def get(self, key: str, check: Callable[[Any], bool], expected: str, default: Any) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                self.fail(key, "missing (required)")
            return default
        if not check(value):
            self.fail(key, f"expected {expected}, got {_show(value)}")
        return value

    def string(self, key: str, default: Any = None, *, secret: bool = False) -> Any:
        value = self.data.get(key, _MISSING)
        if secret and value is not _MISSING and not isinstance(value, str):
            self.fail(key, f"expected a string, got {_kind(value)}")
        return self.get(key, lambda v: isinstance(v, str), "a string", default)

    def boolean(self, key: str, default: Any = None) -> Any:
        return self.get(key, lambda v: isinstance(v, bool), "true or false", default)

    def u64(self, key: str, default: int) -> int:
        value = self.get(key, _is_int, "a non-negative integer", default)
        if value < 0:
            self.fail(key, f"expected a non-negative integer, got {value}")
        if value > _INT_MAX:
            self.fail(key, f"expected an integer of at most {_INT_MAX}, got {value}")
        return value

    def addr(self, key: str) -> str:
        value = self.get(key, lambda v: isinstance(v, str), '"host:port"', _MISSING)
        try:
            split_host_port(value)
        except ValueError as e:
            self.fail(key, f'expected "host:port", got {_show(value)} ({e})')
        return value

    def enum(self, key: str, enum: type[_T], default: Any) -> _T:
        names = [m.value for m in enum]  # type: ignore[attr-defined]
        quoted = [f'"{n}"' for n in names]
        expected = " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)
        value = self.get(key, lambda v: isinstance(v, str) and v in names, expected, default)
        return enum(value)  # type: ignore[call-arg]

    def table(self, key: str, allowed: tuple[str, ...], required: bool = False) -> _Table | None:
        return _sub_table(self.source, self.path, self.data, key, allowed, required)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _join(path: str, key: str) -> str:
    return f"{path}.{_key_str(key)}" if path else _key_str(key)


def _sub_table(
    source: str,
    path: str,
    data: dict[str, Any],
    key: str,
    allowed: tuple[str, ...],
    required: bool = False,
) -> _Table | None:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise ConfigError(source, path, key, "missing (required)")
        return None
    if not isinstance(value, dict):
        raise ConfigError(source, path, key, f"expected a table, got {_show(value)}")
    return _Table(source, _join(path, key), value, allowed)


# rathole's keys, then ratui's extensions (README "ratui extensions").
_SERVER_KEYS = (
    "bind_addr",
    "default_token",
    "services",
    "transport",
    "heartbeat_interval",
    "default_token_file",
)
_CLIENT_KEYS = (
    "remote_addr",
    "default_token",
    "services",
    "transport",
    "heartbeat_timeout",
    "retry_interval",
    "default_token_file",
)
_SERVER_SERVICE_KEYS = (
    "type",
    "bind_addr",
    "token",
    "nodelay",
    "token_file",
    "proxy_protocol",
    "sni",
    "http_host",
    "default_route",
)
_CLIENT_SERVICE_KEYS = ("type", "local_addr", "token", "nodelay", "retry_interval", "token_file")
_TRANSPORT_KEYS = ("type", "tcp", "tls", "noise", "websocket")
_TCP_KEYS = ("nodelay", "keepalive_secs", "keepalive_interval", "proxy")
_TLS_KEYS = ("hostname", "trusted_root", "pkcs12", "pkcs12_password")
_NOISE_KEYS = ("pattern", "local_private_key", "remote_public_key")
_WEBSOCKET_KEYS = ("tls",)


def _check_proxy(tcp: _Table, url: str) -> None:
    """socks5:// or http:// with a host and an explicit, non-default port.

    rathole panics ("proxy url should have port field") when the port is missing or is the
    scheme's default (80 for http), so both are refused here. The value is never printed.
    """
    example = '"socks5://[user:password@]host:port" or "http://[user:password@]host:port"'
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        tcp.fail("proxy", f"not a valid URL (expected {example})")
    if not url.isascii() or any(c.isspace() for c in url):
        tcp.fail("proxy", f"not a valid URL (expected {example})")
    if parts.scheme not in ("socks5", "http"):
        scheme = _quote(parts.scheme, limit=20) if parts.scheme else "none"
        tcp.fail("proxy", f"unknown proxy scheme {scheme} (expected {example})")
    if not parts.hostname:
        tcp.fail("proxy", f"no host (expected {example})")
    if port is None:
        tcp.fail("proxy", f"no port; rathole needs an explicit port (expected {example})")
    if parts.scheme == "http" and port == 80:
        tcp.fail(
            "proxy",
            "port 80 is the default port of http://, which rathole cannot use (it panics);"
            " use a proxy on another port",
        )


def _parse_transport(parent: _Table, is_server: bool) -> TransportConfig:
    t = parent.table("transport", _TRANSPORT_KEYS)
    if t is None:
        return TransportConfig()
    ttype = t.enum("type", TransportType, _MISSING)

    tcp = TcpTransportConfig()
    tcp_t = t.table("tcp", _TCP_KEYS)
    if tcp_t is not None:
        proxy = tcp_t.string("proxy", secret=True)
        if proxy is not None:
            _check_proxy(tcp_t, proxy)
        tcp = TcpTransportConfig(
            nodelay=tcp_t.boolean("nodelay", DEFAULT_NODELAY),
            keepalive_secs=tcp_t.u64("keepalive_secs", DEFAULT_KEEPALIVE_SECS),
            keepalive_interval=tcp_t.u64("keepalive_interval", DEFAULT_KEEPALIVE_INTERVAL),
            proxy=proxy,
        )

    tls = None
    tls_t = t.table("tls", _TLS_KEYS)
    if tls_t is not None:
        tls = TlsConfig(
            hostname=tls_t.string("hostname"),
            trusted_root=tls_t.string("trusted_root"),
            pkcs12=tls_t.string("pkcs12"),
            pkcs12_password=tls_t.string("pkcs12_password", secret=True),
        )

    noise = None
    noise_t = t.table("noise", _NOISE_KEYS)
    if noise_t is not None:
        noise = NoiseConfig(
            pattern=noise_t.string("pattern", DEFAULT_NOISE_PATTERN),
            local_private_key=noise_t.string("local_private_key", secret=True),
            remote_public_key=noise_t.string("remote_public_key", secret=True),
        )

    websocket = None
    ws_t = t.table("websocket", _WEBSOCKET_KEYS)
    if ws_t is not None:
        websocket = WebsocketConfig(tls=ws_t.boolean("tls", _MISSING))

    uses_tls = ttype is TransportType.TLS
    if ttype is TransportType.WEBSOCKET:
        # rathole only fails at start-up ("Missing websocket config"); refusing here is clearer.
        if websocket is None:
            t.fail("websocket", 'missing, required when type = "websocket"')
        if websocket.tls and tls is None:
            t.fail("tls", "missing, required when websocket.tls = true")
        uses_tls = websocket.tls
    elif ttype is TransportType.TLS and tls is None:
        t.fail("tls", 'missing, required when type = "tls"')
    elif ttype is TransportType.NOISE:
        # rathole only fails at start-up ("Missing noise config"); refusing here is clearer.
        if noise is None or noise_t is None:
            t.fail("noise", 'missing, required when type = "noise"')
        # Checked only when Noise is used, so that placeholder keys in an unused table (as in
        # rathole's own full.toml) load as they do in rathole.
        for key in ("local_private_key", "remote_public_key"):
            value = getattr(noise, key)
            if value is not None:
                raw = _decode_key(value)
                if raw is None:
                    noise_t.fail(key, "not valid base64 (value not shown)")
                if len(raw) != 32:
                    noise_t.fail(key, f"expected a 32-byte key, got {len(raw)} bytes")

    if uses_tls and tls is not None and tls_t is not None:
        why = 'when type = "tls"' if ttype is TransportType.TLS else "when websocket.tls = true"
        if is_server:
            for key in ("pkcs12", "pkcs12_password"):
                if getattr(tls, key) is None:
                    tls_t.fail(key, f"missing, required on the server {why}")
        elif tls.pkcs12 is not None and tls.pkcs12_password is None:
            tls_t.fail("pkcs12_password", "missing, required when pkcs12 is set")

    return TransportConfig(type=ttype, tcp=tcp, tls=tls, noise=noise, websocket=websocket)


def _parse_server(src: str, data: dict[str, Any]) -> ServerConfig | None:
    s = _sub_table(src, "", data, "server", _SERVER_KEYS)
    if s is None:
        return None
    bind_addr = s.addr("bind_addr")
    default_token, default_token_file = _token_pair(s, "default_token")
    heartbeat_interval = s.u64("heartbeat_interval", DEFAULT_HEARTBEAT_INTERVAL)
    transport = _parse_transport(s, is_server=True)
    services: dict[str, ServerServiceConfig] = {}
    tables: dict[str, _Table] = {}
    for name, svc in _services(s, _SERVER_SERVICE_KEYS):
        stype = svc.enum("type", ServiceType, ServiceType.TCP)
        proxy_protocol = None
        if "proxy_protocol" in svc.data:
            proxy_protocol = svc.enum("proxy_protocol", ProxyProtocol, _MISSING)
        if proxy_protocol is not None and stype is not ServiceType.TCP:
            svc.fail("proxy_protocol", 'only for TCP services, not type = "udp"')
        token, token_file = _token(svc, default_token, default_token_file, "server")
        sni, http_host = _patterns(svc, "sni", stype), _patterns(svc, "http_host", stype)
        default_route = svc.boolean("default_route", False)
        if default_route and stype is not ServiceType.TCP:
            svc.fail("default_route", 'only for TCP services, not type = "udp"')
        services[name] = ServerServiceConfig(
            name=name,
            type=stype,
            bind_addr=svc.addr("bind_addr"),
            token=token,
            nodelay=svc.boolean("nodelay"),
            proxy_protocol=proxy_protocol,
            token_file=token_file,
            sni=sni,
            http_host=http_host,
            default_route=default_route,
        )
        tables[name] = svc
    _check_shared_addresses(services, tables)
    return ServerConfig(
        bind_addr=bind_addr,
        services=types.MappingProxyType(services),
        default_token=default_token,
        transport=transport,
        heartbeat_interval=heartbeat_interval,
        default_token_file=default_token_file,
    )


def _patterns(svc: _Table, key: str, stype: ServiceType) -> tuple[str, ...]:
    """A routing key (ratui extension): a non-empty array of host patterns, normalised."""
    value = svc.data.get(key, _MISSING)
    if value is _MISSING:
        return ()
    if stype is not ServiceType.TCP:
        svc.fail(key, 'only for TCP services, not type = "udp"')
    if not isinstance(value, list) or not value:
        svc.fail(key, f"expected a non-empty array of host names, got {_show(value)}")
    patterns: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            svc.fail(key, f"expected host names (strings), got {_show(item)}")
        try:
            pattern = parse_pattern(item)
        except Malformed as e:
            svc.fail(key, f"{_show(item)}: {e}")
        if pattern in patterns:
            svc.fail(key, f"{_show(item)} is listed twice")
        patterns[pattern] = None
    return tuple(patterns)


def _check_shared_addresses(
    services: Mapping[str, ServerServiceConfig], tables: Mapping[str, _Table]
) -> None:
    """TCP services on one ``bind_addr`` where one of them is routed must all be routed,
    without conflicts; a routed service may also be alone on its address (visitors it does not
    match are refused). Without routes, services may share an address as in rathole, where
    only one listens at a time. A UDP service is a socket of its own: it may use the port
    number of TCP services (DNS on TCP and UDP 53)."""
    by_addr: dict[tuple[ServiceType, str, int], list[str]] = {}
    for name, svc in services.items():
        by_addr.setdefault((svc.type, *split_host_port(svc.bind_addr)), []).append(name)
    for names in by_addr.values():
        if len(names) < 2 or not any(services[name].routes.any for name in names):
            continue
        shown = ", ".join(names)
        for name in names:
            if not services[name].routes.any:
                tables[name].fail(
                    "bind_addr",
                    f"shared by {shown}: each service on a shared address needs sni, "
                    "http_host or default_route = true",
                )
        problems = conflicts({name: services[name].routes for name in names})
        if problems:
            tables[names[-1]].fail("bind_addr", f"{services[names[-1]].bind_addr}: {problems[0]}")
    _check_overlapping_addresses(services, tables, by_addr)


_ANY_HOSTS = frozenset({"0.0.0.0", "::"})
_LOOPBACK_NAMES = {"localhost": frozenset({"127.0.0.1", "::1"})}


def _check_overlapping_addresses(
    services: Mapping[str, ServerServiceConfig],
    tables: Mapping[str, _Table],
    by_addr: Mapping[tuple[ServiceType, str, int], list[str]],
) -> None:
    """A routed service's address may not overlap, on the same port, an address spelled
    differently (a wildcard and a specific host, the IPv4 and the IPv6 wildcard, ``localhost``
    and its loopback address): each spelling would get a listener of its own, and the second
    would retry "address in use" for ever."""
    hosts: dict[tuple[ServiceType, int], list[str]] = {}
    for stype, host, port in by_addr:
        hosts.setdefault((stype, port), []).append(host)
    for (stype, port), spelled in hosts.items():
        for i, first in enumerate(spelled):
            for second in spelled[i + 1 :]:
                if not _hosts_overlap(first, second):
                    continue
                names = by_addr[(stype, first, port)] + by_addr[(stype, second, port)]
                routed = [name for name in names if services[name].routes.any]
                if routed:
                    a, b = (services[n].bind_addr for n in (names[0], names[-1]))
                    tables[routed[-1]].fail(
                        "bind_addr",
                        f"{a} ({names[0]}) and {b} ({names[-1]}) overlap on port {port}; "
                        "routed services share one listener only with the same bind_addr, "
                        "spelled the same way",
                    )


def _hosts_overlap(first: str, second: str) -> bool:
    """Whether listening on both hosts (differently spelled) would take the same addresses."""
    if first in _ANY_HOSTS or second in _ANY_HOSTS:
        return True
    return bool(
        _LOOPBACK_NAMES.get(first.lower(), {first}) & _LOOPBACK_NAMES.get(second.lower(), {second})
    )


def _parse_client(src: str, data: dict[str, Any]) -> ClientConfig | None:
    c = _sub_table(src, "", data, "client", _CLIENT_KEYS)
    if c is None:
        return None
    remote_addr = c.addr("remote_addr")
    default_token, default_token_file = _token_pair(c, "default_token")
    heartbeat_timeout = c.u64("heartbeat_timeout", DEFAULT_HEARTBEAT_TIMEOUT)
    retry_interval = c.u64("retry_interval", DEFAULT_CLIENT_RETRY_INTERVAL)
    transport = _parse_transport(c, is_server=False)
    services: dict[str, ClientServiceConfig] = {}
    for name, svc in _services(c, _CLIENT_SERVICE_KEYS):
        stype = svc.enum("type", ServiceType, ServiceType.TCP)
        token, token_file = _token(svc, default_token, default_token_file, "client")
        services[name] = ClientServiceConfig(
            name=name,
            type=stype,
            local_addr=svc.addr("local_addr"),
            token=token,
            nodelay=svc.boolean("nodelay"),
            retry_interval=svc.u64("retry_interval", retry_interval),
            token_file=token_file,
        )
    return ClientConfig(
        remote_addr=remote_addr,
        services=types.MappingProxyType(services),
        default_token=default_token,
        transport=transport,
        heartbeat_timeout=heartbeat_timeout,
        retry_interval=retry_interval,
        default_token_file=default_token_file,
    )


def _services(role: _Table, allowed: tuple[str, ...]) -> list[tuple[str, _Table]]:
    """The service tables of [server]/[client] in file order; `services` is required."""
    value = role.data.get("services", _MISSING)
    if value is _MISSING:
        role.fail("services", "missing (required)")
    if not isinstance(value, dict):
        role.fail("services", f"expected a table, got {_show(value)}")
    path = _join(role.path, "services")
    result = []
    for name in value:
        svc = _sub_table(role.source, path, value, name, allowed)
        assert svc is not None
        result.append((name, svc))
    return result


def _token_pair(table: _Table, key: str) -> tuple[str | None, str | None]:
    """``key`` or ``key + "_file"`` (ratui extension), at most one of them: (token, path)."""
    file_key = key + "_file"
    token = table.string(key, secret=True)
    path = table.string(file_key)
    if path is None:
        return token, None
    if token is not None:
        table.fail(file_key, f"set together with {key}; use exactly one of them")
    return _read_token_file(table, file_key, path), path


def _read_token_file(table: _Table, key: str, path: str) -> str:
    """The token in ``path``: UTF-8 text, one trailing newline (LF or CRLF) stripped."""
    shown = _quote(path, limit=200)
    if not path:
        table.fail(key, "empty path")
    try:
        with open(path, "rb") as f:
            raw = f.read(64 * 1024 + 1)
    except OSError as e:
        table.fail(key, f"cannot read {shown}: {e.strerror or e}")
    if len(raw) > 64 * 1024:
        table.fail(key, f"{shown} is larger than 64 KiB; not a token file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        table.fail(key, f"{shown} is not UTF-8 text")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        table.fail(key, f"{shown} is empty")
    return text


def _token(
    svc: _Table, default_token: str | None, default_file: str | None, role: str
) -> tuple[str, str | None]:
    """The service's resolved token and the file it came from (if any)."""
    token, path = _token_pair(svc, "token")
    if token is None:
        if default_token is None:
            svc.fail("token", f"not set, and [{role}] has no default_token")
        return default_token, default_file
    return token, path


# ${VAR}, ${VAR:-default}, $$; a "${" that does not close is caught by the last alternative.
_ENV_REF = re.compile(r"\$(?:\$|\{(?P<body>[^}]*)\}|(?P<open>\{))")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand_env(
    source: str, path: str, data: dict[str, Any], env: Mapping[str, str]
) -> dict[str, Any]:
    """A copy of ``data`` with ``${VAR}`` references expanded in every string value (ratui
    extension). Errors name the variable, never a value."""

    def expand(key: str, value: str) -> str:
        if "$" not in value:
            return value

        def one(m: re.Match[str]) -> str:
            if m["open"] is not None:
                raise ConfigError(source, path, key, 'unclosed "${" (write "$$" for a "$")')
            body = m["body"]
            if body is None:
                return "$"
            name, sep, default = body.partition(":-")
            if not _ENV_NAME.fullmatch(name):
                raise ConfigError(
                    source,
                    path,
                    key,
                    f"bad environment reference {_quote('${' + body + '}', limit=60)}"
                    ' (expected "${NAME}" or "${NAME:-default}"; "$$" is a "$")',
                )
            got = env.get(name)
            if got is None or (sep and not got):
                if sep:
                    return default
                raise ConfigError(
                    source, path, key, f"environment variable {name} is not set (and no default)"
                )
            return got

        return _ENV_REF.sub(one, value)

    def walk(key: str, value: Any) -> Any:
        if isinstance(value, str):
            return expand(key, value)
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        if isinstance(value, dict):
            return _expand_env(source, _join(path, key), value, env)
        return value

    return {k: walk(k, v) for k, v in data.items()}


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Parse and validate a rathole v0.5 TOML config; raises ConfigError on any problem.

    ``env`` (default ``os.environ``) is what ``${VAR}`` references expand from."""
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except ValueError as e:  # tomllib.TOMLDecodeError, or int() digit limits
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        where = ""
        if m := _TOML_POS.match(msg):
            line, col = int(m["line"]), int(m["col"])
        elif m := _TOML_EOF.match(msg):  # where the text ends: its last line, after its end
            last = text.rsplit("\n", 1)[-1]
            line, col, where = text.count("\n") + 1, len(last) + 1, " (end of file)"
        else:
            raise ConfigError(source, problem=f"invalid TOML: {msg}") from None
        raise ConfigError(
            source,
            problem=f"line {line}, column {col}{where}: invalid TOML: {m['msg']}",
            line=line,
            column=col,
        ) from None
    except RecursionError:
        raise ConfigError(source, problem="invalid TOML: nested too deeply") from None

    data = _expand_env(source, "", data, os.environ if env is None else env)
    top = _Table(source, "", data, ("server", "client"))
    server = _parse_server(source, top.data)
    client = _parse_client(source, top.data)
    if server is None and client is None:
        raise ConfigError(source, problem="neither [server] nor [client] is defined")
    return Config(server=server, client=client, source=source)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and parse a config file; ``source`` in errors is the path as given."""
    source = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(source, problem=f"cannot read: {e.strerror or e}") from None
    return parse_config_bytes(raw, source)


def parse_config_bytes(data: bytes, source: str) -> Config:
    """:func:`parse_config` for the bytes of a file (as read by :func:`load_config` or by the
    config watcher): the text must be UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            source, problem=f"cannot read: not UTF-8 text (bad byte at offset {e.start})"
        ) from None
    return parse_config(text, source)


def holds_secrets(config: Config) -> bool:
    """True if the config has a token, a Noise private key, a PKCS#12 password or proxy
    credentials."""
    for role in (config.server, config.client):
        if role is None:
            continue
        if role.default_token is not None and role.default_token_file is None:
            return True
        if any(svc.token_file is None for svc in role.services.values()):
            return True  # a token written in the file, the service's own or the default one
        tls, noise = role.transport.tls, role.transport.noise
        if noise is not None and noise.local_private_key is not None:
            return True
        if tls is not None and tls.pkcs12_password is not None:
            return True
        if role.transport.tcp.proxy is not None and "@" in role.transport.tcp.proxy:
            return True
    return False


def file_permissions_warning(config: Config) -> str | None:
    """:func:`permissions_warning` for the file ``config`` was read from (None for a config
    that does not come from a file, or a file that is gone), joined with
    :func:`token_file_warning` for each token file the config reads."""
    warnings = []
    if not config.source.startswith("<"):
        try:
            mode = os.stat(config.source).st_mode
        except OSError:
            pass
        else:
            warnings.append(permissions_warning(config, mode))
    for path in token_files(config):
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        warnings.append(token_file_warning(path, mode))
    shown = [w for w in warnings if w is not None]
    return "; ".join(shown) if shown else None


def token_files(config: Config) -> tuple[str, ...]:
    """The token files (``token_file``/``default_token_file``) a config reads, each once."""
    paths: dict[str, None] = {}
    for role in (config.server, config.client):
        if role is None:
            continue
        if role.default_token_file is not None:
            paths[role.default_token_file] = None
        for svc in role.services.values():
            if svc.token_file is not None:
                paths[svc.token_file] = None
    return tuple(paths)


def token_file_warning(path: str, mode: int) -> str | None:
    """The warning for a token file that users other than its owner may read, or None."""
    if not mode & 0o077:
        return None
    return (
        f"token file {path} may be read or changed by other users "
        f"(mode {stat.S_IMODE(mode):04o}); restrict it with: chmod 600 {path}"
    )


def permissions_warning(config: Config, mode: int) -> str | None:
    """The warning for a config file that holds secrets and that users other than its owner
    may read (``mode`` is its ``st_mode``), or None. Names the file, never a secret."""
    if not mode & 0o077 or not holds_secrets(config):
        return None
    return (
        f"{config.source} holds tokens or keys but other users may read or change it "
        f"(mode {stat.S_IMODE(mode):04o}); restrict it with: chmod 600 {config.source}"
    )


# --------------------------------------------------------------------------- redaction

_SECRET_FIELDS = frozenset({"token", "default_token", "pkcs12_password", "local_private_key"})


def redacted(cfg: Any) -> str:
    """A repr of any config object with every secret shown as '***' (or None if unset)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        parts = []
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name)
            if f.name in _SECRET_FIELDS:
                shown = "None" if value is None else "'***'"
            elif f.name == "proxy" and isinstance(value, str):
                shown = repr(_redact_url(value))
            else:
                shown = redacted(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(cfg).__name__}({', '.join(parts)})"
    if isinstance(cfg, Mapping):
        return "{" + ", ".join(f"{k!r}: {redacted(v)}" for k, v in cfg.items()) + "}"
    return repr(cfg)


# --------------------------------------------------------------------------- hot reload


@dataclass(frozen=True)
class ConfigDiff:
    """What a reload changes (PROTOCOL.md §6.5).

    ``restart_<role>``: the block appeared or disappeared, or a key other than ``services``
    changed: stop the running instance (if any) and start from the new config (if any). The
    service tuples are then empty, since everything restarts. Otherwise ``*_added``,
    ``*_removed`` and ``*_changed`` name the services to start, stop and replace (in file order).
    """

    restart_server: bool
    restart_client: bool
    server_added: tuple[str, ...] = ()
    server_removed: tuple[str, ...] = ()
    server_changed: tuple[str, ...] = ()
    client_added: tuple[str, ...] = ()
    client_removed: tuple[str, ...] = ()
    client_changed: tuple[str, ...] = ()

    @property
    def unchanged(self) -> bool:
        """True when the reload needs no action at all."""
        return not any(getattr(self, f.name) for f in dataclasses.fields(self))


def _role_diff(
    old: ServerConfig | ClientConfig | None, new: ServerConfig | ClientConfig | None
) -> tuple[bool, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    if old is None and new is None:
        return False, (), (), ()
    if old is None or new is None:
        return True, (), (), ()
    for f in dataclasses.fields(old):
        if f.name != "services" and f.compare and getattr(old, f.name) != getattr(new, f.name):
            return True, (), (), ()
    added = tuple(n for n in new.services if n not in old.services)
    removed = tuple(n for n in old.services if n not in new.services)
    changed = tuple(
        n for n in new.services if n in old.services and old.services[n] != new.services[n]
    )
    return False, added, removed, changed


def config_diff(old: Config, new: Config) -> ConfigDiff:
    """Classify a reload from ``old`` to ``new`` as rathole's config watcher does."""
    rs, sa, sr, sc = _role_diff(old.server, new.server)
    rc, ca, cr, cc = _role_diff(old.client, new.client)
    return ConfigDiff(rs, rc, sa, sr, sc, ca, cr, cc)
