"""The Noise transport: framing and nonces (in process), flow control and half-close over real
loopback sockets, and real ratui/rathole processes for interop and for every failure a user
can cause (wrong key, wrong pattern, a plain-TCP client, garbage, silence).

PROTOCOL.md §5.2 is the reference: client = initiator, u16 **little-endian** length before
every message, empty handshake payloads, at most 65519 plaintext bytes per message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest
import uvloop
from conftest import EchoServer, Proc, Procs, free_port, roundtrip, wait_port, write_config
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from ratui.engine.channel import Channel
from ratui.engine.config import NoiseConfig, TcpTransportConfig
from ratui.engine.transport.base import Transport
from ratui.engine.transport.layered import LayerError, TransportSetupError
from ratui.engine.transport.noise import (
    MAX_PLAINTEXT,
    NoiseSession,
    NoiseSpec,
    NoiseTransport,
)
from ratui.genkey import generate_keypair

MiB = 1 << 20
NK = "Noise_NK_25519_ChaChaPoly_BLAKE2s"
XX = "Noise_XX_25519_ChaChaPoly_BLAKE2s"
KK = "Noise_KK_25519_ChaChaPoly_BLAKE2s"
SHORT = {NK: "NK", XX: "XX", KK: "KK"}

# PROTOCOL.md §8: the first line of the transcript, a control-channel Hello for "foo1".
HELLO_FOO1 = bytes.fromhex(
    "0000000001bb4eca334f61af3b67b5d528907d30285151610200539302f4c8cabe66225b53"
)


# ------------------------------------------------------------------------ in-process helpers
def keypair() -> tuple[bytes, bytes]:
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def session_pair(pattern: str = NK) -> tuple[NoiseSession, NoiseSession, list[bytes]]:
    """An initiator and a responder that completed their handshake in memory, and the
    handshake messages as they went over the wire."""
    spec = NoiseSpec.parse(pattern)
    server_priv, server_pub = keypair()
    client_priv, client_pub = keypair()
    initiator = NoiseSession(
        spec, initiator=True, local_private=client_priv, remote_public=server_pub
    )
    responder = NoiseSession(
        spec, initiator=False, local_private=server_priv, remote_public=client_pub
    )
    wire: list[bytes] = []
    finished: set[int] = set()
    initiator.start()
    sender, receiver = initiator, responder
    while len(finished) < 2:
        message = sender.take_output()
        assert message, "handshake stalled"
        wire.append(message)
        if receiver.handshake(message) is not None:
            finished.add(id(receiver))
        sender, receiver = receiver, sender
    return initiator, responder, wire


def feed_split(session: NoiseSession, wire: bytes, cuts: list[int]) -> bytes:
    out = bytearray()
    start = 0
    for cut in [*cuts, len(wire)]:
        plain, eof = session.decrypt(wire[start:cut])
        assert not eof
        out += plain
        start = cut
    return bytes(out)


# ------------------------------------------------------------------------------ framing
def test_handshake_sizes_match_protocol_md():
    assert NoiseSpec.parse(NK).sizes == (48, 48)
    assert NoiseSpec.parse(XX).sizes == (32, 96, 64)
    assert NoiseSpec.parse(KK).sizes == (48, 48)
    for pattern, sizes in ((NK, (48, 48)), (XX, (32, 96, 64)), (KK, (48, 48))):
        *_, wire = session_pair(pattern)
        assert [len(m) for m in wire] == [2 + s for s in sizes]
        for message, size in zip(wire, sizes, strict=True):
            assert message[:2] == size.to_bytes(2, "little")  # `30 00`, not `00 30`


def test_hello_frame_is_35_00_plus_53_bytes():
    client, server, _ = session_pair()
    frame = bytes(client.encrypt(HELLO_FOO1))
    assert len(frame) == 2 + 53
    assert frame[:2] == bytes.fromhex("3500")
    assert server.decrypt(frame) == (HELLO_FOO1, False)
    command = bytes(server.encrypt(bytes(4)))
    assert command[:2] == bytes.fromhex("1400") and len(command) == 22
    assert client.decrypt(command) == (bytes(4), False)


def test_frames_split_anywhere_and_merged():
    client, server, _ = session_pair()
    messages = [os.urandom(n) for n in (1, 37, 100, 4096, 1, 65519)]
    wire = b"".join(client.encrypt(m) for m in messages)
    expected = b"".join(messages)
    # Byte by byte, all at once, and at random cut points.
    one, two, three = session_pair_copies(client, server, wire, 3)
    assert feed_split(one, wire, list(range(1, len(wire)))) == expected
    assert feed_split(two, wire, []) == expected
    rnd = sorted({int.from_bytes(os.urandom(3)) % len(wire) for _ in range(40)} - {0})
    assert feed_split(three, wire, rnd) == expected


def session_pair_copies(
    client: NoiseSession, server: NoiseSession, wire: bytes, count: int
) -> list[NoiseSession]:
    """Independent receivers for the same ciphertext: copies of the responder's state."""
    receivers = []
    for _ in range(count):
        clone = copy.copy(server)
        clone._buf = bytearray()
        receivers.append(clone)
    return receivers


