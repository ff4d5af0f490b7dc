"""Pairing codes: one line that carries what a client needs to reach a server.

A code is ``ratui1:`` followed by base64url (``A-Z a-z 0-9 - _``, no padding): nothing a
shell quotes or a terminal mangles, so it survives being pasted over SSH. Decoding ignores
whitespace anywhere, so a code that a terminal wrapped over several lines still reads, and
box-drawing and block characters, so one selected off a screen with the frame around it does
too.

The bytes under the base64 are::

    flags (1) | body length (2, big-endian) | body | CRC-32 of all before it (4, big-endian)

``flags`` bit 0 says the body is raw-deflate compressed (used when that is shorter, e.g.
several services sharing one token). The length tells a truncated paste from an altered one;
CRC-32 catches every change of up to 32 consecutive bits, so any one character changed is
refused. The body::

    transport (1: 0 tcp, 1 noise, 2 tls) | remote_addr (str)
    noise: the server's public key (32 raw bytes) | tls: the server's hostname (str, may be "")
    service count (1), then per service: name (str) | bits (1) | token

where a str is a 1-byte length and UTF-8, ``bits`` bit 0 marks a UDP service and bit 1 a
token that is base64url of 32 bytes (what :func:`~ratui.setup.tokens.new_token` makes),
carried as those 32 raw bytes; any other token is a str. One Noise service fits in about
140 characters.

The code holds the service tokens: it is a secret, like the config it came from.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import NoReturn

from .validate import validate_addr

VERSION = 1
PREFIX = f"ratui{VERSION}:"
TRANSPORTS = ("tcp", "noise", "tls")
SERVICE_TYPES = ("tcp", "udp")

_VERSIONED = re.compile(r"ratui([0-9]+):")
#: What a terminal selection adds around a code: line breaks, padding, a frame's lines.
_NOT_CODE = re.compile(r"[\s\u2500-\u259f]+")
#: What the server's screens show and copy before the code: ``ratui pair CODE``.
_COMMAND = re.compile(r"\s*ratui\s+pair\s+")
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_HEADER = struct.Struct(">BH")
_CRC = struct.Struct(">I")
_FLAG_DEFLATE = 0x01
_SVC_UDP = 0x01
_SVC_RAW_TOKEN = 0x02
_RAW_TOKEN_LEN = 32
_KEY_LEN = 32
#: Far beyond any real code; refused before any decoding work.
MAX_CODE_CHARS = 64 * 1024
MAX_SERVICES = 255
MAX_BODY = 0xFFFF  # the header's length field


class PairingError(ValueError):
    """The text is not a usable pairing code; ``str()`` says why in plain words."""


@dataclass(frozen=True)
class PairedService:
    name: str
    type: str  # "tcp" | "udp"
    token: str = field(repr=False)


@dataclass(frozen=True)
class Pairing:
    remote_addr: str
    transport: str  # "tcp" | "noise" | "tls"
    services: tuple[PairedService, ...]
    noise_public_key: str | None = None
    tls_hostname: str | None = None


# encoding -------------------------------------------------------------------------------------
def encode(p: Pairing) -> str:
    """The pairing code for ``p``; raises PairingError if ``p`` cannot be carried."""
    check(p)
    body = _body(p)
    flags = 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packer.compress(body) + packer.flush()
    if len(deflated) < len(body):
        body, flags = deflated, _FLAG_DEFLATE
    if len(body) > MAX_BODY:
        raise PairingError("too many services, or names too long, for one pairing code")
    data = _HEADER.pack(flags, len(body)) + body
    return PREFIX + _b64(data + _CRC.pack(zlib.crc32(data)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _str(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes([len(raw)]) + raw


def _body(p: Pairing) -> bytes:
    out = bytearray([TRANSPORTS.index(p.transport)])
    out += _str(p.remote_addr)
    if p.transport == "noise":
        assert p.noise_public_key is not None
        out += base64.b64decode(p.noise_public_key)
    elif p.transport == "tls":
        out += _str(p.tls_hostname or "")
    out.append(len(p.services))
    for svc in p.services:
        out += _str(svc.name)
        raw = _raw_token(svc.token)
        out.append((_SVC_UDP if svc.type == "udp" else 0) | (_SVC_RAW_TOKEN if raw else 0))
        out += raw if raw else _str(svc.token)
    return bytes(out)


def _raw_token(token: str) -> bytes | None:
    """The 32 bytes behind a base64url token, if it is exactly that."""
    if len(token) != 43 or not _ALPHABET.fullmatch(token):
        return None
    raw = base64.urlsafe_b64decode(token + "=")
    return raw if _b64(raw) == token else None


# checks ------------------------------------------------------------------------------------
def check(p: Pairing) -> None:
    """Raise PairingError unless every field of ``p`` is usable (and fits in a code)."""
    if p.transport not in TRANSPORTS:
        _invalid(f"transport {p.transport!r} (expected tcp, noise or tls)")
    _check_str("remote address", p.remote_addr)
    problem = validate_addr(p.remote_addr)
    if problem:
        _invalid(f"remote address: {problem}")
    if (p.noise_public_key is not None) != (p.transport == "noise"):
        _invalid("a Noise public key goes with the noise transport, and only with it")
    if p.noise_public_key is not None and not _is_key(p.noise_public_key):
        _invalid("the Noise public key is not base64 of 32 bytes")
    if p.tls_hostname is not None:
        if p.transport != "tls":
            _invalid("a TLS hostname goes with the tls transport only")
        _check_str("TLS hostname", p.tls_hostname)
        if not p.tls_hostname:
            _invalid("the TLS hostname is empty (leave it out instead)")
    if not 0 < len(p.services) <= MAX_SERVICES:
        _invalid(f"expected 1 to {MAX_SERVICES} services, got {len(p.services)}")
    names = set()
    for svc in p.services:
        _check_str("service name", svc.name)
        if not svc.name:
            _invalid("a service has an empty name")
        if svc.name in names:
            _invalid(f"service {svc.name!r} appears twice")
        names.add(svc.name)
        if svc.type not in SERVICE_TYPES:
            _invalid(f"service {svc.name!r}: type {svc.type!r} (expected tcp or udp)")
        _check_str(f"the token of {svc.name!r}", svc.token)
        if not svc.token:
            _invalid(f"service {svc.name!r} has an empty token")


def _check_str(what: str, value: str) -> None:
    problem = text_problem(value)
    if problem:
        _invalid(f"{what} {problem}")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be one of a code's texts (a name, a token...), or None."""
    if not isinstance(value, str) or not value.isprintable():
        return "holds control characters"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid text"
    if size > 255:
        return "is longer than 255 bytes"
    return None


