"""Bad peers and bad input against a running server (issue 11): each is dropped with one clear
log line and one event, and nothing else is affected.

A ratui server and client run in this test's event loop (as in ``test_state.py``) with two
services, ``a`` and ``b``, in front of an echo service. While a stream of checksummed data
flows through ``b``, a raw socket plays the bad peer: a wrong token, a wrong session key on a
data channel, an unknown service, an HTTP request, a version mismatch, a truncated Hello or
Auth, a megabyte of junk, a peer that says nothing. Each case checks: the connection is closed
by the server, exactly one log line at warning level or above and exactly one event at that
level, naming the peer; the stream through ``b`` kept flowing, intact; ``a`` still serves; no
control channel went down.

Then the limits that keep memory bounded: a flood of silent and half-open connections beyond
the cap on pending handshakes (the oldest is closed; a real client still connects) and
visitors beyond the cap of waiting visitors per service (refused at once, one log line).

Wire bytes are written by hand from PROTOCOL.md §1.3-1.4 and §2.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
from conftest import free_port, poll_until, run, serve_echo

from ratui.engine import server as server_mod
from ratui.engine.config import Config, parse_config
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import ControlState, Event, EventKind, Level, Role, Subscription

pytestmark = pytest.mark.usefixtures("manual_rate_sampling")
TOKEN = "bad-peers-token-0123456789"
HELLO_CONTROL = b"\x00\x00\x00\x00\x01"
HELLO_DATA = b"\x01\x00\x00\x00\x01"
ACK_OK = CREATE = START_TCP = b"\x00\x00\x00\x00"
ACK_SERVICE_NOT_EXIST = b"\x01\x00\x00\x00"
ACK_AUTH_FAILED = b"\x02\x00\x00\x00"
LOUD = (Level.WARNING, Level.ERROR)


def digest(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def tunnel_config(local_port: int, services: tuple[str, ...] = ("a", "b")) -> Config:
    control = free_port()
    lines = [
        "[server]",
        f'bind_addr = "127.0.0.1:{control}"',
        f'default_token = "{TOKEN}"',
        "heartbeat_interval = 1",
    ]
    for name in services:
        lines += [f"[server.services.{name}]", f'bind_addr = "127.0.0.1:{free_port()}"']
    lines += [
        "[client]",
        f'remote_addr = "127.0.0.1:{control}"',
        f'default_token = "{TOKEN}"',
        "heartbeat_timeout = 3",
    ]
    for name in services:
        lines += [f"[client.services.{name}]", f'local_addr = "127.0.0.1:{local_port}"']
    return parse_config("\n".join(lines) + "\n", source="<bad-peers>")


def port_of(addr: str) -> int:
    return int(addr.rpartition(":")[2])


class Records(logging.Handler):
    """Every record of the ``ratui`` loggers, whatever the handlers a previous test left."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs() -> Any:
    logger = logging.getLogger("ratui")
    saved = logger.level
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


