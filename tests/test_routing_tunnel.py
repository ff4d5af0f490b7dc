"""Several services on one public port (ratui extension ``sni``/``http_host``/``default_route``),
end to end: a ratui server, ratui clients (and the reference rathole client) as two home
servers, TLS echo services that terminate TLS with certificates of a test CA, small HTTP
services that answer with their own name. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue_server_cert, make_ca, pem
from conftest import (
    EchoServer,
    Procs,
    free_port,
    poll_until,
    run,
    serve_echo,
    wait_port,
    write_config,
)
from cryptography.hazmat.primitives import serialization
from test_proxy_protocol import ProxyEcho
from tunnels import recv_exact, toml, wait_until

from ratui.engine import server as server_mod
from ratui.engine import shared_listener
from ratui.engine.config import Config, parse_config
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.server import Server
from ratui.engine.state import ControlState, Level, Role

pytestmark = pytest.mark.timeout(90)

TOKEN = "r0ute-t0ken"


# --------------------------------------------------------------------------- home services


class TlsEcho(EchoServer):
    """A TLS service at home: terminates TLS with its own certificate, says its name, then
    echoes."""

    def __init__(self, name: str, context: ssl.SSLContext) -> None:
        self.name = name
        self.context = context
        super().__init__()

    def _echo(self, conn: socket.socket) -> None:  # type: ignore[override]
        with conn:
            conn.settimeout(20)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(f"{self.name}\n".encode())
                    while data := tls.recv(65536):
                        tls.sendall(data)
            except (OSError, ssl.SSLError):
                pass


class HttpName(EchoServer):
    """An HTTP service at home: answers every request head with its name and the Host."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def _echo(self, conn: socket.socket) -> None:  # type: ignore[override]
        with conn:
            conn.settimeout(20)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                host = next(
                    (
                        line.split(b":", 1)[1].strip().decode()
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"host:")
                    ),
                    "",
                )
                body = f"{self.name} {host}".encode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass


@dataclass
class Pki:
    ca: Issued
    ca_pem: Path
    tmp: Path

    def server_context(self, *hostnames: str) -> ssl.SSLContext:
        leaf = issue_server_cert(self.ca, hostnames)
        cert, key = self.tmp / f"{hostnames[0]}.pem", self.tmp / f"{hostnames[0]}.key"
        cert.write_bytes(pem(leaf.cert))
        key.write_bytes(
            leaf.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_pem))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca()
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(pem(ca.cert))
    return Pki(ca, ca_pem, tmp_path)


@pytest.fixture
def homes(pki: Pki) -> Iterator[dict[str, EchoServer]]:
    """Two TLS services (pi, nas), two HTTP ones (blog, wiki) and a catch-all (fallback)."""
    servers: dict[str, EchoServer] = {
        "pi": TlsEcho("pi", pki.server_context("pi.example.com")),
        "nas": TlsEcho(
            "nas", pki.server_context("nas.example.com", "*.nas.example.com", "a.b.nas.example.com")
        ),
        "blog": HttpName("blog"),
        "wiki": HttpName("wiki"),
        "fallback": EchoServer(),
    }
    try:
        yield servers
    finally:
        for server in servers.values():
            server.close()


# --------------------------------------------------------------------------- visitors


def read_line(sock: socket.socket) -> str:
    """One line the home service says (its name); ConnectionError if it closes first."""
    line = b""
    while not line.endswith(b"\n"):
        line += recv_exact(sock, 1)
    return line.decode().strip()


def tls_visit(port: int, hostname: str, context: ssl.SSLContext) -> tuple[str, str, bytes]:
    """A TLS visitor: (the name the home service says, its certificate's CN, the echo)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        cert = tls.getpeercert()
        assert cert is not None
        common_name = dict(x[0] for x in cert["subject"])["commonName"]
        name = read_line(tls)
        tls.sendall(b"hello " + hostname.encode())
        echo = recv_exact(tls, len(b"hello " + hostname.encode()))
        return name, common_name, echo


def recv_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("closed by the server")
    return data


def tls_visit_in_pieces(port: int, hostname: str, context: ssl.SSLContext) -> str:
    """A TLS visitor whose ClientHello goes out one byte per TCP segment; returns what the
    home service says."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=hostname)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with pytest.raises(ssl.SSLWantReadError):
            tls.do_handshake()
        hello = outgoing.read()
        for i in range(len(hello)):
            sock.sendall(hello[i : i + 1])
            if i % 64 == 0:
                time.sleep(0.001)  # let some of the bytes leave alone
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(recv_some(sock))
        sock.sendall(outgoing.read())
        said = b""
        while not said.endswith(b"\n"):
            try:
                chunk = tls.read(1)
            except ssl.SSLWantReadError:
                incoming.write(recv_some(sock))
                continue
            if not chunk:
                raise ConnectionError("TLS closed by the server")
            said += chunk
        return said.decode().strip()


