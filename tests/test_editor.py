"""The config editor (``e``), driven with keys on a real config file while the app runs a real
tunnel (server and client in its own event loop, echo services on 127.0.0.1 behind them).

Saving must keep every comment and the key order (the saved text is compared exactly), write
the file atomically with mode 0600 and a ``.bak``, apply the change at once without touching
the other services' connections, and refuse an invalid config in place without writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from conftest import Procs, free_port, roundtrip, wait_port
from daemons import start_daemon
from test_app import echo_server, run, until
from test_snapshots import _snapshot_dir_and_timezone, server_app  # noqa: F401 - autouse
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select, TextArea

from ratui.app import RatuiApp
from ratui.attach import attached_config
from ratui.engine.config import ConfigError, load_config, parse_config
from ratui.engine.state import ControlState
from ratui.remote import RemoteState
from ratui.screens.dashboard import DashboardScreen
from ratui.screens.editor import EditorScreen, error_line
from ratui.screens.wizard import FieldError

TOKEN = "editor-test-token"


@dataclass
class Setup:
    app: RatuiApp
    pilot: Pilot
    path: Path
    text: str
    ports: dict[
        str, int
    ]  # public ports (web, ssh), echo ports (echo-web, echo-ssh, spare, echo-cam)


def config_text(ports: dict[str, int]) -> str:
    return f"""\
# ratui: server and client on one machine
[server]
bind_addr = "127.0.0.1:{ports["control"]}"  # clients connect here
default_token = "{TOKEN}"

# the web site
[server.services.web]
bind_addr = "127.0.0.1:{ports["web"]}"  # visitors

# ssh
[server.services.ssh]
bind_addr = "127.0.0.1:{ports["ssh"]}"

[client]
remote_addr = "127.0.0.1:{ports["control"]}"  # the server above
default_token = "{TOKEN}"

# the web site at home
[client.services.web]
local_addr = "127.0.0.1:{ports["echo-web"]}"  # nginx

