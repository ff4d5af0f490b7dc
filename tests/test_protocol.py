"""Tests for ratui.engine.protocol against the verified bytes in PROTOCOL.md (sections 2, 8, 10)."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratui.engine import protocol as p
from ratui.engine.protocol import (
    Ack,
    Auth,
    ControlChannelHello,
    ControlCmd,
    DataChannelHello,
    DataCmd,
    MessageReader,
    ProtocolError,
    UdpFrameDecoder,
    UdpPacket,
)

# ----------------------------------------------------------------- hex copied from PROTOCOL.md

SHA_FOO1 = "bb4eca334f61af3b67b5d528907d30285151610200539302f4c8cabe66225b53"
NONCE = bytes(range(32))
SESSION_KEY = "16a4a3a85dc18fd5ab7176c61d88fb8fb975afa4078a00e3add4fc356affbf48"

HELLO_CONTROL_FOO1 = "0000000001bb4eca334f61af3b67b5d528907d30285151610200539302f4c8cabe66225b53"
HELLO_CONTROL_NONCE = "0000000001000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
HELLO_DATA = "010000000116a4a3a85dc18fd5ab7176c61d88fb8fb975afa4078a00e3add4fc356affbf48"
UDP_HDR_V4 = "0000000001020304e9140500"
UDP_HDR_V6 = "0100000020010db8000000000000000000000001bb012c01"
UDP_HDR_MAPPED = "0100000000000000000000000000ffff01020304e9140500"
UDP_FRAME_HELLO = "0c 00000000 01020304 e914 0500 68656c6c6f"  # §2.8 and §8


def h(s: str) -> bytes:
    """Hex (spaces allowed, as in the doc) to bytes."""
    return bytes.fromhex(s.replace(" ", ""))


FAST = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------- constants and digests


def test_constants() -> None:
    """Sizes of §2.2/§2.3 and rathole's UDP buffer."""
    assert (p.HASH_WIDTH, p.PROTO_V1) == (32, 1)
    assert (p.HELLO_SIZE, p.AUTH_SIZE, p.ACK_SIZE, p.CMD_SIZE) == (37, 32, 4, 4)
    assert p.UDP_BUFFER_SIZE == 2048
    assert p.MESSAGE_SIZES[ControlChannelHello] == p.MESSAGE_SIZES[DataChannelHello] == 37
    assert p.MESSAGE_SIZES[Auth] == 32
    assert p.MESSAGE_SIZES[Ack] == p.MESSAGE_SIZES[ControlCmd] == p.MESSAGE_SIZES[DataCmd] == 4


def test_service_digest_foo1() -> None:
    """sha256("foo1") from §2.4/§10."""
    assert p.service_digest("foo1") == h(SHA_FOO1)


def test_service_digest_is_plain_utf8_sha256() -> None:
    """No salt, prefix or newline; non-ASCII names hash their UTF-8 bytes."""
    assert p.service_digest("sérvice") == hashlib.sha256("sérvice".encode()).digest()
    assert p.service_digest("") == hashlib.sha256(b"").digest()


def test_auth_digest_example() -> None:
    """token "123", nonce 00..1f gives the session key in §2.5/§10 (token first)."""
    assert p.auth_digest("123", NONCE) == h(SESSION_KEY)
    # Order matters: nonce-first would be a different digest.
    assert hashlib.sha256(NONCE + b"123").digest() != h(SESSION_KEY)


# ----------------------------------------------------------------- Hello


def test_encode_hello_examples() -> None:
    """All three Hello examples of §2.4 / §8 / §10, byte for byte."""
    assert p.encode_hello(ControlChannelHello(p.service_digest("foo1"))) == h(HELLO_CONTROL_FOO1)
    assert p.encode_hello(ControlChannelHello(NONCE)) == h(HELLO_CONTROL_NONCE)
    key = p.auth_digest("123", NONCE)
    assert p.encode_hello(DataChannelHello(key)) == h(HELLO_DATA)
    for hx in (HELLO_CONTROL_FOO1, HELLO_CONTROL_NONCE, HELLO_DATA):
        assert len(h(hx)) == 37


