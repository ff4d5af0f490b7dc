"""Tests for ratui.engine.config: schema defaults, rathole's shipped configs, exact error lines,
token resolution, secret hygiene, fuzzing and hot-reload diffing."""

from __future__ import annotations

import string
import tarfile
import textwrap
from datetime import UTC, date
from pathlib import Path

import pytest
import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ratui.engine.config import (
    ClientConfig,
    ClientServiceConfig,
    Config,
    ConfigDiff,
    ConfigError,
    NoiseConfig,
    ServerConfig,
    ServerServiceConfig,
    ServiceType,
    TcpTransportConfig,
    TlsConfig,
    TransportConfig,
    TransportType,
    config_diff,
    load_config,
    parse_config,
    redacted,
    split_host_port,
)

RATHOLE_TARBALL = Path("/work/shared/rathole/vendor/rathole-0.5.0.tar.gz")

# rathole's examples/noise_nk key pair (PROTOCOL.md §10 checks that they match).
NK_PRIVATE = "QLYMByBnjgM254zT6YKaBVvuAA61swyZfFxoA/SKZHM="
NK_PUBLIC = "xrpknQcAagcd/b9foMwxSCD+EindWxq450NEONk8XQo="

SERVER_MIN = """
[server]
bind_addr = "0.0.0.0:2333"
default_token = "123"
[server.services.foo1]
bind_addr = "0.0.0.0:5202"
"""

CLIENT_MIN = """
[client]
remote_addr = "localhost:2333"
default_token = "123"
[client.services.foo1]
local_addr = "127.0.0.1:80"
"""


def parse(text: str, source: str = "x.toml") -> Config:
    return parse_config(textwrap.dedent(text), source)


def error_of(text: str, source: str = "x.toml") -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, source)
    line = str(info.value)
    assert "\n" not in line
    return line


# --------------------------------------------------------------------------- defaults


def test_server_defaults() -> None:
    cfg = parse(SERVER_MIN)
    assert cfg.client is None
    assert cfg.source == "x.toml"
    s = cfg.server
    assert s is not None
    assert s.bind_addr == "0.0.0.0:2333"
    assert s.default_token == "123"
    assert s.heartbeat_interval == 30
    assert s.transport == TransportConfig()
    svc = s.services["foo1"]
    assert svc == ServerServiceConfig(
        name="foo1", bind_addr="0.0.0.0:5202", token="123", type=ServiceType.TCP, nodelay=None
    )


def test_client_defaults() -> None:
    c = parse(CLIENT_MIN).client
    assert c is not None
    assert c.remote_addr == "localhost:2333"
    assert c.heartbeat_timeout == 40
    assert c.retry_interval == 1
    assert c.transport == TransportConfig()
    svc = c.services["foo1"]
    assert svc.type is ServiceType.TCP
    assert svc.nodelay is None
    assert svc.retry_interval == 1
    assert svc.token == "123"


def test_transport_defaults() -> None:
    t = TransportConfig()
    assert t.type is TransportType.TCP
    assert t.tls is None and t.noise is None and t.websocket is None
    assert t.tcp == TcpTransportConfig(
        nodelay=True, keepalive_secs=20, keepalive_interval=8, proxy=None
    )
    assert TlsConfig() == TlsConfig(None, None, None, None)
    assert NoiseConfig().pattern == "Noise_NK_25519_ChaChaPoly_BLAKE2s"
    assert NoiseConfig().local_private_key is None
    assert NoiseConfig().remote_public_key is None


def test_empty_subtables_take_defaults() -> None:
    cfg = parse(
        CLIENT_MIN
        + """
        [client.transport]
        type = "noise"
        [client.transport.tcp]
        [client.transport.noise]
        [client.transport.tls]
        """
    )
    assert cfg.client is not None
    t = cfg.client.transport
    assert t.type is TransportType.NOISE
    assert t.tcp == TcpTransportConfig()
    assert t.noise == NoiseConfig()
    assert t.tls == TlsConfig()
    assert t.websocket is None


def test_all_keys_set() -> None:
    cfg = parse(
        f"""
        [server]
        bind_addr = "[::]:2333"
        heartbeat_interval = 0
        [server.transport]
        type = "noise"
        [server.transport.tcp]
        nodelay = false
        keepalive_secs = 5
        keepalive_interval = 2
        [server.transport.noise]
        pattern = "Noise_KK_25519_ChaChaPoly_BLAKE2s"
        local_private_key = "{NK_PRIVATE}"
        remote_public_key = "{NK_PUBLIC}"
        [server.services.u]
        type = "udp"
        bind_addr = "127.0.0.1:0"
        token = "t"
        nodelay = true

        [client]
        remote_addr = "[::1]:2333"
        heartbeat_timeout = 0
        retry_interval = 7
        [client.transport]
        type = "websocket"
        [client.transport.websocket]
        tls = false
        [client.services.u]
        type = "udp"
        local_addr = "127.0.0.1:53"
        token = "t"
        nodelay = false
        retry_interval = 3
        [client.services.v]
        local_addr = "127.0.0.1:54"
        token = "t"
        """
    )
    s, c = cfg.server, cfg.client
    assert s is not None and c is not None
    assert s.heartbeat_interval == 0
    assert s.transport.tcp == TcpTransportConfig(False, 5, 2, None)
    assert s.transport.noise == NoiseConfig(
        "Noise_KK_25519_ChaChaPoly_BLAKE2s", NK_PRIVATE, NK_PUBLIC
    )
    assert s.services["u"] == ServerServiceConfig("u", "127.0.0.1:0", "t", ServiceType.UDP, True)
    assert c.heartbeat_timeout == 0
    assert c.transport.type is TransportType.WEBSOCKET
    assert c.transport.websocket is not None and c.transport.websocket.tls is False
    assert c.services["u"] == ClientServiceConfig(
        "u", "127.0.0.1:53", "t", ServiceType.UDP, False, 3
    )
    assert c.services["v"].retry_interval == 7  # inherited from [client]


