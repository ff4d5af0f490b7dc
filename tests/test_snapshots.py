"""Snapshot tests of the dashboard's screens (pytest-textual-snapshot), at 80x24 and 160x48.

The app is given a real :class:`EngineState` filled by hand (no engine, no sockets), a frozen
clock and a fixed timezone, so every figure, age and time on screen is the same on every run.
The throughput history is fed through the app's own poll, one snapshot per second of fake
time. SVGs are stored under ``snapshots/test_snapshots/`` at the repository root; after a
deliberate change, look at them and refresh with
``pytest tests/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import pytest_textual_snapshot
from textual.pilot import Pilot

from ratui.app import EngineStatus, RatuiApp
from ratui.engine import state as state_mod
from ratui.engine.config import Config, parse_config
from ratui.engine.runtime import Roles
from ratui.engine.state import ControlState, EngineState, EventKind, Level, Role, ServiceStats

REPO = Path(__file__).resolve().parent.parent
SNAPSHOTS = REPO / "snapshots"

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: "now" in every snapshot
HISTORY_SECONDS = 180


class RootSnapshots(pytest_textual_snapshot.SVGImageExtension):
    """Store SVGs in ``snapshots/`` at the repo root instead of ``tests/__snapshots__``."""

    @classmethod
    def dirname(cls, *, test_location) -> str:  # type: ignore[no-untyped-def]
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture(autouse=True)
def _snapshot_dir_and_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", RootSnapshots)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class Clock:
    """A settable wall clock; also stands in for the ``time`` module of state.py while a
    state is built, so event and visitor timestamps are fixed."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@contextmanager
def frozen_state_time(clock: Clock) -> Iterator[None]:
    real = state_mod.time
    state_mod.time = clock  # type: ignore[assignment]
    try:
        yield
    finally:
        state_mod.time = real


SERVER_TOML = """
[server]
bind_addr = "0.0.0.0:2333"
[server.services.web]
bind_addr = "0.0.0.0:8080"
token = "x"
[server.services.ssh]
bind_addr = "0.0.0.0:5202"
token = "x"
[server.services.game]
type = "udp"
bind_addr = "0.0.0.0:27015"
token = "x"
"""

CLIENT_TOML = """
[client]
remote_addr = "vps.example.com:2333"
[client.services.nas]
local_addr = "192.168.1.20:5000"
token = "x"
[client.services.camera]
local_addr = "192.168.1.30:554"
token = "x"
"""


def _up(stats: ServiceStats, clock: Clock, since: float) -> None:
    clock.now = since
    stats.set_state(ControlState.UP)


def server_state(clock: Clock) -> tuple[EngineState, dict[str, ServiceStats]]:
    """A VPS with three services: a busy web site, ssh, and a game whose client is away."""
    with frozen_state_time(clock):
        state = EngineState()
        clock.now = T0 - 3725
        state.emit(EventKind.CONFIG_LOADED, "running /etc/ratui/server.toml")
        web = state.register(Role.SERVER, "web", "tcp", "0.0.0.0:8080")
        ssh = state.register(Role.SERVER, "ssh", "tcp", "0.0.0.0:5202")
        game = state.register(Role.SERVER, "game", "udp", "0.0.0.0:27015")
        _up(web, clock, T0 - 3725)
        web.peer = "198.51.100.7:40022"
        state.emit(
            EventKind.CONTROL_UP,
            "client 198.51.100.7:40022 connected; visitors welcome at 0.0.0.0:8080",
            service="web",
            role=Role.SERVER,
        )
        _up(ssh, clock, T0 - 3700)
        ssh.peer = "198.51.100.7:40018"
        state.emit(
            EventKind.CONTROL_UP,
            "client 198.51.100.7:40018 connected; visitors welcome at 0.0.0.0:5202",
            service="ssh",
            role=Role.SERVER,
        )
        clock.now = T0 - 1800
        visitor = state.open_visitor(ssh, "192.0.2.10:55001")
        visitor.rx, visitor.tx = 1_204_311, 8_700_452
        clock.now = T0 - 300
        state.emit(
            EventKind.AUTH_FAILED,
            "203.0.113.200:41000 sent an incorrect token",
            level=Level.WARNING,
            role=Role.SERVER,
        )
        clock.now = T0 - 120
        game.set_state(ControlState.WAITING)
        state.emit(
            EventKind.CONTROL_DOWN,
            "control channel closed: connection reset by peer; waiting for the client",
            level=Level.ERROR,
            service="game",
            role=Role.SERVER,
        )
        clock.now = T0 - 75
        visitor = state.open_visitor(web, "203.0.113.9:51234")
        visitor.rx, visitor.tx = 48_213, 3_912_004
        clock.now = T0 - 8
        visitor = state.open_visitor(web, "203.0.113.44:60011")
        visitor.rx, visitor.tx = 812, 96_330
        web.closed_rx, web.closed_tx = 12_400_118, 245_002_771
        web.visitors_total += 140
        ssh.visitors_total += 16
        web.idle_data_channels = 6
        ssh.idle_data_channels = 8
        clock.now = T0
    return state, {"web": web, "ssh": ssh, "game": game}


