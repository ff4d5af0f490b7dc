"""Command line: the same as rathole's where rathole has it (``--server``, ``--client``,
``--genkey``, ``CONFIG``), plus ``--demo`` and ``--daemon``. Argument parsing only."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .engine.config import Config, ConfigError, load_config
from .engine.runtime import Roles


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui",
        description="A reverse tunnel for NAT traversal, compatible with rathole v0.5.",
        epilog="Logs go to stderr; set RATUI_LOG (or RUST_LOG) to debug, info, warn or error.",
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
    parser.add_argument("-V", "--version", action="version", version=f"ratui {__version__}")
    return parser


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
            raise ConfigError(
                f"{config.source}: [{missing[0]}]: missing, required to run as a {missing[0]}"
            )
        return Roles(server=server, client=client)
    return Roles(server=config.server is not None, client=config.client is not None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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

    setup_logging()
    if args.demo:
        return headless.run(headless.demo)
    if args.config is None:
        build_parser().print_usage(sys.stderr)
        print("ratui: error: give a CONFIG file, --demo or --genkey", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        roles = choose_roles(config, args.server, args.client)
    except ConfigError as exc:
        print(f"ratui: error: {exc}", file=sys.stderr)
        return 1
    return headless.run(lambda: headless.serve(config, roles))
