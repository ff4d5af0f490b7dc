"""ratui <-> ratui end to end: real server and client processes, real sockets on 127.0.0.1.

Each test starts a ratui server and a ratui client as subprocesses (``python -m ratui``), puts
the ``echo`` service (or a local stand-in) behind the client, and checks what a visitor sees
on the server's service port. Every wait is bounded; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    EchoServer,
    Proc,
    Procs,
    free_port,
    roundtrip,
    wait_closed,
    wait_port,
    write_config,
)
from tunnels import echo_check, recv_exact, refused, toml, wait_until

MiB = 1 << 20
# Wire messages (PROTOCOL.md §2): Hello tag + version, and the 4-byte enum tags.
HELLO_CONTROL = b"\x00\x00\x00\x00\x01"
HELLO_DATA = b"\x01\x00\x00\x00\x01"
ACK_OK = CREATE_DATA_CHANNEL = START_FORWARD_TCP = b"\x00\x00\x00\x00"
HEARTBEAT = b"\x01\x00\x00\x00"


# helpers ----------------------------------------------------------------------------------
class Tunnel:
    """Addresses and config files for one ratui server and one ratui client, service ``svc``."""

    def __init__(
        self,
        tmp_path: Path,
        procs: Procs,
        local_addr: str,
        *,
        server_top: dict[str, object] | None = None,
        client_top: dict[str, object] | None = None,
    ) -> None:
        self.procs = procs
        self.control_port = free_port()
        self.service_port = free_port()
        self.server_cfg = write_config(
            tmp_path / "server.toml",
            toml(
                "server",
                f"127.0.0.1:{self.control_port}",
                {"svc": {"bind_addr": f"127.0.0.1:{self.service_port}", "token": "s3cret"}},
                **(server_top or {}),
            ),
        )
        self.client_cfg = self.client_config(tmp_path / "client.toml", local_addr, client_top)

    def client_config(
        self, path: Path, local_addr: str, top: dict[str, object] | None = None
    ) -> Path:
        return write_config(
            path,
            toml(
                "client",
                f"127.0.0.1:{self.control_port}",
                {"svc": {"local_addr": local_addr, "token": "s3cret"}},
                **(top or {}),
            ),
        )

    def server(self) -> Proc:
        proc = self.procs.ratui("--server", str(self.server_cfg))
        wait_port(self.control_port)
        return proc

    def client(self, cfg: Path | None = None) -> Proc:
        return self.procs.ratui("--client", str(cfg or self.client_cfg))


def wait_roundtrip(port: int, payload: bytes, timeout: float) -> float:
    """Retry ``echo_check`` until the echo comes back intact; return how long that took."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if echo_check(port, payload, timeout=min(3.0, max(0.5, deadline - time.monotonic()))):
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"no intact echo through port {port} within {timeout} s")


def wait_ready(port: int, timeout: float = 10.0) -> None:
    """Wait until the tunnel echoes, then give the rest of the pool's data channels a moment
    to arrive, so that the next visitor is paired at once."""
    wait_roundtrip(port, b"ready?", timeout)
    time.sleep(0.2)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# 1. basic ---------------------------------------------------------------------------------
@pytest.mark.timeout(40)
def test_echo_1mib_and_port_open_only_while_client_connected(tmp_path, procs, echo):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    # PROTOCOL.md §4: no client, no service port.
    assert refused(tunnel.service_port)

    client = tunnel.client()
    client.wait_for_output("control channel established")
    wait_ready(tunnel.service_port)
    payload = random.randbytes(MiB)
    assert roundtrip(tunnel.service_port, payload) == payload
    assert echo.accepted >= 1

    assert client.stop() == 0
    wait_closed(tunnel.service_port, timeout=5)
    server.wait_for_output("control channel closed")
    assert server.popen.poll() is None


# 2. server killed and restarted -----------------------------------------------------------
@pytest.mark.timeout(60)
def test_client_reconnects_after_server_sigkill(tmp_path, procs, echo):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)
    payload = random.randbytes(64 * 1024)
    assert roundtrip(tunnel.service_port, payload) == payload

    server.stop(signal.SIGKILL)
    client.wait_for_output("control channel lost")
    client.wait_for_output("retrying in")
    # With the server gone the client keeps failing and retrying (retry_interval = 1).
    wait_until(
        lambda: client.output().count("cannot establish the control channel") >= 2,
        timeout=10,
        what="the client to retry twice while the server is down",
    )
    assert refused(tunnel.service_port)
    assert client.popen.poll() is None

    restarted = time.monotonic()
    tunnel.server()
    wait_roundtrip(tunnel.service_port, payload, timeout=10)
    elapsed = time.monotonic() - restarted
    assert elapsed < 5.0, f"service back only {elapsed:.1f} s after the server restarted"
    wait_ready(tunnel.service_port)
    big = random.randbytes(MiB)
    assert roundtrip(tunnel.service_port, big) == big