def test_max_message_is_65535_and_large_writes_are_chunked():
    client, server, _ = session_pair()
    exact = os.urandom(MAX_PLAINTEXT)
    frame = bytes(client.encrypt(exact))
    assert frame[:2] == b"\xff\xff" and len(frame) == 2 + 65535
    assert server.decrypt(frame) == (exact, False)

    bigger = os.urandom(MAX_PLAINTEXT + 1)
    wire = bytes(client.encrypt(bigger))
    assert wire[:2] == b"\xff\xff"
    assert wire[2 + 65535 : 2 + 65535 + 2] == (1 + 16).to_bytes(2, "little")
    assert len(wire) == 2 + 65535 + 2 + 17
    assert server.decrypt(wire) == (bigger, False)

    big = os.urandom(5 * MAX_PLAINTEXT + 12345)
    wire = bytes(client.encrypt(big))
    assert len(wire) == len(big) + 6 * 18
    assert server.decrypt(wire) == (big, False)


def test_nonces_and_cipher_interoperate_with_noiseprotocol():
    """Our frames decrypt with ``noiseprotocol``'s own transport state and vice versa: same
    keys, same nonce layout (4 zero bytes + u64 LE counter from 0), same length prefix."""
    spec = NoiseSpec.parse(NK)
    server_priv, server_pub = keypair()
    ours = NoiseSession(spec, initiator=True, local_private=None, remote_public=server_pub)
    theirs = NoiseConnection.from_name(NK.encode())
    theirs.set_as_responder()
    theirs.set_keypair_from_private_bytes(Keypair.STATIC, server_priv)
    theirs.start_handshake()
    ours.start()
    first = ours.take_output()
    assert first[:2] == b"\x30\x00"
    theirs.read_message(first[2:])
    reply = theirs.write_message()
    assert ours.handshake(len(reply).to_bytes(2, "little") + reply) == b""
    for size in (0, 37, 4, 8192, MAX_PLAINTEXT):
        data = os.urandom(size)
        frame = bytes(ours.encrypt(data)) if size else None
        if frame is not None:
            assert int.from_bytes(frame[:2], "little") == len(frame) - 2
            assert theirs.decrypt(frame[2:]) == data
        back = theirs.encrypt(data or b"x")
        assert ours.decrypt(len(back).to_bytes(2, "little") + back) == (data or b"x", False)


def test_tampering_and_runt_frames_are_errors():
    client, server, _ = session_pair()
    frame = bytearray(bytes(client.encrypt(b"hello")))
    frame[5] ^= 1
    with pytest.raises(LayerError, match="failed authentication"):
        server.decrypt(bytes(frame))
    _, server2, _ = session_pair()
    with pytest.raises(LayerError, match="shorter than its 16-byte tag"):
        server2.decrypt(b"\x05\x00hello")


