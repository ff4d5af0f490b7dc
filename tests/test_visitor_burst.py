"""A burst of visitors on the per-visitor fast path: the server sends the CreateDataChannel
commands asked for in one pass of its event loop in one write, and the client bounds its
per-visitor connects with one shared deadline timer. Real sockets on 127.0.0.1 throughout.

* Against a control channel and data channels spoken by hand (PROTOCOL.md §1-2), 500 visitors
  arriving at once get exactly 500 CreateDataChannel commands and each visitor's bytes reach
  exactly one data channel.
* Through a real ratui client (``lab`` of ``test_bad_peers.py``), 500 visitors at once are
  all served, and both pools end where they started: no data channel lost or left over.
* :class:`~ratui.engine.client.Deadlines` turns an expired task's cancellation into a timeout
  and leaves a task that finished in time alone.
* A local service that never answers the connect: the client gives up at the deadline and
  the visitor is reset, with one error event.
* A visitor's open and close are events only while someone subscribes (or logs at debug);
  the counters are kept either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time

import pytest
from conftest import aroundtrip, poll_until, run
from test_bad_peers import (
    ACK_OK,
    CREATE,
    HELLO_CONTROL,
    HELLO_DATA,
    START_TCP,
    TOKEN,
    digest,
    lab,
    port_of,
    tunnel_config,
)

from ratui.engine import client as client_mod
from ratui.engine.client import Deadlines
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.server import TCP_POOL_SIZE
from ratui.engine.state import EngineState, EventKind, Role

pytestmark = pytest.mark.usefixtures("manual_rate_sampling")

BURST = 500


async def control_channel(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Authenticate as the client of service ``a``; returns the session key too."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HELLO_CONTROL + digest("a"))
    nonce = (await asyncio.wait_for(reader.readexactly(37), 5))[5:]
    session_key = hashlib.sha256(TOKEN.encode() + nonce).digest()
    writer.write(session_key)
    assert await asyncio.wait_for(reader.readexactly(4), 5) == ACK_OK
    return reader, writer, session_key


async def data_channel(port: int, session_key: bytes) -> bytes:
    """A data channel that echoes what its visitor sends; returns that (b"" if it stayed
    idle until the server closed it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(HELLO_DATA + session_key)
        command = await reader.read(len(START_TCP))
        if not command:
            return b""
        assert command == START_TCP
        received = await reader.read(-1)
        writer.write(received)
        return received
    finally:
        writer.close()


@pytest.mark.timeout(60)
def test_a_burst_gets_one_create_command_and_one_data_channel_per_visitor() -> None:
    async def main() -> None:
        config = tunnel_config(local_port=9, services=("a",))
        runtime = Runtime(config, Roles(server=True, client=False))
        await runtime.start()
        try:
            control = port_of(config.server.bind_addr)  # type: ignore[union-attr]
            public = port_of(config.server.services["a"].bind_addr)  # type: ignore[union-attr]
            reader, writer, session_key = await control_channel(control)
            pool = await asyncio.wait_for(reader.readexactly(4 * TCP_POOL_SIZE), 5)
            assert pool == CREATE * TCP_POOL_SIZE
            await poll_until(lambda: runtime.state.snapshot().services[0].state == "up", 5)

            visitors = [
                asyncio.ensure_future(aroundtrip(public, b"visitor %04d" % i, timeout=30))
                for i in range(BURST)
            ]
            await poll_until(
                lambda: runtime.state.snapshot().services[0].visitors_open == BURST,
                20,
                f"{BURST} waiting visitors",
            )
            creates = await asyncio.wait_for(reader.readexactly(4 * BURST), 10)
            assert creates == CREATE * BURST
            with pytest.raises(TimeoutError):  # and not one more
                await asyncio.wait_for(reader.readexactly(1), 0.5)

            channels = [
                asyncio.ensure_future(data_channel(control, session_key))
                for _ in range(TCP_POOL_SIZE + BURST)
            ]
            answers = await asyncio.wait_for(asyncio.gather(*visitors), 30)
            assert answers == [b"visitor %04d" % i for i in range(BURST)]
            # The pool's channels stay idle; close the control channel to end them.
            await poll_until(
                lambda: runtime.state.snapshot().services[0].idle_data_channels == TCP_POOL_SIZE,
                10,
                "the pool's channels idle",
            )
            writer.close()
            carried = await asyncio.wait_for(asyncio.gather(*channels), 10)
            assert sorted(c for c in carried if c) == sorted(answers)
            assert carried.count(b"") == TCP_POOL_SIZE
            assert runtime.state.snapshot().services[0].visitors_total == BURST
        finally:
            await runtime.stop()

    run(main())


@pytest.mark.timeout(60)
def test_a_burst_through_a_real_client_is_served_and_the_pools_refill() -> None:
    async def main() -> None:
        async with lab() as the:
            client = the.runtime.client
            assert client is not None
            service = client.services["a"]
            public = the.public_port("a")
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(aroundtrip(public, b"burst %04d" % i, timeout=30) for i in range(BURST))
                ),
                40,
            )
            assert answers == [b"burst %04d" % i for i in range(BURST)]
            await poll_until(
                lambda: len(service._idle) == TCP_POOL_SIZE and not service._tasks,
                10,
                "the client's pool refilled, its tasks gone",
            )
            assert len(service._deadlines) == 0
            snap = {(s.role, s.name): s for s in the.runtime.state.snapshot().services}
            for role in ("server", "client"):
                assert snap[(role, "a")].visitors_total == BURST
                assert snap[(role, "a")].visitors_open == 0
            assert snap[("server", "a")].idle_data_channels == TCP_POOL_SIZE

    run(main())


