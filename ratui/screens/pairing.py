"""The pairing code of a running server (``p`` on the dashboard): what a client needs to
reach it, as one line that ``ratui pair`` (or the client wizard) turns into a client
config; ``r`` shows its QR code. The code holds the service tokens, so it is shown only here
and never logged."""

from __future__ import annotations

import socket
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static, TextArea

from ..engine.config import ServerConfig, split_host_port
from ..setup.generate import pairing_from_config
from ..setup.pairing import PairingError, encode
from .sharing import QrScreen, copy_code
from .wizard import Field


def default_public_addr(server: ServerConfig, hostname: str | None = None) -> str:
    """This host's name with the port clients connect to (the server's ``bind_addr`` port)."""
    _, port = split_host_port(server.bind_addr)
    return f"{hostname or socket.gethostname()}:{port}"


class PairingScreen(ModalScreen[None]):
    """Asks for the address clients dial and shows the code for it; ``c`` copies the code,
    ``r`` shows the QR code. There is no ``ratui pair CODE`` command to copy: a code on the
    command line stays in the shell's history, so ``ratui pair`` asks for it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy the code"),
        Binding("r", "show_qr", "QR code"),
        Binding("escape", "dismiss", "Close"),
    ]

    DEFAULT_CSS = """
    PairingScreen { align: center middle; background: $background 60%; }
    PairingScreen > VerticalScroll {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; border-title-style: bold; background: $surface; padding: 0 1;
    }
    PairingScreen .hint { color: $text-muted; }
    PairingScreen #code { height: auto; max-height: 5; margin-bottom: 1; }
    """

    def __init__(
        self, server: ServerConfig, *, public_addr: str | None = None, hostname: str | None = None
    ) -> None:
        super().__init__()
        self.server = server
        self.initial_addr = public_addr or default_public_addr(server, hostname)
        self.code = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Pair a client"
            yield Field(
                "The address clients dial to reach this server (enter updates the code):",
                self.initial_addr,
                id="public-addr",
            )
            yield Label("Pairing code (it holds the tokens: share it like a password):")
            yield TextArea(id="code", read_only=True, compact=True, soft_wrap=True)
            yield Static(
                "On the client, run  ratui pair  and paste the code when it asks (it is not "
                "echoed), or pipe it into  ratui pair - ; or paste it into ratui's client setup "
                "there. c copies the code, r shows a QR code.",
                classes="hint",
                id="hint",
            )
        yield Footer()

    def on_mount(self) -> None:
        self.show_code(self.initial_addr)

    @on(Input.Submitted, "#public-addr-input")
    def _addr_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.show_code(event.value.strip())

    def show_code(self, public_addr: str) -> None:
        field = self.query_one("#public-addr", Field)
        try:
            code = encode(pairing_from_config(self.server, public_addr))
        except (ValueError, PairingError) as exc:
            field.check(str(exc))
            code = ""
        else:
            field.check(None)
        self.code = code
        self.query_one("#code", TextArea).text = code

    def action_copy(self) -> None:
        if self.code:
            copy_code(self, self.code)

    def action_show_qr(self) -> None:
        if self.code:
            self.app.push_screen(QrScreen(self.code))
