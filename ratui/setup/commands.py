"""``ratui init server|client`` and ``ratui pair``: set up a server or a client from the
command line, for scripts and headless machines.

* ``ratui init server`` makes the tokens (and a Noise keypair), writes the server config and
  prints the pairing code to give ``ratui pair`` on the client. A TLS identity's password
  comes from a file (``--tls-password-file``), or ``--tls-password`` for scripts.
* ``ratui pair [CODE] [PATH | -o PATH]`` (or ``ratui init client --code CODE``) writes the
  matching client config. ``-`` for CODE reads it from standard input, and ``ratui pair``
  alone on a terminal asks for it without echoing it, so that it stays out of the shell's
  history.
  Each service needs the address of the service at home: ``--local NAME=HOST:PORT``; for
  any left out, a terminal asks, anything else is a usage error.
  ``--check`` then authenticates every service against the server (:mod:`.probe`);
  ``ratui pair --check [PATH]`` checks an existing client config.

Exit status: 0 done, 1 an error (one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from ..engine.config import ConfigError, load_config, split_host_port
from .files import ExistingFileError, default_config_path, write_secret_file
from .generate import (
    DEFAULT_BIND,
    ServerDraft,
    ServiceDraft,
    check_draft,
    client_toml,
    complete,
    pairing_for,
    pairing_from_config,
    read_public_addr,
    server_toml,
)
from .pairing import TRANSPORTS, Pairing, PairingError, decode, encode, looks_like_code
from .probe import ProbeResult, probe
from .validate import join_host_port, validate_addr, validate_name, validate_port

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """Ends the command with exit status 1 and ``ratui: error: <message>``."""


# parsers -----------------------------------------------------------------------------------
def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        "-o",
        metavar="PATH",
        type=Path,
        help=f"where to write the config (default: {default_config_path()})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing file (the current one is kept as PATH.bak)",
    )


def _add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="where the service NAME runs on this machine (a bare PORT means 127.0.0.1); "
        "repeat for each service; a terminal asks for any left out",
    )
    parser.add_argument(
        "--remote-addr",
        metavar="HOST:PORT",
        help="dial the server here instead of the address in the code",
    )
    parser.add_argument(
        "--tls-trusted-root",
        metavar="PEM",
        help="CA certificate for a TLS server whose certificate the system does not trust",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="after writing, authenticate every service against the server once",
    )


def init_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui init",
        description="Write a server config (and print the pairing code for its clients), "
        "or a client config from a pairing code.",
        epilog="Exit status: 0 done, 1 error, 2 usage error.",
    )
    roles = parser.add_subparsers(dest="role", required=True, metavar="server|client")
    server = roles.add_parser(
        "server", help="on the machine with the public address", description=SERVER_HELP
    )
    server.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"where clients connect (default {DEFAULT_BIND})",
    )
    server.add_argument(
        "--public-addr",
        metavar="HOST:PORT",
        help="what clients dial (default: this machine's name and the --bind port)",
    )
    server.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="noise",
        help="noise (default: encrypted, keys made here), tls (needs a certificate) or tcp "
        "(unencrypted)",
    )
    server.add_argument(
        "--service",
        action="append",
        default=[],
        required=True,
        metavar="NAME=PORT[/udp]",
        help="a service and the public port visitors connect to (or NAME=HOST:PORT); repeat",
    )
    server.add_argument("--tls-pkcs12", metavar="FILE", help="the server's PKCS#12 identity")
    password = server.add_mutually_exclusive_group()
    password.add_argument(
        "--tls-password-file",
        metavar="FILE",
        help="the file holding its password (- reads it from standard input)",
    )
    password.add_argument(
        "--tls-password",
        metavar="PASSWORD",
        help="its password (shows in the shell's history: prefer --tls-password-file)",
    )
    server.add_argument(
        "--tls-hostname",
        metavar="NAME",
        help="the name in the certificate, if not the --public-addr host",
    )
    _add_output(server)
    client = roles.add_parser(
        "client", help="on the machine at home, from a pairing code", description=PAIR_HELP
    )
    client.add_argument(
        "--code", required=True, help="the pairing code from the server (- reads it from stdin)"
    )
    _add_client_options(client)
    _add_output(client)
    return parser


def pair_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui pair",
        usage="ratui pair [CODE|-] [PATH | -o PATH] [options]\n"
        "       ratui pair --check [PATH]\n"
        "       ratui pair --show [SERVER_CONFIG] [--public-addr HOST:PORT]",
        description=PAIR_HELP,
        epilog="Exit status: 0 done, 1 error, 2 usage error.",
    )
    parser.add_argument(
        "args",
        nargs="*",
        metavar="CODE [PATH]",
        help="the pairing code (- reads it from standard input; left out on a terminal, "
        f"ratui asks for it), then where to write (default: {default_config_path()})",
    )
    _add_client_options(parser)
    _add_output(parser)
    parser.add_argument(
        "--show",
        action="store_true",
        help="print the pairing code of the server config at PATH (default: "
        f"{default_config_path()}) again",
    )
    parser.add_argument(
        "--public-addr",
        metavar="HOST:PORT",
        help="with --show: what clients dial, if the config does not record it",
    )
    return parser


SERVER_HELP = (
    "Write a server config with new tokens (and a Noise keypair), then print the pairing code "
    "and the `ratui pair` line to run on the client."
)
PAIR_HELP = (
    "Write the client config that a pairing code describes. With --check, authenticate each "
    "service against the server afterwards. `ratui pair --check [PATH]` checks an existing "
    "client config; `ratui pair --show` prints the pairing code of a server config again."
)


#: How to hand a code to the client, printed before it: never as ``ratui pair CODE``.
PAIR_ADVICE = (
    "On the client (the machine with the services), run  ratui pair  and paste this code\n"
    "when it asks (it is not echoed), or pipe it into  ratui pair - . (Given as\n"
    "ratui pair CODE  it would stay in the shell's history.)"
)


# entry points -------------------------------------------------------------------------------
def init_main(argv: list[str]) -> int:
    parser = init_parser()
    args = parser.parse_args(argv)
    if args.role == "server":
        return _run(lambda: init_server(parser, args))
    return _run(lambda: write_client(parser, args, args.code, args.output))


def pair_main(argv: list[str]) -> int:
    parser = pair_parser()
    args = parser.parse_intermixed_args(argv)  # CODE --local ... PATH
    positional: list[str] = args.args
    if args.show:
        if len(positional) > 1 or args.output:
            parser.error("--show takes at most one PATH, the server config")
        path = Path(positional[0]) if positional else default_config_path()
        return _run(lambda: show_code(path, args.public_addr))
    pairing = positional[:1] == ["-"] or args.local or args.remote_addr or args.tls_trusted_root
    if (
        args.check
        and len(positional) + bool(args.output) <= 1
        and not pairing
        and not looks_like_code("".join(positional))
    ):
        path = Path(positional[0]) if positional else args.output or default_config_path()
        return _run(lambda: check_config(path))
    if len(positional) == 1 and _looks_like_path(positional[0]):
        parser.error(
            f"{positional[0]!r}: that looks like a file path: give the code first, or - to "
            "paste it, and the path after it (or -o PATH)"
        )
    if not positional and not _interactive():
        parser.error("give the pairing code printed by `ratui init server` (- reads stdin)")
    if len(positional) > 2 or (len(positional) == 2 and args.output):
        parser.error("expected CODE and at most one PATH (after the code, or as -o PATH)")
    code = positional[0] if positional else None
    output = Path(positional[1]) if len(positional) == 2 else args.output
    return _run(lambda: write_client(parser, args, code, output))


def _looks_like_path(arg: str) -> bool:
    """A file name where the code belongs (``ratui pair client.toml``): it ends in .toml or
    has a directory in it, and holds no code's prefix."""
    if looks_like_code(arg):  # ratui1: or any other version
        return False
    return arg.endswith(".toml") or "/" in arg or os.sep in arg