def client_state(clock: Clock) -> tuple[EngineState, dict[str, ServiceStats]]:
    """A home client: the NAS is up, the camera's control channel keeps failing."""
    with frozen_state_time(clock):
        state = EngineState()
        clock.now = T0 - 600
        state.emit(EventKind.CONFIG_LOADED, "running /home/me/client.toml")
        nas = state.register(Role.CLIENT, "nas", "tcp", "192.168.1.20:5000")
        camera = state.register(Role.CLIENT, "camera", "tcp", "192.168.1.30:554")
        for stats in (nas, camera):
            stats.peer = "vps.example.com:2333"
        _up(nas, clock, T0 - 600)
        nas.reconnects = 2
        state.emit(
            EventKind.CONTROL_UP,
            "control channel established with vps.example.com:2333",
            service="nas",
            role=Role.CLIENT,
        )
        clock.now = T0 - 40
        visitor = state.open_visitor(nas, "192.168.1.20:5000")
        visitor.rx, visitor.tx = 2_512_000, 181_000_000
        nas.last_heartbeat = T0 - 12
        nas.idle_data_channels = 8
        nas.visitors_total = 9
        camera.reconnects = 7
        camera.auth_failures = 1
        clock.now = T0 - 5
        camera.set_state(ControlState.RETRYING)
        camera.last_error = "connection refused by vps.example.com:2333"
        state.emit(
            EventKind.CONTROL_DOWN,
            "cannot establish the control channel: connection refused by vps.example.com:2333",
            level=Level.ERROR,
            service="camera",
            role=Role.CLIENT,
        )
        clock.now = T0
    return state, {"nas": nas, "camera": camera}


#: Final rates (bytes/s in, out) per service; the history leads up to them.
SERVER_RATES = {"web": (52_000.0, 2_400_000.0), "ssh": (310.0, 2_900.0), "game": (0.0, 0.0)}
CLIENT_RATES = {"nas": (40_000.0, 5_600_000.0), "camera": (0.0, 0.0)}


def wave(i: int, seed: int) -> float:
    """A deterministic load curve between 0 and 1 that ends at 1."""
    if i == HISTORY_SECONDS - 1:
        return 1.0
    x = i / 9 + seed
    return max(0.0, 0.55 + 0.35 * math.sin(x) + 0.1 * math.sin(3.1 * x))


def build_app(
    kind: str = "server", *, demo: bool = False, theme: str = "ratui-dark"
) -> tuple[RatuiApp, Clock, dict[str, ServiceStats]]:
    clock = Clock(T0)
    if kind == "server":
        state, stats = server_state(clock)
        config = parse_config(SERVER_TOML, source="/etc/ratui/server.toml")
        roles = Roles(server=True, client=False)
    else:
        state, stats = client_state(clock)
        config = parse_config(CLIENT_TOML, source="/home/me/client.toml")
        roles = Roles(server=False, client=True)
    if demo:
        config = demo_like_config()
        roles = Roles(server=True, client=True)
    app = RatuiApp(
        config,
        roles,
        demo=demo,
        state=state,
        run_engine=False,
        clock=clock,
        started_at=T0 - 3725,
        theme=theme,
    )
    # The header as it reads while a tunnel runs; no engine runs here.
    app.status = EngineStatus.RUNNING
    # The app starts before the recorded history; the seeder plays it up to T0.
    clock.now = T0 - HISTORY_SECONDS
    return app, clock, stats


def demo_like_config() -> Config:
    return parse_config(
        """
[server]
bind_addr = "127.0.0.1:40000"
[server.services.demo-web]
bind_addr = "127.0.0.1:40001"
token = "x"
[client]
remote_addr = "127.0.0.1:40000"
[client.services.demo-web]
local_addr = "127.0.0.1:40002"
token = "x"
""",
        source="<demo>",
    )


