"""The event log: what state.py's event stream says, filterable by level and by service."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import RichLog

from ..engine.state import Event, Level, Role
from .format import format_clock
from .palette import Palette
from .readout import Readout

LEVELS = (Level.DEBUG, Level.INFO, Level.WARNING, Level.ERROR)
LEVEL_RANK = {level: i for i, level in enumerate(LEVELS)}
LEVEL_LABEL = {
    Level.DEBUG: "DEBUG",
    Level.INFO: "INFO",
    Level.WARNING: "WARN",
    Level.ERROR: "ERROR",
}


class EventLog(RichLog):
    """The scrolling log itself; follows new lines only while scrolled to the bottom."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "scroll_down", "Down", show=False),
        Binding("k", "scroll_up", "Up", show=False),
        Binding("g", "scroll_home", "First", show=False),
        Binding("G", "scroll_end", "Last", show=False),
        Binding(
            "l", "cycle_level", "Level", tooltip="Lowest level shown: debug, info, warn, error"
        ),
        Binding(
            "f",
            "follow_service",
            "This service",
            tooltip="Only the events of the selected service, or all again",
        ),
    ]

    DEFAULT_CSS = """
    EventLog {
        height: 1fr;
        background: $surface;
        scrollbar-size-vertical: 1;
        padding: 0 1;
    }
    """

    class CycleLevel(Message):
        pass

    class FollowService(Message):
        pass

    def action_cycle_level(self) -> None:
        self.post_message(self.CycleLevel())

    def action_follow_service(self) -> None:
        self.post_message(self.FollowService())


class EventsPanel(Vertical):
    """Keeps the last events, writes those that pass the filter, rewrites on a new filter."""

    DEFAULT_CSS = """
    EventsPanel > #event-filter {
        height: 1;
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, *, capacity: int = 2000, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: deque[Event] = deque(maxlen=capacity)
        self.min_level = Level.INFO
        self.service: tuple[Role, str] | None = None
        self.palette: Palette | None = None
        self.errors = 0
        self.warnings = 0
        self._width = 0
        self._dirty = False
        self._where_width = 0

    def compose(self) -> ComposeResult:
        yield Readout(id="event-filter")
        yield EventLog(id="event-log", wrap=True, min_width=20, max_lines=2000)

    def on_mount(self) -> None:
        self._describe_filter()

    # ------------------------------------------------------------------ API

    def add(self, new: Iterable[Event]) -> None:
        """Keep ``new`` events; write those that pass the filter (later, if hidden)."""
        log = self.query_one(EventLog)
        follow = log.is_vertical_scroll_end or not log.lines
        count = 0
        visible = self._visible()
        for event in new:
            count += 1
            self.events.append(event)
            where = len(_where(event))
            if where > self._where_width:
                self._where_width = min(where, 24)
                self._dirty = True
            if event.level is Level.ERROR:
                self.errors += 1
            elif event.level is Level.WARNING:
                self.warnings += 1
            if visible and not self._dirty and self.passes(event):
                log.write(self._line(event), width=self._width, scroll_end=follow)
        if not count:
            return
        if not visible:
            self._dirty = True
        elif self._dirty:
            self.rewrite()
        self._title()

    def passes(self, event: Event) -> bool:
        if LEVEL_RANK[event.level] < LEVEL_RANK[self.min_level]:
            return False
        if self.service is not None:
            role, name = self.service
            return event.service == name and (event.role is None or event.role == role)
        return True

    def set_level(self, level: Level) -> None:
        self.min_level = level
        self.rewrite()

    def cycle_level(self) -> Level:
        self.set_level(LEVELS[(LEVEL_RANK[self.min_level] + 1) % len(LEVELS)])
        return self.min_level

    def set_service(self, service: tuple[Role, str] | None) -> None:
        self.service = service
        self.rewrite()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self.rewrite()

    def rewrite(self) -> None:
        """Write the log again from the kept events (new filter, width or theme)."""
        self._describe_filter()
        self._title()
        if not self._visible():
            self._dirty = True
            return
        self._dirty = False
        log = self.query_one(EventLog)
        log.clear()
        for event in self.events:
            if self.passes(event):
                log.write(self._line(event), width=self._width, scroll_end=True)

    def _visible(self) -> bool:
        """Shown and laid out; also refreshes the width lines are written at."""
        log = self.query_one(EventLog)
        width = log.scrollable_content_region.width
        if not self.display or width <= 0:
            return False
        if width != self._width:
            self._width = width
            self._dirty = True
        return True

    def on_resize(self) -> None:
        self.call_after_refresh(self._refit)

    def on_show(self) -> None:
        self.call_after_refresh(self._refit)

    def _refit(self) -> None:
        if self._visible() and self._dirty:
            self.rewrite()

    # ------------------------------------------------------------------ rendering

    def _describe_filter(self) -> None:
        p = self.palette
        text = Text("level ≥ ", style=p.muted if p else "")
        text.append(LEVEL_LABEL[self.min_level].lower(), style=p.strong if p else "")
        text.append(" · ", style=p.muted if p else "")
        if self.service is None:
            text.append("all services")
        else:
            role, name = self.service
            text.append(f"{name} ({role})", style=p.strong if p else "")
        self.query_one("#event-filter", Readout).set_text(text)

    def _title(self) -> None:
        title = "Events"
        if self.errors:
            title += f" · {self.errors} error" + ("s" if self.errors != 1 else "")
        if self.warnings:
            title += f" · {self.warnings} warning" + ("s" if self.warnings != 1 else "")
        self.border_title = title
        self.set_class(bool(self.errors), "-has-errors")

    def _line(self, event: Event) -> Table:
        p = self.palette
        level_style = p.level(event.level) if p else ""
        label_style = level_style
        message_style = level_style
        if p is not None and event.level is Level.ERROR:
            label_style = p.error_badge
        elif p is not None and event.level is Level.WARNING:
            label_style = p.warning_badge
        if event.level is Level.INFO:
            message_style = ""
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=8, no_wrap=True)
        grid.add_column(width=5, no_wrap=True)
        if self._where_width:
            grid.add_column(no_wrap=True, width=self._where_width)
        grid.add_column(ratio=1)
        cells = [
            Text(format_clock(event.time), style=p.muted if p else ""),
            Text(LEVEL_LABEL[event.level].center(5), style=label_style),
        ]
        if self._where_width:
            cells.append(Text(_where(event), style=p.primary if p else "", overflow="ellipsis"))
        grid.add_row(
            *cells,
            Text(event.message, style=message_style),
        )
        return grid


def _where(event: Event) -> str:
    """``ser demo-web``: the role and service an event is about, if any."""
    if not event.service:
        return ""
    return f"{str(event.role)[:3]} {event.service}" if event.role else event.service
