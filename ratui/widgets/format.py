"""Human-readable numbers for the dashboard: byte counts, rates, ages, clock times.

Pure functions, no Textual: every figure on screen goes through here so that the table, the
graphs and the header agree on units.
"""

from __future__ import annotations

import math
import time

_PREFIXES = ("", "k", "M", "G", "T", "P", "E")


def _scaled(value: float) -> tuple[str, str]:
    """``value`` as 3 significant digits and its SI prefix: (``"9.41"``, ``"G"``)."""
    if not math.isfinite(value) or value < 0:
        value = 0.0
    index = 0
    while value >= 999.5 and index < len(_PREFIXES) - 1:
        value /= 1000
        index += 1
    if index == 0:
        return f"{value:.0f}", ""
    if value >= 99.95:
        digits = f"{value:.0f}"
    elif value >= 9.995:
        digits = f"{value:.1f}"
    else:
        digits = f"{value:.2f}"
    return digits, _PREFIXES[index]


def format_bytes(count: float) -> str:
    """A byte count in SI units: ``0 B``, ``512 B``, ``1.23 kB``, ``941 MB``, ``1.05 GB``."""
    digits, prefix = _scaled(count)
    return f"{digits} {prefix}B"


def format_rate(bytes_per_second: float, *, bits: bool = True) -> str:
    """A rate that scales its unit: ``0 bit/s`` ... ``9.41 Gbit/s``, or ``B/s`` ... ``GB/s``."""
    if bits:
        digits, prefix = _scaled(bytes_per_second * 8)
        return f"{digits} {prefix}bit/s"
    digits, prefix = _scaled(bytes_per_second)
    return f"{digits} {prefix}B/s"


def format_age(seconds: float) -> str:
    """A compact age of at most 3 characters plus unit: ``4s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def format_duration(seconds: float) -> str:
    """A longer duration: ``12s``, ``5m 07s``, ``3h 04m``, ``2d 03h``."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def format_uptime(seconds: float) -> str:
    """``0:05:12``, ``27:03:00``: hours grow without a day unit, like ``uptime``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def format_clock(timestamp: float) -> str:
    """A wall-clock time of day in the local timezone, ``14:03:22``."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def format_window(seconds: float) -> str:
    """The span a graph covers: ``40 s``, ``2 min``, ``2.5 min``."""
    if seconds < 90:
        return f"{int(seconds)} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes == int(minutes) else f"{minutes:.1f} min"
