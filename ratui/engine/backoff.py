"""Exponential backoff with the same shape as the `backoff` crate that rathole uses.

rathole draws each delay as ``current * (1 +/- factor)`` and then grows ``current`` by the
multiplier, capped at ``max_interval`` (PROTOCOL.md section 3.3). Matching it keeps a ratui
client's retry rhythm familiar to rathole users and polite to the server.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Backoff:
    """A resettable sequence of randomized, growing delays (seconds)."""

    initial: float = 0.5
    factor: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 60.0
    max_elapsed: float | None = None
    _current: float = 0.0
    _started: float = 0.0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start over from the initial interval."""
        self._current = self.initial
        self._started = time.monotonic()

    def next(self) -> float | None:
        """The next delay, or None once ``max_elapsed`` has passed since the last reset."""
        if self.max_elapsed is not None and time.monotonic() - self._started > self.max_elapsed:
            return None
        spread = self._current * self.factor
        delay = random.uniform(self._current - spread, self._current + spread)
        if self._current >= self.max_interval / self.multiplier:
            self._current = self.max_interval
        else:
            self._current *= self.multiplier
        return delay


def control_channel_backoff(retry_interval: float) -> Backoff:
    """The client's reconnect policy for one service's control channel."""
    return Backoff(initial=0.5, factor=0.2, multiplier=3.0, max_interval=float(retry_interval))


def data_channel_backoff() -> Backoff:
    """The client's policy for opening one data channel: quick retries, give up after 10 s."""
    return Backoff(initial=0.5, factor=0.5, multiplier=1.5, max_interval=0.1, max_elapsed=10.0)


def listen_backoff() -> Backoff:
    """The server's policy for binding a service port that is still busy."""
    return Backoff(initial=0.5, factor=0.5, multiplier=1.5, max_interval=1.0)
