"""PROXY protocol headers (ratui extension ``proxy_protocol``): byte-for-byte encoding against
HAProxy's proxy-protocol.txt, and end to end through a ratui server to a local service that
parses the header, with a ratui client and with the reference rathole client."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EchoServer, Procs, free_port, wait_port, write_config

from ratui.engine.proxy_header import V2_SIGNATURE, encode, encode_v1, encode_v2

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- encoding


def test_v2_signature_is_the_spec_one():
    assert V2_SIGNATURE == b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
    assert V2_SIGNATURE == b"\r\n\r\n\x00\r\nQUIT\n"


def test_v1_tcp4():
    assert (
        encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443))
        == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )


def test_v1_tcp6():
    assert (
        encode_v1(("2001:db8::1", 1, 0, 0), ("::1", 65535, 0, 0))
        == b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n"
    )


def test_v1_ipv4_mapped_becomes_tcp4_and_scope_is_dropped():
    assert (
        encode_v1(("::ffff:10.0.0.1", 1000, 0, 0), ("::ffff:10.0.0.2", 80, 0, 0))
        == b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 80\r\n"
    )
    assert (
        encode_v1(("fe80::1%lo", 5, 0, 1), ("fe80::2%lo", 6, 0, 1))
        == b"PROXY TCP6 fe80::1 fe80::2 5 6\r\n"
    )


def test_v1_mixed_families_are_both_ipv6():
    assert encode_v1(("10.0.0.1", 1), ("::1", 2, 0, 0)) == b"PROXY TCP6 ::ffff:a00:1 ::1 1 2\r\n"


def test_v1_unknown():
    assert encode_v1(None, ("1.2.3.4", 1)) == b"PROXY UNKNOWN\r\n"
    assert encode_v1("/tmp/sock", "/tmp/sock") == b"PROXY UNKNOWN\r\n"


def test_v1_longest_fits_the_spec_limit():
    v6 = "ffff:" * 7 + "ffff"
    longest = encode_v1((v6, 65535, 0, 0), (v6, 65535, 0, 0))
    assert len(longest) == 104  # "a 108-byte buffer is always enough" (CRLF included)


def test_v2_tcp4_bytes():
    header = encode_v2(("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == (
        V2_SIGNATURE
        + b"\x21"  # version 2, command PROXY
        + b"\x11"  # AF_INET, STREAM
        + b"\x00\x0c"  # 12 bytes follow
        + bytes([192, 168, 0, 1])
        + bytes([192, 168, 0, 11])
        + b"\xdc\x04"  # 56324
        + b"\x01\xbb"  # 443
    )
    assert len(header) == 16 + 12


def test_v2_tcp6_bytes():
    header = encode_v2(("2001:db8::1", 1234, 0, 0), ("::1", 80, 0, 0))
    assert header == (
        V2_SIGNATURE
        + b"\x21\x21\x00\x24"  # PROXY, AF_INET6 STREAM, 36 bytes
        + b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"
        + b"\x00" * 15 + b"\x01"
        + b"\x04\xd2\x00\x50"
    )  # fmt: skip
    assert len(header) == 16 + 36


def test_v2_unknown_is_unspec_with_no_addresses():
    assert encode_v2(None, None) == V2_SIGNATURE + b"\x21\x00\x00\x00"


def test_encode_dispatch():
    src, dst = ("1.2.3.4", 5), ("6.7.8.9", 10)
    assert encode("v1", src, dst) == encode_v1(src, dst)
    assert encode("v2", src, dst) == encode_v2(src, dst)
    with pytest.raises(ValueError):
        encode("v3", src, dst)


# --------------------------------------------------------------------------- a receiver


def read_header(conn: socket.socket) -> tuple[str, tuple[str, int], tuple[str, int], bytes]:
    """Parse one PROXY header from ``conn`` as a receiver would (proxy-protocol.txt §2.1, §2.2):
    (version, source, destination, bytes read past the header)."""
    buf = b""
    while len(buf) < 16:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError(f"EOF inside a PROXY header: {buf!r}")
        buf += chunk
    if buf.startswith(V2_SIGNATURE):
        ver_cmd, family, length = struct.unpack("!BBH", buf[12:16])
        assert ver_cmd == 0x21, hex(ver_cmd)
        while len(buf) < 16 + length:
            buf += conn.recv(4096)
        body, rest = buf[16 : 16 + length], buf[16 + length :]
        if family == 0x11:
            src = (str(ipaddress.IPv4Address(body[0:4])), int.from_bytes(body[8:10], "big"))
            dst = (str(ipaddress.IPv4Address(body[4:8])), int.from_bytes(body[10:12], "big"))
        elif family == 0x21:
            src = (str(ipaddress.IPv6Address(body[0:16])), int.from_bytes(body[32:34], "big"))
            dst = (str(ipaddress.IPv6Address(body[16:32])), int.from_bytes(body[34:36], "big"))
        else:
            raise AssertionError(f"unexpected family {family:#x}")
        return "v2", src, dst, rest
    assert buf.startswith(b"PROXY "), buf[:16]
    while b"\r\n" not in buf:
        assert len(buf) < 108, buf
        buf += conn.recv(4096)
    line, rest = buf.split(b"\r\n", 1)
    _, proto, sip, dip, sport, dport = line.decode("ascii").split(" ")
    assert proto in ("TCP4", "TCP6")
    return "v1", (sip, int(sport)), (dip, int(dport)), rest


class ProxyEcho(EchoServer):
    """A local service that expects a PROXY header on every connection, records what it said
    (keyed by the source port), then echoes the rest."""

    def __init__(self) -> None:
        self.seen: dict[int, tuple[str, tuple[str, int], tuple[str, int]]] = {}
        self.errors: list[str] = []
        super().__init__()  # starts accepting: what the handler records must exist first

    def _echo(self, conn: socket.socket) -> None:  # type: ignore[override]
        with conn:
            conn.settimeout(20)
            try:
                version, src, dst, rest = read_header(conn)
                self.seen[src[1]] = (version, src, dst)
                if rest:
                    conn.sendall(rest)
                while data := conn.recv(65536):
                    conn.sendall(data)
            except (OSError, AssertionError, ValueError) as e:
                self.errors.append(repr(e))


@pytest.fixture
def proxy_echo() -> Iterator[ProxyEcho]:
    server = ProxyEcho()
    try:
        yield server
    finally:
        server.close()


def visit(host: str, port: int, payload: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Connect, send ``payload``, read as many bytes back; (our source port, what came back).
    Does not half-close first, so a visitor still queued for a data channel is not dropped."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sport = sock.getsockname()[1]
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return sport, got


def echoes(host: str, port: int) -> bool:
    return visit(host, port, b"ready?", timeout=2)[1] == b"ready?"


def tunnel(
    tmp_path: Path,
    procs: Procs,
    client_impl: str,
    local_addr: str,
    version: str,
    host: str,
    ready: Callable[[str, int], bool] = echoes,
) -> int:
    """A ratui server whose service ``web`` sends PROXY headers, and a client of
    ``client_impl``; returns the service port once a visitor gets through."""
    control, port = free_port(), free_port()
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server_cfg = write_config(
        tmp_path / "server.toml",
        f'[server]\nbind_addr = "127.0.0.1:{control}"\ndefault_token = "t0ken"\n'
        f"[server.services.web]\nbind_addr = {json.dumps(bind)}\n"
        f"proxy_protocol = {json.dumps(version)}\n",
    )
    client_cfg = write_config(
        tmp_path / "client.toml",
        f'[client]\nremote_addr = "127.0.0.1:{control}"\ndefault_token = "t0ken"\n'
        f"[client.services.web]\nlocal_addr = {json.dumps(local_addr)}\n",
    )
    procs.ratui("--server", str(server_cfg))
    wait_port(control)
    getattr(procs, client_impl)("--client", str(client_cfg))
    deadline = time.monotonic() + 20
    while True:
        try:
            if ready(host, port):
                return port
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no answer through {bind} within 20 s"
        time.sleep(0.1)


def check_visitors(host: str, port: int, proxy_echo: ProxyEcho, version: str) -> None:
    for size in (1, 5000, 300_000):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        sport, got = visit(host, port, payload, timeout=20)
        assert got == payload  # the header is not echoed back: it was consumed, not relayed
        deadline = time.monotonic() + 5
        while sport not in proxy_echo.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy_echo.seen[sport] == (version, (host, sport), (host, port))
    assert not proxy_echo.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ratui_server_ratui_client(tmp_path, procs, proxy_echo, version, host):
    try:
        socket.create_server(
            (host, 0), family=socket.AF_INET6 if ":" in host else socket.AF_INET
        ).close()
    except OSError:
        pytest.skip(f"{host} is not available here")
    port = tunnel(tmp_path, procs, "ratui", proxy_echo.addr, version, host)
    check_visitors(host, port, proxy_echo, version)


@pytest.mark.interop
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_ratui_server_rathole_client(tmp_path, procs, proxy_echo, version):
    port = tunnel(tmp_path, procs, "rathole", proxy_echo.addr, version, "127.0.0.1")
    check_visitors("127.0.0.1", port, proxy_echo, version)


# --------------------------------------------------------------------------- a real consumer

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def http_get(host: str, port: int, timeout: float = 5.0) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """nginx (Debian's nginx-light; .ci/run installs it) listening with ``proxy_protocol`` on
    a free port, answering and logging ``$proxy_protocol_addr:$proxy_protocol_port``."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light); .ci/run installs it")
    root = tmp_path / "nginx"
    root.mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    temp = " ".join(
        f"{k}_temp_path {root / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"daemon off;\nmaster_process off;\nworker_processes 1;\n"
        f"error_log {root / 'error.log'} info;\npid {root / 'nginx.pid'};\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        "  log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr';\n"
        f"  access_log {root / 'access.log'} pp;\n  {temp}\n"
        f"  server {{\n    listen 127.0.0.1:{port} proxy_protocol;\n"
        '    location / { return 200 "hello $proxy_protocol_addr:$proxy_protocol_port\\n"; }\n'
        "  }\n}\n"
    )
    with open(root / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(conf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        try:
            wait_port(port)
        except TimeoutError:
            log = (
                (root / "error.log").read_text(errors="replace")
                if (root / "error.log").exists()
                else ""
            )
            out_text = (root / "stdout.log").read_text(errors="replace")
            pytest.fail(f"nginx did not start:\n{out_text}\n{log}")
        yield f"127.0.0.1:{port}", root / "access.log"
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_nginx_sees_the_visitor_address(tmp_path, procs, nginx, version):
    local_addr, access_log = nginx

    def ready(host: str, port: int) -> bool:
        return http_get(host, port, timeout=2).startswith(b"HTTP/1.1 200")

    port = tunnel(tmp_path, procs, "ratui", local_addr, version, "127.0.0.1", ready)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sport = sock.getsockname()[1]
        sock.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got
    assert got.endswith(f"hello 127.0.0.1:{sport}\n".encode()), got
    deadline = time.monotonic() + 5
    while f"127.0.0.1:{sport} " not in access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"127.0.0.1:{sport} 127.0.0.1" in access_log.read_text()
