"""The client setup wizard: a pairing code in, a tested client config out.

Steps: paste the pairing code the server's setup printed (a truncated or altered code is
refused with the reason), choose the local address each service forwards to, test the
connection of each service against the real server (and that something answers at each local
address), then review and write.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Button, Static, TextArea

from ..engine.config import parse_config
from ..setup.generate import client_toml
from ..setup.pairing import PREFIX, Pairing, PairingError, decode
from ..setup.probe import ProbeResult, local_problem, probe
from ..setup.validate import validate_addr
from .wizard import Field, FieldError, ReviewStep, Step, Wizard

#: Local ports for service names the system's services database does not know.
FAMILIAR_PORTS = {"web": 80, "site": 80, "nas": 5000, "minecraft": 25565}
FALLBACK_PORT = 8080


def suggested_local_port(name: str, kind: str) -> int:
    """A guess at the port of the service called ``name`` at home: the system's services
    database (``ssh`` is 22), a few common names, else 8080."""
    try:
        return socket.getservbyname(name.lower(), kind)
    except OSError:
        return FAMILIAR_PORTS.get(name.lower(), FALLBACK_PORT)


class CodeArea(TextArea):
    """The pairing code box (Enter in it goes on, as in every wizard field: a code never needs
    a line break). Pasting a whole code replaces what is there, such as an earlier paste."""

    def _on_paste(self, event: events.Paste) -> None:
        if PREFIX in "".join(event.text.split()):
            self.clear()


class CodeStep(Step):
    title = "Pairing code"

    DEFAULT_CSS = """
    CodeStep CodeArea { height: 6; }
    """

    def __init__(self, code: str | None) -> None:
        super().__init__()
        self.code = code or ""
        self.pairing: Pairing | None = None

    def compose(self) -> ComposeResult:
        yield Static(
            "Paste the pairing code that the server's setup showed (it starts with ratui1:). "
            "Line breaks that the terminal added do not matter.",
            classes="hint",
        )
        yield CodeArea(
            self.code,
            id="code",
            soft_wrap=True,
            compact=True,
            placeholder=f"{PREFIX}… (paste it here)",
        )
        yield FieldError(id="code-error")

    @on(TextArea.Changed)
    def _edited(self) -> None:
        self.query_one("#code-error", FieldError).show(None)

    async def leave(self) -> bool:
        try:
            self.pairing = decode(self.query_one(CodeArea).text)
        except PairingError as exc:
            self.query_one("#code-error", FieldError).show(str(exc))
            return False
        self.query_one("#code-error", FieldError).show(None)
        return True


def decoded(wizard: Wizard) -> Pairing:
    """The pairing of the code step (the steps after it run only once there is one)."""
    pairing = wizard.query_one(CodeStep).pairing
    assert pairing is not None
    return pairing


class LocalAddrStep(Step):
    title = "Local services"

    DEFAULT_CSS = """
    LocalAddrStep #addrs { height: auto; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.addrs: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="about", classes="hint", markup=False)
        yield Vertical(id="addrs")
        yield Field(
            "CA certificate (PEM) that signed the server's: only for a private CA or a "
            "self-signed certificate",
            id="trusted-root",
            placeholder="empty: the system's trusted CAs",
        )

    async def enter(self) -> None:
        pairing = decoded(self.wizard)
        self.query_one("#about", Static).update(
            f"The server {pairing.remote_addr} ({pairing.transport}) forwards visitors of "
            "each service to this machine. Where does each one run here (host:port)?"
        )
        box = self.query_one("#addrs", Vertical)
        await box.remove_children()
        self.addrs = {
            s.name: self.addrs.get(s.name, f"127.0.0.1:{suggested_local_port(s.name, s.type)}")
            for s in pairing.services
        }
        await box.mount_all(
            Field(f"{s.name} ({s.type})", self.addrs[s.name], id=f"local-{i}")
            for i, s in enumerate(pairing.services)
        )
        self.query_one("#trusted-root", Field).display = pairing.transport == "tls"

    async def leave(self) -> bool:
        ok = True
        for name, field in zip(self.addrs, self.query("#addrs Field").results(Field), strict=True):
            self.addrs[name] = field.value
            ok = field.check(validate_addr(field.value)) and ok
        root = self.trusted_root
        missing = None if root is None or root.is_file() else f"no file at {root}"
        return self.query_one("#trusted-root", Field).check(missing) and ok

    @property
    def trusted_root(self) -> Path | None:
        """The CA file for a TLS server, absolute (the client may start elsewhere)."""
        root = self.query_one("#trusted-root", Field)
        return Path(root.value).expanduser().resolve() if root.display and root.value else None


