"""New visitor connections per second: ratui vs the reference rathole v0.5 vs no tunnel.

Usage::

    .venv/bin/python bench/connrate.py [--seconds 4] [--concurrency 16] [--repeat 3] [--json]

Each visitor is a short request/response: connect, send ``--size`` bytes, read them back from
an echo service behind the path, close. A bounded load loop keeps ``--concurrency`` visitors
in flight and starts the next one as soon as one finishes (closed loop: the offered load
follows what the path sustains, so a slow path is measured, not flooded). Paths, on
127.0.0.1 only:

1. ``direct``:  visitors -> echo service (bench/_echo.py on uvloop, its own process)
2. ``ratui``:   visitors -> ratui server's service port -> ratui client -> echo service
3. ``rathole``: the same through the reference binary (../shared/rathole/rathole)

The load loop runs in this process on raw non-blocking sockets and epoll. Reported per path:
completed visitors per second (median, min-max of ``--repeat`` interleaved runs), the ratio to
rathole, the median time of one visitor (connect to close), failures (refused, reset, no
answer within 5 s) and the tunnel's CPU time (server + client) per 1000 visitors (each
role's own in the progress lines on stderr, with the share of it spent in the kernel: the
rest is the process's own code, i.e. the interpreter and the event loop for ratui).

``--json`` writes the raw figures as JSON to stdout (the table then goes to stderr).
Exit status: 0 ok, 1 a tunnel or tool failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import select
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    CLK_TCK,
    HOST,
    PATHS,
    EchoPath,
    HarnessError,
    ProcessSet,
    common_args,
    format_rows,
    install_signal_handlers,
    log,
    raise_nofile_limit,
    ratio,
    setup_echo_paths,
    tunnel_commands,
    workspace,
    write_json,
)

GIVE_UP = 5.0  # seconds one visitor may take before it counts as failed
_CONNECTING, _WAITING = 0, 1


@dataclass
class Sample:
    path: str
    rep: int
    seconds: float
    completed: int
    failed: int
    visit_ms_median: float
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    kernel_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds

    @property
    def cpu_per_1000(self) -> float | None:
        if not self.cpu_seconds or not self.completed:
            return None
        return sum(self.cpu_seconds.values()) / self.completed * 1000


def run_load(port: int, concurrency: int, seconds: float, size: int) -> tuple[int, int, list[int]]:
    """Keep ``concurrency`` request/response visitors going for ``seconds``; returns
    (completed, failed, per-visitor nanoseconds). Visitors still open at the end are
    finished (up to GIVE_UP s) but not counted."""
    request = bytes(range(256)) * (size // 256 + 1)
    request = request[:size]
    poller = select.epoll()
    live: dict[int, list] = {}  # fd -> [socket, state, bytes back, started ns]
    completed = failed = 0
    times: list[int] = []
    now_ns = time.perf_counter_ns

    def start() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((HOST, port))
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise HarnessError(f"connect to {port} failed at once: {errno.errorcode[code]}")
        live[sock.fileno()] = [sock, _CONNECTING, 0, now_ns()]
        poller.register(sock.fileno(), select.EPOLLOUT)

    def finish(fd: int) -> None:
        entry = live.pop(fd)
        poller.unregister(fd)
        entry[0].close()

    try:
        for _ in range(concurrency):
            start()
        begin = time.perf_counter()
        end = begin + seconds
        last_check = begin
        while live:
            clock = time.perf_counter()
            running = clock < end
            if not running and clock > end + GIVE_UP:
                break
            for fd, events in poller.poll(0.05):
                entry = live.get(fd)
                if entry is None:
                    continue
                sock = entry[0]
                ok = True
                try:
                    if entry[1] == _CONNECTING:
                        if events & (select.EPOLLERR | select.EPOLLHUP):
                            ok = False
                        else:
                            sock.send(request)
                            entry[1] = _WAITING
                            poller.modify(fd, select.EPOLLIN)
                            continue
                    else:
                        data = sock.recv(65536)
                        if data:
                            entry[2] += len(data)
                            if entry[2] < size:
                                continue
                        else:
                            ok = False
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    ok = False
                started = entry[3]
                finish(fd)
                if running:
                    if ok:
                        completed += 1
                        times.append(now_ns() - started)
                    else:
                        failed += 1
                    start()
            if clock - last_check > 1.0:  # visitors that never get an answer
                last_check = clock
                limit = now_ns() - int(GIVE_UP * 1e9)
                for fd in [fd for fd, e in live.items() if e[3] < limit]:
                    finish(fd)
                    if running:
                        failed += 1
                        start()
    finally:
        for entry in live.values():
            entry[0].close()
        poller.close()
    return completed, failed, times


def system_seconds(pid: int) -> float:
    """stime of ``pid`` (all its threads) in seconds: its CPU time in the kernel."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    # Field 15 (stime), counted from field 3 just after the parenthesised command name.
    return int(stat[stat.rindex(")") + 2 :].split()[12]) / CLK_TCK


