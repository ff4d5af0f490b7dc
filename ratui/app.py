"""The terminal UI: a Textual app that runs the engine in its own event loop and shows it.

The engine is plain asyncio and Textual runs on asyncio, so :class:`RatuiApp` starts the
:class:`~ratui.engine.runtime.Runtime` in the app's loop (uvloop when installed) and reads it
only through ``ratui.engine.state``: it polls :meth:`EngineState.snapshot` twice a second and
consumes :meth:`EngineState.subscribe` in a worker. The relay never waits for the UI: the
snapshot is a copy, and the event queue drops its oldest entries rather than block.

``ratui CONFIG`` and ``ratui --demo`` open it on a terminal (see ``ratui.cli``). Without a
config it opens on the welcome screen and starts the engine once a wizard wrote a config or
the user opened one: the same process then runs the tunnel and its dashboard.

Besides watching, the dashboard changes the config it runs: ``e`` edits it (forms or raw
TOML), saved atomically and applied through the hot-reload path at once (the daemon's, when
attached); ``p`` shows a pairing code for a client of this server; ``K`` makes keys and
tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.message import Message
from textual.screen import Screen
from textual.theme import Theme

from .engine.config import Config, ConfigError, load_config, parse_config
from .engine.runtime import ApplyResult, Roles, Runtime, StartupError, describe_diff
from .engine.state import EngineState, Event, Level, Role, Snapshot
from .screens.confirm import ConfirmQuitScreen
from .screens.dashboard import DashboardScreen
from .screens.help import HelpScreen
from .screens.welcome import WelcomeScreen
from .widgets.channels import VisitorsTable
from .widgets.events import LEVELS, EventLog
from .widgets.header import HeaderBar
from .widgets.history import RateHistory
from .widgets.palette import Palette
from .widgets.services import SORT_LABELS, SORTS, ServicesTable, row_key_of

if TYPE_CHECKING:
    from .remote import RemoteState

POLL_INTERVAL = 0.5  # seconds between two snapshots: the table changes at most twice a second
EVENT_BATCH_INTERVAL = 0.1  # seconds the event worker waits between two batches
ERROR_TOAST_INTERVAL = 5.0  # at most one error notification this often

DARK = Theme(
    name="ratui-dark",
    primary="#58A6FF",
    secondary="#79C0FF",
    accent="#FFA657",
    success="#3FB950",
    warning="#D29922",
    error="#F85149",
    foreground="#D6DDE6",
    background="#0D1117",
    surface="#161B22",
    panel="#1F2630",
    dark=True,
)
LIGHT = Theme(
    name="ratui-light",
    primary="#0969DA",
    secondary="#0550AE",
    accent="#BC4C00",
    success="#1A7F37",
    warning="#9A6700",
    error="#CF222E",
    foreground="#1F2328",
    background="#FFFFFF",
    surface="#F6F8FA",
    panel="#E6EBF1",
    dark=False,
)


def default_theme(environ: dict[str, str] | None = None) -> str:
    """``RATUI_THEME`` if set, else light when the terminal says its background is light
    (``COLORFGBG`` ends in 7 or 15, as rxvt, Konsole and others set it), else dark."""
    env = os.environ if environ is None else environ
    chosen = env.get("RATUI_THEME", "").strip().lower()
    if chosen in ("light", "dark"):
        return f"ratui-{chosen}"
    if chosen:
        return chosen
    background = env.get("COLORFGBG", "").rpartition(";")[2]
    return LIGHT.name if background in ("7", "15") else DARK.name


class EngineStatus(StrEnum):
    IDLE = "not running"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


STATUS_WORDS = {
    EngineStatus.IDLE: "○ not running",
    EngineStatus.STARTING: "◐ starting…",
    EngineStatus.RUNNING: "● up",
    EngineStatus.STOPPING: "◐ stopping…",
    EngineStatus.STOPPED: "■ stopped",
    EngineStatus.FAILED: "✕ failed",
}


def roles_label(roles: Roles) -> str:
    return (
        " + ".join(
            name for name, on_ in (("server", roles.server), ("client", roles.client)) if on_
        )
        or "nothing"
    )


def total_role(roles: Roles) -> Role | None:
    """The role whose services the totals count: the server's when both run (a visitor's
    bytes cross both roles), else all."""
    return Role.SERVER if roles.server and roles.client else None


#: Actions that act on the dashboard, refused on the other screens (welcome, editor, ...).
DASHBOARD_ACTIONS = frozenset({"toggle_units", "reload", "copy_command", "edit_config", "pairing"})


class RatuiApp(App[int]):
    """The dashboard around one engine.

    ``config`` None opens the welcome screen; :meth:`open_config` (or a wizard) then starts
    the engine and the dashboard. ``state`` defaults to a new :class:`EngineState`;
    ``run_engine=False`` shows a state that something else fills (the snapshot tests build one
    by hand). ``clock`` gives the wall-clock time used for ages and uptime, so tests can
    freeze it.
    """

    TITLE = "ratui"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("u", "toggle_units", "Units bit/s or B/s", show=False),
        Binding("t", "toggle_theme", "Dark or light theme", show=False),
        Binding("r", "reload", "Reload the config file", show=False),
        Binding("y", "copy_command", "Copy the demo's curl command", show=False),
        Binding("e", "edit_config", "Edit the config", show=False),
        Binding("p", "pairing", "Pairing code for a client", show=False),
        Binding("K", "keys", "New keys and tokens", show=False),
    ]

    class StopRequested(Message):
        """SIGTERM, SIGHUP or SIGINT arrived: stop the tunnel and leave."""

    def __init__(
        self,
        config: Config | None,
        roles: Roles | None = None,
        *,
        demo: bool = False,
        state: EngineState | None = None,
        run_engine: bool = True,
        clock: Callable[[], float] = time.time,
        started_at: float | None = None,
        theme: str | None = None,
        watch_config: bool = True,
        remote: RemoteState | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.roles = roles or Roles(server=False, client=False)
        self.demo = demo
        # ``remote``: a daemon's state over its control socket (``ratui attach``), shown
        # instead of an engine of our own; reloads go to the daemon, quitting only detaches.
        self.remote = remote
        self.state = remote or state or EngineState()  # type: ignore[assignment]
        run_engine = run_engine and remote is None
        self.run_engine = run_engine
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.watch_config = watch_config
        self.runtime: Runtime | None = None
        self.status = (
            EngineStatus.STARTING if run_engine and config is not None else EngineStatus.IDLE
        )
        self.startup_error: str | None = None
        self.history = RateHistory()
        self.latest = Snapshot(self.started_at, ())
        self.bits = True
        self.palette: Palette | None = None
        self.total_role = total_role(self.roles)
        self.events_dropped = 0
        self._page: asyncio.AbstractServer | None = None
        self._watcher: object | None = None
        self._stopping = False
        self._last_toast = 0.0
        self._ui_ready = False
        for custom in (DARK, LIGHT):
            self.register_theme(custom)
        self._initial_theme = theme or default_theme()

    # ------------------------------------------------------------------ setup

    def get_driver_class(self) -> type[Driver]:
        return hangup_safe(super().get_driver_class())

    def get_default_screen(self) -> Screen[None]:
        if self.config is None:
            return WelcomeScreen()
        return DashboardScreen(demo_url=self.demo_url)

    @property
    def demo_url(self) -> str | None:
        if not self.demo or self.config is None:
            return None
        from .demo import public_url

        return public_url(self.config)

    @property
    def ui_ready(self) -> bool:
        """The dashboard is mounted and fed by the poll."""
        return self._ui_ready

    @property
    def dashboard(self) -> DashboardScreen:
        # The base screen, or the one pushed over the welcome screen once a config runs.
        return next(s for s in self.screen_stack if isinstance(s, DashboardScreen))

    def on_mount(self) -> None:
        if self._initial_theme in self.available_themes:
            self.theme = self._initial_theme
        else:
            self.theme = DARK.name
        self.palette = Palette.from_app(self)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        if self.run_engine and self.config is not None:
            self.run_worker(self._start_engine(), name="engine", group="engine")

    def open_config(self, path: str | os.PathLike[str]) -> None:
        """Load the config at ``path`` (ConfigError if it cannot be used) and run it: the
        roles its tables ask for, as ``ratui CONFIG`` picks them."""
        from .cli import choose_roles

        config = load_config(path)
        self.start(config, choose_roles(config, False, False))

    def start_demo(self) -> None:
        from .demo import demo_config

        self.start(demo_config(), Roles(server=True, client=True), demo=True)

    def start(self, config: Config, roles: Roles, *, demo: bool = False) -> None:
        """Leave the welcome screen for the dashboard of ``config`` and start its engine in
        this process."""
        self.config, self.roles, self.demo = config, roles, demo
        self.total_role = total_role(roles)
        self.started_at = self.clock()
        self.push_screen(DashboardScreen(demo_url=self.demo_url))
        if self.run_engine:
            self.status = EngineStatus.STARTING
            self.run_worker(self._start_engine(), name="engine", group="engine")

    @on(DashboardScreen.Ready)
    def _dashboard_ready(self) -> None:
        assert self.palette is not None
        self._ui_ready = True
        dashboard = self.dashboard
        dashboard.table.palette = self.palette
        dashboard.events_panel.palette = self.palette
        self._show_where()
        self.run_worker(self._consume_events(), name="events", group="events")
        self.poll()
        self.set_interval(POLL_INTERVAL, self.poll, name="poll")

    def _show_where(self) -> None:
        assert self.config is not None and self.palette is not None
        source = "demo" if self.demo else self.config.source
        header = self.dashboard.query_one(HeaderBar)
        header.show_where(roles_label(self.roles), source, self.palette)

    async def _start_engine(self) -> None:
        from . import demo as demo_mod

        assert self.config is not None
        self.status = EngineStatus.STARTING
        try:
            if self.demo:
                self._page = await demo_mod.serve_page(self.config)
            self.runtime = Runtime(self.config, self.roles, self.state)
            await self.runtime.start()
        except (StartupError, OSError) as exc:
            await self.stop_engine()
            self.status = EngineStatus.FAILED
            detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            self.startup_error = f"{self.config.source}: {detail}"
            self.exit(1, return_code=1)
            return
        self.status = EngineStatus.RUNNING
        await self._start_watcher()
        self.poll()

    async def _start_watcher(self) -> None:
        assert self.config is not None
        if not self.watch_config or self.demo or self.config.source.startswith("<"):
            return
        try:
            from .engine.watcher import ConfigWatcher
            from .headless import watch_mode
        except ImportError:  # pragma: no cover - an engine without a watcher
            return
        runtime = self.runtime
        if runtime is None or not hasattr(runtime, "reload"):
            return
        watcher = ConfigWatcher(
            self.config.source,
            lambda data: runtime.reload(data, trigger="file changed"),
            mode=watch_mode(),
        )
        await watcher.start()
        self._watcher = watcher

    async def stop_engine(self) -> None:
        """Stop the watcher, the tunnel and the demo page; safe to call more than once."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()  # type: ignore[attr-defined]
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            self.status = EngineStatus.STOPPING
            # The engine bounds its own waits; this only guards against a bug there.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.stop(), 10.0)
            self.status = EngineStatus.STOPPED
        page, self._page = self._page, None
        if page is not None:
            page.close()

    async def on_unmount(self) -> None:
        await self.stop_engine()

    # ------------------------------------------------------------------ reading the engine

    def _feeding(self) -> bool:
        """The dashboard is up and not being torn down (timers still tick while the app
        exits, after its widgets are gone)."""
        return self._ui_ready and self.is_running and not self._exit

    def poll(self) -> None:
        """Take one snapshot and bring every panel up to date with it."""
        if not self._feeding():
            return
        if self.remote is not None:
            self.status = EngineStatus.RUNNING if self.remote.connected else EngineStatus.STOPPED
        self.latest = self.state.snapshot()
        self.history.record(self.clock(), self.latest, self.total_role)
        self.redraw()

    def redraw(self) -> None:
        if self.palette is None or not self._feeding():
            return
        now = self.clock()
        dashboard = self.dashboard
        dashboard.show(
            self.latest,
            now,
            self.history,
            self.palette,
            bits=self.bits,
            total_role=self.total_role,
        )
        counted = [
            s for s in self.latest.services if self.total_role is None or s.role == self.total_role
        ]
        p = self.palette
        style = {
            EngineStatus.RUNNING: p.ok,
            EngineStatus.FAILED: p.bad,
            EngineStatus.IDLE: p.muted,
        }.get(self.status, p.warn)
        dashboard.query_one(HeaderBar).show_vitals(
            status=None if self.status is EngineStatus.RUNNING else STATUS_WORDS[self.status],
            status_style=str(style),
            uptime=now - (self.remote.started_at if self.remote is not None else self.started_at),
            rx=self.history.total_in[-1] if self.history.total_in else 0.0,
            tx=self.history.total_out[-1] if self.history.total_out else 0.0,
            visitors=sum(s.visitors_open for s in counted),
            bits=self.bits,
            palette=p,
        )

    async def _consume_events(self) -> None:
        subscription = self.state.subscribe()
        try:
            backlog = self.state.recent_events()
            last = backlog[-1].seq if backlog else 0
            self._deliver(backlog, live=False)
            while True:
                batch = [await subscription.get()]
                while (event := subscription.get_nowait()) is not None:
                    batch.append(event)
                fresh = [e for e in batch if e.seq > last]
                if fresh:
                    last = fresh[-1].seq
                    self._deliver(fresh, live=True)
                self.events_dropped = subscription.dropped
                await asyncio.sleep(EVENT_BATCH_INTERVAL)
        finally:
            subscription.close()

    def _deliver(self, events: Iterable[Event], *, live: bool) -> None:
        events = list(events)
        if not events or not self._feeding():
            return
        self.dashboard.events_panel.add(events)
        if not live:
            return
        errors = [e for e in events if e.level is Level.ERROR]
        now = time.monotonic()
        if errors and now - self._last_toast >= ERROR_TOAST_INTERVAL:
            self._last_toast = now
            event = errors[-1]
            where = f"{event.service}: " if event.service else ""
            self.notify(f"{where}{event.message}", title="Error", severity="error", timeout=6)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DASHBOARD_ACTIONS:
            return isinstance(self.screen, DashboardScreen)
        return True

    def visitors_connected(self) -> int:
        return sum(
            s.visitors_open
            for s in self.state.snapshot().services
            if self.total_role is None or s.role == self.total_role
        )

    async def action_quit(self) -> None:
        if self._stopping:
            return
        visitors = self.visitors_connected() if self.remote is None else 0  # detach: no drop
        if visitors and not isinstance(self.screen, ConfirmQuitScreen):
            self.push_screen(ConfirmQuitScreen(visitors), self._quit_answer)
            return
        await self.shutdown()

    async def _quit_answer(self, answer: bool | None) -> None:
        if answer:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop the tunnel cleanly, then leave the terminal as it was."""
        if self._stopping:
            return
        self._stopping = True
        if self.runtime is not None:
            self.status = EngineStatus.STOPPING
            self.redraw()
        await self.stop_engine()
        self.exit(0, return_code=0)

    @on(StopRequested)
    async def _stop_requested(self) -> None:
        await self.shutdown()

    def request_stop(self) -> None:
        """For signal handlers: ask the app to stop from outside its message loop."""
        self.post_message(self.StopRequested())

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        from .screens.editor import EditorScreen

        sections: dict[str, list[type]] = {
            "Everywhere": [RatuiApp, DashboardScreen],
            "Services table": [ServicesTable],
            "Channels": [VisitorsTable],
            "Event log": [EventLog],
            "Tables and log": [],
            "Config editor (e)": [EditorScreen],
        }
        self.push_screen(HelpScreen(sections, demo=self.demo))

    def action_toggle_units(self) -> None:
        self.bits = not self.bits
        self.dashboard.table.set_units(self.bits)
        self.redraw()
        self.notify(f"Rates in {'bit/s' if self.bits else 'B/s'}", timeout=1.5)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT.name if self.current_theme.dark else DARK.name

    def _theme_changed(self, theme: Theme) -> None:
        self.palette = Palette.from_app(self)
        if not self._feeding():
            return
        dashboard = self.dashboard
        dashboard.table.set_palette(self.palette)
        dashboard.events_panel.set_palette(self.palette)
        self._show_where()
        self.redraw()

    async def action_reload(self) -> None:
        runtime = self.runtime or self.remote
        if self.demo or runtime is None or not hasattr(runtime, "reload"):
            self.notify("Nothing to reload", severity="warning", timeout=2)
            return
        result = await runtime.reload(trigger="r key")
        self.notify(result.message, severity="information" if result.applied else "error")

    # ------------------------------------------------------------------ changing the config

    @property
    def config_path(self) -> Path | None:
        """The file the running config came from (None for the demo and in-memory configs)."""
        if self.config is None or self.demo or self.config.source.startswith("<"):
            return None
        return Path(self.config.source)

    async def config_text(self) -> str:
        """The text of the running config file (the daemon's, when attached)."""
        if self.remote is not None:
            return await self.remote.config_text()
        assert self.config_path is not None
        return await asyncio.to_thread(self.config_path.read_text, encoding="utf-8")

    async def save_config(self, text: str) -> ApplyResult:
        """Write ``text`` as the config and apply it to the running tunnel at once.

        The caller validated ``text`` with parse_config. Locally the file is replaced
        as every config is written (``setup.files.write_secret_file``) and the engine
        applies it; attached, the daemon applies and saves it. A toast says what changed."""
        if self.remote is not None:
            result = await self.remote.apply(text, persist=True)
        else:
            from .setup.files import write_secret_file

            path = self.config_path
            assert path is not None
            config = parse_config(text, str(path))
            await asyncio.to_thread(write_secret_file, path, text, overwrite=True)
            if self.runtime is None:
                result = ApplyResult(False, None, "saved; the tunnel is not running")
            else:
                result = await self.runtime.apply(config, trigger="editor")
            if result.applied:
                self.config = config
        if result.applied:
            change = describe_diff(result.diff) if result.diff is not None else result.message
            self.notify(change, title="Config saved and applied", timeout=6)
        else:
            self.notify(result.message, title="Config not applied", severity="error", timeout=8)
        return result

    async def action_edit_config(self) -> None:
        from .screens.editor import EditorScreen

        if self.remote is None and self.config_path is None:
            self.notify("The demo has no config file to edit", severity="warning", timeout=3)
            return
        from .remote import RemoteError

        try:
            text = await self.config_text()
        except (OSError, UnicodeDecodeError, RemoteError) as exc:
            self.notify(f"Cannot read the config: {exc}", severity="error")
            return
        source = self.remote.info.source if self.remote and self.remote.info else None
        self.push_screen(EditorScreen(text, source or str(self.config_path)))

    async def action_pairing(self) -> None:
        from .remote import RemoteError
        from .screens.pairing import PairingScreen
        from .setup.generate import read_public_addr

        if not self.roles.server:
            self.notify("Pairing codes come from a running server", severity="warning")
            return
        config, text = self.config, None
        if self.remote is not None:  # the daemon's file, as it is now
            try:
                text = await self.remote.config_text()
                config = parse_config(text, str(self.remote.path))
            except (ConfigError, RemoteError) as exc:
                self.notify(f"Cannot read the daemon's config: {exc}", severity="error")
                return
        elif self.config_path is not None:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                text = await self.config_text()
        if config is None or config.server is None:
            self.notify("Pairing codes come from a running server", severity="warning")
            return
        # The server wizard notes the address clients dial in the file; else this host's name.
        public_addr = read_public_addr(text) if text else None
        self.push_screen(PairingScreen(config.server, public_addr=public_addr))

    def action_keys(self) -> None:
        from .screens.keys import KeysScreen

        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen())

    def action_copy_command(self) -> None:
        url = self.demo_url
        if url is None:
            return
        self.copy_to_clipboard(f"curl {url}")
        self.notify(f"Copied: curl {url}", timeout=2)

    def action_sort(self, column: str) -> None:
        self.dashboard.table.set_sort(column)

    def action_filter_services(self) -> None:
        self.dashboard.action_filter()

    def action_events_level(self, level: str) -> None:
        self.dashboard.show_level(Level(level))

    def action_events_service(self, key: str) -> None:
        from .widgets.services import split_key

        self.dashboard.follow_selected = False
        self.dashboard.events_panel.set_service(split_key(key) if key else None)

    def action_select_service(self, key: str) -> None:
        dashboard = self.dashboard
        dashboard.clear_filter()
        dashboard.table.select(key)
        dashboard.table.focus()

    # ------------------------------------------------------------------ command palette

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Keys and tokens", "A new Noise keypair and a new token to copy (K)", self.action_keys
        )
        if not isinstance(screen, DashboardScreen):
            return
        yield SystemCommand("Help: keys", "List every key binding", self.action_help)
        yield SystemCommand(
            "Filter services", "Show only services matching some text (/)", screen.action_filter
        )
        yield SystemCommand("Clear the filter", "Show every service", screen.clear_filter)
        for column in SORTS:
            yield SystemCommand(
                f"Sort by {SORT_LABELS[column]}",
                "Order the services table (s cycles, S reverses)",
                lambda column=column: self.action_sort(column),
            )
        yield SystemCommand(
            "Reverse the sort",
            "Flip the order of the services table (S)",
            screen.table.action_reverse_sort,
        )
        yield SystemCommand(
            "Show channels", "Visitors of the selected service (2)", screen.action_show_channels
        )
        yield SystemCommand("Show events", "The event log (3)", screen.action_show_events)
        yield SystemCommand(
            "Focus services", "Back to the services table (1)", screen.action_focus_services
        )
        for level in LEVELS:
            yield SystemCommand(
                f"Events: {level.value} and above",
                "Filter the event log by level (l cycles)",
                lambda level=level: self.action_events_level(level.value),
            )
        yield SystemCommand(
            "Events: all services",
            "Stop filtering the log by service",
            lambda: self.action_events_service(""),
        )
        yield SystemCommand(
            "Events: follow the selected service",
            "Only the events of the service under the cursor (f)",
            screen.toggle_follow,
        )
        for service in self.latest.services:
            key = row_key_of(service)
            yield SystemCommand(
                f"Events: only {service.name} ({service.role})",
                "Filter the event log to one service",
                lambda key=key: self.action_events_service(key),
            )
            yield SystemCommand(
                f"Select {service.name} ({service.role})",
                f"{service.type} · {service.address} · {service.state}",
                lambda key=key: self.action_select_service(key),
            )
        units = "B/s" if self.bits else "bit/s"
        yield SystemCommand(
            f"Rates in {units}", "Switch the rate unit (u)", self.action_toggle_units
        )
        yield SystemCommand(
            "Dark or light theme", "Toggle ratui's two themes (t)", self.action_toggle_theme
        )
        if not self.demo and (self.runtime or self.remote) is not None:
            yield SystemCommand(
                "Reload the config file", "Apply the saved config now (r)", self.action_reload
            )
            yield SystemCommand(
                "Edit the config",
                "Services and transport in forms, or the raw TOML (e)",
                self.action_edit_config,
            )
        if self.roles.server and not self.demo:
            yield SystemCommand(
                "Pairing code for a client",
                "A code that `ratui pair` turns into a client config (p)",
                self.action_pairing,
            )
        if self.demo:
            yield SystemCommand(
                "Copy the curl command", "Copy it to the clipboard (y)", self.action_copy_command
            )


