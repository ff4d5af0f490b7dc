"""Service tokens: long random secrets, safe in TOML, URLs and shells."""

from __future__ import annotations

import secrets

#: Bytes of randomness in a token (43 base64url characters).
TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)
