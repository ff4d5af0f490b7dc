"""Hot reload (issue 6): Runtime.apply, the config file watcher, SIGHUP.

Most tests run a ratui server and a ratui client in one event loop, each with its own config
file and a :class:`ConfigWatcher` wired to :meth:`Runtime.reload` exactly as ``ratui`` wires
them in ``headless.serve``; local services are asyncio echo servers; every socket is on
127.0.0.1. A visitor streams bytes through service ``a`` while other services are added,
changed and removed, and the test checks that not one byte of that stream is lost and that its
control channel, relay and local connection are the same objects at the end. The SIGHUP tests
and one watcher test run real ``python -m ratui`` processes. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Procs, aroundtrip, free_port, roundtrip, run, serve_echo, wait_port

from ratui.engine.config import load_config, parse_config
from ratui.engine.protocol import service_digest
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import ControlState, EngineState, EventKind, Role
from ratui.engine.watcher import ConfigWatcher, WatchMode

pytestmark = pytest.mark.usefixtures("manual_rate_sampling")
TOKEN = "reload-test-token"
APPLY_WITHIN = 2.0  # seconds from a save to the change being in force (issue 6)


# configs ----------------------------------------------------------------------------------
def server_toml(control: int, services: dict[str, int], **top: object) -> str:
    """``[server]`` on 127.0.0.1:control with one service per name, on 127.0.0.1:port."""
    lines = ["[server]", f'bind_addr = "127.0.0.1:{control}"', f'default_token = "{TOKEN}"']
    lines += [f"{k} = {v!r}" for k, v in top.items()]
    for name, port in services.items():
        lines += [f"[server.services.{name}]", f'bind_addr = "127.0.0.1:{port}"']
    return "\n".join(lines) + "\n"


def client_toml(control: int, services: dict[str, int], **top: object) -> str:
    """``[client]`` to 127.0.0.1:control with one service per name, to 127.0.0.1:port."""
    lines = ["[client]", f'remote_addr = "127.0.0.1:{control}"', f'default_token = "{TOKEN}"']
    lines += [f"{k} = {v!r}" for k, v in top.items()]
    for name, port in services.items():
        lines += [f"[client.services.{name}]", f'local_addr = "127.0.0.1:{port}"']
    return "\n".join(lines) + "\n"


def save(path: Path, text: str) -> None:
    """An editor's save: write a temporary file next to it, then rename it over."""
    tmp = path.with_name(f".{path.name}.tmp{random.randrange(1 << 30)}")
    tmp.write_text(text)
    os.replace(tmp, path)


# async helpers ----------------------------------------------------------------------------
async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; return how long that took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def wait_roundtrip(port: int, timeout: float, what: str) -> float:
    """Retry until an echo through ``port`` comes back intact; return how long that took."""
    payload = random.randbytes(4096)
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        try:
            if await aroundtrip(port, payload, timeout=1.0) == payload:
                return time.monotonic() - start
            last = "short echo"
        except (OSError, TimeoutError) as exc:
            last = exc
        await asyncio.sleep(0.03)
    raise AssertionError(f"no roundtrip through {what} (port {port}) in {timeout} s: {last}")


async def refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def wait_refused(port: int, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not await refused(port):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} (port {port}) still accepts after {timeout} s")
        await asyncio.sleep(0.03)
    return time.monotonic() - start


