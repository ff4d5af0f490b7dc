"""The services table: one row per service, updated cell by cell, sortable, filterable.

Rows are keyed ``"role:name"``; a poll rewrites only the cells whose text changed, and
reorders rows only when the sort order actually changed, so the table never flickers and
the cursor stays on the same service. Columns adapt to the width: at 80 columns a compact
set (state and age in one cell), wider a fuller one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.events import Resize
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from ..engine.state import Role, ServiceSnapshot
from .format import format_age, format_bytes, format_duration, format_rate
from .palette import STATE_GLYPH, STATE_RANK, STATE_SHORT, Palette


class KeyedText(Text):
    """The text of a row's first cell, carrying the row key so sorting can find the row."""

    __slots__ = ("row_key",)

    def __init__(self, text: str, row_key: str, **kw: Any) -> None:
        super().__init__(text, **kw)
        self.row_key = row_key


def row_key_of(service: ServiceSnapshot) -> str:
    return f"{service.role}:{service.name}"


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "[::]", ""})


def address_label(service: ServiceSnapshot) -> str:
    """The address cell: the address, or for a service on a shared port, the port (with its
    host unless that is a wildcard) and its first route, e.g. ``443 · pi.example.com +1`` or
    ``10.0.0.5:443 · pi.example.com``."""
    if not service.routes:
        return service.address
    more = f" +{len(service.routes) - 1}" if len(service.routes) > 1 else ""
    host, _, port = service.address.rpartition(":")
    where = port if host in _WILDCARD_HOSTS else service.address
    return f"{where} · {service.routes[0]}{more}"


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int  # 0: fit the content (names, addresses)
    right: bool = False


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("name", "Service", 0),
        Column("role", "Role", 6),
        Column("type", "Type", 4),
        Column("address", "Address", 0),
        Column("peer", "Peer", 0),
        Column("control", "Control", 12),
        Column("since", "Since", 7, right=True),
        Column("visitors", "Visitors", 8, right=True),
        Column("in", "In", 8, right=True),
        Column("out", "Out", 8, right=True),
        Column("rate", "Rate", 11, right=True),
    )
}

#: Column sets from the richest to the most compact; the first that fits is used.
LAYOUTS: tuple[tuple[str, ...], ...] = (
    (
        "name",
        "role",
        "type",
        "address",
        "peer",
        "control",
        "since",
        "visitors",
        "in",
        "out",
        "rate",
    ),
    ("name", "role", "address", "control", "since", "visitors", "in", "out", "rate"),
    ("name", "role", "address", "control", "visitors", "in", "out", "rate"),
)
#: Compact cells used by the last layout.
COMPACT_WIDTHS = {"role": 4, "control": 10, "visitors": 3, "in": 6, "out": 6, "rate": 10}
COMPACT_LABELS = {"visitors": "Vis"}

#: What ``s`` cycles through, in order, and how each sorts.
SORTS: dict[str, Callable[[ServiceSnapshot], Any]] = {
    "name": lambda s: (s.name.lower(), s.role),
    "role": lambda s: (s.role, s.name.lower()),
    "control": lambda s: (STATE_RANK[s.state], s.name.lower()),
    "visitors": lambda s: (s.visitors_open, s.name.lower()),
    "in": lambda s: (s.rx, s.name.lower()),
    "out": lambda s: (s.tx, s.name.lower()),
    "rate": lambda s: (s.rx_rate + s.tx_rate, s.name.lower()),
    "address": lambda s: (s.address, s.name.lower()),
}
SORT_LABELS = {
    "name": "name",
    "role": "role",
    "control": "control state",
    "visitors": "visitors open",
    "in": "bytes in",
    "out": "bytes out",
    "rate": "current rate",
    "address": "address",
}
#: Sorts that show the biggest first when chosen.
DESCENDING_FIRST = {"visitors", "in", "out", "rate"}


def matches(service: ServiceSnapshot, needle: str) -> bool:
    """The ``/`` filter: a case-insensitive substring of name, role, type, address, routes or
    state."""
    if not needle:
        return True
    needle = needle.lower()
    haystack = f"{service.name} {service.role} {service.type} {service.address} {service.state}"
    haystack += "".join(f" {route}" for route in service.routes)
    return needle in haystack.lower()