def kernel_seconds(path: EchoPath) -> dict[str, float]:
    return {role: system_seconds(p.pid) for role, p in path.tunnel_procs().items()}


def measure(path: EchoPath, rep: int, args: argparse.Namespace) -> Sample:
    path.check_alive()
    cpu_before, kernel_before = path.cpu_seconds(), kernel_seconds(path)
    completed, failed, times = run_load(path.port, args.concurrency, args.seconds, args.size)
    cpu = {role: s - cpu_before[role] for role, s in path.cpu_seconds().items()}
    kernel = {role: s - kernel_before[role] for role, s in kernel_seconds(path).items()}
    path.check_alive()
    visit = statistics.median(times) / 1e6 if times else float("nan")
    return Sample(path.name, rep, args.seconds, completed, failed, visit, cpu, kernel)


def run_all(paths: list[EchoPath], args: argparse.Namespace) -> list[Sample]:
    for path in paths:
        run_load(path.port, args.concurrency, 0.5, args.size)  # warm up
    samples = []
    for rep in range(1, args.repeat + 1):
        for path in paths:
            s = measure(path, rep, args)
            samples.append(s)
            cpu = "  ".join(
                f"{role} {seconds / max(1, s.completed) * 1000:.3f}"
                f" (kernel {s.kernel_seconds[role] / seconds if seconds else 0:.0%})"
                for role, seconds in s.cpu_seconds.items()
            )
            log(
                f"rep {rep}/{args.repeat} {path.name:8s} {s.rate:8.0f} visitors/s  "
                f"visit {s.visit_ms_median:.2f} ms  failed {s.failed}"
                + (f"  CPU s/1000: {cpu}" if cpu else "")
            )
            time.sleep(0.5)  # let closing connections settle between paths
    return samples


@dataclass
class Row:
    path: str
    rate_median: float
    rate_min: float
    rate_max: float
    vs_rathole: float | None
    visit_ms: float
    failed: int
    cpu_s_per_1000: float | None


def summarize(samples: list[Sample]) -> list[Row]:
    med = {p: statistics.median(s.rate for s in samples if s.path == p) for p in PATHS}
    rows = []
    for path in PATHS:
        mine = [s for s in samples if s.path == path]
        cpus = [c for s in mine if (c := s.cpu_per_1000) is not None]
        rows.append(
            Row(
                path=path,
                rate_median=med[path],
                rate_min=min(s.rate for s in mine),
                rate_max=max(s.rate for s in mine),
                vs_rathole=ratio(med[path], med["rathole"]),
                visit_ms=statistics.median(s.visit_ms_median for s in mine),
                failed=sum(s.failed for s in mine),
                cpu_s_per_1000=statistics.median(cpus) if cpus else None,
            )
        )
    return rows


def format_table(rows: list[Row]) -> str:
    header = ["path", "visitors/s median (min-max)", "vs rathole", "visit ms", "failed"]
    header.append("CPU s/1000")
    body = [
        [
            r.path,
            f"{r.rate_median:.0f} ({r.rate_min:.0f}-{r.rate_max:.0f})",
            "-" if r.vs_rathole is None else f"{r.vs_rathole:.2f}x",
            f"{r.visit_ms:.2f}",
            str(r.failed),
            "-" if r.cpu_s_per_1000 is None else f"{r.cpu_s_per_1000:.3f}",
        ]
        for r in rows
    ]
    return format_rows(header, body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="New visitor connections per second: direct vs ratui vs rathole."
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per run (4)")
    parser.add_argument("--concurrency", type=int, default=16, help="visitors in flight (16)")
    parser.add_argument("--size", type=int, default=64, help="request = response bytes (64)")
    common_args(parser)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1 or args.concurrency < 1 or args.size < 1:
        parser.error("--seconds, --repeat, --concurrency and --size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    raise_nofile_limit()
    try:
        commands = tunnel_commands(args)
        with workspace(args.log_dir) as workdir, ProcessSet(workdir) as procs:
            paths = setup_echo_paths(procs, workdir, commands, args.up_timeout, log)
            samples = run_all(paths, args)
        rows = summarize(samples)
        out = sys.stderr if args.json else sys.stdout
        print(
            f"\nNew visitors per second on {HOST}: connect, {args.size} bytes there and back, "
            f"close; {args.concurrency} in flight, {args.seconds:g} s per run, median of "
            f"{args.repeat} interleaved runs; CPU = tunnel server+client\n",
            file=out,
        )
        print(format_table(rows), file=out)
        if args.json:
            write_json(
                "connrate",
                args,
                commands=commands,
                summary=[asdict(r) for r in rows],
                samples=[asdict(s) | {"rate": s.rate} for s in samples],
            )
    except HarnessError as exc:
        log(f"bench/connrate.py: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench/connrate.py: interrupted")
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
