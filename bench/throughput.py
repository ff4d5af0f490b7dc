"""TCP bulk throughput of ratui vs the reference rathole v0.5 vs no tunnel, with iperf3.

Usage::

    .venv/bin/python bench/throughput.py [--seconds 5] [--streams 1,4] [--repeat 3] [--json]

What it measures, in one run, on 127.0.0.1 only:

1. ``direct``:  iperf3 client -> iperf3 server
2. ``ratui``:   iperf3 client -> ratui server service port -> ratui client -> iperf3 server
3. ``rathole``: the same path through the reference binary (../shared/rathole/rathole)

How: both tunnels get generated rathole-format TOML configs (plain TCP transport, one
service ``iperf``, all ports picked free) and are started as ``CMD --server cfg`` and
``CMD --client cfg``. A tunnel counts as up once a TCP connect to its service port succeeds
and a few bytes come back from an echo server standing in for the backend, plus 0.5 s for
data channels; then the echo server is replaced by ``iperf3 -s``. Each path has its own
iperf3 server. Tunnels stay up for the whole run.

For each stream count and each repetition, the paths run interleaved (direct, ratui,
rathole, direct, ...) so machine noise spreads over all of them; each run is
``iperf3 -c 127.0.0.1 -p PORT -t SECONDS -P STREAMS -J`` and its figure is
``end.sum_received.bits_per_second``. Reported per path and stream count: the median (and
min-max) Gbit/s, its ratio to rathole and to direct, the tunnel's CPU time (server + client,
utime+stime deltas from /proc/PID/stat across the iperf3 run) per Gbit received, and the
peak RSS (VmHWM, reset before each run) of the tunnel server and client.

``--json`` writes the raw figures as JSON to stdout (the table then goes to stderr).
``--log-dir DIR`` keeps the generated configs and every process's log (bench/out/ is
git-ignored); by default they live in a temp dir that is removed at the end.
``--warmup S`` runs each path untimed for S seconds first (default 1, 0 to skip).
Hidden options: ``--ratui-cmd "CMD"`` replaces ``<python> -m ratui`` (e.g. with the rathole
binary, to check the bench itself), ``--rathole-bin PATH`` the reference binary.
Progress always goes to stderr. Exit status: 0 ok, 1 a tunnel or tool failed, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    HOST,
    RATHOLE_BIN,
    HarnessError,
    ProcessSet,
    Tunnel,
    TunnelSpec,
    ensure_tool,
    free_port,
    install_signal_handlers,
    is_listening,
    log,
    reset_peak_rss,
    run_bounded,
    start_tunnel,
    tunnel_commands,
    wait_until,
    workspace,
    write_json,
)

PATHS = ("direct", "ratui", "rathole")


@dataclass
class BenchPath:
    """Where one path's iperf3 client connects, and the tunnel in between (if any)."""

    name: str
    port: int
    tunnel: Tunnel | None = None
    idle_rss_kib: dict[str, int] = field(default_factory=dict)
    end_rss_kib: dict[str, int] = field(default_factory=dict)

    def rss_kib(self) -> dict[str, int]:
        """Current VmRSS of the tunnel's server and client (empty for direct)."""
        roles = self.tunnel.by_role() if self.tunnel else {}
        return {role: proc.status_kib("VmRSS") for role, proc in roles.items()}


@dataclass
class Sample:
    """One iperf3 run over one path."""

    path: str
    streams: int
    rep: int
    bits_per_second: float
    bytes_received: int
    seconds: float
    retransmits: int | None
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss_kib: dict[str, int] = field(default_factory=dict)

    @property
    def gbit(self) -> float:
        return self.bytes_received * 8 / 1e9

    @property
    def cpu_per_gbit(self) -> float | None:
        if not self.cpu_seconds or self.gbit <= 0:
            return None
        return sum(self.cpu_seconds.values()) / self.gbit


@dataclass
class Row:
    """The summary of one path at one stream count."""

    path: str
    streams: int
    gbps_median: float
    gbps_min: float
    gbps_max: float
    vs_rathole: float | None
    vs_direct: float | None
    cpu_s_per_gbit: float | None
    peak_rss_mib: dict[str, float]


