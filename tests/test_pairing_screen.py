"""The pairing action (``p``) on the dashboard of a running server: the code for the address
clients dial decodes to what the running config says; a bad address is refused in place."""

from __future__ import annotations

import socket
from pathlib import Path

from test_app import frozen, run, until
from test_editor import running
from test_snapshots import (  # noqa: F401 - an autouse fixture
    SERVER_TOML,
    _snapshot_dir_and_timezone,
    server_app,
)
from textual.pilot import Pilot
from textual.widgets import Input, Static, TextArea

from ratui.app import RatuiApp
from ratui.engine.config import load_config, parse_config
from ratui.engine.runtime import Roles
from ratui.screens.dashboard import DashboardScreen
from ratui.screens.pairing import PairingScreen
from ratui.screens.sharing import QrScreen
from ratui.screens.wizard import FieldError
from ratui.setup.pairing import PairedService, decode


def test_p_shows_the_code_of_the_running_server(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            await s.pilot.press("p")
            await until(s.pilot, lambda: isinstance(s.app.screen, PairingScreen), "pairing")
            screen = s.app.screen
            assert isinstance(screen, PairingScreen)
            addr = screen.query_one("#public-addr-input", Input)
            assert addr.value == f"{socket.gethostname()}:{s.ports['control']}"

            addr.value = "vps.example.com:2333"
            addr.focus()
            await s.pilot.press("enter")
            pairing = decode(screen.query_one("#code", TextArea).text)
            assert pairing.remote_addr == "vps.example.com:2333"
            assert pairing.transport == "tcp"
            token = "editor-test-token"
            assert pairing.services == (
                PairedService("web", "tcp", token),
                PairedService("ssh", "tcp", token),
            )
            hint = str(screen.query_one("#hint", Static).render())
            assert "run  ratui pair  and paste the code when it asks" in hint
            assert "ratui pair -" in hint and "ratui pair CODE" not in hint
            await s.pilot.press("tab", "c")
            assert s.app.clipboard == screen.code
            await s.pilot.press("r")
            assert isinstance(s.app.screen, QrScreen) and s.app.screen.code == screen.code
            await s.pilot.press("escape")
            assert s.app.screen is screen

            addr.value = "vps.example.com"
            addr.focus()
            await s.pilot.press("enter")
            assert "public address" in screen.query_one("#public-addr-error", FieldError).problem
            assert screen.code == "" and screen.query_one("#code", TextArea).text == ""
            await s.pilot.press("escape")
            assert isinstance(s.app.screen, DashboardScreen)

    run(main())


@frozen()
async def test_p_on_a_client_only_dashboard_says_why_not(pilot: Pilot, app: RatuiApp) -> None:
    app.roles = Roles(server=False, client=True)
    await pilot.press("p")
    await pilot.pause()
    assert isinstance(app.screen, DashboardScreen)
    assert [n.message for n in app._notifications] == ["Pairing codes come from a running server"]


def test_pairing_80x24(snap_compare) -> None:
    app, run_before = server_app()
    server = parse_config(SERVER_TOML).server
    assert server is not None

    async def show(pilot: Pilot) -> None:
        await run_before(pilot)  # type: ignore[operator]
        app.push_screen(PairingScreen(server, public_addr="vps.example.com:2333"))
        await pilot.pause()

    assert snap_compare(app, run_before=show, terminal_size=(80, 24))


def test_the_address_the_server_wizard_noted_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text(f'# public_addr = "vps.example.com:443"\n{SERVER_TOML}')

    async def main() -> None:
        app = RatuiApp(load_config(path), Roles(server=True, client=False), run_engine=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("p")
            await until(pilot, lambda: isinstance(app.screen, PairingScreen), "pairing")
            assert app.screen.query_one("#public-addr-input", Input).value == (
                "vps.example.com:443"
            )
            assert decode(app.screen.code).remote_addr == "vps.example.com:443"

    run(main())
