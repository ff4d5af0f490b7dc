"""The dashboard driven with keys (Textual's Pilot), as a user would.

Two kinds of app: one showing a hand-built, frozen :class:`EngineState` (the same as the
snapshot tests) to check keys, sorting and filtering exactly; and one running a real tunnel
(server and client in the app's own event loop, on 127.0.0.1) through which the test pushes
bytes and then reads them back off the panels. Plus the command line on a real pseudo-terminal:
the UI opens there, ``q`` leaves the terminal as it was, ``--daemon`` stays headless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from conftest import free_port
from rich.style import Style
from terminals import Terminal, open_terminals
from test_snapshots import SERVER_RATES, T0, build_app, frozen_state_time, seeder, server_app
from textual.pilot import Pilot
from textual.widgets import Input

from ratui.app import EngineStatus, RatuiApp, default_theme
from ratui.cli import wants_tui
from ratui.engine.config import parse_config
from ratui.engine.runtime import Roles
from ratui.engine.state import ControlState, Level, Role, ServiceSnapshot, Snapshot
from ratui.screens.confirm import ConfirmQuitScreen
from ratui.screens.dashboard import DashboardScreen
from ratui.screens.help import HelpScreen
from ratui.widgets.channels import ChannelsPanel, VisitorsTable
from ratui.widgets.events import EventLog
from ratui.widgets.format import format_bytes, format_rate
from ratui.widgets.graph import columns, render_bars
from ratui.widgets.history import RateHistory
from ratui.widgets.services import ServicesTable

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def until(pilot: Pilot, condition: Callable[[], bool], what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def rows(table: ServicesTable) -> list[str]:
    return [str(row.key.value) for row in table.ordered_rows]


def names(table: ServicesTable) -> list[str]:
    return [key.partition(":")[2] for key in rows(table)]


def plain(widget: Any) -> str:
    """The text a Static shows."""
    content = widget.content
    return content.plain if hasattr(content, "plain") else str(content)


def cell(table: ServicesTable, key: str, column: str) -> str:
    return table.get_cell(key, column).plain


async def started(pilot: Pilot) -> RatuiApp:
    """The frozen server app with its throughput history played in."""
    app = pilot.app
    assert isinstance(app, RatuiApp)
    await until(pilot, lambda: app.ui_ready, "the dashboard")
    return app


# ---------------------------------------------------------------------- keys on a frozen state


def frozen(size: tuple[int, int] = (80, 24)):
    """Run ``body(pilot, app)`` against the frozen server app at ``size``."""

    def wrap(body: Callable[[Pilot, RatuiApp], Awaitable[None]]) -> Callable[[], None]:
        def test() -> None:
            async def main() -> None:
                app, run_before = server_app()
                async with app.run_test(size=size) as pilot:
                    await run_before(pilot)
                    await body(pilot, app)

            run(main())

        test.__name__ = body.__name__
        test.__doc__ = body.__doc__
        return test

    return wrap


@frozen()
async def test_help_opens_and_closes(pilot: Pilot, app: RatuiApp) -> None:
    """``?`` opens the key list (read from the bindings); esc and ``?`` close it."""
    await pilot.press("question_mark")
    assert isinstance(app.screen, HelpScreen)
    text = " ".join(f"{key} {what}" for _, rows in app.screen.listing for key, what in rows)
    for expected in ("Sort by the next column", "Filter the services", "Quit", "Lowest level"):
        assert expected in text
    await pilot.press("escape")
    assert isinstance(app.screen, DashboardScreen)
    await pilot.press("question_mark", "question_mark")
    assert isinstance(app.screen, DashboardScreen)


@frozen()
async def test_slash_filters_as_you_type_and_escape_clears(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    assert names(table) == ["game", "ssh", "web"]
    await pilot.press("slash")
    assert isinstance(app.focused, Input)
    await pilot.press("s", "s")
    assert names(table) == ["ssh"]
    assert "filter: ss" in str(app.dashboard.query_one("#services-panel").border_subtitle)
    await pilot.press("escape")
    assert names(table) == ["game", "ssh", "web"]
    assert app.focused is table
    assert not app.dashboard.query_one("#filter").display


@frozen()
async def test_filter_matches_state_and_enter_keeps_it(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    await pilot.press("slash", *"wait", "enter")
    assert names(table) == ["game"]  # the one whose control channel waits
    assert app.focused is table
    await pilot.press("escape")  # from the table, esc clears a kept filter
    assert names(table) == ["game", "ssh", "web"]


@frozen()
async def test_s_cycles_the_sort_and_shift_s_reverses(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    assert (table.sort_by, names(table)) == ("name", ["game", "ssh", "web"])
    await pilot.press("s")  # role: all servers, so by name
    assert table.sort_by == "role"
    await pilot.press("s")  # control: waiting before up
    assert (table.sort_by, names(table)[0]) == ("control", "game")
    await pilot.press("s")  # visitors open, most first
    assert (table.sort_by, names(table)) == ("visitors", ["web", "ssh", "game"])
    await pilot.press("S")
    assert names(table) == ["game", "ssh", "web"]
    assert "visitors open ▲" in str(app.dashboard.query_one("#services-panel").border_subtitle)


@frozen()
async def test_cursor_stays_on_its_service_across_sorts(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    await pilot.press("G")  # vim: last row
    assert table.selected_key == "server:web"
    for _ in range(4):
        await pilot.press("s")
        assert table.selected_key == "server:web"
        assert rows(table)[table.cursor_row] == "server:web"


@frozen()
async def test_vim_keys_move_and_enter_opens_channels(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    await pilot.press("j")
    assert table.selected_key == "server:ssh"
    await pilot.press("k", "k")
    assert table.selected_key == "server:game"
    await pilot.press("G")
    assert table.selected_key == "server:web"
    await pilot.press("g")
    assert table.selected_key == "server:game"
    await pilot.press("j", "enter")
    await pilot.pause()
    assert isinstance(app.focused, VisitorsTable)
    await pilot.press("escape")
    assert app.focused is table


@frozen()
async def test_selecting_a_service_shows_its_channels(pilot: Pilot, app: RatuiApp) -> None:
    channels = app.dashboard.query_one(ChannelsPanel)
    visitors = app.dashboard.query_one(VisitorsTable)

    def peers() -> list[str]:
        return [visitors.get_row(row.key)[1].plain for row in visitors.ordered_rows]

    assert "game" in str(channels.border_title)
    assert peers() == []
    summary = plain(app.dashboard.query_one("#channel-summary"))
    assert "waiting" in summary and "not connected" in summary
    await pilot.press("j")
    await pilot.pause()
    assert "ssh" in str(channels.border_title)
    assert peers() == ["192.0.2.10:55001"]
    row = visitors.get_row("1")
    assert [c.plain for c in row] == ["#1", "192.0.2.10:55001", "30m", "1.20MB", "8.70MB"]
    await pilot.press("j")
    await pilot.pause()
    assert peers() == ["203.0.113.9:51234", "203.0.113.44:60011"]
    summary = plain(app.dashboard.query_one("#channel-summary"))
    assert "198.51.100.7:40022" in summary and "2 open, 142 total" in summary


@frozen()
async def test_event_log_filters_by_level_and_service(pilot: Pilot, app: RatuiApp) -> None:
    await pilot.press("3")
    await pilot.pause()
    log = app.dashboard.query_one(EventLog)
    panel = app.dashboard.events_panel
    assert app.focused is log
    assert "1 error" in str(panel.border_title) and "1 warning" in str(panel.border_title)

    def shown() -> list[str]:
        return [e.message for e in panel.events if panel.passes(e)]

    assert len(shown()) == 5
    await pilot.press("l")
    assert panel.min_level is Level.WARNING
    assert shown() == [
        "203.0.113.200:41000 sent an incorrect token",
        "control channel closed: connection reset by peer; waiting for the client",
    ]
    await pilot.press("l")
    assert panel.min_level is Level.ERROR and len(shown()) == 1
    await pilot.press("l", "l")  # debug: the visitor events too
    assert panel.min_level is Level.INFO
    await pilot.press("1", "j", "j", "3", "f")  # web selected, follow it
    await pilot.pause()
    assert all("0.0.0.0:8080" in m for m in shown()) and len(shown()) == 1
    lines = [strip.text for strip in log.lines]
    assert any("0.0.0.0:8080" in line for line in lines)
    assert not any("incorrect token" in line for line in lines)
    await pilot.press("f")
    assert len(shown()) == 5


def test_rows_update_in_place() -> None:
    """A poll rewrites only the cells that changed: no row is removed or re-added."""

    async def main() -> None:
        app, clock, stats = build_app("server")
        async with app.run_test(size=(80, 24)) as pilot:
            await seeder(app, clock, stats, SERVER_RATES)(pilot)
            table = app.dashboard.table
            before = list(table.rows)
            calls: list[tuple[str, str]] = []
            original = table.update_cell

            def counting(row_key: Any, column_key: Any, value: Any, **kw: Any) -> None:
                calls.append((str(row_key), str(column_key)))
                original(row_key, column_key, value, **kw)

            table.update_cell = counting  # type: ignore[method-assign]
            app.poll()
            assert calls == []  # nothing changed, nothing touched
            stats["web"].closed_rx += 5_000_000
            app.poll()
            assert calls == [("server:web", "in")]
            assert list(table.rows) == before
            rx = app.state.snapshot().service("server", "web").rx
            assert cell(table, "server:web", "in") == format_bytes(rx).replace(" ", "")

    run(main())


@frozen()
async def test_units_and_theme_toggle(pilot: Pilot, app: RatuiApp) -> None:
    table = app.dashboard.table
    assert cell(table, "server:web", "rate") == "19.6Mbit/s"
    await pilot.press("u")
    assert cell(table, "server:web", "rate") == "2.45MB/s"
    await pilot.press("u")
    assert app.theme == "ratui-dark"
    await pilot.press("t")
    assert app.theme == "ratui-light"
    await pilot.pause()
    assert cell(table, "server:web", "rate") == "19.6Mbit/s"


@frozen()
async def test_command_palette_runs_dashboard_actions(pilot: Pilot, app: RatuiApp) -> None:
    commands = {c.title: c for c in app.get_system_commands(app.dashboard)}
    for title in (
        "Sort by current rate",
        "Filter services",
        "Show events",
        "Events: warning and above",
        "Events: only web (server)",
        "Select ssh (server)",
        "Rates in B/s",
        "Dark or light theme",
        "Help: keys",
        "Quit",
    ):
        assert title in commands, title
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*"sort by current rate")
    await pilot.pause(0.5)
    await pilot.press("enter")
    await pilot.pause()
    assert app.dashboard.table.sort_by == "rate"
    assert names(app.dashboard.table)[0] == "web"


@frozen()
async def test_quit_asks_first_while_visitors_are_connected(pilot: Pilot, app: RatuiApp) -> None:
    await pilot.press("q")
    assert isinstance(app.screen, ConfirmQuitScreen)
    await pilot.press("n")
    assert isinstance(app.screen, DashboardScreen)
    assert app.return_code is None
    await pilot.press("ctrl+c")
    assert isinstance(app.screen, ConfirmQuitScreen)
    await pilot.press("y")
    await pilot.pause()
    assert app.return_code == 0


def test_quit_without_visitors_does_not_ask() -> None:
    async def main() -> None:
        app, clock, stats = build_app("client")
        with frozen_state_time(clock):
            for service in stats.values():
                for record in list(service.visitors.values()):
                    app.state.close_visitor(service, record)
        async with app.run_test(size=(80, 24)) as pilot:
            await started(pilot)
            await pilot.press("q")
            await pilot.pause()
            assert app.return_code == 0

    run(main())


def test_default_theme_follows_the_terminal() -> None:
    assert default_theme({}) == "ratui-dark"
    assert default_theme({"COLORFGBG": "0;15"}) == "ratui-light"
    assert default_theme({"COLORFGBG": "15;0"}) == "ratui-dark"
    assert default_theme({"RATUI_THEME": "light", "COLORFGBG": "15;0"}) == "ratui-light"
    assert default_theme({"RATUI_THEME": "nord"}) == "nord"


def test_header_and_ages_follow_the_injected_clock() -> None:
    async def main() -> None:
        app, run_before = server_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await run_before(pilot)
            table = app.dashboard.table
            assert cell(table, "server:game", "control") == "○ wait 2m"
            vitals = plain(app.dashboard.query_one("#vitals"))
            assert "1:02:05" in vitals and "3 visitors" in vitals
            app.clock.now = T0 + 3600  # type: ignore[attr-defined]
            app.poll()
            assert cell(table, "server:game", "control") == "○ wait 1h"
            assert "2:02:05" in plain(app.dashboard.query_one("#vitals"))

    run(main())


# ---------------------------------------------------------------------- a real tunnel


def tunnel_config(local_port: int, name: str = "echo"):
    control, public = free_port(), free_port()
    text = f"""