def test_handshake_errors_name_the_problem():
    spec = NoiseSpec.parse(NK)
    _, server_pub = keypair()
    server_priv, _ = keypair()
    responder = NoiseSession(spec, initiator=False, local_private=server_priv, remote_public=None)
    initiator = NoiseSession(spec, initiator=True, local_private=None, remote_public=server_pub)
    initiator.start()
    with pytest.raises(LayerError, match="decryption failed - is the client's remote_public_key"):
        responder.handshake(initiator.take_output())
    zero = NoiseSession(spec, initiator=True, local_private=None, remote_public=bytes(32))
    with pytest.raises(LayerError, match="is remote_public_key a real X25519 public key"):
        zero.start()  # a low-order point: no shared secret
    for data, pattern in (
        (HELLO_FOO1, 'plain rathole Hello, not a Noise handshake: it uses type = "tcp"'),
        (bytes.fromhex("160301020001"), "speaks TLS"),
        (b"GET / HTTP/1.1\r\n", "speaks HTTP"),
        (b"\x20\x00" + bytes(32), "handshake message 1 is 32 bytes where " + NK + " sends 48"),
    ):
        fresh = NoiseSession(spec, initiator=False, local_private=server_priv, remote_public=None)
        with pytest.raises(LayerError, match=re.escape(pattern)):
            fresh.handshake(data)


def test_pattern_checks():
    for bad, why in (
        ("Noise_NK_448_ChaChaPoly_BLAKE2s", "only the 25519 curve"),
        ("Noise_N_25519_ChaChaPoly_BLAKE2s", "one-way"),
        ("Noise_NKpsk2_25519_ChaChaPoly_BLAKE2s", "pre-shared key"),
        ("Noise_ZZ_25519_ChaChaPoly_BLAKE2s", "not a Noise protocol name"),
        ("nonsense", "not a Noise protocol name"),
    ):
        with pytest.raises(TransportSetupError, match=why):
            NoiseSpec.parse(bad)