def test_services_keep_file_order_and_are_read_only() -> None:
    cfg = parse(
        """
        [server]
        bind_addr = "0.0.0.0:2333"
        default_token = "x"
        [server.services.zeta]
        bind_addr = "0.0.0.0:1"
        [server.services.alpha]
        bind_addr = "0.0.0.0:2"
        [server.services."with.dot and space"]
        bind_addr = "0.0.0.0:3"
        [server.services.""]
        bind_addr = "0.0.0.0:4"
        """
    )
    assert cfg.server is not None
    assert list(cfg.server.services) == ["zeta", "alpha", "with.dot and space", ""]
    assert cfg.server.services["with.dot and space"].name == "with.dot and space"
    with pytest.raises(TypeError):
        cfg.server.services["new"] = cfg.server.services["zeta"]  # type: ignore[index]


def test_empty_services_allowed() -> None:
    cfg = parse('[server]\nbind_addr = "0.0.0.0:1"\n[server.services]\n')
    assert cfg.server is not None and dict(cfg.server.services) == {}


def test_configs_are_hashable_and_frozen() -> None:
    cfg = parse(SERVER_MIN + CLIENT_MIN)
    hash(cfg)
    with pytest.raises(AttributeError):
        cfg.server.bind_addr = "x:1"  # type: ignore[misc, union-attr]


def test_bom_is_accepted() -> None:
    """rathole accepts a UTF-8 byte order mark (checked against the binary)."""
    assert parse("\ufeff" + SERVER_MIN).server is not None


# --------------------------------------------------------------------------- rathole's configs

# Configs rathole itself rejects: the same files must fail here, with these lines.
RATHOLE_INVALID = {
    "tests/config_test/invalid_config/missing_tls_client.toml": (
        '[client.transport] tls: missing, required when type = "tls"'
    ),
    "tests/config_test/invalid_config/missing_tls_server.toml": (
        '[server.transport.tls] pkcs12: missing, required on the server when type = "tls"'
    ),
    "tests/config_test/invalid_config/missing_tls_server2.toml": (
        '[server.transport] tls: missing, required when type = "tls"'
    ),
}
# Shipped configs that rathole accepts but ratui intentionally refuses: none. (full.toml has
# placeholder noise keys, "key_encoded_in_base64"; they are only checked when type = "noise",
# and full.toml uses type = "tcp", so it loads as in rathole.)
RATHOLE_REFUSED: dict[str, str] = {}


def _rathole_configs() -> list[str]:
    if not RATHOLE_TARBALL.exists():
        return []
    with tarfile.open(RATHOLE_TARBALL) as tar:
        return sorted(
            n.split("/", 1)[1]
            for n in tar.getnames()
            if n.endswith(".toml") and not n.endswith("Cargo.toml")
        )


@pytest.fixture(scope="module")
def rathole_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not RATHOLE_TARBALL.exists():
        pytest.skip("rathole source tarball not available")
    out = tmp_path_factory.mktemp("rathole")
    with tarfile.open(RATHOLE_TARBALL) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".toml")]
        tar.extractall(out, members=members, filter="data")
    return out / "rathole-0.5.0"


def test_rathole_ships_examples() -> None:
    names = _rathole_configs()
    if not names:
        pytest.skip("rathole source tarball not available")
    assert sum(n.startswith("examples/") for n in names) >= 12


@pytest.mark.parametrize("name", _rathole_configs())
def test_rathole_config(rathole_dir: Path, name: str) -> None:
    path = rathole_dir / name
    if name in RATHOLE_INVALID or name in RATHOLE_REFUSED:
        with pytest.raises(ConfigError) as info:
            load_config(path)
        expected = RATHOLE_INVALID.get(name) or RATHOLE_REFUSED[name]
        assert str(info.value) == f"{path}: {expected}"
    else:
        cfg = load_config(path)
        assert cfg.server is not None or cfg.client is not None
        assert cfg.source == str(path)


def test_rathole_example_values(rathole_dir: Path) -> None:
    nk = load_config(rathole_dir / "examples/noise_nk/server.toml").server
    assert nk is not None and nk.transport.noise is not None
    assert nk.transport.type is TransportType.NOISE
    assert nk.transport.noise.local_private_key == NK_PRIVATE
    proxy = load_config(rathole_dir / "examples/use_proxy/client.toml").client
    assert proxy is not None
    assert proxy.transport.tcp.proxy == "socks5://myuser:mypass@127.0.0.1:1080"
    iperf = load_config(rathole_dir / "examples/iperf3/server.toml").server
    assert iperf is not None
    assert {n: s.type for n, s in iperf.services.items()} == {
        "iperf3-udp": ServiceType.UDP,
        "iperf3-tcp": ServiceType.TCP,
    }
    full = load_config(rathole_dir / "tests/config_test/valid_config/full.toml")
    assert full.client is not None and full.server is not None
    assert full.client.services["service1"].token == "whatever"
    assert full.client.services["service2"].token == "default_token_if_not_specify"
    wss = load_config(rathole_dir / "tests/for_tcp/websocket_tls_transport.toml").server
    assert wss is not None and wss.transport.websocket is not None
    assert wss.transport.websocket.tls is True


