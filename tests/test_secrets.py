"""Secrets (issue 11): tokens and private keys never appear in logs, events, the TUI's log
panel or what a status view reads (the engine's snapshot; ``test_status`` checks the real
``ratui status`` output, table and JSON, for the token); the token check is constant-time; a
config file that holds secrets and that other users may read gets a warning naming the file
and ``chmod 600``, never the secret.

Each tunnel here is driven through the paths most likely to print a secret: a good client and
visitors, a client with the wrong token (auth failures, retried), a client for a service the
server does not have, a raw data channel with a made-up session key, a hot reload that
changes a token, and shutdown. Logs run at debug level. What is searched for: each token, the
Noise private key (its base64 and its raw bytes in hex), and any 64-digit hex string (how a
session key, which is as good as a token for opening data channels, would look if printed).
``test_cli.test_genkey_keys_make_a_noise_tunnel_that_logs_no_secret`` does the same for a
Noise tunnel's keys, and ``test_config`` checks reprs and config errors.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import Procs, free_port, wait_port
from test_tunnel import wait_ready, wait_roundtrip
from tunnels import echo_check, wait_until

from ratui.engine import client as client_mod
from ratui.engine import server as server_mod
from ratui.engine.config import (
    file_permissions_warning,
    load_config,
    parse_config,
    permissions_warning,
)
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import ControlState, Level, Role

TOKEN = "tok-Secret-4f9a1c"  # the good one
WRONG = "tok-Wrong-77e2b0"  # a client's mistaken token: a secret too
NEW_TOKEN = "tok-Rotated-c3d8e5"  # after the reload
PRIVATE = base64.b64encode(bytes(range(100, 132))).decode()  # a Noise private key
SECRETS = [TOKEN, WRONG, NEW_TOKEN, PRIVATE, base64.b64decode(PRIVATE).hex()]
HEX64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def leaks(text: str) -> list[str]:
    found = [s for s in SECRETS if s in text]
    found += HEX64.findall(text)
    return found


# configs ----------------------------------------------------------------------------------
def server_toml(control: int, public: int, ghostless: str = TOKEN) -> str:
    return f"""
[server]
bind_addr = "127.0.0.1:{control}"
default_token = "{ghostless}"
heartbeat_interval = 1
[server.transport]
type = "tcp"
[server.transport.noise]
local_private_key = "{PRIVATE}"
[server.services.svc]
bind_addr = "127.0.0.1:{public}"
"""


def client_toml(control: int, local: str, token: str, service: str = "svc") -> str:
    return f"""