# ----------------------------------------------------- in process, over loopback sockets
def run(coro: Awaitable[None], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    uvloop.run(bounded())


async def open_pair(transport: Transport) -> tuple[Channel, Channel, asyncio.AbstractServer]:
    """Listen on an ephemeral port, connect once; (client channel, server channel, listener)."""
    accepted: asyncio.Queue[Channel] = asyncio.Queue()
    listener = await transport.listen("127.0.0.1:0", accepted.put_nowait)
    port = listener.sockets[0].getsockname()[1]
    client = await transport.connect(f"127.0.0.1:{port}")
    server = await accepted.get()
    return client, server, listener


class Recorder(asyncio.Protocol):
    """A forward.py-like protocol: counts, hashes, tracks pause/resume and EOF."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.hash = hashlib.sha256()
        self.count = 0
        self.reading_paused = False
        self.writing_paused = False
        self.pauses = 0
        self.eof = asyncio.Event()
        self.lost = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.keep = False

    def data_received(self, data: bytes) -> None:
        assert not self.reading_paused, "data_received while reading is paused"
        self.count += len(data)
        self.hash.update(data)
        if self.keep:
            self.data += data

    def eof_received(self) -> bool:
        self.eof.set()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        self.writing_paused = False

    def pause(self) -> None:
        assert self.transport is not None
        self.reading_paused = True
        self.transport.pause_reading()

    def resume(self) -> None:
        assert self.transport is not None
        self.reading_paused = False
        self.transport.resume_reading()


def attach(channel: Channel) -> tuple[asyncio.Transport, Recorder]:
    transport, leftover, eof = channel.detach()
    assert leftover == b"" and not eof
    recorder = Recorder()
    recorder.transport = transport
    transport.set_protocol(recorder)
    return transport, recorder


async def check_flow_control(transport: Transport) -> None:
    """A reader that stops reading makes the writer's transport call pause_writing, with the
    write buffer near its high-water mark (memory stays bounded); once reading resumes every
    byte arrives, in order, and resume_writing follows."""
    client_ch, server_ch, listener = await open_pair(transport)
    try:
        writer, wrec = attach(client_ch)
        reader, rrec = attach(server_ch)
        rrec.pause()
        chunk = os.urandom(256 * 1024)
        sent = hashlib.sha256()
        total = 0
        while not wrec.writing_paused and total < 512 * MiB:
            writer.write(chunk)
            sent.update(chunk)
            total += len(chunk)
            await asyncio.sleep(0)
        assert wrec.writing_paused, "pause_writing never came although the reader stopped"
        high = writer.get_write_buffer_limits()[1]
        assert writer.get_write_buffer_size() <= high + len(chunk) + 64 * 1024
        await asyncio.sleep(0.2)
        assert rrec.count == 0  # a paused reader gets nothing

        # Now read, pausing again whenever 1 MiB came in one go, and keep writing while the
        # writer is allowed to.
        goal = total + 16 * MiB
        while rrec.count < goal:
            if not wrec.writing_paused and total < goal:
                writer.write(chunk)
                sent.update(chunk)
                total += len(chunk)
            if rrec.reading_paused:
                rrec.resume()
            before = rrec.count
            await asyncio.sleep(0.001)
            if rrec.count - before > MiB:
                rrec.pause()
                await asyncio.sleep(0.001)
        assert rrec.count == total
        assert rrec.hash.digest() == sent.digest()
        assert not wrec.writing_paused
        assert wrec.pauses >= 1
        writer.close()
        reader.close()
        await asyncio.wait_for(rrec.lost.wait(), 5)
    finally:
        listener.close()


async def check_half_close(transport: Transport) -> None:
    """write_eof passes through the layer: the peer sees EOF and can still answer."""
    client_ch, server_ch, listener = await open_pair(transport)
    try:
        client, crec = attach(client_ch)
        server, srec = attach(server_ch)
        srec.keep = crec.keep = True
        assert client.can_write_eof()
        client.write(b"request")
        client.write_eof()
        await asyncio.wait_for(srec.eof.wait(), 5)
        assert bytes(srec.data) == b"request"
        server.write(b"reply after the client's EOF")
        server.write_eof()
        await asyncio.wait_for(crec.eof.wait(), 5)
        assert bytes(crec.data) == b"reply after the client's EOF"
        # Both directions are finished; as with TCP, closing is up to each side (forward.py
        # closes the pair once both EOFs went through).
        client.close()
        server.close()
        await asyncio.wait_for(srec.lost.wait(), 5)
        await asyncio.wait_for(crec.lost.wait(), 5)
    finally:
        listener.close()


async def check_handshake_before_channel(transport: Transport) -> None:
    """Messages written right after connect (the Hello) reach a Channel intact, and
    get_extra_info answers like a TCP transport's."""
    client_ch, server_ch, listener = await open_pair(transport)
    try:
        client_ch.write(HELLO_FOO1)
        from ratui.engine.protocol import MessageReader

        hello = await server_ch.receive(MessageReader.next_hello)
        assert hello.digest == HELLO_FOO1[5:]
        assert server_ch.peer.startswith("127.0.0.1:")
        assert client_ch.transport is not None
        assert client_ch.transport.get_extra_info("sockname")[0] == "127.0.0.1"
        assert client_ch.transport.get_extra_info("socket") is not None
        client_ch.set_nodelay(False)
    finally:
        client_ch.close()
        server_ch.close()
        listener.close()


def noise_transport(pattern: str = NK) -> NoiseTransport:
    """One transport object usable as both server and client of an NK/XX/KK link (for KK the
    one key pair plays both static keys, which is fine in process)."""
    priv, pub = keypair()
    return NoiseTransport(TcpTransportConfig(), NoiseConfig(pattern, b64(priv), b64(pub)))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", [NK, XX, KK], ids=["NK", "XX", "KK"])
def test_channel_over_noise(pattern):
    run(check_handshake_before_channel(noise_transport(pattern)))


@pytest.mark.timeout(90)
def test_flow_control_both_ways_over_noise():
    run(check_flow_control(noise_transport()), timeout=80)


@pytest.mark.timeout(30)
def test_half_close_over_noise():
    run(check_half_close(noise_transport()))


# -------------------------------------------------------------------- processes: helpers
def noise_table(
    role: str, pattern: str | None, local: str | None = None, remote: str | None = None
) -> str:
    lines = [f"[{role}.transport]", 'type = "noise"', f"[{role}.transport.noise]"]
    if pattern is not None:
        lines.append(f'pattern = "{pattern}"')
    if local is not None:
        lines.append(f'local_private_key = "{local}"')
    if remote is not None:
        lines.append(f'remote_public_key = "{remote}"')
    return "\n".join(lines) + "\n"


def server_toml(port: int, services: dict[str, int], transport: str) -> str:
    text = f'[server]\nbind_addr = "127.0.0.1:{port}"\n' + transport
    for name, service_port in services.items():
        text += (
            f'[server.services.{name}]\nbind_addr = "127.0.0.1:{service_port}"\n'
            f'token = "token-{name}"\n'
        )
    return text


def client_toml(remote: str, services: dict[str, str], transport: str) -> str:
    text = f'[client]\nremote_addr = "{remote}"\nretry_interval = 1\n' + transport
    for name, local in services.items():
        text += f'[client.services.{name}]\nlocal_addr = "{local}"\ntoken = "token-{name}"\n'
    return text


def start(procs: Procs, impl: str, role: str, cfg: Path) -> Proc:
    if impl == "ratui":
        return procs.ratui(f"--{role}", str(cfg))
    return procs.rathole(f"--{role}", str(cfg))


def genkey(impl: str) -> tuple[str, str]:
    """(private, public) printed by ``ratui --genkey`` or ``rathole --genkey``."""
    if impl == "ratui":
        argv = [sys.executable, "-m", "ratui", "--genkey"]
    else:
        from conftest import RATHOLE

        if not RATHOLE.exists():
            if os.environ.get("RATUI_REQUIRE_RATHOLE"):
                pytest.fail(f"reference rathole not found at {RATHOLE}")
            pytest.skip(f"reference rathole not found at {RATHOLE}")
        argv = [str(RATHOLE), "--genkey"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=True).stdout
    match = re.fullmatch(r"Private Key:\n(\S+)\n\nPublic Key:\n(\S+)\n", out)
    assert match, out
    return match[1], match[2]


def assert_roundtrip(port: int, size: int = MiB) -> None:
    payload = os.urandom(size)
    got = roundtrip(port, payload)
    assert len(got) == len(payload) and got == payload


def assert_dropped(sock: socket.socket) -> None:
    """The server closed ``sock`` (FIN, or RST if it left bytes unread)."""
    with contextlib.suppress(ConnectionResetError):
        assert sock.recv(100) == b""


def wait_for_count(proc: Proc, text: str, count: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.output().count(text) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not seen {count} times in:\n{proc.output()}")


class NoiseServer:
    """A noise server (ratui or rathole) with two services, ``good`` and ``other``."""

    def __init__(
        self,
        tmp_path: Path,
        procs: Procs,
        *,
        impl: str = "ratui",
        pattern: str | None = None,
        private: str | None = None,
        remote: str | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.procs = procs
        self.impl = impl
        if private is None:
            private, public = generate_keypair()
        else:
            public = b64(
                X25519PrivateKey.from_private_bytes(base64.b64decode(private))
                .public_key()
                .public_bytes_raw()
            )
        self.private, self.public = private, public
        self.port = free_port()
        self.ports = {"good": free_port(), "other": free_port()}
        self.addr = f"127.0.0.1:{self.port}"
        self.cfg = write_config(
            tmp_path / f"server-{impl}.toml",
            server_toml(self.port, self.ports, noise_table("server", pattern, private, remote)),
        )
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.proc = start(self.procs, self.impl, "server", self.cfg)
        wait_port(self.port)
        return self.proc

    def client(self, impl: str, service: str, local: str, transport: str, name: str = "") -> Proc:
        cfg = write_config(
            self.tmp_path / f"client-{service}-{impl}{name}.toml",
            client_toml(self.addr, {service: local}, transport),
        )
        return start(self.procs, impl, "client", cfg)

    def good_client(self, impl: str, echo: EchoServer) -> Proc:
        proc = self.client(impl, "good", echo.addr, noise_table("client", None, None, self.public))
        wait_port(self.ports["good"], timeout=15)
        return proc


# ------------------------------------------------------------------ processes: interop
def keys_for(pattern: str, server_impl: str) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """(server table kwargs, client table kwargs). For NK the keypair comes from the *other*
    implementation's --genkey, so each direction also proves the keys interoperate."""
    if pattern == NK:
        private, public = genkey("rathole" if server_impl == "ratui" else "ratui")
        return {"local": private}, {"remote": public}
    if pattern == XX:
        private, _ = generate_keypair()
        return {"local": private}, {}  # the client has no key: a random one, as rathole
    server_priv, server_pub = generate_keypair()
    client_priv, client_pub = generate_keypair()
    return (
        {"local": server_priv, "remote": client_pub},
        {"local": client_priv, "remote": server_pub},
    )


@pytest.mark.interop
@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", [NK, XX, KK], ids=["NK", "XX", "KK"])
@pytest.mark.parametrize(
    ("server_impl", "client_impl"),
    [("rathole", "ratui"), ("ratui", "rathole")],
    ids=["ratui-client-rathole-server", "rathole-client-ratui-server"],
)
def test_noise_interop_1mib(tmp_path, procs, echo, pattern, server_impl, client_impl):
    server_keys, client_keys = keys_for(pattern, server_impl)
    port, service = free_port(), free_port()
    server_cfg = write_config(
        tmp_path / "server.toml",
        server_toml(
            port,
            {"svc": service},
            noise_table(
                "server", None if pattern == NK else pattern, **server_keys
            ),  # NK: rathole's default pattern, left out
        ),
    )
    client_cfg = write_config(
        tmp_path / "client.toml",
        client_toml(
            f"127.0.0.1:{port}",
            {"svc": echo.addr},
            noise_table("client", None if pattern == NK else pattern, **client_keys),
        ),
    )
    server = start(procs, server_impl, "server", server_cfg)
    wait_port(port)
    client = start(procs, client_impl, "client", client_cfg)
    wait_port(service, timeout=15)
    assert_roundtrip(service)
    assert_roundtrip(service, 100_000)  # a second visitor on another data channel
    for proc in (server, client):
        assert proc.popen.poll() is None
        assert "WARN ratui.transport" not in proc.output()


@pytest.mark.timeout(60)
def test_ratui_to_ratui_noise_1mib(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs)
    server.start()
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])


# ------------------------------------------------------------------ processes: failures
@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad_impl", ["ratui", pytest.param("rathole", marks=pytest.mark.interop)])
def test_wrong_key_is_logged_and_others_keep_working(tmp_path, procs, echo, bad_impl):
    server = NoiseServer(tmp_path, procs)
    proc = server.start()
    _, someone_elses = generate_keypair()
    bad = server.client(
        bad_impl, "other", echo.addr, noise_table("client", None, None, someone_elses)
    )
    proc.wait_for_output(
        "failed: decryption failed - is the client's remote_public_key this server's public key?",
        timeout=15,
    )
    assert re.search(
        r"WARN ratui\.transport: noise handshake with 127\.0\.0\.1:\d+ failed", proc.output()
    )
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])
    if bad_impl == "ratui":
        bad.wait_for_output(
            f"noise handshake with {server.addr} failed: the server closed the connection "
            "during the handshake - is remote_public_key the server's public key"
        )
    # The bad client keeps retrying and the server keeps refusing it, and serving.
    wait_for_count(proc, "decryption failed", 2)
    assert_roundtrip(server.ports["good"], 100_000)
    assert proc.popen.poll() is None