# --------------------------------------------------------------------------- error lines

ERRORS: list[tuple[str, str, str]] = [
    (
        "rathole.server.toml",
        """
        [server]
        bind_addr = "0.0.0.0:2333"
        default_token = "t"
        [server.services.web]
        bind_addr = 8080
        """,
        'rathole.server.toml: [server.services.web] bind_addr: expected "host:port", got 8080',
    ),
    (
        "server.toml",
        '[server]\nbind_addr = "0.0.0.0:1"\nfoo = 1\n[server.services]\n',
        "server.toml: [server] foo: unknown key (expected one of bind_addr, default_token,"
        " services, transport, heartbeat_interval, default_token_file)",
    ),
    (
        "client.toml",
        '[client]\nremote_addr = "a:1"\n[client.services.ssh]\nlocal_addr = "127.0.0.1:22"\n',
        "client.toml: [client.services.ssh] token: not set, and [client] has no default_token",
    ),
    (
        "x.toml",
        "[client]\n[client.services]\n",
        "x.toml: [client] remote_addr: missing (required)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n[server.services.a]\ntype = "UDP"\nbind_addr = "a:2"\n'
        'token = "t"\n',
        'x.toml: [server.services.a] type: expected "tcp" or "udp", got "UDP"',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\nheartbeat_interval = 3 3\n',
        "x.toml: line 4, column 24: invalid TOML: Expected newline or end of document after a"
        " statement",
    ),
    ("x.toml", "", "x.toml: neither [server] nor [client] is defined"),
    ("x.toml", "# only a comment\n", "x.toml: neither [server] nor [client] is defined"),
    # --- more shapes of the same rules
    ("x.toml", "foo = 1\n", "x.toml: foo: unknown key (expected one of server, client)"),
    ("x.toml", "server = 5\n", "x.toml: server: expected a table, got 5"),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n',
        "x.toml: [server] services: missing (required)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\n',
        "x.toml: [client] services: missing (required)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = 3\n',
        "x.toml: [server] services: expected a table, got 3",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n[server.services]\nweb = "x"\n',
        'x.toml: [server.services] web: expected a table, got "x"',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n[[server.services]]\n',
        "x.toml: [server] services: expected a table, got an array",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\ndefault_token = "t"\n'
        '[server.services.web]\nbind_addr = "a:2"\nname = "web"\n',
        "x.toml: [server.services.web] name: unknown key (expected one of type, bind_addr,"
        " token, nodelay, token_file, proxy_protocol, sni, http_host, default_route)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\ndefault_token = "t"\n'
        '[client.services.web]\nlocal_addr = "a:2"\nbind_addr = "a:3"\n',
        "x.toml: [client.services.web] bind_addr: unknown key (expected one of type,"
        " local_addr, token, nodelay, retry_interval, token_file)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nbind_addr = "a:2"\nservices = {}\n',
        "x.toml: [client] bind_addr: unknown key (expected one of remote_addr, default_token,"
        " services, transport, heartbeat_timeout, retry_interval, default_token_file)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nheartbeat_interval = true\nservices = {}\n',
        "x.toml: [server] heartbeat_interval: expected a non-negative integer, got true",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nheartbeat_interval = -1\nservices = {}\n',
        "x.toml: [server] heartbeat_interval: expected a non-negative integer, got -1",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nheartbeat_interval = 1.5\nservices = {}\n',
        "x.toml: [server] heartbeat_interval: expected a non-negative integer, got 1.5",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nretry_interval = "1"\nservices = {}\n',
        'x.toml: [client] retry_interval: expected a non-negative integer, got "1"',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nheartbeat_timeout = 1979-05-27\nservices = {}\n',
        "x.toml: [client] heartbeat_timeout: expected a non-negative integer, got 1979-05-27",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\ndefault_token = "t"\n'
        '[server.services.a]\nbind_addr = "a:2"\nnodelay = 1\n',
        "x.toml: [server.services.a] nodelay: expected true or false, got 1",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\ndefault_token = "t"\n'
        '[client.services.a]\nlocal_addr = "a:2"\nretry_interval = -3\n',
        "x.toml: [client.services.a] retry_interval: expected a non-negative integer, got -3",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\n',
        "x.toml: [server.transport] type: missing (required)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "TLS"\n',
        'x.toml: [server.transport] type: expected one of "tcp", "tls", "noise", "websocket",'
        ' got "TLS"',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tcp"\n'
        "quic = true\n",
        "x.toml: [server.transport] quic: unknown key (expected one of type, tcp, tls, noise,"
        " websocket)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tcp"\n'
        "[server.transport.tcp]\nkeepalive = 1\n",
        "x.toml: [server.transport.tcp] keepalive: unknown key (expected one of nodelay,"
        " keepalive_secs, keepalive_interval, proxy)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tcp"\n'
        "[server.transport.tcp]\nnodelay = 0\n",
        "x.toml: [server.transport.tcp] nodelay: expected true or false, got 0",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tcp"\n'
        "[server.transport.tcp]\nkeepalive_secs = -20\n",
        "x.toml: [server.transport.tcp] keepalive_secs: expected a non-negative integer, got -20",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tls"\n'
        '[server.transport.tls]\npkcs12 = "id.pfx"\n',
        "x.toml: [server.transport.tls] pkcs12_password: missing, required on the server"
        ' when type = "tls"',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tls"\n'
        '[server.transport.tls]\ncert = "c.pem"\n',
        "x.toml: [server.transport.tls] cert: unknown key (expected one of hostname,"
        " trusted_root, pkcs12, pkcs12_password)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tls"\n'
        '[client.transport.tls]\npkcs12 = "id.pfx"\n',
        "x.toml: [client.transport.tls] pkcs12_password: missing, required when pkcs12 is set",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tls"\n'
        "[client.transport.tls]\nhostname = 7\n",
        "x.toml: [client.transport.tls] hostname: expected a string, got 7",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "websocket"\n',
        'x.toml: [client.transport] websocket: missing, required when type = "websocket"',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "websocket"\n'
        "[client.transport.websocket]\n",
        "x.toml: [client.transport.websocket] tls: missing (required)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.websocket]\ntls = "yes"\n',
        'x.toml: [client.transport.websocket] tls: expected true or false, got "yes"',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "websocket"\n'
        "[client.transport.websocket]\ntls = true\n",
        "x.toml: [client.transport] tls: missing, required when websocket.tls = true",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "websocket"\n'
        '[server.transport.websocket]\ntls = true\n[server.transport.tls]\npkcs12 = "i.pfx"\n',
        "x.toml: [server.transport.tls] pkcs12_password: missing, required on the server when"
        " websocket.tls = true",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "noise"\n',
        'x.toml: [client.transport] noise: missing, required when type = "noise"',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "noise"\n'
        "[client.transport.noise]\npsk = 1\n",
        "x.toml: [client.transport.noise] psk: unknown key (expected one of pattern,"
        " local_private_key, remote_public_key)",
    ),
    # --- addresses
    (
        "x.toml",
        '[server]\nbind_addr = "0.0.0.0"\nservices = {}\n',
        'x.toml: [server] bind_addr: expected "host:port", got "0.0.0.0" (no port)',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = ":2333"\nservices = {}\n',
        'x.toml: [server] bind_addr: expected "host:port", got ":2333" (empty host)',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "0.0.0.0:65536"\nservices = {}\n',
        'x.toml: [server] bind_addr: expected "host:port", got "0.0.0.0:65536"'
        " (port out of range 0..65535)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "0.0.0.0:http"\nservices = {}\n',
        'x.toml: [server] bind_addr: expected "host:port", got "0.0.0.0:http"'
        " (port is not a number)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "::1:2333"\nservices = {}\n',
        'x.toml: [client] remote_addr: expected "host:port", got "::1:2333"'
        ' (an IPv6 host needs brackets, e.g. "[::1]:2333")',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "[nope]:1"\nservices = {}\n',
        'x.toml: [client] remote_addr: expected "host:port", got "[nope]:1"'
        " (not an IPv6 address inside [ ])",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\ndefault_token = "t"\n'
        '[client.services.s]\nlocal_addr = "local host:22"\n',
        'x.toml: [client.services.s] local_addr: expected "host:port", got "local host:22"'
        " (space or control character in host)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = ["a:1"]\nservices = {}\n',
        'x.toml: [client] remote_addr: expected "host:port", got an array',
    ),
    # --- odd service names are quoted the TOML way
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n[server.services."my web"]\nbind_addr = "a:2"\n',
        'x.toml: [server.services."my web"] token: not set, and [server] has no default_token',
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\n"bad\\nkey" = 1\nservices = {}\n',
        'x.toml: [server] "bad\\u000Akey": unknown key (expected one of bind_addr,'
        " default_token, services, transport, heartbeat_interval, default_token_file)",
    ),
    # --- proxy
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "ftp://h:21"\n',
        'x.toml: [client.transport.tcp] proxy: unknown proxy scheme "ftp" (expected'
        ' "socks5://[user:password@]host:port" or "http://[user:password@]host:port")',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "socks5://u:p@proxy"\n',
        "x.toml: [client.transport.tcp] proxy: no port; rathole needs an explicit port"
        ' (expected "socks5://[user:password@]host:port" or "http://[user:password@]host:port")',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "http://u:p@proxy:80"\n',
        "x.toml: [client.transport.tcp] proxy: port 80 is the default port of http://, which"
        " rathole cannot use (it panics); use a proxy on another port",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "socks5://:1080"\n',
        'x.toml: [client.transport.tcp] proxy: no host (expected "socks5://[user:password@]'
        'host:port" or "http://[user:password@]host:port")',
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "socks5://u:p@h:99999"\n',
        'x.toml: [client.transport.tcp] proxy: not a valid URL (expected "socks5://[user:'
        'password@]host:port" or "http://[user:password@]host:port")',
    ),
    # --- noise keys
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "noise"\n'
        '[server.transport.noise]\nlocal_private_key = "key_encoded_in_base64"\n',
        "x.toml: [server.transport.noise] local_private_key: not valid base64 (value not shown)",
    ),
    (
        "x.toml",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "noise"\n'
        '[client.transport.noise]\nremote_public_key = "QUJD"\n',
        "x.toml: [client.transport.noise] remote_public_key: expected a 32-byte key, got 3 bytes",
    ),
    (
        # non-canonical last symbol: rathole's base64 0.13 rejects it too (checked)
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "noise"\n'
        '[server.transport.noise]\nlocal_private_key = "QLYMByBnjgM254zT6YKaBVvuAA61swyZfFxoA'
        '/SKZHN="\n',
        "x.toml: [server.transport.noise] local_private_key: not valid base64 (value not shown)",
    ),
    (
        "x.toml",
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "noise"\n'
        "[server.transport.noise]\npattern = 1\n",
        "x.toml: [server.transport.noise] pattern: expected a string, got 1",
    ),
]


