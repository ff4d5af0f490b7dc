"""Shared helpers for the ratui benches (throughput, and later noise, UDP, latency, memory).

Everything here talks to 127.0.0.1 only.

- ports: :func:`free_ports` hands out distinct free TCP ports on 127.0.0.1.
- configs: :class:`TunnelSpec` describes a rathole v0.5 tunnel (control port, services,
  optional transport tables); :func:`write_configs` renders the server and client TOML files
  that both ratui and the reference rathole binary read.
- processes: :class:`ProcessSet` spawns subprocesses (own session, killed if the bench dies,
  logs to files) and kills all of them on exit; :func:`install_signal_handlers` turns
  SIGTERM/SIGHUP into an exception so ``finally`` blocks run.
- waiting: :func:`wait_until`, :func:`is_listening`, :func:`tcp_echo_probe`,
  :func:`start_tunnel` (starts server + client and waits until data flows end to end).
- proc stats: :func:`cpu_seconds`, :func:`status_kib`, :func:`reset_peak_rss` read
  ``/proc/PID/stat`` and ``/proc/PID/status``.
- echo paths (connection rate, latency, memory): :func:`setup_echo_paths` starts ``direct``,
  ``ratui`` and ``rathole`` paths to an echo backend each; :func:`raise_nofile_limit`,
  :func:`common_args`, :func:`tunnel_commands`, :func:`workspace`, :func:`ratio`,
  :func:`format_rows` are the small pieces every bench shares.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RATHOLE_BIN = (REPO_ROOT / ".." / "shared" / "rathole" / "rathole").resolve()
ECHO_SCRIPT = BENCH_DIR / "_echo.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class HarnessError(RuntimeError):
    """A bench cannot go on (tool missing, tunnel not up, process died); message is for users."""


# --------------------------------------------------------------------------- tools


def ensure_tool(name: str, apt_package: str | None = None, timeout: float = 300.0) -> str:
    """Return the path of executable ``name``; apt-get install it when missing and root."""
    found = shutil.which(name)
    if found:
        return found
    package = apt_package or name
    if os.geteuid() != 0:
        raise HarnessError(
            f"{name} is not installed and we are not root: run `sudo apt-get install -y {package}`"
        )
    print(f"{name} not found, running apt-get install -y {package} ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    for attempt in ([install], [["apt-get", "update"], install]):
        if all(_run_quiet(cmd, env, timeout) for cmd in attempt) and shutil.which(name):
            return shutil.which(name) or name
    raise HarnessError(f"could not install {package} with apt-get; install it and retry")


def _run_quiet(cmd: Sequence[str], env: Mapping[str, str], timeout: float) -> bool:
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


# --------------------------------------------------------------------------- ports

_handed_out: set[int] = set()


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    The sockets are held open together so the kernel gives distinct ports, and a port is
    never handed out twice by this process.
    """
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def free_port() -> int:
    return free_ports(1)[0]


# --------------------------------------------------------------------------- configs