def _run(command: Callable[[], int]) -> int:
    try:
        return command()
    except (CommandError, PairingError, ExistingFileError, ConfigError) as exc:
        print(f"ratui: error: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ratui: error: {where}{exc.strerror or exc}", file=sys.stderr)
    return EXIT_ERROR


# ratui init server --------------------------------------------------------------------------
def init_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    bind_host, bind_port = _addr_arg(parser, "--bind", args.bind)
    public_addr = args.public_addr or join_host_port(socket.gethostname(), bind_port)
    _addr_arg(parser, "--public-addr", public_addr)
    services = tuple(_service_arg(parser, spec, bind_host) for spec in args.service)
    password = args.tls_password
    if args.tls_password_file is not None:
        password = _read_secret(args.tls_password_file).rstrip("\r\n")
    if args.transport == "tls" and not (args.tls_pkcs12 and password is not None):
        parser.error("--transport tls needs --tls-pkcs12 FILE and --tls-password-file FILE")
    draft = ServerDraft(
        bind_addr=args.bind,
        public_addr=public_addr,
        transport=args.transport,
        services=services,
        tls_pkcs12=str(Path(args.tls_pkcs12).absolute()) if args.tls_pkcs12 else None,
        tls_pkcs12_password=password,
        tls_hostname=args.tls_hostname,
    )
    draft = complete(draft)
    problem = check_draft(draft)
    if problem:
        parser.error(problem)
    path = args.output or default_config_path()
    code = encode(pairing_for(draft))  # refuses what a code cannot carry, before any write
    backup = write_secret_file(path, server_toml(draft), overwrite=args.force)
    print(_wrote("server", path, backup))
    print(f"Start it:  ratui --server {path}")
    for svc in draft.services:
        print(
            f"  {svc.name}: visitors connect to port {split_host_port(svc.bind_addr)[1]}"
            f"{' (udp)' if svc.type == 'udp' else ''}"
        )
    print()
    print(PAIR_ADVICE)
    print()
    print(f"  {code}")
    print()
    print("It asks where each service runs there (or add --local NAME=HOST:PORT).")
    if args.public_addr is None:
        print(
            f"Clients will dial {public_addr}: if that is not how they reach this machine, "
            "run this again with --public-addr HOST:PORT --force."
        )
    print("The code holds the tokens: pass it on only over a channel you trust, such as SSH.")
    return EXIT_OK


