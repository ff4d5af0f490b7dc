"""The Noise transport, byte for byte as rathole's (snowstorm 0.4 over snow; PROTOCOL.md §5.2).

* The client is the initiator, the server the responder. Default pattern
  ``Noise_NK_25519_ChaChaPoly_BLAKE2s``; any two-way pattern without PSK works (XX, KK, ...).
  No prologue, empty handshake payloads.
* Every message, handshake or transport, is a **little-endian** u16 length and the message.
  A transport message is the AEAD ciphertext of at most 65519 plaintext bytes plus a 16-byte
  tag, so a frame is at most 2 + 65535 bytes. Nonces count from 0 in each direction; for
  ChaChaPoly the nonce is 4 zero bytes and the counter as u64 LE (AESGCM: u64 BE). No rekey.
* Each ``write`` becomes ``ceil(len / 65519)`` messages at once, as snowstorm's ``poll_write``
  does; the reader accepts any framing up to 65535.

The handshake runs on the ``noiseprotocol`` package. Transport messages are encrypted and
decrypted with ``cryptography``'s AEAD directly, keyed from the finished handshake: it does
the same primitive with less work per message than going through ``noiseprotocol``
(``bench/noise.py --micro`` measures both).

Keys come from ``[*.transport.noise]`` as base64 of raw 32-byte X25519 keys. Where rathole
would silently make up a random ``local_private_key`` that no peer can know (NK, KK, XK, IK on
the server; KK, KN, KX on the client), ratui refuses to start with a message that says which
key is missing; for patterns that send the static key in the handshake (XX, ...) it uses a
random key for the run, as rathole does, and says so in the log.
"""

from __future__ import annotations

import base64
import logging
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from noise.connection import Keypair, NoiseConnection
from noise.functions.patterns import Pattern

from ..config import DEFAULT_NOISE_PATTERN, NoiseConfig, TcpTransportConfig
from .layered import LayeredTransport, LayerError, Session, TransportSetupError

log = logging.getLogger("ratui.transport.noise")

MAX_MESSAGE = 65535  # snow's MAXMSGLEN: the largest Noise message, tag included
TAG = 16
MAX_PLAINTEXT = MAX_MESSAGE - TAG  # 65519, what one transport message can carry
DH_LEN = 32  # 25519 is the only curve rathole's snow can build

_LEN = struct.Struct("<H")
#: Up to this size, encrypt-then-concatenate beats encrypting into a preallocated frame.
_SMALL = 16 * 1024
_NONCE = {"ChaChaPoly": struct.Struct("<4xQ").pack, "AESGCM": struct.Struct(">4xQ").pack}
_AEAD = {"ChaChaPoly": ChaCha20Poly1305, "AESGCM": AESGCM}

_PLAIN_HELLOS = (b"\x00\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01")  # rathole's Hello, no layer


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed, checked protocol name: what each role must have and how big each handshake
    message is (with empty payloads)."""

    name: str
    pattern: Pattern
    cipher: str
    sizes: tuple[int, ...]

    @classmethod
    def parse(cls, name: str) -> NoiseSpec:
        try:
            conn = NoiseConnection.from_name(name.encode("ascii"))
        except Exception as exc:  # noiseprotocol raises bare ValueError/KeyError/its own types
            raise TransportSetupError(
                f'noise pattern "{name}" is not a Noise protocol name ratui can run '
                f"({type(exc).__name__}: {exc}); rathole's default is {DEFAULT_NOISE_PATTERN}"
            ) from None
        parts = name.split("_")
        proto = conn.noise_protocol
        if parts[2] != "25519":
            raise TransportSetupError(
                f'noise pattern "{name}": only the 25519 curve works (rathole\'s Noise library '
                "has no Curve448), e.g. " + DEFAULT_NOISE_PATTERN
            )
        if proto.pattern.one_way:
            raise TransportSetupError(
                f'noise pattern "{name}" is a one-way pattern; the tunnel needs both '
                "directions (use NK, XX or KK)"
            )
        if proto.is_psk_handshake:
            raise TransportSetupError(
                f'noise pattern "{name}" needs a pre-shared key, which rathole\'s config '
                "cannot set (use NK, XX or KK)"
            )
        return cls(name, proto.pattern, parts[3], _message_sizes(proto.pattern))

    def local_known(self, initiator: bool) -> bool:
        """Must the peer know this side's static key before the handshake?"""
        return "s" in self.pattern.pre_messages[0 if initiator else 1]

    def remote_known(self, initiator: bool) -> bool:
        """Must this side know the peer's static key before the handshake?"""
        return "s" in self.pattern.pre_messages[1 if initiator else 0]

    def needs_local(self, initiator: bool) -> bool:
        return "s" in self.pattern.get_required_keypairs(initiator)


