"""Log configuration from ``RATUI_LOG`` (or rathole's ``RUST_LOG``) for headless runs; the
format from ``--log-format`` or ``RATUI_LOG_FORMAT``: plain lines, or JSON lines for log
shippers."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": logging.CRITICAL + 10,
}


def level_from_env(environ: dict[str, str] | None = None) -> int:
    """``RATUI_LOG=debug`` wins; else the most verbose level named in an ``EnvFilter``-style
    ``RUST_LOG`` such as ``warn,rathole=debug``; else info, as rathole."""
    env = os.environ if environ is None else environ
    for var in ("RATUI_LOG", "RUST_LOG"):
        value = env.get(var, "").strip().lower()
        if not value:
            continue
        found = [
            _LEVELS[word]
            for directive in value.split(",")
            if (word := directive.rpartition("=")[2].strip()) in _LEVELS
        ]
        if found:
            return min(found)
    return logging.INFO


#: ANSI colour of each level's name on a terminal.
_COLOURS = {logging.DEBUG: "2", logging.INFO: "32", logging.WARNING: "33", logging.ERROR: "31"}


class _Formatter(logging.Formatter):
    """``2026-11-27T01:02:03.456Z  INFO ratui.server: message``, coloured on a terminal."""

    converter = time.gmtime

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z"
        level = record.levelname.replace("WARNING", "WARN").rjust(5)
        if self.colour:
            level = f"\x1b[{_COLOURS.get(record.levelno, '1')}m{level}\x1b[0m"
        text = f"{stamp} {level} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``{"time": "2026-11-27T01:02:03.456Z", "level": "info",
    "logger": "ratui.server", "message": "..."}`` (plus ``exception`` with a traceback)."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


LOG_FORMAT_ENV = "RATUI_LOG_FORMAT"
LOG_FORMATS = ("plain", "json")


def setup_logging(level: int | None = None, fmt: str = "plain") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_Formatter(colour=sys.stderr.isatty()))
    root = logging.getLogger("ratui")
    root.handlers[:] = [handler]
    root.setLevel(level_from_env() if level is None else level)
    root.propagate = False
