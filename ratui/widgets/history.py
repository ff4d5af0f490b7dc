"""The dashboard's memory of throughput: one point per second per service, plus a total.

The engine only knows the current rate of each service (:class:`ServiceSnapshot.rx_rate`,
``tx_rate``); the graphs need the last minutes, so the UI keeps them here, fed by the
snapshots it polls anyway. Pure Python, no Textual.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from ..engine.state import Role, ServiceSnapshot, Snapshot

ServiceKey = tuple[Role, str]


def service_key(service: ServiceSnapshot) -> ServiceKey:
    return (service.role, service.name)


class RateHistory:
    """Byte rates (in + out) per second for the last ``capacity`` seconds.

    :meth:`record` runs once per wall-clock second that began (at the first poll in it) and
    books the growth of each service's byte totals since the previous record on that second,
    so every byte lands in the graph exactly once, even a burst shorter than a poll (the
    engine's own ``rx_rate`` is a one-second sample a poll can miss): the area under a graph
    is the bytes that went through. A gap (the UI was busy, the machine slept) spreads the
    bytes evenly over the missed seconds, so the time axis stays true.

    ``total`` sums the services of one role only: with a server and a client in one process
    every byte crosses both, and would count twice.
    """

    def __init__(self, capacity: int = 600) -> None:
        self.capacity = capacity
        self.last_second: int | None = None
        self._last_totals: dict[ServiceKey, tuple[int, int]] = {}
        self._series: dict[ServiceKey, deque[float]] = {}
        self.total: deque[float] = deque(maxlen=capacity)
        self.total_in: deque[float] = deque(maxlen=capacity)
        self.total_out: deque[float] = deque(maxlen=capacity)

    def record(self, now: float, snapshot: Snapshot, total_role: Role | None) -> bool:
        second = int(now)
        if self.last_second is not None and second <= self.last_second:
            return False
        first = self.last_second is None
        seconds = 1 if first else second - self.last_second
        repeat = min(seconds, self.capacity)
        self.last_second = second
        totals: dict[ServiceKey, tuple[int, int]] = {}
        total_in = total_out = 0.0
        for service in snapshot.services:
            key = service_key(service)
            totals[key] = (service.rx, service.tx)
            last = self._last_totals.get(key)
            if first or last is None:
                rx_rate = tx_rate = 0.0
            else:
                # The bytes since the last record, spread over the seconds that began since;
                # a service restarted by a reload starts again from zero: no negative rate.
                rx_rate = max(0, service.rx - last[0]) / seconds
                tx_rate = max(0, service.tx - last[1]) / seconds
            series = self._series.get(key)
            if series is None:
                # A newcomer starts at zero for the time already on the graphs.
                series = deque([0.0] * len(self.total), maxlen=self.capacity)
                self._series[key] = series
            series.extend([rx_rate + tx_rate] * repeat)
            if total_role is None or service.role == total_role:
                total_in += rx_rate
                total_out += tx_rate
        for key in list(self._series):
            if key not in totals:
                del self._series[key]
        self._last_totals = totals
        self.total.extend([total_in + total_out] * repeat)
        self.total_in.extend([total_in] * repeat)
        self.total_out.extend([total_out] * repeat)
        return True

    def series(self, key: ServiceKey) -> deque[float]:
        return self._series.get(key) or deque()

    def keys(self) -> Iterable[ServiceKey]:
        return self._series.keys()
