"""``ratui`` without a config: the welcome screen (open a file, the demo, the wizards' result)
ends on the dashboard of a tunnel running in the same process; with a default config in
``$RATUI_CONFIG_DIR`` the dashboard opens directly, on a terminal or headless."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Procs, free_port, wait_port
from daemons import both_toml
from terminals import Terminal, open_terminals
from test_app import echo_server, run, until
from test_editor import echoes, tunnel_up
from test_snapshots import _snapshot_dir_and_timezone  # noqa: F401 - autouse fixture
from textual.widgets import Input

from ratui.app import EngineStatus, RatuiApp
from ratui.screens.client_wizard import ClientWizard
from ratui.screens.dashboard import DashboardScreen
from ratui.screens.server_wizard import ServerWizard
from ratui.screens.welcome import WelcomeScreen, check_config_path
from ratui.screens.wizard import FieldError
from ratui.setup.files import CONFIG_DIR_ENV


def tunnel_toml(local_port: int) -> tuple[str, int]:
    """A server and client config on loopback to ``local_port``, and its public port."""
    public = free_port()
    return both_toml(free_port(), public, f"127.0.0.1:{local_port}"), public


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "config"
    monkeypatch.setenv(CONFIG_DIR_ENV, str(directory))
    return directory


def test_check_config_path_says_what_is_wrong(tmp_path: Path) -> None:
    assert check_config_path("  ")[1] == "type the path of a config file"
    assert check_config_path(str(tmp_path))[1] == f"{tmp_path} is a directory, not a config file"
    assert (
        check_config_path(str(tmp_path / "none.toml"))[1] == f"{tmp_path}/none.toml: no such file"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\nbind_addr = "2333"\n')
    assert check_config_path(str(bad))[1] == (
        f'{bad}: [server] bind_addr: expected "host:port", got "2333" (no port)'
    )


def test_open_a_config_file_shows_errors_in_place_then_runs_it(
    tmp_path: Path, config_dir: Path
) -> None:
    async def main() -> None:
        async with echo_server() as local_port:
            text, public = tunnel_toml(local_port)
            path = tmp_path / "tunnel.toml"
            path.write_text(text)
            app = RatuiApp(None, theme="ratui-dark")
            async with app.run_test(size=(80, 24)) as pilot:
                assert isinstance(app.screen, WelcomeScreen)
                assert app.status is EngineStatus.IDLE and app.runtime is None
                await pilot.press("o")
                assert isinstance(app.focused, Input)
                error = app.screen.query_one("#path-error", FieldError)
                await pilot.press(*str(tmp_path / "missing.toml"), "enter")
                assert error.problem.endswith("missing.toml: no such file")
                assert isinstance(app.screen, WelcomeScreen)
                app.focused.value = ""
                await pilot.press(*str(path), "enter")
                await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "dashboard")
                await until(pilot, lambda: tunnel_up(app, 2), "the tunnel")
                assert app.status is EngineStatus.RUNNING
                assert app.config is not None and app.config.source == str(path)
                assert await echoes(public, b"through the tunnel")
                await until(pilot, lambda: len(app.dashboard.table.ordered_rows) == 2, "rows")
                await until(pilot, lambda: app.visitors_connected() == 0, "the visitor gone")
                await pilot.press("q")
                await until(pilot, lambda: app.return_code is not None, "the app to exit")
            assert app.return_code == 0

    run(main())


def test_a_wizard_result_is_opened_and_run(tmp_path: Path, config_dir: Path) -> None:
    """The server wizard (pushed by ``s``) dismissed with the config it wrote: the app runs
    that config; a cancelled wizard leaves the welcome screen."""

    async def main() -> None:
        async with echo_server() as local_port:
            text, public = tunnel_toml(local_port)
            app = RatuiApp(None, theme="ratui-dark")
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("c")
                assert isinstance(app.screen, ClientWizard)
                app.screen.dismiss(None)
                await until(pilot, lambda: isinstance(app.screen, WelcomeScreen), "welcome")
                await pilot.press("s")
                wizard = app.screen
                assert isinstance(wizard, ServerWizard)
                written = config_dir / "ratui.toml"
                config_dir.mkdir()
                written.write_text(text)
                wizard.dismiss(written)
                await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "dashboard")
                await until(pilot, lambda: tunnel_up(app, 2), "the tunnel")
                assert await echoes(public)

    run(main())


def test_the_demo_runs_from_the_welcome_screen(config_dir: Path) -> None:
    async def main() -> None:
        app = RatuiApp(None, theme="ratui-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "dashboard")
            await until(pilot, lambda: app.status is EngineStatus.RUNNING, "the demo")
            assert app.demo and app.demo_url is not None
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", int(app.demo_url.rsplit(":", 1)[1].strip("/"))
            )
            writer.write(b"GET / HTTP/1.0\r\n\r\n")
            assert b"Hello from ratui!" in await asyncio.wait_for(reader.read(), 10)
            writer.close()

    run(main())


def test_welcome_80x24(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "/home/me/.config/ratui")
    assert snap_compare(RatuiApp(None, theme="ratui-dark"), terminal_size=(80, 24))


def test_welcome_open_error_80x24(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "/home/me/.config/ratui")
    press = ["o", *"/nonexistent/server.toml", "enter"]
    assert snap_compare(RatuiApp(None, theme="ratui-dark"), press=press, terminal_size=(80, 24))


# ---------------------------------------------------------------------- the command line


@pytest.fixture
def terminal(config_dir: Path) -> Iterator[Callable[..., Terminal]]:
    yield from open_terminals(env={CONFIG_DIR_ENV: str(config_dir), "COLORTERM": "truecolor"})


def test_no_config_on_a_terminal_opens_the_welcome_screen(terminal) -> None:
    term = terminal()
    term.wait_for(r"Welcome to ratui")
    term.wait_for(r"Set up a server")
    term.send(b"q")
    assert term.wait_exit() == 0


def test_the_default_config_opens_the_dashboard_directly(terminal, config_dir: Path) -> None:
    config_dir.mkdir(mode=0o700)
    text, public = tunnel_toml(free_port())
    (config_dir / "ratui.toml").write_text(text)
    os.chmod(config_dir / "ratui.toml", 0o600)
    term = terminal()
    term.wait_for(r"server \+ client")  # the header of the dashboard
    wait_port(public)
    assert "Welcome to ratui" not in term.text()
    term.send(b"q")
    assert term.wait_exit() == 0


def test_without_a_terminal_no_config_is_still_a_usage_error(
    procs: Procs, config_dir: Path
) -> None:
    proc = procs.ratui("--daemon", env={CONFIG_DIR_ENV: str(config_dir)})
    assert proc.popen.wait(20) == 2
    assert "give a CONFIG file, --demo or --genkey" in proc.output()


def test_without_a_terminal_the_default_config_is_served_headless(
    procs: Procs, config_dir: Path
) -> None:
    config_dir.mkdir(mode=0o700)
    text, public = tunnel_toml(free_port())
    (config_dir / "ratui.toml").write_text(text)
    os.chmod(config_dir / "ratui.toml", 0o600)
    proc = procs.ratui(env={CONFIG_DIR_ENV: str(config_dir)})  # stdin is not a terminal
    wait_port(public, timeout=20)
    proc.wait_for_output(str(config_dir / "ratui.toml"))
    assert proc.stop() == 0