def _is_key(text: str) -> bool:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == _KEY_LEN and base64.b64encode(raw).decode() == text


def _invalid(what: str) -> NoReturn:
    raise PairingError(f"the pairing code has an invalid field: {what}")


# decoding ------------------------------------------------------------------------------------
def looks_like_code(text: str) -> bool:
    """Whether ``text`` is meant as a pairing code (of any version), valid or not."""
    return _VERSIONED.match(_bare(text)) is not None


def _bare(code: str) -> str:
    """``code`` without a ``ratui pair`` before it and what a terminal added inside it."""
    command = _COMMAND.match(code)
    return _NOT_CODE.sub("", code[command.end() :] if command else code)


def decode(code: str) -> Pairing:
    """The pairing in ``code``; raises PairingError saying plainly what is wrong."""
    if len(code) > MAX_CODE_CHARS:
        raise PairingError("this is far too long to be a ratui pairing code")
    text = _bare(code)
    if not text:
        raise PairingError("the pairing code is empty")
    match = _VERSIONED.match(text)
    if match is None:
        raise PairingError(f"this is not a ratui pairing code (those start with {PREFIX!r})")
    version = int(match.group(1))
    if version > VERSION:
        raise PairingError(
            f"this pairing code was made by a newer ratui (code version {version}; this ratui "
            f"reads version {VERSION}): update ratui here"
        )
    if version != VERSION:
        raise PairingError(f"unknown pairing code version {version} (this ratui reads {VERSION})")
    data = _unpack(text[match.end() :], match.end())
    flags, length = _HEADER.unpack_from(data)
    body = data[_HEADER.size : _HEADER.size + length]
    if flags & ~_FLAG_DEFLATE:
        _invalid(f"unknown flags {flags:#04x}")
    if flags & _FLAG_DEFLATE:
        body = _inflate(body)
    pairing = _parse_body(body)
    check(pairing)
    return pairing


