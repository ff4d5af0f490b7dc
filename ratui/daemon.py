"""The daemon's control socket: a Unix socket that serves the engine's state snapshot, its
event stream and config changes to ``ratui attach``, ``ratui status`` and other tools.

The wire format is in :mod:`ratui.control`. Only the daemon's own user (and root) may talk to
it: the socket is created ``0600`` in a ``0700`` directory when ratui makes the directory, and
each connection's peer is checked with ``SO_PEERCRED`` (``LOCAL_PEERCRED`` on macOS) before a
single byte is read, so a socket placed in a shared directory is still refused to others.

A daemon holds an exclusive lock (``control.sock.lock``) for as long as it serves the socket,
so a second daemon started with the same path leaves the first one's socket alone and runs
without one; a socket left behind by a killed daemon is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from . import __version__
from .control import MAX_LINE, OPS, PROTOCOL_VERSION, ProtocolError, decode, encode, to_wire
from .engine.config import ConfigError, parse_config
from .engine.runtime import ApplyResult, Runtime
from .engine.state import Subscription
from .setup.files import write_secret_file

log = logging.getLogger("ratui.daemon")

MAX_CLIENTS = 64  # connections served at once; more are refused with "busy"
MAX_IN_FLIGHT = 8  # requests of one connection being answered at once
EVENT_BATCH = 256  # events written between two drains


class ControlSocketInUse(Exception):
    """Another live daemon serves this path."""


class ControlServer:
    """Serves one :class:`Runtime` on a Unix socket until :meth:`stop`."""

    def __init__(self, runtime: Runtime, path: str | os.PathLike[str]) -> None:
        self.runtime = runtime
        self.path = Path(path)
        self.started_at = time.time()
        self._server: asyncio.AbstractServer | None = None
        self._lock_fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.refused = 0  # connections refused because of their user

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind the socket; ControlSocketInUse if another daemon holds it, OSError if the
        directory cannot be made or the path is not usable."""
        _private_dir(self.path.parent)
        self._lock_fd = _take_lock(Path(f"{self.path}.lock"))
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left behind by a daemon that was killed
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                old_umask = os.umask(0o177)  # never world-connectable, not even for an instant
                try:
                    sock.bind(os.fspath(self.path))
                finally:
                    os.umask(old_umask)
                os.chmod(self.path, 0o600)
                sock.listen(16)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=MAX_LINE)
        except BaseException:
            self._release_lock()
            raise
        log.info("Control socket at %s", self.path)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)
        if self._inode is not None:
            # Only our own socket: a later daemon may have replaced it already.
            with contextlib.suppress(OSError):
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self._inode:
                    self.path.unlink()
            self._inode = None
        self._release_lock()

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    @property
    def clients(self) -> int:
        return len(self._connections)

    # ------------------------------------------------------------------ connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid = peer_credentials(sock) if sock is not None else (None, None)
        if not peer_allowed(uid):
            self.refused += 1
            log.warning(
                "Control socket: refused a connection from uid %s (pid %s): only uid %d may "
                "connect",
                uid,
                pid,
                os.geteuid(),
            )
            writer.write(
                encode(
                    {
                        "ok": False,
                        "error": {
                            "code": "forbidden",
                            "message": f"uid {uid} may not use this daemon's control socket",
                        },
                    }
                )
            )
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), 1)
            return
        if len(self._connections) > MAX_CLIENTS:
            writer.write(
                encode({"ok": False, "error": {"code": "busy", "message": "too many clients"}})
            )
            return
        session = _Session(self, writer, pid)
        try:
            await session.run(reader)
        finally:
            session.close()


