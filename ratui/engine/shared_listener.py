"""One public port shared by several TCP services, each visitor going to the service its TLS
server name or HTTP Host names (ratui extension, see :mod:`ratui.engine.routing`).

A :class:`SharedPort` listens while at least one of its services has a client connected, as a
service's own port does. Each visitor starts as a :class:`Sniffer`, which keeps what arrives
(at most :data:`~ratui.engine.routing.MAX_SNIFF_BYTES`) until :func:`~ratui.engine.routing.sniff`
can tell where it goes, for at most :data:`SNIFF_TIMEOUT` seconds. The visitors being sniffed
on all the shared ports of a server are held in one :class:`Pending`, which closes the oldest
past its limit, so a flood of silent visitors costs bounded memory. Then:

* a visitor for a connected service is handed to it, its bytes to be forwarded first and
  unchanged (TLS is passed through, never terminated);
* a visitor for a service whose client is not connected gets ``503 Service Unavailable``
  (HTTP), a TLS ``internal_error`` alert (TLS), or a close;
* a visitor that matches nothing, with no default route, gets ``421 Misdirected Request``, a
  TLS ``unrecognized_name`` alert, or a close.

A visitor that sends nothing within :data:`SNIFF_TIMEOUT` (a protocol where the server speaks
first, such as SSH) or that sends neither TLS nor HTTP/1.x goes to the default route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from .channel import Channel, ChannelClosed
from .config import split_host_port
from .routing import (
    ALERT_INTERNAL_ERROR,
    ALERT_UNRECOGNIZED_NAME,
    MAX_SNIFF_BYTES,
    Kind,
    Match,
    Routes,
    RouteTable,
    Sniffed,
    http_response,
    sniff,
    tls_alert,
)
from .transport.base import LISTEN_BACKLOG

#: Seconds a visitor has to send the bytes that route it (a ClientHello, a request head).
SNIFF_TIMEOUT = 5.0

#: Hands a routed visitor to the service's control channel.
Deliver = Callable[["Sniffer", Match], None]
#: Reports a refused visitor (rate-limited by the caller): (loop time, message).
Warn = Callable[[float, str], None]


class Sniffer(Channel):
    """A visitor on a shared port until its first bytes say where it goes. What it sent is kept
    in ``buffer``, as it came, to be forwarded first."""

    def __init__(self, port: SharedPort) -> None:
        super().__init__()
        self.port = port
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.port.arrived(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= MAX_SNIFF_BYTES and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def verdict(self, final: bool = False) -> Sniffed | None:
        return sniff(self.buffer, final=final or self.eof)


class Pending:
    """The visitors being sniffed, oldest first. Past ``limit`` the oldest is closed: silent
    or half-open visitors cannot hold more, and a real one needs a single round trip."""

    def __init__(self, limit: int, warn: Warn) -> None:
        self.limit = limit
        self._warn = warn
        self._tasks: dict[asyncio.Task[None], Sniffer] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def run(self, sniffer: Sniffer, sniffing: Coroutine[Any, Any, None]) -> None:
        loop = asyncio.get_running_loop()
        if len(self._tasks) >= self.limit:
            oldest, evicted = next(iter(self._tasks.items()))
            del self._tasks[oldest]
            oldest.cancel()
            evicted.abort()
            self._warn(
                loop.time(),
                f"{self.limit} visitors of shared ports are being sniffed at once: closed the "
                f"oldest, from {evicted.peer}",
            )
        task = loop.create_task(sniffing)
        self._tasks[task] = sniffer
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    def close(self) -> None:
        for task, sniffer in list(self._tasks.items()):
            task.cancel()
            sniffer.abort()
        self._tasks.clear()


class SharedPort:
    """The listener of one shared ``bind_addr`` and the route table of its services."""

    def __init__(self, addr: str, pending: Pending, warn: Warn) -> None:
        self.addr = addr
        self._pending = pending
        self._warn = warn
        self.routes: dict[str, Routes] = {}
        self.table = RouteTable({})
        #: Services whose client is connected, and how to hand them a visitor.
        self.connected: dict[str, Deliver] = {}
        self.listener: asyncio.AbstractServer | None = None
        self._lock = asyncio.Lock()

    # services -------------------------------------------------------------------------
    def add(self, name: str, routes: Routes) -> None:
        self.routes.pop(name, None)  # re-added last: it wins a pattern still claimed
        self.routes[name] = routes
        self.table = RouteTable(self.routes)

    def remove(self, name: str) -> None:
        self.routes.pop(name, None)
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
        self._pending.run(sniffer, self._route(sniffer))

    async def _route(self, sniffer: Sniffer) -> None:
        try:
            async with asyncio.timeout(SNIFF_TIMEOUT):
                sniffed = await sniffer.receive(lambda _reader: sniffer.verdict())
        except TimeoutError:
            sniffed = sniffer.verdict(final=True)
            assert sniffed is not None
        except ChannelClosed:
            sniffer.close()
            return
        if sniffer.closed:
            return  # it sent what routes it, and went
        match = self.table.match(sniffed)
        if match is None:
            self._refuse(
                sniffer,
                sniffed,
                ("421 Misdirected Request", ALERT_UNRECOGNIZED_NAME),
                "no route matches and there is no default_route",
            )
            return
        deliver = self.connected.get(match.service)
        if deliver is None:
            self._refuse(
                sniffer,
                sniffed,
                ("503 Service Unavailable", ALERT_INTERNAL_ERROR),
                f"the client of service {match.service} is not connected",
            )
            return
        deliver(sniffer, match)

    def _refuse(
        self, sniffer: Sniffer, sniffed: Sniffed, answer: tuple[str, int], reason: str
    ) -> None:
        """Answer in the visitor's own protocol where it has one, then close."""
        status, alert = answer
        if sniffed.kind is Kind.HTTP:
            sniffer.write(http_response(status))
        elif sniffed.kind is Kind.TLS:
            sniffer.write(tls_alert(alert))
        sniffer.close()
        asked = f" for {sniffed.host}" if sniffed.host else ""
        self._warn(
            asyncio.get_running_loop().time(),
            f"{sniffed.kind} visitor {sniffer.peer}{asked} at {self.addr} refused: {reason}",
        )
