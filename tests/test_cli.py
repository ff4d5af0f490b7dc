"""The command line as a user meets it: ``python -m ratui ...`` as a real subprocess.

Config mistakes give one line on stderr and a non-zero exit, never a traceback; --version,
--help and --genkey; role selection from the tables present and the flags; features not
available yet; clean stops on SIGTERM/SIGINT; log levels from RATUI_LOG/RUST_LOG; and tokens
never appearing in any output. Real sockets on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RATHOLE, Proc, Procs, free_port, roundtrip, wait_closed, wait_port
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ratui import __version__

TOKEN = "s3cr3t-token-XYZ"
WRONG_TOKEN = "wr0ng-t0ken-QQQ"
NEW_TOKEN = "n3w-t0ken-RRR"

KEYPAIR = re.compile(r"Private Key:\n(?P<private>\S+)\n\nPublic Key:\n(?P<public>\S+)\n")


def ratui(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0):
    """Run ``python -m ratui ARGS`` to completion; stdin is closed."""
    return subprocess.run(
        [sys.executable, "-m", "ratui", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_line(stderr: str) -> str:
    """The single line a refused invocation prints, checked to be alone and traceback-free."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stderr, got:\n{stderr}"
    assert stderr.endswith("\n")
    return lines[0]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def server_table(control: int, public: int, token: str = TOKEN, extra: str = "") -> str:
    return f"""
[server]
bind_addr = "127.0.0.1:{control}"
default_token = "{token}"
{extra}
[server.services.svc]
bind_addr = "127.0.0.1:{public}"
"""


def client_table(control: int, local: str, token: str = TOKEN, extra: str = "") -> str:
    return f"""
[client]
remote_addr = "127.0.0.1:{control}"
retry_interval = 1
{extra}
[client.services.svc]
local_addr = "{local}"
token = "{token}"
"""


def ports() -> tuple[int, int]:
    return free_port(), free_port()


# --------------------------------------------------------------------------- config errors

