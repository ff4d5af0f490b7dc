"""The server and client setup wizards, driven with the keyboard and mouse (Textual's pilot).

The end-to-end tests run the server wizard, start what it wrote as a real ``ratui --server``
subprocess, paste its pairing code into the client wizard (whose connection test talks to that
server), start the client config as ``ratui --client`` and move bytes through the tunnel to a
local echo service. The others check each refusal in place: a port in use, a bad service, a
truncated or altered pairing code, a wrong token, a stopped server, an existing file.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from certs import PKCS12_PASSWORD, server_identity
from conftest import EchoServer, Procs, free_port, poll_until, run, wait_port
from textual.pilot import Pilot
from textual.widgets import Checkbox, Static, TextArea
from tunnels import echo_check, refused, wait_until
from wizard_host import PENDING, WizardHost, fill, paste_code, type_ahead

from ratui.app import RatuiApp
from ratui.engine.config import load_config
from ratui.genkey import generate_keypair
from ratui.screens.client_wizard import ClientWizard, CodeArea, ProbeStep
from ratui.screens.server_wizard import (
    ResultStep,
    ServerWizard,
    ServicesStep,
    TokensStep,
    TransportStep,
)
from ratui.screens.sharing import QrScreen, qr_modules
from ratui.screens.wizard import ConfirmCancel, Field, FieldError, Wizard
from ratui.setup.generate import ServerDraft, ServiceDraft, pairing_for, server_toml
from ratui.setup.pairing import PairedService, PairingError, decode, encode
from ratui.setup.tokens import new_token
from ratui.setup.validate import join_host_port

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    monkeypatch.setenv("RATUI_CONFIG_DIR", str(directory))
    return directory


def drive(wizard: Wizard, body: Callable[[Pilot, WizardHost], Awaitable[None]]) -> WizardHost:
    """Push ``wizard`` on a bare app at 80x24 and run ``body`` against it."""
    app = WizardHost(wizard)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await body(pilot, app)

    run(main())
    return app


def step_title(pilot: Pilot) -> str:
    return str(pilot.app.screen.query_one("#progress", Static).content)


def error_of(pilot: Pilot, field: str) -> str:
    return pilot.app.screen.query_one(f"#{field}-error", FieldError).problem


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --------------------------------------------------------------------- the server wizard


async def server_steps(
    pilot: Pilot,
    control: int,
    services: list[tuple[str, int]],
    *,
    transport: str = "noise",
    per_service_tokens: bool = False,
    host: str = "127.0.0.1",
) -> None:
    """Steps 1 to 4 of the server wizard on loopback; leaves it on the review step."""
    await fill(pilot, "bind", join_host_port(host, control))
    await fill(pilot, "public", join_host_port(host, control))
    await pilot.press("ctrl+n")
    assert step_title(pilot) == "Step 2 of 5 · Transport"
    await pilot.click(f"#kind-{transport}")
    await pilot.press("ctrl+n")
    assert step_title(pilot) == "Step 3 of 5 · Services"
    for name, port in services:
        await fill(pilot, "name", name)
        await fill(pilot, "port", str(port))
        await pilot.press("enter")
    await pilot.press("ctrl+n")
    assert step_title(pilot) == "Step 4 of 5 · Tokens"
    if per_service_tokens:
        await pilot.click("#mode-each")
    await pilot.press("ctrl+n")
    assert step_title(pilot) == "Step 5 of 5 · Review and write"


def make_server(path: Path, control: int, services: list[tuple[str, int]]) -> str:
    """Run the server wizard to its end, writing ``path``; the pairing code it showed."""
    code = ""

    async def body(pilot: Pilot, app: WizardHost) -> None:
        nonlocal code
        await server_steps(pilot, control, services)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Done: the server config is written"
        result = app.screen.query_one(ResultStep)
        code = app.screen.query_one("#code", TextArea).text
        assert code == result.code
        await pilot.press("c")
        assert app.clipboard == code
        await pilot.press("y")
        assert app.clipboard == f"ratui pair {code}"
        await pilot.press("ctrl+n")

    app = drive(ServerWizard(path), body)
    assert app.result == path
    return code


def make_client(
    path: Path, code: str, local_addr: str, *, expect: str = "ok", trusted_root: Path | None = None
) -> str:
    """Run the client wizard with ``code`` pasted, writing ``path``; the connection test's
    line for the first service (which must contain ``expect``)."""
    line = ""

    async def body(pilot: Pilot, app: WizardHost) -> None:
        nonlocal line
        await paste_code(pilot, code)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Step 2 of 4 · Local services"
        await fill(pilot, "local-0", local_addr)
        if trusted_root is not None:
            await fill(pilot, "trusted-root", str(trusted_root))
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Step 3 of 4 · Connection test"
        probes = app.screen.query_one(ProbeStep)
        await poll_until(lambda: bool(probes.results), what="the connection test")
        await pilot.pause()
        line = str(app.screen.query_one("#results", Static).content).splitlines()[0]
        assert expect in line
        await pilot.press("ctrl+n", "ctrl+n")

    app = drive(ClientWizard(path), body)
    assert app.result == path
    return line


def test_wizards_make_a_server_and_a_client_that_tunnel(
    tmp_path: Path, config_dir: Path, procs: Procs, echo: EchoServer
) -> None:
    """Server wizard -> ratui --server; its code -> client wizard (test says ok) -> ratui
    --client; bytes go through the tunnel to the echo service."""
    control, public = free_port(), free_port()
    server_path = config_dir / "server.toml"
    code = make_server(server_path, control, [("echo", public)])
    assert mode(server_path) == 0o600
    server = load_config(server_path).server
    assert server is not None and server.transport.type == "noise"
    assert server.services["echo"].bind_addr == f"127.0.0.1:{public}"
    procs.ratui("--server", str(server_path))
    wait_port(control)

    client_path = config_dir / "client.toml"
    assert make_client(client_path, code, echo.addr) == "✓ echo: ok"
    assert mode(client_path) == 0o600
    procs.ratui("--client", str(client_path))
    wait_until(lambda: echo_check(public, b"through the wizard's tunnel"), 20, "an echo")
    assert echo_check(public, os.urandom(256 * 1024))


def test_connection_test_names_a_wrong_token_an_unknown_service_and_a_stopped_server(
    tmp_path: Path, procs: Procs, echo: EchoServer
) -> None:
    control = free_port()
    draft = ServerDraft(
        bind_addr=f"127.0.0.1:{control}",
        public_addr=f"127.0.0.1:{control}",
        transport="tcp",
        services=(ServiceDraft("echo", bind_addr=f"127.0.0.1:{free_port()}"),),
        default_token="the-right-token-for-echo",
    )
    server_path = tmp_path / "server.toml"
    server_path.write_text(server_toml(draft))
    server = procs.ratui("--server", str(server_path))
    wait_port(control)
    good = pairing_for(draft)
    wrong_token = dataclasses.replace(
        good, services=(PairedService("echo", "tcp", "not-the-token-at-all"),)
    )
    line = make_client(tmp_path / "a.toml", encode(wrong_token), echo.addr, expect="refused")
    assert line == "✗ echo: the server refused the token for 'echo'"
    unknown = dataclasses.replace(good, services=(PairedService("web", "tcp", "x" * 20),))
    line = make_client(tmp_path / "b.toml", encode(unknown), echo.addr, expect="no service")
    assert line == "✗ web: the server has no service 'web'"

    server.stop()

    nowhere = f"127.0.0.1:{free_port()}"

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await pilot.press("ctrl+n")
        await fill(pilot, "local-0", nowhere)
        await pilot.press("ctrl+n")
        probes = app.screen.query_one(ProbeStep)
        await poll_until(lambda: bool(probes.results), what="the connection test")
        await pilot.pause()
        text = str(app.screen.query_one("#results", Static).content)
        assert text.splitlines() == [
            f"✗ echo: cannot reach 127.0.0.1:{control}: connection refused",
            # The other end too: nothing runs at the local address given.
            f"  ! here, nothing answers at {nowhere}: connection refused: start the service, "
            "or go back (ctrl+b) and change the address",
        ]
        # Going on despite the failure writes the config all the same.
        await pilot.press("ctrl+n", "ctrl+n")

    path = tmp_path / "c.toml"
    assert drive(ClientWizard(path, encode(good)), body).result == path
    assert load_config(path).client is not None


def tcp_code(service: str = "ssh", port: int = 5202) -> str:
    """The pairing code of a plain TCP server at vps.example.com with one service."""
    return encode(
        pairing_for(
            ServerDraft(
                bind_addr="0.0.0.0:2333",
                public_addr="vps.example.com:2333",
                transport="tcp",
                services=(ServiceDraft(service, bind_addr=f"0.0.0.0:{port}"),),
                default_token="t" * 24,
            )
        )
    )


def test_truncated_or_altered_codes_are_refused_in_place(tmp_path: Path) -> None:
    code = tcp_code()
    middle = len(code) // 2
    altered = code[:middle] + ("A" if code[middle] != "A" else "B") + code[middle + 1 :]

    async def body(pilot: Pilot, app: WizardHost) -> None:
        for bad, words in ((code[:-12], "truncated"), (altered, "altered"), ("hello", "not")):
            await paste_code(pilot, bad)
            await pilot.press("enter")  # Enter in the code box means Next
            assert step_title(pilot) == "Step 1 of 4 · Pairing code"
            with pytest.raises(PairingError) as refused:
                decode(bad)
            assert error_of(pilot, "code") == str(refused.value)
            assert words in error_of(pilot, "code")
        await pilot.press("escape")  # from inside the code box too
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("n")
        # Line breaks a terminal inserted in a good code do not matter.
        await paste_code(pilot, "\n".join([code[:40], code[40:90], code[90:]]))
        await pilot.press("enter")
        assert step_title(pilot) == "Step 2 of 4 · Local services"
        assert app.screen.query_one("#local-0", Field).value == "127.0.0.1:22"
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("y")

    app = drive(ClientWizard(tmp_path / "client.toml"), body)
    assert app.result is None
    assert not (tmp_path / "client.toml").exists()


def test_a_port_in_use_is_refused_in_place(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]

        async def body(pilot: Pilot, app: WizardHost) -> None:
            await fill(pilot, "bind", f"127.0.0.1:{port}")
            await pilot.press("ctrl+n")
            assert step_title(pilot) == "Step 1 of 5 · Where clients connect"
            assert error_of(pilot, "bind") == (
                f"tcp port {port} is in use on this machine: pick another"
            )
            await fill(pilot, "bind", "127.0.0.1:nope")
            await pilot.press("ctrl+n")
            assert error_of(pilot, "bind").startswith('expected "host:port"')

        drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)


def test_services_are_checked_as_they_are_added(tmp_path: Path) -> None:
    control, public = free_port(), free_port()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]

        async def body(pilot: Pilot, app: WizardHost) -> None:
            await fill(pilot, "bind", f"127.0.0.1:{control}")
            await pilot.press("ctrl+n", "ctrl+n")
            await pilot.press("ctrl+n")  # no service yet
            assert step_title(pilot) == "Step 3 of 5 · Services"
            assert error_of(pilot, "services") == "add at least one service"
            cases = [
                ("bad name!", str(public), "name", "may only hold letters"),
                ("web", str(control), "port", f"clients connect on {control}: pick another"),
                ("web", str(taken), "port", f"tcp port {taken} is in use on this machine"),
                ("web", "70000", "port", "expected a port number 1..65535"),
            ]
            for name, port, field, words in cases:
                await fill(pilot, "name", name)
                await fill(pilot, "port", port)
                await pilot.click("#add")
                assert words in error_of(pilot, field)
            await fill(pilot, "port", str(public))
            await pilot.press("enter")
            await fill(pilot, "name", "web")
            await fill(pilot, "port", str(free_port()))
            await pilot.press("enter")
            assert error_of(pilot, "name") == "there is already a service named web"
            await fill(pilot, "name", "web2")
            await fill(pilot, "port", str(public))
            await pilot.press("enter")
            assert error_of(pilot, "port") == f"tcp port {public} is taken by another service"
            # The same number as UDP is another port.
            await pilot.click("#type")
            await pilot.press("down", "enter")
            await pilot.click("#add")
            await pilot.click("#remove-0")
            await pilot.press("ctrl+n", "ctrl+n")
            assert step_title(pilot) == "Step 5 of 5 · Review and write"
            text = app.screen.query_one("#toml", TextArea).text
            assert "[server.services.web2]" in text and 'type = "udp"' in text
            assert "[server.services.web]" not in text

        app = drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)
        assert app.result is PENDING


def test_per_service_tokens_are_shown_and_regenerated(tmp_path: Path) -> None:
    tokens = iter(f"token-number-{i:04d}-for-the-test" for i in range(100))
    path = tmp_path / "server.toml"

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await server_steps(
            pilot, free_port(), [("a", free_port()), ("b", free_port())], transport="tcp"
        )
        await pilot.press("ctrl+b")
        step = app.screen.query_one(TokensStep)
        shown = [f.value for f in step.query("#tokens Field").results(Field)]
        await pilot.click("#mode-each")
        first = [f.value for f in step.query("#tokens Field").results(Field)]
        assert len(first) == 2 and first[0] != first[1] and shown[0] not in first
        await pilot.click("#regenerate")
        second = [f.value for f in step.query("#tokens Field").results(Field)]
        assert len(set(first + second)) == 4
        await fill(pilot, "token-0", "short")
        await pilot.press("ctrl+n")
        assert error_of(pilot, "token-0").startswith("at least 16 characters")
        await pilot.click("#regenerate")
        final.extend(f.value for f in step.query("#tokens Field").results(Field))
        assert not set(final) & set(second)
        await pilot.press("ctrl+n", "ctrl+n")

    final: list[str] = []
    drive(ServerWizard(path, new_token=lambda: next(tokens), hostname="vps"), body)
    server = load_config(path).server
    assert server is not None and server.default_token is None
    assert [s.token for s in server.services.values()] == final


def test_an_ipv6_listen_address_makes_a_server_config(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    control, public = free_port(), free_port()

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await server_steps(pilot, control, [("ssh", public)], transport="tcp", host="::1")
        assert f"[::1]:{public}" in app.screen.query_one("#toml", TextArea).text
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Done: the server config is written"
        assert decode(app.screen.query_one(ResultStep).code).remote_addr == f"[::1]:{control}"
        await pilot.press("ctrl+n")

    assert drive(ServerWizard(path, hostname="vps"), body).result == path
    server = load_config(path).server
    assert server is not None and server.bind_addr == f"[::1]:{control}"
    assert server.services["ssh"].bind_addr == f"[::1]:{public}"


def test_a_token_no_pairing_code_can_carry_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await server_steps(pilot, free_port(), [("ssh", free_port())], transport="tcp")
        await pilot.press("ctrl+b")
        await fill(pilot, "token-0", "x" * 300)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Step 4 of 5 · Tokens"
        assert error_of(pilot, "token-0") == (
            "the token is longer than 255 bytes: a pairing code cannot carry it"
        )
        await fill(pilot, "token-0", "y" * 40)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Step 5 of 5 · Review and write"
        await pilot.press("escape", "y")

    drive(ServerWizard(path, hostname="vps"), body)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_when_asked_and_kept_as_bak(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text("# mine\n")

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await server_steps(pilot, free_port(), [("ssh", free_port())], transport="tcp")
        assert "A file is already there." in str(app.screen.query_one("#where", Static).content)
        await pilot.press("ctrl+n")
        assert error_of(pilot, "overwrite") == f"{path} exists: tick the box above to replace it."
        assert path.read_text() == "# mine\n"
        await pilot.click(Checkbox)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Done: the server config is written"
        await pilot.press("escape")  # on the result page, escape is done too

    assert drive(ServerWizard(path, hostname="vps"), body).result == path
    assert load_config(path).server is not None
    backup = tmp_path / "server.toml.bak"
    assert backup.read_text() == "# mine\n"
    assert mode(path) == mode(backup) == 0o600


def test_escape_asks_only_once_something_was_typed(tmp_path: Path) -> None:
    async def untouched(pilot: Pilot, app: WizardHost) -> None:
        await pilot.press("escape")

    assert drive(ServerWizard(tmp_path / "s.toml", hostname="vps"), untouched).result is None

    async def typed(pilot: Pilot, app: WizardHost) -> None:
        await pilot.press("9")
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("n")
        assert isinstance(app.screen, ServerWizard)
        await pilot.click("#cancel")
        await pilot.press("y")

    assert drive(ServerWizard(tmp_path / "s.toml", hostname="vps"), typed).result is None
    assert not (tmp_path / "s.toml").exists()


def test_tls_server_and_a_client_trusting_its_private_ca_tunnel(
    tmp_path: Path, config_dir: Path, procs: Procs, echo: EchoServer
) -> None:
    """The TLS step opens the PKCS#12 file to check it; the client wizard takes the CA."""
    identity = server_identity(tmp_path / "certs")
    control, public = free_port(), free_port()
    server_path = config_dir / "server.toml"
    code = ""

    async def body(pilot: Pilot, app: WizardHost) -> None:
        nonlocal code
        await fill(pilot, "bind", f"127.0.0.1:{control}")
        assert app.screen.query_one("#public", Field).value == f"localhost:{control}"
        await pilot.press("ctrl+n")
        await pilot.click("#kind-tls")
        assert app.screen.query_one("#tls-hostname", Field).value == "localhost"
        missing = tmp_path / "missing.p12"
        await fill(pilot, "pkcs12", str(missing))
        await pilot.press("ctrl+n")
        assert error_of(pilot, "pkcs12") == f"no file at {missing}"
        await fill(pilot, "pkcs12", str(identity.pkcs12))
        await fill(pilot, "pkcs12-password", "wrong")
        await pilot.press("ctrl+n")
        assert "wrong pkcs12_password" in error_of(pilot, "pkcs12")
        await fill(pilot, "pkcs12-password", PKCS12_PASSWORD)
        await pilot.press("ctrl+n")
        assert step_title(pilot) == "Step 3 of 5 · Services"
        await fill(pilot, "name", "echo")
        await fill(pilot, "port", str(public))
        await pilot.press("enter", "ctrl+n", "ctrl+n", "ctrl+n")
        code = app.screen.query_one(ResultStep).code
        await pilot.press("ctrl+n")

    assert drive(ServerWizard(server_path, hostname="localhost"), body).result == server_path
    server = load_config(server_path).server
    assert server is not None and server.transport.tls is not None
    assert server.transport.tls.pkcs12 == str(identity.pkcs12)
    procs.ratui("--server", str(server_path))
    wait_port(control)

    client_path = config_dir / "client.toml"
    line = make_client(client_path, code, echo.addr, trusted_root=identity.ca_pem)
    assert line == "✓ echo: ok"
    procs.ratui("--client", str(client_path))
    wait_until(lambda: echo_check(public, b"over TLS"), 20, "an echo over TLS")


