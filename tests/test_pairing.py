"""Pairing codes: round trips, and every kind of damaged paste refused with its own message."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratui.genkey import generate_keypair
from ratui.setup.pairing import (
    PREFIX,
    PairedService,
    Pairing,
    PairingError,
    decode,
    encode,
    looks_like_code,
)
from ratui.setup.tokens import new_token

PUBLIC_KEY = generate_keypair()[1]
ONE_NOISE_SERVICE = Pairing(
    "vps.example.com:2333",
    "noise",
    (PairedService("ssh", "tcp", new_token()),),
    noise_public_key=PUBLIC_KEY,
)
EXAMPLES = [
    ONE_NOISE_SERVICE,
    Pairing("203.0.113.7:2333", "tcp", (PairedService("web", "tcp", "hand-written token"),)),
    Pairing(
        "[2001:db8::1]:443",
        "tls",
        (PairedService("dns", "udp", new_token()), PairedService("nas", "tcp", new_token())),
        tls_hostname="tunnel.example.org",
    ),
    Pairing("vps:2333", "tls", (PairedService("a", "tcp", "t"),)),
]
CODE = encode(ONE_NOISE_SERVICE)


def message(code: str) -> str:
    with pytest.raises(PairingError) as info:
        decode(code)
    return str(info.value)


@pytest.mark.parametrize("pairing", EXAMPLES)
def test_encode_decode_round_trip(pairing: Pairing) -> None:
    code = encode(pairing)
    assert code.startswith(PREFIX)
    assert re.fullmatch(r"ratui1:[A-Za-z0-9_-]+", code)
    assert decode(code) == pairing


def test_one_noise_service_is_short() -> None:
    assert len(CODE) < 150


def test_shared_tokens_compress() -> None:
    token = new_token()
    names = ("ssh", "web", "nas", "git", "mqtt")
    shared = Pairing(
        "vps.example.com:2333",
        "noise",
        tuple(PairedService(n, "tcp", token) for n in names),
        noise_public_key=PUBLIC_KEY,
    )
    distinct = Pairing(
        "vps.example.com:2333",
        "noise",
        tuple(PairedService(n, "tcp", new_token()) for n in names),
        noise_public_key=PUBLIC_KEY,
    )
    assert decode(encode(shared)) == shared
    assert len(encode(shared)) < len(encode(distinct)) - 100


def test_whitespace_and_line_breaks_inside_are_ignored() -> None:
    wrapped = "  " + "\n".join(CODE[i : i + 40] for i in range(0, len(CODE), 40)) + " \r\n"
    assert decode(wrapped) == ONE_NOISE_SERVICE
    assert decode(CODE[:30] + " \t " + CODE[30:]) == ONE_NOISE_SERVICE


def test_truncated_code_is_refused() -> None:
    assert f"truncated ({len(CODE) - 9} of its {len(CODE)} characters)" in message(CODE[:-9])
    assert "truncated" in message(CODE[:-1])
    assert "truncated" in message(PREFIX + "AQ")


def test_altered_code_is_refused() -> None:
    middle = len(CODE) // 2
    changed = CODE[:middle] + ("B" if CODE[middle] != "B" else "C") + CODE[middle + 1 :]
    assert "altered (checksum mismatch)" in message(changed)
    assert "altered" in message(CODE[:middle] + "!" + CODE[middle + 1 :])


def test_an_altered_length_field_is_called_altered() -> None:
    """The header's length field changed: the code is whole, but says it is not."""
    data = base64.urlsafe_b64decode(CODE[len(PREFIX) :] + "==")
    flags, length = struct.unpack_from(">BH", data)
    for wrong in (length + 40, length - 4):
        forged = struct.pack(">BH", flags, wrong) + data[3:]
        text = PREFIX + base64.urlsafe_b64encode(forged).decode().rstrip("=")
        assert "altered (its length field)" in message(text)
    # Characters 8 to 10 (the length field's) typed wrong, flags and all.
    assert "altered" in message(CODE[:8] + "zzz" + CODE[11:])


def test_the_ratui_pair_command_before_a_code_is_ignored() -> None:
    assert decode(f"ratui pair {CODE}") == ONE_NOISE_SERVICE
    assert decode(f"  ratui  pair\n{CODE[:40]}\n{CODE[40:]}\n") == ONE_NOISE_SERVICE
    assert looks_like_code(f"ratui pair {CODE[:20]}")


def test_tokens_are_not_in_the_repr() -> None:
    service = ONE_NOISE_SERVICE.services[0]
    assert service.token not in repr(ONE_NOISE_SERVICE)
    assert service.name in repr(ONE_NOISE_SERVICE)


def test_extra_characters_are_refused() -> None:
    assert "too many" in message(CODE + "AAAA")


def test_wrong_prefix_is_refused() -> None:
    assert "not a ratui pairing code" in message("rathole1:" + CODE[len(PREFIX) :])
    assert "not a ratui pairing code" in message("ssh-ed25519 AAAAC3Nza")
    assert "empty" in message("  \n ")


def test_future_version_is_refused() -> None:
    text = message("ratui2:" + CODE[len(PREFIX) :])
    assert "made by a newer ratui" in text and "version 2" in text


