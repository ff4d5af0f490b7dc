"""Noise transport messages decrypted in batches: every whole frame of a read decrypted into
one buffer, only the frame that straddles two reads copied together; with ``cryptography``'s
``decrypt_into`` and with the fallback for versions without it. Real Noise sessions (the
handshake of ``test_transport_noise.py``)."""

from __future__ import annotations

import os

import pytest
from test_transport_noise import feed_split, session_pair, session_pair_copies

from ratui.engine.transport.layered import LayerError
from ratui.engine.transport.noise import MAX_PLAINTEXT, NoiseSession, _into

#: Writes as a relay makes them: up to uvloop's 256 KiB reads, so messages of every size.
SIZES = (1, 300, 16 * 1024, 16 * 1024 + 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 256 * 1024, 7)


def wire_and_plaintext() -> tuple[bytes, bytes, list[NoiseSession]]:
    client, server, _ = session_pair()
    messages = [os.urandom(n) for n in SIZES]
    wire = b"".join(bytes(client.encrypt(m)) for m in messages)
    return wire, b"".join(messages), session_pair_copies(client, server, wire, 4)


@pytest.mark.parametrize("fallback", [False, True], ids=["decrypt_into", "fallback"])
def test_reads_of_any_size_give_the_plaintext_back(fallback: bool) -> None:
    wire, plain, receivers = wire_and_plaintext()
    if fallback:
        for receiver in receivers:
            receiver._decrypt_into = _into(receiver._decrypt)
    everything, big, small, odd = receivers
    assert feed_split(everything, wire, []) == plain
    assert feed_split(big, wire, list(range(256 * 1024, len(wire), 256 * 1024))) == plain
    assert feed_split(small, wire, list(range(1000, len(wire), 1000))) == plain
    assert feed_split(odd, wire, list(range(65_537, len(wire), 65_539))) == plain


def test_one_read_of_many_frames_is_one_buffer_and_counts_every_nonce() -> None:
    wire, plain, (receiver, *_) = wire_and_plaintext()
    first_nonce = receiver._rn
    out, eof = receiver.decrypt(wire)
    assert not eof and isinstance(out, bytearray) and out == plain
    frames = sum(-(-n // MAX_PLAINTEXT) for n in SIZES)
    assert receiver._rn == first_nonce + frames
    assert not receiver._buf


def test_a_tampered_frame_among_many_is_an_error() -> None:
    wire, _, (receiver, *_) = wire_and_plaintext()
    tampered = bytearray(wire)
    tampered[len(wire) // 2] ^= 1
    with pytest.raises(LayerError, match="failed authentication"):
        receiver.decrypt(bytes(tampered))