@pytest.mark.parametrize(("source", "text", "expected"), ERRORS)
def test_error_line(source: str, text: str, expected: str) -> None:
    assert error_of(text, source) == expected


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            '[server]\nbind_addr = "a:1"\n[server.services.web]\nbind_addr = 8080\ntoken="t"\n',
            "s.toml",
        )
    e = info.value
    assert (e.source, e.table, e.key) == ("s.toml", "server.services.web", "bind_addr")
    assert e.problem == 'expected "host:port", got 8080'
    assert e.line is None


def test_syntax_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("[server]\nbind_addr = \n", "s.toml")
    e = info.value
    assert (e.table, e.key, e.line, e.column) == ("", "", 2, 13)
    assert str(e) == "s.toml: line 2, column 13: invalid TOML: Invalid value"


def test_syntax_error_at_end_of_file() -> None:
    """Where the text ends, by line and column, as an editor shows it."""
    expected = "x.toml: line 1, column 8 (end of file): invalid TOML: Unterminated string"
    assert error_of('a = """') == expected
    with pytest.raises(ConfigError) as info:
        parse_config('[server]\nbind_addr = "a:1"\n[server.services.x', "s.toml")
    assert (info.value.line, info.value.column) == (3, 19)
    assert str(info.value).startswith("s.toml: line 3, column 19 (end of file): invalid TOML: ")