def seeder(app: RatuiApp, clock: Clock, stats: dict[str, ServiceStats], rates: dict):
    """A ``run_before`` that plays HISTORY_SECONDS of traffic into the app's graphs."""

    async def run_before(pilot: Pilot) -> None:
        for _ in range(100):
            if app.ui_ready:
                break
            await pilot.pause(0.01)
        for i in range(HISTORY_SECONDS):
            clock.now = T0 - HISTORY_SECONDS + 1 + i
            for seed, (name, (rx, tx)) in enumerate(rates.items()):
                load = wave(i, seed * 2)
                service = stats[name]
                service.rx_rate, service.tx_rate = rx * load, tx * load
                # The bytes of that second, as the relay would have counted them.
                service.closed_rx += int(rx * load)
                service.closed_tx += int(tx * load)
            app.poll()
        clock.now = T0
        app.poll()
        await pilot.pause()

    return run_before


def server_app(theme: str = "ratui-dark") -> tuple[RatuiApp, object]:
    app, clock, stats = build_app("server", theme=theme)
    return app, seeder(app, clock, stats, SERVER_RATES)


def client_app() -> tuple[RatuiApp, object]:
    app, clock, stats = build_app("client")
    return app, seeder(app, clock, stats, CLIENT_RATES)


# ---------------------------------------------------------------------------- the snapshots


def test_dashboard_80x24(snap_compare) -> None:
    """Services, throughput and the channels of the first service, in a VPS's 80x24."""
    app, run_before = server_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_dashboard_160x48(snap_compare) -> None:
    """Everything at once: wide table, graphs per service, channels and the event log."""
    app, run_before = server_app()
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_events_80x24(snap_compare) -> None:
    """``3`` swaps the channels for the event log; the error and the warning stand out."""
    app, run_before = server_app()
    assert snap_compare(app, press=["3"], terminal_size=(80, 24), run_before=run_before)


def test_channels_of_selected_service_80x24(snap_compare) -> None:
    """``j`` twice selects ssh: its control channel and its one visitor."""
    app, run_before = server_app()
    assert snap_compare(app, press=["j", "j"], terminal_size=(80, 24), run_before=run_before)


def test_sorted_by_rate_80x24(snap_compare) -> None:
    """Sorting by the current rate puts the busiest service first."""
    app, run_before = server_app()

    async def sort_by_rate(pilot: Pilot) -> None:
        await run_before(pilot)
        app.dashboard.table.set_sort("rate")

    assert snap_compare(app, terminal_size=(80, 24), run_before=sort_by_rate)


def test_filter_80x24(snap_compare) -> None:
    """``/`` opens the filter; typing narrows the table as you type."""
    app, run_before = server_app()
    assert snap_compare(
        app, press=["slash", "s", "s"], terminal_size=(80, 24), run_before=run_before
    )


def test_help_80x24(snap_compare) -> None:
    """``?`` lists the keys, read from the bindings themselves."""
    app, run_before = server_app()
    assert snap_compare(app, press=["question_mark"], terminal_size=(80, 24), run_before=run_before)


def test_help_160x48(snap_compare) -> None:
    app, run_before = server_app()
    assert snap_compare(
        app, press=["question_mark"], terminal_size=(160, 48), run_before=run_before
    )


def test_client_80x24(snap_compare) -> None:
    """A client with the NAS selected (``j``): retries, last heartbeat, one visitor."""
    app, run_before = client_app()
    assert snap_compare(app, press=["j"], terminal_size=(80, 24), run_before=run_before)


def test_client_retrying_160x48(snap_compare) -> None:
    """The failing camera selected: its error in the channels panel and in the log."""
    app, run_before = client_app()
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_light_theme_80x24(snap_compare) -> None:
    app, run_before = server_app(theme="ratui-light")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_light_theme_160x48(snap_compare) -> None:
    app, run_before = server_app(theme="ratui-light")
    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)


def test_demo_80x24(snap_compare) -> None:
    """The demo shows the curl command to try, right under the header."""
    app, clock, stats = build_app("server", demo=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=seeder(app, clock, stats, {}))


def test_quit_confirmation_80x24(snap_compare) -> None:
    """``q`` with visitors connected asks first."""
    app, run_before = server_app()
    assert snap_compare(app, press=["q"], terminal_size=(80, 24), run_before=run_before)
