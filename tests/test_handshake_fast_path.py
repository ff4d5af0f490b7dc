"""The per-visitor path without a coroutine per channel: the server's handshake of each new
connection runs on callbacks with one shared expiry timer, and the client's idle data channels
wait for their command without a task. Real server and client in one process, real sockets
(the ``lab`` of ``test_bad_peers.py``)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
from conftest import poll_until, run
from test_bad_peers import HELLO_CONTROL, HELLO_DATA, TOKEN, digest, lab, read_until_closed

from ratui.engine import server as server_mod
from ratui.engine.server import TCP_POOL_SIZE
from ratui.engine.state import EventKind


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` one byte at a time, each in its own segment."""
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.002)


@pytest.mark.timeout(30)
def test_pending_handshakes_hold_no_task_and_end_cleanly() -> None:
    async def main() -> None:
        async with lab() as the:
            server = the.runtime.server
            assert server is not None
            tasks_before = len(asyncio.all_tasks())
            writers = []
            for i in range(60):
                _, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
                if i % 2:  # half a Hello
                    writer.write((HELLO_CONTROL + digest("a"))[:20])
                writers.append(writer)
            await poll_until(lambda: len(server._handshakes) == 60, 5, "60 pending handshakes")
            # Only the client side's StreamReaders of this test run as tasks: none per
            # pending handshake on the server.
            assert len(asyncio.all_tasks()) <= tasks_before + 1
            mark = the.mark()
            for writer in writers:
                writer.close()
            await poll_until(lambda: not server._handshakes, 5, "every handshake to end")
            events, _ = the.loud_since(mark)
            # The half Hellos are bad peers (one event each); silent ones closing are not.
            assert len(events) == 30, events
            assert all("in the middle of a handshake message" in e.message for e in events)
            await the.check_unaffected(mark)

    run(main())


@pytest.mark.timeout(30)
def test_one_timer_closes_each_silent_connection_at_its_own_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_mod, "HANDSHAKE_TIMEOUT", 0.5)

    async def main() -> None:
        async with lab() as the:
            server = the.runtime.server
            assert server is not None

            async def silent_for() -> float:
                reader, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
                opened = time.monotonic()
                await read_until_closed(reader, 3.0)
                writer.close()
                return time.monotonic() - opened

            first = asyncio.ensure_future(silent_for())
            await asyncio.sleep(0.25)
            second = asyncio.ensure_future(silent_for())
            await poll_until(lambda: server._expiry is not None, 2, "the expiry timer")
            lived = await asyncio.gather(first, second)
            for seconds in lived:
                assert 0.4 < seconds < 1.2, lived
            assert server._expiry is None  # nothing pending: no timer left behind
            timeouts = [e for e in the.drain() if "no complete handshake" in e.message]
            assert len(timeouts) == 2, timeouts

    run(main())


@pytest.mark.timeout(30)
def test_handshakes_sent_a_byte_at_a_time_complete() -> None:
    async def main() -> None:
        async with lab() as the:
            # A data channel Hello with a session key no client has: read to its very end,
            # then refused.
            reader, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
            await trickle(writer, HELLO_DATA + bytes(32))
            assert await read_until_closed(reader) == b""
            writer.close()
            await poll_until(
                lambda: any("incorrect session key" in e.message for e in the.drain()),
                3,
                "the refusal",
            )
            # A control channel, Hello and Auth each in single bytes: authenticated.
            reader, writer = await asyncio.open_connection("127.0.0.1", the.control_port)
            await trickle(writer, HELLO_CONTROL + digest("a"))
            nonce_hello = await asyncio.wait_for(reader.readexactly(37), 3)
            auth = hashlib.sha256(TOKEN.encode() + nonce_hello[5:]).digest()
            await trickle(writer, auth)
            assert await asyncio.wait_for(reader.readexactly(4), 3) == b"\x00\x00\x00\x00"
            # It is the service's control channel now: the server asks it for data channels.
            create = await asyncio.wait_for(reader.readexactly(4), 3)
            assert create == b"\x00\x00\x00\x00"
            writer.close()

    run(main())


@pytest.mark.timeout(30)
def test_idle_data_channels_wait_without_a_task_and_serve_visitors() -> None:
    async def main() -> None:
        async with lab() as the:
            client = the.runtime.client
            assert client is not None
            service = client.services["a"]
            await poll_until(
                lambda: len(service._idle) == TCP_POOL_SIZE and not service._tasks,
                5,
                "a full pool and no task",
            )
            for _ in range(20):
                assert await the.serves("a")
            # Every visitor was replaced in the pool, and each forwarding task has ended.
            await poll_until(
                lambda: len(service._idle) == TCP_POOL_SIZE and not service._tasks,
                5,
                "the pool refilled, the tasks gone",
            )
            snap = {s.name: s for s in the.runtime.state.snapshot().services}
            assert snap["a"].idle_data_channels >= TCP_POOL_SIZE
            kinds = {e.kind for e in the.drain()}
            assert EventKind.VISITOR_CLOSED in kinds

    run(main())
