"""Does this client config really get in? One control-channel handshake, then close.

:func:`probe` opens the client's own transport (:mod:`ratui.engine.transport`) to the server
and runs the control-channel handshake of PROTOCOL.md §1.3 with the engine's protocol
functions, as :mod:`ratui.engine.client` does, then closes. The answer tells apart: the
server cannot be reached, the Noise (or TLS) handshake fails (for Noise: the server's key is
not the one in the config), the server has no such service, the server refuses the token,
and success. :func:`local_problem` checks the other end: that something answers at a TCP
service's local address.

A successful probe briefly takes the service's control channel on the server: a client that
is already running for that service loses its control channel when the probe authenticates
and reconnects a moment later (rathole's server keeps only the newest control channel of a
service). Its visitors in flight are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass

from ..engine.channel import Channel, ChannelClosed
from ..engine.client import authenticate, describe
from ..engine.config import (
    ClientConfig,
    ClientServiceConfig,
    ServiceType,
    TransportType,
    split_host_port,
)
from ..engine.protocol import (
    Ack,
    MessageReader,
    ProtocolError,
    service_digest,
)
from ..engine.transport import TransportUnavailable, make_transport
from ..engine.transport.layered import HandshakeError

#: Seconds to wait for the server to close after a successful handshake.
HANG_UP_TIMEOUT = 1.0


@dataclass(frozen=True)
class ProbeResult:
    service: str
    ok: bool
    problem: str = ""  # plain words, e.g. "the server refused the token for 'x'"


async def probe(cfg: ClientConfig, service: str, timeout: float = 5.0) -> ProbeResult:
    """Authenticate ``service`` of ``cfg`` against its server once, within ``timeout``
    seconds for the connection and again for the handshake, and report how it went."""
    svc = cfg.services.get(service)
    if svc is None:
        return ProbeResult(service, False, f"the client config has no service {service!r}")
    remote = cfg.remote_addr
    try:
        transport = make_transport(cfg.transport)
        transport.check_client()
    except (TransportUnavailable, OSError) as exc:
        return ProbeResult(service, False, str(exc))
    try:
        async with asyncio.timeout(timeout):
            channel = await transport.connect(remote, nodelay=True)
    except HandshakeError as exc:
        return ProbeResult(service, False, _handshake_problem(cfg, exc))
    except TimeoutError:
        return ProbeResult(service, False, f"cannot reach {remote}: no answer in {timeout:g} s")
    except OSError as exc:
        return ProbeResult(service, False, f"cannot reach {remote}: {_reason(exc)}")
    try:
        async with asyncio.timeout(timeout):
            ack, _ = await authenticate(channel, service_digest(service), svc.token)
            if ack is Ack.OK:
                await _hang_up(channel)
    except TimeoutError:
        return ProbeResult(
            service, False, f"the server at {remote} did not answer the handshake in {timeout:g} s"
        )
    except (OSError, ProtocolError) as exc:
        return ProbeResult(
            service,
            False,
            f"the server at {remote} broke off the handshake ({describe(exc)}): does it use "
            f'transport type = "{cfg.transport.type}" like this config?',
        )
    finally:
        channel.close()
    if ack is Ack.OK:
        return ProbeResult(service, True)
    if ack is Ack.SERVICE_NOT_EXIST:
        return ProbeResult(service, False, f"the server has no service {service!r}")
    return ProbeResult(service, False, f"the server refused the token for {service!r}")


async def local_problem(svc: ClientServiceConfig, timeout: float = 2.0) -> str | None:
    """Why nothing answers at the local address of TCP service ``svc``, or None when a
    connection opens there (it is closed at once). A UDP service cannot be asked without
    speaking its protocol: None."""
    if svc.type is ServiceType.UDP:
        return None
    host, port = split_host_port(svc.local_addr)
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"nothing answers at {svc.local_addr} (no answer in {timeout:g} s)"
    except OSError as exc:
        return f"nothing answers at {svc.local_addr}: {_reason(exc)}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def _hang_up(channel: Channel) -> None:
    """End our side and wait (briefly) for the server to close its own. Closing at once
    would reset the connection when the server's first commands arrive after the close, and
    the server would log a broken control channel instead of a client that left."""
    transport = channel.transport
    if transport is None or not transport.can_write_eof():
        return
    transport.write_eof()
    with contextlib.suppress(ChannelClosed, ProtocolError, OSError, TimeoutError):
        async with asyncio.timeout(HANG_UP_TIMEOUT):
            while True:  # CreateDataChannel and HeartBeat, until the server closes
                await channel.receive(MessageReader.next_control_cmd)


def _reason(exc: OSError) -> str:
    """ "connection refused" rather than asyncio's "Connect call failed ('1.2.3.4', 80)"."""
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno).lower()
    return describe(exc)


def _handshake_problem(cfg: ClientConfig, exc: HandshakeError) -> str:
    if cfg.transport.type is TransportType.NOISE:
        return f"the server's Noise key does not match ({exc})"
    return str(exc)
