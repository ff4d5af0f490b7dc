"""``ratui init`` and ``ratui pair`` as real subprocesses: the files they write run as real
tunnels (ratui on both ends, and the reference rathole on either end), and every failure
ends with its exit status and one line on stderr."""

from __future__ import annotations

import os
import pty
import re
import stat
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path

import pytest
from certs import server_identity
from conftest import EchoServer, Procs, free_port, roundtrip, wait_port
from tunnels import echo_check, wait_until

from ratui.engine.config import load_config

#: The code on a line of its own, as ``ratui init server`` prints it.
CODE = re.compile(r"^  (ratui1:[A-Za-z0-9_-]+)$", re.M)


def ratui(
    *args: str,
    env_dir: Path,
    stdin: int | None = subprocess.DEVNULL,
    text_in: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m ratui ARGS`` with its config directory in ``env_dir``; ``text_in`` is its
    standard input when given, else ``stdin``."""
    return subprocess.run(
        [sys.executable, "-m", "ratui", *args],
        env={**os.environ, "RATUI_CONFIG_DIR": str(env_dir)},
        cwd=cwd,
        start_new_session=True,  # no controlling terminal: prompts read standard input
        **({"input": text_in} if text_in is not None else {"stdin": stdin}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ratui: error: "), result.stderr
    return lines[0]


@dataclass
class Server:
    """A server config written by ``ratui init server``, and its ports."""

    config: Path
    code: str
    control_port: int
    service_port: int


def init_server(tmp_path: Path, *extra: str, udp: bool = False) -> Server:
    control, public = free_port(), free_port()
    config = tmp_path / "server" / "server.toml"
    result = ratui(
        "init",
        "server",
        "--bind",
        f"127.0.0.1:{control}",
        "--public-addr",
        f"127.0.0.1:{control}",
        "--service",
        f"echo={public}{'/udp' if udp else ''}",
        "--output",
        str(config),
        *extra,
        env_dir=tmp_path / "cfg",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    match = CODE.search(result.stdout)
    assert match, result.stdout
    assert f"Wrote the server config to {config}." in result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    return Server(config, match.group(1), control, public)


def pair(
    tmp_path: Path, server: Server, echo: EchoServer, *extra: str, cwd: Path | None = None
) -> Path:
    client = tmp_path / "client" / "client.toml"
    result = ratui(
        "pair",
        server.code,
        str(client),
        "--local",
        f"echo={echo.addr}",
        *extra,
        env_dir=tmp_path / "cfg",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    assert f"Wrote the client config to {client}." in result.stdout
    assert stat.S_IMODE(client.stat().st_mode) == 0o600
    return client


def run_tunnel(procs: Procs, server: Server, client: Path, impls: tuple[str, str]) -> None:
    """Start both sides and move bytes through the tunnel to the echo service."""
    getattr(procs, impls[0])("--server", str(server.config))
    wait_port(server.control_port)
    getattr(procs, impls[1])("--client", str(client))
    wait_until(lambda: echo_check(server.service_port, b"ping"), 20, "the tunnel to carry a ping")
    payload = os.urandom(256 * 1024)
    assert roundtrip(server.service_port, payload) == payload


# end to end ----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["noise", "tcp"])
def test_init_then_pair_makes_a_working_tunnel(
    procs: Procs, tmp_path: Path, echo: EchoServer, transport: str
) -> None:
    server = init_server(tmp_path, "--transport", transport)
    client = pair(tmp_path, server, echo)
    assert load_config(client).client is not None
    run_tunnel(procs, server, client, ("ratui", "ratui"))

    # A check while the client runs takes the control channel for a moment; the client
    # reconnects and the tunnel carries visitors again.
    check = ratui("pair", "--check", str(client), env_dir=tmp_path / "cfg")
    assert check.returncode == 0, check.stderr
    assert "echo: ok" in check.stdout
    wait_until(lambda: echo_check(server.service_port, b"again"), 20, "the tunnel to come back")


def test_tls_init_and_pair_with_a_private_ca(
    procs: Procs, tmp_path: Path, echo: EchoServer
) -> None:
    """The password comes from a file, and a relative CA path is written as an absolute one
    (the client may run from another directory)."""
    ident = server_identity(tmp_path / "pki")
    password_file = tmp_path / "password"
    password_file.write_text(ident.password + "\n")
    server = init_server(
        tmp_path,
        "--transport",
        "tls",
        "--tls-pkcs12",
        str(ident.pkcs12),
        "--tls-password-file",
        str(password_file),
        "--tls-hostname",
        "localhost",
    )
    relative = ident.ca_pem.relative_to(tmp_path)
    client = pair(tmp_path, server, echo, "--tls-trusted-root", str(relative), cwd=tmp_path)
    config = load_config(client).client
    assert config is not None and config.transport.tls is not None
    assert config.transport.tls.trusted_root == str(ident.ca_pem)
    run_tunnel(procs, server, client, ("ratui", "ratui"))
    check = ratui("pair", "--check", str(client), env_dir=tmp_path / "cfg")
    assert check.returncode == 0, check.stderr


@pytest.mark.interop
@pytest.mark.parametrize("impls", [("rathole", "ratui"), ("ratui", "rathole")])
def test_generated_configs_run_with_rathole(
    procs: Procs, tmp_path: Path, echo: EchoServer, impls: tuple[str, str]
) -> None:
    server = init_server(tmp_path)  # noise, the default
    client = pair(tmp_path, server, echo)
    run_tunnel(procs, server, client, impls)


def test_init_client_with_check_against_a_running_server(
    procs: Procs, tmp_path: Path, echo: EchoServer
) -> None:
    server = init_server(tmp_path, udp=True)
    procs.ratui("--server", str(server.config))
    wait_port(server.control_port)
    out = tmp_path / "client.toml"
    args = ("init", "client", "--code", server.code, "--local", "echo=53", "--output", str(out))
    result = ratui(*args, "--check", env_dir=tmp_path / "cfg")
    assert result.returncode == 0, result.stderr
    assert "echo: ok" in result.stdout
    client = load_config(out).client
    assert client is not None
    assert client.services["echo"].local_addr == "127.0.0.1:53"
    assert str(client.services["echo"].type) == "udp"


def test_check_reports_an_unreachable_server(tmp_path: Path, echo: EchoServer) -> None:
    server = init_server(tmp_path)  # never started
    client = pair(tmp_path, server, echo)
    result = ratui("pair", "--check", str(client), env_dir=tmp_path / "cfg")
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"cannot reach 127.0.0.1:{server.control_port}: connection refused" in line


# defaults, overwriting, prompts -----------------------------------------------------------
def test_default_path_refuses_overwrite_then_force_keeps_backup(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    args = ("init", "server", "--public-addr", "vps.example.com:2333", "--service", "ssh=5202")
    first = ratui(*args, env_dir=cfg)
    assert first.returncode == 0, first.stderr
    written = cfg / "ratui.toml"
    original = written.read_text()
    assert 'bind_addr = "0.0.0.0:5202"' in original

    again = ratui(*args, env_dir=cfg)
    assert again.returncode == 1
    assert str(written) in one_error_line(again) and "--force" in again.stderr
    assert written.read_text() == original

    forced = ratui(*args, "--force", env_dir=cfg)
    assert forced.returncode == 0, forced.stderr
    assert f"kept as {cfg / 'ratui.toml.bak'}" in forced.stdout
    assert (cfg / "ratui.toml.bak").read_text() == original
    assert written.read_text() != original  # new tokens and keys


def test_pair_asks_for_local_addresses_on_a_terminal(tmp_path: Path) -> None:
    server = init_server(tmp_path)
    controller, terminal = pty.openpty()
    try:
        os.write(controller, b"not an address\n127.0.0.1:8080\n")
        result = ratui("pair", server.code, env_dir=tmp_path / "cfg", stdin=terminal)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Where does tcp service 'echo' run here?") == 2
    assert 'expected "host:port"' in result.stderr
    client = load_config(tmp_path / "cfg" / "ratui.toml").client
    assert client is not None and client.services["echo"].local_addr == "127.0.0.1:8080"


def test_pair_without_a_code_asks_for_it_on_a_terminal(tmp_path: Path) -> None:
    """The code is typed at a prompt that turns the terminal's echo off first."""
    server = init_server(tmp_path)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ratui", "pair", "--local", "echo=1"],
        env={**os.environ, "RATUI_CONFIG_DIR": str(tmp_path / "cfg")},
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        wait_until(lambda: not termios.tcgetattr(terminal)[3] & termios.ECHO, 20, "the prompt")
        os.write(controller, f"{server.code}\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 0, err
    assert "Pairing code (not shown as you paste it):" in err and server.code not in out + err
    client = load_config(tmp_path / "cfg" / "ratui.toml").client
    assert client is not None and client.services["echo"].local_addr == "127.0.0.1:1"


def test_show_prints_the_same_code_again(tmp_path: Path) -> None:
    server = init_server(tmp_path)
    shown = ratui("pair", "--show", str(server.config), env_dir=tmp_path / "cfg")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"{server.code}\n"  # alone, to pipe into `ratui pair -`
    assert "run  ratui pair  and paste this code" in shown.stderr
    assert "ratui pair -" in shown.stderr and server.code not in shown.stderr
    elsewhere = ratui(
        "pair", "--show", str(server.config), "--public-addr", "vps:1", env_dir=tmp_path / "cfg"
    )
    assert elsewhere.returncode == 0 and elsewhere.stdout != shown.stdout
    missing = ratui("pair", "--show", env_dir=tmp_path / "cfg")
    assert missing.returncode == 1
    assert "ratui.toml" in one_error_line(missing)


def test_pair_takes_the_path_after_the_options_and_a_code_copied_off_a_screen(
    tmp_path: Path,
) -> None:
    """The code as a terminal selection of the wizard's box gives it: wrapped, with the
    frame's side lines and padding; and PATH may come after the options, as users write."""
    server = init_server(tmp_path)
    half = len(server.code) // 2
    framed = f"│ {server.code[:half]}   │\n│ {server.code[half:]}{' ' * half}│"
    client = tmp_path / "client.toml"
    result = ratui("pair", framed, "--local", "echo=1", str(client), env_dir=tmp_path / "cfg")
    assert result.returncode == 0, result.stderr
    assert f"Wrote the client config to {client}." in result.stdout
    assert load_config(client).client is not None


def test_pair_reads_the_code_from_standard_input(tmp_path: Path) -> None:
    """``ratui pair -`` keeps the code out of the command line; what the server's screen
    copies (``ratui pair CODE``, maybe wrapped) is taken as well."""
    server = init_server(tmp_path)
    client = tmp_path / "client.toml"
    pasted = f"ratui pair {server.code[:50]}\n{server.code[50:]}\n"
    result = ratui(
        "pair", "-", str(client), "--local", "echo=1", env_dir=tmp_path / "cfg", text_in=pasted
    )
    assert result.returncode == 0, result.stderr
    config = load_config(client).client
    assert config is not None and list(config.services) == ["echo"]


def test_pair_writes_to_the_output_option(tmp_path: Path) -> None:
    server = init_server(tmp_path)
    client = tmp_path / "out" / "client.toml"
    args = ("pair", "-", "-o", str(client), "--local", "echo=1")
    result = ratui(*args, env_dir=tmp_path / "cfg", text_in=server.code)
    assert result.returncode == 0, result.stderr
    assert f"Wrote the client config to {client}." in result.stdout
    assert load_config(client).client is not None
    both = ratui(*args, str(client), env_dir=tmp_path / "cfg", text_in=server.code)
    assert both.returncode == 2 and "-o PATH" in both.stderr


@pytest.mark.parametrize("path", ["client.toml", "home/client", "./x"])
def test_pair_given_a_path_for_the_code_says_so(tmp_path: Path, path: str) -> None:
    result = ratui("pair", path, "--local", "echo=1", env_dir=tmp_path / "cfg")
    assert result.returncode == 2
    assert (
        f"{path!r}: that looks like a file path: give the code first, or - to paste it, and "
        "the path after it (or -o PATH)" in result.stderr
    )
    assert not (tmp_path / "cfg").exists()


def test_pair_check_names_the_flag_for_a_private_ca(
    procs: Procs, tmp_path: Path, echo: EchoServer
) -> None:
    """A TLS server whose CA the system does not trust: the check after writing says which
    flag of ``ratui pair`` fixes it."""
    ident = server_identity(tmp_path / "pki")
    server = init_server(
        tmp_path,
        "--transport",
        "tls",
        "--tls-pkcs12",
        str(ident.pkcs12),
        "--tls-password",
        ident.password,
        "--tls-hostname",
        "localhost",
    )
    procs.ratui("--server", str(server.config))
    wait_port(server.control_port)
    client = tmp_path / "client.toml"
    args = ("pair", server.code, str(client), "--local", f"echo={echo.addr}", "--check")
    result = ratui(*args, env_dir=tmp_path / "cfg")
    assert result.returncode == 1
    line = one_error_line(result)
    assert "tls.trusted_root is not set" in line
    assert line.endswith("(give the CA's certificate with --tls-trusted-root PEM)")


# errors and usage ---------------------------------------------------------------------------
def test_pair_refuses_damaged_codes(tmp_path: Path) -> None:
    server = init_server(tmp_path)
    cfg = tmp_path / "cfg"
    cases = {
        server.code[:-10]: "truncated",
        server.code[:-3] + ("A" if server.code[-3] != "A" else "B") + server.code[-2:]: "altered",
        "ratui7:" + server.code[7:]: "newer ratui",
        "hello": "not a ratui pairing code",
    }
    for code, words in cases.items():
        result = ratui("pair", code, "--local", "echo=1", env_dir=cfg)
        assert result.returncode == 1
        assert words in one_error_line(result)
    assert not (cfg / "ratui.toml").exists()


def test_pair_without_local_address_off_a_terminal_is_a_usage_error(tmp_path: Path) -> None:
    server = init_server(tmp_path)
    result = ratui("pair", server.code, env_dir=tmp_path / "cfg")
    assert result.returncode == 2
    assert "no local address for service 'echo': add --local echo=HOST:PORT" in result.stderr
    unknown = ratui("pair", server.code, "--local", "web=80", env_dir=tmp_path / "cfg")
    assert unknown.returncode == 1
    assert "has no service 'web' (it has echo)" in one_error_line(unknown)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("init", "server"), "--service"),
        (("init", "server", "--service", "ssh"), "expected NAME=PORT"),
        (("init", "server", "--service", "ssh=99999"), "port number"),
        (("init", "server", "--service", "a b=22"), "may only hold"),
        (("init", "server", "--service", "ssh=22/sctp"), "unknown type"),
        (("init", "server", "--service", "ssh=22", "--bind", "2333"), "--bind"),
        (("init", "server", "--service", "ssh=22", "--transport", "tls"), "--tls-pkcs12"),
        (("init", "client", "--local", "a=1"), "--code"),
        (("init",), "server|client"),
        (("pair",), "give the pairing code"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    result = ratui(*args, env_dir=tmp_path / "cfg")
    assert result.returncode == 2
    assert words in result.stderr
    assert not (tmp_path / "cfg").exists()
