"""``ratui attach`` (issue 9): the dashboard fed over a real daemon's control socket.

:class:`RemoteState` is checked against a real ``ratui --daemon`` subprocess: the same frozen
snapshots and events as the engine's, live counters, config changes through the daemon's hot
reload path, and a daemon that restarts under it. Then the dashboard itself, driven with keys
(Textual's Pilot) in this process while a second ``ratui attach`` runs on a pseudo-terminal:
both show the bytes pushed through the daemon, ``r`` makes the daemon reload an edited file,
and quitting detaches and leaves the daemon serving. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Procs, free_port, roundtrip, wait_closed, wait_port
from daemons import both_toml, extra_service, start_daemon
from terminals import Terminal, open_terminals
from test_app import plain, until

from ratui.app import EngineStatus, RatuiApp
from ratui.attach import attached_config
from ratui.engine.config import ConfigDiff
from ratui.engine.runtime import ApplyResult
from ratui.engine.state import (
    ControlState,
    Event,
    EventKind,
    Level,
    Role,
    ServiceSnapshot,
    Snapshot,
)
from ratui.remote import RemoteError, RemoteState
from ratui.widgets.format import format_bytes


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def eventually(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
    return value


def by_key(snapshot: Snapshot) -> dict[str, ServiceSnapshot]:
    return {f"{s.role}:{s.name}": s for s in snapshot.services}


# ---------------------------------------------------------------------------- RemoteState


@pytest.mark.timeout(90)
def test_remote_state_reads_like_engine_state(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)

    async def main() -> None:
        remote = RemoteState(daemon.socket, poll_interval=0.1)
        info = await remote.connect()
        try:
            assert info.pid == daemon.proc.popen.pid
            assert (info.roles.server, info.roles.client) == (True, True)
            assert info.source == str(daemon.config)
            await eventually(
                lambda: (
                    len(remote.snapshot().services) == 2
                    and all(s.state is ControlState.UP for s in remote.snapshot().services)
                ),
                "both ends up",
            )
            snapshot = remote.snapshot()
            assert isinstance(snapshot, Snapshot)
            assert all(isinstance(s, ServiceSnapshot) for s in snapshot.services)
            assert {s.role for s in snapshot.services} == {Role.SERVER, Role.CLIENT}

            backlog = remote.recent_events()
            assert all(isinstance(e, Event) for e in backlog)
            assert any(e.kind is EventKind.CONTROL_UP for e in backlog)
            assert [e.seq for e in backlog] == list(range(1, len(backlog) + 1))

            # Live counters: bytes through the tunnel appear in the next polls, and the
            # visitor's events in a subscription, numbered after the backlog.
            subscription = remote.subscribe()
            payload = os.urandom(300_000)
            assert await asyncio.to_thread(roundtrip, daemon.public, payload) == payload
            await eventually(
                lambda: by_key(remote.snapshot())["server:echo"].rx == len(payload),
                "the bytes in the snapshot",
            )
            assert by_key(remote.snapshot())["client:echo"].tx == len(payload)
            seen: list[Event] = []
            while not any(f"{len(payload)} bytes in" in e.message for e in seen):
                seen.append(await asyncio.wait_for(subscription.get(), 10))
            assert seen[0].seq > backlog[-1].seq
            assert {e.kind for e in seen} >= {EventKind.VISITOR_OPENED, EventKind.VISITOR_CLOSED}
            assert subscription.dropped == 0
            subscription.close()

            # Changes go to the daemon and come back as ApplyResult, as from Runtime.apply.
            public2 = free_port()
            text = both_toml(
                daemon.control,
                daemon.public,
                echo.addr,
                extra_services=extra_service("two", public2, echo.addr),
            )
            result = await remote.apply(text)
            assert isinstance(result, ApplyResult) and result.applied, result
            assert isinstance(result.diff, ConfigDiff)
            assert result.diff.server_added == ("two",) and result.diff.client_added == ("two",)
            await asyncio.to_thread(wait_port, public2, 15)
            await eventually(lambda: "server:two" in by_key(remote.snapshot()), "two listed")
            refused = await remote.apply("[client]\nremote_addr = nowhere\n")
            assert not refused.applied and refused.diff is None
            assert "previous one" in refused.message
            assert (await remote.reload()).applied  # the file: back to echo alone
            await eventually(lambda: "server:two" not in by_key(remote.snapshot()), "two gone")
            assert await remote.config_text() == daemon.config.read_text()
            polls = remote.polls
            await asyncio.sleep(0.6)
            assert remote.polls >= polls + 3  # a snapshot every poll_interval
        finally:
            await remote.close()

    run(main())
    # The client left; the daemon did not notice beyond that.
    assert daemon.proc.popen.poll() is None
    assert roundtrip(daemon.public, b"after") == b"after"


@pytest.mark.timeout(90)
def test_remote_state_follows_a_daemon_restart(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)

    async def main() -> None:
        remote = RemoteState(daemon.socket, poll_interval=0.1)
        await remote.connect()
        subscription = remote.subscribe()
        try:
            await eventually(
                lambda: (
                    remote.snapshot().services
                    and all(s.state is ControlState.UP for s in remote.snapshot().services)
                ),
                "both ends up",
            )
            last_seq = remote.recent_events()[-1].seq
            assert daemon.proc.stop(signal.SIGTERM) == 0
            await eventually(lambda: not remote.connected, "the loss to be noticed")
            # While away, its services show as stopped, not frozen "up".
            assert all(s.state is ControlState.STOPPED for s in remote.snapshot().services)
            assert not (await remote.reload()).applied  # says why instead of raising

            restarted = procs.ratui(
                "--daemon",
                str(daemon.config),
                "--control-socket",
                str(daemon.socket),
                env={"RATUI_WATCH": "off"},
            )
            await eventually(lambda: remote.connected, "the reconnection", timeout=20)
            assert remote.info is not None and remote.info.pid == restarted.popen.pid
            await eventually(
                lambda: all(s.state is ControlState.UP for s in remote.snapshot().services),
                "the new daemon's services up",
            )
            events: list[Event] = []
            while not any(e.kind is EventKind.CONTROL_UP for e in events):
                events.append(await asyncio.wait_for(subscription.get(), 10))
            lost = next(e for e in events if e.kind is EventKind.ERROR)
            assert "lost the ratui daemon" in lost.message and lost.level is Level.ERROR
            assert any("attached again" in e.message for e in events)
            # One numbering across both daemons, so the dashboard never skips an event.
            seqs = [e.seq for e in events]
            assert seqs == sorted(seqs) and seqs[0] > last_seq
        finally:
            subscription.close()
            await remote.close()

    run(main())


def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(RemoteError, match="no ratui daemon at"):
            await RemoteState(tmp_path / "none.sock").connect()

    run(main())
    result = subprocess.run(
        [sys.executable, "-m", "ratui", "attach", str(tmp_path / "none.sock")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert result.returncode == 2  # not a terminal: says so before anything else
    assert "attach needs a terminal" in result.stderr


# ---------------------------------------------------------------------------- the dashboard


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    yield from open_terminals(rows=30, cols=120)


def cell(app: RatuiApp, key: str, column: str) -> str:
    return app.dashboard.table.get_cell(key, column).plain


def has_row(app: RatuiApp, key: str) -> bool:
    return any(str(row.key.value) == key for row in app.dashboard.table.ordered_rows)


@pytest.mark.timeout(60)
def test_attach_shows_the_daemons_uptime(tmp_path, procs: Procs, echo, sockdir) -> None:
    """The header's ``up H:MM:SS`` counts from the daemon's start, as ``ratui status`` does,
    not from the moment the dashboard attached."""
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)

    async def main() -> None:
        remote = RemoteState(daemon.socket)
        info = await remote.connect()
        try:
            await eventually(lambda: time.time() - info.started_at >= 2.5, "the daemon to age")
            app = RatuiApp(attached_config(remote), info.roles, remote=remote)
            async with app.run_test(size=(120, 30)) as pilot:
                await until(pilot, lambda: app.ui_ready, "the dashboard")
                await until(pilot, lambda: app.status is EngineStatus.RUNNING, "running")
                app.poll()
                vitals = plain(app.dashboard.query_one("#vitals"))
                hours, minutes, seconds = re.search(r"up (\d+):(\d\d):(\d\d)", vitals).groups()
                shown = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
                assert shown >= 2, vitals  # attached a moment ago, the daemon runs longer
                assert abs(shown - (time.time() - info.started_at)) < 1.5, vitals
        finally:
            await remote.close()

    run(main())


@pytest.mark.timeout(120)
def test_attach_shows_live_counters_applies_an_edit_and_detaches(
    tmp_path, procs: Procs, echo, sockdir, terminal
) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    # A second dashboard, as a user would open it: `ratui attach SOCKET` on a terminal.
    other = terminal("attach", str(daemon.socket))
    other.wait_for(r"echo")
    payload = os.urandom(1_000_000)
    expected = format_bytes(len(payload)).replace(" ", "")  # "1.00MB"
    public2 = free_port()

    async def main() -> None:
        remote = RemoteState(daemon.socket)
        await remote.connect()
        assert remote.info is not None
        app = RatuiApp(attached_config(remote), remote.info.roles, remote=remote)
        try:
            async with app.run_test(size=(120, 30)) as pilot:
                await until(pilot, lambda: app.ui_ready, "the dashboard")
                await until(
                    pilot,
                    lambda: has_row(app, "server:echo") and has_row(app, "client:echo"),
                    "both services in the table",
                )
                await until(pilot, lambda: app.status is EngineStatus.RUNNING, "running")
                assert app.runtime is None  # no engine in this process
                assert str(daemon.config) in app.config.source

                # Live counters: a visitor pushes 1 MB through the daemon and stays.
                reader, writer = await asyncio.open_connection("127.0.0.1", daemon.public)
                writer.write(payload)
                assert await asyncio.wait_for(reader.readexactly(len(payload)), 20) == payload
                for key in ("server:echo", "client:echo"):
                    await until(
                        pilot,
                        lambda key=key: (
                            cell(app, key, "in") == expected and cell(app, key, "out") == expected
                        ),
                        f"{key} to show {expected}",
                    )
                    assert cell(app, key, "visitors") == "1"
                await until(
                    pilot,
                    lambda: any(e.kind is EventKind.VISITOR_OPENED for e in remote.recent_events()),
                    "the visitor's event",
                )

                # An edit: the config file gains a service; `r` has the daemon reload it.
                daemon.config.write_text(
                    both_toml(
                        daemon.control,
                        daemon.public,
                        echo.addr,
                        extra_services=extra_service("two", public2, echo.addr),
                    )
                )
                await pilot.press("r")
                await until(pilot, lambda: has_row(app, "server:two"), "the new service")
                await asyncio.to_thread(wait_port, public2, 15)
                assert await asyncio.to_thread(roundtrip, public2, b"edit") == b"edit"
                # The untouched service kept its visitor through the reload.
                writer.write(b"still here")
                assert await asyncio.wait_for(reader.readexactly(10), 10) == b"still here"

                # Quit: detaching asks nothing, even with a visitor connected.
                await pilot.press("q")
                await until(pilot, lambda: app.return_code is not None, "the app to exit")
            assert app.return_code == 0
            # The visitor is still served by the daemon after we left.
            writer.write(b"after detach")
            assert await asyncio.wait_for(reader.readexactly(12), 10) == b"after detach"
            writer.close()
        finally:
            await remote.close()

    run(main())

    # The other dashboard saw the same bytes and the new service, live.
    other.wait_for(r"1\.00 ?MB")
    other.wait_for(r"two")
    other.send(b"q")
    assert other.wait_exit() == 0
    assert "Traceback" not in other.text()

    # Both detached: the daemon serves on, old service and new.
    assert daemon.proc.popen.poll() is None
    assert roundtrip(daemon.public, b"echo lives") == b"echo lives"
    assert roundtrip(public2, b"two lives") == b"two lives"
    assert "(control socket, pid" in daemon.proc.output()
    assert daemon.proc.stop() == 0
    wait_closed(daemon.public)