def http_get(port: int, host: str, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def answers(port: int, host: str) -> bool:
    try:
        return http_get(port, host, timeout=2).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


# --------------------------------------------------------------------------- the tunnel


@dataclass
class Shared:
    tls: int  # the shared "443"
    http: int  # the shared "80"
    control: int
    server_cfg: Path


def server_services(tls: int, http: int) -> dict[str, dict[str, object]]:
    return {
        "pi": {"bind_addr": f"127.0.0.1:{tls}", "sni": ["pi.example.com"]},
        "nas": {
            "bind_addr": f"127.0.0.1:{tls}",
            "sni": ["nas.example.com", "*.nas.example.com"],
        },
        "blog": {"bind_addr": f"127.0.0.1:{http}", "http_host": ["blog.example.com"]},
        "wiki": {"bind_addr": f"127.0.0.1:{http}", "http_host": ["wiki.example.com", "*.org"]},
        "fallback": {"bind_addr": f"127.0.0.1:{http}", "default_route": True},
    }


def start_server(tmp_path: Path, procs: Procs) -> Shared:
    control, tls, http = free_port(), free_port(), free_port()
    cfg = write_config(
        tmp_path / "server.toml",
        toml("server", f"127.0.0.1:{control}", server_services(tls, http), default_token=TOKEN),
    )
    procs.ratui("--server", str(cfg))
    wait_port(control)
    return Shared(tls, http, control, cfg)


def start_client(
    tmp_path: Path, procs: Procs, shared: Shared, name: str, services: dict[str, str], impl: str
) -> None:
    cfg = write_config(
        tmp_path / f"{name}.toml",
        toml(
            "client",
            f"127.0.0.1:{shared.control}",
            {svc: {"local_addr": addr} for svc, addr in services.items()},
            default_token=TOKEN,
        ),
    )
    getattr(procs, impl)("--client", str(cfg))


def two_homes(
    tmp_path: Path, procs: Procs, homes: dict[str, EchoServer], impl: str = "ratui"
) -> Shared:
    """The server, home A (pi, blog) and home B (nas, wiki, fallback), all connected."""
    shared = start_server(tmp_path, procs)
    start_client(
        tmp_path, procs, shared, "home-a", {n: homes[n].addr for n in ("pi", "blog")}, impl
    )
    start_client(
        tmp_path,
        procs,
        shared,
        "home-b",
        {n: homes[n].addr for n in ("nas", "wiki", "fallback")},
        impl,
    )
    wait_until(lambda: answers(shared.http, "blog.example.com"), 20, "blog through the tunnel")
    wait_until(lambda: answers(shared.http, "wiki.example.com"), 20, "wiki through the tunnel")
    return shared


def check_routes(shared: Shared, pki: Pki) -> None:
    context = pki.client_context()
    assert tls_visit(shared.tls, "pi.example.com", context) == (
        "pi",
        "pi.example.com",
        b"hello pi.example.com",
    )
    assert tls_visit(shared.tls, "nas.example.com", context)[:2] == ("nas", "nas.example.com")
    # the wildcard: one or more labels in front
    assert tls_visit(shared.tls, "photos.nas.example.com", context)[0] == "nas"
    assert tls_visit(shared.tls, "a.b.nas.example.com", context)[0] == "nas"
    assert http_get(shared.http, "blog.example.com").endswith(b"blog blog.example.com")
    assert http_get(shared.http, "BLOG.example.com:8080").endswith(b"blog BLOG.example.com:8080")
    assert http_get(shared.http, "wiki.example.com").endswith(b"wiki wiki.example.com")
    assert http_get(shared.http, "docs.example.org").endswith(b"wiki docs.example.org")
    # the default route takes an unknown host, and bytes that are not HTTP at all
    for payload in (b"\x00\x01not http at all", b"GET / HTTP/1.1\r\nHost: a.example.net\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", shared.http), timeout=10) as sock:
            sock.sendall(payload)
            assert recv_exact(sock, len(payload)) == payload  # the fallback echoes


# --------------------------------------------------------------------------- tests


