"""rathole v0.5 wire messages: encoding, decoding and incremental readers.

Everything here is pure: no I/O, no asyncio, no clock. The byte layouts follow
PROTOCOL.md section 2 (bincode 1.x with fixint encoding, little endian):

* ``Hello`` is 37 bytes: u32 LE variant tag, u8 protocol version, 32-byte digest.
* ``Auth`` is the bare 32-byte digest.
* ``Ack``, ``ControlCmd`` and ``DataCmd`` are a u32 LE variant tag (4 bytes).
* A UDP data channel carries frames: u8 header length, header
  (u32 LE address tag, IP octets, u16 LE port, u16 LE payload length), payload.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import TypeAlias

__all__ = [
    "ACK_SIZE",
    "AUTH_SIZE",
    "CMD_SIZE",
    "HASH_WIDTH",
    "HELLO_SIZE",
    "MESSAGE_SIZES",
    "PROTO_V1",
    "UDP_BUFFER_SIZE",
    "UDP_HEADER_V4_SIZE",
    "UDP_HEADER_V6_SIZE",
    "UDP_MAX_PAYLOAD",
    "Ack",
    "Auth",
    "ControlChannelHello",
    "ControlCmd",
    "DataChannelHello",
    "DataCmd",
    "Hello",
    "MessageReader",
    "ProtocolError",
    "UdpFrameDecoder",
    "UdpPacket",
    "auth_digest",
    "decode_ack",
    "decode_auth",
    "decode_control_cmd",
    "decode_data_cmd",
    "decode_hello",
    "encode_ack",
    "encode_auth",
    "encode_control_cmd",
    "encode_data_cmd",
    "encode_hello",
    "encode_udp_packet",
    "service_digest",
]

HASH_WIDTH = 32
PROTO_V1 = 1
HELLO_SIZE = 37
AUTH_SIZE = 32
ACK_SIZE = 4
CMD_SIZE = 4
UDP_BUFFER_SIZE = 2048  # rathole's datagram buffer: longer datagrams are cut short there
UDP_HEADER_V4_SIZE = 12
UDP_HEADER_V6_SIZE = 24
UDP_MAX_PAYLOAD = 0xFFFF

_U32 = struct.Struct("<I")
_HELLO = struct.Struct("<IB32s")
_UDP_V4 = struct.Struct("<BI4sHH")  # hdr_len, tag, ip, port, len
_UDP_V6 = struct.Struct("<BI16sHH")
_UDP_V4_BODY = struct.Struct("<4sHH")  # after the tag
_UDP_V6_BODY = struct.Struct("<16sHH")
_TAG_V4 = 0
_TAG_V6 = 1

# A reader never holds more than this many consumed bytes before compacting.
_COMPACT_THRESHOLD = 64 * 1024


class ProtocolError(Exception):
    """Raised for every malformed or unexpected message on the wire."""


def service_digest(name: str) -> bytes:
    """SHA-256 of the service name's UTF-8 bytes (the control-channel Hello digest)."""
    return hashlib.sha256(name.encode("utf-8")).digest()


def auth_digest(token: str, nonce: bytes) -> bytes:
    """SHA-256(token bytes || nonce): the Auth digest, which is also the session key."""
    return hashlib.sha256(token.encode("utf-8") + bytes(nonce)).digest()


def _digest_bytes(value: bytes, what: str) -> bytes:
    """Coerce a bytes-like digest to ``bytes`` and check that it is 32 bytes long."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) != HASH_WIDTH:
        raise ValueError(f"{what} must be {HASH_WIDTH} bytes, got {len(value)}")
    return value


def _check_version(version: int) -> None:
    """A protocol version is a u8 on the wire."""
    if not 0 <= version <= 0xFF:
        raise ValueError(f"protocol version must fit in a u8, got {version}")


@dataclass(frozen=True, slots=True)
class ControlChannelHello:
    """Hello tag 0: service digest (client to server) or nonce (server to client)."""

    digest: bytes
    version: int = PROTO_V1

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _digest_bytes(self.digest, "digest"))
        _check_version(self.version)


@dataclass(frozen=True, slots=True)
class DataChannelHello:
    """Hello tag 1: the session key that opens a data channel."""

    session_key: bytes
    version: int = PROTO_V1

    def __post_init__(self) -> None:
        object.__setattr__(self, "session_key", _digest_bytes(self.session_key, "session_key"))
        _check_version(self.version)


Hello: TypeAlias = ControlChannelHello | DataChannelHello


@dataclass(frozen=True, slots=True)
class Auth:
    """The client's answer to the nonce: sha256(token || nonce), 32 raw bytes."""

    digest: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", _digest_bytes(self.digest, "digest"))


