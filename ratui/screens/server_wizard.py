"""The server setup wizard: from a fresh VPS to a written server config and a pairing code.

Steps: where clients connect (the port is checked free by binding it), the transport (a Noise
keypair is generated; a TLS identity is opened to check it), the services visitors reach, the
tokens, then review and write. A result page shows the pairing code (``c`` copies it, ``y``
the ``ratui pair`` command to run on the client, ``r`` shows its QR code).

Random values come from injectable generators (``new_token``, ``keypair``) and the default
public address from ``hostname``, so tests can make every screen the same on every run.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Select, Static, TextArea

from ..engine.config import split_host_port
from ..engine.transport.layered import TransportSetupError
from ..engine.transport.tls import load_pkcs12
from ..genkey import generate_keypair
from ..setup.generate import ServerDraft, ServiceDraft, pairing_for, server_toml
from ..setup.pairing import TRANSPORTS, PairingError, check, encode, text_problem
from ..setup.tokens import new_token as default_new_token
from ..setup.validate import join_host_port, validate_addr, validate_name, validate_port
from .sharing import QrScreen, copy_code
from .wizard import Choices, Field, FieldError, ReviewStep, Step, Wizard

DEFAULT_CONTROL_PORT = 2333
#: Tokens shorter than this are refused: they are the only thing that keeps strangers out.
MIN_TOKEN_LENGTH = 16


#: Why ``host``, ``port`` (of type ``kind``) cannot be listened on, or None.
PortCheck = Callable[[str, int, str], str | None]


def bind_problem(host: str, port: int, kind: str = "tcp") -> str | None:
    """Why ``host:port`` cannot be bound now (tried for real, then released), or None."""
    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, type=sock_type, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc.strerror}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, sock_type) as sock:
        if kind != "udp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{kind} port {port} is in use on this machine: pick another"
            if exc.errno == errno.EACCES:
                return f"port {port} needs root (ports below 1024 are privileged)"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host} is not an address of this machine"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


class ListenStep(Step):
    title = "Where clients connect"

    def __init__(self, hostname: str, port_check: PortCheck) -> None:
        super().__init__()
        self.hostname = hostname
        self.port_check = port_check
        self.host = "0.0.0.0"
        self.port = DEFAULT_CONTROL_PORT

    def compose(self) -> ComposeResult:
        yield Static(
            "The client at home connects to this port; open it in the VPS's firewall.",
            classes="hint",
        )
        yield Field("Listen on (host:port)", f"{self.host}:{self.port}", id="bind")
        yield Field(
            "Address clients dial (public host:port)", f"{self.hostname}:{self.port}", id="public"
        )

    @on(Input.Changed, "#bind-input")
    def _follow_port(self, event: Input.Changed) -> None:
        """Keep the public address's port in step while it is still the suggested one."""
        public = self.query_one("#public", Field)
        _, _, port = event.value.rpartition(":")
        host, _, old = public.value.rpartition(":")
        if host == self.hostname and old.isdigit() and port.isdigit():
            public.value = f"{host}:{port}"

    async def leave(self) -> bool:
        bind = self.query_one("#bind", Field)
        problem = validate_addr(bind.value)
        if problem is None:
            host, port = split_host_port(bind.value)
            problem = self.port_check(host, port, "tcp")
        if not bind.check(problem):
            return False
        self.host, self.port = host, port
        public = self.query_one("#public", Field)
        return public.check(validate_addr(public.value))

    @property
    def bind_addr(self) -> str:
        return self.query_one("#bind", Field).value

    @property
    def public_addr(self) -> str:
        return self.query_one("#public", Field).value