class Echo:
    """A local service: echoes, half-closes after the visitor does, counts connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> Echo:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        await serve_echo(reader, writer)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


class Stream:
    """A visitor that keeps sending random bytes and checks that all of them come back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = bytearray()
        self.received = bytearray()
        self._stop = asyncio.Event()

    async def start(self) -> Stream:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writing = asyncio.get_running_loop().create_task(self._write())
        self._reading = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _write(self) -> None:
        rng = random.Random(6)
        while not self._stop.is_set():
            chunk = rng.randbytes(8192)
            self.writer.write(chunk)
            self.sent += chunk
            await self.writer.drain()
            await asyncio.sleep(0.004)
        self.writer.write_eof()

    async def _read(self) -> None:
        while data := await self.reader.read(65536):
            self.received += data

    @property
    def alive(self) -> bool:
        """The connection has seen neither EOF nor an error."""
        return not self._reading.done() and not self._writing.done()

    async def flowing(self, timeout: float = 2.0) -> None:
        """Wait until more bytes arrive than had arrived when called."""
        mark = len(self.received)
        await wait_for(lambda: len(self.received) > mark + 8192, timeout, "the stream to flow")

    async def finish(self, timeout: float = 10.0) -> None:
        """Stop sending, half-close, and wait for the whole echo."""
        self._stop.set()
        await asyncio.wait_for(self._writing, timeout)
        await asyncio.wait_for(self._reading, timeout)
        self.writer.close()

    def cancel(self) -> None:
        self._writing.cancel()
        self._reading.cancel()
        self.writer.close()


class Side:
    """One ratui role in this loop: its config file, Runtime and ConfigWatcher."""

    def __init__(self, path: Path, roles: Roles, mode: WatchMode = WatchMode.AUTO) -> None:
        self.path = path
        self.roles = roles
        self.mode = mode
        self.state = EngineState()

    async def start(self) -> Side:
        self.runtime = Runtime(load_config(self.path), self.roles, self.state)
        await self.runtime.start()
        self.checks = 0
        self.watcher = ConfigWatcher(self.path, self._on_change, mode=self.mode, poll_interval=0.5)
        await self.watcher.start()
        # The watcher's first look at the file, which catches a change made before it started.
        await wait_for(lambda: self.checks > 0, 5, "the watcher's start-up check")
        return self

    async def _on_change(self, data: bytes | None) -> None:
        self.checks += 1
        await self.runtime.reload(data, trigger="file changed")

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.runtime.stop()

    def events(self, kind: EventKind) -> list[str]:
        return [e.message for e in self.state.recent_events() if e.kind is kind]

    def up(self, *names: str) -> bool:
        role = Role.SERVER if self.roles.server else Role.CLIENT
        snap = self.state.snapshot()
        return all(
            (s := snap.service(role, n)) is not None and s.state is ControlState.UP for n in names
        )


