"""``?``: every key binding, read from the BINDINGS of the classes that define them, so the
help can never disagree with the keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .boxed import boxed_css

#: Keys Textual provides that are worth listing, per section.
EXTRA: dict[str, list[tuple[str, str]]] = {
    "Everywhere": [
        ("tab / shift+tab", "Next / previous panel"),
        ("ctrl+p", "Command palette: every action, searchable"),
    ],
    "Tables and log": [("↑ ↓ pgup pgdn", "Move"), ("home end", "First / last")],
}


def _bindings(cls: type) -> list[Binding]:
    found: list[Binding] = []
    for item in getattr(cls, "BINDINGS", []):
        if isinstance(item, Binding):
            found.append(item)
        elif isinstance(item, tuple):
            found.append(Binding(*item))
    return found


def _rows(display: object, classes: Iterable[type], skip: set[str]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for cls in classes:
        for binding in _bindings(cls):
            if binding.action in skip or not binding.description:
                continue
            key = display(binding)  # type: ignore[operator]
            rows.append((key, binding.tooltip or binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys of each part of the dashboard."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close", key_display="esc"),
        Binding("j", "scroll_down", show=False),
        Binding("k", "scroll_up", show=False),
    ]

    DEFAULT_CSS = (
        boxed_css("HelpScreen", "VerticalScroll", 72)
        + """
    HelpScreen .help-title {
        text-style: bold;
        color: $text-primary;
        margin-top: 1;
    }
    HelpScreen .help-keys {
        padding-left: 2;
    }
    """
    )

    def __init__(self, sections: dict[str, list[type]], demo: bool = False) -> None:
        super().__init__()
        self.sections = sections
        self.demo = demo
        #: What the screen lists: (section title, [(key, description), ...]).
        self.listing: list[tuple[str, list[tuple[str, str]]]] = []

    def compose(self) -> ComposeResult:
        skip = {"dismiss"} | (set() if self.demo else {"copy_command"})
        sections: list[tuple[str, list[tuple[str, str]]]] = []
        for title, classes in self.sections.items():
            rows = _rows(self.app.get_key_display, classes, skip) + EXTRA.get(title, [])
            unique: dict[str, str] = {}
            for key, description in rows:
                unique.setdefault(key, description)  # one line per key, the first wins
            if unique:
                sections.append((title, list(unique.items())))
        self.listing = sections
        width = max(len(key) for _, rows in sections for key, _ in rows)
        with VerticalScroll() as scroll:
            scroll.border_title = "ratui · keys"
            scroll.border_subtitle = "esc / ? close · j k scroll"
            for title, rows in sections:
                yield Static(title, classes="help-title")
                yield Static(self._table(rows, width), classes="help-keys")

    @staticmethod
    def _table(rows: list[tuple[str, str]], width: int) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True, width=width)
        table.add_column()
        for key, description in rows:
            table.add_row(key, description)
        return table

    def action_scroll_down(self) -> None:
        self.query_one(VerticalScroll).scroll_down()

    def action_scroll_up(self) -> None:
        self.query_one(VerticalScroll).scroll_up()
