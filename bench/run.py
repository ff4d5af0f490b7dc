"""Every bench of issue 10 in one run, and one table: direct, ratui, rathole and the ratios.

Usage::

    .venv/bin/python bench/run.py [--quick] [--only throughput,noise,connrate,latency,udp,memory]
                                  [--results bench/RESULTS.md | --no-results] [--log-dir DIR]

It runs, one after the other and each with ``--json``, ``bench/throughput.py`` (iperf3 TCP
bulk, 1 and 4 streams), ``bench/noise.py`` (the same over the Noise transport),
``bench/connrate.py`` (new visitor connections per second), ``bench/latency.py`` (small
request/response p50 and p99), ``bench/udp.py`` (datagrams/s in a closed loop, with the loss)
and ``bench/memory.py`` (idle RSS with 10 services, extra RSS per open idle visitor at 10,000
visitors), then prints the figures of all of them as one Markdown table with each target of
the issue and whether it is met. Inside each bench the paths run interleaved and the figures
are medians (see each script's docstring for exactly what is measured). Progress goes to
stderr. Unless ``--no-results`` (or ``--only``) is given, the table, the machine and the date
are written to ``bench/RESULTS.md``. ``--quick`` shortens every bench (a smoke run: the
figures are then too noisy to quote). Exit status: 0 when every bench ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _harness import RATHOLE_BIN, REPO_ROOT  # noqa: E402

BENCHES = ("throughput", "noise", "connrate", "latency", "udp", "memory")

FULL = {
    "throughput": ["--seconds", "5", "--streams", "1,4", "--repeat", "5"],
    "noise": ["--seconds", "5", "--streams", "1,4", "--repeat", "3", "--transports", "noise"],
    "connrate": ["--seconds", "4", "--concurrency", "16", "--repeat", "5"],
    "latency": ["--count", "3000", "--repeat", "7"],
    "udp": ["--seconds", "3", "--loads", "closed", "--repeat", "5"],
    "memory": ["--services", "10", "--visitors", "10000"],
}
QUICK = {
    "throughput": ["--seconds", "2", "--streams", "1,4", "--repeat", "1", "--warmup", "0"],
    "noise": ["--seconds", "2", "--streams", "1,4", "--repeat", "1", "--transports", "noise"],
    "connrate": ["--seconds", "1", "--repeat", "1"],
    "latency": ["--count", "500", "--repeat", "1"],
    "udp": ["--seconds", "1", "--loads", "closed", "--repeat", "1"],
    "memory": ["--services", "10", "--visitors", "1000", "--settle", "1"],
}


@dataclass
class Line:
    """One row of the table: a figure for each path, the ratio and the target."""

    figure: str
    unit: str
    direct: float | None
    ratui: float | None
    rathole: float | None
    target: str  # e.g. ">= 2.0" (ratio), "<= 30" (ratui's own value), "" (reported)
    on: str = "ratio"  # what the target applies to: "ratio" or "value"
    digits: int = 2

    @property
    def ratio(self) -> float | None:
        if self.ratui is None or not self.rathole:
            return None
        return self.ratui / self.rathole

    @property
    def met(self) -> str:
        if not self.target:
            return ""
        value = self.ratio if self.on == "ratio" else self.ratui
        if value is None:
            return "?"
        op, limit = self.target.split()
        ok = value >= float(limit) if op == ">=" else value <= float(limit)
        return "yes" if ok else "**no**"

    def cells(self) -> list[str]:
        def num(value: float | None) -> str:
            return "-" if value is None else f"{value:,.{self.digits}f}"

        target = self.target and (
            f"ratio {self.target}" if self.on == "ratio" else f"ratui {self.target}"
        )
        return [
            f"{self.figure} ({self.unit})",
            num(self.direct),
            num(self.ratui),
            num(self.rathole),
            "-" if self.ratio is None else f"{self.ratio:.2f}x",
            target or "reported",
            self.met,
        ]


# --------------------------------------------------------------------------- running


def run_bench(name: str, extra: list[str], log_dir: Path | None) -> dict[str, Any]:
    """Run ``bench/NAME.py --json`` and return its JSON document (stderr passes through)."""
    cmd = [sys.executable, str(BENCH / f"{name}.py"), *extra, "--json"]
    if log_dir is not None:
        cmd += ["--log-dir", str(log_dir / name)]
    log(f"\n=== {name}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT, check=False)
    log(f"=== {name}: exit {done.returncode} after {time.monotonic() - started:.0f} s")
    if done.returncode != 0:
        raise RuntimeError(f"bench/{name}.py exited with {done.returncode}")
    # noise.py prints its table on stdout before the JSON document: decode from the first "{".
    start = done.stdout.find("\n{") + 1 if not done.stdout.startswith("{") else 0
    doc, _ = json.JSONDecoder().raw_decode(done.stdout[start:])
    return doc


def lines_throughput(doc: dict[str, Any]) -> list[Line]:
    rows = {(r["path"], r["streams"]): r for r in doc["summary"]}
    out = []
    for streams in sorted({s for _, s in rows}):
        g = {p: rows[p, streams]["gbps_median"] for p in ("direct", "ratui", "rathole")}
        label = "1 stream" if streams == 1 else f"{streams} streams"
        out.append(Line(f"TCP bulk, {label}", "Gbit/s", *g.values(), ">= 2.0"))
    for streams in sorted({s for _, s in rows}):
        c = {p: rows[p, streams]["cpu_s_per_gbit"] for p in ("ratui", "rathole")}
        label = "1 stream" if streams == 1 else f"{streams} streams"
        out.append(Line(f"CPU per Gbit/s, {label}", "CPU s/Gbit", None, *c.values(), "", digits=3))
    return out


def lines_noise(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    out = []
    for streams in sorted({r["streams"] for r in rows}):
        med = {
            r["path"].split("-")[0]: statistics.median(r["gbps"])
            for r in rows
            if r["streams"] == streams
        }
        label = "1 stream" if streams == 1 else f"{streams} streams"
        out.append(
            Line(
                f"Noise bulk, {label}",
                "Gbit/s",
                None,
                med.get("ratui"),
                med.get("rathole"),
                ">= 1.5",
            )
        )
    return out


def lines_connrate(doc: dict[str, Any]) -> list[Line]:
    r = {row["path"]: row for row in doc["summary"]}
    rate = [r[p]["rate_median"] for p in ("direct", "ratui", "rathole")]
    return [Line("New visitors per second", "visitors/s", *rate, ">= 1.0", digits=0)]


def lines_latency(doc: dict[str, Any]) -> list[Line]:
    r = {row["path"]: row for row in doc["summary"]}
    return [
        Line(
            f"Request/response latency {q}",
            "us",
            *(r[p][f"{q}_us"] for p in ("direct", "ratui", "rathole")),
            "<= 1.2",
            digits=1,
        )
        for q in ("p50", "p99")
    ]


def lines_udp(doc: dict[str, Any]) -> list[Line]:
    r = {row["path"]: row for row in doc["summary"] if row["load"] == "closed"}
    loss = max(r[p]["loss_pct"] for p in ("ratui", "rathole"))
    unit = f"datagrams/s, closed loop, loss {loss:.2f}%"
    rate = [r[p]["recv_per_s"] for p in ("direct", "ratui", "rathole")]
    return [Line("UDP datagrams/s without loss", unit, *rate, ">= 1.0", digits=0)]


def lines_memory(doc: dict[str, Any]) -> list[Line]:
    r = {row["path"]: row for row in doc["results"]}
    services = r["ratui"]["services"]
    visitors = r["ratui"]["visitors"]
    out = []
    for role in ("server", "client"):
        idle = [r[p]["idle_kib"][role] / 1024 for p in ("ratui", "rathole")]
        out.append(
            Line(
                f"Idle RSS, {services} services, {role}",
                "MiB",
                None,
                *idle,
                "<= 30",
                on="value",
                digits=1,
            )
        )
    for role in ("server", "client"):
        per = [r[p]["per_visitor_kib"][role] for p in ("ratui", "rathole")]
        out.append(
            Line(
                f"Extra RSS per open idle visitor at {visitors:,}, {role}",
                "KiB",
                None,
                *per,
                "<= 4",
                on="value",
            )
        )
    return out


LINES = {
    "throughput": lines_throughput,
    "noise": lines_noise,
    "connrate": lines_connrate,
    "latency": lines_latency,
    "udp": lines_udp,
    "memory": lines_memory,
}


# --------------------------------------------------------------------------- report


def markdown(lines: list[Line]) -> str:
    header = ["figure", "direct", "ratui", "rathole", "ratui/rathole", "target", "met"]
    body = [line.cells() for line in lines]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["--:"] * 4 + ["---"] * 2)]
    out[-1] += "|"
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(out)


def machine() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except OSError:
            return "?"
        text = (done.stdout or done.stderr).strip().splitlines()
        return text[0] if text else "?"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop

        uv = uvloop.__version__
    except ImportError:
        uv = "not installed"
    rathole = "?"
    try:
        done = subprocess.run(
            [str(RATHOLE_BIN), "--version"], capture_output=True, text=True, timeout=10
        )
        for line in done.stdout.splitlines():
            if line.startswith("Build Version"):
                rathole = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    mem = "?"
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "uvloop": uv,
        "rathole": f"{rathole} ({RATHOLE_BIN})",
        "iperf3": first(["iperf3", "--version"]),
        "open-file limit": f"{nofile} (a tunnel process needs two per visitor)",
    }


def write_results(path: Path, table: str, argv: list[str], info: dict[str, str]) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join([".venv/bin/python", "bench/run.py", *argv])
    machine_lines = "\n".join(f"- {k}: {v}" for k, v in info.items())
    path.write_text(
        f"""# ratui benchmark results