def test_tls_and_http_services_share_ports(tmp_path, procs, homes, pki):
    shared = two_homes(tmp_path, procs, homes)
    check_routes(shared, pki)
    # A ClientHello sent one byte at a time is reassembled and routed.
    assert tls_visit_in_pieces(shared.tls, "pi.example.com", pki.client_context()) == "pi"
    # No route and no default on the TLS port: an unrecognized_name alert, nothing forwarded.
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_visit(shared.tls, "other.example.com", pki.client_context())
    accepted = {name: home.accepted for name, home in homes.items()}
    with socket.create_connection(("127.0.0.1", shared.tls), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: pi.example.com\r\n\r\n")  # HTTP on the TLS port
        assert sock.recv(65536).startswith(b"HTTP/1.1 421 Misdirected Request\r\n")
        assert sock.recv(65536) == b""
    # A malformed head on the port with a default route: 400, and the default never sees it.
    with socket.create_connection(("127.0.0.1", shared.http), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: blog.example.com\r\nHost: x.example.net\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert {name: home.accepted for name, home in homes.items()} == accepted


def test_routed_visitor_of_an_offline_client_is_refused(tmp_path, procs, homes, pki):
    shared = start_server(tmp_path, procs)
    home_a = {n: homes[n].addr for n in ("pi", "blog")}
    start_client(tmp_path, procs, shared, "home-a", home_a, "ratui")
    wait_until(lambda: answers(shared.http, "blog.example.com"), 20, "blog through the tunnel")
    # wiki's client is not connected: 503, not the default route
    got = http_get(shared.http, "wiki.example.com")
    assert got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), got
    # nas's client is not connected: a TLS internal_error alert
    with pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):
        tls_visit(shared.tls, "nas.example.com", pki.client_context())
    assert tls_visit(shared.tls, "pi.example.com", pki.client_context())[0] == "pi"


def test_reload_moves_a_service_to_its_own_port_and_back(tmp_path, procs, homes):
    shared = two_homes(tmp_path, procs, homes)
    own = free_port()
    services = server_services(shared.tls, shared.http)

    def reload(blog: dict[str, object]) -> None:
        services["blog"] = blog
        write_config(
            shared.server_cfg,
            toml("server", f"127.0.0.1:{shared.control}", services, default_token=TOKEN),
        )

    def blog_at(port: int, host: str) -> bool:
        try:
            return http_get(port, host, timeout=2).endswith(f"blog {host}".encode())
        except OSError:
            return False

    shared_blog = services["blog"]
    reload({"bind_addr": f"127.0.0.1:{own}"})  # a port of its own, no routes
    wait_until(lambda: blog_at(own, "any.example.com"), 30, "blog on its own port")
    assert http_get(shared.http, "wiki.example.com").endswith(b"wiki wiki.example.com")
    reload(shared_blog)  # and back to the shared port
    wait_until(lambda: blog_at(shared.http, "blog.example.com"), 30, "blog on the shared port")
    wait_until(lambda: not blog_at(own, "any.example.com"), 10, "its own port to close")
    assert http_get(shared.http, "wiki.example.com").endswith(b"wiki wiki.example.com")


def test_silent_visitor_goes_to_the_default_route_after_the_sniff_timeout(
    tmp_path, procs, homes, pki
):
    shared = two_homes(tmp_path, procs, homes)
    with socket.create_connection(("127.0.0.1", shared.http), timeout=15) as sock:
        started = time.monotonic()
        sock.sendall(b"GE")  # the start of a request, and then nothing
        time.sleep(0.5)
        sock.sendall(b"T")
        got = recv_exact(sock, 3)  # the fallback echoes once the sniffing gives up
        waited = time.monotonic() - started
    assert got == b"GET"
    assert 4.0 <= waited <= 10.0, waited


def test_proxy_protocol_on_a_routed_service(tmp_path, procs):
    proxy_echo = ProxyEcho()
    try:
        check_proxy_protocol(tmp_path, procs, proxy_echo)
    finally:
        proxy_echo.close()


def check_proxy_protocol(tmp_path: Path, procs: Procs, proxy_echo: ProxyEcho) -> None:
    """A routed service with proxy_protocol = "v2": the header, with the visitor's address,
    reaches the home service, then the sniffed request head, unchanged."""
    control, port = free_port(), free_port()
    services = {
        "pp": {
            "bind_addr": f"127.0.0.1:{port}",
            "http_host": ["pp.example.com"],
            "proxy_protocol": "v2",
        },
        "other": {"bind_addr": f"127.0.0.1:{port}", "http_host": ["other.example.com"]},
    }
    server_cfg = write_config(
        tmp_path / "server.toml",
        toml("server", f"127.0.0.1:{control}", services, default_token=TOKEN),
    )
    client_cfg = write_config(
        tmp_path / "client.toml",
        toml(
            "client",
            f"127.0.0.1:{control}",
            {"pp": {"local_addr": proxy_echo.addr}},
            default_token=TOKEN,
        ),
    )
    procs.ratui("--server", str(server_cfg))
    wait_port(control)
    procs.ratui("--client", str(client_cfg))
    request = b"GET / HTTP/1.1\r\nHost: pp.example.com\r\n\r\n"

    def echoed() -> tuple[int, bytes] | None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                return sock.getsockname()[1], recv_exact(sock, len(request))
        except OSError:
            return None

    wait_until(lambda: echoed() is not None, 20, "pp through the tunnel")
    sport, got = echoed() or (0, b"")
    assert got == request  # the sniffed head arrives after the header, unchanged
    wait_until(lambda: sport in proxy_echo.seen, 5, "the PROXY header")
    assert proxy_echo.seen[sport] == ("v2", ("127.0.0.1", sport), ("127.0.0.1", port))
    assert not proxy_echo.errors


