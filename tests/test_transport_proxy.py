"""Client egress through ``[client.transport.tcp] proxy`` (PROTOCOL.md §5.5, §7 item 18).

The handshakes byte for byte (sans I/O), then real tunnels through a real proxy server: the
``pproxy`` package run as a subprocess on loopback, with SOCKS5 and HTTP CONNECT listeners,
each with and without a user name and password. Every transport type (tcp, noise, tls,
websocket) goes through every proxy kind; wrong or missing credentials and an unreachable
proxy each give one clear log line on the client, without the password, and nothing hangs.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from certs import ServerIdentity, server_identity
from conftest import Proc, Procs, free_port, wait_port, write_config
from test_transport_noise import client_toml, noise_table, run, server_toml, start
from test_transport_tls import tls_table
from test_transport_websocket import echo_roundtrip, ws_table
from tunnels import echo_check, wait_until

from ratui.engine.channel import Channel
from ratui.engine.config import TcpTransportConfig
from ratui.engine.transport import proxy as proxy_module
from ratui.engine.transport.proxy import (
    HttpConnectHandshake,
    ProxyError,
    ProxyUrl,
    Socks5Handshake,
    open_connection,
)
from ratui.engine.transport.tcp import TcpTransport
from ratui.genkey import generate_keypair

USER = "alice"
PASSWORD = "p@ss:w0rd/x"  # needs percent-encoding in a URL
PASSWORD_IN_URL = "p%40ss%3Aw0rd%2Fx"


# ------------------------------------------------------------------------------ sans I/O
def test_proxy_url_parsing_decodes_credentials_and_hides_them():
    url = ProxyUrl.parse(f"socks5://{USER}:{PASSWORD_IN_URL}@127.0.0.1:1080")
    assert (url.scheme, url.host, url.port) == ("socks5", "127.0.0.1", 1080)
    assert (url.username, url.password) == (USER, PASSWORD)
    assert PASSWORD not in repr(url) and PASSWORD not in str(url)
    assert str(url) == "socks5 proxy 127.0.0.1:1080"
    assert ProxyUrl.parse("http://[::1]:3128").host == "::1"
    assert str(ProxyUrl.parse("http://[::1]:3128")) == "http proxy [::1]:3128"
    assert not ProxyUrl.parse("http://h:3128").has_credentials
    # As rathole: credentials are used when the user is not empty or a password is present.
    assert ProxyUrl.parse("http://:pw@h:3128").username == ""
    assert ProxyUrl.parse("http://u@h:3128").password is None


def test_socks5_bytes_without_credentials():
    hs = Socks5Handshake("127.0.0.1", 2333, None, None)
    assert hs.start() == b"\x05\x01\x00"
    # The target goes as a domain name (type 3) even for an IP literal, as async-socks5.
    assert hs.feed(b"\x05\x00") == (b"\x05\x01\x00\x03\x09127.0.0.1\x09\x1d", False)
    assert hs.feed(b"\x05\x00\x00\x01\x7f\x00") == (b"", False)
    assert hs.feed(b"\x00\x01\x30\x39extra") == (b"", True)
    assert hs.rest == b"extra"


def test_socks5_bytes_with_credentials():
    hs = Socks5Handshake("example.com", 443, USER, PASSWORD)
    assert hs.start() == b"\x05\x02\x00\x02"
    auth = b"\x01\x05alice\x0b" + PASSWORD.encode()
    assert hs.feed(b"\x05\x02") == (auth, False)
    assert hs.feed(b"\x01\x00") == (b"\x05\x01\x00\x03\x0bexample.com\x01\xbb", False)
    reply = b"\x05\x00\x00\x03\x04host\x00\x50"
    assert hs.feed(reply) == (b"", True) and hs.rest == b""
    # An IPv6 target goes without brackets.
    v6 = Socks5Handshake("::1", 80, None, None)
    v6.start()
    assert v6.feed(b"\x05\x00")[0] == b"\x05\x01\x00\x03\x03::1\x00\x50"


@pytest.mark.parametrize(
    ("creds", "replies", "message"),
    [
        (True, [b"\x05\x02", b"\x01\x01"], "the proxy rejected the user name or password"),
        (False, [b"\x05\xff"], "the proxy requires a user name and password, and the proxy URL"),
        (False, [b"\x05\x02"], "the proxy requires a user name and password"),
        (True, [b"\x05\xff"], "accepts neither no authentication nor username/password"),
        (False, [b"\x05\x00", b"\x05\x05\x00\x01"], "connection refused by the target"),
        (False, [b"\x05\x00", b"\x05\x02\x00\x01"], "not allowed by the proxy's rules"),
        (False, [b"HTTP/1.1 400 Bad Request\r\n"], 'speaks HTTP, not SOCKS5: use "http://'),
        (False, [b"\x04\x5a"], "does not speak SOCKS5"),
    ],
)
def test_socks5_failures_are_named(creds, replies, message):
    hs = Socks5Handshake("h", 1, USER if creds else None, PASSWORD if creds else None)
    hs.start()
    with pytest.raises(ProxyError, match=re.escape(message)) as info:
        for reply in replies:
            hs.feed(reply)
    assert PASSWORD not in str(info.value)


def test_http_connect_bytes():
    hs = HttpConnectHandshake("localhost", 2333, None, None)
    assert hs.start() == (
        b"CONNECT localhost:2333 HTTP/1.1\r\nHost: localhost:2333\r\n"
        b"Proxy-Connection: Keep-Alive\r\n\r\n"
    )
    assert hs.feed(b"HTTP/1.1 200 Connection established\r\n") == (b"", False)
    assert hs.feed(b"X: y\r\n\r\nbehind") == (b"", True)
    assert hs.rest == b"behind"

    hs = HttpConnectHandshake("::1", 2333, USER, PASSWORD)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode())
    request = hs.start()
    assert request.startswith(b"CONNECT [::1]:2333 HTTP/1.1\r\nHost: [::1]:2333\r\n")
    assert b"\r\nProxy-Authorization: Basic " + token + b"\r\n" in request


@pytest.mark.parametrize(
    ("creds", "reply", "message"),
    [
        (True, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "rejected the user name"),
        (False, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "URL has none"),
        (False, b"HTTP/1.0 403 Forbidden\r\n\r\n", "refused CONNECT h:1 (403 Forbidden)"),
        (False, b"\x05\x00", 'speaks SOCKS5, not HTTP: use "socks5://'),
        (False, b"SSH-2.0-OpenSSH\r\n", "does not speak HTTP"),
        (False, b"HTTP/1.1 " + b"x" * 5000, "longer than 4096 bytes"),
    ],
)
def test_http_failures_are_named(creds, reply, message):
    hs = HttpConnectHandshake("h", 1, USER if creds else None, PASSWORD if creds else None)
    hs.start()
    with pytest.raises(ProxyError, match=re.escape(message)):
        hs.feed(reply)


# -------------------------------------------------------- in process, with fake proxies
async def fake_proxy(steps: list[tuple[int, bytes]]) -> tuple[asyncio.AbstractServer, int]:
    """A proxy that, for each step, reads that many bytes and writes that answer in one go;
    then echoes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for size, answer in steps:
                await reader.readexactly(size)
                writer.write(answer)
            while data := await reader.read(65536):
                writer.write(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scheme", ["socks5", "http"])
def test_bytes_behind_the_proxy_answer_reach_the_channel(scheme):
    async def main() -> None:
        if scheme == "socks5":  # greeting (3), then the request for "t" (4 + 1 + 1 + 2)
            steps = [(3, b"\x05\x00"), (8, b"\x05\x00\x00\x01" + bytes(6) + b"early")]
        else:
            request = HttpConnectHandshake("t", 9, None, None).start()
            steps = [(len(request), b"HTTP/1.1 200 OK\r\n\r\nearly")]
        server, port = await fake_proxy(steps)
        try:
            tcp = TcpTransport(TcpTransportConfig(proxy=f"{scheme}://127.0.0.1:{port}"))
            channel = await tcp.connect("t:9")
            got = await channel.receive(lambda r: r.take_rest() if len(r) >= 5 else None)
            assert got == b"early"
            channel.write(b"then the tunnel")
            got = await channel.receive(lambda r: r.take_rest() if len(r) >= 15 else None)
            assert got == b"then the tunnel"
            channel.close()
        finally:
            server.close()

    run(main())


@pytest.mark.timeout(30)
def test_a_silent_proxy_times_out_and_an_absent_one_is_named(monkeypatch):
    monkeypatch.setattr(proxy_module, "PROXY_TIMEOUT", 0.5)

    async def main() -> None:
        server, port = await fake_proxy([(1 << 20, b"")])  # never answers
        try:
            with pytest.raises(
                ProxyError, match=r"no complete answer from the proxy within 0\.5 s"
            ):
                await open_connection(Channel, "t", 9, f"http://127.0.0.1:{port}")
        finally:
            server.close()
        closed = free_port()
        with pytest.raises(
            ProxyError,
            match=rf"cannot connect to the socks5 proxy 127\.0\.0\.1:{closed}: .*refused "
            r"\(to reach t:9\)",
        ):
            await open_connection(Channel, "t", 9, f"socks5://127.0.0.1:{closed}")

    run(main())


# ----------------------------------------------------------------- a real proxy process
#: pproxy calls asyncio.get_event_loop() after installing uvloop when it can import it,
#: which uvloop >= 0.21 refuses; run it on the stdlib loop.
PPROXY = (
    "import asyncio, sys\n"
    "sys.modules['uvloop'] = None\n"
    "asyncio.set_event_loop(asyncio.new_event_loop())\n"
    "from pproxy.server import main\n"
    "sys.argv[0] = 'pproxy'\n"
    "main()\n"
)


@dataclass
class Proxies:
    proc: Proc
    ports: dict[str, int]

    def url(self, kind: str, *, creds: str | None = None) -> str:
        scheme = kind.split("-")[0]
        if creds is None and kind.endswith("-auth"):
            creds = f"{USER}:{PASSWORD_IN_URL}"
        userinfo = f"{creds}@" if creds else ""
        return f"{scheme}://{userinfo}127.0.0.1:{self.ports[kind]}"


@pytest.fixture
def proxies(procs: Procs) -> Iterator[Proxies]:
    """One pproxy process: socks5, socks5-auth, http and http-auth listeners. ``--auth 0``:
    no remembering of clients that once authenticated, every connection must log in."""
    ports = {kind: free_port() for kind in ("socks5", "socks5-auth", "http", "http-auth")}
    argv = [sys.executable, "-c", PPROXY, "-v", "--auth", "0"]
    for kind, port in ports.items():
        auth = f"#{USER}:{PASSWORD}" if kind.endswith("-auth") else ""
        argv += ["-l", f"{kind.split('-')[0]}://127.0.0.1:{port}{auth}"]
    proc = Proc(argv, procs.tmp_path / "pproxy.log")
    procs.started.append(proc)  # stopped at teardown with the tunnel processes
    for port in ports.values():
        wait_port(port)
    yield Proxies(proc, ports)


def transport_table(
    kind: str, ident: ServerIdentity, keys: tuple[str, str], role: str, proxy: str | None
) -> str:
    if kind == "tcp":
        text = f'[{role}.transport]\ntype = "tcp"\n'
    elif kind == "noise":
        private, public = keys
        if role == "server":
            text = noise_table(role, None, private)
        else:
            text = noise_table(role, None, None, public)
    elif kind == "tls":
        if role == "server":
            text = tls_table(role, pkcs12=ident.pkcs12, password=ident.password)
        else:
            text = tls_table(role, trusted_root=ident.ca_pem)
    else:
        text = ws_table(role, kind == "websocket-tls", ident)
    if proxy is not None:
        text += f'[{role}.transport.tcp]\nproxy = "{proxy}"\n'
    return text


class Tunnel:
    def __init__(self, tmp_path: Path, procs: Procs, kind: str, ident: ServerIdentity):
        self.tmp_path, self.procs, self.kind, self.ident = tmp_path, procs, kind, ident
        self.keys = generate_keypair()  # for noise
        self.port, self.service = free_port(), free_port()
        cfg = write_config(
            tmp_path / "server.toml",
            server_toml(
                self.port,
                {"svc": self.service},
                transport_table(kind, ident, self.keys, "server", None),
            ),
        )
        self.server = start(procs, "ratui", "server", cfg)
        wait_port(self.port)

    def table(self, role: str, proxy: str | None) -> str:
        return transport_table(self.kind, self.ident, self.keys, role, proxy)

    def client(self, local: str, proxy: str, name: str = "client") -> Proc:
        cfg = write_config(
            self.tmp_path / f"{name}.toml",
            client_toml(
                f"localhost:{self.port}",
                {"svc": local},
                self.table("client", proxy),
            ),
        )
        return start(self.procs, "ratui", "client", cfg)


@pytest.fixture
def identity(tmp_path: Path) -> ServerIdentity:
    return server_identity(tmp_path / "pki")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("proxy_kind", ["socks5", "socks5-auth", "http", "http-auth"])
@pytest.mark.parametrize("kind", ["tcp", "noise", "tls", "websocket", "websocket-tls"])
def test_tunnel_through_a_real_proxy(tmp_path, procs, echo, proxies, identity, kind, proxy_kind):
    tunnel = Tunnel(tmp_path, procs, kind, identity)
    client = tunnel.client(echo.addr, proxies.url(proxy_kind))
    wait_port(tunnel.service, timeout=15)
    # Readiness first, as the tunnel tests do: under load the first visitor can arrive while
    # the pool's data channels are still being opened through the proxy.
    wait_until(lambda: echo_check(tunnel.service, b"ready?"), 15, "an echo through the proxy")
    echo_roundtrip(tunnel.service, 256 * 1024)
    echo_roundtrip(tunnel.service, 10_000)  # another data channel, through the proxy again
    # The proxy carried it, and got the target as a name (resolved by the proxy, not by us).
    scheme = proxy_kind.split("-")[0]
    log = proxies.proc.output()
    assert re.search(rf"{scheme} 127\.0\.0\.1:\d+ -> localhost:{tunnel.port}", log), log
    assert log.count(f"-> localhost:{tunnel.port}") >= 3  # control + 2 data channels
    for proc in (tunnel.server, client):
        assert proc.popen.poll() is None
        assert "WARN ratui.transport" not in proc.output()
    assert PASSWORD not in client.output() and PASSWORD_IN_URL not in client.output()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("proxy_kind", "creds", "message"),
    [
        (
            "socks5-auth",
            f"{USER}:wrong-secret",
            "the proxy closed the connection after the user name and password were sent - "
            "check them in [client.transport.tcp] proxy",
        ),
        (
            "http-auth",
            f"{USER}:wrong-secret",
            "the proxy rejected the user name or password (407 Proxy Authentication Required)"
            " - check them in [client.transport.tcp] proxy",
        ),
        (
            "socks5-auth",
            "",
            "the proxy closed the connection after the greeting - does it need a user name "
            'and password ("socks5://user:password@host:port")?',
        ),
        (
            "http-auth",
            "",
            "the proxy requires a user name and password (407 Proxy Authentication Required),"
            ' and the proxy URL has none (use "http://user:password@host:port")',
        ),
    ],
    ids=["socks5-wrong", "http-wrong", "socks5-missing", "http-missing"],
)
def test_wrong_or_missing_credentials_are_named(
    tmp_path, procs, echo, proxies, identity, proxy_kind, creds, message
):
    tunnel = Tunnel(tmp_path, procs, "noise", identity)
    bad = tunnel.client(echo.addr, proxies.url(proxy_kind, creds=creds), name="bad")
    scheme = proxy_kind.split("-")[0]
    bad.wait_for_output(
        f"cannot establish the control channel: cannot reach localhost:{tunnel.port} through "
        f"the {scheme} proxy 127.0.0.1:{proxies.ports[proxy_kind]}: {message}",
        timeout=15,
    )
    bad.wait_for_output("retrying in")  # and it goes on retrying, as rathole
    assert "wrong-secret" not in bad.output()
    # Meanwhile a client with the right credentials gets through the same proxy.
    tunnel.client(echo.addr, proxies.url(proxy_kind))
    wait_port(tunnel.service, timeout=15)
    echo_roundtrip(tunnel.service, 10_000)
    assert bad.popen.poll() is None and tunnel.server.popen.poll() is None


@pytest.mark.timeout(60)
def test_unreachable_proxy_is_named(tmp_path, procs, echo, identity):
    tunnel = Tunnel(tmp_path, procs, "tcp", identity)
    closed = free_port()
    bad = tunnel.client(echo.addr, f"socks5://{USER}:{PASSWORD_IN_URL}@127.0.0.1:{closed}")
    bad.wait_for_output(
        f"cannot establish the control channel: cannot connect to the socks5 proxy "
        f"127.0.0.1:{closed}: Connection refused (to reach localhost:{tunnel.port})",
        timeout=15,
    )
    assert PASSWORD not in bad.output() and PASSWORD_IN_URL not in bad.output()