@dataclass
class Service:
    """One tunnelled service: visitors connect to ``bind_port``, traffic goes to ``local_port``.

    ``extra`` holds more per-service keys (e.g. ``{"nodelay": False}``), written on both sides.
    """

    name: str
    bind_port: int
    local_port: int
    token: str = "bench-token"
    type: str = "tcp"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TunnelSpec:
    """A rathole v0.5 tunnel: one control port and its services.

    ``server_transport`` / ``client_transport`` become ``[server.transport]`` /
    ``[client.transport]`` tables; nested dicts become sub-tables, so Noise is e.g.
    ``server_transport={"type": "noise", "noise": {"local_private_key": KEY}}`` and
    ``client_transport={"type": "noise", "noise": {"remote_public_key": PUB}}``.
    ``server_extra`` / ``client_extra`` add keys to ``[server]`` / ``[client]``
    (e.g. ``heartbeat_interval``).
    """

    control_port: int
    services: list[Service]
    server_transport: dict[str, Any] | None = None
    client_transport: dict[str, Any] | None = None
    server_extra: dict[str, Any] = field(default_factory=dict)
    client_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def single(cls, name: str = "iperf", **kwargs: Any) -> TunnelSpec:
        """A one-service tunnel with all three ports picked free (control, bind, local)."""
        control, bind, local = free_ports(3)
        return cls(control, [Service(name, bind, local)], **kwargs)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def server_config(self) -> dict[str, Any]:
        return self._config(
            "server",
            "bind_addr",
            "bind_addr",
            lambda s: s.bind_port,
            self.server_extra,
            self.server_transport,
        )

    def client_config(self) -> dict[str, Any]:
        return self._config(
            "client",
            "remote_addr",
            "local_addr",
            lambda s: s.local_port,
            self.client_extra,
            self.client_transport,
        )

    def _config(
        self,
        role: str,
        control_key: str,
        service_key: str,
        service_port: Callable[[Service], int],
        extra: dict[str, Any],
        transport: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """``[role]`` with the control address under ``control_key``, ``extra``, the
        transport, and each service's own port under ``service_key``."""
        services = {
            s.name: {"type": s.type, service_key: f"{HOST}:{service_port(s)}", "token": s.token}
            | s.extra
            for s in self.services
        }
        table: dict[str, Any] = {control_key: f"{HOST}:{self.control_port}"}
        table |= extra
        if transport is not None:
            table["transport"] = transport
        table["services"] = services
        return {role: table}


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def render_toml(doc: Mapping[str, Any], _prefix: str = "") -> str:
    """Render nested dicts as TOML: scalars first, then each dict as a ``[a.b]`` table."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables.append((f"{_prefix}{_toml_key(key)}", value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for name, table in tables:
        body = render_toml(table, f"{name}.")
        has_scalars = any(not isinstance(v, Mapping) for v in table.values())
        # A table holding only sub-tables needs no header of its own ([a] before [a.b]).
        out += f"\n[{name}]\n{body}" if has_scalars or not table else body
    return out


def write_configs(spec: TunnelSpec, directory: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>-server.toml`` and ``<stem>-client.toml`` into ``directory``."""
    server = directory / f"{stem}-server.toml"
    client = directory / f"{stem}-client.toml"
    server.write_text(render_toml(spec.server_config()))
    client.write_text(render_toml(spec.client_config()))
    return server, client


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Ask Linux to SIGKILL this child when the bench process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Proc:
    """A spawned subprocess with its log file and /proc accessors."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def status_kib(self, key: str) -> int:
        return status_kib(self.pid, key)

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the process group, then SIGKILL it if still there after ``grace`` s."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            if self.popen.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(wait)
        # The leader may be gone while others in its group live on: sweep the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


class ProcessSet:
    """Spawns subprocesses and kills every one of them on ``__exit__``/``stop_all``.

    Each child gets its own session (so the bench decides when it dies, also on Ctrl-C),
    PR_SET_PDEATHSIG=SIGKILL (no orphan even if the bench is SIGKILLed), and its
    stdout+stderr written to ``<log_dir>/<name>.log``.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def spawn(
        self,
        name: str,
        cmd: Sequence[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Proc:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            try:
                popen = subprocess.Popen(
                    list(cmd),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=None if env is None else dict(env),
                    start_new_session=True,
                    preexec_fn=_die_with_parent,  # bench is single-threaded
                )
            except OSError as exc:
                raise HarnessError(f"cannot start {name} ({cmd[0]}): {exc}") from exc
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        # Mask further Ctrl-C while cleaning up, so a second ^C cannot leave orphans.
        with _signals_deferred():
            while self.procs:
                self.procs.pop().stop()


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt, like Ctrl-C, so cleanup runs."""

    def _raise(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def run_bounded(
    cmd: Sequence[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion (own session), killing it if it outlives ``timeout``."""
    popen = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # bench is single-threaded
    )
    proc = Proc(Path(cmd[0]).name, popen, Path(os.devnull))
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(cmd)} did not finish within {timeout:.0f} s") from exc
    finally:
        proc.stop(grace=1.0)
    return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)


