"""Run the engine without a terminal UI: logs on stderr, stop on SIGINT/SIGTERM, reload the
config on SIGHUP and whenever the file changes (``RATUI_WATCH`` picks how it is watched)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .engine.config import Config
from .engine.runtime import Roles, Runtime, StartupError
from .engine.state import ControlState, EngineState
from .engine.watcher import ConfigWatcher, WatchMode

#: How the config file is watched: auto (file events plus polling as a safety net), events,
#: poll (for file systems that deliver no events) or off (SIGHUP only).
WATCH_ENV = "RATUI_WATCH"
#: The metrics address when --metrics-addr is not given. It lives here, not in ratui.metrics,
#: so that reading it does not import prometheus_client (3 MiB) into daemons without metrics.
METRICS_ENV = "RATUI_METRICS_ADDR"

log = logging.getLogger("ratui")


def run(main: Callable[[], Awaitable[int]]) -> int:
    """Run a coroutine on uvloop when it is installed (it is on Linux), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.run(main())
    return uvloop.run(main())


async def wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def watch_mode() -> WatchMode:
    """The mode named by ``RATUI_WATCH`` (default auto)."""
    value = os.environ.get(WATCH_ENV, "").strip().lower() or WatchMode.AUTO
    try:
        return WatchMode(value)
    except ValueError:
        modes = ", ".join(m.value for m in WatchMode)
        log.warning("%s=%r is not one of %s; using auto", WATCH_ENV, value, modes)
        return WatchMode.AUTO


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """ratui-only settings of a headless run, from flags or the environment (never from the
    rathole config): the control socket (None: none) and the metrics address (None: none).
    ``control_explicit``: the socket path was chosen by the user, so failing to serve it is an
    error rather than a warning."""

    control_socket: Path | None = None
    control_explicit: bool = False
    metrics_addr: str | None = None


async def serve(
    config: Config,
    roles: Roles,
    state: EngineState | None = None,
    options: DaemonOptions | None = None,
) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 if the config cannot be started.

    While running, SIGHUP re-reads the config at once and the file watcher applies each saved
    change; both go through :meth:`Runtime.apply`, and a config that cannot be used is
    reported while the old one keeps running. ``options`` adds the control socket and the
    metrics endpoint (:mod:`ratui.daemon`, :mod:`ratui.metrics`)."""
    runtime = Runtime(config, roles, state)
    try:
        await runtime.start()
    except StartupError as exc:
        await runtime.stop()
        print(f"ratui: error: {config.source}: {exc}", file=sys.stderr)
        return 1
    extras = await _start_extras(runtime, options or DaemonOptions())
    if isinstance(extras, str):
        await runtime.stop()
        print(f"ratui: error: {extras}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[object]] = set()

    def on_sighup() -> None:
        log.info("SIGHUP: reloading %s", config.source)
        task = loop.create_task(runtime.reload(trigger="SIGHUP"))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    watcher: ConfigWatcher | None = None
    if not config.source.startswith("<"):  # a real file
        mode = watch_mode()
        watcher = ConfigWatcher(
            config.source, lambda data: runtime.reload(data, trigger="file changed"), mode=mode
        )
        if mode is WatchMode.OFF:
            log.info("Reloading %s on SIGHUP (%s=off)", config.source, WATCH_ENV)
        else:
            log.info("Reloading %s on SIGHUP and when it changes (%s)", config.source, mode)
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and watcher is not None:
        loop.add_signal_handler(hup, on_sighup)
    try:
        if watcher is not None:
            await watcher.start()
        await wait_for_signal()
    finally:
        log.info("Shutting down")
        if hup is not None and watcher is not None:
            loop.remove_signal_handler(hup)
        if watcher is not None:
            await watcher.stop()
        for task in reloads:
            task.cancel()
        for extra in extras:
            await extra.stop()
        await runtime.stop()
    return 0


async def _start_extras(runtime: Runtime, options: DaemonOptions) -> list[_Stoppable] | str:
    """Start the control socket and the metrics endpoint that ``options`` ask for; what to
    stop at the end, or the error that makes the run fail."""
    started: list[_Stoppable] = []
    if options.control_socket is not None:
        from .daemon import start_control

        control, error = await start_control(
            runtime, options.control_socket, explicit=options.control_explicit
        )
        if error is not None:
            return error
        if control is not None:
            started.append(control)
    if options.metrics_addr is not None:
        from .metrics import MetricsServer

        metrics = MetricsServer(runtime.state, options.metrics_addr)
        try:
            await metrics.start()
        except OSError as exc:
            for extra in started:
                await extra.stop()
            return f"cannot serve metrics at {options.metrics_addr}: {exc.strerror or exc}"
        started.append(metrics)
    return started


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


async def demo(options: DaemonOptions | None = None) -> int:
    """``ratui --demo`` without a terminal UI: print where to point curl, then serve, with the
    control socket and metrics endpoint that ``options`` ask for, as :func:`serve` has."""
    from . import demo as demo_mod

    config = demo_mod.demo_config()
    page = await demo_mod.serve_page(config)
    runtime = Runtime(config, Roles(server=True, client=True))
    extras: list[_Stoppable] = []
    try:
        await runtime.start()
        started = await _start_extras(runtime, options or DaemonOptions())
        if isinstance(started, str):
            print(f"ratui: error: {started}", file=sys.stderr)
            return 1
        extras = started
        if not await _wait_up(runtime.state, timeout=10.0):
            print("ratui: error: the demo tunnel did not come up within 10 s", file=sys.stderr)
            return 1
        url = demo_mod.public_url(config)
        print(
            "ratui demo: a server and a client on this machine, tunnelling a built-in web page.\n"
            f"  public address: {url}\n"
            f"  try:            curl {url}\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await wait_for_signal()
        return 0
    finally:
        for extra in extras:
            await extra.stop()
        await runtime.stop()
        page.close()


async def _wait_up(state: EngineState, timeout: float) -> bool:
    """True once every service of the running config reports its control channel up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services = state.snapshot().services
        if services and all(s.state is ControlState.UP for s in services):
            return True
        await asyncio.sleep(0.05)
    return False
