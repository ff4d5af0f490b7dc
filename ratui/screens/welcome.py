"""The first screen of ``ratui`` run without a config: set up a server or a client (the
wizards write the default config), run the demo, open a config file, or make keys and tokens.

Whatever is chosen ends on the dashboard of a running tunnel in this same process
(``RatuiApp.open_config`` / ``start_demo``), except the keys screen, which comes back here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from ..engine.config import ConfigError, load_config
from ..setup.files import default_config_path
from .boxed import boxed_css
from .wizard import FieldError

if TYPE_CHECKING:
    from ..app import RatuiApp

#: (id, title, what it is for, shortcut key)
CHOICES = (
    ("server", "Set up a server", "on the machine with a public address (a VPS)", "s"),
    ("client", "Set up a client", "at home, with the pairing code the server gave", "c"),
    ("demo", "Run the demo", "a loopback tunnel to a built-in web page", "d"),
    ("open", "Open a config file", "a rathole or ratui TOML file", "o"),
    ("keys", "Keys and tokens", "a Noise keypair and a token, to copy", "k"),
)


def check_config_path(text: str) -> tuple[Path | None, str | None]:
    """(path, None) when ``text`` names a config ratui can run, else (None, the problem)."""
    if not text.strip():
        return None, "type the path of a config file"
    path = Path(text.strip()).expanduser()
    if path.is_dir():
        return None, f"{path} is a directory, not a config file"
    if not path.exists():
        return None, f"{path}: no such file"
    try:
        load_config(path)
    except ConfigError as exc:
        return None, str(exc)
    return path, None


class WelcomeScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"choose('{choice}')", title, show=False)
            for choice, title, _, key in CHOICES
        ),
        Binding("escape", "close_path", "Back to the choices", show=False),
    ]

    DEFAULT_CSS = (
        boxed_css("WelcomeScreen", "Vertical", 76, "$background")
        + """
    WelcomeScreen #intro {
        margin-bottom: 1;
    }
    WelcomeScreen OptionList, WelcomeScreen OptionList:focus {
        height: auto;
        border: none;
        padding: 0;
        background: $surface;
    }
    WelcomeScreen #open-path {
        display: none;
        height: auto;
        margin-top: 1;
    }
    WelcomeScreen #open-path.-shown {
        display: block;
    }
    WelcomeScreen #path {
        margin: 0;
    }
    """
    )

    def __init__(self, config_path: Path | None = None) -> None:
        super().__init__()
        #: Where the wizards write the config (the default config's place).
        self.config_path = config_path or default_config_path()

    @property
    def ratui(self) -> RatuiApp:
        from ..app import RatuiApp

        assert isinstance(self.app, RatuiApp)
        return self.app

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Welcome to ratui"
            box.border_subtitle = "enter or the letter: choose · q quit"
            yield Static(
                "A reverse tunnel: visitors reach a port on a server with a public address "
                "and land on a service at home, behind NAT.\n"
                f"There is no config at {self.config_path} yet.",
                id="intro",
                markup=False,
            )
            yield OptionList(
                *(
                    Option(self._prompt(key, title, what), id=choice)
                    for choice, title, what, key in CHOICES
                ),
                id="choices",
            )
            with Vertical(id="open-path"):
                yield Static("Config file (enter opens it, esc goes back):", markup=False)
                yield Input(placeholder="~/server.toml", id="path", compact=True)
                yield FieldError(id="path-error")
        yield Footer()

    @staticmethod
    def _prompt(key: str, title: str, what: str) -> Text:
        text = Text.assemble((f"{key}  ", "bold"), (f"{title:<20}", "bold"))
        text.append(what, style="dim")
        return text

    @on(OptionList.OptionSelected, "#choices")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.action_choose(event.option.id)

    def action_choose(self, choice: str) -> None:
        if choice == "server":
            from .server_wizard import ServerWizard

            self.app.push_screen(ServerWizard(self.config_path), self._wizard_done)
        elif choice == "client":
            from .client_wizard import ClientWizard

            self.app.push_screen(ClientWizard(self.config_path), self._wizard_done)
        elif choice == "demo":
            self.ratui.start_demo()
        elif choice == "open":
            self.query_one("#open-path").add_class("-shown")
            self.query_one("#path", Input).focus()
        elif choice == "keys":
            self.ratui.action_keys()

    def _wizard_done(self, path: Path | None) -> None:
        if path is None:
            return
        try:
            self.ratui.open_config(path)
        except ConfigError as exc:
            self.notify(str(exc), title="Cannot run the new config", severity="error")

    def action_close_path(self) -> None:
        self.query_one("#open-path").remove_class("-shown")
        self.query_one("#path-error", FieldError).show(None)
        self.query_one("#choices", OptionList).focus()

    @on(Input.Submitted, "#path")
    def _open(self, event: Input.Submitted) -> None:
        path, problem = check_config_path(event.value)
        self.query_one("#path-error", FieldError).show(problem)
        if path is None:
            return
        try:
            self.ratui.open_config(path)
        except ConfigError as exc:  # e.g. changed since the check
            self.query_one("#path-error", FieldError).show(str(exc))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The letters choose only while the choices have the focus, not while typing a path.
        if action == "choose":
            return not isinstance(self.focused, Input)
        return True
