"""The relay on its own (ratui/engine/forward.py), in process, on real loopback sockets.

Each test builds the two connections the engine hands to a :class:`Relay` (the visitor's and
the data channel's), with blocking sockets in threads as their far ends, and runs on uvloop
and on asyncio's own loop. The relay has two ways to move bytes: callbacks (always first) and,
on Linux with plain TCP on both sides, splice(2) once a direction passed ``SPLICE_AFTER``
bytes; every test runs with the switch never, at once, and after 1 MiB. Data is checksummed
and pushed into small receive buffers with slow readers, so the write buffers, the pause and
resume paths and the pipes all fill up.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ratui.engine import forward
from ratui.engine.channel import Channel
from ratui.engine.forward import Relay
from ratui.engine.state import VisitorRecord

try:
    import uvloop
except ImportError:  # pragma: no cover - platforms without uvloop
    uvloop = None

MiB = 1 << 20
LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop")),
]
SPLICE = {"never": 1 << 62, "at-once": 0, "after-1MiB": MiB}
CAN_SPLICE = sys.platform == "linux" and bool(forward._PLAIN)


def run(loop_kind: str, coro: Coroutine[Any, Any, None]) -> None:
    if loop_kind == "uvloop":
        assert uvloop is not None
        uvloop.run(coro)
    else:
        asyncio.run(coro)


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=list(SPLICE))
def splice_after(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(forward, "SPLICE_AFTER", SPLICE[request.param])
    return request.param


async def connection(rcvbuf: int | None = None) -> tuple[Channel, socket.socket]:
    """An accepted connection as the engine has it (a Channel on a transport, not reading)
    and its far end, a blocking socket (with a small receive buffer if asked)."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        far = socket.socket()
        if rcvbuf:
            far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        far.setblocking(False)
        await loop.sock_connect(far, listener.getsockname())
        near, _ = await loop.sock_accept(listener)
    _, channel = await loop.connect_accepted_socket(Channel, near)
    channel.transport.pause_reading()
    far.setblocking(True)
    far.settimeout(30)
    return channel, far


class Relayed:
    """A started relay between a visitor socket and a local-service socket."""

    def __init__(self) -> None:
        self.record = VisitorRecord(1, "test")
        self.done: asyncio.Event = asyncio.Event()
        self.calls = 0

    def on_done(self, _relay: Relay) -> None:
        self.calls += 1
        self.done.set()

    async def start(
        self,
        rcvbuf: int | None = None,
        leftover: bytes = b"",
        eof: bool = False,
    ) -> tuple[socket.socket, socket.socket]:
        visitor_side, self.visitor = await connection(rcvbuf)
        local_side, self.local = await connection(rcvbuf)
        transport, _, _ = visitor_side.detach()
        self.relay = Relay(
            (transport, leftover, eof), local_side.detach(), self.record, self.on_done
        )
        self.relay.start()
        return self.visitor, self.local

    async def finished(self, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            await self.done.wait()
        await asyncio.sleep(0.05)  # a second on_done would come in this window
        assert self.calls == 1


def stream(seed: int, total: int, chunk: int = 256 * 1024) -> Callable[[], bytes | None]:
    """Chunks of a reproducible random stream of ``total`` bytes, then None."""
    rng = random.Random(seed)
    left = [total]

    def next_chunk() -> bytes | None:
        if left[0] <= 0:
            return None
        size = min(chunk, left[0])
        left[0] -= size
        return rng.randbytes(size)

    return next_chunk


def digest_of(seed: int, total: int) -> bytes:
    h = hashlib.sha256()
    chunks = stream(seed, total)
    while (chunk := chunks()) is not None:
        h.update(chunk)
    return h.digest()


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the test
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def send_all(sock: socket.socket, seed: int, total: int) -> None:
    chunks = stream(seed, total)
    while (chunk := chunks()) is not None:
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)


def read_all(sock: socket.socket, slow_until: int = 0) -> tuple[int, bytes]:
    """Read to EOF; the first ``slow_until`` bytes in small, slow reads (backpressure)."""
    h = hashlib.sha256()
    got = 0
    while True:
        data = sock.recv(4096 if got < slow_until else 1 << 18)
        if not data:
            return got, h.digest()
        if got < slow_until:
            threading.Event().wait(0.0005)
        got += len(data)
        h.update(data)


