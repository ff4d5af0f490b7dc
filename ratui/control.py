"""The control socket's wire format and where the socket lives; shared by the daemon
(:mod:`ratui.daemon`) and its clients (:mod:`ratui.remote`, ``ratui status``, ``ratui attach``).

The socket speaks JSON lines: one UTF-8 JSON object per ``\\n``-terminated line, both ways.
Every message carries ``"v": 1`` (:data:`PROTOCOL_VERSION`).

Requests (client to daemon), each with an ``id`` the response repeats::

    {"v": 1, "id": 1, "op": "hello"}
    {"v": 1, "id": 2, "op": "snapshot"}
    {"v": 1, "id": 3, "op": "events"}                  # recent_events(), oldest first
    {"v": 1, "id": 4, "op": "subscribe"}               # then "event" pushes until unsubscribe
    {"v": 1, "id": 5, "op": "unsubscribe"}
    {"v": 1, "id": 6, "op": "config"}                  # the config file's text
    {"v": 1, "id": 7, "op": "apply", "toml": "...", "persist": false}
    {"v": 1, "id": 8, "op": "reload"}                  # read the config file again

Responses: ``{"v": 1, "id": N, "ok": true, "result": {...}}`` or
``{"v": 1, "id": N, "ok": false, "error": {"code": "...", "message": "..."}}``.
Pushes (no ``id``): ``{"v": 1, "push": "event", "event": {...}, "dropped": N}``.

Snapshots and events travel as the engine's frozen dataclasses turned into JSON objects field
by field (enums as their values, tuples as lists): :func:`to_wire` and :func:`from_wire`, so a
field added to the engine's snapshot reaches clients without touching this module.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import types
import typing
import warnings
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

PROTOCOL_VERSION = 1
#: The longest line either side accepts (a config sent with ``apply`` included).
MAX_LINE = 8 * 1024 * 1024

#: Overrides where the control socket is; ``off`` turns it off for a daemon.
SOCKET_ENV = "RATUI_CONTROL_SOCKET"
SOCKET_NAME = "control.sock"
#: Where a systemd system unit written by ``ratui service install`` puts it (RuntimeDirectory).
SYSTEM_SOCKET = "/run/ratui/control.sock"
OFF_WORDS = frozenset({"off", "none", "no", "false", "0"})

OPS = ("hello", "snapshot", "events", "subscribe", "unsubscribe", "config", "apply", "reload")


class ProtocolError(Exception):
    """A message that does not follow this format, or an error answer from the daemon;
    ``code`` is the machine-readable reason."""

    def __init__(self, message: str, code: str = "protocol") -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------- encoding


def encode(message: dict[str, Any]) -> bytes:
    """One line of the protocol, ``v`` included."""
    return json.dumps({"v": PROTOCOL_VERSION, **message}, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line; ProtocolError unless it is a JSON object of this protocol version."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not a JSON line: {exc}", "bad_request") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object", "bad_request")
    if message.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version {message.get('v')!r} not supported (this side speaks "
            f"{PROTOCOL_VERSION})",
            "version",
        )
    return message


def to_wire(value: Any) -> Any:
    """A frozen dataclass (nested ones, enums and tuples included) as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    return value


T = TypeVar("T")
_HINTS: dict[type, dict[str, Any]] = {}


def from_wire(cls: type[T], data: Any) -> T:
    """Rebuild a ``cls`` dataclass from :func:`to_wire`'s output: enums, nested dataclasses and
    tuples restored, unknown keys ignored (a newer daemon), missing keys with a default filled
    in (an older one). ProtocolError if something required is missing or of the wrong type."""
    return _convert(cls, data, cls.__name__)


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ProtocolError:
                continue
        raise ProtocolError(f"{where}: unexpected {type(value).__name__}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[]") for v in value)
        return tuple(_convert(a, v, f"{where}[]") for a, v in zip(args, value, strict=True))
    if isinstance(hint, type):
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ProtocolError(f"{where}: expected an object")
            hints = _HINTS.get(hint)
            if hints is None:
                hints = _HINTS[hint] = typing.get_type_hints(hint)
            kwargs = {}
            for f in dataclasses.fields(hint):
                if f.name in value:
                    kwargs[f.name] = _convert(hints[f.name], value[f.name], f"{where}.{f.name}")
                elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ProtocolError(f"{where}: {f.name} missing")
            return hint(**kwargs)
        if issubclass(hint, Enum):
            try:
                return hint(value)
            except ValueError:
                raise ProtocolError(f"{where}: {value!r} is not a {hint.__name__}") from None
        if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if hint is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if hint in (str, bool) and type(value) is hint:
            return value
        raise ProtocolError(f"{where}: expected {hint.__name__}, got {type(value).__name__}")
    if hint is Any:
        return value
    raise ProtocolError(f"{where}: cannot read a {hint!r}")  # pragma: no cover - a new type


# ---------------------------------------------------------------------------- where


def socket_setting(environ: typing.Mapping[str, str] | None = None) -> str | None:
    """``RATUI_CONTROL_SOCKET`` as set (None when unset or empty)."""
    env = os.environ if environ is None else environ
    return env.get(SOCKET_ENV, "").strip() or None


def is_off(value: str | None) -> bool:
    return value is not None and value.strip().lower() in OFF_WORDS


def default_socket_path() -> Path:
    """Where a daemon puts its socket when not told: ``control.sock`` in the user's runtime
    directory (``$XDG_RUNTIME_DIR/ratui``, else platformdirs' fallback), else in the user's
    state directory (``~/.local/state/ratui``)."""
    import platformdirs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs' note about XDG_RUNTIME_DIR being unset
        try:
            base = platformdirs.user_runtime_dir("ratui")
        except OSError:
            base = platformdirs.user_state_dir("ratui")
    return Path(base) / SOCKET_NAME


def add_socket_argument(parser: argparse.ArgumentParser) -> None:
    """The optional ``SOCKET`` argument of the daemon's clients (``attach``, ``status``)."""
    parser.add_argument(
        "socket",
        nargs="?",
        metavar="SOCKET",
        help="the daemon's control socket (default: $RATUI_CONTROL_SOCKET, else the "
        "user's runtime directory)",
    )


def client_socket_path(given: str | None = None) -> Path:
    """The socket a client (``attach``, ``status``) talks to: ``given``, else
    ``RATUI_CONTROL_SOCKET``, else the first that exists of the default path and the path a
    systemd system unit uses (``/run/ratui/control.sock``); the default path if none does."""
    if given:
        return Path(given)
    setting = socket_setting()
    if setting and not is_off(setting):
        return Path(setting)
    default = default_socket_path()
    for candidate in (default, Path(SYSTEM_SOCKET)):
        if candidate.exists():
            return candidate
    return default