def test_invalid_fields_are_refused_on_encode() -> None:
    bad = [
        Pairing("no-port", "tcp", (PairedService("a", "tcp", "t"),)),
        Pairing("vps:2333", "quic", (PairedService("a", "tcp", "t"),)),
        Pairing("vps:2333", "noise", (PairedService("a", "tcp", "t"),)),
        Pairing("vps:2333", "tcp", ()),
        Pairing("vps:2333", "tcp", (PairedService("a", "sctp", "t"),)),
        Pairing("vps:2333", "tcp", (PairedService("a", "tcp", ""),)),
        Pairing(
            "vps:2333", "tcp", (PairedService("a", "tcp", "t"), PairedService("a", "udp", "u"))
        ),
        Pairing("vps:2333", "tcp", (PairedService("a", "tcp", "x" * 256),)),
        Pairing("vps:2333", "tcp", (PairedService("a\n", "tcp", "t"),)),
    ]
    for pairing in bad:
        with pytest.raises(PairingError, match="invalid field"):
            encode(pairing)


def forge(body: bytes, flags: int = 0) -> str:
    """A code with a valid frame and checksum around ``body``, as a buggy or hostile encoder
    could make: only the field checks can refuse it."""
    data = struct.pack(">BH", flags, len(body)) + body
    raw = data + struct.pack(">I", zlib.crc32(data))
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_framed_but_invalid_bodies_are_refused() -> None:
    service = b"\x03ssh\x00\x01t"
    cases = {
        b"\x07\x08vps:2333\x01" + service: "unknown transport",
        b"\x00\x08vps:2333\x01" + service + b"junk": "unexpected bytes",
        b"\x00\x03vps\x01" + service: "remote address",
        b"\x00\x08vps:2333\x00": "expected 1 to 255 services",
        b"\x00\x08vps:2333\x01\x03ssh\x04\x01t": "unknown flags",
        b"\x00\x08vps:2333\x01\x03ssh\x00\x05t": "cut short",
        b"\x00\x08vps:2333\x01\x02\xff\xfe\x00\x01t": "not UTF-8",
        b"\x01\x08vps:2333" + b"k" * 10: "Noise public key is cut short",
    }
    assert decode(forge(b"\x00\x08vps:2333\x01" + service)).services[0].token == "t"
    for body, words in cases.items():
        assert words in message(forge(body))
    assert "unknown flags" in message(forge(b"", flags=0x80))
    assert "does not decompress" in message(forge(b"not deflate", flags=1))


def test_looks_like_code() -> None:
    assert looks_like_code(CODE) and looks_like_code(" ratui9:xyz")
    assert not looks_like_code("/etc/ratui/client.toml")


# property tests --------------------------------------------------------------------------
names = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=20)
tokens = st.one_of(
    st.builds(new_token), st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1)
)
services = st.lists(
    st.builds(PairedService, names, st.sampled_from(["tcp", "udp"]), tokens),
    min_size=1,
    max_size=6,
    unique_by=lambda s: s.name,
).map(tuple)
pairings = st.one_of(
    st.builds(Pairing, st.just("vps.example.com:2333"), st.just("tcp"), services),
    st.builds(
        Pairing,
        st.just("[::1]:1"),
        st.just("noise"),
        services,
        noise_public_key=st.builds(lambda: generate_keypair()[1]),
    ),
    st.builds(
        Pairing,
        st.just("10.0.0.1:65535"),
        st.just("tls"),
        services,
        tls_hostname=st.one_of(st.none(), names),
    ),
)


@settings(max_examples=200, deadline=None)
@given(pairings)
def test_round_trip_property(pairing: Pairing) -> None:
    assert decode(encode(pairing)) == pairing


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_decode_any_text_raises_only_pairing_error(text: str) -> None:
    for candidate in (text, PREFIX + text):
        try:
            pairing = decode(candidate)
        except PairingError as exc:
            assert str(exc)
        else:  # only a real code decodes, and then it is one ratui can write again
            assert decode(encode(pairing)) == pairing


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutations_of_a_valid_code_are_refused(data: st.DataObject) -> None:
    body = CODE[len(PREFIX) :]
    where = data.draw(st.integers(0, len(body) - 1))
    kind = data.draw(st.sampled_from(["replace", "delete", "insert", "swap", "cut"]))
    char = data.draw(st.sampled_from(_ALPHABET))
    if kind == "replace":
        if char == body[where]:
            return
        mutated = body[:where] + char + body[where + 1 :]
    elif kind == "delete":
        mutated = body[:where] + body[where + 1 :]
    elif kind == "insert":
        mutated = body[:where] + char + body[where:]
    elif kind == "swap":
        if where + 1 >= len(body) or body[where] == body[where + 1]:
            return
        mutated = body[:where] + body[where + 1] + body[where] + body[where + 2 :]
    else:
        mutated = body[:where]
    with pytest.raises(PairingError):
        decode(PREFIX + mutated)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([0, 1]))
def test_any_framed_body_raises_only_pairing_error(body: bytes, flags: int) -> None:
    try:
        pairing = decode(forge(body, flags))
    except PairingError as exc:
        assert str(exc)
    else:
        assert decode(encode(pairing)) == pairing