def test_the_code_can_come_prefilled(tmp_path: Path) -> None:
    code = tcp_code("web", 8080)

    async def body(pilot: Pilot, app: WizardHost) -> None:
        assert app.screen.query_one(CodeArea).text == code
        await pilot.press("ctrl+n")
        assert app.screen.query_one("#local-0", Field).value == "127.0.0.1:80"

    drive(ClientWizard(tmp_path / "c.toml", code), body)


def test_the_welcome_screen_of_ratui_opens_the_server_wizard_and_runs_its_config(
    config_dir: Path,
) -> None:
    control, public = free_port(), free_port()
    app = RatuiApp(None)

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("s")
            assert isinstance(app.screen, ServerWizard)
            await server_steps(pilot, control, [("web", public)], transport="tcp")
            await pilot.press("ctrl+n", "ctrl+n")
            await poll_until(lambda: app.config is not None, what="the new config to run")
            await poll_until(lambda: not refused(control), what="the server to listen")

    run(main())
    assert app.config is not None and app.config.source == str(config_dir / "ratui.toml")


# --------------------------------------------------------------------- the keyboard over SSH


def services_of(app: WizardHost) -> list[tuple[str, int]]:
    return [(s.name, s.port) for s in app.screen.query_one(ServicesStep).services]


def test_keys_typed_right_after_tab_or_enter_go_to_the_next_field(tmp_path: Path) -> None:
    """A terminal read can hold a Tab and the keys typed after it: those keys belong to the
    field that Tab moved to, not to the one it left."""
    control, web, ssh = free_port(), free_port(), free_port()

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await fill(pilot, "bind", f"127.0.0.1:{control}")
        await type_ahead(pilot, "enter", "ctrl+u", *f"127.0.0.1:{control}", "enter")
        assert step_title(pilot) == "Step 2 of 5 · Transport"
        await pilot.press("ctrl+n")
        await type_ahead(pilot, *"web", "tab", "tab", *str(web), "enter")
        await type_ahead(pilot, *"ssh", "tab", "tab", *str(ssh), "enter", *"x")
        assert services_of(app) == [("web", web), ("ssh", ssh)]
        assert app.screen.query_one("#name", Field).value == "x"
        await type_ahead(pilot, "backspace", "shift+tab", "shift+tab", "shift+tab", *"7")
        assert app.screen.query_one("#name", Field).value == ""

    app = drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)
    assert app.result is PENDING