def _message_sizes(pattern: Pattern) -> tuple[int, ...]:
    """The length of each handshake message when every payload is empty."""
    sizes = []
    has_key = False
    for tokens in pattern.tokens:
        size = 0
        for token in tokens:
            if token == "e":
                size += DH_LEN
            elif token == "s":
                size += DH_LEN + (TAG if has_key else 0)
            else:  # ee, es, se, ss
                has_key = True
        sizes.append(size + (TAG if has_key else 0))
    return tuple(sizes)


def _into(crypt: Any) -> Any:
    """``encrypt_into`` or ``decrypt_into`` for a ``cryptography`` without them (before 45):
    one more copy."""

    def crypt_into(nonce: bytes, data: Any, aad: None, buf: memoryview) -> int:
        buf[:] = crypt(nonce, data, aad)
        return len(buf)

    return crypt_into


def _decode_key(value: str | None) -> bytes | None:
    # The config loader has already checked: standard base64 of exactly 32 bytes.
    return None if value is None else base64.b64decode(value)


def random_private_key() -> bytes:
    return X25519PrivateKey.generate().private_bytes_raw()


def public_key(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _sniff(data: bytes, from_server: bool) -> str | None:
    """Name what a peer that does not speak Noise sent instead, if it is recognisable."""
    other = "server" if from_server else "client"
    if data[:5] in _PLAIN_HELLOS:
        return (
            f'the {other} sent a plain rathole Hello, not a Noise handshake: it uses type = "tcp"'
            '; both sides need type = "noise"'
        )
    if data[:1] in (b"\x16", b"\x15") and data[1:2] == b"\x03":
        return f'the {other} speaks TLS, not Noise: it uses type = "tls"; both sides need the same'
    if data[:4] in (b"GET ", b"HTTP", b"POST", b"HEAD", b"CONN"):
        return f"the {other} speaks HTTP (websocket?), not Noise; both sides need the same type"
    return None


class NoiseSession(Session):
    """One connection's Noise state: the handshake on ``noiseprotocol``, then AEAD frames."""

    kind = "noise"
    __slots__ = (
        "_buf",
        "_conn",
        "_decrypt",
        "_decrypt_into",
        "_encrypt",
        "_encrypt_small",
        "_index",
        "_initiator",
        "_nonce",
        "_out",
        "_rn",
        "_spec",
        "_wn",
    )

    def __init__(
        self,
        spec: NoiseSpec,
        *,
        initiator: bool,
        local_private: bytes | None,
        remote_public: bytes | None,
    ) -> None:
        conn = NoiseConnection.from_name(spec.name.encode("ascii"))
        if initiator:
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        if local_private is not None:
            conn.set_keypair_from_private_bytes(Keypair.STATIC, local_private)
        if remote_public is not None and spec.remote_known(initiator):
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote_public)
        conn.start_handshake()
        self._conn: NoiseConnection | None = conn
        self._spec = spec
        self._initiator = initiator
        self._index = 0  # handshake message number, both directions
        self._buf = bytearray()  # handshake bytes, then a partial transport frame
        self._out = bytearray()
        self._encrypt: Any = None
        self._encrypt_small: Any = None
        self._decrypt: Any = None
        self._decrypt_into: Any = None
        self._nonce = _NONCE[spec.cipher]
        self._wn = 0
        self._rn = 0

    # handshake ----------------------------------------------------------------------------
    def _my_turn(self) -> bool:
        return (self._index % 2 == 0) == self._initiator

    def _write_message(self) -> None:
        assert self._conn is not None
        try:
            message = self._conn.write_message()
        except Exception as exc:  # cryptography refuses a DH with a low-order point
            if self._index == 0 and self._spec.remote_known(self._initiator):
                raise LayerError(
                    f"cannot start the handshake ({exc}) - is remote_public_key a real "
                    "X25519 public key (from --genkey)?"
                ) from None
            raise LayerError(f"the peer's handshake message is unusable ({exc})") from None
        self._out += _LEN.pack(len(message))
        self._out += message
        self._index += 1

    def start(self) -> None:
        if self._my_turn():
            self._write_message()

    def handshake(self, data: bytes) -> bytes | None:
        conn = self._conn
        assert conn is not None
        buf = self._buf
        buf += data
        while not conn.handshake_finished:
            if len(buf) < 2:
                return None
            (length,) = _LEN.unpack_from(buf)
            expected = self._spec.sizes[self._index]
            if length != expected:
                raise LayerError(self._unexpected(bytes(buf[:8]), length, expected))
            if len(buf) < 2 + length:
                return None
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            try:
                conn.read_message(message)
            except Exception as exc:  # InvalidTag, or a bad point from cryptography
                raise LayerError(self._undecryptable(exc)) from None
            self._index += 1
            if not conn.handshake_finished:
                self._write_message()
        self._split()
        rest = bytes(buf)
        buf.clear()
        return rest

    def _split(self) -> None:
        assert self._conn is not None
        proto = self._conn.noise_protocol
        aead = _AEAD[self._spec.cipher]
        send, recv = proto.cipher_state_encrypt, proto.cipher_state_decrypt
        sender = aead(send.k)
        self._encrypt_small = sender.encrypt
        self._encrypt = getattr(sender, "encrypt_into", None) or _into(sender.encrypt)
        receiver = aead(recv.k)
        self._decrypt = receiver.decrypt
        self._decrypt_into = getattr(receiver, "decrypt_into", None) or _into(receiver.decrypt)
        self._wn, self._rn = send.n, recv.n
        self._conn = None  # the handshake state is no longer needed

    def _unexpected(self, head: bytes, length: int, expected: int) -> str:
        from_server = self._initiator
        sniffed = _sniff(head, from_server)
        if sniffed is not None:
            return sniffed
        other = "server" if from_server else "client"
        return (
            f"handshake message {self._index + 1} is {length} bytes where {self._spec.name} "
            f"sends {expected}: is the {other} speaking Noise with the same pattern?"
        )

    def _undecryptable(self, exc: Exception) -> str:
        spec = self._spec
        if isinstance(exc, InvalidTag) or "authentication" in str(exc).lower():
            what = "decryption failed"
        else:
            what = f"invalid handshake message ({type(exc).__name__}: {exc})"
        hints = []
        if self._initiator:
            if spec.remote_known(True):
                hints.append("is remote_public_key the server's public key")
            if spec.local_known(True):
                hints.append("does the server's remote_public_key belong to this client")
        else:
            if spec.local_known(False):
                hints.append("is the client's remote_public_key this server's public key")
            if spec.remote_known(False):
                hints.append("is this server's remote_public_key the client's public key")
        hints.append("do both sides use " + spec.name)
        return f"{what} - {'? '.join(hints)}?"

    def closed_during_handshake(self, server_side: bool) -> str:
        if server_side:
            return "the client closed the connection during the handshake"
        hint = (
            "is remote_public_key the server's public key, "
            if self._spec.remote_known(True)
            else ""
        )
        return (
            "the server closed the connection during the handshake - "
            f'{hint}does the server use type = "noise" with {self._spec.name}?'
        )

    def describe_progress(self) -> str:
        return f"{self._index} of {len(self._spec.sizes)} handshake messages done"

    def extra_info(self, name: str) -> Any:
        return self._spec.name if name == "noise_pattern" else None

    def take_output(self) -> bytes:
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    # transport messages -----------------------------------------------------------------
    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        size = len(data)
        encrypt_into = self._encrypt
        nonce = self._nonce
        n = self._wn
        if size <= _SMALL:
            message = self._encrypt_small(nonce(n), data, None)
            self._wn = n + 1
            return _LEN.pack(size + TAG) + message
        if size <= MAX_PLAINTEXT:
            frame = bytearray(size + TAG + 2)
            _LEN.pack_into(frame, 0, size + TAG)
            encrypt_into(nonce(n), data, None, memoryview(frame)[2:])
            self._wn = n + 1
            return frame
        count = -(-size // MAX_PLAINTEXT)
        out = bytearray(size + count * (TAG + 2))
        view = memoryview(out)
        src = memoryview(data)
        pos = 0
        for start in range(0, size, MAX_PLAINTEXT):
            chunk = src[start : start + MAX_PLAINTEXT]
            length = len(chunk) + TAG
            _LEN.pack_into(out, pos, length)
            encrypt_into(nonce(n), chunk, None, view[pos + 2 : pos + 2 + length])
            n += 1
            pos += 2 + length
        self._wn = n
        return out

    def decrypt(self, data: bytes) -> tuple[bytes | bytearray, bool]:
        """The plaintext of every whole frame in what arrived so far.

        Only the frame that straddles two reads is copied together (into ``_buf``); every
        other frame is decrypted where it lies in ``data``. Several frames are decrypted into
        one new buffer, which is handed on as is, so nothing is joined afterwards."""
        buf = self._buf
        end = len(data)
        pos = 0
        if buf:  # complete the frame that the last read cut, from the front of this one
            pos = min(end, max(0, 2 - len(buf)))
            buf += data[:pos]
            if len(buf) < 2:
                return b"", False
            need = 2 + _frame_length(buf, 0) - len(buf)
            if need > end - pos:
                _append(buf, data, pos, end)
                return b"", False
            _append(buf, data, pos, pos + need)
            pos += need
        # The whole frames behind it: (offset of the ciphertext in data, its length).
        frames: list[tuple[int, int]] = []
        while end - pos >= 2:
            length = _frame_length(data, pos)
            if end - pos - 2 < length:
                break
            frames.append((pos + 2, length))
            pos += 2 + length
        count = len(frames) + (1 if buf else 0)
        if count == 0:
            _append(buf, data, pos, end)
            return b"", False
        n = self._rn
        nonce = self._nonce
        try:
            if count == 1:  # the usual case for small writes: no buffer to set up
                if buf:
                    with memoryview(buf) as head:
                        plain = self._decrypt(nonce(n), head[2:], None)
                else:
                    at, length = frames[0]
                    with memoryview(data) as view:
                        plain = self._decrypt(nonce(n), view[at : at + length], None)
                self._rn = n + 1
            else:
                plain = self._decrypt_frames(data, frames)
        except InvalidTag:
            raise LayerError(f"message {self._rn} failed authentication") from None
        buf.clear()
        _append(buf, data, pos, end)
        return plain, False

    def _decrypt_frames(self, data: bytes, frames: list[tuple[int, int]]) -> bytearray:
        """Decrypt the frame in ``_buf`` (if any), then ``frames`` of ``data``, into one new
        buffer; ``_rn`` counts each frame that passed."""
        buf = self._buf
        first = len(buf) - 2 - TAG if buf else 0
        plain = bytearray(first + sum(length for _, length in frames) - TAG * len(frames))
        decrypt_into = self._decrypt_into
        nonce = self._nonce
        with memoryview(plain) as out, memoryview(data) as view:
            if buf:
                with memoryview(buf) as head:
                    decrypt_into(nonce(self._rn), head[2:], None, out[:first])
                self._rn += 1
            pos = first
            for at, length in frames:
                size = length - TAG
                decrypt_into(nonce(self._rn), view[at : at + length], None, out[pos : pos + size])
                self._rn += 1
                pos += size
        return plain


def _append(buf: bytearray, data: bytes, start: int, stop: int) -> None:
    """``buf += data[start:stop]`` without first copying the slice."""
    if start < stop:
        with memoryview(data) as view:
            buf += view[start:stop]


def _frame_length(data: bytes | bytearray, pos: int) -> int:
    """The u16 LE length of the frame at ``pos``; a frame shorter than its tag is an error."""
    length = data[pos] | data[pos + 1] << 8
    if length < TAG:
        raise LayerError(f"a {length}-byte message is shorter than its 16-byte tag")
    return length


@dataclass
class _Keys:
    local_private: bytes | None
    remote_public: bytes | None


class NoiseTransport(LayeredTransport):
    """``type = "noise"``: every connection runs a Noise handshake and then AEAD frames."""

    def __init__(self, tcp: TcpTransportConfig, cfg: NoiseConfig) -> None:
        super().__init__(tcp)
        self.spec = NoiseSpec.parse(cfg.pattern)
        self.local_private = _decode_key(cfg.local_private_key)
        self.remote_public = _decode_key(cfg.remote_public_key)
        self._role_keys: dict[bool, _Keys] = {}

    def _keys(self, initiator: bool) -> _Keys:
        """Check once per role that the keys the pattern needs are there."""
        keys = self._role_keys.get(initiator)
        if keys is not None:
            return keys
        spec = self.spec
        table = "[client.transport.noise]" if initiator else "[server.transport.noise]"
        peer = "server" if initiator else "client"
        if self.remote_public is None and spec.remote_known(initiator):
            raise TransportSetupError(
                f"{table} remote_public_key is missing: with {spec.name} this side must know "
                f"the {peer}'s public key before the handshake"
            )
        local = self.local_private
        if local is None and spec.needs_local(initiator):
            if spec.local_known(initiator):
                raise TransportSetupError(
                    f"{table} local_private_key is missing: with {spec.name} the {peer} must "
                    "know this side's public key in advance, so with a random key (what "
                    "rathole does) no handshake could ever succeed. Make a keypair with "
                    "`ratui --genkey` and give the public key to the other side"
                )
            local = random_private_key()
            # The client's identity matters little (the token authenticates it); a server
            # with a throwaway key can be impersonated, which deserves a warning.
            log.log(
                logging.INFO if initiator else logging.WARNING,
                "%s local_private_key is not set: using a random key for this run (public "
                "key %s); the %s cannot authenticate this side",
                table,
                base64.b64encode(public_key(local)).decode(),
                peer,
            )
        keys = self._role_keys[initiator] = _Keys(local, self.remote_public)
        return keys

    def check_server(self) -> None:
        self._keys(initiator=False)

    def check_client(self) -> None:
        self._keys(initiator=True)

    def client_session(self, addr: str) -> NoiseSession:
        keys = self._keys(initiator=True)
        return NoiseSession(
            self.spec,
            initiator=True,
            local_private=keys.local_private,
            remote_public=keys.remote_public,
        )

    def server_session(self) -> NoiseSession:
        keys = self._keys(initiator=False)
        return NoiseSession(
            self.spec,
            initiator=False,
            local_private=keys.local_private,
            remote_public=keys.remote_public,
        )
