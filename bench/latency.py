"""Latency of a small request/response: ratui vs the reference rathole v0.5 vs no tunnel.

Usage::

    .venv/bin/python bench/latency.py [--count 2000] [--size 64] [--repeat 5] [--json]

One visitor connection per path stays open for the whole run; each round trip sends
``--size`` bytes and waits until they are all echoed back (blocking sockets, TCP_NODELAY,
timed with ``perf_counter_ns``). Paths, on 127.0.0.1 only:

1. ``direct``:  visitor -> echo service (bench/_echo.py on uvloop, its own process)
2. ``ratui``:   visitor -> ratui server's service port -> ratui client -> echo service
3. ``rathole``: the same through the reference binary (../shared/rathole/rathole)

A run is ``--count`` round trips on one path; runs go direct, ratui, rathole, direct, ...
``--repeat`` times, after 200 untimed round trips per path. Reported per path: the median
over runs of each run's p50 and p99 (microseconds), their ratio to rathole's, and the
tunnel's CPU time (server + client) per round trip.

``--json`` writes the raw figures as JSON to stdout (the table then goes to stderr).
Exit status: 0 ok, 1 a tunnel or tool failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    HOST,
    PATHS,
    EchoPath,
    HarnessError,
    ProcessSet,
    common_args,
    format_rows,
    install_signal_handlers,
    log,
    ratio,
    setup_echo_paths,
    tunnel_commands,
    workspace,
    write_json,
)

WARMUP = 200


@dataclass
class Sample:
    path: str
    rep: int
    count: int
    p50_us: float
    p99_us: float
    mean_us: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_us_per_trip(self) -> float | None:
        if not self.cpu_seconds:
            return None
        return sum(self.cpu_seconds.values()) / self.count * 1e6


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return float(sorted_values[index])


def round_trips(sock: socket.socket, count: int, size: int) -> list[int]:
    """``count`` request/response round trips of ``size`` bytes; nanoseconds each."""
    payload = bytes(size)
    recv_into = sock.recv_into
    buf = bytearray(max(size, 65536))
    now = time.perf_counter_ns
    times = []
    for _ in range(count):
        start = now()
        sock.sendall(payload)
        got = 0
        while got < size:
            n = recv_into(buf)
            if not n:
                raise HarnessError("the path closed the connection")
            got += n
        times.append(now() - start)
    return times


def connect(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=10.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def measure(path: EchoPath, sock: socket.socket, rep: int, args: argparse.Namespace) -> Sample:
    path.check_alive()
    cpu_before = path.cpu_seconds()
    times = sorted(round_trips(sock, args.count, args.size))
    cpu = {role: s - cpu_before[role] for role, s in path.cpu_seconds().items()}
    return Sample(
        path=path.name,
        rep=rep,
        count=args.count,
        p50_us=percentile(times, 0.50) / 1e3,
        p99_us=percentile(times, 0.99) / 1e3,
        mean_us=statistics.fmean(times) / 1e3,
        cpu_seconds=cpu,
    )


def run_all(paths: list[EchoPath], args: argparse.Namespace) -> list[Sample]:
    socks = {}
    try:
        for path in paths:
            socks[path.name] = connect(path.port)
            round_trips(socks[path.name], WARMUP, args.size)
        samples = []
        for rep in range(1, args.repeat + 1):
            for path in paths:
                s = measure(path, socks[path.name], rep, args)
                samples.append(s)
                log(
                    f"rep {rep}/{args.repeat} {path.name:8s} p50 {s.p50_us:7.1f} us  "
                    f"p99 {s.p99_us:7.1f} us"
                )
        return samples
    finally:
        for sock in socks.values():
            sock.close()


@dataclass
class Row:
    path: str
    p50_us: float
    p50_min: float
    p50_max: float
    p99_us: float
    p99_min: float
    p99_max: float
    p50_vs_rathole: float | None
    p99_vs_rathole: float | None
    cpu_us_per_trip: float | None


def summarize(samples: list[Sample]) -> list[Row]:
    def med(path: str, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in samples if s.path == path)

    rows = []
    for path in PATHS:
        mine = [s for s in samples if s.path == path]
        cpus = [c for s in mine if (c := s.cpu_us_per_trip) is not None]
        rows.append(
            Row(
                path=path,
                p50_us=med(path, "p50_us"),
                p50_min=min(s.p50_us for s in mine),
                p50_max=max(s.p50_us for s in mine),
                p99_us=med(path, "p99_us"),
                p99_min=min(s.p99_us for s in mine),
                p99_max=max(s.p99_us for s in mine),
                p50_vs_rathole=ratio(med(path, "p50_us"), med("rathole", "p50_us")),
                p99_vs_rathole=ratio(med(path, "p99_us"), med("rathole", "p99_us")),
                cpu_us_per_trip=statistics.median(cpus) if cpus else None,
            )
        )
    return rows


def format_table(rows: list[Row]) -> str:
    header = ["path", "p50 us (min-max)", "vs rathole", "p99 us (min-max)", "vs rathole"]
    header.append("CPU us/trip")
    body = [
        [
            r.path,
            f"{r.p50_us:.1f} ({r.p50_min:.1f}-{r.p50_max:.1f})",
            "-" if r.p50_vs_rathole is None else f"{r.p50_vs_rathole:.2f}x",
            f"{r.p99_us:.1f} ({r.p99_min:.1f}-{r.p99_max:.1f})",
            "-" if r.p99_vs_rathole is None else f"{r.p99_vs_rathole:.2f}x",
            "-" if r.cpu_us_per_trip is None else f"{r.cpu_us_per_trip:.1f}",
        ]
        for r in rows
    ]
    return format_rows(header, body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Small request/response latency: direct vs ratui vs rathole."
    )
    parser.add_argument("--count", type=int, default=2000, help="round trips per run (2000)")
    parser.add_argument("--size", type=int, default=64, help="bytes each way (64)")
    common_args(parser, repeat=5)
    args = parser.parse_args(argv)
    if args.count < 100 or args.repeat < 1 or args.size < 1:
        parser.error("--count must be >= 100, --repeat and --size positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    try:
        commands = tunnel_commands(args)
        with workspace(args.log_dir) as workdir, ProcessSet(workdir) as procs:
            paths = setup_echo_paths(procs, workdir, commands, args.up_timeout, log)
            samples = run_all(paths, args)
        rows = summarize(samples)
        out = sys.stderr if args.json else sys.stdout
        print(
            f"\nRequest/response latency on {HOST}: {args.size} bytes each way on an open "
            f"connection, {args.count} round trips per run, median of {args.repeat} "
            "interleaved runs; CPU = tunnel server+client\n",
            file=out,
        )
        print(format_table(rows), file=out)
        if args.json:
            write_json(
                "latency",
                args,
                commands=commands,
                summary=[asdict(r) for r in rows],
                samples=[asdict(s) for s in samples],
            )
    except HarnessError as exc:
        log(f"bench/latency.py: {exc}")
        return 1
    except (KeyboardInterrupt, OSError) as exc:
        log(f"bench/latency.py: {exc or 'interrupted'}")
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