class Ack(IntEnum):
    """Server's answer to a control-channel handshake."""

    OK = 0
    SERVICE_NOT_EXIST = 1
    AUTH_FAILED = 2

    @property
    def message(self) -> str:
        """The text rathole shows for this Ack."""
        return _ACK_MESSAGES[self]


_ACK_MESSAGES = {
    Ack.OK: "Ok",
    Ack.SERVICE_NOT_EXIST: "Service not exist",
    Ack.AUTH_FAILED: "Incorrect token",
}


class ControlCmd(IntEnum):
    """Commands the server sends on a control channel."""

    CREATE_DATA_CHANNEL = 0
    HEARTBEAT = 1


class DataCmd(IntEnum):
    """The command that starts forwarding on a pooled data channel."""

    START_FORWARD_TCP = 0
    START_FORWARD_UDP = 1


MESSAGE_SIZES: dict[type, int] = {
    ControlChannelHello: HELLO_SIZE,
    DataChannelHello: HELLO_SIZE,
    Auth: AUTH_SIZE,
    Ack: ACK_SIZE,
    ControlCmd: CMD_SIZE,
    DataCmd: CMD_SIZE,
}

_ACKS = tuple(Ack)
_CONTROL_CMDS = tuple(ControlCmd)
_DATA_CMDS = tuple(DataCmd)


# --------------------------------------------------------------------------- encoding


def encode_hello(h: Hello) -> bytes:
    """Encode either Hello variant as 37 bytes."""
    if isinstance(h, ControlChannelHello):
        return _HELLO.pack(0, h.version, h.digest)
    if isinstance(h, DataChannelHello):
        return _HELLO.pack(1, h.version, h.session_key)
    raise TypeError(f"expected a Hello, not {type(h).__name__}")


def encode_auth(a: Auth) -> bytes:
    """Encode Auth as its 32 raw digest bytes (no tag)."""
    return a.digest


def encode_ack(a: Ack) -> bytes:
    """Encode an Ack as a 4-byte little-endian variant tag."""
    return _U32.pack(Ack(a))


def encode_control_cmd(c: ControlCmd) -> bytes:
    """Encode a control-channel command as a 4-byte little-endian variant tag."""
    return _U32.pack(ControlCmd(c))


def encode_data_cmd(c: DataCmd) -> bytes:
    """Encode a data-channel command as a 4-byte little-endian variant tag."""
    return _U32.pack(DataCmd(c))


# --------------------------------------------------------------------------- decoding


def _check_size(b: bytes | bytearray | memoryview, size: int, what: str) -> None:
    """Fixed-size decoders take exactly one message."""
    if len(b) != size:
        raise ProtocolError(f"{what} must be {size} bytes, got {len(b)}")


def _variant_error(what: str, index: int, count: int) -> ProtocolError:
    return ProtocolError(f"invalid {what} variant index {index}, expected 0 <= i < {count}")


def _hello_at(buf: bytes | bytearray | memoryview, off: int) -> Hello:
    """Decode a Hello from 37 bytes known to be available at ``off``."""
    tag, version, digest = _HELLO.unpack_from(buf, off)
    if tag > 1:
        raise _variant_error("Hello", tag, 2)
    if version != PROTO_V1:
        raise ProtocolError(f"Protocol version mismatched. Expected {PROTO_V1}, got {version}.")
    if tag == 0:
        return ControlChannelHello(digest, version)
    return DataChannelHello(digest, version)


def _tag_at(buf: bytes | bytearray | memoryview, off: int, table: tuple, what: str) -> IntEnum:
    """Decode a 4-byte variant tag at ``off`` into a member of ``table``."""
    (index,) = _U32.unpack_from(buf, off)
    if index >= len(table):
        raise _variant_error(what, index, len(table))
    return table[index]


def decode_hello(b: bytes) -> Hello:
    """Decode exactly 37 bytes into a Hello; rejects unknown tags and versions other than 1."""
    _check_size(b, HELLO_SIZE, "Hello")
    return _hello_at(b, 0)


def decode_auth(b: bytes) -> Auth:
    """Decode exactly 32 bytes into an Auth."""
    _check_size(b, AUTH_SIZE, "Auth")
    return Auth(bytes(b))


