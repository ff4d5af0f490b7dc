"""Transport kinds behind ``[*.transport] type``; see :mod:`.base` for the interface."""

from __future__ import annotations

from ..config import TransportConfig, TransportType
from .base import Transport
from .tcp import TcpTransport


class TransportUnavailable(Exception):
    """The config asks for a transport this build of ratui cannot run yet."""


def make_transport(cfg: TransportConfig) -> Transport:
    if cfg.type is TransportType.TCP:
        return TcpTransport(cfg.tcp)
    raise TransportUnavailable(
        f'transport type "{cfg.type}" is not available yet in this version of ratui '
        '(use type = "tcp", or run rathole for this link for now)'
    )


__all__ = ["Transport", "TransportUnavailable", "make_transport"]
