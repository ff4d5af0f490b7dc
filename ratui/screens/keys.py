"""Keys and tokens: a new Noise keypair (as ``ratui --genkey`` prints it) and a new service
token, each ready to copy into a config. Nothing here is stored or logged; ``r`` draws new
ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ..genkey import generate_keypair
from ..setup.tokens import new_token
from .boxed import boxed_css

#: What the screen shows, in order: (id, label, hint).
ITEMS = (
    ("private", "Private key", "local_private_key in [*.transport.noise]: keep it secret"),
    ("public", "Public key", "remote_public_key in the peer's [*.transport.noise]"),
    ("token", "Token", "token (or default_token) on both server and client"),
)


class KeysScreen(ModalScreen[None]):
    """A keypair and a token; ``1`` ``2`` ``3`` copy them, ``r`` makes new ones.

    ``keypair`` and ``token`` make the values (tests pass fixed ones)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "copy('private')", "Copy private key"),
        Binding("2", "copy('public')", "Copy public key"),
        Binding("3", "copy('token')", "Copy token"),
        Binding("r", "regenerate", "New values"),
        Binding("escape,q", "dismiss", "Close", key_display="esc"),
    ]

    DEFAULT_CSS = (
        boxed_css("KeysScreen", "Vertical", 76)
        + """
    KeysScreen .label {
        text-style: bold;
        color: $text-primary;
        margin-top: 1;
    }
    KeysScreen .hint {
        color: $text-muted;
    }
    KeysScreen .value {
        color: $text-accent;
    }
    """
    )

    def __init__(
        self,
        keypair: Callable[[], tuple[str, str]] = generate_keypair,
        token: Callable[[], str] = new_token,
    ) -> None:
        super().__init__()
        self._keypair = keypair
        self._token = token
        self.values: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Keys and tokens"
            for key, (item, label, hint) in enumerate(ITEMS, start=1):
                yield Static(f"{key}  {label}", classes="label", markup=False)
                yield Static(hint, classes="hint", markup=False)
                yield Static(id=item, classes="value", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_regenerate()

    def action_regenerate(self) -> None:
        private, public = self._keypair()
        self.values = {"private": private, "public": public, "token": self._token()}
        for item, value in self.values.items():
            self.query_one(f"#{item}", Static).update(value)

    def action_copy(self, item: str) -> None:
        self.app.copy_to_clipboard(self.values[item])
        label = next(label for key, label, _ in ITEMS if key == item)
        self.notify(f"{label} copied to the clipboard", timeout=2)
