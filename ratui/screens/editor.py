"""The config editor (``e`` on the dashboard): forms for the services and transports, or the
raw TOML in a text area with highlighting; ``ctrl+t`` switches between them.

Saving (``ctrl+s``) checks the text with the same parser the engine uses and shows a problem
in place (under its field in the forms; under the text, with the cursor on its line, in the
raw editor) without writing anything. A config that parses is handed to
``RatuiApp.save_config``, which writes it atomically (0600, with a ``.bak``) and applies it to
the running tunnel at once; services that did not change keep their connections.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

import tomlkit
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Static, TextArea
from tomlkit.exceptions import ParseError

from ..engine.config import ConfigError, parse_config
from .editor_forms import ConfigForms

if TYPE_CHECKING:
    from ..app import RatuiApp

FORMS, RAW = "forms", "raw"
_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


def _normal_table(name: str) -> str:
    return ".".join(part.strip() for part in name.split("."))


def error_line(text: str, error: ConfigError) -> int | None:
    """The 0-based line of ``text`` that ``error`` is about: the TOML syntax error's line, or
    the ``key`` line in ``[table]`` (the header line when the key is not written there)."""
    if error.line is not None:
        return error.line - 1
    if not error.table:
        return None
    lines = text.splitlines()
    header = next(
        (
            i
            for i, line in enumerate(lines)
            if (m := _HEADER.match(line)) and _normal_table(m[1]) == error.table
        ),
        None,
    )
    if header is None:
        return None
    if error.key:
        key = re.compile(rf"^\s*\"?{re.escape(error.key)}\"?\s*=")
        for i in range(header + 1, len(lines)):
            if _HEADER.match(lines[i]):
                break
            if key.match(lines[i]):
                return i
    return header


class EditorScreen(Screen[None]):
    """Edits the config file ``source`` whose current text is ``text``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save and apply", priority=True),
        Binding("ctrl+t", "toggle", "Forms / raw TOML", priority=True),
        Binding("escape,q", "close", "Close", key_display="esc"),
    ]

    DEFAULT_CSS = """
    EditorScreen { background: $background; }
    EditorScreen #where { height: 1; padding: 0 1; color: $text-muted; }
    EditorScreen ContentSwitcher { height: 1fr; }
    EditorScreen #raw { height: 100%; border: round $foreground 30%; }
    EditorScreen #raw:focus { border: round $primary; }
    EditorScreen #problem { height: auto; max-height: 4; padding: 0 1; color: $text-error; }
    """

    def __init__(self, text: str, source: str) -> None:
        super().__init__()
        self.original = text
        self.source = source
        self.mode = FORMS
        self._forms = ConfigForms(tomlkit.parse(text), id=FORMS)
        self._close_armed = False

    @property
    def ratui(self) -> RatuiApp:
        from ..app import RatuiApp

        assert isinstance(self.app, RatuiApp)
        return self.app

    def compose(self) -> ComposeResult:
        yield Static(id="where", markup=False)
        with ContentSwitcher(initial=FORMS):
            yield self._forms
            # tab moves the focus on, so that esc closes the editor as everywhere else.
            yield TextArea.code_editor(
                self.original, language="toml", theme="css", tab_behavior="focus", id=RAW
            )
        yield Static(id="problem", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self._show_where()
        self.forms.query_one("#entries").focus()

    def _show_where(self) -> None:
        other = RAW if self.mode == FORMS else FORMS
        self.query_one("#where", Static).update(
            f"Editing {self.source} · {self.mode} (ctrl+t: {other})"
        )

    @property
    def raw(self) -> TextArea:
        return self.query_one(f"#{RAW}", TextArea)

    @property
    def forms(self) -> ConfigForms:
        return self._forms

    def text(self) -> str | None:
        """The edited config as it would be saved; None when the form shown cannot be put into
        the document yet (its problem is shown)."""
        if self.mode == RAW:
            return self.raw.text
        if not self.forms.commit():
            return None
        return self.forms.doc.as_string()

    def show_problem(self, problem: str | None) -> None:
        self.query_one("#problem", Static).update(problem or "")

    # ------------------------------------------------------------------ actions

    def action_toggle(self) -> None:
        self.show_problem(None)
        if self.mode == FORMS:
            text = self.text()
            if text is None:
                return
            self.raw.load_text(text)
            self.mode = RAW
        else:
            try:
                doc = tomlkit.parse(self.raw.text)
            except ParseError as exc:
                self.show_problem(f"Fix the TOML first: {exc}")
                self._move_cursor(exc.line - 1)
                return
            self.forms.doc = doc
            self.forms.refresh_entries()
            self.mode = FORMS
        self.query_one(ContentSwitcher).current = self.mode
        self._show_where()
        (self.raw if self.mode == RAW else self.forms.query_one("#entries")).focus()

    async def action_save(self) -> None:
        self.show_problem(None)
        text = self.text()
        if text is None:
            return
        if text == self.original:
            self.notify("No changes to save", timeout=2)
            return
        try:
            parse_config(text, self.source)
        except ConfigError as exc:
            self._show_config_error(text, exc)
            return
        result = await self.ratui.save_config(text)
        self.original = text
        if result.applied:
            self.dismiss()
        else:
            self.show_problem(f"Saved, but not applied: {result.message}")

    def _show_config_error(self, text: str, error: ConfigError) -> None:
        if self.mode == FORMS and self.forms.show_error(error):
            return
        self.show_problem(str(error))
        if self.mode == RAW:
            line = error_line(text, error)
            if line is not None:
                self._move_cursor(line)

    def _move_cursor(self, line: int) -> None:
        self.raw.move_cursor((line, 0))
        self.raw.focus()
        # Once the problem under the text has taken its rows, the line may be out of view.
        self.raw.call_after_refresh(self.raw.scroll_cursor_visible)

    def action_close(self) -> None:
        text = self.text()  # the form on screen too; None: it has a problem, so it differs
        if text != self.original and not self._close_armed:
            self._close_armed = True
            self.notify("Unsaved changes: esc again closes without saving", timeout=4)
            return
        self.dismiss()