class Stream:
    """A visitor of service ``b`` that keeps echoing random chunks and checks each one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.echoed = 0
        self.corrupt = 0
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.task = asyncio.get_running_loop().create_task(self._run())
        await poll_until(lambda: self.echoed > 0, 5, "the stream through b to flow")

    async def _run(self) -> None:
        rng = random.Random(11)
        while True:
            chunk = rng.randbytes(8192)
            self.writer.write(chunk)
            if await self.reader.readexactly(len(chunk)) != chunk:
                self.corrupt += 1
            self.echoed += len(chunk)
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        if self.task is None:
            return
        if self.task.done():
            self.task.result()  # re-raise what broke the stream
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.writer.close()


@dataclass
class Lab:
    config: Config
    runtime: Runtime
    sub: Subscription
    logs: Records
    stream: Stream
    events: list[Event] = field(default_factory=list)

    @property
    def control_port(self) -> int:
        assert self.config.server is not None
        return port_of(self.config.server.bind_addr)

    def public_port(self, name: str) -> int:
        assert self.config.server is not None
        return port_of(self.config.server.services[name].bind_addr)

    def drain(self) -> list[Event]:
        while (event := self.sub.get_nowait()) is not None:
            self.events.append(event)
        return self.events

    def mark(self) -> tuple[int, int, int]:
        return len(self.drain()), len(self.logs.records), self.stream.echoed

    def loud_since(self, mark: tuple[int, int, int]) -> tuple[list[Event], list[str]]:
        events = [e for e in self.drain()[mark[0] :] if e.level in LOUD]
        lines = [
            r.getMessage() for r in self.logs.records[mark[1] :] if r.levelno >= logging.WARNING
        ]
        return events, lines

    async def serves(self, name: str) -> bool:
        payload = os.urandom(4096)
        reader, writer = await asyncio.open_connection("127.0.0.1", self.public_port(name))
        try:
            writer.write(payload)
            return await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
        finally:
            writer.close()

    async def check_unaffected(self, mark: tuple[int, int, int]) -> None:
        """The stream through b went on during the attack, intact; a serves a new visitor;
        no control channel went down; both roles of both services are still up."""
        flowed = self.stream.echoed
        await poll_until(lambda: self.stream.echoed > flowed, 5, "the stream to go on")
        assert self.stream.corrupt == 0
        assert self.stream.task is not None and not self.stream.task.done()
        assert await self.serves("a")
        down = [
            e
            for e in self.drain()[mark[0] :]
            if e.kind is EventKind.CONTROL_DOWN and e.service in ("a", "b")
        ]
        assert not down, down
        snap = self.runtime.state.snapshot()
        assert all(s.state is ControlState.UP for s in snap.services if s.name in "ab"), snap


@contextlib.asynccontextmanager
async def lab(services: tuple[str, ...] = ("a", "b")) -> AsyncIterator[Lab]:
    echo = await asyncio.start_server(partial(serve_echo, half_close=False), "127.0.0.1", 0)
    config = tunnel_config(echo.sockets[0].getsockname()[1], services)
    runtime = Runtime(config, Roles(server=True, client=True))
    sub = runtime.state.subscribe(maxsize=100_000)
    with captured_logs() as logs:
        await runtime.start()
        try:
            await poll_until(
                lambda: (
                    all(s.state is ControlState.UP for s in runtime.state.snapshot().services)
                    and len(runtime.state.snapshot().services) == 2 * len(services)
                ),
                10,
                "every service up",
            )
            await asyncio.sleep(0.2)  # the pools fill
            stream = Stream(port_of(config.server.services["b"].bind_addr))  # type: ignore[union-attr]
            try:
                await stream.start()
                yield Lab(config, runtime, sub, logs, stream)
            finally:
                await stream.stop()
        finally:
            await runtime.stop()
            sub.close()
            echo.close()


# the bad peers ----------------------------------------------------------------------------
async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """Everything the server sends before it closes the connection (EOF or reset)."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), deadline - time.monotonic()):
            received += chunk
    except ConnectionError:
        pass
    return bytes(received)


async def _send(writer: asyncio.StreamWriter, data: bytes, eof: bool = False) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(data)
        if eof:
            writer.write_eof()
        await writer.drain()


async def wrong_token(reader, writer) -> bytes:
    await _send(writer, HELLO_CONTROL + digest("a"))
    nonce = (await reader.readexactly(37))[5:]
    await _send(writer, hashlib.sha256(b"not-the-token" + nonce).digest())
    return await read_until_closed(reader)


async def wrong_session_key(reader, writer) -> bytes:
    await _send(writer, HELLO_DATA + os.urandom(32))
    return await read_until_closed(reader)


async def unknown_service(reader, writer) -> bytes:
    await _send(writer, HELLO_CONTROL + digest("ghost"))
    return await read_until_closed(reader)


