"""The client side of the control socket.

:class:`RemoteState` reads a running daemon through the same interface as
:class:`~ratui.engine.state.EngineState` (``snapshot()``, ``subscribe()``,
``recent_events()``), rebuilt into the same frozen dataclasses, so the dashboard cannot tell
an attached daemon from an engine in its own process; config changes go to the daemon with
:meth:`RemoteState.apply` and :meth:`RemoteState.reload`, which return the engine's
:class:`~ratui.engine.runtime.ApplyResult`.

:class:`Connection` is one socket connection (requests by id, pushes to a callback) and
:func:`query` a one-shot request, for ``ratui status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .control import MAX_LINE, PROTOCOL_VERSION, ProtocolError, decode, encode, from_wire
from .engine.config import ConfigDiff
from .engine.runtime import ApplyResult, Roles
from .engine.state import (
    ControlState,
    Event,
    EventKind,
    Level,
    ServiceSnapshot,
    Snapshot,
    Subscription,
)

log = logging.getLogger("ratui.remote")

REQUEST_TIMEOUT = 10.0  # seconds for a quick request (hello, snapshot, events)
APPLY_TIMEOUT = 60.0  # seconds for apply and reload: a server restart rebinds its ports
POLL_INTERVAL = 0.5  # seconds between two snapshots, as the dashboard polls
RECONNECT_INTERVAL = 1.0  # seconds between two tries to reach a daemon that went away


class RemoteError(Exception):
    """The daemon cannot be reached, or refused the connection."""


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """What a daemon says about itself in answer to ``hello``."""

    protocol: int
    version: str
    pid: int
    started_at: float
    source: str
    roles: Roles

    @classmethod
    def from_hello(cls, result: dict[str, Any]) -> DaemonInfo:
        roles = result.get("roles") or {}
        try:
            return cls(
                protocol=int(result["protocol"]),
                version=str(result["version"]),
                pid=int(result["pid"]),
                started_at=float(result["started_at"]),
                source=str(result["source"]),
                roles=Roles(server=bool(roles.get("server")), client=bool(roles.get("client"))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"hello: bad answer ({exc})") from None


class Connection:
    """One connection to a daemon's control socket."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_push: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.on_push = on_push
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closed = asyncio.Event()
        self.error: Exception | None = None
        self._read_task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        on_push: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Connection:
        """Connect; RemoteError (saying why, in words) if nothing serves ``path``."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(os.fspath(path), limit=MAX_LINE), timeout
            )
        except FileNotFoundError:
            raise RemoteError(f"no ratui daemon at {path} (no such socket)") from None
        except ConnectionRefusedError:
            raise RemoteError(f"no ratui daemon at {path} (connection refused)") from None
        except PermissionError:
            raise RemoteError(
                f"{path}: permission denied (the daemon runs as another user)"
            ) from None
        except TimeoutError:
            raise RemoteError(f"{path}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise RemoteError(f"{path}: {exc.strerror or exc}") from None
        return cls(reader, writer, on_push)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _read(self) -> None:
        try:
            while True:
                try:
                    line = await self._reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    raise ConnectionResetError("the daemon closed the connection") from None
                message = decode(line)
                request_id = message.get("id")
                if "push" in message:
                    if self.on_push is not None:
                        self.on_push(message)
                elif request_id in self._pending:
                    future = self._pending.pop(request_id)
                    if not future.done():
                        future.set_result(message)
                elif not message.get("ok", True):  # refused before any request (forbidden)
                    error = message.get("error") or {}
                    raise ProtocolError(
                        str(error.get("message", "refused")), str(error.get("code", "refused"))
                    )
        except asyncio.CancelledError:
            self.error = ConnectionResetError("closed")
            raise
        except (OSError, ProtocolError, asyncio.LimitOverrunError, ValueError) as exc:
            self.error = exc
        finally:
            self._closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._lost())
            self._pending.clear()
            self._writer.close()

    def _lost(self) -> Exception:
        if isinstance(self.error, ProtocolError) and self.error.code == "forbidden":
            return RemoteError(f"the daemon refused this connection: {self.error}")
        return RemoteError(f"lost the connection to the daemon: {self.error or 'closed'}")

    async def request(
        self, op: str, *, timeout: float = REQUEST_TIMEOUT, **args: Any
    ) -> dict[str, Any]:
        """Send one request and wait for its answer's ``result``; ProtocolError (with the
        daemon's code) for an error answer, RemoteError if the connection is lost."""
        if self.closed:
            raise self._lost()
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            self._writer.write(encode({"id": request_id, "op": op, **args}))
            await self._writer.drain()
            reply = await asyncio.wait_for(future, timeout)
        except (ConnectionError, BrokenPipeError):
            raise self._lost() from None
        except TimeoutError:
            raise RemoteError(f"{op}: no answer from the daemon within {timeout:g} s") from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise ProtocolError(str(error.get("message", "")), str(error.get("code", "error")))
        result = reply.get("result")
        return result if isinstance(result, dict) else {}

    async def hello(self) -> DaemonInfo:
        info = DaemonInfo.from_hello(await self.request("hello"))
        if info.protocol != PROTOCOL_VERSION:
            raise RemoteError(
                f"the daemon speaks control protocol {info.protocol}, this ratui "
                f"{PROTOCOL_VERSION}: use the same ratui version on both ends"
            )
        return info

    async def close(self) -> None:
        self._read_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._read_task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1)


