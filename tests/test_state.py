"""In-process tests of the engine's read interface (ratui.engine.state) through a real Runtime:
a server and a client in one event loop, a local asyncio echo service, real sockets on
127.0.0.1. Every wait is bounded."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from conftest import free_port, poll_until, run, serve_echo

from ratui.engine.config import Config, parse_config
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import (
    ControlState,
    EngineState,
    Event,
    EventKind,
    Role,
    ServiceSnapshot,
    Snapshot,
    Subscription,
)

pytestmark = pytest.mark.usefixtures("manual_rate_sampling")
TOKEN = "state-test-token"
SERVICE = "echo"


def tunnel_config(local_port: int, token: str = TOKEN, client_only: bool = False) -> Config:
    control, public = free_port(), free_port()
    server = f"""
[server]
bind_addr = "127.0.0.1:{control}"
default_token = "{TOKEN}"
[server.services.{SERVICE}]
bind_addr = "127.0.0.1:{public}"
"""
    client = f"""
[client]
remote_addr = "127.0.0.1:{control}"
retry_interval = 1
[client.services.{SERVICE}]
local_addr = "127.0.0.1:{local_port}"
token = "{token}"
"""
    return parse_config(client if client_only else server + client, source="<state-test>")


def client_config_for(config: Config, token: str) -> Config:
    """A client-only config pointing at ``config``'s server, with another token."""
    assert config.client is not None
    local = config.client.services[SERVICE].local_addr
    text = f"""
[client]
remote_addr = "{config.client.remote_addr}"
retry_interval = 1
[client.services.{SERVICE}]
local_addr = "{local}"
token = "{token}"
"""
    return parse_config(text, source="<bad-client>")


def public_port(config: Config) -> int:
    assert config.server is not None
    return int(config.server.services[SERVICE].bind_addr.rpartition(":")[2])


