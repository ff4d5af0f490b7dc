"""Unit tests of ratui.logsetup: the log level from RATUI_LOG / rathole's RUST_LOG, and the
line format of headless logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from ratui.logsetup import level_from_env, setup_logging

OFF = logging.CRITICAL + 10


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("trace", logging.DEBUG),
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warn", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        ("off", OFF),
        ("DEBUG", logging.DEBUG),
        ("  Warn  ", logging.WARNING),
    ],
)
@pytest.mark.parametrize("var", ["RATUI_LOG", "RUST_LOG"])
def test_plain_level_names(var: str, value: str, level: int) -> None:
    assert level_from_env({var: value}) == level


@pytest.mark.parametrize(
    ("value", "level"),
    [
        # EnvFilter directives: the most verbose level named anywhere wins.
        ("warn,rathole=debug", logging.DEBUG),
        ("rathole=debug,warn", logging.DEBUG),
        ("rathole::server=trace", logging.DEBUG),
        ("rathole::client=warn", logging.WARNING),
        ("error,rathole::server=info", logging.INFO),
        ("info,hyper=off", logging.INFO),
        ("warn, rathole = debug", logging.DEBUG),
        ("garbage,rathole=error", logging.ERROR),
    ],
)
def test_env_filter_directives(value: str, level: int) -> None:
    assert level_from_env({"RUST_LOG": value}) == level
    assert level_from_env({"RATUI_LOG": value}) == level


@pytest.mark.parametrize(
    "value",
    ["", "   ", "garbage", "verbose", "rathole", "rathole::server", "=", ",,,", "debugg", "5"],
)
def test_garbage_gives_info(value: str) -> None:
    assert level_from_env({"RUST_LOG": value}) == logging.INFO
    assert level_from_env({"RATUI_LOG": value}) == logging.INFO


def test_nothing_set_gives_info() -> None:
    assert level_from_env({}) == logging.INFO
    assert level_from_env({"PATH": "/usr/bin", "LOG": "debug"}) == logging.INFO


def test_ratui_log_wins_over_rust_log() -> None:
    assert level_from_env({"RATUI_LOG": "error", "RUST_LOG": "debug"}) == logging.ERROR
    assert level_from_env({"RATUI_LOG": "debug", "RUST_LOG": "error"}) == logging.DEBUG


def test_empty_or_unusable_ratui_log_falls_back_to_rust_log() -> None:
    assert level_from_env({"RATUI_LOG": "", "RUST_LOG": "warn"}) == logging.WARNING
    assert level_from_env({"RATUI_LOG": "nonsense", "RUST_LOG": "debug"}) == logging.DEBUG


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RATUI_LOG", raising=False)
    monkeypatch.setenv("RUST_LOG", "warn,rathole=trace")
    assert level_from_env() == logging.DEBUG
    monkeypatch.setenv("RATUI_LOG", "error")
    assert level_from_env() == logging.ERROR
    monkeypatch.delenv("RATUI_LOG")
    monkeypatch.delenv("RUST_LOG")
    assert level_from_env() == logging.INFO


# --------------------------------------------------------------------------- line format

LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<level>[ A-Z]{5}) (?P<name>[\w.]+): (?P<msg>.*)$"
)


@pytest.fixture
def ratui_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("ratui")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield logger
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


def test_setup_logging_format_and_level(
    ratui_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(logging.INFO)
    ratui_logger.debug("hidden debug")
    ratui_logger.info("hello %s", "world")
    logging.getLogger("ratui.server").warning("careful")
    ratui_logger.error("broken")
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3, err
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m["level"], m["name"], m["msg"]) for m in parsed if m] == [
        (" INFO", "ratui", "hello world"),
        (" WARN", "ratui.server", "careful"),
        ("ERROR", "ratui", "broken"),
    ]
    assert "\x1b[" not in err  # no colour when stderr is not a terminal


def test_setup_logging_reads_env_and_replaces_handlers(
    ratui_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RATUI_LOG", "warn")
    setup_logging()
    setup_logging()  # a second call does not duplicate lines
    assert len(ratui_logger.handlers) == 1
    ratui_logger.info("not shown")
    ratui_logger.warning("shown")
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert err.count("shown") == 1
