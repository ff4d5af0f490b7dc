"""``ratui status [SOCKET] [--json]``: the services of a running daemon, as a table or JSON.

The exit status says whether everything is up, for scripts and health checks:
0 every service's control channel is up, 1 some service is not, 3 no daemon could be asked
(2 is a usage error, as for every ratui command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from .control import ProtocolError, add_socket_argument, from_wire, to_wire
from .engine.state import ControlState, ServiceSnapshot, Snapshot
from .remote import Connection, DaemonInfo, RemoteError

EXIT_ALL_UP = 0
EXIT_NOT_ALL_UP = 1
EXIT_NO_DAEMON = 3

STATE_STYLES = {
    ControlState.UP: "bold green",
    ControlState.CONNECTING: "yellow",
    ControlState.WAITING: "yellow",
    ControlState.RETRYING: "bold red",
    ControlState.STOPPED: "dim",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui status",
        description="Show the services of a running ratui daemon. Exit status: 0 all up, "
        "1 some not up, 3 no daemon reached.",
    )
    add_socket_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


async def fetch(socket_path: str) -> tuple[DaemonInfo, Snapshot]:
    connection = await Connection.open(socket_path)
    try:
        info = await connection.hello()
        result = await connection.request("snapshot")
        return info, from_wire(Snapshot, result.get("snapshot"))
    finally:
        await connection.close()


def all_up(snapshot: Snapshot) -> bool:
    return all(s.state is ControlState.UP for s in snapshot.services)


def as_json(info: DaemonInfo, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "all_up": all_up(snapshot),
        "daemon": {**to_wire(info), "socket": None},
        "taken_at": snapshot.taken_at,
        "services": to_wire(snapshot.services),
    }


def render(info: DaemonInfo, snapshot: Snapshot, socket_path: str) -> Any:
    """The rich renderables: a header line and the services table."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .widgets.format import format_age, format_bytes, format_duration, format_rate

    now = time.time()
    roles = " + ".join(r for r in ("server", "client") if getattr(info.roles, r)) or "nothing"
    header = Text.assemble(
        ("ratui ", "bold"),
        f"{info.version} · pid {info.pid} · up {format_duration(now - info.started_at)} · "
        f"{roles} · {info.source}",
    )
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, justify in (
        ("SERVICE", "left"),
        ("ROLE", "left"),
        ("TYPE", "left"),
        ("STATE", "left"),
        ("SINCE", "right"),
        ("ADDRESS", "left"),
        ("VISITORS", "right"),
        ("IN", "right"),
        ("OUT", "right"),
        ("RATE IN/OUT", "right"),
        ("RECONN", "right"),
        ("AUTH FAIL", "right"),
        ("LAST ERROR", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column != "LAST ERROR")  # type: ignore[arg-type]

    def row(s: ServiceSnapshot) -> list[Any]:
        return [
            s.name,
            str(s.role),
            s.type,
            Text(str(s.state), style=STATE_STYLES.get(s.state, "")),
            format_age(now - s.state_since),
            s.address + (f" ← {s.peer}" if s.peer else ""),
            f"{s.visitors_open}/{s.visitors_total}",
            format_bytes(s.rx),
            format_bytes(s.tx),
            f"{format_rate(s.rx_rate)} / {format_rate(s.tx_rate)}",
            str(s.reconnects),
            str(s.auth_failures),
            Text(s.last_error or "", style="red"),
        ]

    for service in sorted(snapshot.services, key=lambda s: (s.role, s.name)):
        table.add_row(*row(service))
    parts: list[Any] = [header, table]
    if not snapshot.services:
        parts.append(Text("no services", style="dim"))
    up = sum(s.state is ControlState.UP for s in snapshot.services)
    summary = f"{up}/{len(snapshot.services)} services up · {socket_path}"
    parts.append(Text(summary, style="green" if all_up(snapshot) else "bold red"))
    return Group(*parts)


def main(argv: list[str]) -> int:
    from .control import client_socket_path
    from .headless import run

    args = build_parser().parse_args(argv)
    socket_path = str(client_socket_path(args.socket))
    try:
        info, snapshot = run(lambda: fetch(socket_path))
    except (RemoteError, ProtocolError) as exc:
        print(f"ratui: error: {exc}", file=sys.stderr)
        return EXIT_NO_DAEMON
    try:
        if args.json:
            data = as_json(info, snapshot)
            data["daemon"]["socket"] = socket_path
            print(json.dumps(data, indent=2))
        else:
            from rich.console import Console

            console = Console(width=None if sys.stdout.isatty() else 200)
            console.print(render(info, snapshot, socket_path))
        sys.stdout.flush()
    except BrokenPipeError:  # `ratui status | head`: as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_ALL_UP if all_up(snapshot) else EXIT_NOT_ALL_UP