def _addr_arg(parser: argparse.ArgumentParser, flag: str, value: str) -> tuple[str, int]:
    problem = validate_addr(value)
    if problem:
        parser.error(f"{flag}: {problem}")
    return split_host_port(value)


def _service_arg(parser: argparse.ArgumentParser, spec: str, bind_host: str) -> ServiceDraft:
    """``NAME=PORT[/udp]`` or ``NAME=HOST:PORT[/udp]``; a bare port listens on the --bind
    host."""
    name, sep, where = spec.partition("=")
    where, _, kind = where.partition("/")
    kind = kind or "tcp"
    if not sep or not where:
        parser.error(f"--service {spec!r}: expected NAME=PORT or NAME=PORT/udp")
    problem = validate_name(name)
    if kind not in ("tcp", "udp"):
        problem = f"unknown type {kind!r} after '/' (use /udp, or nothing for tcp)"
    if ":" not in where:
        problem = problem or validate_port(where)
        where = join_host_port(bind_host, where)
    problem = problem or validate_addr(where)
    if problem:
        parser.error(f"--service {spec!r}: {problem}")
    return ServiceDraft(name=name, type=kind, bind_addr=where)


# ratui pair / ratui init client -------------------------------------------------------------
def write_client(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    code: str | None,
    output: Path | None,
) -> int:
    pairing = decode(_code_text(code))
    if args.remote_addr is not None:
        _addr_arg(parser, "--remote-addr", args.remote_addr)
        pairing = Pairing(
            args.remote_addr,
            pairing.transport,
            pairing.services,
            pairing.noise_public_key,
            pairing.tls_hostname,
        )
    local_addrs = _local_addrs(parser, pairing, args.local)
    trusted_root = args.tls_trusted_root and str(Path(args.tls_trusted_root).absolute())
    text = client_toml(pairing, local_addrs, trusted_root=trusted_root)
    path = output or default_config_path()
    backup = write_secret_file(path, text, overwrite=args.force)
    print(_wrote("client", path, backup))
    print(f"Start it:  ratui --client {path}")
    if args.check:
        return check_config(path, flags=True)
    return EXIT_OK


def _code_text(code: str | None) -> str:
    """``code`` itself, else read from standard input (``-``) or, when none was given, asked
    for at a prompt that does not echo, as a password is: a code on the command line lands in
    the shell's history and in ``ps``."""
    if code is None:
        try:
            return getpass.getpass("Pairing code (not shown as you paste it): ")
        except EOFError:
            raise CommandError("no pairing code given") from None
    if code == "-":
        return sys.stdin.read()
    return code