@pytest.mark.interop
def test_rathole_clients_behind_routed_ports(tmp_path, procs, homes, pki):
    shared = two_homes(tmp_path, procs, homes, impl="rathole")
    check_routes(shared, pki)


class TlsStream:
    """A TLS visitor that keeps sending chunks and checking their echo, in a thread."""

    def __init__(self, port: int, hostname: str, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.tls = context.wrap_socket(raw, server_hostname=hostname)
        self.said = read_line(self.tls)
        self.echoed = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = bytes([self.echoed % 251]) * 4096
                self.tls.sendall(chunk)
                assert recv_exact(self.tls, len(chunk)) == chunk, "corrupt echo"
                self.echoed += len(chunk)
                time.sleep(0.005)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.tls.close()
        assert self.error is None, self.error


def test_hot_reload_adds_a_routed_service_while_a_visitor_streams(tmp_path, procs, homes, pki):
    shared = two_homes(tmp_path, procs, homes)
    context = pki.client_context()
    third = TlsEcho("cam", pki.server_context("cam.example.com"))
    stream = TlsStream(shared.tls, "pi.example.com", context)
    try:
        assert stream.said == "pi"
        wait_until(lambda: stream.echoed > 64 * 1024, 10, "the stream to flow")
        services = server_services(shared.tls, shared.http)
        services["cam"] = {"bind_addr": f"127.0.0.1:{shared.tls}", "sni": ["cam.example.com"]}
        write_config(
            shared.server_cfg,
            toml("server", f"127.0.0.1:{shared.control}", services, default_token=TOKEN),
        )
        start_client(tmp_path, procs, shared, "home-c", {"cam": third.addr}, "ratui")

        def cam_answers() -> bool:
            try:
                return tls_visit(shared.tls, "cam.example.com", context)[0] == "cam"
            except (OSError, ssl.SSLError):
                return False

        wait_until(cam_answers, 30, "the added service cam")
        assert tls_visit(shared.tls, "pi.example.com", context)[0] == "pi"
        flowed = stream.echoed
        wait_until(lambda: stream.echoed > flowed + 64 * 1024, 10, "the stream to go on")

        # and removed again: cam's name matches nothing any more, pi streams on
        del services["cam"]
        write_config(
            shared.server_cfg,
            toml("server", f"127.0.0.1:{shared.control}", services, default_token=TOKEN),
        )

        def cam_unknown() -> bool:
            try:
                tls_visit(shared.tls, "cam.example.com", context)
            except ssl.SSLError as exc:
                return "UNRECOGNIZED_NAME" in str(exc)
            except OSError:
                pass
            return False

        wait_until(cam_unknown, 30, "cam to be removed")
        flowed = stream.echoed
        wait_until(lambda: stream.echoed > flowed + 64 * 1024, 10, "the stream to go on")
        assert tls_visit(shared.tls, "nas.example.com", context)[0] == "nas"
    finally:
        stream.stop()
        third.close()


# --------------------------------------------------------------------------- in process


def routed_config(local_port: int, clients: tuple[str, ...] = ("a", "b")) -> Config:
    """Server and client in one config: services a and b on one port, by Host, no default;
    the client serves ``clients`` of them."""
    control, shared = free_port(), free_port()
    services = {
        name: {"bind_addr": f"127.0.0.1:{shared}", "http_host": [f"{name}.example.com"]}
        for name in ("a", "b")
    }
    text = toml("server", f"127.0.0.1:{control}", services, default_token=TOKEN) + toml(
        "client",
        f"127.0.0.1:{control}",
        {name: {"local_addr": f"127.0.0.1:{local_port}"} for name in clients},
        default_token=TOKEN,
    )
    return parse_config(text, "<routed>")


async def get_echo(port: int, host: str) -> bytes:
    """An HTTP request head through the echo service: what comes back."""
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.readexactly(len(request)), 5)
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def routed_runtime(**options: Any) -> AsyncIterator[tuple[Runtime, Server, int]]:
    """routed_config's server and client in this process in front of an echo service, once
    the shared port listens: (the runtime, its server, the shared port)."""
    echo = await asyncio.start_server(partial(serve_echo, half_close=False), "127.0.0.1", 0)
    config = routed_config(echo.sockets[0].getsockname()[1], **options)
    assert config.server is not None
    port = int(config.server.services["a"].bind_addr.rpartition(":")[2])
    runtime = Runtime(config, Roles(server=True, client=True))
    await runtime.start()
    try:
        server = runtime.server
        assert server is not None
        await poll_until(
            lambda: (
                bool(server.shared) and all(p.listener is not None for p in server.shared.values())
            ),
            10,
            "the shared port to listen",
        )
        yield runtime, server, port
    finally:
        await runtime.stop()
        echo.close()


