"""``ratui attach [SOCKET]``: the dashboard of a running daemon, fed over its control socket.

The dashboard is the same :class:`~ratui.app.RatuiApp` as ``ratui CONFIG`` opens, reading a
:class:`~ratui.remote.RemoteState` instead of an engine of its own; its reload goes to the
daemon, which applies it through the hot reload path. Quitting (``q``, Ctrl-C, SIGTERM, the
terminal going away) only detaches: the daemon and its visitors carry on. Any number of
dashboards may be attached at once.
"""

from __future__ import annotations

import argparse
import sys

from .control import ProtocolError, add_socket_argument, client_socket_path
from .engine.config import Config
from .remote import RemoteError, RemoteState

EXIT_NO_DAEMON = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui attach",
        description="Open the dashboard of a running ratui daemon; quitting leaves it running.",
    )
    add_socket_argument(parser)
    return parser


def attached_config(remote: RemoteState) -> Config:
    """What the dashboard shows as its config: the daemon's file, and which daemon."""
    assert remote.info is not None
    return Config(source=f"{remote.info.source} (daemon pid {remote.info.pid})")


def main(argv: list[str]) -> int:
    from . import headless
    from .app import RatuiApp, quiet_logging, run_until_stopped

    args = build_parser().parse_args(argv)
    path = client_socket_path(args.socket)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("ratui: error: attach needs a terminal (try `ratui status`)", file=sys.stderr)
        return 2
    quiet_logging()

    async def run() -> int:
        remote = RemoteState(path)
        try:
            info = await remote.connect()
        except (RemoteError, ProtocolError) as exc:
            print(f"ratui: error: {exc}", file=sys.stderr)
            return EXIT_NO_DAEMON
        app = RatuiApp(attached_config(remote), info.roles, remote=remote)
        try:
            await run_until_stopped(app)
        finally:
            await remote.close()
        return app.return_code or 0

    return headless.run(run)
