"""The step framework the setup wizards share.

A :class:`Wizard` is a full-window modal screen that shows one :class:`Step` at a time under a
"Step i of n" title, with Cancel / Back / Next buttons at the bottom (also ``escape``,
``ctrl+b`` and ``ctrl+n``). Leaving a step forward asks the step to check itself: a step shows
each problem in place, under the field it is about (:class:`Field`), and stays until it is
fixed (or edited). Going back never checks. Cancelling asks first once something was typed.

Enter in a field moves to the next one, and from the last field of a step to the next step.

Keys over SSH often arrive several to a read. Textual hands each key to the focused widget
before the previous one has finished bubbling up to the bindings, so a key typed right after
Tab would land in the field Tab is leaving, and one typed after Home before the cursor moved.
So the wizard moves the focus in priority bindings (decided before the next key is handed
out), lets the focused field take the keys it was already handed before checking a step, and
:class:`FieldInput` runs its editing keys itself, in order with the typed text.

The wizard dismisses with the path of the config it wrote, or ``None`` when cancelled, so it
can be pushed onto any app. :class:`ReviewStep` is the last step of both wizards: it shows the
TOML and where it goes, asks before replacing a file, and writes it with mode 0600.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

from textual import events, on
from textual._context import active_message_pump
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    ContentSwitcher,
    Input,
    Label,
    RadioSet,
    Static,
    TextArea,
)

from ..setup.files import ExistingFileError, write_secret_file
from .confirm import ConfirmScreen


class FieldError(Static):
    """A problem with the field above it, in the error colour; empty (and zero height) when
    there is none."""

    DEFAULT_CSS = """
    FieldError { color: $text-error; height: auto; }
    FieldError.-empty { display: none; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, classes="-empty", markup=False)

    def show(self, problem: str | None) -> None:
        self.update(problem or "")
        self.set_class(not problem, "-empty")

    @property
    def problem(self) -> str:
        return str(self.content)


class FieldInput(Input):
    """An input that runs its own key bindings (Home, End, arrows, Backspace...) as the keys
    come, in order with the text typed around them; see the module docstring."""

    async def _on_key(self, event: events.Key) -> None:
        bindings = self._bindings.key_to_bindings.get(event.key, ())
        action = next((b.action for b in bindings if b.action != "submit"), None)
        if action is not None:
            event.stop()
            event.prevent_default()
            await self.run_action(action)


class Choices(RadioSet):
    """A radio set whose cursor starts on the chosen button, so that Enter keeps the choice
    (Textual's starts on the first button, and Enter would press that one). RadioSet has no
    public way to place its cursor: this sets its ``_selected``."""

    def on_mount(self) -> None:
        self.call_later(self._cursor_to_choice)  # after RadioSet's mount put it on the first

    def _on_focus(self) -> None:
        self._cursor_to_choice()

    def _cursor_to_choice(self) -> None:
        if self.pressed_index >= 0:
            self._selected = self.pressed_index

    @property
    def cursor_on_choice(self) -> bool:
        return self._selected == self.pressed_index


class Field(Vertical):
    """A labelled one-line input with its error shown in place under it; the error goes once
    the text is edited."""

    DEFAULT_CSS = """
    Field { height: auto; margin-bottom: 1; }
    Field > Label { color: $text-muted; }
    """

    def __init__(
        self,
        label: str,
        value: str = "",
        *,
        id: str,
        placeholder: str = "",
        password: bool = False,
    ) -> None:
        super().__init__(id=id)
        self.label = label
        self.input = FieldInput(
            value, placeholder=placeholder, password=password, compact=True, id=f"{id}-input"
        )
        self.error = FieldError(id=f"{id}-error")

    def compose(self) -> ComposeResult:
        yield Label(self.label)
        yield self.input
        yield self.error

    @property
    def value(self) -> str:
        return self.input.value.strip()

    @value.setter
    def value(self, text: str) -> None:
        self.input.value = text

    def check(self, problem: str | None) -> bool:
        """Show ``problem`` (or clear the error); True when there is none."""
        self.error.show(problem)
        return problem is None

    @on(Input.Changed)
    def _edited(self) -> None:
        self.error.show(None)