[server]
bind_addr = "127.0.0.1:{control}"
[server.services.{name}]
bind_addr = "127.0.0.1:{public}"
token = "pilot-token"
[client]
remote_addr = "127.0.0.1:{control}"
[client.services.{name}]
local_addr = "127.0.0.1:{local_port}"
token = "pilot-token"
"""
    return parse_config(text, source="<pilot test>"), public


@contextlib.asynccontextmanager
async def echo_server():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def tunnel_up(pilot: Pilot, app: RatuiApp) -> None:
    def up() -> bool:
        services = app.state.snapshot().services
        return len(services) == 2 and all(s.state is ControlState.UP for s in services)

    await until(pilot, up, "the tunnel to come up")
    await until(pilot, lambda: len(rows(app.dashboard.table)) == 2, "both services in the table")


def port_refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_panels_show_the_bytes_pushed_through_a_real_tunnel() -> None:
    payload = os.urandom(1_000_000)
    expected = format_bytes(len(payload)).replace(" ", "")  # "1.00MB"

    async def main() -> None:
        async with echo_server() as local_port:
            config, public = tunnel_config(local_port)
            app = RatuiApp(config, Roles(server=True, client=True), theme="ratui-dark")
            async with app.run_test(size=(80, 24)) as pilot:
                await tunnel_up(pilot, app)
                table = app.dashboard.table
                assert app.status is EngineStatus.RUNNING
                assert cell(table, "server:echo", "in") == "0B"
                assert cell(table, "server:echo", "control").startswith("● up")

                reader, writer = await asyncio.open_connection("127.0.0.1", public)
                writer.write(payload)
                echoed = await asyncio.wait_for(reader.readexactly(len(payload)), 20)
                assert echoed == payload
                host, port = writer.get_extra_info("sockname")[:2]
                visitor = f"{host}:{port}"

                # The table, both roles: the bytes, and one visitor open.
                for key in ("server:echo", "client:echo"):
                    await until(
                        pilot,
                        lambda key=key: (
                            cell(table, key, "in") == expected
                            and cell(table, key, "out") == expected
                        ),
                        f"{key} to show {expected} in and out",
                    )
                    assert cell(table, key, "visitors") == "1"

                # Select the server row: its channels list this visitor with its bytes.
                await pilot.press("j")
                assert table.selected_key == "server:echo"
                visitors = app.dashboard.query_one(VisitorsTable)
                await until(pilot, lambda: visitors.row_count == 1, "the visitor row")
                row = [c.plain for c in visitors.get_row_at(0)]
                assert row[1] == visitor
                assert row[3:] == [expected, expected]

                # The graphs move: one point a second from the growth of the byte totals,
                # so the area under the total graph is the bytes that went through.
                def graphed() -> float:
                    return sum(app.history.total)

                await until(pilot, lambda: abs(graphed() - 2 * len(payload)) < 1, "2 MB graphed")
                peak = max(app.history.total)
                await until(
                    pilot,
                    lambda: (
                        f"peak {format_rate(peak)}"
                        in plain(app.dashboard.query_one("#total-rates"))
                    ),
                    "the peak rate shown",
                )

                # Closing the visitor: gone from the channels, bytes stay in the totals.
                writer.close()
                await until(pilot, lambda: visitors.row_count == 0, "the visitor to close")
                await until(pilot, lambda: cell(table, "server:echo", "visitors") == "0", "0 open")
                assert cell(table, "server:echo", "in") == expected

                await pilot.press("q")  # nobody connected: no question
                await pilot.pause()
            assert app.return_code == 0
            assert app.runtime is None
            assert port_refuses(public)

    run(main())


def test_quit_with_a_visitor_connected_asks_then_stops_the_tunnel() -> None:
    async def main() -> None:
        async with echo_server() as local_port:
            config, public = tunnel_config(local_port)
            app = RatuiApp(config, Roles(server=True, client=True))
            async with app.run_test(size=(80, 24)) as pilot:
                await tunnel_up(pilot, app)
                reader, writer = await asyncio.open_connection("127.0.0.1", public)
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
                await pilot.press("q")
                assert isinstance(app.screen, ConfirmQuitScreen)
                await pilot.press("escape")
                assert isinstance(app.screen, DashboardScreen)
                writer.write(b"pong")  # still tunnelled
                assert await asyncio.wait_for(reader.readexactly(4), 10) == b"pong"
                await pilot.press("q", "y")
                await until(pilot, lambda: app.return_code is not None, "the app to exit")
            assert app.return_code == 0
            # The visitor was cut off and the public port is closed.
            assert await asyncio.wait_for(reader.read(), 10) == b""
            assert port_refuses(public)

    run(main())


def test_a_port_in_use_ends_the_app_with_the_reason() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = parse_config(
                f"""