def test_duplicate_key_is_a_syntax_error() -> None:
    line = error_of('[server]\nbind_addr = "a:1"\nbind_addr = "a:2"\nservices = {}\n')
    assert line.startswith("x.toml: line 3, column ")
    assert "invalid TOML" in line


def test_integer_bounds() -> None:
    """u64 in rathole, but TOML integers stop at i64 (tomllib would read more)."""
    text = '[server]\nbind_addr = "a:1"\nservices = {}\nheartbeat_interval = %d\n'
    cfg = parse(text % (2**63 - 1))
    assert cfg.server is not None and cfg.server.heartbeat_interval == 2**63 - 1
    assert error_of(text % 2**63) == (
        "x.toml: [server] heartbeat_interval: expected an integer of at most"
        " 9223372036854775807, got 9223372036854775808"
    )


def test_ports_zero_and_max_are_fine() -> None:
    cfg = parse('[server]\nbind_addr = "[::]:0"\n[server.services]\n')
    assert cfg.server is not None and cfg.server.bind_addr == "[::]:0"
    cfg = parse('[client]\nremote_addr = "example.com:65535"\n[client.services]\n')
    assert cfg.client is not None


def test_proxy_accepted_forms() -> None:
    for proxy in (
        "socks5://127.0.0.1:1080",
        "socks5://user:pass@proxy.example:1080",
        "http://proxy:8080",
        "http://user@[::1]:3128",
        "SOCKS5://h:1",
    ):
        cfg = parse(
            CLIENT_MIN + f'[client.transport]\ntype = "tcp"\n'
            f'[client.transport.tcp]\nproxy = "{proxy}"\n'
        )
        assert cfg.client is not None and cfg.client.transport.tcp.proxy == proxy


def test_proxy_is_checked_on_the_server_too() -> None:
    line = error_of(
        SERVER_MIN + '[server.transport]\ntype = "tcp"\n[server.transport.tcp]\nproxy = "x:1"\n'
    )
    assert line.startswith('x.toml: [server.transport.tcp] proxy: unknown proxy scheme "x"')


def test_noise_keys_unpadded_accepted() -> None:
    """rathole's base64 0.13 accepts a key without '=' padding (checked with the binary)."""
    cfg = parse(
        SERVER_MIN + '[server.transport]\ntype = "noise"\n[server.transport.noise]\n'
        f'local_private_key = "{NK_PRIVATE.rstrip("=")}"\n'
    )
    assert cfg.server is not None


def test_noise_keys_unchecked_when_noise_is_unused() -> None:
    cfg = parse(
        SERVER_MIN + '[server.transport]\ntype = "tcp"\n[server.transport.noise]\n'
        'local_private_key = "key_encoded_in_base64"\n'
    )
    assert cfg.server is not None and cfg.server.transport.noise is not None


def test_tls_table_not_required_for_other_types() -> None:
    cfg = parse(CLIENT_MIN + '[client.transport]\ntype = "tls"\n[client.transport.tls]\n')
    assert cfg.client is not None and cfg.client.transport.tls == TlsConfig()
    cfg = parse(SERVER_MIN + '[server.transport]\ntype = "tcp"\n[server.transport.tls]\n')
    assert cfg.server is not None  # pkcs12 only required when TLS is in use


# --------------------------------------------------------------------------- token resolution


def test_token_resolution() -> None:
    cfg = parse(
        """
        [server]
        bind_addr = "0.0.0.0:2333"
        default_token = "dflt"
        [server.services.own]
        bind_addr = "0.0.0.0:1"
        token = "mine"
        [server.services.inherit]
        bind_addr = "0.0.0.0:2"

        [client]
        remote_addr = "h:2333"
        [client.services.own]
        local_addr = "127.0.0.1:1"
        token = "mine"
        """
    )
    assert cfg.server is not None and cfg.client is not None
    assert cfg.server.services["own"].token == "mine"
    assert cfg.server.services["inherit"].token == "dflt"
    assert cfg.client.services["own"].token == "mine"
    assert cfg.client.default_token is None


def test_empty_token_is_a_token() -> None:
    cfg = parse('[server]\nbind_addr = "a:1"\n[server.services.a]\nbind_addr = "a:2"\ntoken=""\n')
    assert cfg.server is not None and cfg.server.services["a"].token == ""


