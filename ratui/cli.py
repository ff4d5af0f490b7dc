"""Command line: the same as rathole's where rathole has it (``--server``, ``--client``,
``--genkey``, ``CONFIG``), plus ``--demo`` and ``--daemon``, the daemon's own flags
(``--log-format``, ``--control-socket``, ``--metrics-addr``, each also an environment
variable, never a config key) and the commands ``attach``, ``status``, ``service``,
``init`` and ``pair``.
Argument parsing only."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .engine.config import Config, ConfigError, load_config, split_host_port
from .engine.runtime import Roles
from .logsetup import LOG_FORMAT_ENV, LOG_FORMATS

if TYPE_CHECKING:
    from .headless import DaemonOptions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui",
        description="A reverse tunnel for NAT traversal, compatible with rathole v0.5.",
        epilog="Logs go to stderr; set RATUI_LOG (or RUST_LOG) to debug, info, warn or error. "
        "Other commands: `ratui attach [SOCKET]` (the dashboard of a running daemon), "
        "`ratui status [SOCKET] [--json]`, `ratui service install [--user] CONFIG`, "
        "`ratui init server|client` (write a config), `ratui pair` (a client config from "
        "a pairing code).",
    )
    parser.add_argument("config", nargs="?", metavar="CONFIG", help="rathole-style TOML config")
    parser.add_argument("-s", "--server", action="store_true", help="run as a server")
    parser.add_argument("-c", "--client", action="store_true", help="run as a client")
    parser.add_argument(
        "--genkey",
        nargs="?",
        const="x25519",
        metavar="CURVE",
        choices=["x25519", "x448"],
        help="print a new keypair for the noise transport (x25519) and exit",
    )
    parser.add_argument("--daemon", action="store_true", help="never open the terminal UI")
    parser.add_argument(
        "--demo", action="store_true", help="run a loopback tunnel to a built-in web page"
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="plain lines (default) or JSON lines for log shippers; env RATUI_LOG_FORMAT",
    )
    parser.add_argument(
        "--control-socket",
        metavar="PATH",
        help="where the headless run serves `ratui attach` and `ratui status` (default: the "
        "user's runtime directory; 'off' for none); env RATUI_CONTROL_SOCKET",
    )
    parser.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off unless given); "
        "env RATUI_METRICS_ADDR",
    )
    parser.add_argument("-V", "--version", action="version", version=f"ratui {__version__}")
    return parser


#: Words that start another command instead of naming a config file (``./status`` does that).
SUBCOMMANDS = ("attach", "status", "service", "init", "pair")


def run_subcommand(name: str, argv: list[str]) -> int:
    if name in ("init", "pair"):
        from .setup.commands import init_main, pair_main

        return init_main(argv) if name == "init" else pair_main(argv)
    if name == "status":
        from .status import main as status_main

        return status_main(argv)
    if name == "service":
        from .service import main as service_main

        return service_main(argv)
    from .attach import main as attach_main

    return attach_main(argv)


def log_format(args: argparse.Namespace) -> str:
    if args.log_format:
        return args.log_format
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    return value if value in LOG_FORMATS else "plain"


def daemon_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DaemonOptions:
    """The control socket and metrics settings, from the flags, else the environment."""
    from .control import default_socket_path, is_off, socket_setting
    from .headless import METRICS_ENV

    chosen = args.control_socket or socket_setting()
    if is_off(chosen):
        control, explicit = None, False
    elif chosen:
        control, explicit = Path(chosen).absolute(), True
    else:
        control, explicit = default_socket_path(), False
    metrics = args.metrics_addr or os.environ.get(METRICS_ENV, "").strip() or None
    if metrics is not None and is_off(metrics):
        metrics = None
    if metrics is not None:
        try:
            split_host_port(metrics)
        except ValueError as exc:
            parser.error(f"--metrics-addr: expected HOST:PORT, got {metrics!r} ({exc})")
    from .headless import DaemonOptions

    return DaemonOptions(control, explicit, metrics)


def demo_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DaemonOptions:
    """:func:`daemon_options` for ``--demo``, which serves a control socket only at a path
    given with the flag or the variable: left to the default one, a short-lived demo would
    take the socket of the user's real daemon."""
    options = daemon_options(parser, args)
    if options.control_explicit:
        return options
    return dataclasses.replace(options, control_socket=None)


def choose_roles(config: Config, server: bool, client: bool) -> Roles:
    """rathole's rule: a flag picks the role, otherwise the tables present decide; a config
    with both tables and no flag (or both flags) runs both."""
    if server or client:
        missing = [
            name
            for name, wanted, block in (
                ("server", server, config.server),
                ("client", client, config.client),
            )
            if wanted and block is None
        ]
        if missing:
            role = missing[0]
            raise ConfigError(config.source, role, problem=f"missing, required to run as a {role}")
        return Roles(server=server, client=client)
    return Roles(server=config.server is not None, client=config.client is not None)


def wants_tui(daemon: bool) -> bool:
    """The terminal UI opens only on a terminal (stdin and stdout both) and without
    ``--daemon``; otherwise (systemd, Docker, pipes, tests) the run stays headless."""
    if daemon:
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard limit, as rathole does: every visitor
    costs two descriptors on each side, and 1024 is a common default."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return run_subcommand(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.genkey:
        from .genkey import UnsupportedCurve, format_keypair, generate_keypair

        try:
            print(format_keypair(*generate_keypair(args.genkey)), end="")
        except UnsupportedCurve as exc:
            print(f"ratui: error: {exc}", file=sys.stderr)
            return 1
        return 0

    from . import headless
    from .logsetup import setup_logging

    setup_logging(fmt=log_format(args))
    raise_open_file_limit()
    tui = wants_tui(args.daemon)
    if args.demo:
        if tui:
            from .app import run_tui

            return run_tui(None, None, demo=True)
        return headless.run(lambda: headless.demo(demo_options(parser, args)))
    if args.config is None:
        from .setup.files import find_config

        found = find_config()
        if found is None and tui:
            from .app import run_tui

            return run_tui(None, None)  # the welcome screen: set up, open or demo
        if found is None:
            build_parser().print_usage(sys.stderr)
            print("ratui: error: give a CONFIG file, --demo or --genkey", file=sys.stderr)
            return 2
        args.config = str(found)
    try:
        config = load_config(args.config)
        roles = choose_roles(config, args.server, args.client)
    except ConfigError as exc:
        print(f"ratui: error: {exc}", file=sys.stderr)
        return 1
    if tui:
        from .app import run_tui

        return run_tui(config, roles)
    options = daemon_options(parser, args)
    return headless.run(lambda: headless.serve(config, roles, options=options))