@pytest.mark.interop
@pytest.mark.timeout(60)
def test_ratui_client_with_wrong_key_against_rathole_server(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs, impl="rathole")
    server.start()
    _, someone_elses = generate_keypair()
    bad = server.client(
        "ratui", "other", echo.addr, noise_table("client", None, None, someone_elses)
    )
    bad.wait_for_output(
        f"cannot establish the control channel: noise handshake with {server.addr} failed: the "
        "server closed the connection during the handshake - is remote_public_key the "
        "server's public key",
        timeout=15,
    )
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])


@pytest.mark.timeout(60)
def test_plain_tcp_client_against_noise_server(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs)
    proc = server.start()
    bad = server.client("ratui", "other", echo.addr, "")
    proc.wait_for_output(
        "failed: the client sent a plain rathole Hello, not a Noise handshake: it uses type = "
        '"tcp"; both sides need type = "noise"',
        timeout=15,
    )
    bad.wait_for_output("cannot establish the control channel")
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_pattern_mismatch_is_named(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs)
    proc = server.start()
    server.client("ratui", "other", echo.addr, noise_table("client", XX))
    proc.wait_for_output(
        f"failed: handshake message 1 is 32 bytes where {NK} sends 48: is the client speaking "
        "Noise with the same pattern?",
        timeout=15,
    )
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])


