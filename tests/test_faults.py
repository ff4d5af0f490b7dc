"""The fault matrix of issue 11: real ratui server and client processes on 127.0.0.1, broken
on purpose, and what the tunnel does about it, measured.

* the server is SIGKILLed in the middle of transfers, then comes back;
* the client is SIGKILLed, then a new one starts;
* the control channel stalls silently (a relay in this file stops forwarding without closing):
  the client notices by its heartbeat timeout, the server by its TCP user timeout;
* the local service behind the client is down, then comes back;
* 1,000 concurrent visitors, each with a checksummed random payload;
* 10,000 visitor connect/close cycles, with open file descriptors and memory counted before
  and after (the socket leak rathole users reported).

Each test prints what it measured (``pytest -s`` shows it): recovery times, bytes checked, fds
and RSS before and after. The helpers of ``test_tunnel.py`` (config writer, echo checks,
bounded waits) are reused; the echo service for the heavy tests is an asyncio one in a thread
of this process, so that it costs one thread, not one per connection. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import re
import resource
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import Proc, free_port, run, uvloop, wait_closed, wait_port
from test_tunnel import Tunnel, rss_bytes, wait_ready, wait_roundtrip
from tunnels import echo_check, refused, wait_until

MiB = 1 << 20
#: The heavy tests log at info: a debug line per visitor would cost more than the forwarding.
QUIET = {"RATUI_LOG": "info"}


# helpers ----------------------------------------------------------------------------------
def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds(pid: int, target: int, timeout: float = 10.0) -> int:
    """Wait until ``pid`` has at most ``target`` open fds; return the last count seen."""
    deadline = time.monotonic() + timeout
    count = fd_count(pid)
    while count > target and time.monotonic() < deadline:
        time.sleep(0.05)
        count = fd_count(pid)
    return count


def raise_nofile(wanted: int) -> None:
    """Raise this process's soft fd limit (the tunnel processes started later inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < wanted:
        pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")


def log_times(proc: Proc, text: str) -> int:
    return proc.output().count(text)


class AsyncEcho:
    """An echo service on an asyncio loop in its own thread; ``port=0`` picks a free port.
    Much lighter than one thread per connection when a thousand visitors arrive at once."""

    class _Protocol(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

        def eof_received(self) -> bool:
            return False  # close once the echo is flushed

    def __init__(self, port: int = 0) -> None:
        self.loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._port = port
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the echo service did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                self.loop.create_server(
                    self._Protocol, "127.0.0.1", self._port, backlog=4096, reuse_address=True
                )
            )
        except BaseException as exc:  # reported to the constructor
            self._error = exc
            self._ready.set()
            return
        self.port = self.server.sockets[0].getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._ready.set()
        self.loop.run_forever()
        self.server.close()
        self.loop.run_until_complete(self.server.wait_closed())
        self.loop.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@pytest.fixture
def aecho() -> Iterator[AsyncEcho]:
    echo = AsyncEcho()
    try:
        yield echo
    finally:
        echo.close()


