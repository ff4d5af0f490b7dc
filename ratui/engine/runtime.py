"""Owns the running server and/or client built from one config and publishes what happens."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from .client import Client
from .config import Config, ServiceType
from .server import Server
from .state import EngineState, EventKind
from .transport import TransportUnavailable, make_transport

log = logging.getLogger("ratui")

RATE_SAMPLE_PERIOD = 1.0  # seconds between byte-rate samples


class StartupError(Exception):
    """The config is valid but cannot be run (a feature not available, a port in use)."""


@dataclass(frozen=True, slots=True)
class Roles:
    server: bool
    client: bool


class Runtime:
    """Starts the roles a config asks for, samples rates, and stops everything cleanly."""

    def __init__(self, config: Config, roles: Roles, state: EngineState | None = None) -> None:
        self.config = config
        self.roles = roles
        self.state = state or EngineState()
        self.server: Server | None = None
        self.client: Client | None = None
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._check_supported()
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
        self.state.emit(EventKind.CONFIG_LOADED, f"running {self.config.source}")

    def _check_supported(self) -> None:
        for role in (self.config.server, self.config.client):
            if role is None:
                continue
            try:
                make_transport(role.transport)
            except TransportUnavailable as exc:
                raise StartupError(str(exc)) from None
            for svc in role.services.values():
                if svc.type is ServiceType.UDP:
                    raise StartupError(
                        f"service {svc.name}: UDP services are not available yet in this "
                        "version of ratui"
                    )

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        if self.client is not None:
            await self.client.stop()
        if self.server is not None:
            await self.server.stop()

    async def _sample_rates(self) -> None:
        while True:
            self.state.sample_rates()
            await asyncio.sleep(RATE_SAMPLE_PERIOD)
