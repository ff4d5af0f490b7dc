"""PROXY protocol headers (HAProxy's proxy-protocol.txt, versions 1 and 2), sender side only.

A ratui extension (``proxy_protocol = "v1" | "v2"`` in a ``[server.services.NAME]``): the
server writes one of these into a data channel right after StartForwardTcp and before any byte
of the visitor, so it reaches the local service through any client, rathole's included. The
source is the visitor's address, the destination the address the visitor connected to.

Pure functions: addresses are what ``getpeername()``/``getsockname()`` return, i.e.
``(host, port)`` or ``(host, port, flowinfo, scope_id)``.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["V2_SIGNATURE", "encode", "encode_v1", "encode_v2"]

#: The 12 bytes every version 2 header starts with.
V2_SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
_V2_PROXY = 0x21  # version 2, command PROXY
_V2_TCP4 = 0x11  # AF_INET, STREAM
_V2_TCP6 = 0x21  # AF_INET6, STREAM
_V2_UNSPEC = 0x00  # AF_UNSPEC: the receiver keeps the connection's own addresses

_Ip = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(addr: object) -> tuple[_Ip, int] | None:
    """(address, port) from a socket address, IPv4-mapped IPv6 turned into IPv4, scope dropped;
    None for anything that is not an IP socket address."""
    if not (isinstance(addr, tuple) and len(addr) >= 2):
        return None
    host, port = addr[0], addr[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 65535:
        return None
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, port


def _pair(src: object, dst: object) -> tuple[tuple[_Ip, int], tuple[_Ip, int]] | None:
    s, d = _ip(src), _ip(dst)
    if s is None or d is None:
        return None
    if s[0].version != d[0].version:
        # One side mapped, the other not: express both as IPv6 when possible.
        if s[0].version == 4:
            s = (ipaddress.IPv6Address(f"::ffff:{s[0]}"), s[1])
        else:
            d = (ipaddress.IPv6Address(f"::ffff:{d[0]}"), d[1])
    return s, d


def encode_v1(src: object, dst: object) -> bytes:
    """``PROXY TCP4|TCP6 src dst sport dport\\r\\n``, or ``PROXY UNKNOWN\\r\\n``."""
    pair = _pair(src, dst)
    if pair is None:
        return b"PROXY UNKNOWN\r\n"
    (sip, sport), (dip, dport) = pair
    proto = "TCP4" if sip.version == 4 else "TCP6"
    return f"PROXY {proto} {sip} {dip} {sport} {dport}\r\n".encode("ascii")


def encode_v2(src: object, dst: object) -> bytes:
    """Signature, 0x21 (v2, PROXY), family, big-endian length, addresses, ports."""
    pair = _pair(src, dst)
    if pair is None:
        return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, _V2_UNSPEC, 0)
    (sip, sport), (dip, dport) = pair
    family = _V2_TCP4 if sip.version == 4 else _V2_TCP6
    body = sip.packed + dip.packed + struct.pack("!HH", sport, dport)
    return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(body)) + body


def encode(version: str, src: object, dst: object) -> bytes:
    """The header of ``version`` ("v1" or "v2")."""
    if version == "v1":
        return encode_v1(src, dst)
    if version == "v2":
        return encode_v2(src, dst)
    raise ValueError(f"unknown PROXY protocol version {version!r}")