async def http_request(reader, writer) -> bytes:
    await _send(writer, b"GET / HTTP/1.1\r\nHost: tunnel.example\r\nAccept: */*\r\n\r\n")
    return await read_until_closed(reader)


async def version_mismatch(reader, writer) -> bytes:
    await _send(writer, b"\x00\x00\x00\x00\x02" + digest("a"))
    return await read_until_closed(reader)


async def truncated_hello(reader, writer) -> bytes:
    await _send(writer, (HELLO_CONTROL + digest("a"))[:20], eof=True)
    return await read_until_closed(reader)


async def truncated_auth(reader, writer) -> bytes:
    await _send(writer, HELLO_CONTROL + digest("a"))
    await reader.readexactly(37)
    await _send(writer, os.urandom(10), eof=True)
    return await read_until_closed(reader)


async def oversized_hello(reader, writer) -> bytes:
    await _send(writer, b"\xff\xff\xff\xff" + os.urandom(1 << 20))
    return await read_until_closed(reader)


async def oversized_auth(reader, writer) -> bytes:
    await _send(writer, HELLO_CONTROL + digest("a"))
    await reader.readexactly(37)
    await _send(writer, os.urandom(1 << 20))
    return await read_until_closed(reader)


async def silent(reader, writer) -> bytes:
    return await read_until_closed(reader)


@dataclass(frozen=True)
class Case:
    attack: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bytes]]
    kind: EventKind
    says: str  # in the event's message and the log line
    answer: Callable[[bytes], bool] = lambda got: got == b""


CASES = {
    "wrong token": Case(
        wrong_token, EventKind.AUTH_FAILED, "incorrect token", lambda got: got == ACK_AUTH_FAILED
    ),
    "wrong session key": Case(wrong_session_key, EventKind.BAD_PEER, "incorrect session key"),
    "unknown service": Case(
        unknown_service,
        EventKind.UNKNOWN_SERVICE,
        "service that does not exist",
        lambda got: (
            len(got) == 41 and got[:5] == HELLO_CONTROL and got[37:] == ACK_SERVICE_NOT_EXIST
        ),
    ),
    "garbage (HTTP)": Case(http_request, EventKind.BAD_PEER, "invalid Hello variant"),
    "version mismatch": Case(version_mismatch, EventKind.BAD_PEER, "version mismatched"),
    "truncated Hello": Case(truncated_hello, EventKind.BAD_PEER, "(20 bytes of it sent)"),
    "truncated Auth": Case(
        truncated_auth,
        EventKind.BAD_PEER,
        "(10 bytes of it sent)",
        lambda got: got == b"",
    ),
    "oversized (1 MiB of junk)": Case(oversized_hello, EventKind.BAD_PEER, "invalid Hello"),
    "oversized Auth (1 MiB)": Case(
        oversized_auth, EventKind.AUTH_FAILED, "incorrect token", lambda got: got == ACK_AUTH_FAILED
    ),
    "silent (handshake timeout)": Case(
        silent, EventKind.BAD_PEER, "sent no complete handshake within 0.5 s"
    ),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(CASES))