@pytest.mark.timeout(60)
def test_garbage_and_silent_peers_do_not_block_the_server(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs)
    proc = server.start()
    # A peer that connects and says nothing: dropped after 5 s, and meanwhile everyone else
    # is served (the handshake runs on callbacks, not in the accept path).
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    silent_since = time.monotonic()
    half = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    half.sendall(b"\x30\x00" + bytes(20))  # the start of a message, then nothing
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as garbage:
        garbage.sendall(bytes.fromhex("deadbeef") * 50)
        assert_dropped(garbage)  # at once
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as tls:
        tls.sendall(bytes.fromhex("16030100c8010000c40303") + os.urandom(100))
        assert_dropped(tls)
    proc.wait_for_output(f"failed: handshake message 1 is 44510 bytes where {NK} sends 48")
    proc.wait_for_output('failed: the client speaks TLS, not Noise: it uses type = "tls"')

    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])
    assert time.monotonic() - silent_since < 5.0, "the tunnel came up only after the timeout"

    assert_dropped(silent)  # by the server's 5 s limit
    elapsed = time.monotonic() - silent_since
    assert 4.5 < elapsed < 8.0, elapsed
    assert_dropped(half)
    silent.close()
    half.close()
    proc.wait_for_output("failed: timed out after 5 s (0 of 2 handshake messages done)")
    assert_roundtrip(server.ports["good"], 100_000)
    assert proc.popen.poll() is None


