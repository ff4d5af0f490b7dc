"""Checks of what a person types (service names, addresses), each returning the problem in
plain words or None; the wizards show the message next to the field, ``ratui init`` prints
it."""

from __future__ import annotations

import re

from ..engine.config import split_host_port

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_MAX = 63


def validate_name(name: str) -> str | None:
    """A service name: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
    digit, at most 63 characters. rathole accepts any TOML key; these are the names that
    read well in a config, a command line and the dashboard."""
    if not name:
        return "a service needs a name"
    if len(name) > NAME_MAX:
        return f"service name {name[:20]!r}... is longer than {NAME_MAX} characters"
    if not _NAME.fullmatch(name):
        return (
            f"service name {name!r} may only hold letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return None


def validate_addr(addr: str) -> str | None:
    """``host:port`` or ``[v6]:port``, as rathole's addresses."""
    try:
        split_host_port(addr)
    except ValueError as exc:
        return f'expected "host:port", got {addr!r} ({exc})'
    return None


def join_host_port(host: str, port: int | str) -> str:
    """The inverse of ``split_host_port``: ``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validate_port(text: str) -> str | None:
    """A port number to listen on, 1..65535."""
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        return f"expected a port number 1..65535, got {text!r}"
    return None