class Step(VerticalScroll):
    """One page of a wizard. Subclasses compose their fields, refresh them in :meth:`enter`
    from what earlier steps decided, and check them in :meth:`leave`."""

    DEFAULT_CSS = """
    Step { height: 1fr; padding: 0 1; }
    Step .hint { color: $text-muted; margin-bottom: 1; }
    """

    #: Shown after "Step i of n".
    title: ClassVar[str] = ""
    #: The Next button's label on this step.
    next_label: ClassVar[str] = "Next"

    @property
    def wizard(self) -> Wizard:
        screen = self.screen
        assert isinstance(screen, Wizard)
        return screen

    async def enter(self) -> None:
        """Called each time the step is shown: fill it from the earlier steps."""

    async def leave(self) -> bool:
        """Check the step before moving forward; show problems in place and return False to
        stay."""
        return True

    def focus_first(self) -> None:
        for widget in self.query("Input, TextArea, RadioSet, Checkbox, Select, Button"):
            if widget.focusable and widget.display:
                self.screen.set_focus(widget)
                return

    async def submit(self, widget: Widget) -> None:
        """Enter in ``widget`` (a field, or a choice made): the next field of this step (not
        a button: Enter, Enter must not press Regenerate), or the next step from the last
        one."""
        chain = self.screen.focus_chain
        later = chain[chain.index(widget) + 1 :] if widget in chain else []
        following = next(
            (w for w in later if self in w.ancestors and not isinstance(w, Button)), None
        )
        if following is not None:
            self.screen.set_focus(following)
        else:
            await self.wizard.action_next()


class ConfirmCancel(ConfirmScreen):
    """Asked before throwing away what was typed into a wizard."""

    DEFAULT_CSS = """
    ConfirmCancel > Vertical { width: 52; }
    """

    def __init__(self) -> None:
        super().__init__(
            "Cancel the setup?",
            "What you entered is lost and no file is written.",
            no="Keep going (n)",
            yes="Discard (y)",
            compact=True,
        )