@pytest.mark.timeout(30)
def test_server_without_private_key_refuses_nk(tmp_path, procs):
    port = free_port()
    cfg = write_config(
        tmp_path / "server.toml", server_toml(port, {"a": free_port()}, noise_table("server", None))
    )
    proc = procs.ratui("--server", str(cfg))
    assert proc.popen.wait(20) != 0
    out = proc.output()
    assert "[server.transport.noise] local_private_key is missing: with " + NK in out
    assert "`ratui --genkey`" in out
    assert "Traceback" not in out


@pytest.mark.timeout(60)
def test_server_without_private_key_runs_xx_with_a_random_key(tmp_path, procs, echo):
    port, service = free_port(), free_port()
    cfg = write_config(
        tmp_path / "server.toml", server_toml(port, {"svc": service}, noise_table("server", XX))
    )
    server = procs.ratui("--server", str(cfg))
    server.wait_for_output("local_private_key is not set: using a random key for this run")
    client_cfg = write_config(
        tmp_path / "client.toml",
        client_toml(f"127.0.0.1:{port}", {"svc": echo.addr}, noise_table("client", XX)),
    )
    procs.ratui("--client", str(client_cfg))
    wait_port(service, timeout=15)
    assert_roundtrip(service)


@pytest.mark.timeout(30)
def test_client_without_remote_key_says_so(tmp_path, procs, echo):
    server = NoiseServer(tmp_path, procs)
    server.start()
    bad = server.client("ratui", "other", echo.addr, noise_table("client", None))
    bad.wait_for_output(
        "[client.transport.noise] remote_public_key is missing: with "
        f"{NK} this side must know the server's public key before the handshake",
        timeout=15,
    )
    # Refused before it starts (rathole would retry forever with a handshake that cannot
    # succeed); the server goes on serving others.
    assert bad.popen.wait(10) == 1
    assert "Traceback" not in bad.output()
    assert server.proc is not None and server.proc.popen.poll() is None


@pytest.mark.timeout(30)
def test_bad_key_in_config_is_refused(tmp_path, procs):
    cfg = write_config(
        tmp_path / "client.toml",
        client_toml("127.0.0.1:1", {"a": "127.0.0.1:2"}, noise_table("client", None, None, "abc")),
    )
    proc = procs.ratui("--client", str(cfg))
    assert proc.popen.wait(20) != 0
    assert "remote_public_key" in proc.output()
    assert "Traceback" not in proc.output()


@pytest.mark.timeout(20)
def test_unusable_pattern_is_refused_at_start(tmp_path, procs):
    port = free_port()
    private, _ = generate_keypair()
    cfg = write_config(
        tmp_path / "server.toml",
        server_toml(
            port,
            {"a": free_port()},
            noise_table("server", "Noise_NK_448_ChaChaPoly_BLAKE2s", private),
        ),
    )
    proc = procs.ratui("--server", str(cfg))
    assert proc.popen.wait(15) != 0
    assert "only the 25519 curve works" in proc.output()