def test_decode_hello_examples() -> None:
    """Decoding the doc's bytes yields the right variant and payload."""
    assert p.decode_hello(h(HELLO_CONTROL_FOO1)) == ControlChannelHello(h(SHA_FOO1), 1)
    assert p.decode_hello(h(HELLO_CONTROL_NONCE)) == ControlChannelHello(NONCE)
    data = p.decode_hello(h(HELLO_DATA))
    assert isinstance(data, DataChannelHello)
    assert data.session_key == h(SESSION_KEY)
    assert data.version == 1


def test_decode_hello_accepts_bytearray_and_memoryview() -> None:
    """Any bytes-like input works and the digest comes back as bytes."""
    raw = h(HELLO_DATA)
    for form in (bytearray(raw), memoryview(raw)):
        got = p.decode_hello(form)
        assert got == DataChannelHello(h(SESSION_KEY))
        assert type(got.session_key) is bytes


@pytest.mark.parametrize("version", [0, 2, 255])
@pytest.mark.parametrize("tag", [0, 1])
def test_decode_hello_version_mismatch(tag: int, version: int) -> None:
    """Either variant with a version other than 1 is rejected with rathole's wording."""
    raw = tag.to_bytes(4, "little") + bytes([version]) + NONCE
    with pytest.raises(ProtocolError) as exc:
        p.decode_hello(raw)
    assert str(exc.value) == f"Protocol version mismatched. Expected 1, got {version}."


def test_encode_hello_other_version_round_trips_to_mismatch() -> None:
    """Encoding a V0 hello is allowed (for tests of peers); decoding it fails."""
    raw = p.encode_hello(ControlChannelHello(NONCE, version=0))
    assert raw[4] == 0
    with pytest.raises(ProtocolError, match="Expected 1, got 0"):
        p.decode_hello(raw)


def test_decode_hello_bad_tag() -> None:
    """An unknown Hello tag is reported before the version is looked at."""
    raw = (2).to_bytes(4, "little") + b"\x07" + NONCE
    with pytest.raises(ProtocolError) as exc:
        p.decode_hello(raw)
    assert str(exc.value) == "invalid Hello variant index 2, expected 0 <= i < 2"


@pytest.mark.parametrize("size", [0, 36, 38, 74])
def test_decode_hello_wrong_length(size: int) -> None:
    """decode_hello takes exactly 37 bytes."""
    with pytest.raises(ProtocolError, match="37 bytes"):
        p.decode_hello(bytes(size))


def test_hello_values_validate() -> None:
    """Digests must be 32 bytes and versions must fit in a u8; bytes-likes are coerced."""
    with pytest.raises(ValueError):
        ControlChannelHello(b"short")
    with pytest.raises(ValueError):
        DataChannelHello(bytes(33))
    with pytest.raises(ValueError):
        ControlChannelHello(NONCE, version=256)
    with pytest.raises(TypeError):
        ControlChannelHello("x" * 32)  # type: ignore[arg-type]
    hello = ControlChannelHello(bytearray(NONCE))
    assert type(hello.digest) is bytes
    assert hello == ControlChannelHello(NONCE)
    assert hash(hello) == hash(ControlChannelHello(NONCE))
    with pytest.raises(AttributeError):
        hello.digest = NONCE  # type: ignore[misc]


def test_encode_hello_rejects_non_hello() -> None:
    """encode_hello refuses Auth or other objects."""
    with pytest.raises(TypeError):
        p.encode_hello(Auth(NONCE))  # type: ignore[arg-type]


@FAST
@given(digest=st.binary(min_size=32, max_size=32), data=st.booleans())
def test_hello_round_trip(digest: bytes, data: bool) -> None:
    """decode(encode(x)) == x for both variants; the tag is byte 0."""
    hello: p.Hello = DataChannelHello(digest) if data else ControlChannelHello(digest)
    raw = p.encode_hello(hello)
    assert len(raw) == 37
    assert raw[:5] == (b"\x01" if data else b"\x00") + b"\x00\x00\x00\x01"
    assert p.decode_hello(raw) == hello


# ----------------------------------------------------------------- Auth