@pytest.mark.timeout(10)
def test_deadlines_time_out_late_tasks_only() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, 0.2)
        never: asyncio.Future[None] = loop.create_future()

        async def waits(what: asyncio.Future[None]) -> str:
            task = asyncio.current_task()
            assert task is not None
            try:
                await what
            except asyncio.CancelledError:
                if deadlines.timed_out(task):
                    return "timed out"
                raise
            finally:
                deadlines.discard(task)
            return "in time"

        soon: asyncio.Future[None] = loop.create_future()
        late = loop.create_task(waits(never))
        prompt = loop.create_task(waits(soon))
        stopped = loop.create_task(waits(loop.create_future()))
        for task in (late, prompt, stopped):
            deadlines.add(task)
        loop.call_later(0.05, soon.set_result, None)
        await asyncio.sleep(0.1)
        stopped.cancel()  # a cancellation that is not the deadline's stays one
        started = loop.time()
        assert await late == "timed out"
        assert 0.05 < loop.time() - started < 0.5
        assert await prompt == "in time"
        with pytest.raises(asyncio.CancelledError):
            await stopped
        assert late.cancelling() == 0
        assert len(deadlines) == 0
        deadlines.close()

    run(main())


def test_visitor_events_only_while_someone_watches() -> None:
    state = EngineState()
    stats = state.register(Role.SERVER, "a", "tcp", "127.0.0.1:1")
    quiet = state.open_visitor(stats, "127.0.0.1:2")
    quiet.rx, quiet.tx = 3, 4
    state.close_visitor(stats, quiet)
    assert state.recent_events() == ()  # no subscriber, no debug log: counters only
    sub = state.subscribe()
    watched = state.open_visitor(stats, "127.0.0.1:5", route="example.com")
    state.close_visitor(stats, watched)
    state.close_visitor(stats, watched)  # once only
    kinds = [e.kind for e in state.recent_events()]
    assert kinds == [EventKind.VISITOR_OPENED, EventKind.VISITOR_CLOSED]
    assert sub.get_nowait() is not None and sub.get_nowait() is not None
    assert sub.get_nowait() is None
    snap = stats.snapshot()
    assert (snap.visitors_total, snap.visitors_open, snap.rx, snap.tx) == (2, 0, 3, 4)


@pytest.mark.timeout(30)
def test_a_local_service_that_never_answers_the_connect_costs_the_visitor_a_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_mod, "HANDSHAKE_TIMEOUT", 0.5)
    monkeypatch.setattr(client_mod, "LOCAL_CONNECT_TIMEOUT", 0.5)
    # A listener whose backlog of one is taken: the kernel drops further SYNs, so a connect
    # to it neither succeeds nor fails.
    with socket.socket() as stalled, socket.socket() as first:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(0)
        first.connect(stalled.getsockname())

        async def main() -> None:
            config = tunnel_config(stalled.getsockname()[1], ("a",))
            runtime = Runtime(config, Roles(server=True, client=True))
            sub = runtime.state.subscribe()
            await runtime.start()
            try:
                await poll_until(
                    lambda: all(s.state == "up" for s in runtime.state.snapshot().services),
                    10,
                    "the service up",
                )
                public = port_of(config.server.services["a"].bind_addr)  # type: ignore[union-attr]
                started = time.monotonic()
                with contextlib.suppress(ConnectionError):
                    assert await asyncio.wait_for(aroundtrip(public, b"anyone there?"), 5) == b""
                assert 0.4 < time.monotonic() - started < 3.0
                service = runtime.client.services["a"]  # type: ignore[union-attr]
                await poll_until(lambda: not service._tasks, 5, "the forwarding task to end")
                assert len(service._deadlines) == 0
                errors = []
                while (event := sub.get_nowait()) is not None:
                    if event.kind is EventKind.ERROR:
                        errors.append(event.message)
                assert errors == [
                    f"cannot connect to 127.0.0.1:{stalled.getsockname()[1]}: TimeoutError"
                ], errors
            finally:
                await runtime.stop()
                sub.close()

        run(main())