async def greeted_visitor(
    port: int, greeting: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A visitor on ``port`` that has had ``greeting`` echoed back, and stays open."""
    visitor = await asyncio.open_connection("127.0.0.1", port)
    visitor[1].write(greeting)
    assert await asyncio.wait_for(visitor[0].readexactly(len(greeting)), 5) == greeting
    return visitor


@contextlib.asynccontextmanager
async def echoes(*names: str) -> AsyncIterator[dict[str, Echo]]:
    services = {name: await Echo().start() for name in names}
    try:
        yield services
    finally:
        for echo in services.values():
            echo.close()


@contextlib.asynccontextmanager
async def sides(
    tmp_path: Path, server_text: str, client_text: str
) -> AsyncIterator[tuple[Side, Side]]:
    server_path = tmp_path / "server.toml"
    client_path = tmp_path / "client.toml"
    server_path.write_text(server_text)
    client_path.write_text(client_text)
    server = await Side(server_path, Roles(server=True, client=False)).start()
    client = None
    try:
        client = await Side(client_path, Roles(server=False, client=True)).start()
        yield server, client
    finally:
        if client is not None:
            await client.stop()
        await server.stop()


# 1. add / change / remove while a stream runs through an untouched service ----------------
class Untouched:
    """Everything that must survive a reload of the other services, for service ``a``."""

    def __init__(self, server: Side, client: Side, echo_a: Echo) -> None:
        srv, cli = server.runtime.server, client.runtime.client
        assert srv is not None and cli is not None
        self.server, self.client, self.echo_a = server, client, echo_a
        self.server_service = srv.services[service_digest("a")]
        self.control = self.server_service.control
        self.relays = set(self.server_service.relays)
        self.client_service = cli.services["a"]
        self.client_relays = set(self.client_service.relays)
        self.accepted = echo_a.accepted
        assert self.control is not None and self.relays and self.client_relays

    def check(self, *, stream_open: bool = True) -> None:
        srv, cli = self.server.runtime.server, self.client.runtime.client
        assert srv is not None and cli is not None
        assert srv.services[service_digest("a")] is self.server_service
        assert self.server_service.control is self.control and not self.control.closed
        assert cli.services["a"] is self.client_service
        if stream_open:
            assert self.relays <= self.server_service.relays, "the server relay was replaced"
            assert self.client_relays <= self.client_service.relays, "the client relay was replaced"
        assert self.client_service.stats.reconnects == 0
        assert self.echo_a.accepted == self.accepted, "the local service saw a new connection"
        for side in (self.server, self.client):
            downs = [
                e
                for e in side.state.recent_events()
                if e.service == "a" and e.kind in (EventKind.CONTROL_DOWN, EventKind.AUTH_FAILED)
            ]
            assert not downs, downs


@pytest.mark.timeout(60)
def test_server_side_add_change_remove_keeps_untouched_stream(tmp_path: Path) -> None:
    control = free_port()
    pa, pb, pc, pc2, pd = (free_port() for _ in range(5))

    async def main() -> None:
        async with echoes("a", "b", "c", "d") as local:
            ports = {n: e.port for n, e in local.items()}
            async with sides(
                tmp_path,
                server_toml(control, {"a": pa, "c": pc, "d": pd}),
                client_toml(control, ports),  # b waits for the server to offer it
            ) as (server, client):
                await wait_for(lambda: server.up("a", "c", "d"), 10, "a, c and d up")
                await wait_roundtrip(pc, 5, "c")
                visitor_d = await greeted_visitor(pd, b"hello d")
                stream = await Stream(pa).start()
                try:
                    await stream.flowing()
                    kept = Untouched(server, client, local["a"])
                    before = len(server.events(EventKind.CONFIG_RELOADED))

                    saved = time.monotonic()
                    save(server.path, server_toml(control, {"a": pa, "b": pb, "c": pc2}))
                    await asyncio.gather(
                        wait_roundtrip(pb, APPLY_WITHIN, "added service b"),
                        wait_roundtrip(pc2, APPLY_WITHIN, "service c on its new port"),
                        wait_refused(pd, APPLY_WITHIN, "removed service d"),
                        wait_refused(pc, APPLY_WITHIN, "service c's old port"),
                    )
                    elapsed = time.monotonic() - saved
                    # The removed service closed its visitor.
                    assert await asyncio.wait_for(visitor_d[0].read(), APPLY_WITHIN) == b""
                    reloads = server.events(EventKind.CONFIG_RELOADED)[before:]
                    assert reloads == [
                        "config reloaded (file changed): server: added b; changed c; removed d"
                    ]
                    await stream.flowing()
                    assert stream.alive
                    kept.check()
                finally:
                    visitor_d[1].close()
                await stream.finish()
                assert stream.received == stream.sent, "bytes of the untouched stream lost"
                assert len(stream.sent) > 64 * 1024
                kept.check(stream_open=False)
        print(f"server-side reload in force after {elapsed:.2f} s")

    run(main())


@pytest.mark.timeout(60)
def test_client_side_add_change_remove_keeps_untouched_stream(tmp_path: Path) -> None:
    control = free_port()
    pa, pb, pc, pd = (free_port() for _ in range(4))

    async def main() -> None:
        async with echoes("a", "b", "c", "c2", "d") as local:
            ports = {n: e.port for n, e in local.items()}
            async with sides(
                tmp_path,
                server_toml(control, {"a": pa, "b": pb, "c": pc, "d": pd}),
                client_toml(control, {"a": ports["a"], "c": ports["c"], "d": ports["d"]}),
            ) as (server, client):
                await wait_for(lambda: client.up("a", "c", "d"), 10, "a, c and d up")
                await wait_for(lambda: server.up("a", "c", "d"), 10, "a, c and d bound")
                await wait_roundtrip(pc, 5, "c")
                assert local["c"].accepted == 1
                visitor_d = await greeted_visitor(pd, b"hello d")
                stream = await Stream(pa).start()
                try:
                    await stream.flowing()
                    kept = Untouched(server, client, local["a"])
                    before = len(client.events(EventKind.CONFIG_RELOADED))

                    saved = time.monotonic()
                    save(
                        client.path,
                        client_toml(control, {"a": ports["a"], "b": ports["b"], "c": ports["c2"]}),
                    )
                    await asyncio.gather(
                        wait_roundtrip(pb, APPLY_WITHIN, "added service b"),
                        wait_refused(pd, APPLY_WITHIN, "removed service d"),
                        wait_for(
                            lambda: (
                                client.up("c")
                                and client.runtime.client is not None
                                and client.runtime.client.services["c"].cfg.local_addr.endswith(
                                    f":{ports['c2']}"
                                )
                            ),
                            APPLY_WITHIN,
                            "c to reconnect with its new local_addr",
                        ),
                    )
                    assert await asyncio.wait_for(visitor_d[0].read(), APPLY_WITHIN) == b""
                    await wait_roundtrip(pc, APPLY_WITHIN, "service c")
                    elapsed = time.monotonic() - saved
                    assert local["c2"].accepted >= 1 and local["c"].accepted == 1
                    reloads = client.events(EventKind.CONFIG_RELOADED)[before:]
                    assert reloads == [
                        "config reloaded (file changed): client: added b; changed c; removed d"
                    ]
                    await stream.flowing()
                    assert stream.alive
                    kept.check()
                finally:
                    visitor_d[1].close()
                await stream.finish()
                assert stream.received == stream.sent, "bytes of the untouched stream lost"
                kept.check(stream_open=False)
        print(f"client-side reload in force after {elapsed:.2f} s")

    run(main())


# 2. a change of [server]/[client] keys restarts the role ------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["server", "client"])
def test_top_level_change_restarts_role(tmp_path: Path, role: str) -> None:
    control, pa = free_port(), free_port()

    async def main() -> None:
        async with (
            echoes("a") as local,
            sides(
                tmp_path,
                server_toml(control, {"a": pa}),
                client_toml(control, {"a": local["a"].port}),
            ) as (server, client),
        ):
            await wait_roundtrip(pa, 10, "a")
            stream = await Stream(pa).start()
            await stream.flowing()
            old_server, old_client = server.runtime.server, client.runtime.client
            if role == "server":
                new = parse_config(
                    server_toml(control, {"a": pa}, heartbeat_interval=7), str(server.path)
                )
                result = await server.runtime.apply(new, trigger="test")
            else:
                new = parse_config(
                    client_toml(control, {"a": local["a"].port}, heartbeat_timeout=50),
                    str(client.path),
                )
                result = await client.runtime.apply(new, trigger="test")
            assert result.applied
            assert result.message == (
                f"config reloaded (test): {role}: restarted ([{role}] keys or transport changed)"
            )
            # As rathole does: the role's channels and visitors are dropped, then it comes
            # back with the new settings.
            await wait_for(lambda: not stream.alive, 5, "the stream to be cut")
            stream.cancel()
            await wait_roundtrip(pa, 5, "a after the restart")
            if role == "server":
                assert server.runtime.server is not old_server
                assert server.runtime.server.cfg.heartbeat_interval == 7
                assert client.runtime.client is old_client
            else:
                assert client.runtime.client is not old_client
                assert client.runtime.client.cfg.heartbeat_timeout == 50
                assert server.runtime.server is old_server

    run(main())


@pytest.mark.timeout(60)
def test_restart_to_busy_bind_addr_is_refused_and_nothing_drops(tmp_path: Path) -> None:
    control, pa = free_port(), free_port()

    async def main() -> None:
        async with (
            echoes("a") as local,
            echoes("busy") as busy,
            sides(
                tmp_path,
                server_toml(control, {"a": pa}),
                client_toml(control, {"a": local["a"].port}),
            ) as (server, client),
        ):
            await wait_for(lambda: server.up("a"), 10, "a up")
            stream = await Stream(pa).start()
            await stream.flowing()
            kept = Untouched(server, client, local["a"])
            old_server = server.runtime.server
            text = server_toml(control, {"a": pa}).replace(
                f"127.0.0.1:{control}", f"127.0.0.1:{busy['busy'].port}"
            )
            result = await server.runtime.apply(parse_config(text, str(server.path)))
            assert not result.applied
            assert f"cannot listen at 127.0.0.1:{busy['busy'].port}" in result.message
            assert server.events(EventKind.CONFIG_REFUSED) == [result.message]
            assert server.runtime.server is old_server
            await stream.flowing()
            kept.check()
            await stream.finish()
            assert stream.received == stream.sent

    run(main())


# 3. a broken save keeps the tunnel up; the next good one is applied -------------------------
@pytest.mark.timeout(60)
def test_broken_save_is_refused_and_next_good_save_applied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ratui")
    control, pa, pb = free_port(), free_port(), free_port()

    async def main() -> None:
        async with echoes("a", "b") as local:
            ports = {n: e.port for n, e in local.items()}
            good = server_toml(control, {"a": pa})
            async with sides(tmp_path, good, client_toml(control, ports)) as (server, client):
                await wait_for(lambda: server.up("a"), 10, "a up")
                stream = await Stream(pa).start()
                await stream.flowing()
                kept = Untouched(server, client, local["a"])
                path = str(server.path)

                # TOML syntax error: file and line in the event and the log.
                save(server.path, good + "[server.services.b\nbind_addr = 1\n")
                await wait_for(
                    lambda: server.events(EventKind.CONFIG_REFUSED), APPLY_WITHIN, "refusal"
                )
                syntax = server.events(EventKind.CONFIG_REFUSED)[-1]
                assert syntax.startswith(
                    "new config refused (file changed), still running the previous one: "
                    f"{path}: line 6, column "
                ), syntax
                assert "invalid TOML" in syntax
                assert syntax in caplog.text

                # Schema error: file, table and key.
                save(
                    server.path,
                    good + '[server.services.b]\nbind_addr = "127.0.0.1"\n',
                )
                await wait_for(
                    lambda: len(server.events(EventKind.CONFIG_REFUSED)) == 2,
                    APPLY_WITHIN,
                    "second refusal",
                )
                schema = server.events(EventKind.CONFIG_REFUSED)[-1]
                assert f'{path}: [server.services.b] bind_addr: expected "host:port"' in schema
                assert schema in caplog.text

                await stream.flowing()
                kept.check()
                assert server.runtime.config.server is not None
                assert list(server.runtime.config.server.services) == ["a"]

                # The fix is applied.
                save(server.path, server_toml(control, {"a": pa, "b": pb}))
                await wait_roundtrip(pb, APPLY_WITHIN + 1.5, "b after the fix")
                assert server.events(EventKind.CONFIG_RELOADED)[-1] == (
                    "config reloaded (file changed): server: added b"
                )
                await stream.flowing()
                kept.check()
                await stream.finish()
                assert stream.received == stream.sent

    run(main())


@pytest.mark.timeout(30)
def test_apply_refuses_a_config_without_the_running_role(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "server.toml"
        path.write_text(server_toml(free_port(), {"a": free_port()}))
        runtime = Runtime(load_config(path), Roles(server=True, client=False))
        await runtime.start()
        try:
            old = runtime.config
            new = parse_config(client_toml(free_port(), {"a": free_port()}), str(path))
            result = await runtime.apply(new)
            assert not result.applied
            assert result.message.endswith(
                f"{path}: [server]: missing, required to run as a server"
            )
            assert runtime.config is old
            # The same config again: applied, nothing to do, a quiet event.
            same = await runtime.apply(load_config(path))
            assert same.applied and same.diff is not None and same.diff.unchanged
            assert runtime.state.recent_events()[-1].kind is EventKind.CONFIG_RELOADED
        finally:
            await runtime.stop()

    run(main())


# 4. the watcher sees every way of saving a file --------------------------------------------
def _rename_over(path: Path, text: str) -> None:
    save(path, text)


def _in_place(path: Path, text: str) -> None:
    with open(path, "r+") as f:  # truncate and write the same inode, as `>` or nano do
        f.truncate(0)
        f.write(text)


def _cp(path: Path, text: str) -> None:
    src = path.with_name("incoming.toml")
    src.write_text(text)
    shutil.copyfile(src, path)


def _mv(path: Path, text: str) -> None:
    src = path.parent / "elsewhere" / "new.toml"
    src.parent.mkdir(exist_ok=True)
    src.write_text(text)
    shutil.move(src, path)


def _delete_then_create(path: Path, text: str) -> None:
    path.unlink()
    time.sleep(0.02)
    path.write_text(text)


def _symlink_swap(path: Path, text: str) -> None:
    """config.toml -> v1.toml becomes config.toml -> v2.toml (ln -sfn, atomically)."""
    target = path.with_name("v2.toml")
    target.write_text(text)
    tmp = path.with_name("config.toml.lnk")
    os.symlink(target.name, tmp)
    os.replace(tmp, path)


def _k8s_data_swap(path: Path, text: str) -> None:
    """A Kubernetes ConfigMap update: a new timestamped directory, ..data swapped to it."""
    new_dir = path.parent / "..2024_02_01"
    new_dir.mkdir()
    (new_dir / path.name).write_text(text)
    tmp = path.parent / "..data_tmp"
    os.symlink(new_dir.name, tmp)
    os.replace(tmp, path.parent / "..data")
    shutil.rmtree(path.parent / "..2024_01_01")


def _layout(tmp_path: Path, style: str, text: str) -> Path:
    """The config file as that style of deployment has it."""
    path = tmp_path / "config.toml"
    if style == "symlink_swap":
        (tmp_path / "v1.toml").write_text(text)
        os.symlink("v1.toml", path)
    elif style == "k8s_data_swap":
        (tmp_path / "..2024_01_01").mkdir()
        (tmp_path / "..2024_01_01" / "config.toml").write_text(text)
        os.symlink("..2024_01_01", tmp_path / "..data")
        os.symlink("..data/config.toml", path)
    else:
        path.write_text(text)
    return path


SAVE_STYLES = {
    "rename_over": _rename_over,
    "in_place": _in_place,
    "cp": _cp,
    "mv": _mv,
    "delete_then_create": _delete_then_create,
    "symlink_swap": _symlink_swap,
    "k8s_data_swap": _k8s_data_swap,
}


async def _watch(path: Path, mode: WatchMode, **kwargs: Any) -> tuple[ConfigWatcher, asyncio.Queue]:
    seen: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def on_change(data: bytes | None) -> None:
        await seen.put(data)

    watcher = ConfigWatcher(path, on_change, mode=mode, **kwargs)
    await watcher.start()
    return watcher, seen


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", [WatchMode.EVENTS, WatchMode.POLL])
@pytest.mark.parametrize("style", list(SAVE_STYLES))
def test_watcher_sees_save_style(tmp_path: Path, style: str, mode: WatchMode) -> None:
    old_text, new_text = "version = 1\n", "version = 2\n" + "x = 1\n" * 200

    async def main() -> None:
        path = _layout(tmp_path, style, old_text)
        # Events only: polling so slow that it cannot be what sees the change; or polling only.
        interval = 60.0 if mode is WatchMode.EVENTS else 0.25
        watcher, seen = await _watch(path, mode, poll_interval=interval)
        try:
            assert await asyncio.wait_for(seen.get(), 5) == old_text.encode()  # start-up check
            await asyncio.sleep(0.1)
            saved = time.monotonic()
            await asyncio.to_thread(SAVE_STYLES[style], path, new_text)
            got = await asyncio.wait_for(seen.get(), APPLY_WITHIN)
            if got is None:  # delete-then-create may be seen while the file is missing
                got = await asyncio.wait_for(seen.get(), APPLY_WITHIN)
            assert got == new_text.encode()
            elapsed = time.monotonic() - saved
            # One change, one callback: nothing more comes for the same content.
            await asyncio.sleep(0.6 if mode is WatchMode.EVENTS else 0.8)
            assert seen.empty()
            # And the next change after that is seen too (a swapped symlink is followed).
            await asyncio.to_thread(_in_place, path, "version = 3\n")
            assert await asyncio.wait_for(seen.get(), APPLY_WITHIN) == b"version = 3\n"
        finally:
            await watcher.stop()
        print(f"{style}/{mode}: seen after {elapsed:.2f} s")

    run(main())


@pytest.mark.timeout(30)
def test_watcher_debounces_a_burst(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "config.toml"
        path.write_text("n = 0\n")
        watcher, seen = await _watch(path, WatchMode.EVENTS, poll_interval=60.0)
        try:
            assert await asyncio.wait_for(seen.get(), 5) == b"n = 0\n"
            for n in range(1, 31):  # 30 writes, 5 ms apart
                await asyncio.to_thread(_in_place, path, f"n = {n}\n" * n)
                await asyncio.sleep(0.005)
            assert await asyncio.wait_for(seen.get(), APPLY_WITHIN) == b"n = 30\n" * 30
            await asyncio.sleep(0.5)
            assert seen.empty()
        finally:
            await watcher.stop()

    run(main())


@pytest.mark.timeout(30)
def test_watcher_falls_back_to_polling_when_events_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ratui.engine import watcher

    def no_events(*_args: object, **_kwargs: object) -> AsyncIterator[object]:
        async def gen() -> AsyncIterator[object]:
            raise OSError("OS file watch limit reached")
            yield  # pragma: no cover

        return gen()

    monkeypatch.setattr(watcher, "directory_changes", no_events)
    caplog.set_level(logging.WARNING, logger="ratui")

    async def main() -> None:
        path = tmp_path / "config.toml"
        path.write_text("a = 1\n")
        watcher, seen = await _watch(path, WatchMode.AUTO, poll_interval=0.25)
        try:
            assert await asyncio.wait_for(seen.get(), 5) == b"a = 1\n"
            save(path, "a = 2\n")
            assert await asyncio.wait_for(seen.get(), APPLY_WITHIN) == b"a = 2\n"
        finally:
            await watcher.stop()

    run(main())
    assert "OS file watch limit reached" in caplog.text
    assert "polling it every 0.25 s instead" in caplog.text


@pytest.mark.timeout(30)
def test_watcher_never_hands_over_a_half_written_file(tmp_path: Path) -> None:
    """A slow in-place writer: the first half sits on disk for a while before the rest."""

    async def main() -> None:
        path = tmp_path / "config.toml"
        path.write_text("start\n")
        watcher, seen = await _watch(path, WatchMode.POLL, poll_interval=0.3, debounce=0.1)
        try:
            assert await asyncio.wait_for(seen.get(), 5) == b"start\n"
            full = b"".join(b"line %d\n" % i for i in range(4000))
            with open(path, "r+b") as f:  # ~40 chunks, 30 ms apart: 1.2 s of writing
                f.truncate(0)
                for i in range(0, len(full), 1024):
                    f.write(full[i : i + 1024])
                    f.flush()
                    await asyncio.sleep(0.03)
            got = await asyncio.wait_for(seen.get(), APPLY_WITHIN)
            assert got == full, f"handed over {len(got or b'')} of {len(full)} bytes"
        finally:
            await watcher.stop()

    run(main())


# 5. SIGHUP and the headless wiring, in real processes --------------------------------------
def _hup_setup(tmp_path: Path, procs: Procs, env: dict[str, str]) -> tuple[Any, ...]:
    control = free_port()
    pa, pb = free_port(), free_port()
    local_a, local_b = EchoThread(), EchoThread()
    server_cfg = tmp_path / "server.toml"
    server_cfg.write_text(server_toml(control, {"a": pa}))
    client_cfg = tmp_path / "client.toml"
    client_cfg.write_text(client_toml(control, {"a": local_a.port, "b": local_b.port}))
    server = procs.ratui("--server", str(server_cfg), env=env)
    wait_port(control)
    server.wait_for_output("Reloading")
    client = procs.ratui("--client", str(client_cfg), env={"RATUI_WATCH": "off"})
    wait_port(pa)
    return server, client, server_cfg, control, pa, pb, (local_a, local_b)


class EchoThread:
    """A tiny blocking echo service for the process tests."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def _wait_roundtrip_sync(port: int, timeout: float) -> float:
    payload = random.randbytes(4096)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(OSError):
            if roundtrip(port, payload, timeout=1.0) == payload:
                return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"no roundtrip through port {port} in {timeout} s")


