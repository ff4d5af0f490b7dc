"""The main screen: header, services, throughput, channels, events, footer.

Layout adapts to the terminal: at 80x24 the channels and the event log share the bottom
(``2``/``3`` switch); with 36 rows or more both show; from 120 columns the throughput and the
channels sit side by side.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input

from ..engine.state import Level, Role, ServiceSnapshot, Snapshot
from ..widgets.channels import ChannelsPanel
from ..widgets.events import EventLog, EventsPanel
from ..widgets.header import DemoBanner, HeaderBar
from ..widgets.history import RateHistory, service_key
from ..widgets.palette import Palette
from ..widgets.services import SORT_LABELS, ServicesTable, row_key_of, split_key
from ..widgets.throughput import ThroughputPanel


class DashboardScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (36, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter the services"),
        Binding("1", "focus_services", "Services", show=False, tooltip="Go to the services"),
        Binding("2", "show_channels", "Channels", tooltip="Channels of the selected service"),
        Binding("3", "show_events", "Events", tooltip="The event log"),
        Binding(
            "escape",
            "back",
            "Back",
            show=False,
            tooltip="Close the filter, or back to the services",
        ),
    ]

    DEFAULT_CSS = """
    DashboardScreen {
        layout: vertical;
        background: $background;
    }
    DashboardScreen .panel {
        border: round $foreground 30%;
        border-title-color: $text-muted;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $background;
        padding: 0;
    }
    DashboardScreen .panel:focus-within {
        border: round $primary;
        border-title-color: $text;
    }
    DashboardScreen #events.-has-errors {
        border-title-color: $text-error;
    }
    DashboardScreen #services-panel {
        height: auto;
        max-height: 45%;
    }
    DashboardScreen.-short #services-panel {
        max-height: 10;
    }
    DashboardScreen #filter {
        display: none;
    }
    DashboardScreen #services-panel.-filtering #filter {
        display: block;
    }
    DashboardScreen #middle {
        height: auto;
        layout: vertical;
    }
    DashboardScreen #throughput {
        height: auto;
    }
    DashboardScreen #channels {
        height: 1fr;
    }
    DashboardScreen #events {
        height: 1fr;
    }
    DashboardScreen DataTable {
        background: $background;
    }
    DashboardScreen DataTable > .datatable--header {
        background: $background;
        color: $text-muted;
        text-style: bold;
    }
    DashboardScreen DataTable:blur > .datatable--cursor {
        background: $primary 15%;
    }

    /* tall: everything at once */
    DashboardScreen.-tall #middle {
        height: auto;
    }
    DashboardScreen.-tall #channels {
        height: 14;
    }
    DashboardScreen.-tall #total-graph {
        height: 3;
    }
    DashboardScreen.-wide.-tall #middle {
        layout: horizontal;
        height: 16;
    }
    DashboardScreen.-wide.-tall #throughput {
        width: 1fr;
        height: 100%;
        overflow-y: auto;
    }
    DashboardScreen.-wide.-tall #channels {
        width: 1fr;
        height: 100%;
    }

    /* short (24 rows): channels and events take turns at the bottom */
    DashboardScreen.-short #service-rates {
        display: none;
    }
    DashboardScreen.-short #middle {
        height: 1fr;
    }
    DashboardScreen.-short #events {
        display: none;
    }
    DashboardScreen.-short.-show-events #middle {
        height: auto;
    }
    DashboardScreen.-short.-show-events #channels {
        display: none;
    }
    DashboardScreen.-short.-show-events #events {
        display: block;
    }
    """

    def __init__(self, *, demo_url: str | None = None) -> None:
        super().__init__()
        self.demo_url = demo_url
        self.selected: str | None = None
        self.follow_selected = False
        self._snapshot: Snapshot | None = None
        self._now = 0.0

    def compose(self) -> ComposeResult:
        yield HeaderBar()
        if self.demo_url:
            yield DemoBanner()
        with Vertical(id="services-panel", classes="panel") as panel:
            panel.border_title = "Services"
            yield Input(placeholder="filter services…", id="filter", compact=True)
            yield ServicesTable(id="services")
        with Container(id="middle"):
            throughput = ThroughputPanel(id="throughput")
            throughput.add_class("panel")
            yield throughput
            channels = ChannelsPanel(id="channels", classes="panel")
            yield channels
        events = EventsPanel(id="events")
        events.add_class("panel")
        yield events
        yield Footer()

    class Ready(Message):
        """The dashboard is mounted: the app may start feeding it."""

    def on_mount(self) -> None:
        self.query_one(ServicesTable).focus()
        self._subtitles()
        self.post_message(self.Ready())

    # ------------------------------------------------------------------ fed by the app

    @property
    def table(self) -> ServicesTable:
        return self.query_one(ServicesTable)

    @property
    def events_panel(self) -> EventsPanel:
        return self.query_one(EventsPanel)

    def show(
        self,
        snapshot: Snapshot,
        now: float,
        history: RateHistory,
        palette: Palette,
        *,
        bits: bool,
        total_role: Role | None,
    ) -> None:
        self._snapshot, self._now = snapshot, now
        table = self.table
        if table.palette is None:
            table.palette = palette
            table.bits = bits
        table.show(snapshot.services, now)
        selected = self._selected_service()
        total_label = "total" if total_role is None else f"total ({total_role} side)"
        self.query_one(ThroughputPanel).show(
            snapshot.services,
            history,
            bits=bits,
            palette=palette,
            selected=self.selected,
            total_label=total_label,
        )
        self.query_one(ChannelsPanel).show(
            selected,
            now,
            palette,
            bits,
            history.series(service_key(selected)) if selected else (),
            history.last_second,
        )
        if self.demo_url:
            self.query_one(DemoBanner).show_url(self.demo_url, palette)

    def _selected_service(self) -> ServiceSnapshot | None:
        if self._snapshot is None or self.selected is None:
            return None
        return next((s for s in self._snapshot.services if row_key_of(s) == self.selected), None)

    # ------------------------------------------------------------------ messages

    @on(ServicesTable.Selected)
    def _selected_changed(self, message: ServicesTable.Selected) -> None:
        self.selected = message.key
        if self.follow_selected:
            self.events_panel.set_service(split_key(message.key) if message.key else None)
        app = self.app
        if self._snapshot is not None and hasattr(app, "redraw"):
            app.redraw()

    @on(ServicesTable.OpenChannels)
    def _open_channels(self) -> None:
        self.action_show_channels()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value.strip())
        self._subtitles()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self._close_filter()
        self.table.focus()

    @on(EventLog.CycleLevel)
    def _cycle_level(self) -> None:
        level = self.events_panel.cycle_level()
        self.notify(f"Events: showing {level.value} and above", timeout=1.5)

    @on(EventLog.FollowService)
    def _follow(self) -> None:
        self.toggle_follow()

    # ------------------------------------------------------------------ actions

    def action_filter(self) -> None:
        panel = self.query_one("#services-panel")
        panel.add_class("-filtering")
        self.query_one("#filter", Input).focus()

    def clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self._close_filter()

    def _close_filter(self) -> None:
        self.query_one("#services-panel").remove_class("-filtering")
        self.table.set_filter("")
        self._subtitles()

    def action_focus_services(self) -> None:
        self.table.focus()

    def action_show_channels(self) -> None:
        self.remove_class("-show-events")
        self.call_after_refresh(self._focus_channels)

    def _focus_channels(self) -> None:
        redraw = getattr(self.app, "redraw", None)
        if redraw is not None:
            redraw()
        visitors = self.query_one("#visitors")
        if visitors.display:
            visitors.focus()
        else:
            self.query_one("#channels").scroll_visible()

    def action_show_events(self) -> None:
        self.add_class("-show-events")
        self.call_after_refresh(self.query_one(EventLog).focus)

    def action_back(self) -> None:
        filter_input = self.query_one("#filter", Input)
        if filter_input.has_focus:
            self.clear_filter()
            self.table.focus()
        elif not self.table.has_focus:
            self.table.focus()
        elif self.table.filter_text:
            self.clear_filter()

    def toggle_follow(self) -> None:
        self.follow_selected = not self.follow_selected
        if self.follow_selected and self.selected:
            self.events_panel.set_service(split_key(self.selected))
            self.notify("Events: only the selected service", timeout=1.5)
        else:
            self.follow_selected = False
            self.events_panel.set_service(None)
            self.notify("Events: all services", timeout=1.5)

    def show_level(self, level: Level) -> None:
        self.events_panel.set_level(level)

    @on(ServicesTable.SortChanged)
    def _subtitles(self) -> None:
        panel = self.query_one("#services-panel")
        table = self.table
        arrow = "▼" if table.sort_reverse else "▲"
        subtitle = f"sort: {SORT_LABELS[table.sort_by]} {arrow}"
        if table.filter_text:
            subtitle = f"filter: {table.filter_text} (esc clears) · {subtitle}"
        panel.border_subtitle = subtitle