# 3. a newer client replaces the older one ------------------------------------------------
@pytest.mark.timeout(60)
def test_newer_client_replaces_older(tmp_path, procs, echo):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    old = tunnel.client()
    old.wait_for_output("control channel established")
    payload = random.randbytes(64 * 1024)
    wait_roundtrip(tunnel.service_port, payload, timeout=10)

    # The new client forwards to a different echo service, so we can tell who serves.
    other_echo = EchoServer()
    try:
        new = tunnel.client(tunnel.client_config(tmp_path / "client-new.toml", other_echo.addr))
        new.wait_for_output("control channel established")
        server.wait_for_output("replaced by a newer client")
        old.wait_for_output("control channel lost")

        # The two clients now keep kicking each other off (rathole behaviour); traffic still
        # gets through at some point and the server survives the fight.
        wait_roundtrip(tunnel.service_port, payload, timeout=15)
        assert server.popen.poll() is None

        assert old.stop() == 0
        before = other_echo.accepted
        wait_ready(tunnel.service_port)
        assert other_echo.accepted > before
        big = random.randbytes(MiB)
        assert roundtrip(tunnel.service_port, big) == big
        assert server.popen.poll() is None and new.popen.poll() is None
    finally:
        other_echo.close()


# 4. heartbeats ----------------------------------------------------------------------------
@pytest.mark.timeout(40)
def test_heartbeats_keep_client_connected(tmp_path, procs, echo):
    tunnel = Tunnel(
        tmp_path,
        procs,
        echo.addr,
        server_top={"heartbeat_interval": 1},
        client_top={"heartbeat_timeout": 3},
    )
    tunnel.server()
    client = tunnel.client()
    client.wait_for_output("control channel established")
    time.sleep(4.5)  # past heartbeat_timeout, with only the 8 CreateDataChannel at the start
    log = client.output()
    assert "Heartbeat timed out" not in log
    assert "control channel lost" not in log
    assert log.count("control channel established") == 1
    payload = random.randbytes(64 * 1024)
    assert roundtrip(tunnel.service_port, payload) == payload


@pytest.mark.timeout(40)
def test_client_reconnects_when_heartbeats_stop(tmp_path, procs, echo):
    tunnel = Tunnel(
        tmp_path,
        procs,
        echo.addr,
        server_top={"heartbeat_interval": 0},  # no heartbeats at all
        client_top={"heartbeat_timeout": 2},
    )
    tunnel.server()
    client = tunnel.client()
    client.wait_for_output("control channel established")
    client.wait_for_output("Heartbeat timed out", timeout=6)
    wait_until(
        lambda: client.output().count("control channel established") >= 2,
        timeout=6,
        what="the client to reconnect after the heartbeat timeout",
    )
    payload = random.randbytes(64 * 1024)
    wait_roundtrip(tunnel.service_port, payload, timeout=10)


