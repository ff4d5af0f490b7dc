"""Transport kinds behind ``[*.transport] type``; see :mod:`.base` for the interface."""

from __future__ import annotations

from ..config import TransportConfig, TransportType
from .base import Transport, TransportSetupError
from .tcp import TcpTransport


class TransportUnavailable(Exception):
    """The config asks for a transport this build of ratui cannot run yet."""


def make_transport(cfg: TransportConfig) -> Transport:
    if cfg.type is TransportType.TCP:
        return TcpTransport(cfg.tcp)
    if cfg.type is TransportType.NOISE and cfg.noise is not None:
        from .noise import NoiseTransport

        try:
            return NoiseTransport(cfg.tcp, cfg.noise)
        except TransportSetupError as exc:
            raise TransportUnavailable(str(exc)) from None
    if cfg.type is TransportType.TLS and cfg.tls is not None:
        from .tls import TlsTransport

        try:
            return TlsTransport(cfg.tcp, cfg.tls)
        except TransportSetupError as exc:
            raise TransportUnavailable(str(exc)) from None
    if cfg.type is TransportType.WEBSOCKET and cfg.websocket is not None:
        from .websocket import WebsocketTransport

        try:
            return WebsocketTransport(cfg.tcp, cfg.websocket, cfg.tls)
        except TransportSetupError as exc:
            raise TransportUnavailable(str(exc)) from None
    raise TransportUnavailable(
        f'transport type "{cfg.type}" is not available yet in this version of ratui '
        '(use type = "tcp", or run rathole for this link for now)'
    )


__all__ = ["Transport", "TransportUnavailable", "make_transport"]
