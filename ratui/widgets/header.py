"""The one-line header (what runs, from which config, for how long, how fast) and the demo's
banner with the command to try."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from .format import format_rate, format_uptime
from .palette import Palette
from .readout import Readout


class HeaderBar(Horizontal):
    DEFAULT_CSS = """
    HeaderBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
    }
    HeaderBar > #brand {
        width: auto;
        padding: 0 1;
        background: $primary;
        color: $text;
        text-style: bold;
    }
    HeaderBar > #where {
        width: 1fr;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    HeaderBar > #vitals {
        width: auto;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static("ratui", id="brand")
        yield Readout(id="where")
        yield Readout(id="vitals")

    def show_where(self, roles: str, source: str, palette: Palette) -> None:
        text = Text()
        text.append(roles, style=palette.strong)
        text.append("  ")
        text.append(source, style=palette.muted)
        self.query_one("#where", Readout).set_text(text)

    def show_vitals(
        self,
        *,
        status: str | None,
        status_style: str,
        uptime: float,
        rx: float,
        tx: float,
        visitors: int,
        bits: bool,
        palette: Palette,
    ) -> None:
        """``● up 0:05:12  2 visitors  ↓941Mbit/s ↑12kbit/s``; a status word replaces the
        uptime while the engine is not running."""
        text = Text(no_wrap=True)
        if status is None:
            text.append("● ", style=palette.ok)
            text.append("up ", style=palette.muted)
            text.append(format_uptime(uptime))
        else:
            text.append(status, style=status_style)
        noun = "visitor" if visitors == 1 else "visitors"
        text.append(f"  {visitors} {noun}", style="" if visitors else palette.muted)
        text.append("  ↓", style=palette.muted)
        text.append(format_rate(rx, bits=bits).replace(" ", ""), style=palette.accent if rx else "")
        text.append(" ↑", style=palette.muted)
        text.append(format_rate(tx, bits=bits).replace(" ", ""), style=palette.accent if tx else "")
        self.query_one("#vitals", Readout).set_text(text)


class DemoBanner(Readout):
    DEFAULT_CSS = """
    DemoBanner {
        height: 1;
        padding: 0 1;
        background: $accent 20%;
        color: $text;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def show_url(self, url: str, palette: Palette) -> None:
        text = Text(no_wrap=True)
        text.append("DEMO ", style=palette.accent + palette.strong)
        text.append("in another terminal try: ", style=palette.muted)
        text.append(f"curl {url}", style=palette.strong)
        text.append("   y: copy", style=palette.muted)
        self.set_text(text)