class StallingRelay:
    """A TCP relay between the client and the server's ``bind_addr``, one thread per
    direction. :meth:`stall` freezes every connection it carries at that moment: it stops
    reading and writing them but closes nothing, like a NAT or middlebox that lost the flow.
    Connections made later are relayed normally, so a client that reconnects gets through.

    ``rcvbuf`` shrinks the receive buffer of the sockets towards the server: a frozen one then
    fills its window after a few KiB, so that the server's writes go unacknowledged, which is
    what it would see of a peer that vanished (loopback itself never loses a packet)."""

    def __init__(self, target_port: int, rcvbuf: int | None = None) -> None:
        self.target_port = target_port
        self.rcvbuf = rcvbuf
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.pairs: list[dict] = []
        self.closed = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.socket()
            if self.rcvbuf is not None:
                up.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            try:
                up.connect(("127.0.0.1", self.target_port))
            except OSError:
                down.close()
                up.close()
                continue
            pair = {"down": down, "up": up, "frozen": False, "control": None}
            with self._lock:
                self.pairs.append(pair)
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: dict, src: socket.socket, dst: socket.socket) -> None:
        try:
            while not pair["frozen"]:
                data = src.recv(65536)
                if pair["control"] is None and src is pair["down"]:
                    pair["control"] = data[:4] == b"\0\0\0\0"  # Hello tag 0 (§2.4)
                if pair["frozen"]:
                    break
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                dst.sendall(data)
        except OSError:
            if not pair["frozen"]:
                for sock in (src, dst):
                    with contextlib.suppress(OSError):
                        sock.close()
            return
        self.closed.wait()  # frozen: hold both sockets open, read nothing, until the end

    def stall(self, only_control: bool = False) -> int:
        """Freeze every connection relayed so far, or only the control channels among them;
        return how many."""
        with self._lock:
            pairs = [p for p in self.pairs if p["control"] or not only_control]
            for pair in pairs:
                pair["frozen"] = True
            return len(pairs)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        with self._lock:
            for pair in self.pairs:
                for sock in (pair["down"], pair["up"]):
                    with contextlib.suppress(OSError):
                        sock.close()


class Stream:
    """A visitor that keeps sending random chunks and checks that the echo is exactly what it
    sent, in order, until the connection ends (it is expected to be cut)."""

    def __init__(self, port: int, seed: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.rng = random.Random(seed)
        self.sent = hashlib.sha256()
        self.sent_bytes = bytearray()  # what is sent and not yet echoed back
        self.echoed = 0
        self.corrupt = False
        self.ended: float | None = None
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def _write(self) -> None:
        try:
            while self.ended is None:
                chunk = self.rng.randbytes(16 * 1024)
                with self._lock:
                    self.sent_bytes += chunk
                self.sock.sendall(chunk)
                time.sleep(0.005)
        except OSError:
            pass

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(65536):
                with self._lock:
                    if bytes(self.sent_bytes[: len(chunk)]) != chunk:
                        self.corrupt = True
                    del self.sent_bytes[: len(chunk)]
                self.echoed += len(chunk)
        except OSError:
            pass
        self.ended = time.monotonic()

    def close(self) -> None:
        self.ended = self.ended or time.monotonic()
        self.sock.close()
        for thread in self.threads:
            thread.join(5)


def retry_delays(client: Proc, after: int) -> list[float]:
    """The client's "retrying in X s" delays, from the ``after``-th log line on."""
    found = re.findall(r"retrying in ([0-9.]+) s", client.output())
    return [float(d) for d in found[after:]]


# 1. the server is killed during transfers -------------------------------------------------
@pytest.mark.timeout(60)
def test_server_sigkill_during_transfers(tmp_path, procs, echo):
    """Extends test_tunnel.test_client_reconnects_after_server_sigkill: streams are running
    when the server dies. Each is cut promptly with every byte it got back intact and in order;
    the client backs off as rathole does (0.4-0.6 s, then 0.8-1.2 s with retry_interval = 1),
    works again within 5 s of the server's return, and holds no more fds than before."""
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)
    client_fds = fd_count(client.popen.pid)

    streams = [Stream(tunnel.service_port, seed) for seed in range(6)]
    wait_until(lambda: all(s.echoed > 64 * 1024 for s in streams), 10, "the streams to flow")
    retries_before = len(retry_delays(client, 0))
    killed = time.monotonic()
    server.stop(signal.SIGKILL)

    wait_until(lambda: all(s.ended is not None for s in streams), 5, "the streams to be cut")
    cut_after = max(s.ended for s in streams) - killed  # type: ignore[operator]
    echoed = sum(s.echoed for s in streams)
    for stream in streams:
        stream.close()
    assert not any(s.corrupt for s in streams), "a stream got bytes it did not send"

    time.sleep(3.0)  # the server stays down for a while; the client keeps retrying
    assert refused(tunnel.service_port)
    delays = retry_delays(client, retries_before)
    assert 2 <= len(delays) <= 6, delays  # neither given up nor a hot loop
    assert all(0.4 <= d <= 1.2 for d in delays), delays
    assert max(delays) >= 0.8, delays  # it grew from 0.5 s to retry_interval

    restarted = time.monotonic()
    tunnel.server()
    back_after = wait_roundtrip(tunnel.service_port, b"back?", timeout=10)
    total = time.monotonic() - restarted
    assert total < 5.0, f"visitors served only {total:.1f} s after the server restarted"
    wait_ready(tunnel.service_port)
    assert echo_check(tunnel.service_port, random.randbytes(MiB), timeout=10)
    fds_after = wait_fds(client.popen.pid, client_fds)
    assert fds_after <= client_fds, f"client fds: {client_fds} before, {fds_after} after"
    print(
        f"\nserver SIGKILL: {len(streams)} streams cut {cut_after:.2f} s after the kill, "
        f"{echoed} bytes echoed intact and in order before it (corrupt: 0); retry delays "
        f"{delays}; first visitor served {total:.2f} s after the restart "
        f"({back_after:.2f} s after the port was up); client fds {client_fds} -> {fds_after}"
    )


