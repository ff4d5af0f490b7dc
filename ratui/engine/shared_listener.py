"""One public port shared by several TCP services, each visitor going to the service its TLS
server name or HTTP Host names (ratui extension, see :mod:`ratui.engine.routing`).

A :class:`SharedPort` listens while at least one of its services has a client connected, as a
service's own port does. Each visitor starts as a :class:`Sniffer`, which keeps what arrives
(at most :data:`~ratui.engine.routing.MAX_SNIFF_BYTES`) in a
:class:`~ratui.engine.routing.Sniff` until it can tell where the visitor goes, for at most
:data:`SNIFF_TIMEOUT` seconds. Sniffing runs on callbacks (:meth:`Channel.watch`), with no task
per visitor: the visitors being sniffed on all the shared ports of a server are held in one
:class:`Pending`, in order of arrival, with one timer for the oldest deadline. Past its limit
:class:`Pending` closes the oldest, so a flood of silent visitors costs bounded memory. Then:

* a visitor for a connected service is handed to it, its bytes to be forwarded first and
  unchanged (TLS is passed through, never terminated);
* a visitor for a service whose client is not connected gets ``503 Service Unavailable``
  (HTTP), a TLS ``internal_error`` alert (TLS), or a close;
* a visitor that matches nothing, with no default route, gets ``421 Misdirected Request``, a
  TLS ``unrecognized_name`` alert, or a close;
* an HTTP request whose head is malformed (two Host headers, a folded line, an empty Host,
  a blank line before the request line, ...) gets ``400 Bad Request``, default route or not.

A refused visitor is answered, its side of the connection is shut (FIN), and what it still
sends (the rest of a request body) is read and dropped for at most :data:`DRAIN_TIMEOUT`
seconds and :data:`MAX_DRAIN_BYTES` bytes before the close: a close with unread bytes would
send a reset, and the reset could destroy the answer before the visitor reads it. Refused
visitors being drained count in the same :class:`Pending` limit.

A visitor that sends nothing within :data:`SNIFF_TIMEOUT` (a protocol where the server speaks
first, such as SSH) or that sends neither TLS nor HTTP/1.x goes to the default route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .channel import Channel
from .config import split_host_port
from .routing import (
    ALERT_INTERNAL_ERROR,
    ALERT_UNRECOGNIZED_NAME,
    MAX_SNIFF_BYTES,
    Kind,
    Match,
    Routes,
    RouteTable,
    Sniff,
    Sniffed,
    http_response,
    tls_alert,
)
from .transport.base import LISTEN_BACKLOG

#: Seconds a visitor has to send the bytes that route it (a ClientHello, a request head).
SNIFF_TIMEOUT = 5.0
#: How long, and how many bytes, a refused visitor is read (and what it sends dropped) after
#: its answer, so that the close does not reset the connection under the answer.
DRAIN_TIMEOUT = 1.0
MAX_DRAIN_BYTES = 64 * 1024

#: Hands a routed visitor to the service's control channel.
Deliver = Callable[["Sniffer", Match], None]
#: Reports a refused visitor (rate-limited by the caller): (loop time, message).
Warn = Callable[[float, str], None]


class Sniffer(Channel):
    """A visitor on a shared port until its first bytes say where it goes. What it sent is kept
    in ``sniff.buffer``, as it came, to be forwarded first. Once refused it is ``draining``:
    what it sends is counted in ``dropped`` and thrown away."""

    def __init__(self, port: SharedPort) -> None:
        super().__init__()
        self.port = port
        self.sniff = Sniff()
        self.draining = False
        self.dropped = 0

    @property
    def buffer(self) -> bytearray:
        return self.sniff.buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.port.arrived(self)

    def data_received(self, data: bytes) -> None:
        if self.draining:
            self.dropped += len(data)
        else:
            self.sniff.feed(data)
            if len(self.sniff.buffer) >= MAX_SNIFF_BYTES and self.transport is not None:
                self.transport.pause_reading()
        self._wake()


class Pending:
    """The visitors being sniffed, and the refused ones being drained, each kind oldest first
    with its deadline (loop time); one timer, set for the earliest deadline, expires them all.
    Past ``limit`` (both kinds together) the oldest is closed, a drained one first: silent or
    half-open visitors cannot hold more, and a real one needs a single round trip."""

    def __init__(self, limit: int, warn: Warn) -> None:
        self.limit = limit
        self._warn = warn
        self._sniffing: dict[Sniffer, float] = {}
        self._draining: dict[Sniffer, float] = {}
        self._expiry: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._sniffing) + len(self._draining)

    def add(self, sniffer: Sniffer) -> None:
        """A new visitor, to be routed within :data:`SNIFF_TIMEOUT`."""
        loop = asyncio.get_running_loop()
        if len(self) >= self.limit:
            queue = self._draining or self._sniffing
            evicted = next(iter(queue))
            self.done(evicted)
            evicted.abort()
            self._warn(
                loop.time(),
                f"{self.limit} visitors of shared ports are being sniffed at once: closed the "
                f"oldest, from {evicted.peer}",
            )
        self._sniffing[sniffer] = loop.time() + SNIFF_TIMEOUT
        self._arm()

    def drain(self, sniffer: Sniffer) -> None:
        """A refused visitor, to be closed within :data:`DRAIN_TIMEOUT`."""
        self._sniffing.pop(sniffer, None)
        self._draining[sniffer] = asyncio.get_running_loop().time() + DRAIN_TIMEOUT
        self._arm()

    def done(self, sniffer: Sniffer) -> None:
        """The visitor left this queue (routed, closed, or evicted)."""
        sniffer.watch(None)
        self._sniffing.pop(sniffer, None)
        self._draining.pop(sniffer, None)

    def _arm(self) -> None:
        """Set the timer for the earliest deadline, if it is not set for it already."""
        heads = [next(iter(q.values())) for q in (self._sniffing, self._draining) if q]
        if not heads:
            return
        if self._expiry is not None:
            if self._expiry.when() <= min(heads):
                return
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_at(min(heads), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        now = asyncio.get_running_loop().time()
        for queue in (self._sniffing, self._draining):
            while queue:
                sniffer, deadline = next(iter(queue.items()))
                if deadline > now:
                    break
                if queue is self._sniffing:
                    sniffer.port.timed_out(sniffer)
                else:
                    self.done(sniffer)
                    sniffer.close()
        self._arm()

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for sniffer in [*self._sniffing, *self._draining]:
            self.done(sniffer)
            sniffer.abort()


class SharedPort:
    """The listener of one shared ``bind_addr`` and the route table of its services."""

    def __init__(self, addr: str, pending: Pending, warn: Warn) -> None:
        self.addr = addr
        self._pending = pending
        self._warn = warn
        self.routes: dict[str, Routes] = {}
        self.table = RouteTable({})
        #: How each service reports a visitor refused for it (one whose client is away).
        self._service_warn: dict[str, Warn] = {}
        #: Services whose client is connected, and how to hand them a visitor.
        self.connected: dict[str, Deliver] = {}
        self.listener: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()

    # services -------------------------------------------------------------------------
    def add(self, name: str, routes: Routes, warn: Warn) -> None:
        self.routes.pop(name, None)  # re-added last: it wins a pattern still claimed
        self.routes[name] = routes
        self._service_warn[name] = warn
        self.table = RouteTable(self.routes)

    def remove(self, name: str) -> None:
        self.routes.pop(name, None)
        self._service_warn.pop(name, None)
        self.table = RouteTable(self.routes)

    @property
    def empty(self) -> bool:
        return not self.routes

    async def attach(self, name: str, deliver: Deliver) -> None:
        """The client of ``name`` is connected: listen, if nobody does yet, and route its
        visitors to ``deliver``. Raises OSError if the port cannot be listened on."""
        async with self._lock:
            if self.listener is None:
                host, port = split_host_port(self.addr)
                self.listener = await asyncio.get_running_loop().create_server(
                    lambda: Sniffer(self),
                    host or None,
                    port,
                    reuse_address=True,
                    backlog=LISTEN_BACKLOG,
                )
            self.connected[name] = deliver

    def detach(self, name: str, deliver: Deliver) -> None:
        """The client of ``name`` is gone; the port closes when no client is left."""
        if self.connected.get(name) == deliver:
            del self.connected[name]
        if not self.connected and self.listener is not None:
            self.listener.close()
            self.listener = None

    # visitors -------------------------------------------------------------------------
    def arrived(self, sniffer: Sniffer) -> None:
        self._pending.add(sniffer)
        sniffer.watch(self._look)

    def _look(self, channel: Channel) -> None:
        """Bytes, an EOF or the loss arrived on a visitor being sniffed."""
        assert isinstance(channel, Sniffer)
        if channel.closed:
            self._pending.done(channel)  # it went before saying where to
            return
        sniffed = channel.sniff.verdict(final=channel.eof)
        if sniffed is not None:
            self._route(channel, sniffed)

    def timed_out(self, sniffer: Sniffer) -> None:
        """The visitor did not say where it goes within :data:`SNIFF_TIMEOUT`."""
        sniffed = sniffer.sniff.verdict(final=True)
        assert sniffed is not None
        self._route(sniffer, sniffed)

    def _route(self, sniffer: Sniffer, sniffed: Sniffed) -> None:
        self._pending.done(sniffer)
        if sniffed.malformed:
            self._refuse(sniffer, sniffed, "400 Bad Request", 0, "malformed HTTP request head")
            return
        match = self.table.match(sniffed)
        if match is None:
            self._refuse(
                sniffer,
                sniffed,
                "421 Misdirected Request",
                ALERT_UNRECOGNIZED_NAME,
                "no route matches and there is no default_route",
            )
            return
        deliver = self.connected.get(match.service)
        if deliver is None:
            self._refuse(
                sniffer,
                sniffed,
                "503 Service Unavailable",
                ALERT_INTERNAL_ERROR,
                f"the client of service {match.service} is not connected",
                self._service_warn.get(match.service),
            )
            return
        deliver(sniffer, match)

    def _refuse(
        self,
        sniffer: Sniffer,
        sniffed: Sniffed,
        status: str,
        alert: int,
        reason: str,
        warn: Warn | None = None,
    ) -> None:
        """Answer in the visitor's own protocol where it has one, shut its side, and drain
        what it still sends until it closes (see the module docstring)."""
        if sniffed.kind is Kind.HTTP:
            sniffer.write(http_response(status))
        elif sniffed.kind is Kind.TLS:
            sniffer.write(tls_alert(alert))
        asked = f" for {sniffed.host}" if sniffed.host else ""
        (warn or self._warn)(
            asyncio.get_running_loop().time(),
            f"{sniffed.kind} visitor {sniffer.peer}{asked} at {self.addr} refused: {reason}",
        )
        transport = sniffer.transport
        if sniffer.ended or transport is None or not transport.can_write_eof():
            sniffer.close()
            return
        transport.write_eof()
        sniffer.draining = True
        sniffer.sniff = Sniff()  # what it sent is no longer needed
        self._pending.drain(sniffer)
        sniffer.watch(self._drained)
        transport.resume_reading()

    def _drained(self, channel: Channel) -> None:
        assert isinstance(channel, Sniffer)
        if channel.ended or channel.dropped > MAX_DRAIN_BYTES:
            self._pending.done(channel)
            channel.close()