def test_auth_example() -> None:
    """Auth is the 32 raw digest bytes with no tag (§2.6)."""
    auth = Auth(p.auth_digest("123", NONCE))
    assert p.encode_auth(auth) == h(SESSION_KEY)
    assert p.decode_auth(h(SESSION_KEY)) == auth


@pytest.mark.parametrize("size", [0, 4, 31, 33, 37])
def test_decode_auth_wrong_length(size: int) -> None:
    """decode_auth takes exactly 32 bytes."""
    with pytest.raises(ProtocolError, match="32 bytes"):
        p.decode_auth(bytes(size))


# ----------------------------------------------------------------- Ack and commands

ENUM_CASES: list[tuple[type, Callable, Callable, str, list[tuple[object, str]]]] = [
    (
        Ack,
        p.encode_ack,
        p.decode_ack,
        "Ack",
        [
            (Ack.OK, "00000000"),
            (Ack.SERVICE_NOT_EXIST, "01000000"),
            (Ack.AUTH_FAILED, "02000000"),
        ],
    ),
    (
        ControlCmd,
        p.encode_control_cmd,
        p.decode_control_cmd,
        "ControlChannelCmd",
        [(ControlCmd.CREATE_DATA_CHANNEL, "00000000"), (ControlCmd.HEARTBEAT, "01000000")],
    ),
    (
        DataCmd,
        p.encode_data_cmd,
        p.decode_data_cmd,
        "DataChannelCmd",
        [(DataCmd.START_FORWARD_TCP, "00000000"), (DataCmd.START_FORWARD_UDP, "01000000")],
    ),
]


@pytest.mark.parametrize(("enum", "enc", "dec", "name", "cases"), ENUM_CASES)
def test_enum_messages_match_table(
    enum: type, enc: Callable, dec: Callable, name: str, cases: list[tuple[object, str]]
) -> None:
    """Every row of the §2.7 table, both ways, and every member is covered."""
    assert {member for member, _ in cases} == set(enum)
    for member, hx in cases:
        assert enc(member) == h(hx)
        got = dec(h(hx))
        assert got is member


@pytest.mark.parametrize(("enum", "enc", "dec", "name", "cases"), ENUM_CASES)
def test_enum_messages_unknown_variant(
    enum: type, enc: Callable, dec: Callable, name: str, cases: list[tuple[object, str]]
) -> None:
    """Unknown indexes, including huge ones, give the bincode-like message."""
    n = len(enum)
    for index in (n, n + 1, 0xFFFFFFFF):
        with pytest.raises(ProtocolError) as exc:
            dec(index.to_bytes(4, "little"))
        assert str(exc.value) == f"invalid {name} variant index {index}, expected 0 <= i < {n}"


def test_ack_3_message_matches_doc() -> None:
    """§10: Ack from 03000000 fails, naming index 3 and the bound 3."""
    with pytest.raises(ProtocolError, match=r"invalid Ack variant index 3, expected 0 <= i < 3"):
        p.decode_ack(h("03000000"))


@pytest.mark.parametrize("dec", [p.decode_ack, p.decode_control_cmd, p.decode_data_cmd])
@pytest.mark.parametrize("size", [0, 3, 5, 8])
def test_enum_decoders_wrong_length(dec: Callable, size: int) -> None:
    """The 4-byte decoders take exactly 4 bytes."""
    with pytest.raises(ProtocolError, match="4 bytes"):
        dec(bytes(size))


def test_ack_messages() -> None:
    """Ack texts from §2.7."""
    assert Ack.OK.message == "Ok"
    assert Ack.SERVICE_NOT_EXIST.message == "Service not exist"
    assert Ack.AUTH_FAILED.message == "Incorrect token"