[client]
remote_addr = "127.0.0.1:{control}"
heartbeat_timeout = 3
[client.transport]
type = "tcp"
[client.transport.noise]
local_private_key = "{PRIVATE}"
[client.services.{service}]
local_addr = "{local}"
token = "{token}"
"""


# 1. real processes ------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_no_secret_in_process_logs(tmp_path: Path, procs: Procs, echo) -> None:
    control, public = free_port(), free_port()
    server_cfg = tmp_path / "server.toml"
    server_cfg.write_text(server_toml(control, public))
    server_cfg.chmod(0o644)  # as an editor or `cat >` leaves it: warned about
    good_cfg = tmp_path / "good.toml"
    good_cfg.write_text(client_toml(control, echo.addr, TOKEN))
    good_cfg.chmod(0o600)  # not warned about
    bad_cfg = tmp_path / "bad.toml"
    bad_cfg.write_text(client_toml(control, echo.addr, WRONG))
    ghost_cfg = tmp_path / "ghost.toml"
    ghost_cfg.write_text(client_toml(control, echo.addr, TOKEN, service="ghost"))

    server = procs.ratui("--server", str(server_cfg))
    wait_port(control)
    good = procs.ratui("--client", str(good_cfg))
    bad = procs.ratui("--client", str(bad_cfg))
    ghost = procs.ratui("--client", str(ghost_cfg))
    wait_ready(public)
    assert echo_check(public, os.urandom(64 * 1024))
    bad.wait_for_output("Authentication failed", timeout=10)
    ghost.wait_for_output("Service not exist", timeout=10)
    with socket.create_connection(("127.0.0.1", control), timeout=5) as raw:
        raw.sendall(b"\x01\x00\x00\x00\x01" + hashlib.sha256(b"made up").digest())
        assert raw.recv(10) == b""
    server.wait_for_output("incorrect session key")

    # Rotate the token on both sides (hot reload on SIGHUP): the old one is refused once.
    server_cfg.write_text(server_toml(control, public, NEW_TOKEN))
    server.popen.send_signal(signal.SIGHUP)
    server.wait_for_output("config reloaded (SIGHUP)")
    good_cfg.write_text(client_toml(control, echo.addr, NEW_TOKEN))
    good.popen.send_signal(signal.SIGHUP)
    good.wait_for_output("config reloaded (SIGHUP)")
    wait_roundtrip(public, b"rotated", timeout=10)
    wait_until(lambda: server.output().count("sent an incorrect token") >= 2, 10, "auth failures")

    for proc in (ghost, bad, good, server):
        assert proc.stop() == 0
    outputs = {p.log_path.name: p.output() for p in (server, good, bad, ghost)}
    for name, text in outputs.items():
        assert not leaks(text), f"{name} shows a secret: {leaks(text)}"

    # The permission warning: once, for the file other users may read, never for 0600.
    warning = f"restrict it with: chmod 600 {server_cfg}"
    assert warning in outputs[server.log_path.name]
    assert "(mode 0644)" in outputs[server.log_path.name]
    assert "chmod 600" not in outputs[good.log_path.name]
    print(
        f"\n{sum(len(t) for t in outputs.values())} bytes of debug logs from 4 processes: "
        f"no token, no private key, no 64-hex string"
    )


# 2. events, snapshots and the TUI's log panel --------------------------------------------
def both_roles_config(local_port: int) -> tuple[str, int, int]:
    control, public = free_port(), free_port()
    text = server_toml(control, public) + client_toml(control, f"127.0.0.1:{local_port}", TOKEN)
    text += f"""