class TransportStep(Step):
    title = "Transport"

    DEFAULT_CSS = """
    TransportStep RadioSet { width: auto; margin-bottom: 1; }
    TransportStep .panel { height: auto; }
    TransportStep #public-key { text-style: bold; }
    """

    CHOICES: ClassVar[dict[str, str]] = {
        "tcp": "plain, no encryption",
        "noise": "encrypted with a key made now (recommended)",
        "tls": "encrypted with your certificate",
    }
    HELP: ClassVar[dict[str, str]] = {
        "tcp": "Plain TCP: tokens are checked, traffic is not encrypted.",
        "noise": "Noise: encrypted with a keypair made now. The client gets the public key "
        "in the pairing code.",
        "tls": "TLS with your certificate: a PKCS#12 file holding its key and chain.",
    }

    def __init__(self, keypair: Callable[[], tuple[str, str]]) -> None:
        super().__init__()
        self.make_keypair = keypair
        self.keys: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Choices(id="transport"):
            for kind in TRANSPORTS:
                yield RadioButton(
                    f"{kind}: {self.CHOICES[kind]}", value=kind == "noise", id=f"kind-{kind}"
                )
        yield Static(id="about", classes="hint")
        with Vertical(id="noise", classes="panel"):
            yield Label("Server public key (the client needs it; it is in the pairing code)")
            yield Static(id="public-key", markup=False)
        with Vertical(id="tls", classes="panel"):
            yield Field("PKCS#12 file (.p12 / .pfx)", id="pkcs12")
            yield Field("Its password", id="pkcs12-password", password=True)
            yield Field("Certificate's hostname (the client checks it)", id="tls-hostname")

    @property
    def kind(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return (pressed.id or "").removeprefix("kind-") if pressed else "noise"

    async def enter(self) -> None:
        hostname = self.query_one("#tls-hostname", Field)
        if not hostname.value:
            hostname.value = split_host_port(self.wizard_public_addr())[0]
        self._show_kind()

    def wizard_public_addr(self) -> str:
        return self.wizard.query_one(ListenStep).public_addr

    @on(RadioSet.Changed)
    def _show_kind(self) -> None:
        kind = self.kind
        if kind == "noise" and self.keys is None:
            self.keys = self.make_keypair()
        if self.keys:
            self.query_one("#public-key", Static).update(self.keys[1])
        self.query_one("#about", Static).update(self.HELP[kind])
        self.query_one("#noise").display = kind == "noise"
        self.query_one("#tls").display = kind == "tls"

    async def leave(self) -> bool:
        if self.kind != "tls":
            return True
        pkcs12 = self.query_one("#pkcs12", Field)
        problem = None
        if not pkcs12.value:
            problem = "the path of the PKCS#12 file"
        elif not self.pkcs12_path.is_file():
            problem = f"no file at {self.pkcs12_path}"
        else:
            try:
                load_pkcs12(str(self.pkcs12_path), self.pkcs12_password)
            except TransportSetupError as exc:
                problem = str(exc)
        hostname = self.query_one("#tls-hostname", Field)
        host_ok = hostname.check(None if hostname.value else "the name on the certificate")
        return pkcs12.check(problem) and host_ok

    @property
    def pkcs12_path(self) -> Path:
        """Absolute, so the server finds it whatever directory it is started from."""
        return Path(self.query_one("#pkcs12", Field).value).expanduser().resolve()

    @property
    def pkcs12_password(self) -> str | None:
        return self.query_one("#pkcs12-password", Field).value or None

    @property
    def tls_hostname(self) -> str | None:
        return self.query_one("#tls-hostname", Field).value or None


@dataclass(frozen=True)
class PlannedService:
    name: str
    type: str
    port: int


class ServicesStep(Step):
    title = "Services"

    DEFAULT_CSS = """
    ServicesStep #list { height: auto; margin-bottom: 1; }
    ServicesStep .row { height: 1; }
    ServicesStep .row Static { width: 1fr; }
    ServicesStep #form { height: auto; }
    ServicesStep #form Field { width: 1fr; margin-right: 2; margin-bottom: 0; }
    ServicesStep #form #name { width: 24; }
    ServicesStep #type-box { width: 10; height: auto; margin-right: 2; }
    ServicesStep #type-box Label { color: $text-muted; }
    ServicesStep #add { margin-top: 1; }
    """

    def __init__(self, port_check: PortCheck) -> None:
        super().__init__()
        self.services: list[PlannedService] = []
        self.port_check = port_check

    def compose(self) -> ComposeResult:
        yield Static(
            "Each service is a public port on this server; visitors to it reach a service at "
            "home. Add one or more (Enter in the port field adds; Enter in an empty form goes "
            "on).",
            classes="hint",
        )
        yield Vertical(id="list")
        with Horizontal(id="form"):
            yield Field("Name", id="name", placeholder="e.g. ssh")
            with Vertical(id="type-box"):
                yield Label("Type")
                yield Select(
                    [("tcp", "tcp"), ("udp", "udp")],
                    value="tcp",
                    allow_blank=False,
                    compact=True,
                    id="type",
                )
            yield Field("Public port", id="port", placeholder="e.g. 5202")
            yield Button("Add", id="add", compact=True)
        yield FieldError(id="services-error")

    async def enter(self) -> None:
        await self._refresh_list()

    async def _refresh_list(self) -> None:
        listing = self.query_one("#list", Vertical)
        await listing.remove_children()
        host = self.wizard.query_one(ListenStep).host
        if not self.services:
            await listing.mount(Static("No services yet.", classes="hint"))
        await listing.mount_all(
            Horizontal(
                Static(
                    f"{service.name:<20} {service.type:<4} {join_host_port(host, service.port)}"
                ),
                Button("Remove", id=f"remove-{i}", compact=True),
                classes="row",
            )
            for i, service in enumerate(self.services)
        )

    async def submit(self, widget: Widget) -> None:
        """Enter in the port field adds the service; in an empty form, it goes on."""
        name, port = self.query_one("#name", Field).value, self.query_one("#port", Field).value
        if not (name or port):
            await self.wizard.action_next()
        elif widget.id == "port-input":
            await self._add_service()
        else:
            await super().submit(widget)

    @on(Button.Pressed, "#add")
    async def _add(self, event: Button.Pressed) -> None:
        event.stop()
        await self._add_service()

    async def _add_service(self) -> None:
        name_field, port_field = self.query_one("#name", Field), self.query_one("#port", Field)
        kind = str(self.query_one("#type", Select).value)
        name_problem = validate_name(name_field.value)
        if name_problem is None and any(s.name == name_field.value for s in self.services):
            name_problem = f"there is already a service named {name_field.value}"
        port_problem = validate_port(port_field.value)
        if port_problem is None:
            port_problem = self._port_problem(int(port_field.value), kind)
        name_ok, port_ok = name_field.check(name_problem), port_field.check(port_problem)
        if not (name_ok and port_ok):
            return
        self.services.append(PlannedService(name_field.value, kind, int(port_field.value)))
        name_field.value = port_field.value = ""
        self.query_one("#services-error", FieldError).show(None)
        self.screen.set_focus(name_field.input)  # now: the next keys are the next name
        await self._refresh_list()

    def _port_problem(self, port: int, kind: str) -> str | None:
        listen = self.wizard.query_one(ListenStep)
        if port == listen.port:
            return f"clients connect on {port}: pick another"
        if any(s.port == port and s.type == kind for s in self.services):
            return f"{kind} port {port} is taken by another service"
        return self.port_check(listen.host, port, kind)

    @on(Button.Pressed, ".row Button")
    async def _remove(self, event: Button.Pressed) -> None:
        event.stop()
        del self.services[int((event.button.id or "").removeprefix("remove-"))]
        await self._refresh_list()
        self.query_one("#name", Field).input.focus()

    async def leave(self) -> bool:
        problem = None if self.services else "add at least one service"
        self.query_one("#services-error", FieldError).show(problem)
        return problem is None


class TokenField(Field):
    """The token of one service, or the default token (``service`` "")."""

    def __init__(self, service: str, token: str, *, id: str) -> None:
        super().__init__(
            f"Token for {service}" if service else "Token (default_token)", token, id=id
        )
        self.service = service


class TokensStep(Step):
    """One default token for all services, or one per service; shown, editable, regenerable."""

    title = "Tokens"

    DEFAULT_CSS = """
    TokensStep RadioSet { margin-bottom: 1; }
    TokensStep #tokens { height: auto; }
    TokensStep #regenerate { margin-bottom: 1; }
    """

    def __init__(self, new_token: Callable[[], str]) -> None:
        super().__init__()
        self.new_token = new_token
        #: token by service name; "" is the default token.
        self.tokens: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static(
            "The client proves itself with a token. Keep them secret: they are in the pairing "
            "code and in both config files.",
            classes="hint",
        )
        with Choices(id="token-mode"):
            yield RadioButton("One token for every service", value=True, id="mode-default")
            yield RadioButton("One token per service", id="mode-each")
        yield Button("Regenerate (new random tokens)", id="regenerate", compact=True)
        yield Vertical(id="tokens")
        yield FieldError(id="tokens-error")

    @property
    def per_service(self) -> bool:
        return self.query_one("#mode-each", RadioButton).value

    def _names(self) -> list[str]:
        if self.per_service:
            return [s.name for s in self.wizard.query_one(ServicesStep).services]
        return [""]

    async def enter(self) -> None:
        await self._rebuild()

    @on(RadioSet.Changed)
    async def _rebuild(self) -> None:
        box = self.query_one("#tokens", Vertical)
        self._keep_edits()
        await box.remove_children()
        await box.mount_all(
            TokenField(name, self.tokens.setdefault(name, self.new_token()), id=f"token-{i}")
            for i, name in enumerate(self._names())
        )

    def _fields(self) -> list[TokenField]:
        return list(self.query(TokenField))

    def _keep_edits(self) -> None:
        for field in self._fields():
            self.tokens[field.service] = field.value

    @on(Button.Pressed, "#regenerate")
    def _regenerate(self, event: Button.Pressed) -> None:
        event.stop()
        for field in self._fields():
            field.value = self.tokens[field.service] = self.new_token()
            field.check(None)

    async def leave(self) -> bool:
        self._keep_edits()
        ok = True
        for field in self._fields():
            problem = None
            if len(field.value) < MIN_TOKEN_LENGTH:
                problem = f"at least {MIN_TOKEN_LENGTH} characters (Regenerate makes one)"
            elif any(c.isspace() for c in field.value):
                problem = "no spaces in a token"
            elif unfit := text_problem(field.value):
                problem = f"the token {unfit}: a pairing code cannot carry it"
            ok = field.check(problem) and ok
        if not ok:
            return False
        # Whatever else a pairing code cannot carry is refused here, before anything is written.
        wizard = self.wizard
        assert isinstance(wizard, ServerWizard)
        try:
            check(pairing_for(wizard.draft()))
        except PairingError as exc:
            self.query_one("#tokens-error", FieldError).show(str(exc))
            return False
        self.query_one("#tokens-error", FieldError).show(None)
        return True

    def token_for(self, name: str) -> str | None:
        return self.tokens[name] if self.per_service else None

    @property
    def default_token(self) -> str | None:
        return None if self.per_service else self.tokens[""]


class ResultStep(Step):
    """What was written, the pairing code and the command for the client; the code's QR code
    on a screen of its own (``r``)."""

    title = "Done: the server config is written"
    next_label = "Done"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy('code')", "Copy the pairing code"),
        Binding("y", "copy('command')", "Copy the ratui pair command"),
        Binding("r", "show_qr", "Show the QR code"),
    ]

    DEFAULT_CSS = """
    ResultStep #written { margin-bottom: 1; }
    ResultStep #code { height: auto; max-height: 6; margin-bottom: 1; }
    ResultStep #actions { height: 1; margin-bottom: 1; }
    ResultStep #actions Button { margin-right: 2; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.code = ""

    def compose(self) -> ComposeResult:
        yield Static(id="written", markup=False)
        yield Label("Pairing code (it holds the tokens: share it only with the client's machine):")
        yield TextArea(id="code", read_only=True, compact=True, soft_wrap=True)
        with Horizontal(id="actions"):
            yield Button("Copy the code (c)", id="copy-code", compact=True)
            yield Button("Copy the command (y)", id="copy-command", compact=True)
            yield Button("QR code (r)", id="qr", compact=True)
        yield Static(
            "On the client, run  ratui pair  and paste the code when it asks (that keeps it "
            'out of the shell\'s history), or choose "Set up a client" in ratui there and '
            "paste it.",
            id="next-steps",
            markup=False,
        )

    async def enter(self) -> None:
        wizard = self.wizard
        assert isinstance(wizard, ServerWizard)
        written = (
            f"Written to {wizard.result_path} (mode 0600).\n"
            f"Start the server: ratui --server {wizard.result_path}"
        )
        try:
            self.code = encode(pairing_for(wizard.draft()))
        except PairingError as exc:  # the tokens step checks this; never a crash here
            self.code = ""
            written += f"\nNo pairing code: {exc}"
        self.query_one("#written", Static).update(written)
        self.query_one("#code", TextArea).text = self.code

    @property
    def command(self) -> str:
        return f"ratui pair {self.code}"

    def focus_first(self) -> None:
        self.screen.set_focus(self.query_one("#copy-code", Button))

    @on(Button.Pressed, "#actions Button")
    async def _action_button(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "qr":
            self.action_show_qr()
        else:
            self.action_copy((event.button.id or "").removeprefix("copy-"))

    def action_copy(self, what: str) -> None:
        copy_code(self, self.code if what == "code" else self.command)

    def action_show_qr(self) -> None:
        self.app.push_screen(QrScreen(self.code))


class ServerWizard(Wizard):
    """Sets up a server config at ``config_path``; dismisses with that path, or None.
    ``port_check`` says whether a port can be listened on (by default, by binding it for a
    moment: :func:`bind_problem`)."""

    def __init__(
        self,
        config_path: Path,
        *,
        new_token: Callable[[], str] = default_new_token,
        keypair: Callable[[], tuple[str, str]] = generate_keypair,
        hostname: str | None = None,
        port_check: PortCheck = bind_problem,
    ) -> None:
        self.config_path = config_path
        steps = [
            ListenStep(hostname or socket.gethostname(), port_check),
            TransportStep(keypair),
            ServicesStep(port_check),
            TokensStep(new_token),
            ReviewStep(config_path, lambda: server_toml(self.draft())),
        ]
        super().__init__("ratui · set up a server", steps, after=[ResultStep()])

    def draft(self) -> ServerDraft:
        """The server as decided so far."""
        listen = self.query_one(ListenStep)
        transport = self.query_one(TransportStep)
        tokens = self.query_one(TokensStep)
        kind = transport.kind
        keys = transport.keys if kind == "noise" else None
        tls = kind == "tls"
        return ServerDraft(
            bind_addr=listen.bind_addr,
            public_addr=listen.public_addr,
            transport=kind,
            services=tuple(
                ServiceDraft(
                    name=s.name,
                    type=s.type,
                    bind_addr=join_host_port(listen.host, s.port),
                    token=tokens.token_for(s.name),
                )
                for s in self.query_one(ServicesStep).services
            ),
            default_token=tokens.default_token,
            noise_private_key=keys[0] if keys else None,
            noise_public_key=keys[1] if keys else None,
            tls_pkcs12=str(transport.pkcs12_path) if tls else None,
            tls_pkcs12_password=(transport.pkcs12_password or "") if tls else None,
            tls_hostname=transport.tls_hostname if tls else None,
        )
