"""The one read interface of the engine: immutable snapshots and a stream of events.

The engine mutates small ``__slots__`` records (:class:`ServiceStats`, :class:`VisitorRecord`)
with plain integer additions on its hot path. Everything outside the engine (the TUI, the
daemon's control socket, metrics) reads only :meth:`EngineState.snapshot` and
:meth:`EngineState.subscribe`, which copy those records into frozen values.

Service byte totals are the sum of the bytes of closed visitors and of the visitors still open,
so the relay counts each chunk once, on the visitor's own record.

A visitor opening and closing is an event (at debug level) only while someone can see it: a
subscriber (the dashboard, an attached client, the metrics endpoint) or a debug log. Otherwise
the bookkeeping of a visitor is a few integer additions and dict updates, which matters at
thousands of visitors per second.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

log = logging.getLogger("ratui")


class Role(StrEnum):
    SERVER = "server"
    CLIENT = "client"


class ControlState(StrEnum):
    """Where a service's control channel is."""

    WAITING = "waiting"  # server: listening for the client of this service
    CONNECTING = "connecting"  # client: dialling and authenticating
    UP = "up"  # authenticated; visitors are forwarded
    RETRYING = "retrying"  # client: lost or refused, waiting out the backoff
    STOPPED = "stopped"


class EventKind(StrEnum):
    CONTROL_UP = "control_up"
    CONTROL_DOWN = "control_down"
    AUTH_FAILED = "auth_failed"
    UNKNOWN_SERVICE = "unknown_service"
    BAD_PEER = "bad_peer"
    VISITOR_OPENED = "visitor_opened"
    VISITOR_CLOSED = "visitor_closed"
    SERVICE_STARTED = "service_started"
    SERVICE_STOPPED = "service_stopped"
    CONFIG_LOADED = "config_loaded"
    CONFIG_ERROR = "config_error"
    CONFIG_RELOADED = "config_reloaded"  # a new config was applied: what changed
    CONFIG_REFUSED = "config_refused"  # a new config was not applied: why; the old one runs
    ERROR = "error"


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_LOG_LEVELS = {
    Level.DEBUG: logging.DEBUG,
    Level.INFO: logging.INFO,
    Level.WARNING: logging.WARNING,
    Level.ERROR: logging.ERROR,
}


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    time: float
    kind: EventKind
    level: Level
    message: str
    service: str | None = None
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class VisitorSnapshot:
    id: int
    peer: str
    opened_at: float
    rx: int
    tx: int
    #: On a shared port: the host name that routed it (see routing.Match.label), else None.
    route: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """One service as seen at one moment. ``rx`` is visitor-to-local-service bytes, ``tx`` the
    replies; rates are bytes per second over the last sampling period."""

    name: str
    role: Role
    type: str
    address: str
    peer: str | None
    state: ControlState
    state_since: float
    visitors_open: int
    visitors_total: int
    rx: int
    tx: int
    rx_rate: float
    tx_rate: float
    reconnects: int
    auth_failures: int
    last_error: str | None
    last_heartbeat: float | None
    idle_data_channels: int
    visitors: tuple[VisitorSnapshot, ...]
    udp_dropped: int = 0  # UDP datagrams dropped (full data channel or socket, oversized)
    #: Host-name routes of a service on a shared port (patterns, then "default"), else ().
    routes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: float
    services: tuple[ServiceSnapshot, ...]

    def service(self, role: Role | str, name: str) -> ServiceSnapshot | None:
        return next((s for s in self.services if s.role == role and s.name == name), None)


class VisitorRecord:
    """Byte counters of one visitor connection; the relay adds to ``rx``/``tx`` directly."""

    __slots__ = ("id", "opened_at", "peer", "route", "rx", "tx")

    def __init__(self, visitor_id: int, peer: str, route: str | None = None) -> None:
        self.id = visitor_id
        self.peer = peer
        self.route = route
        self.opened_at = time.time()
        self.rx = 0
        self.tx = 0


