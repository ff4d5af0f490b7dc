"""Asked before quitting while visitors are connected: quitting cuts them off."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmQuitScreen(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop and quit"),
        Binding("n,escape", "answer(False)", "Cancel"),
        Binding("left,h", "app.focus_previous", show=False),
        Binding("right,l", "app.focus_next", show=False),
    ]

    DEFAULT_CSS = """
    ConfirmQuitScreen {
        align: center middle;
        background: $background 60%;
    }
    ConfirmQuitScreen > Vertical {
        width: 56;
        max-width: 100%;
        height: auto;
        border: round $warning;
        border-title-style: bold;
        background: $surface;
        padding: 1 2 0 2;
    }
    ConfirmQuitScreen #question {
        margin-bottom: 1;
    }
    ConfirmQuitScreen Horizontal {
        height: auto;
        align-horizontal: right;
    }
    ConfirmQuitScreen Button {
        margin-left: 2;
        min-width: 12;
    }
    """

    def __init__(self, visitors: int) -> None:
        super().__init__()
        self.visitors = visitors

    def compose(self) -> ComposeResult:
        noun = "visitor is" if self.visitors == 1 else "visitors are"
        with Vertical() as box:
            box.border_title = "Quit ratui?"
            yield Static(
                f"{self.visitors} {noun} connected. Quitting stops the tunnel and "
                "closes their connections.",
                id="question",
            )
            with Horizontal():
                yield Button("Cancel (n)", id="no")
                yield Button("Stop and quit (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