async def joined(*threads: threading.Thread, timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- bulk


@pytest.mark.parametrize("up,down", [(24 * MiB, 24 * MiB), (24 * MiB, 0), (100, 24 * MiB)])
def test_bulk_both_ways_under_backpressure_is_exact(loop_kind, splice_after, up, down):
    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start(rcvbuf=64 * 1024)
        threads = [
            in_thread(lambda: send_all(visitor, 1, up)),
            in_thread(lambda: send_all(local, 2, down)),
            in_thread(lambda: read_all(local, slow_until=4 * MiB)),
            in_thread(lambda: read_all(visitor, slow_until=4 * MiB)),
        ]
        await joined(*(t for t, _ in threads))
        results = [r[0] for _, r in threads]
        for r in results:
            if isinstance(r, BaseException):
                raise r
        assert results[2] == (up, digest_of(1, up))
        assert results[3] == (down, digest_of(2, down))
        await relayed.finished()
        assert (relayed.record.rx, relayed.record.tx) == (up, down)
        spliced = relayed.relay._spliced is not None
        if CAN_SPLICE and splice_after != "never" and max(up, down) > MiB:
            assert spliced, "a bulk transfer did not switch to splice"
        if splice_after == "never":
            assert not spliced
        visitor.close()
        local.close()

    run(loop_kind, main())


def test_writer_stalled_with_nothing_read_then_drained(loop_kind, splice_after):
    """Nothing is read until the sender is stuck: every buffer on the path is full, then
    everything arrives, in order."""

    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start(rcvbuf=64 * 1024)
        visitor.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        total = 96 * MiB  # more than every buffer on the way can hold (kernel ones included)
        sent = [0]

        def writer() -> None:
            chunks = stream(7, total, 64 * 1024)
            while (chunk := chunks()) is not None:
                visitor.sendall(chunk)
                sent[0] += len(chunk)
            visitor.shutdown(socket.SHUT_WR)

        thread, result = in_thread(writer)
        last, still = -1, 0
        async with asyncio.timeout(30):
            while still < 10:  # 0.5 s without progress: the writer is held back
                await asyncio.sleep(0.05)
                still = still + 1 if sent[0] == last else 0
                last = sent[0]
        assert sent[0] < total, "the writer was never held back: no backpressure"
        got, digest = await asyncio.to_thread(read_all, local)
        await joined(thread)
        assert not result or result[0] is None, result
        assert (got, digest) == (total, digest_of(7, total))
        local.close()
        await relayed.finished()
        visitor.close()

    run(loop_kind, main())


# --------------------------------------------------------------------------- ends


def test_half_close_then_reply(loop_kind, splice_after):
    """A visitor sends its request and half-closes; the reply still comes back in full."""

    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start()
        request, reply = random.randbytes(3 * MiB), random.randbytes(5 * MiB)

        def service() -> None:
            got = b""
            while data := local.recv(1 << 16):
                got += data
            assert got == request
            local.sendall(reply)
            local.close()

        def client() -> bytes:
            visitor.sendall(request)
            visitor.shutdown(socket.SHUT_WR)
            got = b""
            while data := visitor.recv(1 << 16):
                got += data
            return got

        (t1, r1), (t2, r2) = in_thread(service), in_thread(client)
        await joined(t1, t2)
        assert r1 == [None]
        assert r2 == [reply]
        await relayed.finished()
        assert (relayed.record.rx, relayed.record.tx) == (len(request), len(reply))
        visitor.close()

    run(loop_kind, main())


def test_leftover_and_eof_seen_before_start(loop_kind, splice_after):
    """Bytes the visitor sent while it waited for a data channel, and its EOF, go first."""

    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start(leftover=b"early bytes", eof=True)
        t, r = in_thread(lambda: read_all(local))
        await joined(t)
        assert r == [(11, hashlib.sha256(b"early bytes").digest())]
        local.sendall(b"reply")
        local.close()
        t, r = in_thread(lambda: read_all(visitor))
        await joined(t)
        assert r == [(5, hashlib.sha256(b"reply").digest())]
        await relayed.finished()
        visitor.close()

    run(loop_kind, main())


def test_reset_by_one_end_closes_the_other(loop_kind, splice_after):
    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start()
        payload = random.randbytes(2 * MiB)
        t, r = in_thread(lambda: visitor.sendall(payload))
        await joined(t)
        t, r = in_thread(lambda: local.recv(1 << 20))
        await joined(t)
        assert r and r[0]
        # An abortive close (RST) of the visitor: the local service sees the end too.
        visitor.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        visitor.close()
        t, r = in_thread(lambda: read_all(local))
        await joined(t)
        assert not isinstance(r[0], BaseException) or isinstance(r[0], ConnectionResetError)
        await relayed.finished()
        local.close()

    run(loop_kind, main())


def test_close_stops_a_busy_relay_once(loop_kind, splice_after):
    """Relay.close() (a service being stopped) ends both connections in either mode."""

    async def main() -> None:
        relayed = Relayed()
        visitor, local = await relayed.start(rcvbuf=64 * 1024)
        t, r = in_thread(lambda: send_all(visitor, 3, 64 * MiB))
        got = 0
        async with asyncio.timeout(30):
            while got < 4 * MiB:
                got += len(await asyncio.to_thread(local.recv, 1 << 20))
        relayed.relay.close()
        relayed.relay.close()  # a second close is harmless
        # Callbacks close gracefully (what was written is flushed first): keep reading.
        reader, _ = in_thread(lambda: read_all(local))
        await relayed.finished()
        await joined(t, reader)  # the local service sees its end (EOF or reset) too
        assert isinstance(r[0], OSError)  # and the visitor's connection is gone
        visitor.close()
        local.close()

    run(loop_kind, main())


def test_layered_transports_never_splice():
    """Only a plain socket transport may splice: any other one (Noise, TLS) must see the
    plaintext, so its relay stays on callbacks whatever it carries."""

    class Other(asyncio.Transport):
        def write(self, data: Any) -> None:
            pass

        def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def resume_reading(self) -> None:
            pass

    relay = Relay((Other(), b"", False), (Other(), b"", False), VisitorRecord(1, "x"), print)
    relay.start()
    assert relay.inbound.budget > 1 << 60
    assert relay.outbound.budget > 1 << 60