class ServiceStats:
    """Mutable, engine-side record of one service. Only the engine writes it."""

    __slots__ = (
        "_last_sample",
        "address",
        "auth_failures",
        "closed_rx",
        "closed_tx",
        "idle_data_channels",
        "last_error",
        "last_heartbeat",
        "name",
        "peer",
        "reconnects",
        "role",
        "routes",
        "rx_rate",
        "state",
        "state_since",
        "tx_rate",
        "type",
        "udp_dropped",
        "visitors",
        "visitors_total",
    )

    def __init__(self, role: Role, name: str, type_: str, address: str) -> None:
        self.role = role
        self.name = name
        self.type = type_
        self.address = address
        self.peer: str | None = None
        self.state = ControlState.STOPPED
        self.state_since = time.time()
        self.visitors: dict[int, VisitorRecord] = {}
        self.visitors_total = 0
        self.closed_rx = 0
        self.closed_tx = 0
        self.rx_rate = 0.0
        self.tx_rate = 0.0
        self._last_sample: tuple[float, int, int] | None = None
        self.reconnects = 0
        self.auth_failures = 0
        self.last_error: str | None = None
        self.last_heartbeat: float | None = None
        self.idle_data_channels = 0
        self.udp_dropped = 0
        self.routes: tuple[str, ...] = ()

    def set_state(self, state: ControlState) -> None:
        if state is not self.state:
            self.state = state
            self.state_since = time.time()

    def totals(self) -> tuple[int, int]:
        rx, tx = self.closed_rx, self.closed_tx
        for v in self.visitors.values():
            rx += v.rx
            tx += v.tx
        return rx, tx

    def sample(self, now: float) -> None:
        """Turn the byte totals into rates; the runtime calls this about once a second."""
        rx, tx = self.totals()
        if self._last_sample is not None:
            then, last_rx, last_tx = self._last_sample
            elapsed = now - then
            if elapsed > 0:
                self.rx_rate = (rx - last_rx) / elapsed
                self.tx_rate = (tx - last_tx) / elapsed
        self._last_sample = (now, rx, tx)

    def snapshot(self) -> ServiceSnapshot:
        rx, tx = self.totals()
        return ServiceSnapshot(
            name=self.name,
            role=self.role,
            type=self.type,
            address=self.address,
            peer=self.peer,
            state=self.state,
            state_since=self.state_since,
            visitors_open=len(self.visitors),
            visitors_total=self.visitors_total,
            rx=rx,
            tx=tx,
            rx_rate=self.rx_rate,
            tx_rate=self.tx_rate,
            reconnects=self.reconnects,
            auth_failures=self.auth_failures,
            last_error=self.last_error,
            last_heartbeat=self.last_heartbeat,
            idle_data_channels=self.idle_data_channels,
            visitors=tuple(
                VisitorSnapshot(v.id, v.peer, v.opened_at, v.rx, v.tx, v.route)
                for v in self.visitors.values()
            ),
            udp_dropped=self.udp_dropped,
            routes=self.routes,
        )


class Subscription:
    """An async iterator of events with a bounded queue: a slow reader loses the oldest events
    (counted in ``dropped``) instead of slowing the engine or growing memory."""

    def __init__(self, owner: EngineState, maxsize: int) -> None:
        self._owner = owner
        self._queue: deque[Event] = deque(maxlen=maxsize)
        self._wakeup = asyncio.Event()
        self.dropped = 0

    def _push(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    async def get(self) -> Event:
        while not self._queue:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        self._owner._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EngineState:
    """Registry of every running service's stats plus the event history and subscribers."""

    def __init__(self, history: int = 1000) -> None:
        self._services: dict[tuple[Role, str], ServiceStats] = {}
        self._subscribers: set[Subscription] = set()
        self._history: deque[Event] = deque(maxlen=history)
        self._seq = itertools.count(1)
        self._visitor_ids = itertools.count(1)

    def register(self, role: Role, name: str, type_: str, address: str) -> ServiceStats:
        stats = ServiceStats(role, name, type_, address)
        self._services[(role, name)] = stats
        return stats

    def unregister(self, stats: ServiceStats) -> None:
        if self._services.get((stats.role, stats.name)) is stats:
            del self._services[(stats.role, stats.name)]

    def open_visitor(
        self, stats: ServiceStats, peer: str, route: str | None = None
    ) -> VisitorRecord:
        record = VisitorRecord(next(self._visitor_ids), peer, route)
        stats.visitors[record.id] = record
        stats.visitors_total += 1
        if self._visitors_watched():
            self.emit(
                EventKind.VISITOR_OPENED,
                f"visitor #{record.id} from {peer}" + (f" for {route}" if route else ""),
                level=Level.DEBUG,
                service=stats.name,
                role=stats.role,
            )
        return record

    def close_visitor(self, stats: ServiceStats, record: VisitorRecord) -> None:
        if stats.visitors.pop(record.id, None) is None:
            return
        stats.closed_rx += record.rx
        stats.closed_tx += record.tx
        if self._visitors_watched():
            self.emit(
                EventKind.VISITOR_CLOSED,
                f"visitor #{record.id} closed after {record.rx} bytes in, {record.tx} bytes out",
                level=Level.DEBUG,
                service=stats.name,
                role=stats.role,
            )

    def _visitors_watched(self) -> bool:
        """Whether a visitor's events would reach anyone: a subscriber or a debug log."""
        return bool(self._subscribers) or log.isEnabledFor(logging.DEBUG)

    def emit(
        self,
        kind: EventKind,
        message: str,
        *,
        level: Level = Level.INFO,
        service: str | None = None,
        role: Role | None = None,
    ) -> Event:
        """Record an event, fan it out to subscribers and write it to the log, all at once, so
        that the log and the event stream never disagree. Messages must never hold secrets."""
        event = Event(next(self._seq), time.time(), kind, level, message, service, role)
        self._history.append(event)
        for sub in self._subscribers:
            sub._push(event)
        if log.isEnabledFor(_LOG_LEVELS[level]):
            prefix = f"{role} service {service}: " if service else ""
            log.log(_LOG_LEVELS[level], "%s%s", prefix, message)
        return event

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def recent_events(self) -> tuple[Event, ...]:
        return tuple(self._history)

    def sample_rates(self) -> None:
        now = time.monotonic()
        for stats in self._services.values():
            stats.sample(now)

    def snapshot(self) -> Snapshot:
        return Snapshot(time.time(), tuple(s.snapshot() for s in self._services.values()))