@pytest.mark.timeout(60)
def test_sighup_reloads_at_once(tmp_path: Path, procs: Procs) -> None:
    # The watcher is off: only SIGHUP can make this server notice the new file.
    server, _client, cfg, control, pa, pb, local = _hup_setup(
        tmp_path, procs, {"RATUI_WATCH": "off"}
    )
    try:
        _wait_roundtrip_sync(pa, 10)
        cfg.write_text(server_toml(control, {"a": pa, "b": pb}))
        time.sleep(1.0)
        assert "config reloaded" not in server.output()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", pb), timeout=1).close()

        sent = time.monotonic()
        server.popen.send_signal(signal.SIGHUP)
        server.wait_for_output("config reloaded (SIGHUP): server: added b", timeout=APPLY_WITHIN)
        took = _wait_roundtrip_sync(pb, 5) + (time.monotonic() - sent)
        print(f"SIGHUP: b reachable {took:.2f} s after the signal")

        # A broken file and SIGHUP: refused, reported, nothing stops.
        cfg.write_text("[server]\nbind_addr = \n")
        server.popen.send_signal(signal.SIGHUP)
        server.wait_for_output(
            f"new config refused (SIGHUP), still running the previous one: {cfg}: line 2",
            timeout=APPLY_WITHIN,
        )
        assert server.popen.poll() is None
        _wait_roundtrip_sync(pa, 5)
        _wait_roundtrip_sync(pb, 5)
    finally:
        for echo in local:
            echo.close()


