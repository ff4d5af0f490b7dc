"""``ratui service install [--user] CONFIG``: write a systemd unit that runs
``ratui --daemon CONFIG``, and say how to enable it.

The system unit keeps root's ownership of the config file (rathole's configs usually live in
``/etc``, mode 0600) but takes every other privilege away: its only capability is binding ports
below 1024, the file system is read-only, ``/home`` too, except the config file's directory
(edits made through ``ratui attach`` are saved there, with a ``.bak``), and the kernel, devices
and other address families are out of reach. A config under ``/tmp`` or ``/var/tmp`` would be
hidden by ``PrivateTmp``, so that option is left out for one. A ``--user`` unit runs in the
user's own service manager, with the sandboxing options that need no privileges. Either
restarts ratui when it fails, reloads it with SIGHUP (``systemctl reload``), and puts the
control socket in the unit's runtime directory, where ``ratui status`` and ``ratui attach``
look for it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from .control import SOCKET_ENV, SYSTEM_SOCKET

SYSTEM_DIR = Path("/etc/systemd/system")
_NAME = re.compile(r"[A-Za-z0-9:_.\\-]+")

# Options that need privileges the user manager does not have are left out of --user units.
SYSTEM_HARDENING = """\
NoNewPrivileges=yes
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
ProtectSystem=strict
ProtectHome=read-only
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
"""
USER_HARDENING = """\
NoNewPrivileges=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
UMask=0077
"""


def user_unit_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user"


def ratui_command() -> list[str]:
    """The absolute command that starts this ratui: its console script next to the running
    interpreter, else the one on PATH, else ``python -m ratui``."""
    beside = Path(sys.executable).parent / "ratui"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("ratui")
    if found:
        return [str(Path(found).resolve())]
    return [str(Path(sys.executable).absolute()), "-m", "ratui"]


#: The directories that ``PrivateTmp=yes`` replaces with the unit's own empty ones.
TEMP_DIRS = (Path("/tmp"), Path("/var/tmp"))


def _quote(arg: str, *, command: bool = True) -> str:
    """One ExecStart argument (``command``) or path of a path list: ``%`` doubled (systemd
    expands specifiers), ``$`` too in a command line, and in double quotes with C-style
    escapes when it holds a space, a quote or a backslash."""
    arg = arg.replace("%", "%%")
    if command:
        arg = arg.replace("$", "$$")
    if arg and not any(c.isspace() or c in "\"'\\;" for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_unit(
    config: Path,
    *,
    user: bool,
    name: str = "ratui",
    role: str | None = None,
    command: list[str] | None = None,
    run_as: str | None = None,
) -> str:
    """The unit's text. ``config`` must be absolute; ``role`` is ``server``, ``client`` or
    None (the tables present decide, as for rathole)."""
    argv = [*(command or ratui_command()), "--daemon"]
    if role is not None:
        argv.append(f"--{role}")
    argv.append(str(config))
    exec_start = " ".join(_quote(a) for a in argv)
    runtime_dir = name
    socket = f"%t/{runtime_dir}/control.sock"
    lines = [
        "[Unit]",
        f"Description=ratui reverse tunnel ({config.name.replace('%', '%%')})",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5s",
        "TimeoutStopSec=20s",
        f"Environment={SOCKET_ENV}={socket}",
        "Environment=PYTHONUNBUFFERED=1",
        f"RuntimeDirectory={runtime_dir}",
        "RuntimeDirectoryMode=0700",
    ]
    if user:
        lines.append(USER_HARDENING.rstrip())
    else:
        lines.append("LimitNOFILE=1048576")
        if run_as:
            lines.append(f"User={run_as}")
        lines.append(SYSTEM_HARDENING.rstrip())
        lines += _writable_config_dir(config)
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}"]
    return "\n".join(lines) + "\n"


def _writable_config_dir(config: Path) -> list[str]:
    """A system unit's file system is read-only: the directory where saved config edits and
    their ``.bak`` go stays writable (the link's and the target's, for a symlinked config),
    and ``PrivateTmp`` is added only when it would not hide the config."""
    dirs = list(dict.fromkeys((config.parent, config.resolve().parent)))
    lines = ["ReadWritePaths=" + " ".join(_quote(str(d), command=False) for d in dirs)]
    if not any(d.is_relative_to(temp) for d in dirs for temp in TEMP_DIRS):
        lines.append("PrivateTmp=yes")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ratui service",
        description="Install ratui as a systemd service.",
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    install = sub.add_parser(
        "install",
        help="write a systemd unit running `ratui --daemon CONFIG`",
        description="Write a systemd unit that runs `ratui --daemon CONFIG` and print how to "
        "enable it. Without --user the unit goes to /etc/systemd/system (run as root).",
    )
    install.add_argument("config", metavar="CONFIG", help="rathole-style TOML config")
    install.add_argument("--user", action="store_true", help="a unit for `systemctl --user`")
    role = install.add_mutually_exclusive_group()
    role.add_argument("-s", "--server", action="store_true", help="run as a server")
    role.add_argument("-c", "--client", action="store_true", help="run as a client")
    install.add_argument("--name", default="ratui", help="unit name (default: ratui)")
    install.add_argument("--run-as", metavar="USER", help="User= of a system unit")
    install.add_argument(
        "-o", "--output", metavar="PATH", help="write the unit here ('-' for stdout)"
    )
    install.add_argument("--force", action="store_true", help="replace an existing unit")
    return parser


def main(argv: list[str]) -> int:
    from .cli import choose_roles
    from .engine.config import ConfigError, load_config

    args = build_parser().parse_args(argv)
    name = args.name.removesuffix(".service")
    if not _NAME.fullmatch(name):
        print(f"ratui: error: {args.name!r} is not a valid unit name", file=sys.stderr)
        return 2
    config = Path(args.config).absolute()
    if any(c in str(config) for c in "\n\r"):
        print("ratui: error: a config path with a line break cannot go in a unit", file=sys.stderr)
        return 2
    try:  # refuse now what the service would refuse at every start
        choose_roles(load_config(config), args.server, args.client)
    except ConfigError as exc:
        print(f"ratui: error: {exc}", file=sys.stderr)
        return 1
    role = "server" if args.server else "client" if args.client else None
    text = render_unit(config, user=args.user, name=name, role=role, run_as=args.run_as)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    unit_dir = user_unit_dir() if args.user else SYSTEM_DIR
    target = Path(args.output) if args.output else unit_dir / f"{name}.service"
    if target.exists() and not args.force:
        print(f"ratui: error: {target} exists; pass --force to replace it", file=sys.stderr)
        return 1
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        hint = "" if args.user else " (run as root, or pass --user)"
        print(f"ratui: error: cannot write {target}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 1
    ctl = "systemctl --user" if args.user else "systemctl"
    socket = (
        f"$XDG_RUNTIME_DIR/{name}/control.sock"
        if args.user
        else SYSTEM_SOCKET.replace("/ratui/", f"/{name}/")
    )
    print(f"Wrote {target}")
    print("Enable and start it with:")
    print(f"  {ctl} daemon-reload")
    print(f"  {ctl} enable --now {name}.service")
    print(f"Then: {ctl} status {name}; ratui status {socket}; ratui attach {socket}")
    if args.user:
        print("To keep it running after you log out: loginctl enable-linger $USER")
    return 0