# 2. the client is killed ------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_client_sigkill_frees_the_service_and_a_new_client_takes_over(tmp_path, procs, echo):
    tunnel = Tunnel(tmp_path, procs, echo.addr)
    server = tunnel.server()
    client = tunnel.client()
    wait_ready(tunnel.service_port)
    server_fds = fd_count(server.popen.pid)
    stream = Stream(tunnel.service_port, 7)
    wait_until(lambda: stream.echoed > 64 * 1024, 10, "the stream to flow")

    killed = time.monotonic()
    client.stop(signal.SIGKILL)
    server.wait_for_output("control channel closed: the client closed the control channel", 5)
    wait_closed(tunnel.service_port, timeout=5)
    freed = time.monotonic() - killed
    wait_until(lambda: stream.ended is not None, 5, "the visitor to be cut")
    stream.close()
    assert not stream.corrupt
    # With no client: the service port closed, its pool and the visitor's relay freed.
    server_down_fds = wait_fds(server.popen.pid, server_fds - 1 - 8)
    assert server_down_fds <= server_fds - 9, (server_fds, server_down_fds)

    restarted = time.monotonic()
    tunnel.client()
    wait_roundtrip(tunnel.service_port, b"again?", timeout=10)
    took = time.monotonic() - restarted
    assert took < 3.0, f"the new client served visitors only after {took:.1f} s"
    assert log_times(server, "replaced by a newer client") == 0  # the old one was gone
    wait_ready(tunnel.service_port)
    assert echo_check(tunnel.service_port, random.randbytes(MiB), timeout=10)
    server_fds_after = wait_fds(server.popen.pid, server_fds)
    assert server_fds_after <= server_fds
    print(
        f"\nclient SIGKILL: service freed {freed:.2f} s after the kill "
        f"(server fds {server_fds} -> {server_down_fds}); a new client served a visitor "
        f"{took:.2f} s after it started; server fds back to {server_fds_after}"
    )