[client.services.wrong]
local_addr = "127.0.0.1:{local_port}"
token = "{WRONG}"
"""
    text = text.replace(
        "[server.services.svc]",
        f'[server.services.wrong]\nbind_addr = "127.0.0.1:{free_port()}"\n[server.services.svc]',
    )
    return text, control, public


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _drive(control: int, public: int) -> None:
    """A visitor, and a raw data channel with a made-up session key."""
    reader, writer = await asyncio.open_connection("127.0.0.1", public)
    writer.write(b"hello")
    assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", control)
    writer.write(b"\x01\x00\x00\x00\x01" + os.urandom(32))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


def dump(value: Any) -> str:
    """Everything a status view could print of a snapshot: repr and every field as JSON."""
    return repr(value) + json.dumps(
        [{name: str(getattr(s, name)) for name in s.__dataclass_fields__} for s in value.services]
    )


@pytest.mark.timeout(60)
def test_no_secret_in_events_snapshots_or_the_tui_log_panel() -> None:
    from ratui.app import RatuiApp
    from ratui.widgets.events import EventLog, EventsPanel

    async def main() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        text, control, public = both_roles_config(echo.sockets[0].getsockname()[1])
        config = parse_config(text, "<secrets>")
        app = RatuiApp(config, Roles(server=True, client=True), watch_config=False)
        try:
            async with app.run_test(size=(160, 50)) as pilot:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    snap = app.state.snapshot().service(Role.SERVER, "svc")
                    wrong = app.state.snapshot().service(Role.SERVER, "wrong")
                    if (
                        snap is not None
                        and snap.state is ControlState.UP
                        and wrong is not None
                        and wrong.auth_failures >= 2
                    ):
                        break
                    await pilot.pause(0.05)
                else:
                    raise AssertionError("the tunnel did not come up with auth failures")
                await _drive(control, public)
                await pilot.pause(0.3)
                panel = app.screen.query_one(EventsPanel)
                panel.set_level(Level.DEBUG)
                await pilot.pause(0.2)
                lines = [strip.text for strip in app.screen.query_one(EventLog).lines]
                shown = "\n".join(lines)
                screen = app.export_screenshot()
                events = app.state.recent_events()
                snapshot = app.state.snapshot()
                await pilot.press("q")
        finally:
            echo.close()
        assert "incorrect token" in shown and "incorrect session key" in shown, shown
        event_text = "\n".join(f"{e!r}" for e in events)
        for what, text in {
            "events": event_text,
            "snapshot": dump(snapshot),
            "TUI log panel": shown,
            "TUI screen": screen,
        }.items():
            assert not leaks(text), f"the {what} shows a secret: {leaks(text)}"
        print(
            f"\n{len(events)} events, {len(lines)} log panel lines, a 160x50 screen, the "
            f"snapshot of {len(snapshot.services)} services: no secret"
        )

    asyncio.run(main())


# 3. constant-time comparison ---------------------------------------------------------------
@pytest.mark.timeout(30)
def test_token_check_is_constant_time() -> None:
    """The server compares the Auth digest with hmac.compare_digest (checked by running it,
    with a wrong token and a right one), and no secret is ever compared with == or != in the
    engine's source. Session keys are looked up in a dict: Python hashes bytes with keyed
    SipHash, so lookup time tells an attacker nothing about the stored keys."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    async def main() -> None:
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        text, _, _ = both_roles_config(echo.sockets[0].getsockname()[1])
        runtime = Runtime(parse_config(text, "<ct>"), Roles(server=True, client=True))
        with mock.patch.object(server_mod.hmac, "compare_digest", spy):
            await runtime.start()
            try:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    snap = runtime.state.snapshot()
                    svc = snap.service(Role.SERVER, "svc")
                    wrong = snap.service(Role.SERVER, "wrong")
                    if svc and svc.state is ControlState.UP and wrong and wrong.auth_failures:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("no successful and no failed auth")
            finally:
                await runtime.stop()
                echo.close()

    asyncio.run(main())
    assert len(calls) >= 2 and all(c == (32, 32) for c in calls), calls

    secret_words = ("token", "digest", "session_key", "auth", "nonce", "key")
    for module in (server_mod, client_mod):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                names = [
                    n.id if isinstance(n, ast.Name) else n.attr
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name | ast.Attribute)
                ]
                bad = [n for n in names if any(w in n.lower() for w in secret_words)]
                assert not bad, f"{module.__name__}:{node.lineno} compares {bad} with =="


# 4. the permission warning -----------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o644, 0o604, 0o660, 0o666])
def test_permission_warning(tmp_path: Path, mode: int) -> None:
    """What Runtime.start emits (as a warning event and log line) for the file it runs;
    test_no_secret_in_process_logs sees it in a real process's log."""
    path = tmp_path / "tunnel.toml"
    path.write_text(server_toml(2333, 8080))
    path.chmod(mode)
    warning = file_permissions_warning(load_config(path))
    if mode & 0o077:
        assert warning is not None
        assert str(path) in warning and f"chmod 600 {path}" in warning
        assert f"(mode {stat.S_IMODE(mode):04o})" in warning
        assert not leaks(warning)
    else:
        assert warning is None


def test_no_permission_warning_without_secrets() -> None:
    config = parse_config('[server]\nbind_addr = "0.0.0.0:2333"\n[server.services]\n', "x.toml")
    assert permissions_warning(config, stat.S_IFREG | 0o644) is None
    with_token = parse_config(server_toml(1, 2), "y.toml")
    assert permissions_warning(with_token, stat.S_IFREG | 0o600) is None
    warning = permissions_warning(with_token, stat.S_IFREG | 0o644)
    assert warning is not None and "y.toml" in warning and "chmod 600 y.toml" in warning
