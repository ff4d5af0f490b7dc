"""Yes/no questions in a box over the screen: before quitting while visitors are connected
(quitting cuts them off), and before a wizard throws away what was typed into it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """``title`` and ``question`` with a no and a yes button: ``y`` or the yes button answer
    True; ``n``, escape or the no button (focused first, the safe choice) answer False."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
        Binding("left,h", "app.focus_previous", show=False),
        Binding("right,l", "app.focus_next", show=False),
    ]

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
        background: $background 60%;
    }
    ConfirmScreen > Vertical {
        width: 56;
        max-width: 100%;
        height: auto;
        border: round $warning;
        border-title-style: bold;
        background: $surface;
        padding: 1 2 0 2;
    }
    ConfirmScreen #question {
        margin-bottom: 1;
    }
    ConfirmScreen Horizontal {
        height: auto;
        align-horizontal: right;
    }
    ConfirmScreen Button {
        margin-left: 2;
        min-width: 12;
    }
    """

    def __init__(
        self, title: str, question: str, *, no: str, yes: str, compact: bool = False
    ) -> None:
        super().__init__()
        self.title_text = title
        self.question = question
        self.labels = (no, yes)
        self.compact = compact

    def compose(self) -> ComposeResult:
        no, yes = self.labels
        with Vertical() as box:
            box.border_title = self.title_text
            yield Static(self.question, id="question")
            with Horizontal():
                yield Button(no, id="no", compact=self.compact)
                yield Button(yes, id="yes", variant="error", compact=self.compact)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class ConfirmQuitScreen(ConfirmScreen):
    def __init__(self, visitors: int) -> None:
        noun = "visitor is" if visitors == 1 else "visitors are"
        super().__init__(
            "Quit ratui?",
            f"{visitors} {noun} connected. Quitting stops the tunnel and closes their connections.",
            no="Cancel (n)",
            yes="Stop and quit (y)",
        )