class _Session:
    """One client connection: requests answered concurrently, events pushed when subscribed."""

    def __init__(self, server: ControlServer, writer: asyncio.StreamWriter, pid: int | None):
        self.server = server
        self.runtime = server.runtime
        self.writer = writer
        self.pid = pid
        self.subscription: Subscription | None = None
        self.pusher: asyncio.Task[None] | None = None
        self.requests: set[asyncio.Task[None]] = set()
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @property
    def who(self) -> str:
        return f"control socket, pid {self.pid}" if self.pid else "control socket"

    async def run(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return  # the client left
            except asyncio.LimitOverrunError:
                await self.send({"ok": False, "error": _error("too_long", "line too long")})
                return
            if not line.strip():
                continue
            await self.in_flight.acquire()
            task = asyncio.get_running_loop().create_task(self.answer(line))
            self.requests.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.requests.discard(task)
        self.in_flight.release()

    def close(self) -> None:
        for task in self.requests:
            task.cancel()
        self.unsubscribe()

    async def send(self, message: dict[str, Any]) -> None:
        self.writer.write(encode(message))
        await self.writer.drain()

    async def answer(self, line: bytes) -> None:
        request_id: Any = None
        try:
            request = decode(line)
            request_id = request.get("id")
            op = request.get("op")
            handler = getattr(self, f"op_{op}", None) if op in OPS else None
            if handler is None:
                raise ProtocolError(f"unknown op {op!r}; known: {', '.join(OPS)}", "unknown_op")
            result = await handler(request)
        except ProtocolError as exc:
            reply = {"id": request_id, "ok": False, "error": _error(exc.code, str(exc))}
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("Control socket: request failed")
            reply = {"id": request_id, "ok": False, "error": _error("internal", str(exc))}
        else:
            reply = {"id": request_id, "ok": True, "result": result}
        with contextlib.suppress(ConnectionError):
            await self.send(reply)

    # ------------------------------------------------------------------ ops

    async def op_hello(self, request: dict[str, Any]) -> dict[str, Any]:
        roles = self.runtime.roles
        return {
            "protocol": PROTOCOL_VERSION,
            "server": "ratui",
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.server.started_at,
            "source": self.runtime.path,
            "roles": {"server": roles.server, "client": roles.client},
            "ops": list(OPS),
        }

    async def op_snapshot(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"snapshot": to_wire(self.runtime.state.snapshot())}

    async def op_events(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"events": to_wire(self.runtime.state.recent_events())}

    async def op_subscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start pushing events; the result holds every event before the first push, so a
        client sees each event exactly once."""
        if self.subscription is not None:
            raise ProtocolError("already subscribed", "bad_request")
        state = self.runtime.state
        self.subscription = state.subscribe()
        backlog = state.recent_events()  # no await in between: nothing is missed or doubled
        self.pusher = asyncio.get_running_loop().create_task(self._push(self.subscription))
        return {"backlog": to_wire(backlog)}

    async def op_unsubscribe(self, request: dict[str, Any]) -> dict[str, Any]:
        self.unsubscribe()
        return {}

    def unsubscribe(self) -> None:
        if self.pusher is not None:
            self.pusher.cancel()
            self.pusher = None
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None

    async def _push(self, subscription: Subscription) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                events = [await subscription.get()]
                while len(events) < EVENT_BATCH and (e := subscription.get_nowait()) is not None:
                    events.append(e)
                for event in events:
                    self.writer.write(
                        encode(
                            {
                                "push": "event",
                                "event": to_wire(event),
                                "dropped": subscription.dropped,
                            }
                        )
                    )
                await self.writer.drain()  # a slow reader makes its own queue drop, nothing else

    async def op_config(self, request: dict[str, Any]) -> dict[str, Any]:
        path = self.runtime.path
        try:
            text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"cannot read {path}: {exc}", "config") from None
        return {"source": path, "text": text}

    async def op_apply(self, request: dict[str, Any]) -> dict[str, Any]:
        """Parse ``toml`` as the config file's new text and apply it through the hot reload
        path; with ``persist`` the file is then replaced by it (as every config is written:
        :func:`~ratui.setup.files.write_secret_file`), so the change survives a restart."""
        text = request.get("toml")
        if not isinstance(text, str):
            raise ProtocolError("apply needs the config as a string in 'toml'", "bad_request")
        persist = bool(request.get("persist", False))
        trigger = self.who
        try:
            new = parse_config(text, self.runtime.path)
        except ConfigError as exc:
            result = self.runtime.refuse(exc, trigger=trigger)
        else:
            result = await self.runtime.apply(new, trigger=trigger)
        reply = apply_result(result)
        if persist and result.applied:
            try:
                await asyncio.to_thread(
                    write_secret_file, Path(self.runtime.path), text, overwrite=True
                )
            except OSError as exc:
                reply["saved"] = False
                reply["save_error"] = f"cannot write {self.runtime.path}: {exc.strerror or exc}"
                log.error("Control socket: %s", reply["save_error"])
            else:
                reply["saved"] = True
        return reply

    async def op_reload(self, request: dict[str, Any]) -> dict[str, Any]:
        return apply_result(await self.runtime.reload(trigger=self.who))


def apply_result(result: ApplyResult) -> dict[str, Any]:
    return {
        "applied": result.applied,
        "message": result.message,
        "diff": to_wire(result.diff) if result.diff is not None else None,
    }


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


# ---------------------------------------------------------------------------- helpers


def peer_credentials(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the process at the other end of a Unix socket; (None, None) where the
    platform cannot tell."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", creds)
        return pid, uid
    if hasattr(socket, "LOCAL_PEERCRED"):  # macOS, FreeBSD: struct xucred
        creds = sock.getsockopt(0, socket.LOCAL_PEERCRED, struct.calcsize("2Ih16i"))
        _version, uid = struct.unpack_from("2I", creds)
        return None, uid
    return None, None  # pragma: no cover - elsewhere the socket's mode is the only guard


def peer_allowed(uid: int | None, own_uid: int | None = None) -> bool:
    """Only the daemon's own user and root may use the control socket. Where the peer's uid
    cannot be read, the socket's 0600 mode is the guard."""
    if uid is None:
        return sys.platform != "linux"
    own = os.geteuid() if own_uid is None else own_uid
    return uid in (own, 0)


def _private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700) if missing; refuse one that another user owns or can write."""
    missing = []
    for parent in (path, *path.parents):
        if parent.exists():
            break
        missing.append(parent)
    for parent in reversed(missing):  # each one 0700, not only the last
        with contextlib.suppress(FileExistsError):
            parent.mkdir(mode=0o700)
    st = path.stat()
    if st.st_uid not in (os.geteuid(), 0):
        raise OSError(errno.EPERM, f"{path} belongs to uid {st.st_uid}")
    if st.st_mode & 0o022 and not st.st_mode & 0o1000:  # writable by others and not sticky
        raise OSError(errno.EPERM, f"{path} is writable by other users")


def _take_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise ControlSocketInUse(f"{path.with_suffix('')} is served by another ratui") from None
        raise
    return fd


async def start_control(
    runtime: Runtime, path: Path, *, explicit: bool
) -> tuple[ControlServer | None, str | None]:
    """Start the control socket for a headless run. A path the user chose that cannot be
    served is an error (returned as text); the default one only costs a warning."""
    server = ControlServer(runtime, path)
    try:
        await server.start()
    except ControlSocketInUse as exc:
        if explicit:
            return None, str(exc)
        log.warning(
            "%s; this daemon runs without a control socket (give it one with "
            "--control-socket PATH)",
            exc,
        )
        return None, None
    except OSError as exc:
        message = f"cannot serve the control socket at {path}: {exc.strerror or exc}"
        if explicit:
            return None, message
        log.warning("%s; running without one", message)
        return None, None
    return server, None