async def start_echo() -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(serve_echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def both(state: EngineState) -> tuple[ServiceSnapshot, ServiceSnapshot]:
    snap = state.snapshot()
    server, client = snap.service(Role.SERVER, SERVICE), snap.service(Role.CLIENT, SERVICE)
    assert server is not None and client is not None, snap
    return server, client


def both_up(state: EngineState) -> bool:
    snap = state.snapshot()
    found = [snap.service(role, SERVICE) for role in (Role.SERVER, Role.CLIENT)]
    return all(s is not None and s.state is ControlState.UP for s in found)


async def roundtrip(port: int, payload: bytes) -> bytes:
    """Send ``payload`` through the public port, half-close, read the echo to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def drain(sub: Subscription) -> list[Event]:
    events = []
    while (event := sub.get_nowait()) is not None:
        events.append(event)
    return events


class Tunnel:
    """An echo service plus a server+client Runtime sharing one EngineState."""

    def __init__(self) -> None:
        self.echo: asyncio.AbstractServer | None = None
        self.runtime: Runtime | None = None
        self.sub: Subscription | None = None

    async def __aenter__(self) -> Tunnel:
        self.echo, echo_port = await start_echo()
        self.config = tunnel_config(echo_port)
        self.port = public_port(self.config)
        self.runtime = Runtime(self.config, Roles(server=True, client=True))
        self.state = self.runtime.state
        self.sub = self.state.subscribe()  # before start: nothing is missed
        await self.runtime.start()
        await poll_until(lambda: both_up(self.state), what="both roles UP")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        if self.sub is not None:
            self.sub.close()
        if self.echo is not None:
            self.echo.close()


@pytest.mark.timeout(30)
def test_counters_states_rates_and_events() -> None:
    payload = bytes(range(256)) * 400  # 102400 bytes

    async def main() -> None:
        async with asyncio.timeout(25), Tunnel() as t:
            state, sub = t.state, t.sub
            assert sub is not None
            server, client = both(state)
            assert (server.visitors_total, server.rx, server.tx) == (0, 0, 0)
            assert (client.visitors_total, client.rx, client.tx) == (0, 0, 0)
            assert server.type == client.type == "tcp"
            assert server.address == t.config.server.services[SERVICE].bind_addr
            assert client.address == t.config.client.services[SERVICE].local_addr

            state.sample_rates()  # baseline
            # One visitor held open: it shows in the snapshot while it lasts.
            reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            server, client = both(state)
            assert server.visitors_open == 1 and len(server.visitors) == 1
            assert server.visitors[0].rx == 4 and server.visitors[0].tx == 4
            await poll_until(lambda: both(state)[1].visitors_open == 1, what="client visitor")
            writer.close()
            await writer.wait_closed()

            assert await roundtrip(t.port, payload) == payload
            await poll_until(
                lambda: all(s.visitors_open == 0 for s in both(state)), what="visitors closed"
            )
            await asyncio.sleep(0.05)
            state.sample_rates()
            total = len(payload) + 4
            for snap in both(state):
                assert snap.state is ControlState.UP
                assert snap.visitors_total == 2, snap
                assert snap.visitors_open == 0 and snap.visitors == ()
                assert (snap.rx, snap.tx) == (total, total), snap
                assert snap.rx_rate > 0 and snap.tx_rate > 0, snap
                assert snap.auth_failures == 0 and snap.last_error is None

            # A period without traffic: rates drop back to zero, totals stay.
            await asyncio.sleep(0.05)
            state.sample_rates()
            for snap in both(state):
                assert (snap.rx_rate, snap.tx_rate) == (0.0, 0.0)
                assert (snap.rx, snap.tx) == (total, total)

            events = drain(sub)
            kinds = [(e.kind, e.role) for e in events]
            assert (EventKind.CONTROL_UP, Role.SERVER) in kinds
            assert (EventKind.CONTROL_UP, Role.CLIENT) in kinds
            assert (EventKind.CONFIG_LOADED, None) in kinds
            for role in (Role.SERVER, Role.CLIENT):
                assert kinds.count((EventKind.VISITOR_OPENED, role)) == 2, kinds
                assert kinds.count((EventKind.VISITOR_CLOSED, role)) == 2, kinds
            for e in events:
                if e.kind in (EventKind.VISITOR_OPENED, EventKind.VISITOR_CLOSED):
                    assert e.service == SERVICE
            closed = [e for e in events if e.kind is EventKind.VISITOR_CLOSED]
            assert any(f"{len(payload)} bytes in" in e.message for e in closed), closed
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            assert tuple(events) == state.recent_events()[-len(events) :]

    run(main())


@pytest.mark.timeout(30)
def test_auth_failure_is_counted_and_published() -> None:
    async def main() -> None:
        async with asyncio.timeout(25), Tunnel() as t:
            state, sub = t.state, t.sub
            assert sub is not None
            drain(sub)
            bad = Runtime(client_config_for(t.config, "wrong-token"), Roles(False, True))
            bad_sub = bad.state.subscribe()
            await bad.start()
            try:
                await poll_until(
                    lambda: both(state)[0].auth_failures >= 1, what="server auth failure"
                )
                await poll_until(
                    lambda: any(e.kind is EventKind.AUTH_FAILED for e in bad.state.recent_events()),
                    what="client auth failure",
                )
            finally:
                await bad.stop()
            server_events = drain(sub)
            failed = [e for e in server_events if e.kind is EventKind.AUTH_FAILED]
            assert failed and failed[0].role is Role.SERVER and failed[0].service == SERVICE
            assert "token" in failed[0].message
            client_failed = [e for e in drain(bad_sub) if e.kind is EventKind.AUTH_FAILED]
            assert client_failed and client_failed[0].role is Role.CLIENT
            bad_snap = bad.state.snapshot()
            assert bad_snap.services == ()  # stopped services are unregistered
            # The good tunnel is unaffected.
            assert both_up(state)
            assert await roundtrip(t.port, b"still works") == b"still works"
            for e in [*server_events, *client_failed]:
                assert "wrong-token" not in e.message and TOKEN not in e.message

    run(main())


@pytest.mark.timeout(30)
def test_snapshots_and_events_are_immutable() -> None:
    async def main() -> tuple[Snapshot, list[Event]]:
        async with asyncio.timeout(25), Tunnel() as t:
            reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
            snap = t.state.snapshot()
            writer.close()
            await writer.wait_closed()
            assert t.sub is not None
            return snap, drain(t.sub)

    snap, events = run(main())
    server = snap.service(Role.SERVER, SERVICE)
    assert server is not None and server.visitors
    assert isinstance(snap.services, tuple) and isinstance(server.visitors, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.rx = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.state = ControlState.STOPPED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.services = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        server.visitors[0].tx = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].message = "changed"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        server.extra = 1  # type: ignore[attr-defined]
    # The snapshot kept its values after the engine moved on (visitor closed, roles stopped).
    assert server.visitors_open == 1 and server.rx == 5 and server.state is ControlState.UP


@pytest.mark.timeout(30)
def test_slow_subscriber_drops_oldest_events() -> None:
    async def main() -> None:
        async with asyncio.timeout(25), Tunnel() as t:
            state = t.state
            big = state.subscribe(maxsize=10_000)
            small = state.subscribe(maxsize=3)
            for i in range(5):
                payload = f"visitor {i}".encode()
                assert await roundtrip(t.port, payload) == payload
            await poll_until(
                lambda: all(s.visitors_open == 0 for s in both(state)), what="visitors closed"
            )
            everything = drain(big)
            kept = drain(small)
            # 5 visitors, each opened and closed on both roles.
            assert len(everything) >= 20
            assert len(kept) == 3
            assert kept == everything[-3:]
            assert small.dropped == len(everything) - 3
            assert big.dropped == 0
            # After draining, new events queue again; drops go on counting from where they were.
            before = small.dropped
            assert await roundtrip(t.port, b"x") == b"x"
            await poll_until(
                lambda: all(s.visitors_open == 0 for s in both(state)), what="visitors closed"
            )
            more = drain(big)
            assert len(more) >= 4
            assert drain(small) == more[-3:]
            assert small.dropped == before + len(more) - 3
            # A closed subscription receives nothing more.
            small.close()
            big.close()
            assert await roundtrip(t.port, b"y") == b"y"
            await poll_until(
                lambda: all(s.visitors_open == 0 for s in both(state)), what="visitors closed"
            )
            assert small.get_nowait() is None and big.get_nowait() is None

    run(main())


@pytest.mark.timeout(20)
def test_subscription_get_waits_for_next_event() -> None:
    async def main() -> None:
        async with asyncio.timeout(15), Tunnel() as t:
            sub = t.state.subscribe()
            waiter = asyncio.ensure_future(sub.get())
            await asyncio.sleep(0.05)
            assert not waiter.done()
            assert await roundtrip(t.port, b"wake") == b"wake"
            event = await asyncio.wait_for(waiter, 10)
            assert event.kind is EventKind.VISITOR_OPENED
            sub.close()

    run(main())


@pytest.mark.timeout(20)
def test_stop_unregisters_services() -> None:
    async def main() -> None:
        echo, echo_port = await start_echo()
        try:
            config = tunnel_config(echo_port)
            runtime = Runtime(config, Roles(server=True, client=True))
            async with asyncio.timeout(15):
                await runtime.start()
                await poll_until(lambda: both_up(runtime.state), what="both roles UP")
                await runtime.stop()
            assert runtime.state.snapshot().services == ()
        finally:
            echo.close()

    run(main())