def test_bad_peer_is_dropped_with_one_line_and_one_event(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[name]
    monkeypatch.setattr(server_mod, "HANDSHAKE_TIMEOUT", 0.5)

    async def main() -> None:
        async with lab() as the:
            mark = the.mark()
            reader, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
            peer = "{}:{}".format(*writer.get_extra_info("sockname")[:2])
            started = time.monotonic()
            got = await asyncio.wait_for(case.attack(reader, writer), 5)
            closed_after = time.monotonic() - started
            writer.close()
            assert case.answer(got), f"the server answered {got[:64]!r}"
            await poll_until(lambda: the.loud_since(mark)[0], 2, "the event")
            await asyncio.sleep(0.1)  # anything more would show up now
            events, lines = the.loud_since(mark)
            assert len(events) == 1, events
            assert len(lines) == 1, lines
            event = events[0]
            assert event.kind is case.kind, event
            assert case.says in event.message and case.says in lines[0]
            assert peer in event.message, (peer, event.message)
            assert event.role is Role.SERVER
            assert TOKEN not in event.message and TOKEN not in lines[0]
            if name.startswith("silent"):
                assert 0.4 < closed_after < 2.0, closed_after
            await the.check_unaffected(mark)
            print(f"\n{name}: closed after {closed_after * 1000:.0f} ms; {lines[0]}")

    run(main())


# the limits -------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_handshake_flood_is_capped_and_a_real_client_still_connects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of silent and half-open connections, five times the cap on pending handshakes
    (64 here, 1024 by default), kept up while a new client connects: the server never holds
    more than the cap, closes the oldest, says so in one rate-limited line, and the new
    client's service comes up and serves. The running services are not affected."""
    cap = 64
    monkeypatch.setattr(server_mod, "MAX_PENDING_HANDSHAKES", cap)

    async def main() -> None:
        async with lab() as the:
            server = the.runtime.server
            assert server is not None
            mark = the.mark()
            flood: list[asyncio.StreamWriter] = []
            peak = 0

            async def one(i: int) -> None:
                nonlocal peak
                _, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
                if i % 2:  # half-open: part of a Hello, then nothing
                    writer.write((HELLO_CONTROL + digest("a"))[:17])
                flood.append(writer)
                peak = max(peak, len(server._handshakes))

            for i in range(5 * cap):
                await one(i)
            await poll_until(lambda: len(server._handshakes) <= cap, 2, "the cap")

            # A client for a service the running client does not have, while the flood
            # goes on: it must come up.
            assert the.config.server is not None and the.config.client is not None
            extra = tunnel_config(0, ("c",))
            assert extra.server is not None and extra.client is not None
            c_server = extra.server.services["c"]
            server.add_service(c_server)
            text = (
                f'[client]\nremote_addr = "127.0.0.1:{the.control_port}"\n'
                f'default_token = "{TOKEN}"\n[client.services.c]\n'
                f'local_addr = "{the.config.client.services["a"].local_addr}"\n'
            )
            newcomer = Runtime(parse_config(text, "<newcomer>"), Roles(server=False, client=True))
            flooding = True

            async def flooder() -> None:
                i = 5 * cap
                while flooding:
                    await one(i)
                    i += 1

            flood_task = asyncio.get_running_loop().create_task(flooder())
            await asyncio.sleep(0.2)  # the flood is in full swing
            before = len(flood)
            started = time.monotonic()
            await newcomer.start()
            try:
                await poll_until(
                    lambda: (
                        (snap := newcomer.state.snapshot().service(Role.CLIENT, "c")) is not None
                        and snap.state is ControlState.UP
                    ),
                    10,
                    "the new client to get through the flood",
                )
                up_after = time.monotonic() - started
                await asyncio.sleep(0.3)
                during = len(flood) - before
                payload = os.urandom(4096)
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port_of(c_server.bind_addr)
                )
                writer.write(payload)
                assert await asyncio.wait_for(reader.readexactly(4096), 5) == payload
                writer.close()
            finally:
                flooding = False
                await flood_task
                await newcomer.stop()
                server.remove_service("c")

            assert peak <= cap, peak
            flood_events = [
                e
                for e in the.drain()[mark[0] :]
                if "connections are in their handshake" in e.message
            ]
            assert 1 <= len(flood_events) <= 2, flood_events  # rate-limited (10 s)
            assert flood_events[0].kind is EventKind.BAD_PEER
            await the.check_unaffected(mark)
            for writer in flood:
                writer.close()
            print(
                f"\nflood of {len(flood)} silent/half-open connections, cap {cap}: at most "
                f"{peak} pending at once; {len(flood_events)} log line(s): "
                f"{flood_events[0].message!r}; a new client came up {up_after:.2f} s after "
                f"it started, while {during} more flood connections arrived"
            )

    run(main())