# ---------------------------------------------------------------------- the terminal


class TerminalOutput:
    """The terminal Textual writes to, made safe against the terminal going away.

    When an SSH session drops, writes to the tty fail (EIO). Textual's writer thread dies of
    the first such error, then the next 30 frames fill its queue and the event loop, which
    also runs the tunnel, blocks forever on the 31st: the ports stay bound and nothing moves.
    Here a failed write marks the terminal gone, every later write is dropped, and
    ``on_gone`` (called once, from the writer thread) asks the app to stop cleanly.
    """

    def __init__(self, file: Any, on_gone: Callable[[], None]) -> None:
        self._file = file
        self._on_gone = on_gone
        self.gone = False

    def _lost(self) -> None:
        if not self.gone:
            self.gone = True
            self._on_gone()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._file.write(text)
            except (OSError, ValueError):
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except (OSError, ValueError):
                self._lost()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def hangup_safe(driver_class: type[Driver]) -> type[Driver]:
    """``driver_class`` with its output wrapped in :class:`TerminalOutput` (POSIX only)."""
    try:
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError:  # pragma: no cover - Windows
        return driver_class
    if not issubclass(driver_class, LinuxDriver):
        return driver_class
    base: Any = driver_class

    class HangupSafeDriver(base):  # type: ignore[misc,valid-type]
        def __init__(self, app: App[Any], **kwargs: Any) -> None:
            super().__init__(app, **kwargs)
            loop = asyncio.get_running_loop()
            stop = getattr(app, "request_stop", app.exit)
            self._file = TerminalOutput(self._file, lambda: loop.call_soon_threadsafe(stop))

    return HangupSafeDriver