class ServicesTable(DataTable[Text]):
    """The table of services; post :class:`ServicesTable.Selected` when the cursor moves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "First", show=False),
        Binding("G", "scroll_bottom", "Last", show=False),
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False, tooltip="Reverse the sort"),
        Binding(
            "enter",
            "open_channels",
            "Channels",
            show=False,
            tooltip="Show the channels of this service",
        ),
    ]

    DEFAULT_CSS = """
    ServicesTable {
        width: 1fr;
        height: auto;
        max-height: 100%;
        scrollbar-size-vertical: 1;
    }
    """

    class Selected(Message):
        """The highlighted service changed (``key`` is ``"role:name"`` or None)."""

        def __init__(self, key: str | None) -> None:
            super().__init__()
            self.key = key

    class SortChanged(Message):
        """The sort column or direction changed."""

    class OpenChannels(Message):
        """Enter on a row: show the channels of that service."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, cell_padding=1)
        self.palette: Palette | None = None
        self.bits = True
        self.sort_by = "name"
        self.sort_reverse = False
        self.filter_text = ""
        self.layout_index = len(LAYOUTS) - 1
        self._services: dict[str, ServiceSnapshot] = {}
        self._cells: dict[tuple[str, str], str] = {}
        self._now = 0.0
        self._selected: str | None = None
        self._avail = 0
        self._col_widths: dict[str, int] = {}

    # ------------------------------------------------------------------ public API

    @property
    def selected_key(self) -> str | None:
        return self._selected

    @property
    def compact(self) -> bool:
        return self.layout_index == len(LAYOUTS) - 1

    def show(self, services: Sequence[ServiceSnapshot], now: float) -> None:
        """Bring the table up to date with one snapshot, touching only what changed."""
        self._now = now
        self._services = {row_key_of(s): s for s in services}
        if [str(k.value) for k in self.columns] != list(self._layout()):
            # First call, or the set of columns changed (a second role appeared).
            self.clear(columns=True)
            self._cells.clear()
            compact = self.layout_index == len(LAYOUTS) - 1
            self._col_widths = self._widths(
                self.layout_index, self._avail if compact and self._avail else None
            )
            self._build_columns()
        wanted = [k for k, s in self._services.items() if matches(s, self.filter_text)]
        present = {row.key.value for row in self.ordered_rows}
        for key in present - set(wanted):
            self.remove_row(key)
            self._forget(key)
        fit = False
        for key in wanted:
            service = self._services[key]
            if key not in present:
                self.add_row(*self._row(service), key=key)
                fit = True
            else:
                for column in self._layout():
                    text = self._cell(column, service)
                    if self._cells.get((key, column)) != text.markup:
                        self._cells[(key, column)] = text.markup
                        self.update_cell(key, column, text)
        if fit:
            self._fit()
        self._apply_sort()
        self._announce()

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.show(list(self._services.values()), self._now)

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if column not in SORTS:
            return
        if reverse is None:
            reverse = column in DESCENDING_FIRST
        self.sort_by, self.sort_reverse = column, reverse
        self._relabel()
        self._apply_sort(force=True)
        self.post_message(self.SortChanged())

    def set_units(self, bits: bool) -> None:
        self.bits = bits
        self.rebuild()

    def set_palette(self, palette: Palette) -> None:
        self.palette = palette
        self.rebuild()

    def choose_layout(self, width: int) -> None:
        """Use the richest column set that fits ``width`` cells; the most compact one
        squeezes the name and address columns (with an ellipsis) to fit."""
        self._avail = width
        last = len(LAYOUTS) - 1
        for index in range(len(LAYOUTS)):
            widths = self._widths(index, width if index == last else None)
            if index == last or self._total(index, widths) <= width:
                break
        if index != self.layout_index or set(widths) != {str(k.value) for k in self.columns}:
            self.layout_index = index
            self._col_widths = widths
            self.rebuild()
        elif widths != self._col_widths:
            self._col_widths = widths
            for key, column in self.columns.items():
                column.width = widths.get(str(key.value), column.width)
            self._require_update_dimensions = True
            self.refresh()

    def rebuild(self) -> None:
        """Recreate columns and rows (a resize across a layout, units, theme): rare."""
        cursor = self._selected
        self.clear(columns=True)  # show() builds the columns again
        self._cells.clear()
        self.show(list(self._services.values()), self._now)
        if cursor is not None:
            self.select(cursor)

    def select(self, key: str) -> bool:
        try:
            index = self.get_row_index(key)
        except Exception:
            return False
        self.move_cursor(row=index)
        return True

    # ------------------------------------------------------------------ actions

    def action_cycle_sort(self) -> None:
        order = list(SORTS)
        column = order[(order.index(self.sort_by) + 1) % len(order)]
        self.set_sort(column)
        self.notify(f"Sorted by {SORT_LABELS[column]}", timeout=1.5)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_by, not self.sort_reverse)

    def action_open_channels(self) -> None:
        self.post_message(self.OpenChannels())

    # ------------------------------------------------------------------ events

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._announce()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        if column in SORTS:
            if column == self.sort_by:
                self.set_sort(column, not self.sort_reverse)
            else:
                self.set_sort(column)

    # ------------------------------------------------------------------ internals

    def _layout(self) -> tuple[str, ...]:
        return self._columns_for(self.layout_index)

    def _columns_for(self, index: int) -> tuple[str, ...]:
        """The columns of layout ``index``; the compact one drops the role when every
        service has the same (the header names it)."""
        columns = LAYOUTS[index]
        if index == len(LAYOUTS) - 1 and len({s.role for s in self._services.values()}) <= 1:
            columns = tuple(c for c in columns if c != "role")
        return columns

    def _fit_width(self, column: str, compact: bool) -> int:
        texts = {
            "name": [s.name for s in self._services.values()],
            "address": [address_label(s) for s in self._services.values()],
            "peer": [s.peer or "" for s in self._services.values()],
        }[column]
        label = len(COLUMNS[column].label) + (0 if compact else 2)  # room for ▲
        return min(24, max([label, *map(len, texts)]))

    def _widths(self, index: int, avail: int | None) -> dict[str, int]:
        compact = index == len(LAYOUTS) - 1
        widths: dict[str, int] = {}
        for column in self._columns_for(index):
            if COLUMNS[column].width == 0:
                widths[column] = self._fit_width(column, compact)
            elif compact and column in COMPACT_WIDTHS:
                widths[column] = COMPACT_WIDTHS[column]
            else:
                widths[column] = COLUMNS[column].width
        if avail is not None:
            flexible = [c for c in self._columns_for(index) if COLUMNS[c].width == 0]
            # Shrink the widest flexible column, one cell at a time, down to 6.
            while self._total(index, widths) > avail:
                widest = max(flexible, key=lambda c: widths[c])
                if widths[widest] <= 6:
                    break
                widths[widest] -= 1
        return widths

    def _total(self, index: int, widths: dict[str, int]) -> int:
        return sum(widths.values()) + 2 * self.cell_padding * len(widths)

    def _build_columns(self) -> None:
        for column in self._layout():
            self.add_column(self._label(column), width=self._col_widths[column], key=column)

    def _label(self, column: str) -> Text:
        spec = COLUMNS[column]
        label = COMPACT_LABELS.get(column, spec.label) if self.compact else spec.label
        if column == self.sort_by and not self.compact:
            label += " ▼" if self.sort_reverse else " ▲"
        return Text(label, justify="right" if spec.right else "left")

    def _relabel(self) -> None:
        for key, column in self.columns.items():
            column.label = self._label(str(key.value))
        self._update_count += 1
        self.refresh()

    def _fit(self) -> None:
        """New rows may need wider name/address columns, or a more compact layout."""
        if self._avail:
            self.choose_layout(self._avail)

    def on_resize(self, event: Resize) -> None:
        scrollbar = self.scrollbar_size_vertical if self.show_vertical_scrollbar else 0
        self.choose_layout(event.size.width - scrollbar)

    def _row(self, service: ServiceSnapshot) -> list[Text]:
        key = row_key_of(service)
        cells = []
        for column in self._layout():
            text = self._cell(column, service)
            self._cells[(key, column)] = text.markup
            cells.append(text)
        return cells

    def _cell(self, column: str, s: ServiceSnapshot) -> Text:
        p = self.palette
        compact = self.compact
        right = COLUMNS[column].right
        muted = p.muted if p else ""
        if column == "name":
            return KeyedText(
                s.name, row_key_of(s), style=p.strong if p else "", overflow="ellipsis"
            )
        if column == "role":
            return Text(s.role.value[:3] if compact else s.role.value, overflow="ellipsis")
        if column == "type":
            return Text(s.type)
        if column == "address":
            return Text(address_label(s), overflow="ellipsis", no_wrap=True)
        if column == "peer":
            return Text(s.peer or "-", style="" if s.peer else muted, overflow="ellipsis")
        if column == "control":
            style = p.state(s.state) if p else ""
            label = STATE_SHORT[s.state] if compact else s.state.value
            text = Text(f"{STATE_GLYPH[s.state]} {label}", style=style)
            if compact:
                text.append(f" {format_age(self._now - s.state_since)}", style=muted)
            return text
        if column == "since":
            return Text(format_duration(self._now - s.state_since), style=muted, justify="right")
        if column == "visitors":
            style = "" if s.visitors_open else muted
            return Text(str(s.visitors_open), style=style, justify="right")
        if column in ("in", "out"):
            value = s.rx if column == "in" else s.tx
            style = "" if value else muted
            return Text(format_bytes(value).replace(" ", ""), style=style, justify="right")
        if column == "rate":
            rate = s.rx_rate + s.tx_rate
            style = (p.accent if p else "") if rate else muted
            label = format_rate(rate, bits=self.bits)
            return Text(label.replace(" ", "") if compact else label, style=style, justify="right")
        return Text("", justify="right" if right else "left")  # pragma: no cover

    def _apply_sort(self, force: bool = False) -> None:
        if not self.rows:
            return
        keyfunc = SORTS[self.sort_by]
        current = [row.key.value for row in self.ordered_rows]
        order = sorted(current, key=lambda k: keyfunc(self._services[k]), reverse=self.sort_reverse)
        if order == current and not force:
            return
        rank = {key: i for i, key in enumerate(order)}
        selected = self._selected
        self.sort("name", key=lambda cell: rank[cell.row_key])
        if selected is not None and selected in rank:
            self.move_cursor(row=rank[selected], animate=False)

    def _announce(self) -> None:
        key: str | None = None
        if self.row_count:
            row = min(self.cursor_row, self.row_count - 1)
            key = self.coordinate_to_cell_key((row, 0)).row_key.value  # type: ignore[arg-type]
        if key != self._selected:
            self._selected = key
            self.post_message(self.Selected(key))

    def _forget(self, key: str | RowKey) -> None:
        for cell in [c for c in self._cells if c[0] == key]:
            del self._cells[cell]


def split_key(key: str) -> tuple[Role, str]:
    role, _, name = key.partition(":")
    return Role(role), name
