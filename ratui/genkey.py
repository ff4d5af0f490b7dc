"""``ratui --genkey``: an X25519 keypair for the Noise transport, printed as rathole prints it."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class UnsupportedCurve(ValueError):
    pass


def generate_keypair(curve: str = "x25519") -> tuple[str, str]:
    """(private, public) as standard padded base64 of the raw 32-byte keys."""
    if curve != "x25519":
        raise UnsupportedCurve(
            f"curve {curve} is not supported: rathole's Noise transport only works with x25519"
        )
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw_private = private.private_bytes_raw()
    return base64.b64encode(raw_private).decode(), base64.b64encode(public).decode()


def format_keypair(private: str, public: str) -> str:
    return f"Private Key:\n{private}\n\nPublic Key:\n{public}\n"