# 3. the control channel stalls ------------------------------------------------------------
@pytest.mark.timeout(60)
def test_stalled_control_channel_is_detected_and_both_sides_recover(tmp_path, procs, aecho):
    """Everything between client and server goes through a relay, which freezes every
    connection at once. The client notices by its heartbeat timeout (2 s, the server beats
    every 1 s) and reconnects; the new control channel replaces the stalled one on the server,
    which frees it and its pool at once. Neither process keeps a socket of the dead path."""
    tunnel = Tunnel(
        tmp_path,
        procs,
        aecho.addr,
        server_top={"heartbeat_interval": 1},
        client_top={"heartbeat_timeout": 2},
    )
    relay = StallingRelay(tunnel.control_port)
    try:
        client_cfg = tunnel.client_config(
            tmp_path / "client-relay.toml", aecho.addr, {"heartbeat_timeout": 2}
        )
        client_cfg.write_text(
            client_cfg.read_text().replace(f":{tunnel.control_port}", f":{relay.port}")
        )
        server = tunnel.server()
        client = tunnel.client(client_cfg)
        wait_ready(tunnel.service_port)
        fds = {"server": fd_count(server.popen.pid), "client": fd_count(client.popen.pid)}

        frozen = relay.stall()
        stalled = time.monotonic()
        client.wait_for_output("Heartbeat timed out after 2 s", timeout=6)
        client_noticed = time.monotonic() - stalled
        server.wait_for_output("replaced by a newer client", timeout=8)
        server_recovered = time.monotonic() - stalled
        wait_roundtrip(tunnel.service_port, b"through?", timeout=10)
        served = time.monotonic() - stalled
        wait_ready(tunnel.service_port)
        assert echo_check(tunnel.service_port, random.randbytes(MiB), timeout=10)

        after = {
            "server": wait_fds(server.popen.pid, fds["server"]),
            "client": wait_fds(client.popen.pid, fds["client"]),
        }
        assert after["server"] <= fds["server"] and after["client"] <= fds["client"], (
            f"fds before the stall {fds}, after recovery {after}"
        )
        assert client_noticed < 4.0
        print(
            f"\nstall of {frozen} relayed connections: client noticed after "
            f"{client_noticed:.2f} s (heartbeat_timeout 2 s), server replaced the stalled "
            f"control channel after {server_recovered:.2f} s, visitors served after "
            f"{served:.2f} s; fds before {fds}, after {after}"
        )
    finally:
        relay.close()