def test_enter_goes_on_from_the_last_field_instead_of_to_cancel(tmp_path: Path) -> None:
    """Enter, Enter from the first field of a step moves to the next step; it never presses
    Cancel."""
    control = free_port()

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await fill(pilot, "bind", f"127.0.0.1:{control}")
        await pilot.press("enter", "enter")
        assert isinstance(app.screen, ServerWizard)
        assert step_title(pilot) == "Step 2 of 5 · Transport"

    drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)


def test_enter_on_the_transport_step_keeps_the_chosen_transport(tmp_path: Path) -> None:
    """The choices' cursor starts on the chosen one (Noise), so Enter does not switch to plain
    TCP; Enter, Enter goes on with Noise."""

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await fill(pilot, "bind", f"127.0.0.1:{free_port()}")
        await pilot.press("ctrl+n", "enter")
        assert app.screen.query_one(TransportStep).kind == "noise"
        await pilot.press("enter")
        assert step_title(pilot) == "Step 3 of 5 · Services"
        await pilot.press("ctrl+b", "down", "enter")
        assert app.screen.query_one(TransportStep).kind == "tls"
        await pilot.press("enter")  # on to the TLS fields, not to the next step
        assert step_title(pilot) == "Step 2 of 5 · Transport"
        assert app.screen.focused is app.screen.query_one("#pkcs12-input")

    drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)


