"""Run the engine without a terminal UI: logs on stderr, stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from .engine.config import Config
from .engine.runtime import Roles, Runtime, StartupError
from .engine.state import ControlState, EngineState

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


async def serve(config: Config, roles: Roles, state: EngineState | None = None) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 if the config cannot be started."""
    runtime = Runtime(config, roles, state)
    try:
        await runtime.start()
    except StartupError as exc:
        await runtime.stop()
        print(f"ratui: error: {config.source}: {exc}", file=sys.stderr)
        return 1
    try:
        await wait_for_signal()
    finally:
        log.info("Shutting down")
        await runtime.stop()
    return 0


async def demo() -> int:
    """``ratui --demo`` without a terminal UI: print where to point curl, then serve."""
    from . import demo as demo_mod

    config = demo_mod.demo_config()
    page = await demo_mod.serve_page(config)
    runtime = Runtime(config, Roles(server=True, client=True))
    try:
        await runtime.start()
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