class ProbeStep(Step):
    """Connects to the server once per service, as the client will, and says what failed;
    warns of a TCP service whose local address nothing answers at (visitors would get a closed
    connection)."""

    title = "Connection test"

    DEFAULT_CSS = """
    ProbeStep #results { height: auto; margin-bottom: 1; }
    ProbeStep #again { margin-bottom: 1; }
    """

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.results: dict[str, ProbeResult] = {}
        #: Why nothing answers at each service's local address (None: something does).
        self.local: dict[str, str | None] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="about", classes="hint", markup=False)
        yield Static(id="results")
        yield Button("Test again", id="again", compact=True)
        yield Static(
            "You can go on despite a failure: the config is written as shown next, and the "
            "client keeps retrying once it runs.",
            classes="hint",
        )

    async def enter(self) -> None:
        pairing = decoded(self.wizard)
        self.query_one("#about", Static).update(
            f"Each service's token, tried on the server at {pairing.remote_addr}:"
        )
        self.run_probes()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "again":
            event.stop()
            self.run_probes()

    @work(exclusive=True, group="probe")
    async def run_probes(self) -> None:
        wizard = self.wizard
        assert isinstance(wizard, ClientWizard)
        client = parse_config(wizard.toml(), source="<client setup>").client
        assert client is not None
        self.results, self.local = {}, {}
        self._show(list(client.services))
        services = client.services.values()
        results, local = await asyncio.gather(
            asyncio.gather(*(probe(client, svc.name, timeout=self.timeout) for svc in services)),
            asyncio.gather(*(local_problem(svc) for svc in services)),
        )
        self.local = dict(zip(client.services, local, strict=True))
        self.results = {r.service: r for r in results}
        self._show(list(client.services))

    def _show(self, names: list[str]) -> None:
        lines = []
        for name in names:
            result = self.results.get(name)
            if result is None:
                lines.append(Content.from_markup("[dim]…[/] $name: testing", name=name))
            elif result.ok:
                lines.append(Content.from_markup("[$text-success]✓[/] $name: ok", name=name))
            else:
                lines.append(
                    Content.from_markup(
                        "[$text-error]✗[/] $name: $problem", name=name, problem=result.problem
                    )
                )
            if result is not None and (local := self.local.get(name)):
                lines.append(
                    Content.from_markup(
                        "  [$text-warning]![/] here, $problem: start the service, or go back "
                        "(ctrl+b) and change the address",
                        problem=local,
                    )
                )
        self.query_one("#results", Static).update(Content("\n").join(lines))


class ClientWizard(Wizard):
    """Sets up a client config at ``config_path`` from a pairing code (typed in, or given as
    ``code``); dismisses with that path, or None."""

    def __init__(
        self, config_path: Path, code: str | None = None, *, probe_timeout: float = 5.0
    ) -> None:
        self.config_path = config_path
        steps = [
            CodeStep(code),
            LocalAddrStep(),
            ProbeStep(probe_timeout),
            ReviewStep(config_path, self.toml),
        ]
        super().__init__("ratui · set up a client", steps)

    def toml(self) -> str:
        """The client config for the pairing and the local addresses chosen so far."""
        pairing = decoded(self)
        local = self.query_one(LocalAddrStep)
        root = local.trusted_root
        return client_toml(pairing, local.addrs, trusted_root=str(root) if root else None)
