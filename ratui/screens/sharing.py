"""Handing a pairing code to the other machine: the clipboard, and a QR code on a screen of
its own.

Copying goes through the terminal (OSC 52), which ratui cannot see arrive: many terminals
pass it on, but tmux by default does not (``set-clipboard on`` lets it). So a copy says where
it went and what to do when the clipboard stays empty.

A QR code of a pairing code is 37 to 50 modules wide or more. Drawn with half blocks (two
modules per character row), one for a single Noise service needs 24 rows with its quiet zone:
all of an 80x24 terminal. Shown inside a page with other text, it would always be cut. So
the result page and the pairing screen open it here (``r``), alone on a white screen, and
when the window is too small this says how big it must be instead of drawing a code no
scanner can read.
"""

from __future__ import annotations

from typing import ClassVar

import segno
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.dom import DOMNode
from textual.screen import ModalScreen
from textual.widgets import Static

#: Light modules around the code; scanners want some, and 1 is enough for phone cameras.
QUIET_ZONES = (2, 1)


def copy_code(node: DOMNode, text: str) -> None:
    """Copy ``text`` (a pairing code or the command with it) and say so honestly."""
    node.app.copy_to_clipboard(text)
    node.notify(
        "Sent to the terminal's clipboard. If pasting gives nothing, select the text instead "
        "(inside tmux: set-clipboard on passes the copy on).",
        title="Copied",
        timeout=6,
    )


def qr_modules(data: str) -> list[list[int]]:
    return [list(row) for row in segno.make(data, error="l", micro=False).matrix]


def qr_text(data: str, border: int = 2) -> Text:
    """``data`` as a QR code drawn with half blocks (two modules per character row), dark
    modules on white whatever the terminal's colours, with ``border`` light modules around."""
    matrix = qr_modules(data)
    width = len(matrix[0]) + 2 * border
    light = [0] * width
    rows = [light] * border + [[0] * border + r + [0] * border for r in matrix]
    rows += [light] * border
    rows += [light] * (len(rows) % 2)  # half blocks draw rows in pairs
    glyphs = {(0, 0): " ", (1, 0): "▀", (0, 1): "▄", (1, 1): "█"}
    lines = [
        "".join(glyphs[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    ]
    return Text("\n".join(lines), style="#000000 on #ffffff", no_wrap=True)


def qr_cells(modules: int, border: int) -> tuple[int, int]:
    """(columns, rows) of a code ``modules`` wide drawn by :func:`qr_text`."""
    side = modules + 2 * border
    return side, (side + 1) // 2


class QrScreen(ModalScreen[None]):
    """``code`` as a QR code, as big as the window allows; any of ``escape`` ``r`` ``q``
    closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,r,q", "dismiss", "Close", key_display="esc"),
    ]

    DEFAULT_CSS = """
    QrScreen { align: center middle; background: #ffffff; }
    QrScreen #qr { width: auto; height: auto; }
    QrScreen #too-small {
        width: 60; max-width: 100%; height: auto; padding: 1 2;
        background: $surface; color: $text; border: round $warning;
    }
    QrScreen #hint { dock: bottom; width: 100%; content-align: center middle; color: #555555; }
    QrScreen .-hidden { display: none; }
    """

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.modules = len(qr_modules(code))

    def compose(self) -> ComposeResult:
        yield Static(id="qr")
        yield Static(id="too-small", markup=False)
        yield Static("esc closes", id="hint", markup=False)

    def on_mount(self) -> None:
        self._draw(self.app.size.width, self.app.size.height)

    def on_resize(self, event: events.Resize) -> None:
        self._draw(event.size.width, event.size.height)

    def _draw(self, width: int, height: int) -> None:
        """The code with the widest quiet zone that fits, or what size the window needs."""
        border = next(
            (b for b in QUIET_ZONES if _fits(qr_cells(self.modules, b), width, height)), None
        )
        qr, too_small = self.query_one("#qr", Static), self.query_one("#too-small", Static)
        qr.set_class(border is None, "-hidden")
        too_small.set_class(border is not None, "-hidden")
        if border is None:
            need = qr_cells(self.modules, QUIET_ZONES[-1])
            too_small.update(
                f"The QR code of this pairing code needs a window of at least "
                f"{need[0]}x{need[1]} characters; this one is {width}x{height}. Make the "
                "window larger (or the font smaller), or copy the code instead.\n\n"
                "esc closes."
            )
            self.query_one("#hint").display = False
            return
        qr.update(qr_text(self.code, border))
        self.query_one("#hint").display = qr_cells(self.modules, border)[1] < height


def _fits(cells: tuple[int, int], width: int, height: int) -> bool:
    return cells[0] <= width and cells[1] <= height