def decode_ack(b: bytes) -> Ack:
    """Decode exactly 4 bytes into an Ack."""
    _check_size(b, ACK_SIZE, "Ack")
    return _tag_at(b, 0, _ACKS, "Ack")  # type: ignore[return-value]


def decode_control_cmd(b: bytes) -> ControlCmd:
    """Decode exactly 4 bytes into a ControlCmd."""
    _check_size(b, CMD_SIZE, "ControlChannelCmd")
    return _tag_at(b, 0, _CONTROL_CMDS, "ControlChannelCmd")  # type: ignore[return-value]


def decode_data_cmd(b: bytes) -> DataCmd:
    """Decode exactly 4 bytes into a DataCmd."""
    _check_size(b, CMD_SIZE, "DataChannelCmd")
    return _tag_at(b, 0, _DATA_CMDS, "DataChannelCmd")  # type: ignore[return-value]


class MessageReader:
    """Incremental decoder: feed bytes split any way, pop typed messages in order.

    Each ``next_*`` method returns ``None`` while fewer bytes than the message needs are
    buffered. A malformed message raises ``ProtocolError``; its bytes count as consumed
    (as they would have been read off the stream by rathole), so the stream is then dead.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if data:
            self._buf += data

    def __len__(self) -> int:
        """Number of buffered bytes not yet consumed."""
        return len(self._buf) - self._pos

    def _take(self, size: int) -> int | None:
        """Reserve ``size`` bytes; return their offset, or None if not all are here yet."""
        pos = self._pos
        if len(self._buf) - pos < size:
            return None
        self._pos = pos + size
        return pos

    def _compact(self) -> None:
        """Drop consumed bytes once they are many; amortised O(1) per byte."""
        pos = self._pos
        if pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif pos >= _COMPACT_THRESHOLD and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._pos = 0

    def next_hello(self) -> Hello | None:
        """Pop a 37-byte Hello, or None if not enough bytes are buffered."""
        off = self._take(HELLO_SIZE)
        if off is None:
            return None
        try:
            return _hello_at(self._buf, off)
        finally:
            self._compact()

    def next_auth(self) -> Auth | None:
        """Pop a 32-byte Auth, or None if not enough bytes are buffered."""
        off = self._take(AUTH_SIZE)
        if off is None:
            return None
        auth = Auth(bytes(self._buf[off : off + AUTH_SIZE]))
        self._compact()
        return auth

    def _next_tag(self, table: tuple, what: str) -> IntEnum | None:
        off = self._take(4)
        if off is None:
            return None
        try:
            return _tag_at(self._buf, off, table, what)
        finally:
            self._compact()

    def next_ack(self) -> Ack | None:
        """Pop a 4-byte Ack, or None if not enough bytes are buffered."""
        return self._next_tag(_ACKS, "Ack")  # type: ignore[return-value]

    def next_control_cmd(self) -> ControlCmd | None:
        """Pop a 4-byte ControlCmd, or None if not enough bytes are buffered."""
        return self._next_tag(_CONTROL_CMDS, "ControlChannelCmd")  # type: ignore[return-value]

    def next_data_cmd(self) -> DataCmd | None:
        """Pop a 4-byte DataCmd, or None if not enough bytes are buffered."""
        return self._next_tag(_DATA_CMDS, "DataChannelCmd")  # type: ignore[return-value]

    def take_rest(self) -> bytes:
        """Return every buffered byte not yet consumed and empty the buffer."""
        rest = bytes(self._buf[self._pos :]) if self._pos else bytes(self._buf)
        self._buf.clear()
        self._pos = 0
        return rest


# --------------------------------------------------------------------------- UDP


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """One datagram on a UDP data channel; ``addr`` is always the visitor's (ip, port)."""

    addr: tuple[str, int]
    data: bytes


@lru_cache(maxsize=4096)
def _pack_ip(host: str) -> tuple[bool, bytes]:
    """Return (is_v6, packed octets) for an IP literal. Scope ids ("%eth0") are dropped."""
    try:
        return False, socket.inet_pton(socket.AF_INET, host)
    except (OSError, ValueError, TypeError):
        pass
    bare = host
    if isinstance(bare, str):
        if bare.startswith("[") and bare.endswith("]"):
            bare = bare[1:-1]
        bare = bare.partition("%")[0]
    try:
        return True, socket.inet_pton(socket.AF_INET6, bare)
    except (OSError, ValueError, TypeError):
        raise ValueError(f"not an IPv4 or IPv6 address: {host!r}") from None