def test_enter_in_an_empty_service_form_goes_on_once_there_is_a_service(
    tmp_path: Path,
) -> None:
    async def body(pilot: Pilot, app: WizardHost) -> None:
        await fill(pilot, "bind", f"127.0.0.1:{free_port()}")
        await pilot.press("ctrl+n", "ctrl+n")
        await pilot.press("enter")  # no service yet: says what is missing
        assert step_title(pilot) == "Step 3 of 5 · Services"
        assert error_of(pilot, "services") == "add at least one service"
        await type_ahead(pilot, *"web", "tab", "tab", *str(free_port()), "enter", "enter")
        assert step_title(pilot) == "Step 4 of 5 · Tokens"

    drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)


def test_an_error_goes_once_its_field_is_edited(tmp_path: Path) -> None:
    code = tcp_code()

    async def body(pilot: Pilot, app: WizardHost) -> None:
        # Typed (not pasted) with a line break: Enter comes before the rest of the code.
        await type_ahead(pilot, *code[:50], "enter", *code[50:])
        assert app.screen.query_one(CodeArea).text == code
        assert error_of(pilot, "code") == ""
        await pilot.press("enter")
        assert step_title(pilot) == "Step 2 of 4 · Local services"
        await fill(pilot, "local-0", "nowhere")
        await pilot.press("ctrl+n")
        assert error_of(pilot, "local-0").startswith('expected "host:port"')
        await pilot.press("backspace")
        assert error_of(pilot, "local-0") == ""

    drive(ClientWizard(tmp_path / "client.toml"), body)