def _read_secret(name: str) -> str:
    """The text of file ``name``, or of standard input for ``-``."""
    if name == "-":
        return sys.stdin.read()
    return Path(name).read_text(encoding="utf-8")


def _local_addrs(
    parser: argparse.ArgumentParser, pairing: Pairing, specs: list[str]
) -> dict[str, str]:
    names = [svc.name for svc in pairing.services]
    chosen: dict[str, str] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep:
            parser.error(f"--local {spec!r}: expected NAME=HOST:PORT")
        if name not in names:
            raise CommandError(
                f"--local {name}: the pairing code has no service {name!r} "
                f"(it has {', '.join(names)})"
            )
        where = _local_addr(where)
        problem = validate_addr(where)
        if problem:
            parser.error(f"--local {spec!r}: {problem}")
        chosen[name] = where
    missing = [svc for svc in pairing.services if svc.name not in chosen]
    if missing and not _interactive():
        first = missing[0].name
        parser.error(f"no local address for service {first!r}: add --local {first}=HOST:PORT")
    for svc in missing:
        chosen[svc.name] = _ask_local_addr(svc.name, svc.type)
    return chosen


def _local_addr(text: str) -> str:
    """A bare port means a service on this machine."""
    text = text.strip()
    return f"127.0.0.1:{text}" if text.isascii() and text.isdigit() else text


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _ask_local_addr(name: str, kind: str) -> str:
    while True:
        try:
            answer = input(f"Where does {kind} service {name!r} run here? HOST:PORT or PORT: ")
        except EOFError:
            raise CommandError(f"no local address for service {name!r}") from None
        where = _local_addr(answer)
        problem = validate_addr(where)
        if not problem:
            return where
        print(f"  {problem}", file=sys.stderr)


def _wrote(role: str, path: Path, backup: Path | None) -> str:
    kept = f" (the previous file is kept as {backup})" if backup else ""
    return f"Wrote the {role} config to {path}{kept}."


# ratui pair --show -----------------------------------------------------------------------
def show_code(path: Path, public_addr: str | None) -> int:
    """Print the pairing code of the server config at ``path``: the code alone on standard
    output (``ratui pair --show | ssh home ratui pair - ...`` works), the advice on stderr."""
    config = load_config(path)
    if config.server is None:
        raise CommandError(f"{path} has no [server] table to pair with")
    public_addr = public_addr or read_public_addr(path.read_text(encoding="utf-8"))
    if public_addr is None:
        raise CommandError(
            f"{path} does not record what clients dial: give --public-addr HOST:PORT"
        )
    try:
        pairing = pairing_from_config(config.server, public_addr)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    print(PAIR_ADVICE, file=sys.stderr)
    print(encode(pairing))
    return EXIT_OK


# checking -------------------------------------------------------------------------------
#: The engine's words for a TLS server whose CA the client does not trust, no CA being set.
NO_TRUSTED_ROOT = "tls.trusted_root is not set"


def check_config(path: Path, *, flags: bool = False) -> int:
    """Authenticate every service of the client config at ``path`` once; 1 if any fails.
    ``flags``: the config was just written from command-line flags, so a problem is told in
    terms of the flag that fixes it."""
    config = load_config(path)
    if config.client is None:
        raise CommandError(f"{path} has no [client] table to check")
    client = config.client

    async def run_all() -> list[ProbeResult]:
        return list(await asyncio.gather(*(probe(client, name) for name in client.services)))

    results = asyncio.run(run_all())
    if flags:
        results = [_in_flag_terms(result) for result in results]
    print(f"Checking {len(results)} service(s) against {client.remote_addr}:")
    for result in results:
        print(f"  {result.service}: {'ok' if result.ok else result.problem}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(
            f"ratui: error: {len(failed)} of {len(results)} service(s) failed the check; "
            f"first: {failed[0].service}: {failed[0].problem}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_OK


def _in_flag_terms(result: ProbeResult) -> ProbeResult:
    """``result`` with the flag named where the engine names the config key."""
    if NO_TRUSTED_ROOT not in result.problem:
        return result
    problem = f"{result.problem} (give the CA's certificate with --tls-trusted-root PEM)"
    return dataclasses.replace(result, problem=problem)