@pytest.mark.timeout(60)
def test_ratui_process_watches_its_config(tmp_path: Path, procs: Procs) -> None:
    """``ratui server.toml`` with the default watch mode applies an editor's save by itself."""
    server, _client, cfg, control, pa, pb, local = _hup_setup(tmp_path, procs, {})
    try:
        _wait_roundtrip_sync(pa, 10)
        saved = time.monotonic()
        save(cfg, server_toml(control, {"a": pa, "b": pb}))
        server.wait_for_output(
            "config reloaded (file changed): server: added b", timeout=APPLY_WITHIN
        )
        took = _wait_roundtrip_sync(pb, 5) + (time.monotonic() - saved)
        print(f"watched save: b reachable {took:.2f} s after the save")
        save(cfg, f'[server]\nbind_addr = "127.0.0.1:{control}"\n')
        server.wait_for_output("[server] services: missing (required)", timeout=APPLY_WITHIN)
        assert "new config refused (file changed)" in server.output()
        assert server.popen.poll() is None
        _wait_roundtrip_sync(pa, 5)
    finally:
        for echo in local:
            echo.close()


def test_watch_mode_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ratui import headless

    monkeypatch.delenv(headless.WATCH_ENV, raising=False)
    assert headless.watch_mode() is WatchMode.AUTO
    monkeypatch.setenv(headless.WATCH_ENV, "POLL")
    assert headless.watch_mode() is WatchMode.POLL
    monkeypatch.setenv(headless.WATCH_ENV, "sometimes")
    assert headless.watch_mode() is WatchMode.AUTO


def test_engine_does_not_import_the_ui() -> None:
    code = (
        "import sys, ratui.engine.runtime, ratui.engine.watcher; "
        "print([m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