@pytest.mark.timeout(60)
def test_server_drops_a_stalled_control_channel_by_tcp_user_timeout(tmp_path, procs, aecho):
    """The server never reads a control channel, so it cannot see a client go silent; it
    sees only that what it writes is no longer acknowledged. Here only the control channel
    stalls, and the client has its heartbeat check off, so nobody reconnects. Visitors keep
    arriving: the first ones are served by the data channels already in the pool, the others
    wait, and their CreateDataChannel commands pile up behind the stalled relay's closed
    window. The TCP user timeout (2 x heartbeat_interval, at least 5 s) then breaks the
    control channel: the service port closes, and every visitor is either served or closed,
    none left hanging."""
    tunnel = Tunnel(tmp_path, procs, aecho.addr, server_top={"heartbeat_interval": 1})
    relay = StallingRelay(tunnel.control_port, rcvbuf=1)
    try:
        client_cfg = tunnel.client_config(
            tmp_path / "client-relay.toml", aecho.addr, {"heartbeat_timeout": 0}
        )
        client_cfg.write_text(
            client_cfg.read_text().replace(f":{tunnel.control_port}", f":{relay.port}")
        )
        server = tunnel.server()
        client = tunnel.client(client_cfg)
        wait_ready(tunnel.service_port)
        assert relay.stall(only_control=True) == 1
        stalled = time.monotonic()

        async def visitors() -> tuple[int, int, float, float]:
            held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
            closed_at = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    held.append(await asyncio.open_connection("127.0.0.1", tunnel.service_port))
                except OSError:
                    closed_at = time.monotonic()
                    break
                if len(held) > 1000:
                    await asyncio.sleep(0.05)  # enough to fill the window: just wait
            assert closed_at is not None, "the server never gave up the stalled client"

            async def outcome(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
                """True if served (echoed), False if closed; a hanging visitor times out."""
                try:
                    writer.write(b"?")
                    return await reader.read(1) == b"?"
                except OSError:
                    return False
                finally:
                    writer.close()

            results = await asyncio.wait_for(asyncio.gather(*(outcome(r, w) for r, w in held)), 5)
            return len(held), sum(results), closed_at, time.monotonic()

        count, served, closed_at, settled = run(visitors())
        server.wait_for_output("TCP user timeout", timeout=2)
        detected = closed_at - stalled
        assert detected < 15.0
        assert served <= 8  # only the pooled data channels could serve anyone
        # A new client, on a direct path, takes over at once.
        client.stop()
        tunnel.client()
        wait_roundtrip(tunnel.service_port, b"direct?", timeout=10)
        print(
            f"\nstalled control channel, client heartbeat off: the server broke it "
            f"{detected:.2f} s after the stall (user timeout 5 s, once {count} visitors' "
            f"commands filled the window); {served} visitors served by pooled data channels, "
            f"the other {count - served} closed, all settled {settled - closed_at:.2f} s "
            f"after the port closed; none hanging"
        )
    finally:
        relay.close()


# 4. the local service is down, then back --------------------------------------------------
@pytest.mark.timeout(60)
def test_local_service_down_then_back(tmp_path, procs):
    """While nothing listens at local_addr, each visitor is closed at once: it sees EOF
    within a fraction of a second even though it keeps its own side open, and neither
    process keeps a socket for it. Once the service is back, visitors are served."""
    local_port = free_port()
    tunnel = Tunnel(tmp_path, procs, f"127.0.0.1:{local_port}")
    server = tunnel.server()
    client = tunnel.client()
    client.wait_for_output("control channel established")
    server.wait_for_output("visitors welcome")
    time.sleep(0.3)  # the 8 pooled data channels
    fds = {"server": fd_count(server.popen.pid), "client": fd_count(client.popen.pid)}

    socks = []
    latencies = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", tunnel.service_port), timeout=5)
        start = time.monotonic()
        sock.sendall(b"anyone home?")
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""
        latencies.append(time.monotonic() - start)
        socks.append(sock)  # kept open: the tunnel must not wait for the visitor to close
    after = {
        "server": wait_fds(server.popen.pid, fds["server"]),
        "client": wait_fds(client.popen.pid, fds["client"]),
    }
    for sock in socks:
        sock.close()
    assert max(latencies) < 1.0, latencies
    assert after["server"] <= fds["server"] and after["client"] <= fds["client"], (fds, after)
    assert log_times(client, f"cannot connect to 127.0.0.1:{local_port}") >= 1

    echo = AsyncEcho(local_port)
    try:
        back = time.monotonic()
        wait_roundtrip(tunnel.service_port, b"back?", timeout=5)
        served = time.monotonic() - back
        assert served < 1.0
        payload = random.randbytes(MiB)
        assert echo_check(tunnel.service_port, payload, timeout=10)
    finally:
        echo.close()
    print(
        f"\nlocal service down: 20 visitors closed after at most {max(latencies) * 1000:.0f} ms "
        f"(median {sorted(latencies)[10] * 1000:.0f} ms) while they kept their sockets open; "
        f"fds before {fds}, with those visitors still open {after}; served again "
        f"{served * 1000:.0f} ms after the service came back"
    )


# 5. 1,000 concurrent visitors -------------------------------------------------------------
VISITORS = 1000
PAYLOAD = 32 * 1024


@pytest.mark.timeout(120)
def test_thousand_concurrent_visitors_every_byte_intact(tmp_path, procs, aecho):
    """All 1,000 visitors are connected at once before any sends; then each sends its own
    random 32 KiB and checks the SHA-256 of what comes back."""
    raise_nofile(8192)
    tunnel = Tunnel(tmp_path, procs, aecho.addr)
    server = procs.ratui("--server", str(tunnel.server_cfg), env=QUIET)
    wait_port(tunnel.control_port)
    client = procs.ratui("--client", str(tunnel.client_cfg), env=QUIET)
    wait_ready(tunnel.service_port)

    async def main() -> tuple[int, int, float, float]:
        connect_sem = asyncio.Semaphore(200)  # the SYN backlog, not the visitors, is limited
        go = asyncio.Event()
        connected = 0

        async def visitor(i: int) -> tuple[bool, int]:
            nonlocal connected
            payload = random.Random(i).randbytes(PAYLOAD)
            async with connect_sem:
                reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.service_port)
            connected += 1
            if connected == VISITORS:
                go.set()
            try:
                await go.wait()
                writer.write(payload)
                await writer.drain()
                echoed = await reader.readexactly(PAYLOAD)
                writer.write_eof()
                rest = await reader.read()
                return hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest(), len(
                    echoed
                ) + len(rest)
            finally:
                writer.close()

        start = time.monotonic()
        tasks = [asyncio.ensure_future(visitor(i)) for i in range(VISITORS)]
        await asyncio.wait_for(go.wait(), 60)
        all_connected = time.monotonic() - start
        results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        intact = sum(ok for ok, _ in results)
        received = sum(size for _, size in results)
        return intact, received, all_connected, time.monotonic() - start

    intact, received, connected_in, took = run(main())
    assert intact == VISITORS, f"{VISITORS - intact} visitors got a damaged echo"
    assert received == VISITORS * PAYLOAD
    assert server.popen.poll() is None and client.popen.poll() is None
    print(
        f"\n{VISITORS} concurrent visitors: all connected in {connected_in:.2f} s, "
        f"{received} bytes echoed, {intact}/{VISITORS} SHA-256 intact, bytes lost 0, "
        f"{took:.2f} s in all"
    )