# ssh at home
[client.services.ssh]
local_addr = "127.0.0.1:{ports["echo-ssh"]}"
"""


@contextlib.asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[Setup]:
    """The app on a two-service server+client config file, tunnel up, on the dashboard."""
    async with (
        echo_server() as echo_web,
        echo_server() as echo_ssh,
        echo_server() as spare,
        echo_server() as echo_cam,
    ):
        ports = {
            "control": free_port(),
            "web": free_port(),
            "ssh": free_port(),
            "echo-web": echo_web,
            "echo-ssh": echo_ssh,
            "spare": spare,
            "echo-cam": echo_cam,
        }
        path = tmp_path / "ratui.toml"
        text = config_text(ports)
        path.write_text(text)
        app = RatuiApp(None, theme="ratui-dark")
        async with app.run_test(size=(80, 24)) as pilot:
            app.open_config(path)
            await until(pilot, lambda: tunnel_up(app, 4), "the tunnel to come up")
            yield Setup(app, pilot, path, text, ports)


def tunnel_up(app: RatuiApp, count: int) -> bool:
    services = app.state.snapshot().services
    return len(services) == count and all(s.state is ControlState.UP for s in services)


async def echoes(port: int, payload: bytes = b"ping") -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5) == payload
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        return False
    finally:
        writer.close()


async def open_editor(s: Setup) -> EditorScreen:
    await s.pilot.press("e")
    await until(s.pilot, lambda: isinstance(s.app.screen, EditorScreen), "the editor")
    await s.pilot.pause()
    screen = s.app.screen
    assert isinstance(screen, EditorScreen)
    return screen


async def choose(s: Setup, editor: EditorScreen, entry: str) -> None:
    """Move the highlight of the entries list to ``entry`` (an option id) with the arrows."""
    entries = editor.query_one("#entries", OptionList)
    entries.focus()
    # Leaving a new service's form adds it to the list: look the target up after each move.
    while entries.highlighted != (target := entries.get_option_index(entry)):
        await s.pilot.press("down" if (entries.highlighted or 0) < target else "up")
        await s.pilot.pause()
    assert editor.forms.current == entry


async def retype(s: Setup, editor: EditorScreen, field: str, text: str) -> None:
    """Clear the input of form field ``field`` and type ``text``, as a user would."""
    editor.query_one(f"#{field}-input", Input).focus()
    await s.pilot.press("home", "ctrl+k", *text)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------- forms


def test_forms_edit_keeps_comments_and_applies_at_once(tmp_path: Path) -> None:
    """Change a local_addr, remove a service, add one: the file is the original with exactly
    those lines changed, 0600 with a .bak, and the tunnel runs the new config."""

    async def main() -> None:
        async with running(tmp_path) as s:
            editor = await open_editor(s)
            spare = f"127.0.0.1:{s.ports['spare']}"
            await choose(s, editor, "service:client:web")
            await retype(s, editor, "addr", spare)
            await choose(s, editor, "service:client:ssh")
            await s.pilot.click("#remove")
            await choose(s, editor, "service:server:ssh")
            await s.pilot.click("#remove")
            await choose(s, editor, "add:server:")
            cam = free_port()
            await retype(s, editor, "name", "cam")
            await retype(s, editor, "addr", f"127.0.0.1:{cam}")
            await choose(s, editor, "add:client:")
            await retype(s, editor, "name", "cam")
            await retype(s, editor, "addr", f"127.0.0.1:{s.ports['echo-cam']}")
            await s.pilot.press("ctrl+s")
            await until(s.pilot, lambda: isinstance(s.app.screen, DashboardScreen), "saved")

            p = s.ports
            expected = (
                s.text.replace(f"127.0.0.1:{p['echo-web']}", spare)
                .replace(
                    f'# ssh\n[server.services.ssh]\nbind_addr = "127.0.0.1:{p["ssh"]}"\n\n', ""
                )
                .replace(
                    "# visitors\n\n[client]",
                    f'# visitors\n\n[server.services.cam]\nbind_addr = "127.0.0.1:{cam}"\n'
                    "\n[client]",
                )
                .replace(
                    "# ssh at home\n[client.services.ssh]\n"
                    f'local_addr = "127.0.0.1:{p["echo-ssh"]}"',
                    f'[client.services.cam]\nlocal_addr = "127.0.0.1:{p["echo-cam"]}"',
                )
            )
            assert s.path.read_text() == expected
            assert mode(s.path) == 0o600
            backup = s.path.with_name("ratui.toml.bak")
            assert backup.read_text() == s.text
            assert mode(backup) == 0o600

            # Applied: cam carries bytes to its own echo service, ssh is gone, web goes to
            # the spare echo service.
            await until(s.pilot, lambda: tunnel_up(s.app, 4), "web and cam up")
            names = sorted({sv.name for sv in s.app.state.snapshot().services})
            assert names == ["cam", "web"]
            assert await echoes(cam)
            assert await echoes(s.ports["web"])

    run(main())


def test_an_invalid_form_shows_the_error_in_place_and_writes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            before = s.path.stat()
            editor = await open_editor(s)
            await choose(s, editor, "service:server:ssh")
            await retype(s, editor, "addr", "5202")
            await s.pilot.press("ctrl+s")
            await s.pilot.pause()
            assert isinstance(s.app.screen, EditorScreen)
            error = editor.query_one("#addr-error", FieldError)
            assert 'expected "host:port"' in error.problem
            assert editor.forms.current == "service:server:ssh"
            after = s.path.stat()
            assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)
            assert s.path.read_text() == s.text
            assert not s.path.with_name("ratui.toml.bak").exists()
            # A service without a name cannot even go into the document.
            await retype(s, editor, "addr", f"127.0.0.1:{s.ports['ssh']}")
            await retype(s, editor, "name", "")
            await s.pilot.press("ctrl+s")
            await s.pilot.pause()
            assert editor.query_one("#name-error", FieldError).problem == "a service needs a name"
            assert s.path.read_text() == s.text

    run(main())


def test_escape_with_an_edit_still_in_the_form_warns_first(tmp_path: Path) -> None:
    """An address retyped but not yet moved away from counts as an unsaved change."""

    async def main() -> None:
        async with running(tmp_path) as s:
            editor = await open_editor(s)
            await choose(s, editor, "service:client:web")
            await retype(s, editor, "addr", f"127.0.0.1:{s.ports['spare']}")
            await s.pilot.press("escape")
            await s.pilot.pause()
            assert s.app.screen is editor
            assert any("Unsaved changes" in n.message for n in s.app._notifications)
            await s.pilot.press("escape")
            await until(s.pilot, lambda: isinstance(s.app.screen, DashboardScreen), "closed")
            assert s.path.read_text() == s.text

    run(main())


# ---------------------------------------------------------------------- raw TOML


def test_raw_edit_keeps_comments_and_adds_a_service_that_carries_bytes(tmp_path: Path) -> None:
    """While a visitor's connection through ssh stays open, a service added in the raw editor
    starts and carries bytes; the ssh connection keeps working (same connection)."""

    async def main() -> None:
        async with running(tmp_path) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.ports["ssh"])
            writer.write(b"before")
            assert await asyncio.wait_for(reader.readexactly(6), 10) == b"before"

            editor = await open_editor(s)
            await s.pilot.press("ctrl+t")
            raw = editor.query_one("#raw", TextArea)
            assert s.app.focused is raw
            new_port = free_port()
            server_block = f'[server.services.new]  # added\nbind_addr = "127.0.0.1:{new_port}"\n\n'
            client_block = f'\n[client.services.new]\nlocal_addr = "127.0.0.1:{s.ports["spare"]}"\n'
            client_line = s.text.splitlines().index("[client]")
            raw.move_cursor((client_line, 0))
            await s.pilot.press(*keys(server_block))
            raw.move_cursor(raw.document.end)
            await s.pilot.press(*keys(client_block))
            await s.pilot.press("ctrl+s")
            await until(s.pilot, lambda: isinstance(s.app.screen, DashboardScreen), "saved")

            expected = s.text.replace("[client]\n", server_block + "[client]\n") + client_block
            assert s.path.read_text() == expected
            assert mode(s.path) == 0o600
            assert s.path.with_name("ratui.toml.bak").read_text() == s.text

            await until(s.pilot, lambda: tunnel_up(s.app, 6), "the new service up")
            assert await echoes(new_port, b"new service")
            writer.write(b"after")  # the ssh visitor's connection was never dropped
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"after"
            writer.close()

    run(main())


def keys(text: str) -> list[str]:
    """``text`` as Pilot key names."""
    names = {"\n": "enter", " ": "space", '"': "quotation_mark", "#": "number_sign"}
    return [names.get(ch, ch) for ch in text]


def test_an_invalid_raw_edit_moves_the_cursor_to_the_line_and_writes_nothing(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with running(tmp_path) as s:
            editor = await open_editor(s)
            await s.pilot.press("ctrl+t")
            raw = editor.query_one("#raw", TextArea)
            line = s.text.splitlines().index("[server.services.ssh]") + 1  # its bind_addr
            port = f":{s.ports['ssh']}"
            raw.move_cursor((line, len(raw.document.get_line(line)) - 1))  # before the quote
            await s.pilot.press(*["backspace"] * len(port))  # "127.0.0.1": no port
            await s.pilot.press("ctrl+s")
            await s.pilot.pause()
            problem = str(editor.query_one("#problem").content)
            assert "[server.services.ssh] bind_addr:" in problem
            assert raw.cursor_location == (line, 0)
            assert s.path.read_text() == s.text
            assert not s.path.with_name("ratui.toml.bak").exists()

            # A TOML syntax error: the cursor goes to its line too, and forms are refused.
            raw.move_cursor((0, 0))
            await s.pilot.press("left_square_bracket", "enter")
            await s.pilot.press("ctrl+s")
            await s.pilot.pause()
            assert "invalid TOML" in str(editor.query_one("#problem").content)
            assert raw.cursor_location == (0, 0)
            await s.pilot.press("ctrl+t")
            assert editor.mode == "raw"
            assert s.path.read_text() == s.text

    run(main())


def test_the_line_of_a_raw_mistake_stays_in_view_under_the_problem(tmp_path: Path) -> None:
    """The problem shown under the text takes rows from it: the cursor's line, at the bottom
    of the text, must still be visible after it."""

    async def main() -> None:
        async with running(tmp_path) as s:
            editor = await open_editor(s)
            await s.pilot.press("ctrl+t")
            raw = editor.query_one("#raw", TextArea)
            raw.move_cursor(raw.document.end)
            raw.insert("\n# a note\n" * 20 + "[server.services.bad]\nbind_addr = 5202\n")
            await s.pilot.press("ctrl+s")
            await s.pilot.pause()
            assert "[server.services.bad] bind_addr" in str(editor.query_one("#problem").content)
            line = raw.cursor_location[0]
            assert raw.document.get_line(line) == "bind_addr = 5202"
            top, rows = raw.scroll_offset.y, raw.scrollable_content_region.height
            assert top <= line < top + rows

    run(main())


def test_error_line_finds_the_key_in_its_table() -> None:
    text = '[server]\nbind_addr = "x"\n[server.services."a b"]\nbind_addr = "y"\n'
    assert error_line(text, ConfigError("f", 'server.services."a b"', "bind_addr", "p")) == 3
    assert error_line(text, ConfigError("f", "server", "bind_addr", "p")) == 1
    assert error_line(text, ConfigError("f", "server", "default_token", "p")) == 0
    assert error_line(text, ConfigError("f", problem="p", line=4, column=1)) == 3
    assert error_line(text, ConfigError("f", problem="p")) is None


def test_the_saved_config_loads_as_the_engine_reads_it(tmp_path: Path) -> None:
    """A save through the forms that changes nothing but one value keeps a loadable file
    whose other values are the same as before."""

    async def main() -> None:
        async with running(tmp_path) as s:
            editor = await open_editor(s)
            await choose(s, editor, "service:server:web")
            await retype(s, editor, "token", "a-new-token-for-web")
            await s.pilot.press("ctrl+s")
            await until(s.pilot, lambda: isinstance(s.app.screen, DashboardScreen), "saved")
            old = load_config(s.path.with_name("ratui.toml.bak"))
            new = load_config(s.path)
            assert new.server is not None and old.server is not None
            assert new.server.services["web"].token == "a-new-token-for-web"
            assert new.server.services["ssh"] == old.server.services["ssh"]
            assert new.client == old.client

    run(main())


# ---------------------------------------------------------------------- snapshots

COMMENTED = """\
# ratui on the VPS
[server]
bind_addr = "0.0.0.0:2333"  # clients connect here
default_token = "snapshot-token"