# --------------------------------------------------------------------------- arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TCP throughput: direct vs ratui vs rathole, with iperf3 on 127.0.0.1."
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="iperf3 -t (default 5)")
    parser.add_argument(
        "--streams", type=_int_list, default=[1, 4], help="comma-separated -P values (1,4)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per path and streams (3)")
    parser.add_argument("--json", action="store_true", help="raw figures as JSON on stdout")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="untimed iperf3 seconds per path first (1)"
    )
    parser.add_argument(
        "--up-timeout", type=float, default=20.0, help="seconds to wait for a tunnel (20)"
    )
    parser.add_argument(
        "--log-dir", type=Path, help="keep configs and process logs here (default: temp dir)"
    )
    parser.add_argument("--rathole-bin", type=Path, default=RATHOLE_BIN, help=argparse.SUPPRESS)
    # Hidden: replace the ratui command, e.g. with the rathole binary to test the bench.
    parser.add_argument("--ratui-cmd", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeat < 1 or args.warmup < 0:
        parser.error("--seconds and --repeat must be positive, --warmup not negative")
    return args


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text}") from exc
    values = list(dict.fromkeys(values))  # drop repeats, keep order
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("stream counts must be >= 1")
    return values


# --------------------------------------------------------------------------- setup


def start_iperf_server(procs: ProcessSet, iperf3: str, name: str, port: int) -> None:
    proc = procs.spawn(f"{name}-iperf3-server", [iperf3, "-s", "-B", HOST, "-p", str(port)])
    wait_until(lambda: is_listening(port), 10.0, f"iperf3 server on {port}", watch=[proc])


def setup_direct(procs: ProcessSet, iperf3: str) -> BenchPath:
    port = free_port()
    start_iperf_server(procs, iperf3, "direct", port)
    return BenchPath("direct", port)


def setup_tunnel(
    procs: ProcessSet,
    iperf3: str,
    name: str,
    command: list[str],
    workdir: Path,
    up_timeout: float,
) -> BenchPath:
    spec = TunnelSpec.single("iperf")
    svc = spec.service("iperf")
    log(f"starting {name}: {shlex.join(command)} --server/--client (service {svc.bind_port})")
    tunnel = start_tunnel(procs, name, command, spec, workdir, timeout=up_timeout)
    start_iperf_server(procs, iperf3, name, svc.local_port)
    path = BenchPath(name, svc.bind_port, tunnel)
    path.idle_rss_kib = path.rss_kib()
    return path


# --------------------------------------------------------------------------- measuring


def run_iperf(iperf3: str, port: int, seconds: float, streams: int) -> dict[str, Any]:
    """One ``iperf3 -c ... -J`` run; returns its parsed JSON (retries once if server busy)."""
    cmd = [iperf3, "-c", HOST, "-p", str(port), "-t", f"{seconds:g}", "-P", str(streams)]
    cmd += ["-J", "--connect-timeout", "5000"]
    for attempt in range(2):
        done = run_bounded(cmd, timeout=seconds + 30)
        try:
            result = json.loads(done.stdout)
        except json.JSONDecodeError:
            result = {"error": (done.stderr or done.stdout or "no output").strip()[:500]}
        error = result.get("error")
        if not error:
            return result
        if attempt == 0 and "busy" in str(error):
            time.sleep(1.0)
            continue
        raise HarnessError(f"iperf3 to port {port} failed: {error}")
    raise AssertionError("unreachable")


def measure(path: BenchPath, iperf3: str, seconds: float, streams: int, rep: int) -> Sample:
    """Run iperf3 over ``path`` once, with CPU and peak-RSS figures of its tunnel."""
    procs = path.tunnel.by_role() if path.tunnel else {}
    if path.tunnel:
        path.tunnel.check_alive()
    for proc in procs.values():
        reset_peak_rss(proc.pid)
    cpu_before = {role: p.cpu_seconds() for role, p in procs.items()}
    result = run_iperf(iperf3, path.port, seconds, streams)
    cpu = {role: p.cpu_seconds() - cpu_before[role] for role, p in procs.items()}
    peak = {role: p.status_kib("VmHWM") for role, p in procs.items()}
    if path.tunnel:
        path.tunnel.check_alive()
    received = result["end"]["sum_received"]
    return Sample(
        path=path.name,
        streams=streams,
        rep=rep,
        bits_per_second=float(received["bits_per_second"]),
        bytes_received=int(received["bytes"]),
        seconds=float(received["seconds"]),
        retransmits=result["end"].get("sum_sent", {}).get("retransmits"),
        cpu_seconds=cpu,
        peak_rss_kib=peak,
    )


def run_all(paths: list[BenchPath], iperf3: str, args: argparse.Namespace) -> list[Sample]:
    if args.warmup > 0:
        for path in paths:
            log(f"warm-up {path.name} ({args.warmup:g} s)")
            run_iperf(iperf3, path.port, args.warmup, max(args.streams))
    samples: list[Sample] = []
    for streams in args.streams:
        for rep in range(1, args.repeat + 1):
            for path in paths:
                sample = measure(path, iperf3, args.seconds, streams, rep)
                samples.append(sample)
                cpu = sample.cpu_per_gbit
                log(
                    f"P={streams} rep {rep}/{args.repeat} {path.name:8s} "
                    f"{sample.bits_per_second / 1e9:7.2f} Gbit/s"
                    + (f"  cpu {cpu:.3f} s/Gbit" if cpu is not None else "")
                )
                time.sleep(0.2)
    return samples