# 6. 10,000 connect/close cycles -----------------------------------------------------------
CYCLES = 10_000
WORKERS = 32


def _cycles(port: int, count: int, workers: int) -> float:
    """``count`` visitors, ``workers`` at a time: connect, send 16 bytes, read the echo,
    close. Returns the seconds taken; raises if any visitor was not served."""

    async def main() -> float:
        left = count
        failures: list[str] = []

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                message = os.urandom(16)
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    try:
                        writer.write(message)
                        echoed = await asyncio.wait_for(reader.readexactly(16), 10)
                        if echoed != message:
                            failures.append("wrong echo")
                    finally:
                        writer.close()
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    failures.append(repr(exc))

        start = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), 120)
        assert not failures, f"{len(failures)} visitors failed, e.g. {failures[:3]}"
        return time.monotonic() - start

    return run(main())


@pytest.mark.timeout(120)
def test_ten_thousand_visitor_cycles_return_fds_and_memory_to_baseline(tmp_path, procs, aecho):
    tunnel = Tunnel(tmp_path, procs, aecho.addr)
    server = procs.ratui("--server", str(tunnel.server_cfg), env=QUIET)
    wait_port(tunnel.control_port)
    client = procs.ratui("--client", str(tunnel.client_cfg), env=QUIET)
    wait_ready(tunnel.service_port)
    pids = {"server": server.popen.pid, "client": client.popen.pid}

    _cycles(tunnel.service_port, 1000, WORKERS)  # warm-up: allocator pools, caches
    time.sleep(0.5)
    fds = {name: fd_count(pid) for name, pid in pids.items()}
    rss = {name: rss_bytes(pid) for name, pid in pids.items()}

    took = _cycles(tunnel.service_port, CYCLES, WORKERS)
    fds_after = {name: wait_fds(pid, fds[name]) for name, pid in pids.items()}
    rss_after = {name: rss_bytes(pid) for name, pid in pids.items()}
    growth = {name: (rss_after[name] - rss[name]) / MiB for name in pids}
    assert took < 30.0, f"{CYCLES} cycles took {took:.1f} s"
    assert all(fds_after[n] <= fds[n] for n in pids), f"fds before {fds}, after {fds_after}"
    assert all(g < 4.0 for g in growth.values()), f"RSS growth in MiB: {growth}"
    print(
        f"\n{CYCLES} visitor cycles in {took:.1f} s ({CYCLES / took:.0f}/s, {WORKERS} at a "
        f"time): fds before {fds}, after {fds_after}; RSS MiB before "
        f"{ {n: round(v / MiB, 1) for n, v in rss.items()} }, growth "
        f"{ {n: round(g, 2) for n, g in growth.items()} }"
    )