@pytest.mark.timeout(30)
def test_waiting_visitors_are_capped_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that authenticates but opens no data channel: visitors queue up to the cap
    (5 here, 2048 by default); the next ones are refused at once, with one line for all of
    them; when data channels come, the queued visitors are served in order."""
    cap = 5
    monkeypatch.setattr(server_mod, "MAX_WAITING_VISITORS", cap)

    async def main() -> None:
        echo = await asyncio.start_server(partial(serve_echo, half_close=False), "127.0.0.1", 0)
        config = tunnel_config(echo.sockets[0].getsockname()[1], ("a",))
        assert config.server is not None
        runtime = Runtime(parse_config(_server_only(config), "<cap>"), Roles(True, False))
        sub = runtime.state.subscribe()
        with captured_logs() as logs:
            await runtime.start()
            try:
                control_port = port_of(config.server.bind_addr)
                public = port_of(config.server.services["a"].bind_addr)
                reader, writer = await asyncio.open_connection("127.0.0.1", control_port)
                writer.write(HELLO_CONTROL + digest("a"))
                nonce = (await reader.readexactly(37))[5:]
                session_key = hashlib.sha256(TOKEN.encode() + nonce).digest()
                writer.write(session_key)
                assert await reader.readexactly(4) == ACK_OK
                assert await reader.readexactly(32) == CREATE * 8  # ignored: no pool
                await poll_until(
                    lambda: runtime.state.snapshot().services[0].state is ControlState.UP,
                    5,
                    "the service port",
                )
                mark = len(logs.records)
                visitors = []
                for i in range(cap):
                    vr, vw = await asyncio.open_connection("127.0.0.1", public)
                    vw.write(f"visitor {i}".encode())
                    visitors.append((vr, vw))
                    assert await reader.readexactly(4) == CREATE  # one per queued visitor
                refused_in = []
                for _ in range(15):
                    vr, vw = await asyncio.open_connection("127.0.0.1", public)
                    started = time.monotonic()
                    assert await read_until_closed(vr, 2) == b""
                    refused_in.append(time.monotonic() - started)
                    vw.close()
                lines = [
                    r.getMessage() for r in logs.records[mark:] if r.levelno >= logging.WARNING
                ]
                assert len(lines) == 1 and "refused" in lines[0], lines
                assert f"{cap} visitors already wait" in lines[0]
                snap = runtime.state.snapshot().services[0]
                assert snap.visitors_open == cap
                # Data channels arrive: the queued visitors are served, first come first.
                for i in range(cap):
                    dr, dw = await asyncio.open_connection("127.0.0.1", control_port)
                    dw.write(HELLO_DATA + session_key)
                    assert await dr.readexactly(4) == START_TCP
                    assert await dr.readexactly(len(f"visitor {i}")) == f"visitor {i}".encode()
                    dw.write(b"served")
                    assert await visitors[i][0].readexactly(6) == b"served"
                    dw.close()
                    visitors[i][1].close()
                writer.close()
                print(
                    f"\nwaiting visitors capped at {cap}: 15 more refused within "
                    f"{max(refused_in) * 1000:.0f} ms each, one log line: {lines[0]!r}"
                )
            finally:
                await runtime.stop()
                sub.close()
                echo.close()

    run(main())


def _server_only(config: Config) -> str:
    """The [server] part of a tunnel_config, as TOML."""
    assert config.server is not None
    lines = [
        "[server]",
        f'bind_addr = "{config.server.bind_addr}"',
        f'default_token = "{TOKEN}"',
    ]
    for name, svc in config.server.services.items():
        lines += [f"[server.services.{name}]", f'bind_addr = "{svc.bind_addr}"']
    return "\n".join(lines) + "\n"