def _unpack(text: str, prefix_len: int) -> bytes:
    """The checked bytes of the base64 part: complete, unaltered, checksum verified.
    ``prefix_len`` makes the character counts in messages those of the whole code."""
    valid = _ALPHABET.match(text)  # always matches, maybe only an empty prefix
    assert valid is not None
    if valid.end() != len(text):
        raise PairingError(
            f"the pairing code holds {text[valid.end()]!r}, which no pairing code contains: "
            "it was altered; copy it again"
        )
    usable = len(text) - (len(text) % 4 == 1)  # one stray character cannot hold a byte
    data = base64.urlsafe_b64decode(text[:usable] + "=" * (-usable % 4))
    minimum = _HEADER.size + _CRC.size
    if len(data) < minimum:
        raise PairingError("the pairing code is truncated: copy all of it")
    _, length = _HEADER.unpack_from(data)
    total = _HEADER.size + length + _CRC.size
    want = (total * 4 + 2) // 3
    if len(text) != want and _only_length_altered(data):
        raise PairingError("the pairing code was altered (its length field): copy it again")
    if len(data) < total:
        raise PairingError(
            f"the pairing code is truncated ({prefix_len + len(text)} of its "
            f"{prefix_len + want} characters) or altered: copy all of it"
        )
    if len(text) != want:
        extra = len(text) - want
        raise PairingError(
            f"the pairing code has {extra} character{'s' if extra > 1 else ''} too many at "
            "the end, or was altered: copy exactly the code"
        )
    if _b64(data) != text or _CRC.unpack_from(data, total - _CRC.size)[0] != zlib.crc32(
        data[: total - _CRC.size]
    ):
        raise PairingError("the pairing code was altered (checksum mismatch): copy it again")
    return data


def _only_length_altered(data: bytes) -> bool:
    """Whether ``data`` is a whole code whose length field alone is wrong: its checksum fits
    once the field holds the length the code really has. A truncated code fails this too."""
    length = len(data) - _HEADER.size - _CRC.size
    if not 0 <= length <= MAX_BODY:
        return False
    flags, _ = _HEADER.unpack_from(data)
    whole = _HEADER.pack(flags, length) + data[_HEADER.size : -_CRC.size]
    return _CRC.unpack_from(data, len(data) - _CRC.size)[0] == zlib.crc32(whole)


def _inflate(body: bytes) -> bytes:
    limit = 255 * (3 * 256 + 2) + 1024  # more than any body the format can describe
    unpacker = zlib.decompressobj(-15)
    try:
        out = unpacker.decompress(body, limit)
    except zlib.error:
        _invalid("the compressed part does not decompress")
    if unpacker.unconsumed_tail or not unpacker.eof or unpacker.unused_data:
        _invalid("the compressed part does not decompress")
    return out


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            _invalid(f"{what} is cut short")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def str(self, what: str) -> str:
        raw = self.take(self.byte(what), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            _invalid(f"{what} is not UTF-8")


def _parse_body(body: bytes) -> Pairing:
    r = _Reader(body)
    kind = r.byte("transport")
    if kind >= len(TRANSPORTS):
        _invalid(f"unknown transport number {kind}")
    transport = TRANSPORTS[kind]
    remote_addr = r.str("remote address")
    noise_key = tls_hostname = None
    if transport == "noise":
        noise_key = base64.b64encode(r.take(_KEY_LEN, "Noise public key")).decode()
    elif transport == "tls":
        tls_hostname = r.str("TLS hostname") or None
    services = []
    for _ in range(r.byte("service count")):
        name = r.str("service name")
        bits = r.byte(f"service {name!r}")
        if bits & ~(_SVC_UDP | _SVC_RAW_TOKEN):
            _invalid(f"service {name!r} has unknown flags {bits:#04x}")
        if bits & _SVC_RAW_TOKEN:
            token = _b64(r.take(_RAW_TOKEN_LEN, f"the token of {name!r}"))
        else:
            token = r.str(f"the token of {name!r}")
        services.append(PairedService(name, "udp" if bits & _SVC_UDP else "tcp", token))
    if r.pos != len(body):
        _invalid(f"{len(body) - r.pos} unexpected bytes at the end")
    return Pairing(remote_addr, transport, tuple(services), noise_key, tls_hostname)