# --------------------------------------------------------------------------- secrets

SECRETS = ("s3cr3t-token", "d3fault-token", "pfx-pa55word", "proxy-pa55", NK_PRIVATE)

SECRET_CONFIG = f"""
[server]
bind_addr = "0.0.0.0:2333"
default_token = "d3fault-token"
[server.transport]
type = "tls"
[server.transport.tls]
pkcs12 = "id.pfx"
pkcs12_password = "pfx-pa55word"
[server.services.a]
bind_addr = "0.0.0.0:1"
token = "s3cr3t-token"

[client]
remote_addr = "h:2333"
default_token = "d3fault-token"
[client.transport]
type = "noise"
[client.transport.tcp]
proxy = "socks5://user:proxy-pa55@127.0.0.1:1080"
[client.transport.noise]
local_private_key = "{NK_PRIVATE}"
remote_public_key = "{NK_PUBLIC}"
[client.services.a]
local_addr = "127.0.0.1:1"
token = "s3cr3t-token"
"""


def test_secrets_absent_from_repr() -> None:
    cfg = parse(SECRET_CONFIG)
    assert cfg.client is not None and cfg.server is not None
    texts = [repr(cfg), str(cfg), redacted(cfg), repr(cfg.client.services["a"])]
    texts += [repr(cfg.server.transport.tls), repr(cfg.client.transport.tcp)]
    texts += [redacted(cfg.client), redacted(cfg.server.services)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    assert NK_PUBLIC in repr(cfg)  # public keys are not secret
    assert "socks5://user:***@127.0.0.1:1080" in repr(cfg)
    assert "token='***'" in redacted(cfg)
    assert "default_token='***'" in redacted(cfg)
    assert "pkcs12_password='***'" in redacted(cfg)
    assert "local_private_key='***'" in redacted(cfg)
    no_default = parse('[server]\nbind_addr = "a:1"\nservices = {}\n').server
    assert "default_token=None" in redacted(no_default)
    for proxy in ("socks5://u:pa/ss@h:1", "http://u:pa@ss@h:1", "pa@ss"):
        shown = repr(TcpTransportConfig(proxy=proxy)) + redacted(TcpTransportConfig(proxy=proxy))
        assert "pa" not in shown.replace("keepalive", ""), shown
    # the secrets are still there for the engine to use
    assert cfg.client.services["a"].token == "s3cr3t-token"
    assert cfg.client.transport.noise is not None
    assert cfg.client.transport.noise.local_private_key == NK_PRIVATE


def test_secrets_absent_from_errors() -> None:
    cases = [
        '[server]\nbind_addr = "a:1"\ndefault_token = 123456789\nservices = {}\n',
        '[server]\nbind_addr = "a:1"\n[server.services.a]\nbind_addr = "a:2"\ntoken = 123456789\n',
        '[server]\nbind_addr = "a:1"\nservices = {}\n[server.transport]\ntype = "tls"\n'
        "[server.transport.tls]\npkcs12 = 'x'\npkcs12_password = 123456789\n",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "noise"\n'
        '[client.transport.noise]\nlocal_private_key = "123456789"\n',
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "noise"\n'
        "[client.transport.noise]\nlocal_private_key = 123456789\n",
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "socks5://u:123456789@h"\n',
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        '[client.transport.tcp]\nproxy = "gopher://u:123456789@h:1"\n',
        '[client]\nremote_addr = "a:1"\nservices = {}\n[client.transport]\ntype = "tcp"\n'
        "[client.transport.tcp]\nproxy = 123456789\n",
    ]
    for text in cases:
        line = error_of(text)
        assert "123456789" not in line, line
    assert error_of(cases[0]) == (
        "x.toml: [server] default_token: expected a string, got an integer"
    )


# --------------------------------------------------------------------------- load_config


def test_load_config_reads_file(tmp_path: Path) -> None:
    p = tmp_path / "server.toml"
    p.write_text(SERVER_MIN)
    cfg = load_config(p)
    assert cfg.source == str(p)
    assert cfg.server is not None
    assert load_config(str(p)) == cfg


def test_load_config_crlf(tmp_path: Path) -> None:
    p = tmp_path / "crlf.toml"
    p.write_bytes(SERVER_MIN.replace("\n", "\r\n").encode())
    assert load_config(p).server is not None


def test_load_config_source_in_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text("[server]\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: [server] bind_addr: missing (required)"
    assert info.value.source == str(p)


def test_load_config_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value) == f"{missing}: cannot read: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin1.toml"
    p.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(info.value) == f"{p}: cannot read: not UTF-8 text (bad byte at offset 5)"


# --------------------------------------------------------------------------- split_host_port


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("h:1", ("h", 1)),
        ("0.0.0.0:2333", ("0.0.0.0", 2333)),
        ("example.com:80", ("example.com", 80)),
        ("[::1]:2333", ("::1", 2333)),
        ("[::]:0", ("::", 0)),
        ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
        ("localhost:65535", ("localhost", 65535)),
        ("h:00080", ("h", 80)),
    ],
)
def test_split_host_port(addr: str, expected: tuple[str, int]) -> None:
    assert split_host_port(addr) == expected