def test_encoders_accept_plain_ints_and_reject_unknown() -> None:
    """IntEnum values may be passed as ints; out-of-range ints are refused."""
    assert p.encode_ack(2) == h("02000000")  # type: ignore[arg-type]
    assert p.encode_control_cmd(1) == h("01000000")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.encode_ack(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        p.encode_data_cmd(2)  # type: ignore[arg-type]


# ----------------------------------------------------------------- MessageReader

TRAILER = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 3


def client_view_of_control() -> tuple[bytes, list[object]]:
    """S->C bytes of the §8 control channel and the messages the client expects."""
    expected: list[object] = [
        ControlChannelHello(NONCE),
        Ack.OK,
        *[ControlCmd.CREATE_DATA_CHANNEL] * 8,
        ControlCmd.HEARTBEAT,
    ]
    wire = h(HELLO_CONTROL_NONCE) + h("00000000") + h("00000000") * 8 + h("01000000")
    return wire, expected


def test_transcript_bytes_match_section_8() -> None:
    """Our encoders produce the §8 transcript exactly, in both directions."""
    wire, _ = client_view_of_control()
    built = (
        p.encode_hello(ControlChannelHello(NONCE))
        + p.encode_ack(Ack.OK)
        + p.encode_control_cmd(ControlCmd.CREATE_DATA_CHANNEL) * 8
        + p.encode_control_cmd(ControlCmd.HEARTBEAT)
    )
    assert built == wire
    assert len(wire) == 37 + 4 + 32 + 4
    c2s = p.encode_hello(ControlChannelHello(p.service_digest("foo1"))) + p.encode_auth(
        Auth(p.auth_digest("123", NONCE))
    )
    assert c2s == h(HELLO_CONTROL_FOO1) + h(SESSION_KEY)
    data_c2s = p.encode_hello(DataChannelHello(p.auth_digest("123", NONCE)))
    assert data_c2s == h(HELLO_DATA)
    assert p.encode_data_cmd(DataCmd.START_FORWARD_TCP) == h("00000000")
    assert p.encode_data_cmd(DataCmd.START_FORWARD_UDP) == h("01000000")


def splits(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Arbitrary partition of ``data`` into chunks (empty chunks included)."""

    def cut(points: list[int]) -> list[bytes]:
        bounds = [0, *sorted(points), len(data)]
        return [data[a:b] for a, b in pairwise(bounds)]

    return st.lists(st.integers(0, len(data)), max_size=40).map(cut)


def drive(
    chunks: list[bytes], steps: list[Callable[[MessageReader], object]]
) -> tuple[list[object], bytes]:
    """Feed chunks one at a time, popping the scripted messages as soon as possible.

    After the last scripted message everything else is raw bytes: first take_rest(), then
    the later chunks directly, as a forwarding loop would do.
    """
    reader = MessageReader()
    got: list[object] = []
    raw = bytearray()
    for chunk in chunks:
        if len(got) == len(steps):
            raw += chunk
            continue
        reader.feed(chunk)
        while len(got) < len(steps):
            before = len(reader)
            msg = steps[len(got)](reader)
            if msg is None:
                assert len(reader) == before
                break
            got.append(msg)
        if len(got) == len(steps):
            raw += reader.take_rest()
            assert len(reader) == 0
    return got, bytes(raw)


@FAST
@given(data=st.data())
def test_reader_control_transcript_any_split(data: st.DataObject) -> None:
    """Client side of the control channel: identical messages for every split."""
    wire, expected = client_view_of_control()
    chunks = data.draw(splits(wire))
    steps = [MessageReader.next_hello, MessageReader.next_ack] + [
        MessageReader.next_control_cmd
    ] * 9
    got, rest = drive(chunks, steps)
    assert got == expected
    assert rest == b""


@FAST
@given(data=st.data())
def test_reader_server_side_control_any_split(data: st.DataObject) -> None:
    """Server side: client Hello then Auth, whatever the split."""
    wire = h(HELLO_CONTROL_FOO1) + h(SESSION_KEY)
    got, rest = drive(data.draw(splits(wire)), [MessageReader.next_hello, MessageReader.next_auth])
    assert got == [ControlChannelHello(h(SHA_FOO1)), Auth(h(SESSION_KEY))]
    assert rest == b""


@FAST
@given(data=st.data())
def test_reader_data_channel_any_split(data: st.DataObject) -> None:
    """Data channel: the server reads the Hello; the client reads StartForwardTcp + raw bytes."""
    hello_chunks = data.draw(splits(h(HELLO_DATA)))
    got, rest = drive(hello_chunks, [MessageReader.next_hello])
    assert got == [DataChannelHello(h(SESSION_KEY))]
    assert rest == b""

    wire = p.encode_data_cmd(DataCmd.START_FORWARD_TCP) + TRAILER
    got, rest = drive(data.draw(splits(wire)), [MessageReader.next_data_cmd])
    assert got == [DataCmd.START_FORWARD_TCP]
    assert rest == TRAILER


def test_reader_partial_then_complete() -> None:
    """None until the last byte arrives; len tracks buffered bytes."""
    reader = MessageReader()
    raw = h(HELLO_DATA)
    for i, byte in enumerate(raw[:-1]):
        reader.feed(bytes([byte]))
        assert len(reader) == i + 1
        assert reader.next_hello() is None
    reader.feed(raw[-1:] + b"\x01\x00")
    assert reader.next_hello() == DataChannelHello(h(SESSION_KEY))
    assert len(reader) == 2
    assert reader.next_ack() is None
    assert reader.take_rest() == b"\x01\x00"
    assert len(reader) == 0
    assert reader.take_rest() == b""


def test_reader_errors() -> None:
    """Malformed messages raise ProtocolError with the same text as the plain decoders."""
    reader = MessageReader()
    reader.feed(h("0000000002") + NONCE)
    with pytest.raises(ProtocolError, match="Expected 1, got 2"):
        reader.next_hello()
    for method, name, n in [
        (MessageReader.next_ack, "Ack", 3),
        (MessageReader.next_control_cmd, "ControlChannelCmd", 2),
        (MessageReader.next_data_cmd, "DataChannelCmd", 2),
    ]:
        reader = MessageReader()
        reader.feed(b"\x09\x00\x00\x00")
        with pytest.raises(ProtocolError) as exc:
            method(reader)
        assert str(exc.value) == f"invalid {name} variant index 9, expected 0 <= i < {n}"


@pytest.mark.timeout(20)
def test_reader_many_small_messages_is_linear() -> None:
    """2 MiB of 4-byte commands in one feed, popped one by one: quadratic copying would time out.

    Afterwards the reader still works and holds no stale bytes.
    """
    count = 512 * 1024
    reader = MessageReader()
    reader.feed(p.encode_control_cmd(ControlCmd.HEARTBEAT) * count)
    reader.feed(p.encode_ack(Ack.AUTH_FAILED))
    seen = 0
    while len(reader) > 4:
        assert reader.next_control_cmd() is ControlCmd.HEARTBEAT
        seen += 1
    assert seen == count
    assert reader.next_ack() is Ack.AUTH_FAILED
    assert len(reader) == 0
    reader.feed(b"\x00\x00")
    assert reader.next_data_cmd() is None
    reader.feed(b"\x00\x00")
    assert reader.next_data_cmd() is DataCmd.START_FORWARD_TCP


@pytest.mark.timeout(20)
def test_reader_many_tiny_feeds_is_linear() -> None:
    """One byte per feed with a pop attempt each time: still fast and correct."""
    reader = MessageReader()
    raw = p.encode_control_cmd(ControlCmd.CREATE_DATA_CHANNEL) * 50_000
    got = 0
    for i in range(len(raw)):
        reader.feed(raw[i : i + 1])
        if reader.next_control_cmd() is not None:
            got += 1
    assert got == 50_000
    assert len(reader) == 0


READER_METHODS = [
    MessageReader.next_hello,
    MessageReader.next_auth,
    MessageReader.next_ack,
    MessageReader.next_control_cmd,
    MessageReader.next_data_cmd,
]


@FAST
@given(
    chunks=st.lists(st.binary(max_size=80), max_size=12),
    picks=st.lists(st.integers(0, len(READER_METHODS) - 1), min_size=1, max_size=30),
)
def test_reader_garbage(chunks: list[bytes], picks: list[int]) -> None:
    """Arbitrary bytes and arbitrary pops: only ProtocolError may escape, bytes are conserved."""
    reader = MessageReader()
    total = sum(map(len, chunks))
    consumed = 0
    for chunk in chunks:
        reader.feed(chunk)
    for pick in picks:
        before = len(reader)
        try:
            msg = READER_METHODS[pick](reader)
        except ProtocolError:
            assert len(reader) < before
            consumed += before - len(reader)
            continue
        if msg is None:
            assert len(reader) == before
        else:
            consumed += before - len(reader)
            assert before - len(reader) in (37, 32, 4)
    assert consumed + len(reader.take_rest()) == total


# ----------------------------------------------------------------- garbage into plain decoders


@FAST
@given(raw=st.binary(max_size=64))
def test_decoders_garbage(raw: bytes) -> None:
    """Every fixed decoder on arbitrary bytes: a value or ProtocolError, nothing else."""
    for dec, size in [
        (p.decode_hello, 37),
        (p.decode_auth, 32),
        (p.decode_ack, 4),
        (p.decode_control_cmd, 4),
        (p.decode_data_cmd, 4),
    ]:
        try:
            value = dec(raw)
        except ProtocolError as exc:
            assert str(exc)
            continue
        assert len(raw) == size
        assert value is not None


@FAST
@given(raw=st.binary(min_size=37, max_size=37))
def test_decode_hello_garbage_exact_size(raw: bytes) -> None:
    """37 random bytes decode iff tag in {0,1} and version == 1, and then re-encode exactly."""
    valid = raw[1:4] == b"\0\0\0" and raw[0] in (0, 1) and raw[4] == 1
    try:
        hello = p.decode_hello(raw)
    except ProtocolError:
        assert not valid
    else:
        assert valid
        assert p.encode_hello(hello) == raw


@FAST
@given(raw=st.binary(min_size=4, max_size=4))
def test_enum_decoders_garbage_exact_size(raw: bytes) -> None:
    """4 random bytes decode iff the LE index is in range, and then re-encode exactly."""
    index = int.from_bytes(raw, "little")
    for dec, enc, n in [
        (p.decode_ack, p.encode_ack, 3),
        (p.decode_control_cmd, p.encode_control_cmd, 2),
        (p.decode_data_cmd, p.encode_data_cmd, 2),
    ]:
        try:
            value = dec(raw)
        except ProtocolError:
            assert index >= n
        else:
            assert index < n
            assert enc(value) == raw


# ----------------------------------------------------------------- UDP frames


def test_udp_v4_example() -> None:
    """1.2.3.4:5353 "hello" is the 18-byte frame of §2.8 and §8."""
    pkt = UdpPacket(("1.2.3.4", 5353), b"hello")
    raw = p.encode_udp_packet(pkt)
    assert raw == h(UDP_FRAME_HELLO)
    assert len(raw) == 18
    assert raw[1:13] == h(UDP_HDR_V4)
    assert UdpFrameDecoder().feed(raw) == [pkt]


def test_udp_v6_example() -> None:
    """[2001:db8::1]:443 with 300 bytes: hdr_len 0x18 and the §10 header."""
    payload = bytes(i % 251 for i in range(300))
    pkt = UdpPacket(("2001:db8::1", 443), payload)
    raw = p.encode_udp_packet(pkt)
    assert raw == b"\x18" + h(UDP_HDR_V6) + payload
    assert UdpFrameDecoder().feed(raw) == [pkt]


def test_udp_v6_scope_dropped() -> None:
    """§10: a scope id does not change the header; it is not sent."""
    scoped = p.encode_udp_packet(UdpPacket(("2001:db8::1%7", 443), bytes(300)))
    assert scoped[:25] == b"\x18" + h(UDP_HDR_V6)


def test_udp_v4_mapped_is_v6() -> None:
    """::ffff:1.2.3.4 is sent as V6 (24-byte header) and decodes back to the same text."""
    pkt = UdpPacket(("::ffff:1.2.3.4", 5353), b"hello")
    raw = p.encode_udp_packet(pkt)
    assert raw == b"\x18" + h(UDP_HDR_MAPPED) + b"hello"
    assert UdpFrameDecoder().feed(raw) == [pkt]


def test_udp_encode_accepts_recvfrom_4_tuple() -> None:
    """An IPv6 recvfrom address (host, port, flowinfo, scope) encodes like the 2-tuple."""
    four = UdpPacket(("2001:db8::1", 443, 0, 0), b"x")  # type: ignore[arg-type]
    assert p.encode_udp_packet(four) == p.encode_udp_packet(UdpPacket(("2001:db8::1", 443), b"x"))


def test_udp_empty_and_max_payload() -> None:
    """Payloads of 0 and 65535 bytes work; 65536 is a ValueError."""
    for size in (0, 65535):
        pkt = UdpPacket(("10.0.0.1", 0), b"\xab" * size)
        raw = p.encode_udp_packet(pkt)
        assert raw[11:13] == size.to_bytes(2, "little")
        assert UdpFrameDecoder().feed(raw) == [pkt]
    with pytest.raises(ValueError):
        p.encode_udp_packet(UdpPacket(("10.0.0.1", 1), bytes(65536)))


@pytest.mark.parametrize(
    "addr", [("example.com", 53), ("1.2.3", 53), ("1.2.3.4", -1), ("1.2.3.4", 65536), ("", 1)]
)
def test_udp_encode_rejects_bad_addresses(addr: tuple[str, int]) -> None:
    """Hostnames, malformed IPs and out-of-range ports are ValueErrors."""
    with pytest.raises(ValueError):
        p.encode_udp_packet(UdpPacket(addr, b""))


def test_udp_longer_header_is_accepted() -> None:
    """A header with trailing bytes inside hdr_len is accepted, as in rathole."""
    frame = b"\x10" + h(UDP_HDR_V4) + b"\xde\xad\xbe\xef" + b"hello"
    v6 = b"\x1a" + h(UDP_HDR_MAPPED) + b"\x00\x00" + b"hello"
    assert UdpFrameDecoder().feed(frame + v6) == [
        UdpPacket(("1.2.3.4", 5353), b"hello"),
        UdpPacket(("::ffff:1.2.3.4", 5353), b"hello"),
    ]


@pytest.mark.parametrize(
    ("frame", "pattern"),
    [
        (b"\x0b" + h(UDP_HDR_V4)[:11], "too short"),
        (b"\x00", "too short"),
        (b"\x0c" + h(UDP_HDR_MAPPED)[:12], "too short for an IPv6"),
        (b"\x17" + h(UDP_HDR_MAPPED)[:23], "too short for an IPv6"),
        (b"\x0c" + h("02000000") + bytes(8), "expected `V4` or `V6`"),
        (b"\x18" + h("ffffffff") + bytes(20), "expected `V4` or `V6`"),
    ],
)
def test_udp_malformed_frames(frame: bytes, pattern: str) -> None:
    """Short headers and unknown address tags raise ProtocolError; the decoder stays dead."""
    dec = UdpFrameDecoder()
    with pytest.raises(ProtocolError, match=pattern):
        dec.feed(frame)
    with pytest.raises(ProtocolError, match=pattern):
        dec.feed(p.encode_udp_packet(UdpPacket(("1.2.3.4", 1), b"ok")))


def test_udp_good_packets_before_error_are_lost_but_error_raised() -> None:
    """A bad frame after good ones still raises; the stream is dead (rathole drops it)."""
    good = p.encode_udp_packet(UdpPacket(("1.2.3.4", 1), b"ok"))
    dec = UdpFrameDecoder()
    assert dec.feed(good) == [UdpPacket(("1.2.3.4", 1), b"ok")]
    with pytest.raises(ProtocolError):
        dec.feed(good + b"\x05")


def test_udp_max_payload_limit() -> None:
    """A payload length over max_payload is rejected once the header is complete."""
    dec = UdpFrameDecoder(max_payload=2048)
    ok = p.encode_udp_packet(UdpPacket(("1.2.3.4", 9), bytes(2048)))
    assert dec.feed(ok) == [UdpPacket(("1.2.3.4", 9), bytes(2048))]
    big = p.encode_udp_packet(UdpPacket(("1.2.3.4", 9), bytes(2049)))
    with pytest.raises(ProtocolError, match="2049 exceeds the limit of 2048"):
        dec.feed(big[:13])  # header only: fails before the payload arrives
    with pytest.raises(ValueError):
        UdpFrameDecoder(max_payload=70000)


def test_udp_partial_frames_return_nothing() -> None:
    """Bytes are held until a frame completes."""
    raw = p.encode_udp_packet(UdpPacket(("2001:db8::1", 443), b"abc"))
    dec = UdpFrameDecoder()
    for byte in raw[:-1]:
        assert dec.feed(bytes([byte])) == []
    assert len(dec) == len(raw) - 1
    assert dec.feed(raw[-1:]) == [UdpPacket(("2001:db8::1", 443), b"abc")]
    assert len(dec) == 0


ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: socket.inet_ntop(socket.AF_INET6, a.packed))
udp_packets = st.builds(
    UdpPacket,
    addr=st.tuples(st.one_of(ipv4, ipv6), st.integers(0, 65535)),
    data=st.binary(max_size=3000),
)


@FAST
@given(data=st.data(), packets=st.lists(udp_packets, max_size=8))
def test_udp_round_trip_any_split(data: st.DataObject, packets: list[UdpPacket]) -> None:
    """A stream of frames split anywhere decodes to the same packets in order."""
    wire = b"".join(map(p.encode_udp_packet, packets))
    dec = UdpFrameDecoder()
    out: list[UdpPacket] = []
    for chunk in data.draw(splits(wire)):
        out += dec.feed(chunk)
    assert out == packets
    assert len(dec) == 0


@FAST
@given(
    host=st.ip_addresses().map(str),
    port=st.integers(0, 65535),
    payload=st.binary(max_size=64),
)
def test_udp_any_ip_text_round_trips_to_same_address(host: str, port: int, payload: bytes) -> None:
    """Any textual IP (ipaddress's spelling) decodes to an equal address and header size."""
    raw = p.encode_udp_packet(UdpPacket((host, port), payload))
    ip = ipaddress.ip_address(host)
    assert raw[0] == (12 if ip.version == 4 else 24)
    (pkt,) = UdpFrameDecoder().feed(raw)
    assert ipaddress.ip_address(pkt.addr[0]) == ip
    assert pkt.addr[1] == port
    assert pkt.data == payload
    assert p.encode_udp_packet(pkt) == raw


@FAST
@given(
    chunks=st.lists(st.binary(max_size=300), max_size=10),
    max_payload=st.sampled_from([0, 5, 2048, 65535]),
)
def test_udp_decoder_garbage(chunks: list[bytes], max_payload: int) -> None:
    """Arbitrary bytes: packets or ProtocolError only, and once broken always broken."""
    dec = UdpFrameDecoder(max_payload)
    broken = False
    for chunk in chunks:
        try:
            pkts = dec.feed(chunk)
        except ProtocolError:
            broken = True
            continue
        assert not broken
        for pkt in pkts:
            assert len(pkt.data) <= max_payload
            assert 0 <= pkt.addr[1] <= 65535
            assert p.encode_udp_packet(pkt)  # decoded addresses are always encodable


@FAST
@given(
    packets=st.lists(udp_packets, min_size=1, max_size=4),
    junk=st.binary(min_size=1, max_size=40),
    data=st.data(),
)
def test_udp_garbage_after_valid_frames(
    packets: list[UdpPacket], junk: bytes, data: st.DataObject
) -> None:
    """Valid frames followed by junk: the valid ones come out first, split any way."""
    wire = b"".join(map(p.encode_udp_packet, packets))
    dec = UdpFrameDecoder()
    out: list[UdpPacket] = []
    for chunk in data.draw(splits(wire)):
        out += dec.feed(chunk)
    assert out == packets
    try:
        extra = dec.feed(junk)
    except ProtocolError:
        return
    for pkt in extra:
        assert isinstance(pkt, UdpPacket)


@pytest.mark.timeout(20)
def test_udp_decoder_is_linear() -> None:
    """Thousands of frames in one feed and a big frame byte by byte finish quickly."""
    pkt = UdpPacket(("192.0.2.7", 4000), bytes(100))
    dec = UdpFrameDecoder()
    out = dec.feed(p.encode_udp_packet(pkt) * 20_000)
    assert len(out) == 20_000
    assert all(x == pkt for x in out[:10])
    big = p.encode_udp_packet(UdpPacket(("192.0.2.7", 1), bytes(range(256)) * 200))
    got: list[UdpPacket] = []
    for i in range(0, len(big), 7):
        got += dec.feed(big[i : i + 7])
    assert [len(x.data) for x in got] == [51200]