@pytest.mark.usefixtures("manual_rate_sampling")
def test_silent_visitor_flood_is_capped_and_timed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent visitors of a shared port, five times the cap: at most the cap of them are held
    (the oldest closed first), each for at most the sniff timeout, while a real visitor still
    gets through and the route it took is recorded on it."""
    cap = 16
    monkeypatch.setattr(server_mod, "MAX_PENDING_HANDSHAKES", cap)
    monkeypatch.setattr(shared_listener, "SNIFF_TIMEOUT", 1.0)

    async def main() -> None:
        async with routed_runtime() as (runtime, server, port):
            await poll_until(
                lambda: all(s.state is ControlState.UP for s in runtime.state.snapshot().services),
                10,
                "every service up",
            )
            flood = []
            peak = 0
            for _ in range(5 * cap):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET / HTTP/1.1\r\n")  # and never the end of the head
                flood.append(writer)
                await asyncio.sleep(0)
                peak = max(peak, len(server.sniffing))
            assert await get_echo(port, "b.example.com") == (
                b"GET / HTTP/1.1\r\nHost: b.example.com\r\n\r\n"
            )
            assert peak == cap, peak
            snapshot = runtime.state.snapshot().service(Role.SERVER, "a")
            assert snapshot is not None and snapshot.routes == ("a.example.com",)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: A.example.com:80\r\n\r\n")
            await reader.readexactly(10)

            def routes_of_a() -> list[str | None]:
                service = runtime.state.snapshot().service(Role.SERVER, "a")
                return [v.route for v in service.visitors] if service else []

            await poll_until(lambda: routes_of_a() == ["a.example.com"], 5, "a's visitor")
            writer.close()
            await poll_until(lambda: len(server.sniffing) == 0, 5, "the sniff timeout")
            for writer in flood:
                writer.close()

    run(main())


async def post_with_body(port: int, host: str, body_size: int) -> bytes:
    """A request head and a body the server never reads: the whole answer it gets."""
    head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {body_size}\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + b"x" * body_size)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def test_refusals_reach_a_visitor_that_sent_a_body() -> None:
    """A 421 (no route, no default, on the HTTP port) and a 503 (service b's client is away)
    arrive whole although the visitor sent 200 KB the server never reads; the 503 event names
    the service, and refused visitors do not stay held."""

    async def main() -> None:
        async with routed_runtime(clients=("a",)) as (runtime, server, port):
            for _ in range(3):
                got = await post_with_body(port, "c.example.com", 200_000)
                assert got.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"), got[:80]
                got = await post_with_body(port, "b.example.com", 200_000)
                assert got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), got[:80]
            refusals = [e for e in runtime.state.recent_events() if "refused" in e.message]
            assert any(e.service == "b" and "b.example.com" in e.message for e in refusals)
            assert any(e.service is None and "c.example.com" in e.message for e in refusals)
            await poll_until(lambda: len(server.sniffing) == 0, 5, "the drained visitors to go")

    run(main())


def test_rathole_services_on_one_address_warn_that_one_listens_at_a_time() -> None:
    control, port = free_port(), free_port()
    services = {name: {"bind_addr": f"127.0.0.1:{port}"} for name in ("active", "standby")}
    config = parse_config(toml("server", f"127.0.0.1:{control}", services, default_token=TOKEN))

    async def main() -> None:
        runtime = Runtime(config, Roles(server=True, client=False))
        await runtime.start()
        try:
            warnings = [
                e
                for e in runtime.state.recent_events()
                if e.level is Level.WARNING and "only one of these services" in e.message
            ]
            assert [e.service for e in warnings] == ["standby"], warnings
        finally:
            await runtime.stop()

    run(main())