class Wizard(ModalScreen[Path | None]):
    """A sequence of steps with Back / Next / Cancel; see the module docstring.

    ``steps`` are numbered "Step i of n"; ``after`` are shown once the numbered steps are done
    (a result page), without Back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+n", "next", "Next", priority=True),
        Binding("ctrl+b", "back", "Back", priority=True),
        Binding("escape", "cancel", "Cancel"),
        # Focus moves are priority bindings: see the module docstring.
        Binding("tab", "move_focus(1)", show=False, priority=True),
        Binding("shift+tab", "move_focus(-1)", show=False, priority=True),
        Binding("enter", "enter", show=False, priority=True),
    ]

    DEFAULT_CSS = """
    Wizard { background: $background 60%; }
    Wizard > #frame {
        width: 100%; height: 100%; border: round $accent; border-title-style: bold;
        border-subtitle-color: $text-muted; background: $surface;
    }
    Wizard #progress { padding: 0 1; margin-bottom: 1; text-style: bold; color: $accent; }
    Wizard ContentSwitcher { height: 1fr; }
    Wizard #buttons { height: 1; dock: bottom; align-horizontal: right; padding: 0 1; }
    Wizard #buttons Button { margin-left: 2; min-width: 10; }
    Wizard #buttons #cancel { dock: left; margin-left: 0; }
    """

    def __init__(self, title: str, steps: Sequence[Step], after: Sequence[Step] = ()) -> None:
        super().__init__()
        self.wizard_title = title
        self.steps = list(steps)
        self.after = list(after)
        self.index = 0
        self._initial: dict[Widget, str] = {}
        self._busy = False

    def compose(self) -> ComposeResult:
        with Vertical(id="frame") as frame:
            frame.border_title = self.wizard_title
            yield Static(id="progress", markup=False)
            with ContentSwitcher():
                for i, step in enumerate(self.pages):
                    step.id = step.id or f"step-{i + 1}"
                    yield step
            with Horizontal(id="buttons"):  # each button's id names its action
                cancel = Button("Cancel", id="cancel", compact=True)
                # Escape cancels; Tab from a step's last field goes on to Back and Next, not
                # to Cancel, which comes first in the focus order by being on the left.
                cancel.can_focus = False
                yield cancel
                yield Button("Back", id="back", compact=True)
                yield Button("Next", id="next", variant="primary", compact=True)

    async def on_mount(self) -> None:
        await self._show(0)
        self._initial = {w: _text_of(w) for w in self.query("Input, TextArea")}

    @property
    def pages(self) -> list[Step]:
        """The numbered steps, then the pages after them."""
        return [*self.steps, *self.after]

    @property
    def current(self) -> Step:
        return self.pages[self.index]

    @property
    def finished(self) -> bool:
        """True once every numbered step is done (a result page is showing)."""
        return self.index >= len(self.steps)

    async def _show(self, index: int) -> None:
        self.index = index
        step = self.current
        await step.enter()
        self.query_one(ContentSwitcher).current = step.id
        progress = self.query_one("#progress", Static)
        if self.finished:
            progress.update(step.title)
        else:
            progress.update(f"Step {index + 1} of {len(self.steps)} · {step.title}")
        self.query_one("#frame").border_subtitle = (
            "ctrl+n or esc: done"
            if self.finished
            else "enter: next field · ctrl+n: next step · ctrl+b: back · esc: cancel"
        )
        self.query_one("#back", Button).display = 0 < index < len(self.steps)
        self.query_one("#cancel", Button).display = not self.finished
        self.query_one("#next", Button).label = step.next_label
        step.scroll_home(animate=False)
        step.focus_first()

    async def _settle(self) -> None:
        """Wait until the focused widget has handled the keys already handed to it (typed
        just before Enter or ctrl+n, in the same read)."""
        focused = self.focused
        if focused is None or active_message_pump.get() is focused:
            return
        handled = asyncio.Event()
        focused.call_later(handled.set)
        await handled.wait()

    async def action_next(self) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            await self._settle()
            if not await self.current.leave():
                return
        finally:
            self._busy = False
        if self.index + 1 < len(self.pages):
            await self._show(self.index + 1)
        else:
            self.dismiss(self.result_path)

    async def action_back(self) -> None:
        if 0 < self.index < len(self.steps):
            await self._show(self.index - 1)

    def action_cancel(self) -> None:
        if self.finished:
            self.dismiss(self.result_path)
        elif self.index > 0 or any(_text_of(w) != v for w, v in self._initial.items()):
            self.app.push_screen(ConfirmCancel(), self._cancel_answered)
        else:
            self.dismiss(None)

    def _cancel_answered(self, discard: bool | None) -> None:
        if discard:
            self.dismiss(None)

    @property
    def result_path(self) -> Path | None:
        """The config written by the review step (None until it is)."""
        review = self.query(ReviewStep).first()
        return review.written

    @on(Button.Pressed, "#buttons Button")
    async def _button(self, event: Button.Pressed) -> None:
        event.stop()
        await self.run_action(event.button.id or "")

    def action_move_focus(self, direction: int) -> None:
        if direction > 0:
            self.focus_next()
        else:
            self.focus_previous()

    async def action_enter(self) -> None:
        """Enter in a field (a one-line input, or the box a code is pasted into), or on the
        choice already made, moves on (:meth:`Step.submit`); elsewhere (buttons, lists, other
        choices) it does what it does there."""
        focused = self.focused
        if focused is None or self.current not in focused.ancestors:
            raise SkipAction
        if not (
            isinstance(focused, Input)
            or (isinstance(focused, TextArea) and not focused.read_only)
            or (isinstance(focused, Choices) and focused.cursor_on_choice)
        ):
            raise SkipAction
        await self._settle()
        await self.current.submit(focused)


def _text_of(widget: Widget) -> str:
    if isinstance(widget, Input):
        return widget.value
    assert isinstance(widget, TextArea)
    return widget.text


class ReviewStep(Step):
    """Shows the config that will be written and where; asks before replacing a file, then
    writes it (mode 0600, the previous version kept as ``.bak``)."""

    title = "Review and write"
    next_label = "Write"

    DEFAULT_CSS = """
    ReviewStep { overflow-y: hidden; }
    ReviewStep #toml { height: 1fr; margin-bottom: 1; }
    ReviewStep #where { margin-bottom: 1; }
    ReviewStep #overwrite.-hidden { display: none; }
    """

    def __init__(self, config_path: Path, render: Callable[[], str]) -> None:
        super().__init__()
        self.config_path = config_path
        self.render_toml = render
        self.written: Path | None = None
        self.backup: Path | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="where")
        yield TextArea(id="toml", read_only=True, language=None, soft_wrap=False, compact=True)
        yield Checkbox(
            "Replace it (the current file is kept as .bak)",
            id="overwrite",
            compact=True,
        )
        yield FieldError(id="overwrite-error")

    async def enter(self) -> None:
        exists = self.config_path.exists()
        markup = "[dim]This config is written to[/] [b]$path[/]"
        if exists:
            markup += "\n[$text-warning]A file is already there.[/]"
        where = Content.from_markup(markup, path=str(self.config_path))
        self.query_one("#where", Static).update(where)
        overwrite = self.query_one("#overwrite", Checkbox)
        overwrite.set_class(not exists, "-hidden")
        overwrite.value = False
        try:
            text, problem = self.render_toml(), None
        except ValueError as exc:  # an answer the earlier steps let through
            text, problem = "", f"cannot make the config: {exc}"
        self.query_one("#toml", TextArea).text = text
        self.query_one("#overwrite-error", FieldError).show(problem)

    async def leave(self) -> bool:
        overwrite = self.query_one("#overwrite", Checkbox).value
        error = self.query_one("#overwrite-error", FieldError)
        try:
            self.backup = write_secret_file(
                self.config_path, self.render_toml(), overwrite=overwrite
            )
        except ValueError as exc:
            error.show(f"cannot make the config: {exc}")
            return False
        except ExistingFileError:
            error.show(f"{self.config_path} exists: tick the box above to replace it.")
            return False
        except OSError as exc:
            error.show(f"cannot write {self.config_path}: {exc.strerror or exc}")
            return False
        self.written = self.config_path
        return True