def _control_handshake(port: int, service: str, token: str) -> tuple[socket.socket, bytes]:
    """Open a control channel by hand (PROTOCOL.md §1.3); return it after Ack::Ok, with the
    session key that its data channels must present."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(HELLO_CONTROL + hashlib.sha256(service.encode()).digest())
    hello = recv_exact(sock, 37)
    assert hello[:5] == HELLO_CONTROL
    session_key = hashlib.sha256(token.encode() + hello[5:]).digest()
    sock.sendall(session_key)
    assert recv_exact(sock, 4) == ACK_OK
    return sock, session_key


@pytest.mark.timeout(30)
def test_server_sends_heartbeat_every_interval_when_idle(tmp_path, procs):
    tunnel = Tunnel(tmp_path, procs, "127.0.0.1:9", server_top={"heartbeat_interval": 1})
    tunnel.server()
    sock, _ = _control_handshake(tunnel.control_port, "svc", "s3cret")
    with sock:
        assert recv_exact(sock, 32) == CREATE_DATA_CHANNEL * 8  # to fill the pool
        start = time.monotonic()
        arrivals = []
        for _ in range(3):
            assert recv_exact(sock, 4) == HEARTBEAT
            arrivals.append(time.monotonic() - start)
    gaps = [b - a for a, b in zip([0.0, *arrivals], arrivals, strict=False)]
    assert all(0.5 < gap < 2.0 for gap in gaps), gaps


# 5. half-close and early disconnects ------------------------------------------------------
class ReplyAfterEof:
    """A local service that reads a whole request until EOF, then replies: the sha256 of the
    request followed by ``tail`` bytes. Only works if the tunnel passes half-closes on."""

    def __init__(self, tail: bytes) -> None:
        self.tail = tail
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(20)
            digest = hashlib.sha256()
            try:
                while data := conn.recv(65536):
                    digest.update(data)
                conn.sendall(digest.digest() + self.tail)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.mark.timeout(40)
def test_half_closed_visitor_gets_full_reply(tmp_path, procs):
    tail = random.randbytes(512 * 1024)
    service = ReplyAfterEof(tail)
    try:
        tunnel = Tunnel(tmp_path, procs, service.addr)
        tunnel.server()
        tunnel.client()
        # Readiness: this service answers only after EOF, so probe with half-closing
        # visitors, each given 2 s (one that lands in the queue is dropped: known bug).
        expected = hashlib.sha256(b"probe").digest() + tail

        def probe() -> bool:
            try:
                return roundtrip(tunnel.service_port, b"probe", timeout=2) == expected
            except OSError:
                return False

        wait_until(probe, timeout=15, what="the tunnel to come up")
        time.sleep(0.2)
        request = random.randbytes(256 * 1024)
        reply = roundtrip(tunnel.service_port, request)
        assert reply == hashlib.sha256(request).digest() + tail
        # An empty request: the EOF alone must reach the service.
        assert roundtrip(tunnel.service_port, b"") == hashlib.sha256(b"").digest() + tail
    finally:
        service.close()


@pytest.mark.timeout(60)
def test_early_disconnects_do_not_break_other_visitors(tmp_path, procs, echo):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)

    def quitter(i: int) -> None:
        """Sends part of a request and goes away: by RST, after reading a little of the
        echo, or with the echo left unread."""
        sock = socket.create_connection(("127.0.0.1", tunnel.service_port), timeout=10)
        try:
            sock.sendall(random.randbytes(128 * 1024))
            if i % 3 == 0:  # hang up abruptly (RST)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif i % 3 == 1:  # read a little first
                sock.recv(1000)
        finally:
            sock.close()

    def stayer(_: int) -> bool:
        # echo_check, not roundtrip: a half-close while queued is a separate known bug.
        return echo_check(tunnel.service_port, random.randbytes(256 * 1024), timeout=20)

    with ThreadPoolExecutor(max_workers=24) as pool:
        quits = [pool.submit(quitter, i) for i in range(12)]
        stays = [pool.submit(stayer, i) for i in range(12)]
        for future in quits:
            future.result(timeout=30)
        assert all(future.result(timeout=30) for future in stays)

    payload = random.randbytes(MiB)
    assert roundtrip(tunnel.service_port, payload) == payload
    assert server.popen.poll() is None and client.popen.poll() is None


@pytest.mark.timeout(30)
def test_visitor_half_closing_while_queued_is_served(tmp_path, procs):
    """A visitor that sends its request and shuts down its write side *before* a data channel
    is free must still be forwarded (rathole queues it and copy_bidirectional passes the EOF
    on). A hand-driven client makes the wait deterministic: it opens no data channel until
    the visitor's EOF has surely reached the server."""
    tunnel = Tunnel(tmp_path, procs, "127.0.0.1:9")
    server = tunnel.server()
    control, session_key = _control_handshake(tunnel.control_port, "svc", "s3cret")
    with control:
        assert recv_exact(control, 32) == CREATE_DATA_CHANNEL * 8  # ignored: pool stays empty
        server.wait_for_output("visitors welcome")
        with socket.create_connection(("127.0.0.1", tunnel.service_port), timeout=5) as visitor:
            visitor.sendall(b"request")
            visitor.shutdown(socket.SHUT_WR)
            assert recv_exact(control, 4) == CREATE_DATA_CHANNEL  # the visitor is queued
            time.sleep(0.5)  # its EOF reaches the server while it waits

            with socket.create_connection(("127.0.0.1", tunnel.control_port), timeout=3) as data:
                data.sendall(HELLO_DATA + session_key)
                assert recv_exact(data, 4) == START_FORWARD_TCP
                request = bytearray()
                while chunk := data.recv(1024):
                    request += chunk
                assert request == b"request"
                data.sendall(b"reply")
            assert visitor.recv(100) == b"reply"
            assert visitor.recv(100) == b""


