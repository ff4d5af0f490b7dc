"""Memory of ratui vs the reference rathole v0.5: an idle daemon, and each open idle visitor.

Usage::

    .venv/bin/python bench/memory.py [--services 10] [--visitors 10000] [--json]

Two figures, for the server and the client process of each tunnel, on 127.0.0.1 only:

1. **Idle RSS with ``--services`` services**: server and client run one config with that many
   plain-TCP services (all ports picked free, no backend needed). Once every service port
   listens (read from /proc/net/tcp, so no visitor is created), the processes get
   ``--settle`` seconds to open their pools of data channels, then VmRSS is read.
2. **Extra memory per open idle visitor**: a one-service tunnel in front of an echo service
   (bench/_echo.py). After 200 visitors came and went (warm-up), VmRSS is read; then
   ``--visitors`` visitors connect and each sends one byte and waits for its echo, so every
   one is forwarded end to end (visitor, data channel and local connection all open); they
   stay open and idle for ``--settle`` seconds and VmRSS is read again. The figure is
   (RSS with the visitors - RSS before) / visitors. Kernel socket memory is not in RSS.

Each tunnel process needs two descriptors per visitor: the bench raises its open-file limit to
the hard limit (the children inherit it) and, if that is still too small for ``--visitors``,
uses as many visitors as fit and says so. ``direct`` has no daemon and gets no row.
``--json`` writes the raw figures as JSON to stdout (the table then goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import select
import shlex
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    HOST,
    REPO_ROOT,
    HarnessError,
    ProcessSet,
    Service,
    TunnelSpec,
    common_args,
    format_rows,
    free_ports,
    install_signal_handlers,
    is_listening,
    log,
    raise_nofile_limit,
    ratio,
    setup_echo_paths,
    tunnel_commands,
    wait_until,
    workspace,
    write_configs,
    write_json,
)

TUNNELS = ("ratui", "rathole")
BATCH = 250  # visitors opened at once
SPARE_FDS = 200  # descriptors a tunnel process needs besides two per visitor


@dataclass
class Result:
    path: str
    services: int
    idle_kib: dict[str, int]
    visitors: int
    before_kib: dict[str, int]
    with_visitors_kib: dict[str, int]

    def per_visitor_kib(self, role: str) -> float:
        return (self.with_visitors_kib[role] - self.before_kib[role]) / self.visitors


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise HarnessError(f"no VmRSS for pid {pid}")


# --------------------------------------------------------------------------- idle daemon


def idle_daemon(
    procs: ProcessSet, name: str, command: list[str], workdir: Path, args: argparse.Namespace
) -> dict[str, int]:
    ports = free_ports(1 + 2 * args.services)
    services = [
        Service(f"svc{i}", ports[1 + 2 * i], ports[2 + 2 * i]) for i in range(args.services)
    ]
    spec = TunnelSpec(ports[0], services)
    server_cfg, client_cfg = write_configs(spec, workdir, f"{name}-idle")
    log(f"{name}: idle daemon with {args.services} services")
    server = procs.spawn(f"{name}-idle-server", [*command, "--server", str(server_cfg)], REPO_ROOT)
    client = procs.spawn(f"{name}-idle-client", [*command, "--client", str(client_cfg)], REPO_ROOT)
    wait_until(
        lambda: all(is_listening(s.bind_port) for s in services),
        args.up_timeout,
        f"{name}'s {args.services} service ports to listen",
        0.1,
        [server, client],
    )
    time.sleep(args.settle)
    rss = {"server": rss_kib(server.pid), "client": rss_kib(client.pid)}
    procs.stop(server)
    procs.stop(client)
    return rss


# --------------------------------------------------------------------------- idle visitors


def open_visitors(port: int, count: int, timeout: float = 30.0) -> list[socket.socket]:
    """Open ``count`` visitors, BATCH at a time; each sends one byte and waits for the echo."""
    opened: list[socket.socket] = []
    poller = select.epoll()
    try:
        while len(opened) < count:
            batch: dict[int, list] = {}
            for _ in range(min(BATCH, count - len(opened))):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                code = sock.connect_ex((HOST, port))
                if code not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise HarnessError(f"visitor {len(opened)}: {errno.errorcode[code]}")
                batch[sock.fileno()] = [sock, False]
                poller.register(sock.fileno(), select.EPOLLOUT)
            deadline = time.monotonic() + timeout
            while batch:
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"{len(batch)} visitors got no echo within {timeout:.0f} s "
                        f"({len(opened)} open)"
                    )
                for fd, events in poller.poll(0.5):
                    sock, sent = batch[fd]
                    if events & (select.EPOLLERR | select.EPOLLHUP):
                        raise HarnessError(f"visitor {len(opened)} failed (reset or refused)")
                    if not sent:
                        sock.send(b"x")
                        batch[fd][1] = True
                        poller.modify(fd, select.EPOLLIN)
                    elif sock.recv(16):
                        poller.unregister(fd)
                        opened.append(batch.pop(fd)[0])
                    else:
                        raise HarnessError(f"visitor {len(opened)} closed by the path")
        return opened
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    finally:
        poller.close()


def per_visitor(
    procs: ProcessSet,
    commands: dict[str, list[str]],
    workdir: Path,
    args: argparse.Namespace,
    visitors: int,
) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
    paths = setup_echo_paths(procs, workdir, commands, args.up_timeout, log)
    out = {}
    for path in paths:
        if path.tunnel is None:
            continue
        pids = {role: p.pid for role, p in path.tunnel_procs().items()}
        for sock in open_visitors(path.port, 200):
            sock.close()
        time.sleep(args.settle)
        before = {role: rss_kib(pid) for role, pid in pids.items()}
        log(f"{path.name}: opening {visitors} visitors")
        socks = open_visitors(path.port, visitors)
        try:
            time.sleep(args.settle)
            path.check_alive()
            after = {role: rss_kib(pid) for role, pid in pids.items()}
        finally:
            for sock in socks:
                sock.close()
        per = {r: (after[r] - before[r]) / visitors for r in pids}
        log(f"{path.name}: {per['server']:.2f} / {per['client']:.2f} KiB per visitor (srv/cli)")
        out[path.name] = (before, after)
        time.sleep(1.0)
    return out


# --------------------------------------------------------------------------- report


def format_table(results: list[Result]) -> str:
    header = ["path", "idle RSS MiB srv/cli", "visitors", "KiB per idle visitor srv/cli"]
    header.append("vs rathole srv/cli")
    by_name = {r.path: r for r in results}
    body = []
    for r in results:
        ref = by_name.get("rathole")
        vs = "-"
        if ref is not None:
            vs = "/".join(
                _fmt(ratio(r.per_visitor_kib(role), ref.per_visitor_kib(role)), "{:.2f}x")
                for role in ("server", "client")
            )
        body.append(
            [
                r.path,
                f"{r.idle_kib['server'] / 1024:.1f} / {r.idle_kib['client'] / 1024:.1f}",
                str(r.visitors),
                f"{r.per_visitor_kib('server'):.2f} / {r.per_visitor_kib('client'):.2f}",
                vs,
            ]
        )
    return format_rows(header, body)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Idle RSS and memory per idle visitor: ratui vs rathole."
    )
    parser.add_argument("--services", type=int, default=10, help="idle daemon services (10)")
    parser.add_argument("--visitors", type=int, default=10000, help="open visitors (10000)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before RSS (2)")
    common_args(parser, repeat=1)
    args = parser.parse_args(argv)
    if args.services < 1 or args.visitors < 1 or args.settle < 0:
        parser.error("--services and --visitors must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    limit = raise_nofile_limit()
    visitors = min(args.visitors, (limit - SPARE_FDS) // 2)
    if visitors < args.visitors:
        log(
            f"open-file limit {limit}: a tunnel process needs 2 per visitor, so "
            f"{visitors} visitors instead of {args.visitors}"
        )
    try:
        commands = tunnel_commands(args)
        with workspace(args.log_dir) as workdir, ProcessSet(workdir) as procs:
            idle = {
                name: idle_daemon(procs, name, commands[name], workdir, args) for name in TUNNELS
            }
            rss = per_visitor(procs, commands, workdir, args, visitors)
        results = [
            Result(name, args.services, idle[name], visitors, rss[name][0], rss[name][1])
            for name in TUNNELS
        ]
        out = sys.stderr if args.json else sys.stdout
        print(
            f"\nMemory (VmRSS) on {HOST}: idle daemon with {args.services} services; extra "
            f"RSS per open idle visitor at {visitors} visitors (server / client process)\n",
            file=out,
        )
        print(format_table(results), file=out)
        if args.json:
            write_json(
                "memory",
                args,
                commands={k: shlex.join(v) for k, v in commands.items()},
                nofile_limit=limit,
                results=[
                    asdict(r)
                    | {
                        "per_visitor_kib": {
                            role: r.per_visitor_kib(role) for role in ("server", "client")
                        }
                    }
                    for r in results
                ],
            )
    except HarnessError as exc:
        log(f"bench/memory.py: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench/memory.py: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