# the web site
[server.services.web]
bind_addr = "0.0.0.0:8080"  # visitors come here

[server.services.game]
type = "udp"
bind_addr = "0.0.0.0:27015"
nodelay = false
"""


def editor_on_frozen_app(  # type: ignore[no-untyped-def]
    press: tuple[str, ...] = (), text: str = COMMENTED
):
    app, run_before = server_app()

    async def show(pilot: Pilot) -> None:
        await run_before(pilot)  # type: ignore[operator]
        app.push_screen(EditorScreen(text, "/etc/ratui/server.toml"))
        await pilot.pause()
        await pilot.press(*press)
        await pilot.pause()

    return app, show


def test_editor_forms_80x24(snap_compare) -> None:
    app, show = editor_on_frozen_app(("down",))  # the game service: udp, nodelay off
    assert snap_compare(app, run_before=show, terminal_size=(80, 24))


def test_editor_raw_80x24(snap_compare) -> None:
    app, show = editor_on_frozen_app(("ctrl+t",))
    assert snap_compare(app, run_before=show, terminal_size=(80, 24))


def test_the_transport_form_sets_websocket_tls() -> None:
    async def main() -> None:
        app, show = editor_on_frozen_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await show(pilot)
            editor = app.screen
            assert isinstance(editor, EditorScreen)
            entries = editor.query_one("#entries", OptionList)
            entries.highlighted = entries.get_option_index("transport:server:")
            await pilot.pause()
            choice = editor.query_one("#tr-websocket-tls")
            assert choice.has_class("-hidden")  # only for a websocket transport
            editor.query_one("#tr-type-select", Select).value = "websocket"
            await pilot.pause()
            assert not choice.has_class("-hidden")
            editor.query_one("#tr-websocket-tls-select", Select).value = False
            text = editor.text()
            assert text is not None
            transport = parse_config(text).server
            assert transport is not None and transport.transport.websocket is not None
            assert transport.transport.websocket.tls is False

    run(main())


def test_a_form_edit_the_file_layout_cannot_take_is_refused_in_place() -> None:
    inline = (
        '[server]\nbind_addr = "0.0.0.0:2333"\ndefault_token = "t"\n'
        'services = { web = { bind_addr = "0.0.0.0:80" } }\n'
    )

    async def main() -> None:
        app, show = editor_on_frozen_app(text=inline)
        async with app.run_test(size=(80, 24)) as pilot:
            await show(pilot)
            editor = app.screen
            assert isinstance(editor, EditorScreen)
            entries = editor.query_one("#entries", OptionList)
            entries.highlighted = entries.get_option_index("add:server:")
            await pilot.pause()
            editor.query_one("#name-input", Input).value = "ssh"
            editor.query_one("#addr-input", Input).value = "0.0.0.0:22"
            assert editor.text() is None
            assert "raw TOML (ctrl+t)" in editor.query_one("#name-error", FieldError).problem
            assert app.screen is editor

    run(main())


# ---------------------------------------------------------------------- attached to a daemon


def test_attached_the_daemon_applies_and_saves_the_edit(
    tmp_path: Path, procs: Procs, echo, sockdir: Path
) -> None:
    """``ratui attach``'s editor: the text goes to the daemon, which applies it and writes its
    own file; the new service carries bytes."""
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    original = daemon.config.read_text()
    added = free_port()

    async def main() -> None:
        remote = RemoteState(daemon.socket)
        await remote.connect()
        assert remote.info is not None
        app = RatuiApp(attached_config(remote), remote.info.roles, remote=remote)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.ui_ready, "the dashboard")
                s = Setup(app, pilot, daemon.config, original, {})
                editor = await open_editor(s)
                assert editor.original == original
                await choose(s, editor, "add:server:")
                await retype(s, editor, "name", "two")
                await retype(s, editor, "addr", f"127.0.0.1:{added}")
                await choose(s, editor, "add:client:")
                await retype(s, editor, "name", "two")
                await retype(s, editor, "addr", echo.addr)
                await pilot.press("ctrl+s")
                await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "saved")
                await asyncio.to_thread(wait_port, added, 15)
                assert await asyncio.to_thread(roundtrip, added, b"attached") == b"attached"
        finally:
            await remote.close()
        saved = daemon.config.read_text()
        assert saved.startswith(original.rstrip("\n").split("\n[client]")[0])
        assert f'[server.services.two]\nbind_addr = "127.0.0.1:{added}"\n' in saved
        assert f'[client.services.two]\nlocal_addr = "{echo.addr}"\n' in saved

    run(main())