@pytest.mark.parametrize(
    "addr",
    [
        "",
        "h",
        "h:",
        ":80",
        "[]:80",
        "::1:80",
        "[::1:80",
        "::1]:80",
        "[h]:80",
        "h:-1",
        "h:+1",
        "h:65536",
        "h:1e3",
        "h:٣",
        "h: 80",
        " h:80",
        "h\t:80",
        "h:" + "9" * 5000,
    ],
)
def test_split_host_port_rejects(addr: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(addr)


# --------------------------------------------------------------------------- fuzzing

SCHEMA_KEYS = [
    "server",
    "client",
    "bind_addr",
    "remote_addr",
    "local_addr",
    "default_token",
    "token",
    "services",
    "transport",
    "type",
    "tcp",
    "tls",
    "noise",
    "websocket",
    "heartbeat_interval",
    "heartbeat_timeout",
    "retry_interval",
    "nodelay",
    "keepalive_secs",
    "keepalive_interval",
    "proxy",
    "hostname",
    "trusted_root",
    "pkcs12",
    "pkcs12_password",
    "pattern",
    "local_private_key",
    "remote_public_key",
    "name",
    "web",
]
SCHEMA_STRINGS = [
    "tcp",
    "udp",
    "tls",
    "noise",
    "websocket",
    "UDP",
    "0.0.0.0:2333",
    "[::1]:80",
    "::1:80",
    "h:99999",
    "h:",
    ":1",
    "socks5://u:p@h:1080",
    "http://h",
    "http://h:80",
    "ftp://h:1",
    "socks5://[::1",
    NK_PRIVATE,
    "QUJD",
    "not base64!",
    "",
]

keys = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.sampled_from(SCHEMA_STRINGS),
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    st.datetimes(timezones=st.just(UTC)),
)
documents = st.recursive(
    scalars | st.lists(scalars, max_size=3),
    lambda children: st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


def _leaf(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly a plausible value, one time in ten any TOML scalar."""
    return st.integers(0, 9).flatmap(lambda i: scalars if i == 0 else valid)


def _table(
    spec: dict[str, st.SearchStrategy], required: tuple[str, ...] = ()
) -> st.SearchStrategy[dict]:
    """A table with the required keys and any of the others."""
    return st.fixed_dictionaries(
        {k: v for k, v in spec.items() if k in required},
        optional={k: v for k, v in spec.items() if k not in required},
    )


_addr = _leaf(st.sampled_from(["0.0.0.0:2333", "[::1]:80", "h:1", "h:2", "::1:80", "h:99999"]))
_str = _leaf(st.sampled_from(["t", "", "id.pfx"]))
_u64 = _leaf(st.integers(min_value=-2, max_value=100))
_bool = _leaf(st.booleans())
_key = _leaf(st.sampled_from([NK_PRIVATE, NK_PUBLIC.rstrip("="), "QUJD", "key_encoded_in_base64"]))
_proxy = _leaf(st.sampled_from(SCHEMA_STRINGS[12:17]))
_transport = _table(
    {
        "type": _leaf(st.sampled_from(["tcp", "tls", "noise", "websocket"])),
        "tcp": _table(
            {"nodelay": _bool, "keepalive_secs": _u64, "keepalive_interval": _u64, "proxy": _proxy}
        ),
        "tls": _table(
            {"hostname": _str, "trusted_root": _str, "pkcs12": _str, "pkcs12_password": _str}
        ),
        "noise": _table({"pattern": _str, "local_private_key": _key, "remote_public_key": _key}),
        "websocket": _table({"tls": _bool}, required=("tls",)),
    },
    required=("type",),
)
_names = st.sampled_from(["a", "b", "my web", ""])
_svc_type = _leaf(st.sampled_from(["tcp", "udp", "UDP"]))
structured_configs = _table(
    {
        "server": _table(
            {
                "bind_addr": _addr,
                "default_token": _str,
                "services": st.dictionaries(
                    _names,
                    _table(
                        {"type": _svc_type, "bind_addr": _addr, "token": _str, "nodelay": _bool},
                        required=("bind_addr",),
                    ),
                    max_size=3,
                ),
                "transport": _transport,
                "heartbeat_interval": _u64,
            },
            required=("bind_addr", "services"),
        ),
        "client": _table(
            {
                "remote_addr": _addr,
                "default_token": _str,
                "services": st.dictionaries(
                    _names,
                    _table(
                        {
                            "type": _svc_type,
                            "local_addr": _addr,
                            "token": _str,
                            "nodelay": _bool,
                            "retry_interval": _u64,
                        },
                        required=("local_addr",),
                    ),
                    max_size=3,
                ),
                "transport": _transport,
                "heartbeat_timeout": _u64,
                "retry_interval": _u64,
            },
            required=("remote_addr", "services"),
        ),
    }
)


def _check_only_config_error(text: str) -> None:
    try:
        cfg = parse_config(text, "fuzz.toml")
    except ConfigError as e:
        line = str(e)
        assert line.startswith("fuzz.toml: ")
        assert len(line.splitlines()) == 1
        return
    assert cfg.server is not None or cfg.client is not None
    repr(cfg)
    redacted(cfg)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["server", "client", "x"]), documents, max_size=2))
def test_fuzz_structures_raise_only_config_error(doc: dict) -> None:
    try:
        text = tomlkit.dumps(doc)
    except Exception:  # tomlkit cannot render every structure (e.g. some floats or keys)
        assume(False)
        raise
    _check_only_config_error(text)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(structured_configs)
def test_fuzz_schema_shaped_configs_raise_only_config_error(doc: dict) -> None:
    _check_only_config_error(tomlkit.dumps(doc))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "[server]\n",
                    "[client]\n",
                    "[server.services.a]\n",
                    "[client.transport]\n",
                    "[[server.services]]\n",
                    'bind_addr = "0.0.0.0:1"\n',
                    'remote_addr = "h:1"\n',
                    'type = "noise"\n',
                    "services = {}\n",
                    'token = "t"\n',
                    "= 1\n",
                    '"""',
                    "[",
                    "]",
                    "\n",
                    "# c\n",
                ]
            ),
            st.text(alphabet=string.printable, max_size=10),
            st.text(max_size=5),
        ),
        max_size=12,
    ).map("".join)
)
def test_fuzz_text_raises_only_config_error(text: str) -> None:
    _check_only_config_error(text)


