"""UDP datagrams/s and loss of ratui vs the reference rathole v0.5 vs no tunnel.

Usage::

    .venv/bin/python bench/udp.py [--seconds 3] [--size 512] [--visitors 16]
                                  [--loads closed,20000,50000] [--repeat 3] [--json]

What it measures, on 127.0.0.1 only, for three paths:

1. ``direct``:  visitors -> UDP echo service
2. ``ratui``:   visitors -> ratui server's UDP service port -> ratui client -> echo service
3. ``rathole``: the same through the reference binary (../shared/rathole/rathole)

Both tunnels get the same generated rathole-format TOML (plain TCP transport, one service
``udp`` with ``type = "udp"``, ports picked free) and run as ``CMD --server cfg`` and
``CMD --client cfg``. A tunnel counts as up once a probe datagram comes back through it. The
echo service (bench/_echo.py --udp) runs in its own process, one per path.

The load generator runs in this process: ``--visitors`` UDP sockets, each one a distinct
visitor, sending ``--size``-byte datagrams that carry a sequence number and the visitor's
number. Each load in ``--loads`` is either

* ``closed``: every visitor keeps ``--window`` datagrams unanswered at most and sends the next
  one when a reply comes (a visitor with no reply for 200 ms starts over): the best rate the
  path sustains without overload;
* a number: that many datagrams per second offered in total, whatever comes back (open loop),
  which shows where a path starts losing datagrams.

For each run: ``sent/s``, ``recv/s`` (distinct replies that came back during the run, per
second), ``loss`` (datagrams sent that never came back, after a 0.5 s drain) and the tunnel's
CPU time (server + client, /proc/PID/stat) per 100k datagrams delivered. A reply that reaches
another visitor than the one that sent it is counted as misrouted (it should never happen).
Paths run interleaved (direct, ratui, rathole, direct, ...) ``--repeat`` times; the table
shows medians.

``--json`` writes the raw figures as JSON to stdout (the table then goes to stderr).
``--log-dir DIR`` keeps configs and process logs (default: a temp dir removed at the end).
Exit status: 0 ok, 1 a tunnel failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import select
import shlex
import socket
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    HOST,
    RATHOLE_BIN,
    REPO_ROOT,
    HarnessError,
    Proc,
    ProcessSet,
    Service,
    TunnelSpec,
    free_ports,
    install_signal_handlers,
    log,
    tunnel_commands,
    wait_until,
    workspace,
    write_configs,
    write_json,
)

PATHS = ("direct", "ratui", "rathole")
_SEQ = struct.Struct("<QI")  # sequence number, visitor number
STALL = 0.2  # closed loop: a visitor with no reply for this long starts its window over
DRAIN = 0.5  # seconds to wait for late replies after sending stops


@dataclass
class BenchPath:
    name: str
    port: int
    procs: dict[str, Proc] = field(default_factory=dict)

    def check_alive(self) -> None:
        for proc in self.procs.values():
            if not proc.alive():
                raise HarnessError(
                    f"{proc.name} exited with code {proc.popen.returncode}; "
                    f"last log lines ({proc.log}):\n{proc.log_tail()}"
                )


@dataclass
class Sample:
    path: str
    load: str
    rep: int
    seconds: float
    sent: int
    received: int  # distinct replies, in the run or the drain after it
    received_in_run: int
    misrouted: int
    send_refused: int  # the generator's own socket buffer was full (not offered)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def sent_rate(self) -> float:
        return self.sent / self.seconds

    @property
    def recv_rate(self) -> float:
        return self.received_in_run / self.seconds

    @property
    def loss(self) -> float:
        return (self.sent - self.received) / self.sent if self.sent else 0.0

    @property
    def cpu_per_100k(self) -> float | None:
        if not self.cpu_seconds or not self.received:
            return None
        return sum(self.cpu_seconds.values()) / self.received * 100_000


# --------------------------------------------------------------------------- load generator


def run_load(
    port: int,
    visitors: int,
    size: int,
    seconds: float,
    rate: float | None,
    window: int,
) -> tuple[int, int, int, int, int, float]:
    """Send datagrams through ``port`` from ``visitors`` sockets; returns (sent, received,
    received during the run, misrouted, refused sends, elapsed seconds)."""
    size = max(size, _SEQ.size)
    pad = bytes(size - _SEQ.size)
    socks = []
    poller = select.epoll()
    index: dict[int, int] = {}
    try:
        for number in range(visitors):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            sock.connect((HOST, port))
            socks.append(sock)
            index[sock.fileno()] = number
            poller.register(sock.fileno(), select.EPOLLIN)
        seen = bytearray(1 << 16)
        sent = received = in_run = misrouted = refused = 0
        inflight = [0] * visitors
        last_reply = [0.0] * visitors
        turn = 0
        start = time.perf_counter()
        end = start + seconds
        last_reply = [start] * visitors
        while True:
            now = time.perf_counter()
            sending = now < end
            if not sending and now > end + DRAIN:
                break
            if sending:
                if rate is not None:
                    due = min(int((now - start) * rate) - sent, 256)
                    for _ in range(due):
                        number = turn % visitors
                        turn += 1
                        try:
                            socks[number].send(_SEQ.pack(sent, number) + pad)
                        except BlockingIOError:
                            refused += 1
                            continue
                        sent += 1
                else:
                    for number in range(visitors):
                        if now - last_reply[number] > STALL:
                            inflight[number] = 0
                            last_reply[number] = now
                        while inflight[number] < window:
                            try:
                                socks[number].send(_SEQ.pack(sent, number) + pad)
                            except BlockingIOError:
                                refused += 1
                                break
                            inflight[number] += 1
                            sent += 1
            events = poller.poll(0 if sending else 0.01)
            for fd, _ in events:
                number = index[fd]
                sock = socks[number]
                while True:
                    try:
                        data = sock.recv(65536)
                    except BlockingIOError:
                        break
                    except OSError:  # ICMP unreachable from a dead path
                        continue
                    if len(data) < _SEQ.size:
                        continue
                    seq, owner = _SEQ.unpack_from(data)
                    if owner != number:
                        misrouted += 1
                        continue
                    if seq >= len(seen):
                        seen.extend(bytes(max(seq + 1 - len(seen), len(seen))))
                    if not seen[seq]:
                        seen[seq] = 1
                        received += 1
                        if sending:
                            in_run += 1
                    if inflight[number]:
                        inflight[number] -= 1
                    last_reply[number] = time.perf_counter()
        return sent, received, in_run, misrouted, refused, seconds
    finally:
        poller.close()
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------- setup


def echo_forever(port: int) -> None:
    """The service behind the tunnel: a blocking recvfrom/sendto loop, the fastest echo plain
    Python has (bench/_echo.py's asyncio one tops out near 15k datagrams/s, below rathole)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    sock.bind((HOST, port))
    buf = bytearray(65536)
    view = memoryview(buf)
    recvfrom_into, sendto = sock.recvfrom_into, sock.sendto
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            size, addr = recvfrom_into(buf)
            with contextlib.suppress(OSError):
                sendto(view[:size], addr)


def spawn_udp_echo(procs: ProcessSet, name: str, port: int) -> Proc:
    return procs.spawn(name, [sys.executable, __file__, "--echo-udp", str(port)])


def udp_probe(port: int, timeout: float = 0.3) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(b"ratui-udp-bench-probe", (HOST, port))
            return sock.recv(64) == b"ratui-udp-bench-probe"
        except OSError:
            return False


def setup_direct(procs: ProcessSet) -> BenchPath:
    (port,) = free_ports(1)
    echo = spawn_udp_echo(procs, "direct-echo", port)
    wait_until(lambda: udp_probe(port), 10.0, "the direct UDP echo", 0.05, [echo])
    return BenchPath("direct", port)


def setup_tunnel(
    procs: ProcessSet, name: str, command: list[str], workdir: Path, up_timeout: float
) -> BenchPath:
    control, bind, local = free_ports(3)
    spec = TunnelSpec(control, [Service("udp", bind, local, type="udp")])
    server_cfg, client_cfg = write_configs(spec, workdir, name)
    log(f"starting {name}: {shlex.join(command)} --server/--client (UDP service {bind})")
    echo = spawn_udp_echo(procs, f"{name}-echo", local)
    server = procs.spawn(f"{name}-server", [*command, "--server", str(server_cfg)], REPO_ROOT)
    client = procs.spawn(f"{name}-client", [*command, "--client", str(client_cfg)], REPO_ROOT)
    watch = [echo, server, client]
    what = f"{name} to carry UDP (127.0.0.1:{bind})"
    wait_until(lambda: udp_probe(bind), up_timeout, what, 0.1, watch)
    return BenchPath(name, bind, {"server": server, "client": client})


# --------------------------------------------------------------------------- measuring


def measure(path: BenchPath, load: str, rep: int, args: argparse.Namespace) -> Sample:
    path.check_alive()
    cpu_before = {role: p.cpu_seconds() for role, p in path.procs.items()}
    rate = None if load == "closed" else float(load)
    sent, received, in_run, misrouted, refused, seconds = run_load(
        path.port, args.visitors, args.size, args.seconds, rate, args.window
    )
    cpu = {role: p.cpu_seconds() - cpu_before[role] for role, p in path.procs.items()}
    path.check_alive()
    return Sample(path.name, load, rep, seconds, sent, received, in_run, misrouted, refused, cpu)


def run_all(paths: list[BenchPath], args: argparse.Namespace) -> list[Sample]:
    for path in paths:
        run_load(path.port, args.visitors, args.size, 0.5, None, args.window)  # warm up
    samples = []
    for load in args.loads:
        for rep in range(1, args.repeat + 1):
            for path in paths:
                s = measure(path, load, rep, args)
                samples.append(s)
                log(
                    f"{load:>7s} rep {rep}/{args.repeat} {path.name:8s} "
                    f"sent {s.sent_rate:9.0f}/s  recv {s.recv_rate:9.0f}/s  "
                    f"loss {s.loss * 100:6.2f}%"
                    + (f"  misrouted {s.misrouted}" if s.misrouted else "")
                )
                time.sleep(0.3)
    return samples


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    load: str
    path: str
    sent_per_s: float
    recv_per_s: float
    recv_min: float
    recv_max: float
    loss_pct: float
    vs_rathole: float | None
    cpu_s_per_100k: float | None
    misrouted: int


def summarize(samples: list[Sample], loads: list[str]) -> list[Row]:
    rows = []
    for load in loads:
        med = {
            p: statistics.median(s.recv_rate for s in samples if (s.path, s.load) == (p, load))
            for p in PATHS
        }
        for path in PATHS:
            mine = [s for s in samples if (s.path, s.load) == (path, load)]
            cpus = [c for s in mine if (c := s.cpu_per_100k) is not None]
            rows.append(
                Row(
                    load=load,
                    path=path,
                    sent_per_s=statistics.median(s.sent_rate for s in mine),
                    recv_per_s=med[path],
                    recv_min=min(s.recv_rate for s in mine),
                    recv_max=max(s.recv_rate for s in mine),
                    loss_pct=statistics.median(s.loss for s in mine) * 100,
                    vs_rathole=med[path] / med["rathole"] if med["rathole"] else None,
                    cpu_s_per_100k=statistics.median(cpus) if cpus else None,
                    misrouted=sum(s.misrouted for s in mine),
                )
            )
    return rows


def format_table(rows: list[Row]) -> str:
    header = [
        "load",
        "path",
        "sent/s",
        "recv/s median (min-max)",
        "loss",
        "vs rathole",
        "CPU s/100k",
        "misrouted",
    ]
    body = [
        [
            "closed loop" if r.load == "closed" else f"{float(r.load):.0f}/s offered",
            r.path,
            f"{r.sent_per_s:.0f}",
            f"{r.recv_per_s:.0f} ({r.recv_min:.0f}-{r.recv_max:.0f})",
            f"{r.loss_pct:.2f}%",
            "-" if r.vs_rathole is None else f"{r.vs_rathole:.2f}x",
            "-" if r.cpu_s_per_100k is None else f"{r.cpu_s_per_100k:.2f}",
            str(r.misrouted),
        ]
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def report(args: argparse.Namespace, commands: dict[str, list[str]], samples: list[Sample]) -> None:
    rows = summarize(samples, args.loads)
    out = sys.stderr if args.json else sys.stdout
    print(
        f"\nUDP through {HOST}: {args.visitors} visitors, {args.size}-byte datagrams, "
        f"{args.seconds:g} s per run, median of {args.repeat} interleaved runs; "
        f"closed loop = window {args.window} per visitor; CPU = tunnel server+client\n",
        file=out,
    )
    print(format_table(rows), file=out)
    if args.json:
        write_json(
            "udp",
            args,
            commands=commands,
            summary=[asdict(r) for r in rows],
            samples=[
                asdict(s) | {"loss": s.loss, "recv_per_s": s.recv_rate, "sent_per_s": s.sent_rate}
                for s in samples
            ],
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="UDP datagrams/s and loss: direct vs ratui vs rathole on 127.0.0.1."
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per run (3)")
    parser.add_argument("--size", type=int, default=512, help="datagram bytes, 12-2048 (512)")
    parser.add_argument("--visitors", type=int, default=16, help="visitor sockets (16)")
    parser.add_argument("--window", type=int, default=8, help="closed loop: in flight (8)")
    parser.add_argument(
        "--loads",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=["closed", "20000", "50000"],
        help="comma-separated: closed and/or offered datagrams/s (closed,20000,50000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per path and load (3)")
    parser.add_argument("--json", action="store_true", help="raw figures as JSON on stdout")
    parser.add_argument("--up-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, help="keep configs and logs here")
    parser.add_argument("--rathole-bin", type=Path, default=RATHOLE_BIN, help=argparse.SUPPRESS)
    parser.add_argument("--ratui-cmd", help=argparse.SUPPRESS)
    parser.add_argument("--echo-udp", type=int, help=argparse.SUPPRESS)  # the child echo
    args = parser.parse_args(argv)
    if not 12 <= args.size <= 2048:
        parser.error("--size must be 12..2048 (rathole cuts longer datagrams)")
    if args.seconds <= 0 or args.repeat < 1 or args.visitors < 1 or args.window < 1:
        parser.error("--seconds, --repeat, --visitors and --window must be positive")
    for load in args.loads:
        if load != "closed":
            try:
                if float(load) <= 0:
                    raise ValueError
            except ValueError:
                parser.error(f"--loads: {load!r} is neither 'closed' nor a positive rate")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo_udp is not None:
        echo_forever(args.echo_udp)
        return 0
    install_signal_handlers()
    try:
        commands = tunnel_commands(args)
        with (
            workspace(args.log_dir, prefix="ratui-udp-bench-") as workdir,
            ProcessSet(workdir) as procs,
        ):
            paths = [setup_direct(procs)]
            for name in ("ratui", "rathole"):
                paths.append(setup_tunnel(procs, name, commands[name], workdir, args.up_timeout))
            samples = run_all(paths, args)
            report(args, commands, samples)
    except HarnessError as exc:
        log(f"bench/udp.py: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench/udp.py: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