The latest full run of the benches of issue 10, made with

    {command}

Every figure is for direct (no tunnel), ratui and the reference rathole v0.5, all on
127.0.0.1 of one machine, server and client of each tunnel included. Each one is the median of
interleaved runs (the docstrings of the scripts in `bench/` say exactly what is measured); the
ratio is ratui / rathole. For latency and memory lower is better, for everything else higher
is better. "target" is the issue's: on the ratio, or on ratui's own value.

Date: {now}

Machine:
{machine_lines}

{table}

Where the time goes and what is left: [PROFILE.md](PROFILE.md).
"""
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Every bench of issue 10, one table.")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument(
        "--only",
        type=lambda s: [b for b in s.split(",") if b],
        default=list(BENCHES),
        help=f"comma-separated subset of {','.join(BENCHES)}",
    )
    parser.add_argument(
        "--results", type=Path, default=BENCH / "RESULTS.md", help="where to write the table"
    )
    parser.add_argument("--no-results", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--log-dir", type=Path, help="keep every bench's configs and logs")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    lines: list[Line] = []
    failed: list[str] = []
    try:
        for name in BENCHES:
            if name not in args.only:
                continue
            try:
                doc = run_bench(name, settings[name], args.log_dir)
                lines += LINES[name](doc)
            except (RuntimeError, ValueError, KeyError) as exc:
                log(f"=== {name}: failed: {exc}")
                failed.append(name)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    table = markdown(lines)
    print()
    print(table)
    if failed:
        print(f"\nfailed: {', '.join(failed)} (see the log above)")
    complete = not failed and set(args.only) == set(BENCHES) and not args.quick
    if complete and not args.no_results:
        write_results(args.results, table, argv, machine())
        log(f"\nwritten to {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