# ---------------------------------------------------------------------- entry points


def quiet_logging() -> None:
    """While the UI owns the terminal, log lines on stderr would tear it: the event log shows
    everything the engine reports instead."""
    logger = logging.getLogger("ratui")
    logger.handlers[:] = [logging.NullHandler()]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


async def run_until_stopped(app: RatuiApp) -> None:
    """Run ``app`` with SIGTERM, SIGHUP and SIGINT asking it to stop, as a user's quit does;
    the handlers are removed again on the way out."""
    loop = asyncio.get_running_loop()
    signals = [s for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT) if s is not None]
    for sig in signals:
        loop.add_signal_handler(sig, app.request_stop)
    try:
        await app.run_async()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_tui(config: Config | None, roles: Roles | None, *, demo: bool = False) -> int:
    """Run the dashboard (the welcome screen when ``config`` is None) until the user quits or
    a signal arrives; the exit status."""
    from . import headless

    quiet_logging()
    if demo:
        from .demo import demo_config

        config, roles = demo_config(), Roles(server=True, client=True)
    app = RatuiApp(config, roles, demo=demo)

    async def main() -> int:
        try:
            await run_until_stopped(app)
        finally:
            await app.stop_engine()
        if app.startup_error:
            print(f"ratui: error: {app.startup_error}", file=sys.stderr)
            return 1
        return app.return_code or 0

    return headless.run(main)
