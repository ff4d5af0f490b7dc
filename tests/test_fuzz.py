"""hypothesis fuzzing of everything that reads bytes from a peer or a file (issue 11): nothing
may raise but the project's own clear errors.

The pure decoders are fuzzed in ``test_protocol.py`` (MessageReader, the one-shot decoders,
UdpFrameDecoder: garbage, any split) and the config parser in ``test_config.py`` (TOML text,
structures, schema-shaped documents). This file fuzzes the code *around* them, where a
decoder's error has to be caught and turned into a log line, with the engine's real objects
on a fake asyncio transport (so thousands of examples run in seconds):

* the server's handshake (``Server._accept``): one to three connections per example, each a
  random byte stream, or a valid prefix (control Hello, a correct Auth, a data Hello with the
  right session key) followed by random bytes, cut anywhere, ending in EOF, a reset or
  silence (the handshake timeout);
* the client's control channel and data channels (``ClientService``) against a server that
  answers with random bytes, or a valid Hello and Ack followed by random commands;
* a UDP data channel (``udp.FrameChannel``) fed random frames in random pieces;
* ``load_config`` on random file contents (any bytes, not only text) and modes;
* ``split_host_port`` on any text.

The pairing-code parser is not fuzzed: pairing does not exist in ratui yet (skipped below).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import stat
import tempfile
import types
from collections.abc import Awaitable
from typing import Any
from unittest import mock

import pytest
from conftest import poll_until
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ratui.engine import client as client_mod
from ratui.engine import server as server_mod
from ratui.engine.channel import Channel
from ratui.engine.client import AuthenticationFailed, Client, ClientService
from ratui.engine.config import (
    ConfigError,
    file_permissions_warning,
    load_config,
    parse_config,
    split_host_port,
)
from ratui.engine.protocol import ProtocolError, UdpFrameDecoder
from ratui.engine.server import Server
from ratui.engine.state import EngineState, EventKind
from ratui.engine.udp import FrameChannel

FUZZ = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
TOKEN = "fuzz-token"
NONCE = bytes(range(32))  # the server's nonce, fixed so that a valid Auth can be generated
SESSION_KEY = hashlib.sha256(TOKEN.encode() + NONCE).digest()
HELLO_CONTROL = b"\x00\x00\x00\x00\x01"
HELLO_DATA = b"\x01\x00\x00\x00\x01"


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


class FakeTransport(asyncio.Transport):
    """Just enough of an asyncio transport for a Channel, a relay or a FrameChannel."""

    def __init__(self, protocol: asyncio.BaseProtocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closing = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closing:
            self.written += data

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 2333)}.get(
            name, default
        )


def connect(protocol: asyncio.Protocol) -> FakeTransport:
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return transport


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length)."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def loop_errors(loop: asyncio.AbstractEventLoop) -> list[dict]:
    """Collect what would otherwise be logged as "exception was never retrieved" etc."""
    errors: list[dict] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    return errors


# the server's handshake -------------------------------------------------------------------
SERVER_TOML = f"""
[server]
bind_addr = "127.0.0.1:0"
default_token = "{TOKEN}"
heartbeat_interval = 0
[server.services.a]
bind_addr = "127.0.0.1:0"
[server.services.u]
type = "udp"
bind_addr = "127.0.0.1:0"
"""

PREFIXES = [
    b"",
    HELLO_CONTROL + hashlib.sha256(b"a").digest(),  # then Auth is expected
    HELLO_CONTROL + hashlib.sha256(b"u").digest(),
    HELLO_CONTROL + hashlib.sha256(b"a").digest() + SESSION_KEY,  # a correct Auth
    HELLO_CONTROL + hashlib.sha256(b"u").digest() + SESSION_KEY,
    HELLO_CONTROL + hashlib.sha256(b"nope").digest(),  # unknown service
    HELLO_DATA + SESSION_KEY,  # valid only after a correct Auth on an earlier connection
    HELLO_DATA + bytes(32),
    b"\x00\x00\x00\x00\x02" + bytes(32),  # version 2
]

connections = st.tuples(
    st.sampled_from(PREFIXES),
    st.binary(max_size=80),
    st.lists(st.integers(min_value=0, max_value=200), max_size=4),
    st.sampled_from(["eof", "reset", "silence"]),
)


@FUZZ
@given(st.lists(connections, min_size=1, max_size=3))
@example([(PREFIXES[3], b"", [], "silence"), (PREFIXES[6], b"GET /", [5], "eof")])
@example([(PREFIXES[4], b"\x00" * 8, [40], "silence"), (PREFIXES[6], b"", [], "silence")])
@example([(PREFIXES[1], b"\x01" * 31, [], "silence")])
def test_server_handshake_takes_any_bytes(conns: list[tuple[bytes, bytes, list[int], str]]) -> None:
    async def main() -> None:
        errors = loop_errors(asyncio.get_running_loop())
        state = EngineState()
        sub = state.subscribe(maxsize=10_000)
        server = Server(parse_config(SERVER_TOML).server, state, transport=None)  # type: ignore[arg-type]
        fixed = types.SimpleNamespace(token_bytes=lambda n: NONCE[:n])
        with (
            mock.patch.object(server_mod, "HANDSHAKE_TIMEOUT", 0.02),
            mock.patch.object(server_mod, "secrets", fixed),
        ):
            try:
                for prefix, tail, cuts, end in conns:
                    channel = Channel()
                    transport = connect(channel)
                    server._accept(channel)
                    for piece in pieces(prefix + tail, cuts):
                        channel.data_received(piece)
                        await asyncio.sleep(0)
                    if end == "eof":
                        channel.eof_received()
                    elif end == "reset":
                        transport.closing = True
                        channel.connection_lost(ConnectionResetError(104, "reset"))
                    # What is still in its handshake waits for more bytes: it times out.
                    await poll_until(lambda: not server._handshakes, 2, "the handshakes")
            finally:
                await server.stop()
            await asyncio.sleep(0.01)
        allowed = {
            EventKind.BAD_PEER,
            EventKind.AUTH_FAILED,
            EventKind.UNKNOWN_SERVICE,
            EventKind.CONTROL_UP,
            EventKind.CONTROL_DOWN,
            EventKind.ERROR,
        }
        while (event := sub.get_nowait()) is not None:
            assert event.kind in allowed, event
            assert event.message and "\n" not in event.message
            assert TOKEN not in event.message
        assert not errors, errors

    run(main())


# the client's control and data channels ---------------------------------------------------
CLIENT_TOML = f"""
[client]
remote_addr = "127.0.0.1:9"
default_token = "{TOKEN}"
heartbeat_timeout = 1
[client.services.a]
local_addr = "127.0.0.1:9"
"""

SERVER_PREFIXES = [
    b"",
    HELLO_CONTROL + NONCE,
    HELLO_CONTROL + NONCE + b"\x00\x00\x00\x00",  # Ack Ok, then commands
    HELLO_CONTROL + NONCE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" * 3,  # 3 CreateDataChannel
    HELLO_DATA + NONCE,  # the wrong kind of Hello
]


class FuzzTransport:
    """``connect`` gives a Channel that receives the next scripted reply, then EOF."""

    def __init__(self, control: list[bytes], data: list[bytes]) -> None:
        self.replies = [control, *([d] for d in data)]
        self.transports: list[FakeTransport] = []

    async def connect(self, addr: str, *, nodelay: bool | None = None) -> Channel:
        channel = Channel()
        self.transports.append(connect(channel))
        reply = self.replies.pop(0) if self.replies else []
        loop = asyncio.get_running_loop()
        for piece in reply:
            loop.call_soon(channel.data_received, piece)
        loop.call_soon(channel.eof_received)
        return channel


@FUZZ
@example(SERVER_PREFIXES[3], b"", [], [b"\x00\x00\x00\x00", b"\x01\x00\x00\x00", b"\x07"])
@given(
    prefix=st.sampled_from(SERVER_PREFIXES),
    tail=st.binary(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=4),
    data=st.lists(st.binary(max_size=12), max_size=3),
)
def test_client_takes_any_bytes_from_the_server(
    prefix: bytes, tail: bytes, cuts: list[int], data: list[bytes]
) -> None:
    async def main() -> None:
        errors = loop_errors(asyncio.get_running_loop())
        cfg = parse_config(CLIENT_TOML).client
        assert cfg is not None
        state = EngineState()
        transport = FuzzTransport(pieces(prefix + tail, cuts), data)
        client = Client(cfg, state, transport)  # type: ignore[arg-type]
        service = ClientService(cfg.services["a"], client)
        with mock.patch.object(client_mod, "LOCAL_CONNECT_TIMEOUT", 1.0):
            try:
                await asyncio.wait_for(service._control_channel(), 5)
            except (OSError, TimeoutError, ProtocolError, AuthenticationFailed) as exc:
                assert str(exc) or isinstance(exc, TimeoutError)  # what _run logs
            tasks = list(service._tasks)
            if tasks:
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
                for task in tasks:
                    assert task.cancelled() or task.exception() is None, task
            service.stop()
        await asyncio.sleep(0.01)
        assert not errors, errors

    run(main())


# a UDP data channel -----------------------------------------------------------------------
class Owner:
    def __init__(self) -> None:
        self.packets: list[tuple[tuple[str, int], bytes]] = []
        self.closed: list[str | None] = []

    def packet(self, addr: tuple[str, int], data: bytes) -> None:
        self.packets.append((addr, data))

    def channel_closed(self, channel: FrameChannel, reason: str | None) -> None:
        self.closed.append(reason)


udp_frames = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda ip, port, payload: (
            b"\x0c\x00\x00\x00\x00"
            + ip
            + port.to_bytes(2, "little")
            + len(payload).to_bytes(2, "little")
            + payload
        ),
        st.binary(min_size=4, max_size=4),
        st.integers(0, 65535),
        st.binary(max_size=40),
    ),
)


@FUZZ
@given(
    frames=st.lists(udp_frames, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_udp_data_channel_takes_any_bytes(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames)

    async def main() -> None:
        errors = loop_errors(asyncio.get_running_loop())
        owner = Owner()
        transport = FakeTransport(asyncio.Protocol())
        channel = FrameChannel(owner, transport)
        channel.start(b"", False)  # the transport's protocol from now on
        for piece in pieces(stream, cuts):
            channel.data_received(piece)
        if not channel.closed:
            channel.eof_received()
            channel.connection_lost(None)
        await asyncio.sleep(0)
        assert len(owner.closed) == 1  # reported once, whatever happened
        reason = owner.closed[0]
        assert reason is None or (reason and "\n" not in reason)
        # What was delivered is exactly what the decoder makes of the bytes.
        expected: list[tuple[tuple[str, int], bytes]] = []
        try:
            expected = [(p.addr, p.data) for p in UdpFrameDecoder().feed(stream)]
        except ProtocolError:
            assert reason is not None and "malformed UDP frame" in reason
        else:
            assert owner.packets == expected
        assert not errors, errors

    run(main())


# files and addresses ----------------------------------------------------------------------
GOOD = f'[client]\nremote_addr = "127.0.0.1:2333"\ndefault_token = "{TOKEN}"\n'
GOOD += '[client.services.a]\nlocal_addr = "127.0.0.1:80"\n'


@FUZZ
@given(
    head=st.sampled_from([b"", b"\xef\xbb\xbf", GOOD.encode()]),
    raw=st.binary(max_size=200),
    mode=st.sampled_from([0o600, 0o640, 0o644, 0o604, 0o400]),
)
def test_load_config_takes_any_file(head: bytes, raw: bytes, mode: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fuzz.toml")
        with open(path, "wb") as f:
            f.write(head + raw)
        os.chmod(path, mode)
        try:
            config = load_config(path)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith(path) and "\n" not in message
            assert TOKEN not in message
            return
        warning = file_permissions_warning(config)
        if warning is not None:
            assert stat.S_IMODE(mode) & 0o077
            assert TOKEN not in warning and path in warning
        assert config.source == path


@FUZZ
@given(st.text(max_size=40))
def test_split_host_port_raises_only_value_error(addr: str) -> None:
    try:
        host, port = split_host_port(addr)
    except ValueError as exc:
        assert str(exc)
    else:
        assert host and 0 <= port <= 65535


@pytest.mark.skip(reason="pairing does not exist in ratui yet: no pairing-code parser to fuzz")
def test_pairing_code_parser_takes_any_text() -> None:  # pragma: no cover
    raise AssertionError("write this test with the pairing code")