# --------------------------------------------------------------------------- waiting


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.05,
    watch: Sequence[Proc] = (),
) -> None:
    """Poll ``predicate`` until true; raise HarnessError after ``timeout`` s or when a
    process in ``watch`` exits first (its log tail is in the message)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        for proc in watch:
            if not proc.alive():
                raise HarnessError(
                    f"{proc.name} exited with code {proc.popen.returncode} while waiting for "
                    f"{what}; last log lines ({proc.log}):\n{proc.log_tail()}"
                )
        if time.monotonic() >= deadline:
            tails = "".join(f"\n--- {p.name} ({p.log}):\n{p.log_tail()}" for p in watch)
            raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}{tails}")
        time.sleep(interval)


def is_listening(port: int) -> bool:
    """True if some TCP socket is in LISTEN state on ``port`` (reads /proc/net/tcp{,6}).

    Unlike a probe connection this does not disturb the listener (e.g. an iperf3 server).
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def can_connect(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def tcp_echo_probe(port: int, timeout: float = 1.0, payload: bytes | None = None) -> bool:
    """Connect to ``port``, send a few bytes and expect them echoed back within ``timeout``."""
    payload = payload or f"ratui-bench-probe-{time.monotonic_ns()}\n".encode()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = sock.recv(len(payload) - len(got))
                if not chunk:
                    return False
                got += chunk
            return got == payload
    except OSError:
        return False


def spawn_echo(procs: ProcessSet, name: str, tcp_port: int, timeout: float = 10.0) -> Proc:
    """Start bench/_echo.py on ``tcp_port`` and wait until it listens."""
    proc = procs.spawn(name, [sys.executable, str(ECHO_SCRIPT), "--tcp", str(tcp_port)])
    wait_until(lambda: is_listening(tcp_port), timeout, f"{name} to listen", watch=[proc])
    return proc


@dataclass
class Tunnel:
    """A running tunnel: server and client processes and the spec they were started from."""

    name: str
    spec: TunnelSpec
    server: Proc
    client: Proc

    @property
    def procs(self) -> tuple[Proc, Proc]:
        return (self.server, self.client)

    def by_role(self) -> dict[str, Proc]:
        return {"server": self.server, "client": self.client}

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.alive():
                raise HarnessError(
                    f"{proc.name} exited with code {proc.popen.returncode}; "
                    f"last log lines ({proc.log}):\n{proc.log_tail()}"
                )


def start_tunnel(
    procs: ProcessSet,
    name: str,
    command: Sequence[str],
    spec: TunnelSpec,
    workdir: Path,
    service: str | None = None,
    timeout: float = 20.0,
    settle: float = 0.5,
    env: Mapping[str, str] | None = None,
) -> Tunnel:
    """Start ``command --server cfg`` and ``command --client cfg`` and wait until data flows.

    ``command`` is the program prefix, e.g. ``[rathole]`` or ``[python, -m, ratui]``.
    While waiting, an echo server stands in for the service's ``local_addr``: the service
    port is only bound once the client's control channel is up, so we poll until a connect
    succeeds and a few bytes come back through the tunnel, then give the data channels
    ``settle`` seconds. The echo server is stopped before returning, leaving ``local_port``
    free for the real backend.
    """
    svc = spec.service(service) if service else spec.services[0]
    server_cfg, client_cfg = write_configs(spec, workdir, name)
    echo = spawn_echo(procs, f"{name}-probe-echo", svc.local_port)
    server = procs.spawn(f"{name}-server", [*command, "--server", str(server_cfg)], REPO_ROOT, env)
    client = procs.spawn(f"{name}-client", [*command, "--client", str(client_cfg)], REPO_ROOT, env)
    tunnel = Tunnel(name, spec, server, client)
    what = f"{name} tunnel to carry data (127.0.0.1:{svc.bind_port})"
    wait_until(lambda: can_connect(svc.bind_port), timeout, what, 0.1, tunnel.procs)
    wait_until(lambda: tcp_echo_probe(svc.bind_port), timeout, what, 0.1, tunnel.procs)
    time.sleep(settle)
    procs.stop(echo)
    tunnel.check_alive()
    return tunnel


# --------------------------------------------------------------------------- proc stats


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` figure from /proc/PID/status, e.g. ``VmHWM`` (peak RSS) or ``VmRSS``."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (write 5 to /proc/PID/clear_refs); False if denied."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------- echo paths

PATHS = ("direct", "ratui", "rathole")


def raise_nofile_limit() -> int:
    """Raise this process's soft open-file limit to its hard limit and return it. Children
    spawned afterwards inherit it (the tunnels need two descriptors per visitor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def common_args(parser: argparse.ArgumentParser, repeat: int = 3) -> None:
    """The options every side-by-side bench has: --repeat, --json, --log-dir and the hidden
    --up-timeout, --rathole-bin and --ratui-cmd."""
    parser.add_argument(
        "--repeat", type=int, default=repeat, help=f"interleaved runs per path ({repeat})"
    )
    parser.add_argument("--json", action="store_true", help="raw figures as JSON on stdout")
    parser.add_argument("--log-dir", type=Path, help="keep configs and process logs here")
    parser.add_argument("--up-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    parser.add_argument("--rathole-bin", type=Path, default=RATHOLE_BIN, help=argparse.SUPPRESS)
    parser.add_argument("--ratui-cmd", help=argparse.SUPPRESS)


def tunnel_commands(args: argparse.Namespace) -> dict[str, list[str]]:
    """The program prefix of each tunnel; ``--server cfg``/``--client cfg`` get appended."""
    rathole = Path(args.rathole_bin).resolve()
    if not rathole.is_file():
        raise HarnessError(f"reference rathole binary not found at {rathole}")
    ratui = shlex.split(args.ratui_cmd) if args.ratui_cmd else [sys.executable, "-m", "ratui"]
    return {"ratui": ratui, "rathole": [str(rathole)]}


@contextlib.contextmanager
def workspace(keep_in: Path | None, prefix: str = "ratui-bench-") -> Iterator[Path]:
    """The directory for configs and logs: ``keep_in`` (kept) or a temp dir (removed)."""
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
        yield keep_in.resolve()
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@dataclass
class EchoPath:
    """Where one path's load connects: the echo backend directly, or a tunnel in front."""

    name: str
    port: int
    backend: Proc
    tunnel: Tunnel | None = None

    def tunnel_procs(self) -> dict[str, Proc]:
        return self.tunnel.by_role() if self.tunnel else {}

    def cpu_seconds(self) -> dict[str, float]:
        return {role: p.cpu_seconds() for role, p in self.tunnel_procs().items()}

    def check_alive(self) -> None:
        if self.tunnel is not None:
            self.tunnel.check_alive()
        if not self.backend.alive():
            raise HarnessError(f"{self.backend.name} exited; log:\n{self.backend.log_tail()}")


def setup_echo_paths(
    procs: ProcessSet,
    workdir: Path,
    commands: Mapping[str, Sequence[str]],
    up_timeout: float = 20.0,
    log: Callable[[str], None] = lambda _m: None,
) -> list[EchoPath]:
    """``direct``, ``ratui`` and ``rathole`` paths, each to its own echo backend (bench/_echo.py
    on uvloop): one plain-TCP service per tunnel, all ports picked free."""
    (direct_port,) = free_ports(1)
    paths = [EchoPath("direct", direct_port, spawn_echo(procs, "direct-echo", direct_port))]
    for name in ("ratui", "rathole"):
        spec = TunnelSpec.single("echo")
        svc = spec.service("echo")
        log(f"starting {name}: {shlex.join(commands[name])} --server/--client ({svc.bind_port})")
        tunnel = start_tunnel(procs, name, commands[name], spec, workdir, timeout=up_timeout)
        backend = spawn_echo(procs, f"{name}-echo", svc.local_port)
        paths.append(EchoPath(name, svc.bind_port, backend, tunnel))
    return paths


def log(message: str) -> None:
    """Progress and errors go to stderr, so stdout stays clean for ``--json``."""
    print(message, file=sys.stderr, flush=True)


def write_json(bench: str, args: argparse.Namespace, **fields: Any) -> None:
    """The ``--json`` document on stdout: which bench, host, Python and arguments, then
    ``fields`` in the order given."""
    doc = {
        "bench": bench,
        "host": platform.node(),
        "python": sys.version.split()[0],
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **fields,
    }
    json.dump(doc, sys.stdout, indent=2)
    print()


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain-text table: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)])