ERROR_CASES = {
    "unknown-key": (
        """
[server]
bind_addr = "127.0.0.1:2333"
default_token = "x"
bogus = 1
[server.services.foo]
bind_addr = "127.0.0.1:5202"
""",
        "[server] bogus: unknown key (expected one of bind_addr, default_token, services, "
        "transport, heartbeat_interval, default_token_file)",
    ),
    "unknown-service-key": (
        """
[client]
remote_addr = "127.0.0.1:2333"
default_token = "x"
[client.services.foo]
local_addr = "127.0.0.1:80"
colour = "blue"
""",
        "[client.services.foo] colour: unknown key",
    ),
    "missing-token": (
        """
[client]
remote_addr = "127.0.0.1:2333"
[client.services.foo]
local_addr = "127.0.0.1:80"
""",
        "[client.services.foo] token: not set, and [client] has no default_token",
    ),
    "missing-token-server": (
        """
[server]
bind_addr = "127.0.0.1:2333"
[server.services.web]
bind_addr = "127.0.0.1:8080"
""",
        "[server.services.web] token: not set, and [server] has no default_token",
    ),
    "address-integer": (
        """
[server]
bind_addr = 8080
default_token = "x"
[server.services.foo]
bind_addr = "127.0.0.1:5202"
""",
        '[server] bind_addr: expected "host:port", got 8080',
    ),
    "address-nonsense": (
        """
[server]
bind_addr = "127.0.0.1:2333"
default_token = "x"
[server.services.foo]
bind_addr = "nonsense"
""",
        '[server.services.foo] bind_addr: expected "host:port", got "nonsense"',
    ),
    "address-missing": (
        """
[client]
default_token = "x"
[client.services.foo]
local_addr = "127.0.0.1:80"
""",
        "[client] remote_addr: missing (required)",
    ),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_config_error_is_one_line_naming_file_table_key(tmp_path: Path, case: str) -> None:
    text, expected = ERROR_CASES[case]
    path = write(tmp_path, f"{case}.toml", text)
    result = ratui(str(path))
    assert result.returncode == 1, result
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: {expected}"), line


@pytest.mark.timeout(30)
def test_exact_lines_for_unknown_key_and_missing_token(tmp_path: Path) -> None:
    for case in ("unknown-key", "missing-token", "address-integer"):
        text, expected = ERROR_CASES[case]
        path = write(tmp_path, f"{case}.toml", text)
        result = ratui(str(path))
        assert result.stderr == f"ratui: error: {path}: {expected}\n"


@pytest.mark.timeout(30)
def test_toml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "syntax.toml", '[server]\nbind_addr = "127.0.0.1:2333\n')
    result = ratui(str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: line 2, column "), line
    assert "invalid TOML" in line


@pytest.mark.timeout(30)
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.toml"
    result = ratui(str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: cannot read"), line


@pytest.mark.timeout(30)
def test_directory_and_binary_file(tmp_path: Path) -> None:
    for path in (tmp_path, write(tmp_path, "x.toml", "")):
        if path.is_file():
            path.write_bytes(b"\xff\xfe[server]\n")
        result = ratui(str(path))
        assert result.returncode == 1
        line = one_line(result.stderr)
        assert line.startswith(f"ratui: error: {path}: cannot read"), line


@pytest.mark.timeout(30)
def test_config_errors_never_show_tokens(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "secret.toml",
        f"""
[server]
bind_addr = "127.0.0.1:2333"
default_token = ["{TOKEN}"]
[server.services.foo]
bind_addr = "127.0.0.1:5202"
""",
    )
    result = ratui(str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "[server] default_token: expected a string" in line
    assert TOKEN not in result.stderr + result.stdout


# --------------------------------------------------------------------------- version, help, usage


@pytest.mark.timeout(30)
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = ratui(flag)
    assert result.returncode == 0
    assert result.stdout == f"ratui {__version__}\n"


@pytest.mark.timeout(30)
def test_help() -> None:
    result = ratui("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ratui")
    for word in ("CONFIG", "--server", "--client", "--genkey", "--demo", "--daemon", "RATUI_LOG"):
        assert word in result.stdout
    assert result.stderr == ""


@pytest.mark.timeout(30)
def test_no_config_is_a_usage_error() -> None:
    result = ratui()
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: ratui")
    assert "ratui: error: give a CONFIG file, --demo or --genkey" in result.stderr


@pytest.mark.timeout(30)
def test_unknown_option_is_a_usage_error() -> None:
    result = ratui("--frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unrecognized arguments: --frobnicate" in result.stderr


# --------------------------------------------------------------------------- genkey


def check_keypair(text: str) -> tuple[bytes, bytes]:
    """Parse rathole's --genkey output and check the keys are an X25519 pair."""
    match = KEYPAIR.fullmatch(text)
    assert match, repr(text)
    private = base64.b64decode(match["private"], validate=True)
    public = base64.b64decode(match["public"], validate=True)
    assert len(private) == 32 and len(public) == 32
    derived = X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert derived == public
    return private, public


@pytest.mark.timeout(30)
@pytest.mark.parametrize("args", [["--genkey"], ["--genkey", "x25519"]])
def test_genkey(args: list[str]) -> None:
    first, second = ratui(*args), ratui(*args)
    for result in (first, second):
        assert result.returncode == 0
        assert result.stderr == ""
    assert check_keypair(first.stdout) != check_keypair(second.stdout)


@pytest.mark.timeout(30)
def test_genkey_x448_is_refused_clearly() -> None:
    result = ratui("--genkey", "x448")
    assert result.returncode != 0
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert "x448" in line and "x25519" in line and "not supported" in line


@pytest.mark.timeout(30)
def test_genkey_unknown_curve_is_a_usage_error() -> None:
    result = ratui("--genkey", "p256")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert "invalid choice: 'p256'" in result.stderr


def noise_config(tmp_path: Path, private: str, public_key: str, local: str) -> tuple[Path, int]:
    """A server + client config over the noise transport; returns (path, public port)."""
    control, public = ports()
    path = write(
        tmp_path,
        "noise.toml",
        server_table(
            control,
            public,
            extra=f'[server.transport]\ntype = "noise"\n[server.transport.noise]\n'
            f'local_private_key = "{private}"\n',
        )
        + client_table(
            control,
            local,
            extra=f'[client.transport]\ntype = "noise"\n[client.transport.noise]\n'
            f'remote_public_key = "{public_key}"\n',
        ),
    )
    return path, public


@pytest.mark.timeout(60)
def test_genkey_keys_make_a_noise_tunnel_that_logs_no_secret(
    tmp_path: Path, procs: Procs, echo
) -> None:
    """The printed keys go where rathole's configs put them, and carry a tunnel; at debug level
    neither the private key nor the token shows in the output."""
    from ratui.engine.config import load_config
    from ratui.engine.transport import TransportUnavailable, make_transport

    match = KEYPAIR.fullmatch(ratui("--genkey").stdout)
    assert match
    path, public = noise_config(tmp_path, match["private"], match["public"], echo.addr)
    config = load_config(path)
    assert config.server is not None and config.server.transport.noise is not None
    assert config.server.transport.noise.local_private_key == match["private"]
    try:
        make_transport(config.server.transport)
    except TransportUnavailable:
        pytest.skip("the noise transport is not available in this build")
    proc = procs.ratui(str(path), env={"RATUI_LOG": "debug", "RATUI_WATCH": "off"})
    tunnel_proc_ready(proc, public)
    payload = os.urandom(100_000)
    assert roundtrip(public, payload) == payload
    assert proc.stop() == 0
    output = proc.output()
    assert "visitor #" in output  # debug lines were written
    assert match["private"] not in output and TOKEN not in output


def rathole_binary() -> Path:
    path = Path(os.environ.get("RATUI_RATHOLE") or RATHOLE)
    if not path.exists():
        if os.environ.get("RATUI_REQUIRE_RATHOLE"):
            pytest.fail(f"reference rathole required but not found at {path}")
        pytest.skip(f"reference rathole not found at {path}")
    return path


@pytest.mark.interop
@pytest.mark.timeout(30)
def test_rathole_genkey_has_the_same_shape() -> None:
    result = subprocess.run(
        [str(rathole_binary()), "--genkey"], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result
    check_keypair(result.stdout)
    ours = ratui("--genkey").stdout
    shape = re.compile(r"[A-Za-z0-9+/]{43}=")
    assert [shape.fullmatch(s) is not None for s in ours.split("\n") if s.strip()] == [
        shape.fullmatch(s) is not None for s in result.stdout.split("\n") if s.strip()
    ]


# --------------------------------------------------------------------------- role selection


def tunnel_proc_ready(proc: Proc, public: int) -> None:
    proc.wait_for_output("control channel established", timeout=15)
    wait_port(public, timeout=15)


@pytest.mark.timeout(60)
def test_tables_present_choose_the_roles(tmp_path: Path, procs: Procs, echo) -> None:
    """A file with only [server] runs a server, one with only [client] a client."""
    control, public = ports()
    server_file = write(tmp_path, "server.toml", server_table(control, public))
    client_file = write(tmp_path, "client.toml", client_table(control, echo.addr))
    server = procs.ratui(str(server_file))
    server.wait_for_output("Listening at", timeout=15)
    client = procs.ratui(str(client_file))
    tunnel_proc_ready(client, public)
    assert roundtrip(public, b"through two processes") == b"through two processes"
    assert server.stop() == 0 and client.stop() == 0
    assert "client service svc" not in server.output()
    assert "Listening at" not in client.output() and "server service" not in client.output()


@pytest.mark.timeout(60)
def test_both_tables_no_flag_runs_both(tmp_path: Path, procs: Procs, echo) -> None:
    control, public = ports()
    path = write(
        tmp_path, "both.toml", server_table(control, public) + client_table(control, echo.addr)
    )
    proc = procs.ratui(str(path))
    tunnel_proc_ready(proc, public)
    payload = os.urandom(200_000)
    assert roundtrip(public, payload) == payload
    for i in range(5):
        assert roundtrip(public, f"visitor {i}".encode()) == f"visitor {i}".encode()
    assert echo.accepted >= 6  # plus the probe of wait_port
    output = proc.output()
    assert "Listening at" in output and "client service svc" in output
    assert proc.stop() == 0


@pytest.mark.timeout(60)
def test_flags_pick_one_role_of_a_file_with_both(tmp_path: Path, procs: Procs, echo) -> None:
    control, public = ports()
    path = write(
        tmp_path, "both.toml", server_table(control, public) + client_table(control, echo.addr)
    )
    server = procs.ratui("--server", str(path))
    server.wait_for_output("Listening at", timeout=15)
    client = procs.ratui("--client", str(path))
    tunnel_proc_ready(client, public)
    assert roundtrip(public, b"split roles") == b"split roles"
    assert server.stop() == 0 and client.stop() == 0
    assert "client service" not in server.output()
    assert "Listening at" not in client.output() and "server service" not in client.output()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("flag", "missing"), [("--server", "server"), ("--client", "client")])
def test_flag_for_a_missing_table_is_refused(tmp_path: Path, flag: str, missing: str) -> None:
    control, public = ports()
    text = client_table(control, "127.0.0.1:80") if missing == "server" else ""
    text = text or server_table(control, public)
    path = write(tmp_path, "one.toml", text)
    result = ratui(flag, str(path))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: [{missing}]"), line
    assert f"required to run as a {missing}" in line


@pytest.mark.timeout(30)
def test_flag_for_a_missing_table_has_no_stray_separator(tmp_path: Path) -> None:
    control, _ = ports()
    path = write(tmp_path, "client.toml", client_table(control, "127.0.0.1:80"))
    result = ratui("--server", str(path))
    line = one_line(result.stderr)
    assert line == line.rstrip() and not line.endswith(":"), repr(line)


@pytest.mark.timeout(30)
def test_tls_files_that_cannot_be_read_are_refused_in_one_line(tmp_path: Path) -> None:
    control, public = ports()
    missing = tmp_path / "no-such-identity.pfx"
    path = write(
        tmp_path,
        "tls.toml",
        server_table(
            control,
            public,
            extra=f'[server.transport]\ntype = "tls"\n[server.transport.tls]\n'
            f'pkcs12 = "{missing}"\npkcs12_password = "{TOKEN}"\n',
        ),
    )
    result = ratui(str(path))
    assert result.returncode == 1, result
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: "), line
    assert str(missing) in line
    assert TOKEN not in result.stderr + result.stdout


@pytest.mark.timeout(30)
def test_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        control = busy.getsockname()[1]
        path = write(tmp_path, "busy.toml", server_table(control, free_port()))
        result = ratui(str(path), env={"RATUI_LOG": "error"})
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith(f"ratui: error: {path}: cannot listen at 127.0.0.1:{control}"), line


# --------------------------------------------------------------------------- signals, log levels


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path: Path, procs: Procs, echo, sig: signal.Signals) -> None:
    control, public = ports()
    path = write(
        tmp_path, "both.toml", server_table(control, public) + client_table(control, echo.addr)
    )
    proc = procs.ratui(str(path), env={"RATUI_LOG": "info"})
    tunnel_proc_ready(proc, public)
    assert roundtrip(public, b"before the signal") == b"before the signal"
    assert proc.stop(sig) == 0
    output = proc.output()
    assert "Shutting down" in output
    assert "Traceback" not in output
    wait_closed(control, timeout=5)
    wait_closed(public, timeout=5)


@pytest.mark.timeout(60)
def test_signal_with_a_visitor_open_stops_cleanly(tmp_path: Path, procs: Procs, echo) -> None:
    control, public = ports()
    path = write(
        tmp_path, "both.toml", server_table(control, public) + client_table(control, echo.addr)
    )
    proc = procs.ratui(str(path))
    tunnel_proc_ready(proc, public)
    with socket.create_connection(("127.0.0.1", public), timeout=10) as visitor:
        visitor.sendall(b"held open")
        assert visitor.recv(100) == b"held open"
        assert proc.stop(signal.SIGTERM) == 0
    assert "Traceback" not in proc.output()


def log_levels(output: str) -> set[str]:
    """The level words of the log lines in ``output``."""
    return set(re.findall(r"^\S+Z\s+(DEBUG|INFO|WARN|ERROR) ", output, re.M))


def run_traffic(
    tmp_path: Path, procs: Procs, echo, env: dict[str, str], bad_peer: bool = False
) -> str:
    control, public = ports()
    path = write(
        tmp_path, "both.toml", server_table(control, public) + client_table(control, echo.addr)
    )
    path.chmod(0o600)  # a readable file holding tokens gets a warning, not the point here
    # No file watcher: on a system without file events it would warn, which is not the point.
    proc = procs.ratui(str(path), env={"RATUI_WATCH": "off", **env})
    wait_port(control, timeout=15)
    wait_port(public, timeout=15)
    assert roundtrip(public, b"some traffic") == b"some traffic"
    if bad_peer:
        with socket.create_connection(("127.0.0.1", control), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
            sock.settimeout(10)
            assert sock.recv(100) == b""  # dropped
    assert proc.stop() == 0
    return proc.output()


@pytest.mark.timeout(60)
def test_ratui_log_warn_suppresses_info(tmp_path: Path, procs: Procs, echo) -> None:
    output = run_traffic(tmp_path, procs, echo, {"RATUI_LOG": "warn"}, bad_peer=True)
    assert log_levels(output) == {"WARN"}, output
    assert "does not speak the protocol" in output
    assert "Shutting down" not in output


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "env",
    [
        {"RATUI_LOG": "", "RUST_LOG": "debug"},
        {"RATUI_LOG": "", "RUST_LOG": "warn,rathole=debug"},
        {"RATUI_LOG": "debug", "RUST_LOG": "error"},
    ],
)
def test_debug_level_gives_debug_lines(
    tmp_path: Path, procs: Procs, echo, env: dict[str, str]
) -> None:
    output = run_traffic(tmp_path, procs, echo, env)
    assert {"DEBUG", "INFO"} <= log_levels(output), output
    assert "visitor #" in output


@pytest.mark.timeout(60)
def test_default_level_is_info(tmp_path: Path, procs: Procs, echo) -> None:
    output = run_traffic(tmp_path, procs, echo, {"RATUI_LOG": "", "RUST_LOG": ""})
    assert log_levels(output) == {"INFO"}, output
    assert "Shutting down" in output


@pytest.mark.timeout(30)
def test_connection_errors_name_the_server_address(tmp_path: Path, procs: Procs) -> None:
    """A bare "Connection refused" or "Name or service not known" does not say which server."""
    port = free_port()  # nothing listens there
    refused = procs.ratui(str(write(tmp_path, "refused.toml", client_table(port, "127.0.0.1:1"))))
    refused.wait_for_output(f"cannot establish the control channel to 127.0.0.1:{port}: ", 15)
    unknown_addr = "no-such-host.invalid:2333"
    text = client_table(port, "127.0.0.1:1").replace(f"127.0.0.1:{port}", unknown_addr)
    unknown = procs.ratui(str(write(tmp_path, "unknown.toml", text)))
    unknown.wait_for_output(f"cannot establish the control channel to {unknown_addr}: ", 15)
    assert f"to 127.0.0.1:{port}: Connection refused\n" in refused.output()


# --------------------------------------------------------------------------- secrets


@pytest.mark.timeout(90)
def test_tokens_never_appear_in_any_output(tmp_path: Path, procs: Procs, echo) -> None:
    control, public = ports()
    server_file = write(tmp_path, "server.toml", server_table(control, public))
    client_file = write(tmp_path, "client.toml", client_table(control, echo.addr))
    bad_file = write(tmp_path, "bad.toml", client_table(control, echo.addr, token=WRONG_TOKEN))
    debug = {"RATUI_LOG": "debug", "RUST_LOG": "trace", "RATUI_WATCH": "off"}
    server = procs.ratui(str(server_file), env=debug)
    server.wait_for_output("Listening at", timeout=15)
    client = procs.ratui(str(client_file), env=debug)
    tunnel_proc_ready(client, public)
    for size in (1, 1000, 300_000):
        payload = os.urandom(size)
        assert roundtrip(public, payload) == payload
    bad = procs.ratui(str(bad_file), env=debug)
    bad.wait_for_output("Authentication failed", timeout=15)
    server.wait_for_output("incorrect token", timeout=15)
    assert roundtrip(public, b"after the failure") == b"after the failure"
    # Reloads (SIGHUP): one adding a service with its own token, one refused with a token in
    # the broken file.
    added = (
        f'[server.services.svc2]\nbind_addr = "127.0.0.1:{free_port()}"\ntoken = "{NEW_TOKEN}"\n'
    )
    server_file.write_text(server_table(control, public) + added)
    server.popen.send_signal(signal.SIGHUP)
    server.wait_for_output("config reloaded (SIGHUP)", timeout=15)
    server_file.write_text(f'[server]\nbind_addr = "127.0.0.1:{control}"\ntoken = "{NEW_TOKEN}"\n')
    server.popen.send_signal(signal.SIGHUP)
    server.wait_for_output("new config refused (SIGHUP)", timeout=15)
    assert roundtrip(public, b"after the reloads") == b"after the reloads"
    # A config error with a token in the file, and --help, at debug level too.
    broken = write(tmp_path, "broken.toml", f'[client]\ndefault_token = "{TOKEN}"\n')
    extra = [ratui(str(broken), env=debug), ratui(str(bad_file), "--server", env=debug)]
    for proc in (bad, client, server):
        assert proc.stop() == 0
    outputs = [p.output() for p in (server, client, bad)]
    outputs += [r.stdout + r.stderr for r in extra]
    assert "visitor #" in outputs[0]  # debug lines were written
    for text in outputs:
        assert TOKEN not in text
        assert WRONG_TOKEN not in text
        assert NEW_TOKEN not in text
        for part in ("s3cr3t", "wr0ng", "n3w-t0ken"):
            assert part not in text