# 6. flow control with a visitor that does not read ----------------------------------------
SMALL_BUFFER = 128 * 1024


def _small_buffers(sock: socket.socket) -> socket.socket:
    """Pin the kernel buffers (no autotuning), so that the loopback path cannot soak up the
    whole transfer and backpressure must reach the visitor."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    return sock


@pytest.fixture
def small_echo() -> Iterator[EchoServer]:
    server = EchoServer()
    _small_buffers(server.sock)  # inherited by the connections it accepts from now on
    try:
        yield server
    finally:
        server.close()


@pytest.mark.timeout(45)
def test_slow_visitor_memory_is_bounded(tmp_path, procs, small_echo):
    tunnel = Tunnel(tmp_path, procs, small_echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)
    warmup = random.randbytes(MiB)
    assert roundtrip(tunnel.service_port, warmup) == warmup
    pids = {"server": server.popen.pid, "client": client.popen.pid}
    baseline = {name: rss_bytes(pid) for name, pid in pids.items()}

    # Far more than every kernel buffer on the path can hold (socket buffers autotune to
    # several MiB each, and spliced pairs add pipes), so the writer must stall.
    chunks, chunk_size = 256, MiB
    total = chunks * chunk_size
    sent_digest = hashlib.sha256()
    sent = 0
    errors: list[BaseException] = []

    sock = _small_buffers(socket.socket())
    sock.settimeout(30)
    sock.connect(("127.0.0.1", tunnel.service_port))

    def writer() -> None:
        nonlocal sent
        rng = random.Random(20260127)
        try:
            for _ in range(chunks):
                chunk = rng.randbytes(chunk_size)  # generated lazily, one MiB at a time
                sent_digest.update(chunk)
                sock.sendall(chunk)
                sent += len(chunk)
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:
            errors.append(exc)

    with sock:
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        # Read nothing until the writer is stuck: the whole path is then full, end to end.
        peak = dict(baseline)
        last, still_since = -1, time.monotonic()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for name, pid in pids.items():
                peak[name] = max(peak[name], rss_bytes(pid))
            if sent != last:
                last, still_since = sent, time.monotonic()
            elif time.monotonic() - still_since > 1.5:
                break
            time.sleep(0.1)
        stalled_at = sent
        assert stalled_at < total, "the writer was never held back: no backpressure"

        received = 0
        got_digest = hashlib.sha256()
        while chunk := sock.recv(1 << 18):
            received += len(chunk)
            got_digest.update(chunk)
            if received % (8 * MiB) < (1 << 18):
                for name, pid in pids.items():
                    peak[name] = max(peak[name], rss_bytes(pid))
        thread.join(10)
    assert not errors, errors
    assert received == total
    assert got_digest.digest() == sent_digest.digest()

    growth = {name: (peak[name] - baseline[name]) / MiB for name in pids}
    # Without flow control one of them would hold most of the payload; with it, a few MiB.
    assert all(g < 16 for g in growth.values()), f"RSS growth in MiB: {growth}"
    print(f"writer stalled at {stalled_at / MiB:.0f} MiB; RSS growth MiB: {growth}")


# 7. signals -------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.timeout(40)
def test_signal_exits_zero_and_closes_listeners(tmp_path, procs, echo, sig):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)
    # A visitor in the middle of a forward must not hold up the shutdown.
    visitor = socket.create_connection(("127.0.0.1", tunnel.service_port), timeout=10)
    with visitor:
        visitor.sendall(b"ping")
        assert recv_exact(visitor, 4) == b"ping"

        started = time.monotonic()
        assert client.stop(sig, timeout=5) == 0
        assert time.monotonic() - started < 5
        assert "Shutting down" in client.output()
        wait_closed(tunnel.service_port, timeout=5)

        assert server.stop(sig, timeout=5) == 0
        assert "Shutting down" in server.output()
    assert refused(tunnel.control_port)
    assert refused(tunnel.service_port)
