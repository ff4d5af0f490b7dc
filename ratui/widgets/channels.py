"""The channels of the selected service: its control channel, its rate, its open visitors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from ..engine.state import ControlState, Role, ServiceSnapshot, VisitorSnapshot
from .format import format_age, format_bytes, format_clock, format_duration, format_rate
from .graph import RateGraph
from .palette import STATE_GLYPH, Palette
from .readout import Readout


class VisitorsTable(DataTable[Text]):
    """Open visitors of one service, one row per visitor, updated in place."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "First", show=False),
        Binding("G", "scroll_bottom", "Last", show=False),
    ]

    DEFAULT_CSS = """
    VisitorsTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    """

    COLUMNS = (
        ("id", "#", 5),
        ("peer", "Visitor", 21),
        ("age", "Age", 7),
        ("in", "In", 8),
        ("out", "Out", 8),
    )
    #: Shown after the visitor's address for a service on a shared port: the host it asked for.
    ROUTE_COLUMN = ("route", "Host", 15)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=False)
        self._cells: dict[tuple[str, str], str] = {}
        self._owner: str | None = None
        self._routed = False

    def on_mount(self) -> None:
        if not self.columns:  # show() may have built them already
            self._add_columns()

    def _add_columns(self) -> None:
        columns = list(self.COLUMNS)
        if self._routed:
            columns.insert(2, self.ROUTE_COLUMN)
        for key, label, width in columns:
            right = key in ("id", "age", "in", "out")
            self.add_column(Text(label, justify="right" if right else "left"), key=key, width=width)

    def on_focus(self) -> None:
        self.show_cursor = True

    def on_blur(self) -> None:
        self.show_cursor = False

    def show(
        self,
        owner: str | None,
        visitors: Sequence[VisitorSnapshot],
        now: float,
        palette: Palette | None,
        routed: bool = False,
    ) -> None:
        if routed != self._routed:
            self._routed = routed
            self.clear(columns=True)
            self._add_columns()
            self._cells.clear()
        if owner != self._owner:
            self._owner = owner
            self.clear()
            self._cells.clear()
        muted = palette.muted if palette else ""
        wanted = {str(v.id): v for v in visitors}
        present = {str(row.key.value) for row in self.ordered_rows}
        for key in present - set(wanted):
            self.remove_row(key)
            for cell in [c for c in self._cells if c[0] == key]:
                del self._cells[cell]
        for key, v in wanted.items():
            cells = {
                "id": Text(f"#{v.id}", style=muted, justify="right"),
                "peer": Text(v.peer, overflow="ellipsis", no_wrap=True),
                **(
                    {"route": Text(v.route or "-", overflow="ellipsis", no_wrap=True)}
                    if routed
                    else {}
                ),
                "age": Text(format_age(now - v.opened_at), justify="right"),
                "in": Text(format_bytes(v.rx).replace(" ", ""), justify="right"),
                "out": Text(format_bytes(v.tx).replace(" ", ""), justify="right"),
            }
            if key not in present:
                self.add_row(*cells.values(), key=key)
                self._cells.update({(key, c): t.markup for c, t in cells.items()})
                continue
            for column, text in cells.items():
                if self._cells.get((key, column)) != text.markup:
                    self._cells[(key, column)] = text.markup
                    self.update_cell(key, column, text)


class ChannelsPanel(Vertical):
    """Summary lines for the selected service, its own rate graph, and its visitors."""

    DEFAULT_CSS = """
    ChannelsPanel > #channel-summary {
        height: auto;
        padding: 0 1;
    }
    ChannelsPanel > #channel-rate {
        height: 1;
        padding: 0 1;
    }
    ChannelsPanel #channel-rate-label {
        width: auto;
        padding-right: 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield Readout(id="channel-summary")
        with Horizontal(id="channel-rate"):
            yield Readout(id="channel-rate-label")
            yield RateGraph(id="channel-graph")
        yield VisitorsTable(id="visitors")

    def show(
        self,
        service: ServiceSnapshot | None,
        now: float,
        palette: Palette,
        bits: bool,
        history: Sequence[float],
        end_second: int | None,
    ) -> None:
        if not self.display:
            return  # hidden: the next poll after it shows fills it
        summary = self.query_one("#channel-summary", Readout)
        rate = self.query_one("#channel-rate")
        table = self.query_one(VisitorsTable)
        if service is None:
            self.border_title = "Channels"
            summary.set_text(Text("No service selected.", style=palette.muted))
            rate.display = False
            table.show(None, (), now, palette)
            return
        self.border_title = f"Channels · {service.name} ({service.role})"
        summary.set_text(describe(service, now, palette))
        rate.display = True
        label = Text()
        label.append("↓ ", style=palette.muted)
        label.append(format_rate(service.rx_rate, bits=bits))
        label.append("  ↑ ", style=palette.muted)
        label.append(format_rate(service.tx_rate, bits=bits))
        self.query_one("#channel-rate-label", Readout).set_text(label)
        self.query_one("#channel-graph", RateGraph).plot(history, end_second)
        table.show(
            f"{service.role}:{service.name}", service.visitors, now, palette, bool(service.routes)
        )


def describe(s: ServiceSnapshot, now: float, p: Palette) -> Text:
    """Three lines (four with an error): where, the control channel, its details (with the
    routes of a service on a shared port)."""
    text = Text()
    text.append(f"{s.type} · {'public' if s.role is Role.SERVER else 'local'} ", style=p.muted)
    text.append(s.address)
    text.append(" · visitors ", style=p.muted)
    text.append(f"{s.visitors_open} open", style=p.strong if s.visitors_open else "")
    text.append(f", {s.visitors_total} total", style=p.muted)
    text.append("\ncontrol ", style=p.muted)
    text.append(f"{STATE_GLYPH[s.state]} {s.state.value}", style=p.state(s.state))
    text.append(
        f" since {format_clock(s.state_since)} ({format_duration(now - s.state_since)})",
        style=p.muted,
    )
    if s.role is Role.SERVER:
        text.append(" · client ", style=p.muted)
        if s.peer and s.state is ControlState.UP:
            text.append(s.peer)
        else:
            text.append("not connected", style=p.warn)
        text.append("\n")
    else:
        text.append(" · server ", style=p.muted)
        text.append(s.peer or "?")
        text.append("\nretries ", style=p.muted)
        text.append(str(s.reconnects), style=p.warn if s.reconnects else "")
        text.append(" · heartbeat ", style=p.muted)
        if s.last_heartbeat is None:
            text.append("none yet", style=p.muted)
        else:
            text.append(f"{format_age(now - s.last_heartbeat)} ago")
        text.append(" · ", style=p.muted)
    text.append(f"{s.idle_data_channels} idle data channels", style=p.muted)
    if s.routes:
        text.append(" · routes ", style=p.muted)
        text.append(", ".join(s.routes))
    if s.auth_failures:
        text.append(" · auth failures ", style=p.muted)
        text.append(str(s.auth_failures), style=p.bad)
    if s.last_error:
        text.append("\nlast error ", style=p.muted)
        text.append(s.last_error, style=p.bad)
    return text
