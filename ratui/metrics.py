"""Prometheus metrics for a headless run, served only when ``--metrics-addr`` (or
``RATUI_METRICS_ADDR``) asks for it.

The exposition format is prometheus-client's; the HTTP side is a small asyncio server in the
engine's own loop, so each scrape reads :meth:`EngineState.snapshot` where the engine runs,
with no thread and no lock. ``GET /metrics`` (or ``HEAD``) answers; everything else is 404/405.

Metrics (labels ``role``, ``service``):

* ``ratui_service_up`` (1 when the control channel is up), ``ratui_service_visitors`` (open
  now), ``ratui_service_idle_data_channels``;
* counters ``ratui_service_visitors_total``, ``ratui_service_rx_bytes_total`` (visitors to the
  local service), ``ratui_service_tx_bytes_total`` (back), ``ratui_service_reconnects_total``,
  ``ratui_service_auth_failures_total``, ``ratui_service_udp_dropped_total``;
* ``ratui_reloads_total{result="applied"|"unchanged"|"refused"}``;
* ``ratui_events_total{kind}`` (auth failures, unknown services, bad peers... across all
  services, since start);
* ``ratui_info{version}``, ``ratui_start_time_seconds``.

A service that a reload restarts starts its counters again from zero, which Prometheus reads
as a counter reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from . import __version__
from .engine.config import split_host_port
from .engine.state import ControlState, EngineState, Event, EventKind, Level, Subscription

log = logging.getLogger("ratui.metrics")

REQUEST_TIMEOUT = 10.0  # seconds a scraper has to send its request
MAX_HEADER_LINES = 100


class EngineCollector(Collector):
    """Turns one snapshot of an :class:`EngineState` into metric families per scrape, and
    counts events (reloads among them) from its stream."""

    def __init__(self, state: EngineState) -> None:
        self.state = state
        self.started_at = time.time()
        self.events: Counter[EventKind] = Counter()
        self.reloads: Counter[str] = Counter()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._subscription = self.state.subscribe(maxsize=100_000)
        for event in self.state.recent_events():  # what happened before the endpoint started
            self._add(event)
        self._task = asyncio.get_running_loop().create_task(self._count())

    def _add(self, event: Event) -> None:
        self.events[event.kind] += 1
        if event.kind is EventKind.CONFIG_RELOADED:
            # The runtime reports a reload that changed nothing at debug level.
            self.reloads["unchanged" if event.level is Level.DEBUG else "applied"] += 1
        elif event.kind is EventKind.CONFIG_REFUSED:
            self.reloads["refused"] += 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            self._subscription.close()

    async def _count(self) -> None:
        assert self._subscription is not None
        async for event in self._subscription:
            self._add(event)

    def _drain(self) -> None:
        """Count what arrived since the counting task last ran, so a scrape is current."""
        if self._subscription is not None:
            while (event := self._subscription.get_nowait()) is not None:
                self._add(event)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        self._drain()
        snapshot = self.state.snapshot()
        labels = ["role", "service"]

        def gauge(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        up = gauge("ratui_service_up", "1 when the service's control channel is up, else 0.")
        visitors = gauge("ratui_service_visitors", "Visitor connections open now.")
        idle = gauge("ratui_service_idle_data_channels", "Data channels waiting for a visitor.")
        visitors_total = counter("ratui_service_visitors", "Visitor connections since start.")
        rx = counter("ratui_service_rx_bytes", "Bytes from visitors to the local service.")
        tx = counter("ratui_service_tx_bytes", "Bytes from the local service to visitors.")
        reconnects = counter("ratui_service_reconnects", "Control channel reconnections.")
        auth = counter("ratui_service_auth_failures", "Refused authentications.")
        udp = counter("ratui_service_udp_dropped", "UDP datagrams dropped.")
        for s in snapshot.services:
            key = [str(s.role), s.name]
            up.add_metric(key, 1.0 if s.state is ControlState.UP else 0.0)
            visitors.add_metric(key, s.visitors_open)
            idle.add_metric(key, s.idle_data_channels)
            visitors_total.add_metric(key, s.visitors_total)
            rx.add_metric(key, s.rx)
            tx.add_metric(key, s.tx)
            reconnects.add_metric(key, s.reconnects)
            auth.add_metric(key, s.auth_failures)
            udp.add_metric(key, s.udp_dropped)
        yield from (up, visitors, idle, visitors_total, rx, tx, reconnects, auth, udp)

        reloads = CounterMetricFamily(
            "ratui_reloads",
            "Config reloads: applied (something changed), unchanged, or refused.",
            labels=["result"],
        )
        for result in ("applied", "unchanged", "refused"):
            reloads.add_metric([result], self.reloads[result])
        yield reloads
        events = CounterMetricFamily("ratui_events", "Engine events by kind.", labels=["kind"])
        for kind in EventKind:
            events.add_metric([kind.value], self.events[kind])
        yield events
        info = GaugeMetricFamily("ratui_info", "ratui's version.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        yield GaugeMetricFamily(
            "ratui_start_time_seconds", "When ratui started, Unix time.", value=self.started_at
        )


class MetricsServer:
    """``GET /metrics`` over HTTP/1.1 at ``addr`` (``host:port``), one request a connection."""

    def __init__(self, state: EngineState, addr: str) -> None:
        self.addr = addr
        self.collector = EngineCollector(state)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Listen; OSError if the address cannot be bound."""
        host, port = split_host_port(self.addr)
        self._server = await asyncio.start_server(self._handle, host or None, port)
        self.collector.start()
        log.info("Metrics at http://%s/metrics", self.addr)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        await self.collector.stop()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, headers, body, head = await asyncio.wait_for(
                self._read_request(reader), REQUEST_TIMEOUT
            )
            lines = [f"HTTP/1.1 {status}", *headers, f"Content-Length: {len(body)}"]
            lines.append("Connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if not head:
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _read_request(
        self, reader: asyncio.StreamReader
    ) -> tuple[str, list[str], bytes, bool]:
        request_line = (await reader.readline()).decode("latin-1").strip()
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readline()).strip() == b"":
                break
        else:
            return "431 Request Header Fields Too Large", [], b"", False
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", ["Content-Type: text/plain"], b"bad request\n", False
        method, target = parts[0], parts[1]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", ["Allow: GET, HEAD"], b"", False
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", [f"Content-Type: {CONTENT_TYPE_LATEST}"], self.render(), head
        if path == "/":
            body = b"ratui: metrics at /metrics\n"
            return "200 OK", ["Content-Type: text/plain; charset=utf-8"], body, head
        return "404 Not Found", ["Content-Type: text/plain"], b"not found\n", head


def check_addr(addr: str) -> str:
    """``host:port`` or ValueError with a reason."""
    split_host_port(addr)
    return addr