def test_home_and_end_edit_the_field_without_leaving_the_wizard(tmp_path: Path) -> None:
    async def body(pilot: Pilot, app: WizardHost) -> None:
        await type_ahead(pilot, "home", *"1", "end", *"9", "left", "backspace", *"4")
        assert isinstance(app.screen, ServerWizard)
        assert app.screen.query_one("#bind", Field).value == "10.0.0.0:23349"

    drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)


@pytest.mark.parametrize(("size", "fits"), [((80, 24), True), ((120, 40), True), ((80, 20), False)])
def test_the_qr_code_is_shown_whole_on_its_own_screen(
    tmp_path: Path, size: tuple[int, int], fits: bool
) -> None:
    """A one-service Noise code needs 45 modules: 24 rows with a quiet zone of 1, so it is
    drawn whole at 80x24; a smaller window says what size it needs instead of a cut code."""
    private, public = generate_keypair()
    code = encode(
        pairing_for(
            ServerDraft(
                bind_addr="0.0.0.0:2333",
                public_addr="vps.example.com:2333",
                transport="noise",
                services=(ServiceDraft("ssh", bind_addr="0.0.0.0:5202"),),
                default_token=new_token(),
                noise_private_key=private,
                noise_public_key=public,
            )
        )
    )
    assert qr_modules(code) and len(qr_modules(code)) == 45

    async def body(pilot: Pilot, app: WizardHost) -> None:
        app.push_screen(QrScreen(code))
        await pilot.pause()
        qr = app.screen.query_one("#qr", Static)
        assert qr.display == fits
        if fits:
            assert qr.region.height == len(str(qr.content).splitlines()) <= size[1]
            assert qr.region.width <= size[0] and qr.region.y >= 0
        else:
            message = str(app.screen.query_one("#too-small", Static).content)
            assert "needs a window of at least 47x24 characters; this one is 80x20" in message
        await pilot.press("r")
        assert isinstance(app.screen, Wizard)

    app = WizardHost(ServerWizard(tmp_path / "server.toml", hostname="vps"))

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await body(pilot, app)

    run(main())


def test_tab_from_the_last_field_goes_to_next_not_to_cancel(tmp_path: Path) -> None:
    """Tab, Enter from the last field must not ask to cancel; escape (or a click) cancels."""

    async def body(pilot: Pilot, app: WizardHost) -> None:
        await pilot.press("tab", "tab")
        assert app.screen.focused is app.screen.query_one("#next")
        assert app.screen.query_one("#cancel") not in app.screen.focus_chain

    drive(ServerWizard(tmp_path / "server.toml", hostname="vps"), body)