def test_deeply_nested_toml_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_config("a = " + "[" * 100_000, "deep.toml")


# --------------------------------------------------------------------------- config_diff


def test_diff_no_change() -> None:
    d = config_diff(parse(SERVER_MIN + CLIENT_MIN), parse(SERVER_MIN + CLIENT_MIN, "other.toml"))
    assert d == ConfigDiff(False, False)
    assert d.unchanged


def test_diff_block_appears_and_disappears() -> None:
    both, server_only = parse(SERVER_MIN + CLIENT_MIN), parse(SERVER_MIN)
    d = config_diff(server_only, both)
    assert (d.restart_server, d.restart_client) == (False, True)
    assert d.client_added == ()  # a (re)start covers every service
    d = config_diff(both, server_only)
    assert (d.restart_server, d.restart_client) == (False, True)
    assert not d.unchanged


@pytest.mark.parametrize(
    "extra",
    [
        "heartbeat_interval = 5\n",
        'default_token = "other"\n',
        '[server.transport]\ntype = "tcp"\n[server.transport.tcp]\nnodelay = false\n',
    ],
)
def test_diff_non_service_key_restarts_server(extra: str) -> None:
    base = '[server]\nbind_addr = "0.0.0.0:2333"\n[server.services.a]\nbind_addr = "0.0.0.0:1"\n'
    base += 'token = "t"\n'
    new_text = base.replace("[server.services.a]", extra + "[server.services.a]")
    if extra.startswith("[server.transport]"):
        new_text = base + extra
    d = config_diff(parse(base), parse(new_text))
    assert d == ConfigDiff(restart_server=True, restart_client=False)


def test_diff_bind_addr_restarts_server() -> None:
    old = parse(SERVER_MIN)
    new = parse(SERVER_MIN.replace('"0.0.0.0:2333"', '"0.0.0.0:2334"'))
    assert config_diff(old, new).restart_server


def test_diff_client_keys_restart_client() -> None:
    old = parse(CLIENT_MIN)
    for new_text in (
        CLIENT_MIN.replace("localhost:2333", "localhost:2334"),
        CLIENT_MIN.replace("[client.services.foo1]", "retry_interval = 4\n[client.services.foo1]"),
        CLIENT_MIN.replace(
            "[client.services.foo1]", "heartbeat_timeout = 9\n[client.services.foo1]"
        ),
    ):
        d = config_diff(old, parse(new_text))
        assert d == ConfigDiff(restart_server=False, restart_client=True)


def test_diff_services() -> None:
    old = parse(
        """
        [server]
        bind_addr = "0.0.0.0:2333"
        default_token = "t"
        [server.services.keep]
        bind_addr = "0.0.0.0:1"
        [server.services.change]
        bind_addr = "0.0.0.0:2"
        [server.services.drop]
        bind_addr = "0.0.0.0:3"
        [client]
        remote_addr = "h:1"
        default_token = "t"
        [client.services.c]
        local_addr = "127.0.0.1:1"
        """
    )
    new = parse(
        """
        [server]
        bind_addr = "0.0.0.0:2333"
        default_token = "t"
        [server.services.new]
        bind_addr = "0.0.0.0:4"
        [server.services.keep]
        bind_addr = "0.0.0.0:1"
        [server.services.change]
        bind_addr = "0.0.0.0:2"
        type = "udp"
        [client]
        remote_addr = "h:1"
        default_token = "t"
        [client.services.c]
        local_addr = "127.0.0.1:1"
        token = "other"
        """
    )
    d = config_diff(old, new)
    assert d == ConfigDiff(
        restart_server=False,
        restart_client=False,
        server_added=("new",),
        server_removed=("drop",),
        server_changed=("change",),
        client_changed=("c",),
    )


def test_diff_service_token_via_explicit_token_only() -> None:
    """A service that spells out the default token value is unchanged (tokens are resolved)."""
    old = parse(SERVER_MIN)
    new = parse(
        SERVER_MIN.replace(
            'bind_addr = "0.0.0.0:5202"', 'bind_addr = "0.0.0.0:5202"\ntoken = "123"'
        )
    )
    assert config_diff(old, new).unchanged


def test_diff_both_absent() -> None:
    assert config_diff(Config(), Config()).unchanged


def test_diff_client_service_retry_interval() -> None:
    old = parse(CLIENT_MIN)
    new = parse(CLIENT_MIN + "retry_interval = 5\n")
    assert config_diff(old, new) == ConfigDiff(False, False, client_changed=("foo1",))


def test_public_types_construct_directly() -> None:
    """Other modules build configs in code (tests, the UI); the defaults must allow it."""
    s = ServerConfig(bind_addr="0.0.0.0:1", services={})
    c = ClientConfig(remote_addr="h:1", services={})
    assert s.heartbeat_interval == 30 and s.transport == TransportConfig()
    assert c.heartbeat_timeout == 40 and c.retry_interval == 1
    assert ClientServiceConfig("a", "h:1", "t").retry_interval == 1
    assert Config().source == "<config>"
