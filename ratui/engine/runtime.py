"""Owns the running server and/or client built from one config, applies new configs to it
while it runs, and publishes what happens.

:meth:`Runtime.apply` is the one way a running tunnel changes its config: the file watcher,
SIGHUP, the TUI's editor and the daemon's control socket all end there (PROTOCOL.md §6.5).
It never stops the tunnel for a config it cannot run; it says why in a ``CONFIG_REFUSED``
event and keeps the old one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .client import Client
from .config import (
    Config,
    ConfigDiff,
    ConfigError,
    config_diff,
    file_permissions_warning,
    load_config,
    parse_config_bytes,
    split_host_port,
)
from .heap import keep_heap
from .server import Server
from .state import EngineState, EventKind, Level, Role
from .transport import TransportUnavailable, make_transport

log = logging.getLogger("ratui")

RATE_SAMPLE_PERIOD = 1.0  # seconds between byte-rate samples


class StartupError(Exception):
    """The config is valid but cannot be run (a feature not available, a port in use)."""


@dataclass(frozen=True, slots=True)
class Roles:
    server: bool
    client: bool


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one :meth:`Runtime.apply` (or :meth:`Runtime.reload`) did.

    ``applied`` is False when the new config was refused and the old one still runs; ``diff``
    is what changed for the roles this runtime runs (None when refused); ``message`` is the
    text of the ``CONFIG_RELOADED`` or ``CONFIG_REFUSED`` event.
    """

    applied: bool
    diff: ConfigDiff | None
    message: str