[server]
bind_addr = "127.0.0.1:{port}"
[server.services.x]
bind_addr = "127.0.0.1:{free_port()}"
token = "t"
""",
                source="busy.toml",
            )
            app = RatuiApp(config, Roles(server=True, client=False))
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.return_code is not None, "the app to exit")
        assert app.return_code == 1
        assert app.status is EngineStatus.FAILED
        assert app.startup_error is not None
        assert app.startup_error.startswith("busy.toml: ")
        assert f"127.0.0.1:{port}" in app.startup_error

    run(main())


def test_the_app_runs_the_tunnel_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        async with echo_server() as local_port:
            config, public = tunnel_config(local_port)
            app = RatuiApp(config, Roles(server=True, client=True))
            async with app.run_test(size=(80, 24)) as pilot:
                await tunnel_up(pilot, app)
                reader, writer = await asyncio.open_connection("127.0.0.1", public)
                writer.write(b"x" * 70_000)
                await asyncio.wait_for(reader.readexactly(70_000), 10)
                table = app.dashboard.table
                await until(
                    pilot, lambda: cell(table, "server:echo", "in") == "70.0kB", "70.0kB in"
                )
                writer.close()
                await until(pilot, lambda: app.visitors_connected() == 0, "the visitor to close")
                await pilot.press("q")
                await until(pilot, lambda: app.return_code is not None, "the app to exit")
            assert app.return_code == 0

    uvloop.run(main())


# ---------------------------------------------------------------------- the command line


def test_wants_tui_only_on_a_terminal_without_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stdin", Stream(True))
    monkeypatch.setattr(sys, "stdout", Stream(True))
    assert wants_tui(daemon=False)
    assert not wants_tui(daemon=True)
    monkeypatch.setattr(sys, "stdout", Stream(False))
    assert not wants_tui(daemon=False)
    monkeypatch.setattr(sys, "stdout", Stream(True))
    monkeypatch.setattr(sys, "stdin", Stream(False))
    assert not wants_tui(daemon=False)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    yield from open_terminals(env={"COLORTERM": "truecolor"})


def test_demo_opens_the_ui_on_a_terminal_and_q_leaves_it_clean(terminal) -> None:
    term = terminal("--demo")
    url = term.wait_for(r"curl (http://127\.0\.0\.1:\d+/)")[1]
    assert "\x1b[?1049h" in term.text()  # the alternate screen: a full-screen UI
    body = OPENER.open(url, timeout=10).read().decode()
    assert "Hello from ratui!" in body
    term.wait_for(r"1 total|● up")
    term.send(b"q")
    assert term.wait_exit() == 0
    tail = term.text().rpartition("\x1b[?1049h")[2]
    # Leaving restores the terminal: main screen back, cursor shown, mouse reporting off.
    assert "\x1b[?1049l" in tail
    assert "\x1b[?25h" in tail
    assert "\x1b[?1000l" in tail
    assert "Traceback" not in term.text()
    with pytest.raises(OSError):
        OPENER.open(url, timeout=2)


def test_daemon_stays_headless_on_a_terminal(terminal) -> None:
    term = terminal("--daemon", "--demo")
    url = term.wait_for(r"try:\s+curl (http://127\.0\.0\.1:\d+/)")[1]
    assert "\x1b[?1049h" not in term.text()
    assert "Hello from ratui!" in OPENER.open(url, timeout=10).read().decode()
    term.popen.send_signal(signal.SIGINT)
    assert term.wait_exit() == 0


def test_sigterm_stops_the_ui_and_the_tunnel_cleanly(terminal) -> None:
    term = terminal("--demo")
    url = term.wait_for(r"curl (http://127\.0\.0\.1:\d+/)")[1]
    term.popen.send_signal(signal.SIGTERM)
    assert term.wait_exit() == 0
    assert "\x1b[?1049l" in term.text().rpartition("\x1b[?1049h")[2]
    with pytest.raises(OSError):
        OPENER.open(url, timeout=2)


@pytest.mark.parametrize("how", ["SIGHUP", "terminal closed"])
def test_a_lost_terminal_stops_the_tunnel_instead_of_hanging(terminal, how: str) -> None:
    """An SSH drop: SIGHUP, or just a terminal that fails every write. Either way the tunnel
    stops and the process ends; it must not freeze with its ports still bound."""
    term = terminal("--demo")
    url = term.wait_for(r"curl (http://127\.0\.0\.1:\d+/)")[1]
    port = int(url.rsplit(":", 1)[1].strip("/"))
    term.wait_for(r"● up")
    if how == "SIGHUP":
        term.popen.send_signal(signal.SIGHUP)
    else:
        term.hang_up()
    assert term.wait_exit() == 0
    assert port_refuses(port)


# ---------------------------------------------------------------------- the pieces underneath


def test_units_scale_from_bytes_to_gigabits() -> None:
    assert format_rate(0) == "0 bit/s"
    assert format_rate(100) == "800 bit/s"
    assert format_rate(1_500) == "12.0 kbit/s"
    assert format_rate(117_500_000) == "940 Mbit/s"
    assert format_rate(1_176_250_000) == "9.41 Gbit/s"
    assert format_rate(512, bits=False) == "512 B/s"
    assert format_rate(1_176_250_000, bits=False) == "1.18 GB/s"
    assert format_bytes(999) == "999 B"
    assert format_bytes(999_600) == "1.00 MB"
    assert format_bytes(12_400_118) == "12.4 MB"


def _snapshot(*services: tuple[str, str, int, int]) -> Snapshot:
    """A snapshot of up services with the given byte totals: (role, name, rx, tx)."""
    return Snapshot(
        0.0,
        tuple(
            ServiceSnapshot(
                name=name,
                role=Role(role),
                type="tcp",
                address="127.0.0.1:1",
                peer=None,
                state=ControlState.UP,
                state_since=0.0,
                visitors_open=0,
                visitors_total=0,
                rx=rx,
                tx=tx,
                rx_rate=0.0,
                tx_rate=0.0,
                reconnects=0,
                auth_failures=0,
                last_error=None,
                last_heartbeat=None,
                idle_data_channels=0,
                visitors=(),
            )
            for role, name, rx, tx in services
        ),
    )


def test_history_books_every_byte_once_and_keeps_time() -> None:
    history = RateHistory()
    assert history.record(100.2, _snapshot(("server", "a", 0, 0)), None)
    assert not history.record(100.7, _snapshot(("server", "a", 500, 0)), None)  # same second
    history.record(101.1, _snapshot(("server", "a", 1_000, 200)), None)
    assert list(history.total) == [0.0, 1_200.0]
    assert (history.total_in[-1], history.total_out[-1]) == (1_000.0, 200.0)
    # Three seconds without a poll: the bytes are spread over them.
    history.record(104.3, _snapshot(("server", "a", 4_000, 200)), None)
    assert list(history.total)[-3:] == [1_000.0, 1_000.0, 1_000.0]
    assert sum(history.total) == 4_200
    # A newcomer's graph starts at zero where the others already had time.
    history.record(105.0, _snapshot(("server", "a", 4_000, 200), ("server", "b", 10, 0)), None)
    assert len(history.series((Role.SERVER, "b"))) == len(history.total)
    assert list(history.series((Role.SERVER, "b")))[-1] == 0.0
    # A reload that restarts a service from zero never makes a negative rate.
    history.record(106.0, _snapshot(("server", "a", 0, 0), ("server", "b", 20, 0)), None)
    assert list(history.series((Role.SERVER, "a")))[-1] == 0.0


def test_history_total_counts_one_role_when_both_run() -> None:
    history = RateHistory()
    both = [("server", "web", 0, 0), ("client", "web", 0, 0)]
    history.record(1.0, _snapshot(*both), Role.SERVER)
    history.record(
        2.0, _snapshot(("server", "web", 100, 0), ("client", "web", 100, 0)), Role.SERVER
    )
    assert history.total[-1] == 100.0


def test_graph_columns_are_aligned_to_the_clock_and_anchored_at_zero() -> None:
    # Seconds 100..105, two seconds a column from even seconds, four columns.
    data = columns([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 105, width=4, step=2)
    assert data == [None, 1.5, 3.5, 5.5]  # (no data) | 100-101 | 102-103 | 104-105
    # A second later the columns move by whole buckets, not by a second: no shimmer.
    assert columns([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 106, width=4, step=2) == [
        1.5,
        3.5,
        5.5,
        7.0,
    ]
    bars = render_bars([None, 0.0, 1.0, 8.0], 1, Style(), Style()).plain
    assert bars == " ▁▁█"  # no data, zero (faint baseline), a little (one eighth), the top
    # Two lines high: the maximum fills both, half of it fills the lower line.
    assert render_bars([0.0, 4.0, 2.0], 2, Style(), Style()).plain == " █ \n▁██"