@lru_cache(maxsize=4096)
def _ntop4(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, packed)


@lru_cache(maxsize=4096)
def _ntop6(packed: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, packed)


def encode_udp_packet(p: UdpPacket) -> bytes:
    """Encode one UdpTraffic frame: hdr_len byte, header, payload.

    Only ``addr[0]`` (an IP literal) and ``addr[1]`` (the port) are used, so a 4-tuple
    from an IPv6 ``recvfrom`` also works; flowinfo and scope are not sent, as in rathole.
    Raises ValueError for a non-IP host, a port outside 0..65535 or a payload over 65535.
    """
    host, port = p.addr[0], p.addr[1]
    data = p.data
    size = len(data)
    if size > UDP_MAX_PAYLOAD:
        raise ValueError(f"UDP payload of {size} bytes exceeds {UDP_MAX_PAYLOAD}")
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise ValueError(f"invalid UDP port: {port!r}")
    is_v6, packed = _pack_ip(host)
    if is_v6:
        header = _UDP_V6.pack(UDP_HEADER_V6_SIZE, _TAG_V6, packed, port, size)
    else:
        header = _UDP_V4.pack(UDP_HEADER_V4_SIZE, _TAG_V4, packed, port, size)
    return header + bytes(data)


class UdpFrameDecoder:
    """Incremental UdpTraffic decoder: feed bytes split any way, get whole packets back.

    A header longer than its address form needs is accepted (the extra bytes are skipped),
    as rathole does; a shorter one is an error. After a ``ProtocolError`` every later
    ``feed`` raises the same error again.
    """

    __slots__ = ("_buf", "_error", "_max_payload", "_pos")

    def __init__(self, max_payload: int = UDP_MAX_PAYLOAD) -> None:
        if not 0 <= max_payload <= UDP_MAX_PAYLOAD:
            raise ValueError(f"max_payload must be in 0..{UDP_MAX_PAYLOAD}, got {max_payload}")
        self._max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0
        self._error: ProtocolError | None = None

    def __len__(self) -> int:
        """Number of buffered bytes belonging to a frame not yet complete."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> list[UdpPacket]:
        """Add received bytes and return every packet they complete, in order."""
        if self._error is not None:
            raise self._error
        buf = self._buf
        buf += data
        out: list[UdpPacket] = []
        try:
            self._parse(buf, out)
        except ProtocolError as exc:
            self._error = exc
            buf.clear()
            self._pos = 0
            raise
        pos = self._pos
        if pos == len(buf):
            buf.clear()
            self._pos = 0
        elif pos:
            # What remains is less than one frame, so each byte moves at most once.
            del buf[:pos]
            self._pos = 0
        return out

    def _parse(self, buf: bytearray, out: list[UdpPacket]) -> None:
        pos = self._pos
        end = len(buf)
        max_payload = self._max_payload
        with memoryview(buf) as view:
            while pos < end:
                hdr_len = buf[pos]
                if hdr_len < UDP_HEADER_V4_SIZE:
                    raise ProtocolError(
                        f"UDP header length {hdr_len} is too short "
                        f"(at least {UDP_HEADER_V4_SIZE} bytes needed)"
                    )
                body = pos + 1
                if end - body < hdr_len:
                    break
                (tag,) = _U32.unpack_from(buf, body)
                if tag == _TAG_V4:
                    ip, port, size = _UDP_V4_BODY.unpack_from(buf, body + 4)
                    addr = (_ntop4(ip), port)
                elif tag == _TAG_V6:
                    if hdr_len < UDP_HEADER_V6_SIZE:
                        raise ProtocolError(
                            f"UDP header length {hdr_len} is too short for an IPv6 address "
                            f"(at least {UDP_HEADER_V6_SIZE} bytes needed)"
                        )
                    ip, port, size = _UDP_V6_BODY.unpack_from(buf, body + 4)
                    addr = (_ntop6(ip), port)
                else:
                    raise ProtocolError(
                        f"invalid SocketAddr variant index {tag}, expected `V4` or `V6`"
                    )
                if size > max_payload:
                    raise ProtocolError(
                        f"UDP payload length {size} exceeds the limit of {max_payload}"
                    )
                start = body + hdr_len
                stop = start + size
                if stop > end:
                    break
                out.append(UdpPacket(addr, bytes(view[start:stop])))
                pos = stop
        self._pos = pos