class Runtime:
    """Starts the roles a config asks for, samples rates, and stops everything cleanly."""

    def __init__(self, config: Config, roles: Roles, state: EngineState | None = None) -> None:
        self.config = config
        #: The file :meth:`reload` reads: where the first config came from.
        self.path = config.source
        self.roles = roles
        self.state = state or EngineState()
        self.server: Server | None = None
        self.client: Client | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one apply at a time, and never during start/stop
        self._running = False

    async def start(self) -> None:
        self._check_supported()
        keep_heap()
        if self.roles.server and self.config.server is not None:
            self.server = Server(
                self.config.server, self.state, make_transport(self.config.server.transport)
            )
            try:
                await self.server.start()
            except OSError as exc:
                await self.server.stop()
                raise StartupError(
                    f"cannot listen at {self.config.server.bind_addr}: {exc.strerror or exc}"
                ) from None
        if self.roles.client and self.config.client is not None:
            self.client = Client(
                self.config.client, self.state, make_transport(self.config.client.transport)
            )
            await self.client.start()
        self._sampler = asyncio.get_running_loop().create_task(self._sample_rates())
        self._running = True
        self.state.emit(EventKind.CONFIG_LOADED, f"running {self.config.source}")
        warning = file_permissions_warning(self.config)
        if warning is not None:
            self.state.emit(EventKind.CONFIG_LOADED, warning, level=Level.WARNING)

    def _check_supported(self) -> None:
        """Refuse, before anything starts, a transport that is unavailable or misses a key or
        identity that the side this runtime plays needs."""
        for block, wanted in (
            (self.config.server, self.roles.server),
            (self.config.client, self.roles.client),
        ):
            if block is None or not wanted:
                continue
            try:
                transport = make_transport(block.transport)
                if block is self.config.server:
                    transport.check_server()
                else:
                    transport.check_client()
            except (TransportUnavailable, OSError) as exc:
                raise StartupError(str(exc)) from None

    async def stop(self) -> None:
        async with self._lock:
            self._running = False
            if self._sampler is not None:
                self._sampler.cancel()
            if self.client is not None:
                await self.client.stop()
            if self.server is not None:
                await self.server.stop()

    # hot reload -----------------------------------------------------------------------------
    async def reload(self, data: bytes | None = None, *, trigger: str = "reload") -> ApplyResult:
        """Read the config file (:attr:`path`) again, or parse ``data``, its bytes as the
        watcher read them, and :meth:`apply` it; a file that cannot be read or parsed is
        refused."""
        source = self.path
        try:
            if data is None:
                new = await asyncio.to_thread(load_config, source)
            else:
                new = parse_config_bytes(data, source)
        except ConfigError as exc:
            return self.refuse(exc, trigger=trigger)
        return await self.apply(new, trigger=trigger)

    def refuse(self, error: Exception | str, *, trigger: str = "reload") -> ApplyResult:
        """Report a config that cannot be used; the running one stays."""
        message = f"new config refused ({trigger}), still running the previous one: {error}"
        self.state.emit(EventKind.CONFIG_REFUSED, message, level=Level.ERROR)
        return ApplyResult(False, None, message)

    async def apply(self, new: Config, *, trigger: str = "reload") -> ApplyResult:
        """Change the running tunnel to ``new`` (PROTOCOL.md §6.5), touching only what changed.

        Per role this runtime runs: a change of any key outside ``services`` (addresses,
        tokens, heartbeat, transport) restarts the role: the server closes everything and binds
        again, the client reconnects every service. Otherwise removed services stop and close
        their visitors, added ones start, changed ones restart (on the server this drops the
        control channel, so the client reconnects with the new settings), and services that did
        not change keep their control channel, data channels and visitors.

        A config that cannot run (a role's table missing, a transport or feature not
        available, the new ``bind_addr`` busy) is refused and the old one stays in force.
        ``trigger`` says what asked for the reload ("file changed", "SIGHUP", ...) in events.
        """
        async with self._lock:
            if not self._running:
                return ApplyResult(False, None, "not running")
            return await self._apply(new, trigger)

    async def _apply(self, new: Config, trigger: str) -> ApplyResult:
        old = self.config
        for role, runs in (("server", self.roles.server), ("client", self.roles.client)):
            if runs and getattr(new, role) is None:
                return self.refuse(
                    ConfigError(
                        new.source, problem=f"[{role}]: missing, required to run as a {role}"
                    ),
                    trigger=trigger,
                )
        self.config = new  # _check_supported looks at self.config
        try:
            self._check_supported()
        except StartupError as exc:
            return self.refuse(f"{new.source}: {exc}", trigger=trigger)
        finally:
            self.config = old

        full = config_diff(old, new)
        diff = ConfigDiff(
            restart_server=self.roles.server and full.restart_server,
            restart_client=self.roles.client and full.restart_client,
            **{
                f"{role}_{what}": getattr(full, f"{role}_{what}")
                if getattr(self.roles, role)
                else ()
                for role in ("server", "client")
                for what in ("added", "removed", "changed")
            },
        )
        if diff.unchanged:
            self.config = new
            message = f"config reloaded ({trigger}): no change"
            self.state.emit(EventKind.CONFIG_RELOADED, message, level=Level.DEBUG)
            return ApplyResult(True, diff, message)

        if self.server is not None and new.server is not None:
            if diff.restart_server:
                try:
                    await self._restart_server(new)
                except StartupError as exc:
                    return self.refuse(f"{new.source}: {exc}", trigger=trigger)
            else:
                self.server.cfg = new.server
                for name in diff.server_removed:
                    self.server.remove_service(name)
                for name in (*diff.server_added, *diff.server_changed):
                    self.server.add_service(new.server.services[name])
        if self.client is not None and new.client is not None:
            if diff.restart_client:
                await self.client.stop()
                self.client = Client(new.client, self.state, make_transport(new.client.transport))
                await self.client.start()
            else:
                self.client.cfg = new.client
                for name in diff.client_removed:
                    self.client.remove_service(name)
                for name in (*diff.client_added, *diff.client_changed):
                    self.client.add_service(new.client.services[name])
        self.config = new
        message = f"config reloaded ({trigger}): {describe_diff(diff)}"
        self.state.emit(EventKind.CONFIG_RELOADED, message)
        return ApplyResult(True, diff, message)

    async def _restart_server(self, new: Config) -> None:
        """Stop the server and start it from ``new``; if it cannot listen, bring the old one
        back and raise StartupError."""
        assert self.server is not None and new.server is not None
        old_cfg = self.server.cfg
        if new.server.bind_addr != old_cfg.bind_addr:
            # Try the new address before stopping anything: a busy port is the usual reason a
            # restart fails, and then the running server is left untouched.
            await _probe_listen(new.server.bind_addr)
        await self.server.stop()
        self.server = Server(new.server, self.state, make_transport(new.server.transport))
        try:
            await self.server.start()
        except OSError as exc:
            await self.server.stop()
            self.server = Server(old_cfg, self.state, make_transport(old_cfg.transport))
            try:
                await self.server.start()
            except OSError as again:
                self.state.emit(
                    EventKind.ERROR,
                    f"cannot listen at {old_cfg.bind_addr} again: {again.strerror or again}",
                    level=Level.ERROR,
                    role=Role.SERVER,
                )
            raise StartupError(
                f"cannot listen at {new.server.bind_addr}: {exc.strerror or exc}"
            ) from None

    async def _sample_rates(self) -> None:
        while True:
            self.state.sample_rates()
            await asyncio.sleep(RATE_SAMPLE_PERIOD)


async def _probe_listen(addr: str) -> None:
    """Raise StartupError if nothing can listen at ``addr`` right now."""
    host, port = split_host_port(addr)
    try:
        probe = await asyncio.get_running_loop().create_server(
            asyncio.Protocol, host or None, port, reuse_address=True
        )
    except OSError as exc:
        raise StartupError(f"cannot listen at {addr}: {exc.strerror or exc}") from None
    probe.close()
    await probe.wait_closed()


def describe_diff(diff: ConfigDiff) -> str:
    """One line: what a reload changed, per role, e.g.
    ``server: added b; changed c; removed d | client: restarted ([client] keys or transport
    changed)``."""
    parts = []
    for role in ("server", "client"):
        if getattr(diff, f"restart_{role}"):
            parts.append(f"{role}: restarted ([{role}] keys or transport changed)")
            continue
        changes = [
            f"{what} {', '.join(names)}"
            for what in ("added", "changed", "removed")
            if (names := getattr(diff, f"{role}_{what}"))
        ]
        if changes:
            parts.append(f"{role}: {'; '.join(changes)}")
    return " | ".join(parts) or "no change"
