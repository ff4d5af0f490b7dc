"""The WebSocket transport (PROTOCOL.md §5.4, §7 item 15), plain and over TLS.

The reference rathole in ../shared/rathole is built without WebSocket support, so interop is
checked against PROTOCOL.md's description, byte by byte where it is exact (the request line
and headers, Binary frames, client masking, an empty Close), and against a real WebSocket
implementation: the ``websockets`` library's asyncio client and server as the peer of a ratui
server and client. Then ratui to ratui over real processes (TCP and UDP services), and the
ways a WebSocket link can be misconfigured, each with its log line while the server keeps
serving everyone else.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from certs import ServerIdentity, make_ca, server_identity
from conftest import EchoServer, Proc, Procs, free_port, wait_port, write_config
from test_transport_noise import (
    HELLO_FOO1,
    assert_dropped,
    attach,
    check_flow_control,
    check_handshake_before_channel,
    client_toml,
    noise_table,
    open_pair,
    run,
    server_toml,
    start,
    wait_for_count,
)
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.uri import parse_uri

from ratui.engine.config import TcpTransportConfig, TlsConfig, WebsocketConfig, parse_config
from ratui.engine.protocol import MessageReader
from ratui.engine.transport import websocket as ws_module
from ratui.engine.transport.layered import LayerError
from ratui.engine.transport.websocket import WebSocketSession, WebsocketTransport

MiB = 1 << 20
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ------------------------------------------------------------------------------ sans I/O
def handshake_pair(addr: str = "127.0.0.1:2333") -> tuple[WebSocketSession, WebSocketSession]:
    client = WebSocketSession(server_side=False, addr=addr)
    server = WebSocketSession(server_side=True)
    client.start()
    assert server.handshake(client.take_output()) == b""
    assert client.handshake(server.take_output()) == b""
    return client, server


def request_of(addr: str) -> tuple[str, dict[str, str]]:
    client = WebSocketSession(server_side=False, addr=addr)
    client.start()
    head = client.take_output().decode()
    assert head.endswith("\r\n\r\n")
    line, *rest = head[:-4].split("\r\n")
    headers = {}
    for item in rest:
        name, _, value = item.partition(": ")
        headers[name.lower()] = value
    return line, headers


def lib_client(server: WebSocketSession) -> ClientProtocol:
    """A ``websockets`` sans-I/O client after its handshake with ``server``."""
    peer = ClientProtocol(parse_uri("ws://x/"))
    peer.send_request(peer.connect())
    assert server.handshake(b"".join(peer.data_to_send())) == b""
    peer.receive_data(server.take_output())
    assert peer.handshake_exc is None
    peer.events_received()
    return peer


def unmask(frame: bytes) -> tuple[int, bool, bytes]:
    """(opcode | FIN bit, masked, payload) of one whole frame."""
    head, second = frame[0], frame[1]
    length, pos = second & 0x7F, 2
    if length == 126:
        length, pos = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, pos = int.from_bytes(frame[2:10], "big"), 10
    masked = bool(second & 0x80)
    if masked:
        key, pos = frame[pos : pos + 4], pos + 4
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(frame[pos : pos + length]))
    else:
        payload = frame[pos : pos + length]
    assert len(frame) == pos + length, "not exactly one frame"
    return head, masked, payload


def test_client_request_is_get_slash_with_host_and_no_extras():
    line, headers = request_of("127.0.0.1:2333")
    assert line == "GET / HTTP/1.1"
    assert headers["host"] == "127.0.0.1:2333"
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "Upgrade"
    assert headers["sec-websocket-version"] == "13"
    assert len(base64.b64decode(headers["sec-websocket-key"])) == 16
    assert set(headers) == {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
    }, "no subprotocol, extension, origin or user agent, as tungstenite"
    # The url crate drops the scheme's default port; IPv6 keeps its brackets.
    assert request_of("example.com:80")[1]["host"] == "example.com"
    assert request_of("[::1]:2333")[1]["host"] == "[::1]:2333"


def test_server_accepts_any_path_and_host():
    server = WebSocketSession(server_side=True)
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET /some/where?x=1 HTTP/1.1\r\nHost: not-this-server.example:9\r\n"
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    assert server.handshake(request) == b""
    response = server.take_output()
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    assert b"Sec-WebSocket-Accept: " + accept + b"\r\n" in response


def test_each_write_is_one_binary_frame_masked_by_the_client_only():
    client, server = handshake_pair()
    wire = client.encrypt(HELLO_FOO1)
    head, masked, payload = unmask(bytes(wire))
    assert head == 0x80 | Opcode.BINARY and masked and payload == HELLO_FOO1
    assert len(wire) == 2 + 4 + 37
    assert server.decrypt(bytes(wire)) == (HELLO_FOO1, False)

    for size in (125, 126, 65535, 65536, 300_000):
        data = os.urandom(size)
        head, masked, payload = unmask(bytes(server.encrypt(data)))
        assert head == 0x82 and not masked and payload == data
        head, masked, payload = unmask(bytes(client.encrypt(data)))
        assert head == 0x82 and masked and payload == data


def test_messages_are_a_byte_stream_split_and_merged_anywhere():
    client, server = handshake_pair()
    writes = [os.urandom(n) for n in (1, 37, 4, 1000, 70_000, 3)]
    wire = b"".join(bytes(client.encrypt(w)) for w in writes)
    got = bytearray()
    cuts = [0, 1, 2, 7, 50, 51, 1200, 40_000, len(wire)]
    for a, b in itertools.pairwise(cuts):
        plain, eof = server.decrypt(wire[a:b])
        assert not eof
        got += plain
    assert bytes(got) == b"".join(writes)

    # A fragmented Binary message (first frame + continuation) is stream data too.
    server2 = WebSocketSession(server_side=True)
    peer = lib_client(server2)
    peer.send_binary(b"abc", fin=False)
    peer.send_continuation(b"def", fin=True)
    assert server2.decrypt(b"".join(peer.data_to_send())) == (b"abcdef", False)


def test_writes_above_16_mib_are_split(monkeypatch):
    monkeypatch.setattr(ws_module, "MAX_FRAME", 10)
    client, server = handshake_pair()
    wire = bytes(client.encrypt(bytes(range(25))))
    assert len(wire) == 3 * (2 + 4) + 25  # three Binary messages of 10, 10 and 5 bytes
    assert wire[0] == 0x82 and wire[1] == 0x80 | 10
    assert server.decrypt(wire) == (bytes(range(25)), False)


@pytest.mark.parametrize("kind", ["ping", "pong", "text"])
def test_any_non_binary_message_is_an_error(kind):
    server = WebSocketSession(server_side=True)
    peer = lib_client(server)
    peer.send_binary(b"fine")
    getattr(peer, f"send_{kind}")(b"x")
    with pytest.raises(LayerError, match=f"unexpected {kind.capitalize()} frame"):
        server.decrypt(b"".join(peer.data_to_send()))


def test_close_frame_ends_the_stream_after_the_data_before_it():
    server = WebSocketSession(server_side=True)
    peer = lib_client(server)
    peer.send_binary(b"last words")
    peer.send_close()
    assert server.decrypt(b"".join(peer.data_to_send())) == (b"last words", True)
    # The Close is answered; writes after it are dropped, not errors.
    assert server.take_output().startswith(b"\x88")
    assert server.encrypt(b"late") == b""
    assert server.finish() == b""


def test_finish_is_an_empty_close_frame():
    client, server = handshake_pair()
    head, masked, payload = unmask(client.finish())
    assert (head, masked, payload) == (0x80 | Opcode.CLOSE, True, b"")
    assert server.finish() == b"\x88\x00"
    assert client.finish() == b"" and server.finish() == b""  # only once


def test_unmasked_client_frames_are_errors():
    server = WebSocketSession(server_side=True)
    lib_client(server)
    with pytest.raises(LayerError, match=r"invalid WebSocket data .*mask"):
        server.decrypt(b"\x82\x03abc")


def test_handshake_errors_name_the_problem():
    cases = {
        b"\x00\x00\x00\x00\x01" + bytes(32): "plain rathole Hello, not a WebSocket request: it "
        'uses type = "tcp"',
        b"\x16\x03\x01\x00\xc8\x01": 'speaks TLS: it uses type = "tls", or websocket with tls',
        b"\x30\x00" + bytes(48): 'speaks Noise: it uses type = "noise"',
        b"\x99\x99\x99": "the client did not send an HTTP request (first bytes 99 99 99)",
    }
    for data, text in cases.items():
        with pytest.raises(LayerError, match=text.replace("(", r"\(").replace(")", r"\)")):
            WebSocketSession(server_side=True).handshake(data)

    server = WebSocketSession(server_side=True)
    with pytest.raises(LayerError, match="not a WebSocket upgrade request"):
        server.handshake(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.take_output().startswith(b"HTTP/1.1 426 Upgrade Required")

    client = WebSocketSession(server_side=False, addr="127.0.0.1:1")
    client.start()
    with pytest.raises(LayerError, match=r"the server refused the WebSocket upgrade \(404 Nope\)"):
        client.handshake(b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n")
    client = WebSocketSession(server_side=False, addr="127.0.0.1:1")
    client.start()
    with pytest.raises(LayerError, match="the server speaks TLS"):
        client.handshake(b"\x15\x03\x03\x00\x02\x02\x46")
    assert "does it use" in client.closed_during_handshake(False)


# ----------------------------------------------------- in process, over loopback sockets
@pytest.fixture
def identity(tmp_path: Path) -> ServerIdentity:
    return server_identity(tmp_path / "pki")


def ws_transport(identity: ServerIdentity | None = None) -> WebsocketTransport:
    if identity is None:
        return WebsocketTransport(TcpTransportConfig(), WebsocketConfig(tls=False))
    tls = TlsConfig(
        trusted_root=str(identity.ca_pem),
        pkcs12=str(identity.pkcs12),
        pkcs12_password=identity.password,
    )
    return WebsocketTransport(TcpTransportConfig(), WebsocketConfig(tls=True), tls)


@pytest.fixture(params=["ws", "ws-tls"])
def transport(request, identity) -> WebsocketTransport:
    return ws_transport(identity if request.param == "ws-tls" else None)


@pytest.mark.timeout(30)
def test_channel_over_websocket(transport):
    run(check_handshake_before_channel(transport))


@pytest.mark.timeout(90)
def test_flow_control_both_ways_over_websocket(transport):
    run(check_flow_control(transport), timeout=80)


async def check_no_half_close(transport: WebsocketTransport) -> None:
    """can_write_eof() is False (the relay then closes both sides, as rathole over WS);
    close() sends the data, then a Close frame, and the peer sees the connection end."""
    client_ch, server_ch, listener = await open_pair(transport)
    try:
        client, crec = attach(client_ch)
        server, srec = attach(server_ch)
        srec.keep = True
        assert not client.can_write_eof() and not server.can_write_eof()
        with pytest.raises(NotImplementedError):
            client.write_eof()
        client.write(b"request")
        client.close()
        await asyncio.wait_for(srec.lost.wait(), 5)
        assert bytes(srec.data) == b"request"
        assert not srec.eof.is_set()  # the whole connection ended, not one direction
        await asyncio.wait_for(crec.lost.wait(), 5)
    finally:
        listener.close()


@pytest.mark.timeout(30)
def test_no_half_close_close_ends_both_directions(transport):
    run(check_no_half_close(transport))


# ------------------------------------------------- a real WebSocket library as the peer
async def library_client_against_ratui_server() -> list[str]:
    transport = ws_transport()
    accepted: asyncio.Queue = asyncio.Queue()
    listener = await transport.listen("127.0.0.1:0", accepted.put_nowait)
    port = listener.sockets[0].getsockname()[1]
    try:
        # Any path, and pings off: rathole never pings (and breaks on a ping).
        async with ws_connect(f"ws://127.0.0.1:{port}/any/path", ping_interval=None) as peer:
            await peer.send(HELLO_FOO1[:10])  # a Hello split over two messages
            await peer.send(HELLO_FOO1[10:])
            channel = await asyncio.wait_for(accepted.get(), 5)
            hello = await channel.receive(MessageReader.next_hello)
            assert hello.digest == HELLO_FOO1[5:]
            channel.write(b"reply one")
            channel.write(b"reply two")
            assert await peer.recv() == b"reply one"  # bytes: a Binary message each
            assert await peer.recv() == b"reply two"
            await peer.ping()  # now a ping: the ratui server drops the connection
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(peer.recv(), 5)
            return []
    finally:
        listener.close()


@pytest.mark.timeout(30)
def test_websockets_library_client_talks_to_ratui_server(caplog):
    run(library_client_against_ratui_server())
    assert any(
        "websocket connection with 127.0.0.1:" in r.message
        and "broken: unexpected Ping frame" in r.message
        for r in caplog.records
    )


async def ratui_client_against_library_server() -> None:
    seen: dict[str, object] = {}
    done = asyncio.Event()

    async def handler(conn) -> None:
        seen["path"] = conn.request.path
        seen["host"] = conn.request.headers["Host"]
        seen["first"] = await conn.recv()
        await conn.send(b"from the library")
        try:
            await conn.recv()
        except ConnectionClosed as exc:
            seen["close"] = exc.rcvd
        done.set()

    async with ws_serve(handler, "127.0.0.1", 0, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        channel = await ws_transport().connect(f"127.0.0.1:{port}")
        channel.write(HELLO_FOO1)  # must arrive masked, or the library closes with 1002
        got = await channel.receive(lambda r: r.take_rest() if len(r) >= 16 else None)
        assert got == b"from the library"
        channel.close()
        await asyncio.wait_for(done.wait(), 5)
    assert seen["path"] == "/"
    assert seen["host"] == f"127.0.0.1:{port}"
    assert seen["first"] == HELLO_FOO1
    close = seen["close"]
    assert close is not None and close.code == 1005  # an empty Close frame, as tungstenite


@pytest.mark.timeout(30)
def test_ratui_client_talks_to_websockets_library_server():
    run(ratui_client_against_library_server())


# ------------------------------------------------------------------- processes: helpers
def ws_table(role: str, tls: bool, ident: ServerIdentity | None = None, **tls_keys: str) -> str:
    lines = [
        f"[{role}.transport]",
        'type = "websocket"',
        f"[{role}.transport.websocket]",
        f"tls = {'true' if tls else 'false'}",
    ]
    if tls:
        lines.append(f"[{role}.transport.tls]")
        if role == "server":
            assert ident is not None
            tls_keys = {
                "pkcs12": str(ident.pkcs12),
                "pkcs12_password": ident.password,
                **tls_keys,
            }
        elif ident is not None:
            tls_keys = {"trusted_root": str(ident.ca_pem), **tls_keys}
        lines += [f'{key} = "{value}"' for key, value in tls_keys.items()]
    return "\n".join(lines) + "\n"


def echo_roundtrip(port: int, size: int = MiB, timeout: float = 20.0) -> None:
    """Send ``size`` random bytes through the tunnel and read them all back, without a
    half-close (WebSocket cannot carry one: PROTOCOL.md §5.4)."""
    payload = os.urandom(size)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        writer = threading.Thread(target=sock.sendall, args=(payload,))
        writer.start()
        received = bytearray()
        while len(received) < size:
            chunk = sock.recv(1 << 16)
            assert chunk, f"closed after {len(received)} of {size} bytes"
            received += chunk
        writer.join(timeout)
    assert bytes(received) == payload


class WsServer:
    """A ratui WebSocket server with services ``good`` and ``other``."""

    def __init__(
        self, tmp_path: Path, procs: Procs, *, tls: bool, ident: ServerIdentity | None = None
    ) -> None:
        self.tmp_path = tmp_path
        self.procs = procs
        self.tls = tls
        self.ident = ident
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.ports = {"good": free_port(), "other": free_port()}
        self.cfg = write_config(
            tmp_path / "server.toml",
            server_toml(self.port, self.ports, ws_table("server", tls, ident)),
        )
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.proc = start(self.procs, "ratui", "server", self.cfg)
        wait_port(self.port)
        return self.proc

    def client(self, service: str, local: str, transport: str, host: str = "127.0.0.1") -> Proc:
        cfg = write_config(
            self.tmp_path / f"client-{service}.toml",
            client_toml(f"{host}:{self.port}", {service: local}, transport),
        )
        return start(self.procs, "ratui", "client", cfg)

    def good_client(self, echo: EchoServer) -> Proc:
        proc = self.client("good", echo.addr, ws_table("client", self.tls, self.ident))
        wait_port(self.ports["good"], timeout=15)
        return proc


# ------------------------------------------------------------ processes: ratui to ratui
@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "ws-tls"])
def test_ratui_to_ratui_websocket_1mib(tmp_path, procs, echo, identity, tls):
    server = WsServer(tmp_path, procs, tls=tls, ident=identity)
    proc = server.start()
    client = server.good_client(echo)
    echo_roundtrip(server.ports["good"])
    echo_roundtrip(server.ports["good"], 100_000)  # a second visitor, another data channel
    for p in (proc, client):
        assert p.popen.poll() is None
        assert "WARN ratui.transport" not in p.output()


@pytest.mark.timeout(60)
def test_visitor_half_close_ends_the_connection_as_in_rathole(tmp_path, procs, echo):
    """Over WebSocket a visitor's FIN closes its whole connection (rathole sends a Close
    frame on shutdown and the peer drops both directions): documented, and it must not
    leave anything hanging."""
    server = WsServer(tmp_path, procs, tls=False)
    server.start()
    server.good_client(echo)
    echo_roundtrip(server.ports["good"], 1000)
    with socket.create_connection(("127.0.0.1", server.ports["good"]), timeout=10) as sock:
        sock.sendall(b"ping")
        time.sleep(0.5)  # the echo comes back before the FIN is sent
        sock.shutdown(socket.SHUT_WR)
        got = bytearray()
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(100):
                got += chunk
        assert bytes(got) == b"ping"  # and then the connection ended: no hang
    echo_roundtrip(server.ports["good"], 1000)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tls", [False, True], ids=["ws", "ws-tls"])
def test_udp_service_over_websocket(identity, tls):
    from test_udp import start_echo, visitor, wait_udp_up

    from ratui.engine.runtime import Roles, Runtime

    control, public = free_port(), free_port()

    async def main() -> None:
        _echo, local = await start_echo()
        text = (
            f'[server]\nbind_addr = "127.0.0.1:{control}"\n'
            + ws_table("server", tls, identity)
            + f'[server.services.u]\ntype = "udp"\ntoken = "t"\nbind_addr = "127.0.0.1:{public}"\n'
            + f'[client]\nremote_addr = "localhost:{control}"\nretry_interval = 1\n'
            + ws_table("client", tls, identity)
            + f'[client.services.u]\ntype = "udp"\ntoken = "t"\nlocal_addr = "127.0.0.1:{local}"\n'
        )
        runtime = Runtime(parse_config(text, source="<ws-udp>"), Roles(server=True, client=True))
        await runtime.start()
        try:
            await wait_udp_up(public)
            peer = await visitor(public)
            for size in (1, 100, 1400, 2048):
                data = os.urandom(size)
                assert await peer.ask(data) == data
            peer.close()
        finally:
            await runtime.stop()

    run(main(), timeout=50)


# ------------------------------------------------------------------ processes: failures
@pytest.mark.timeout(60)
def test_plain_websocket_client_against_tls_websocket_server(tmp_path, procs, echo, identity):
    server = WsServer(tmp_path, procs, tls=True, ident=identity)
    proc = server.start()
    bad = server.client("other", echo.addr, ws_table("client", False))
    proc.wait_for_output("websocket over tls handshake with 127.0.0.1:", timeout=15)
    proc.wait_for_output(
        "failed: the client sent plain HTTP, not TLS: it uses websocket without tls; both sides "
        "need the same [*.transport.websocket] tls"
    )
    bad.wait_for_output(
        f"websocket handshake with {server.addr} failed: the server closed the connection "
        'during the WebSocket handshake - does it use type = "websocket" with the same '
        "[*.transport.websocket] tls?"
    )
    server.good_client(echo)
    echo_roundtrip(server.ports["good"])
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_tls_websocket_client_against_plain_websocket_server(tmp_path, procs, echo, identity):
    server = WsServer(tmp_path, procs, tls=False)
    proc = server.start()
    bad = server.client("other", echo.addr, ws_table("client", True, identity))
    proc.wait_for_output(
        'failed: the client speaks TLS: it uses type = "tls", or websocket with tls = true',
        timeout=15,
    )
    bad.wait_for_output(
        f"websocket over tls handshake with {server.addr} failed: the server closed the "
        'connection during the TLS handshake - does it use type = "websocket" with tls = true?'
    )
    server.good_client(echo)
    echo_roundtrip(server.ports["good"])
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_wrong_certificate_over_websocket_tls(tmp_path, procs, echo, identity):
    server = WsServer(tmp_path, procs, tls=True, ident=identity)
    proc = server.start()
    stranger = server_identity(tmp_path / "other-pki", ca=make_ca("some other CA"))
    bad = server.client("other", echo.addr, ws_table("client", True, stranger))
    proc.wait_for_output(
        "failed: the client rejected this server's certificate (tlsv1 alert unknown ca)",
        timeout=15,
    )
    bad.wait_for_output("failed: the server's certificate did not verify")
    wrong_name = server.client(
        "other", echo.addr, ws_table("client", True, identity, hostname="wrong.example")
    )
    wrong_name.wait_for_output('the name checked is "wrong.example"', timeout=15)
    server.good_client(echo)
    echo_roundtrip(server.ports["good"])
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_other_transports_against_websocket_server(tmp_path, procs, echo):
    server = WsServer(tmp_path, procs, tls=False)
    proc = server.start()
    tcp = server.client("other", echo.addr, "")
    proc.wait_for_output(
        "failed: the client sent a plain rathole Hello, not a WebSocket request: it uses "
        'type = "tcp"; both sides need type = "websocket"',
        timeout=15,
    )
    tcp.wait_for_output("cannot establish the control channel")
    tcp.stop()
    from ratui.genkey import generate_keypair

    _, public = generate_keypair()
    noise = server.client("other", echo.addr, noise_table("client", None, None, public))
    proc.wait_for_output('failed: the client speaks Noise: it uses type = "noise"', timeout=15)
    noise.stop()
    # Garbage and silence: dropped (silence after 5 s) while everyone else is served.
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    silent_since = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as garbage:
        garbage.sendall(b"\x99" * 64)
        assert_dropped(garbage)
    proc.wait_for_output("failed: the client did not send an HTTP request (first bytes 99 99")
    server.good_client(echo)
    echo_roundtrip(server.ports["good"])
    assert time.monotonic() - silent_since < 5.0
    assert_dropped(silent)
    silent.close()
    proc.wait_for_output("failed: timed out after 5 s (0 bytes of the WebSocket request received)")
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_websocket_client_against_plain_tcp_server(tmp_path, procs, echo):
    port = free_port()
    cfg = write_config(tmp_path / "server.toml", server_toml(port, {"other": free_port()}, ""))
    server = procs.ratui("--server", str(cfg))
    wait_port(port)
    client_cfg = write_config(
        tmp_path / "client.toml",
        client_toml(f"127.0.0.1:{port}", {"other": echo.addr}, ws_table("client", False)),
    )
    bad = procs.ratui("--client", str(client_cfg))
    bad.wait_for_output(
        f"cannot establish the control channel: websocket handshake with 127.0.0.1:{port} "
        "failed: the server closed the connection during the WebSocket handshake",
        timeout=15,
    )
    wait_for_count(bad, "during the WebSocket handshake", 2)  # retries, never hangs
    assert server.popen.poll() is None and bad.popen.poll() is None