# --------------------------------------------------------------------------- report


def summarize(samples: list[Sample], streams_list: list[int]) -> list[Row]:
    medians = {
        (p, s): statistics.median(
            x.bits_per_second for x in samples if (x.path, x.streams) == (p, s)
        )
        for p in PATHS
        for s in streams_list
    }
    rows = []
    for streams in streams_list:
        for path in PATHS:
            mine = [x for x in samples if x.path == path and x.streams == streams]
            gbps = [x.bits_per_second / 1e9 for x in mine]
            cpus = [c for x in mine if (c := x.cpu_per_gbit) is not None]
            roles = sorted({r for x in mine for r in x.peak_rss_kib})
            rows.append(
                Row(
                    path=path,
                    streams=streams,
                    gbps_median=statistics.median(gbps),
                    gbps_min=min(gbps),
                    gbps_max=max(gbps),
                    vs_rathole=_ratio(medians[path, streams], medians["rathole", streams]),
                    vs_direct=_ratio(medians[path, streams], medians["direct", streams]),
                    cpu_s_per_gbit=statistics.median(cpus) if cpus else None,
                    peak_rss_mib={r: max(x.peak_rss_kib[r] for x in mine) / 1024 for r in roles},
                )
            )
    return rows


def _ratio(value: float, reference: float) -> float | None:
    return value / reference if reference > 0 else None


def format_table(rows: list[Row]) -> str:
    header = [
        "path",
        "streams",
        "Gbit/s median (min-max)",
        "vs rathole",
        "vs direct",
        "CPU s/Gbit",
        "RSS MiB srv/cli",
    ]
    body = [
        [
            row.path,
            str(row.streams),
            f"{row.gbps_median:.2f} ({row.gbps_min:.2f}-{row.gbps_max:.2f})",
            _fmt(row.vs_rathole, "{:.2f}x"),
            _fmt(row.vs_direct, "{:.2f}x"),
            _fmt(row.cpu_s_per_gbit, "{:.3f}"),
            "/".join(f"{row.peak_rss_mib[r]:.1f}" for r in ("server", "client"))
            if row.peak_rss_mib
            else "-",
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    right = {1, 3, 4, 5, 6}

    def fmt_line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt_line(header), rule, *(fmt_line(line) for line in body)])


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def tool_version(cmd: list[str]) -> str:
    try:
        done = run_bounded([*cmd, "--version"], timeout=10)
    except (HarnessError, OSError):
        return "?"
    lines = [" ".join(line.split()) for line in (done.stdout or done.stderr).splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "?"
    # rathole prints its bare name first and the version two lines below.
    return lines[0] if any(c.isdigit() for c in lines[0]) else "; ".join(lines[:3])


def report(
    args: argparse.Namespace,
    commands: dict[str, list[str]],
    iperf3: str,
    paths: list[BenchPath],
    samples: list[Sample],
) -> None:
    rows = summarize(samples, args.streams)
    table_out = sys.stderr if args.json else sys.stdout
    print(
        f"\nTCP throughput on {HOST}, iperf3 -t {args.seconds:g}, "
        f"median of {args.repeat} interleaved runs; CPU = tunnel server+client\n",
        file=table_out,
    )
    print(format_table(rows), file=table_out)
    if not args.json:
        return
    write_json(
        "throughput",
        args,
        commands=commands,
        versions={
            "iperf3": tool_version([iperf3]),
            **{name: tool_version(cmd) for name, cmd in commands.items()},
        },
        idle_rss_kib={p.name: p.idle_rss_kib for p in paths if p.tunnel},
        end_rss_kib={p.name: p.end_rss_kib for p in paths if p.tunnel},
        summary=[asdict(r) for r in rows],
        samples=[asdict(s) | {"cpu_s_per_gbit": s.cpu_per_gbit} for s in samples],
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    try:
        iperf3 = ensure_tool("iperf3")
        commands = tunnel_commands(args)
        with workspace(args.log_dir) as workdir, ProcessSet(workdir) as procs:
            paths = [setup_direct(procs, iperf3)]
            for name in ("ratui", "rathole"):
                paths.append(
                    setup_tunnel(procs, iperf3, name, commands[name], workdir, args.up_timeout)
                )
            samples = run_all(paths, iperf3, args)
            for path in paths:
                path.end_rss_kib = path.rss_kib()
            procs.stop_all()
        report(args, commands, iperf3, paths, samples)
    except HarnessError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; all bench processes stopped")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