async def query(path: str | os.PathLike[str], op: str, **args: Any) -> dict[str, Any]:
    """Connect, ask one thing, disconnect."""
    connection = await Connection.open(path)
    try:
        return await connection.request(op, **args)
    finally:
        await connection.close()


def apply_result(result: dict[str, Any]) -> ApplyResult:
    diff = result.get("diff")
    message = str(result.get("message", ""))
    if result.get("saved") is False:
        message += f"; not saved: {result.get('save_error', 'cannot write the file')}"
    return ApplyResult(
        applied=bool(result.get("applied")),
        diff=from_wire(ConfigDiff, diff) if diff is not None else None,
        message=message,
    )


class RemoteState:
    """A running daemon's state, read over its control socket, with EngineState's read
    interface. :meth:`connect` (in the loop that will read it) before use, :meth:`close`
    after. While connected it keeps the latest snapshot (fetched every ``poll_interval``)
    and the event history; when the daemon goes away the services show as stopped, an event
    says so, and it reconnects when the daemon is back (with ``reconnect``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        poll_interval: float = POLL_INTERVAL,
        history: int = 1000,
        reconnect: bool = True,
    ) -> None:
        self.path = Path(path)
        self.poll_interval = poll_interval
        self.reconnect = reconnect
        self.info: DaemonInfo | None = None
        self._connection: Connection | None = None
        self._snapshot = Snapshot(time.time(), ())
        self._history: deque[Event] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()
        self._seq = itertools.count(1)
        self._last_remote: tuple[int, float, int] | None = None  # (pid, started_at, seq)
        self._held: list[dict[str, Any]] | None = None  # pushes before the backlog is in
        self._remote_dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = False
        self.polls = 0  # snapshots received, for tests and "is it live" checks

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> DaemonInfo:
        """Reach the daemon and start following it; RemoteError if it cannot be reached."""
        connection = await self._open()
        self._task = asyncio.get_running_loop().create_task(self._follow(connection))
        assert self.info is not None
        return self.info

    async def close(self) -> None:
        """Stop following the daemon; the daemon keeps running."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
        self.connected = False

    async def _open(self, again: bool = False) -> Connection:
        connection = await Connection.open(self.path, self._on_push)
        try:
            info = await connection.hello()
            self._held = []
            subscribed = await connection.request("subscribe")
            snapshot = await connection.request("snapshot")
        except BaseException:
            await connection.close()
            raise
        same = self.info is not None and (info.pid, info.started_at) == (
            self.info.pid,
            self.info.started_at,
        )
        if not same:
            self._last_remote = None
            self._remote_dropped = 0
        self.info = info
        self._connection = connection
        self._snapshot = from_wire(Snapshot, snapshot.get("snapshot"))
        self.polls += 1
        self.connected = True
        if again:
            self._local(
                EventKind.CONFIG_LOADED,
                f"attached again to the ratui daemon (pid {info.pid}) at {self.path}",
                Level.INFO,
            )
        for item in subscribed.get("backlog") or []:
            self._receive(item, 0)
        held, self._held = self._held, None
        for message in held or []:
            self._receive(message.get("event"), message.get("dropped", 0))
        return connection

    async def _follow(self, connection: Connection) -> None:
        while True:
            await self._poll(connection)
            self.connected = False
            if self._closing or not self.reconnect:
                return
            self._local(
                EventKind.ERROR,
                f"lost the ratui daemon at {self.path}: {connection.error or 'closed'}; "
                "reconnecting",
                Level.ERROR,
            )
            await connection.close()
            self._connection = None
            while True:
                await asyncio.sleep(RECONNECT_INTERVAL)
                try:
                    connection = await self._open(again=True)
                except (RemoteError, ProtocolError, OSError):
                    continue
                break

    async def _poll(self, connection: Connection) -> None:
        """Fetch a snapshot every poll_interval until the connection is lost."""
        while not connection.closed:
            closed = asyncio.ensure_future(connection.wait_closed())
            try:
                await asyncio.wait_for(asyncio.shield(closed), self.poll_interval)
            except TimeoutError:
                pass
            finally:
                closed.cancel()
            if connection.closed:
                return
            try:
                result = await connection.request("snapshot")
                self._snapshot = from_wire(Snapshot, result.get("snapshot"))
                self.polls += 1
            except (RemoteError, ProtocolError) as exc:
                if connection.closed:
                    return
                log.debug("snapshot from the daemon failed: %s", exc)

    # ------------------------------------------------------------------ events

    def _on_push(self, message: dict[str, Any]) -> None:
        if message.get("push") != "event":
            return
        if self._held is not None:
            self._held.append(message)
            return
        self._receive(message.get("event"), message.get("dropped", 0))

    def _receive(self, data: Any, dropped: Any) -> None:
        try:
            event = from_wire(Event, data)
        except ProtocolError as exc:
            log.debug("unreadable event from the daemon: %s", exc)
            return
        assert self.info is not None
        key = (self.info.pid, self.info.started_at)
        last = self._last_remote
        if last is not None and last[:2] == key and event.seq <= last[2]:
            return  # seen before a reconnect
        self._last_remote = (*key, event.seq)
        if isinstance(dropped, int) and dropped > self._remote_dropped:
            for sub in self._subscribers:
                sub.dropped += dropped - self._remote_dropped
            self._remote_dropped = dropped
        self._publish(dataclasses.replace(event, seq=next(self._seq)))

    def _local(self, kind: EventKind, message: str, level: Level) -> None:
        self._publish(Event(next(self._seq), time.time(), kind, level, message))

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        for sub in self._subscribers:
            sub._push(event)

    @property
    def started_at(self) -> float:
        """When the daemon started (its ``hello``; again after a reconnect), for the uptime
        the dashboard shows: the daemon's, as ``ratui status`` gives it, not the attach's."""
        assert self.info is not None, "connect() first"
        return self.info.started_at

    # ------------------------------------------------------------------ EngineState's interface

    def snapshot(self) -> Snapshot:
        """The latest snapshot; while the daemon is away, its services as stopped."""
        if self.connected:
            return self._snapshot
        return Snapshot(
            time.time(),
            tuple(_stopped(s) for s in self._snapshot.services),
        )

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)  # type: ignore[arg-type]  # same duck-typed owner
        self._subscribers.add(sub)
        return sub

    def recent_events(self) -> tuple[Event, ...]:
        return tuple(self._history)

    # ------------------------------------------------------------------ changes

    def _live(self) -> Connection:
        if self._connection is None or self._connection.closed:
            raise RemoteError(f"not connected to the ratui daemon at {self.path}")
        return self._connection

    async def refresh(self) -> Snapshot:
        """Fetch a snapshot now rather than at the next poll."""
        result = await self._live().request("snapshot")
        self._snapshot = from_wire(Snapshot, result.get("snapshot"))
        self.polls += 1
        return self._snapshot

    async def apply(self, text: str, *, persist: bool = False) -> ApplyResult:
        """Have the daemon apply ``text`` as its config (its hot reload path); with
        ``persist`` it also saves it to its config file. Like :meth:`Runtime.apply` it never
        raises: a daemon that cannot be reached gives a refused result saying so."""
        return await self._change("apply", toml=text, persist=persist)

    async def reload(self, *, trigger: str = "reload") -> ApplyResult:
        """Have the daemon read its config file again. ``trigger`` is accepted for
        :meth:`Runtime.reload`'s signature; the daemon names the caller itself."""
        return await self._change("reload")

    async def _change(self, op: str, **args: Any) -> ApplyResult:
        try:
            result = await self._live().request(op, timeout=APPLY_TIMEOUT, **args)
        except (RemoteError, ProtocolError) as exc:
            return ApplyResult(False, None, f"{op} not done: {exc}")
        return apply_result(result)

    async def config_text(self) -> str:
        """The text of the daemon's config file."""
        return str((await self._live().request("config")).get("text", ""))


def _stopped(service: ServiceSnapshot) -> ServiceSnapshot:
    return dataclasses.replace(
        service, state=ControlState.STOPPED, rx_rate=0.0, tx_rate=0.0, visitors_open=0, visitors=()
    )
