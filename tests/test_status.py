"""``ratui status [SOCKET] [--json]`` against a real daemon subprocess: the JSON and the table
show its services, and the exit status says whether they are all up (0), some are not (1) or
no daemon answered (3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Procs, free_port, roundtrip, wait_port
from daemons import TOKEN, start_daemon, wait_for


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratui", "status", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.mark.timeout(60)
def test_status_json_and_table_with_everything_up(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    payload = b"count me" * 1000
    assert roundtrip(daemon.public, payload) == payload

    def all_up() -> dict | None:
        result = status(str(daemon.socket), "--json")
        data = json.loads(result.stdout)
        return data if result.returncode == 0 and data["all_up"] else None

    data = wait_for(all_up, 15, "status --json to say all up", interval=0.2)
    assert data["daemon"]["pid"] == daemon.proc.popen.pid
    assert data["daemon"]["roles"] == {"server": True, "client": True}
    assert data["daemon"]["source"] == str(daemon.config)
    assert data["daemon"]["socket"] == str(daemon.socket)
    services = {(s["role"], s["name"]): s for s in data["services"]}
    assert set(services) == {("server", "echo"), ("client", "echo")}
    assert all(s["state"] == "up" for s in services.values())
    assert services[("server", "echo")]["rx"] == len(payload)
    assert services[("server", "echo")]["address"] == f"127.0.0.1:{daemon.public}"
    assert TOKEN not in json.dumps(data)

    table = status(str(daemon.socket))
    assert table.returncode == 0, table.stderr
    assert table.stderr == ""
    lines = table.stdout.splitlines()
    assert f"pid {daemon.proc.popen.pid}" in lines[0]
    assert "SERVICE" in lines[1] and "STATE" in lines[1]
    rows = [line for line in lines if line.startswith("echo ")]
    assert len(rows) == 2 and all(" up " in row for row in rows)
    assert "8.00 kB" in table.stdout  # the bytes moved
    assert "2/2 services up" in lines[-1]
    assert TOKEN not in table.stdout + table.stderr  # secrets never reach status output

    # The socket from the environment, as `docker exec` or a unit's Environment= give it.
    env_result = status("--json", env={"RATUI_CONTROL_SOCKET": str(daemon.socket)})
    assert env_result.returncode == 0
    assert json.loads(env_result.stdout)["daemon"]["pid"] == daemon.proc.popen.pid


@pytest.mark.timeout(60)
def test_status_exit_code_when_a_service_is_down(tmp_path, procs: Procs, sockdir) -> None:
    """A client whose server is not there: its service is retrying, status exits 1."""
    config = tmp_path / "client.toml"
    config.write_text(
        f"""
[client]
remote_addr = "127.0.0.1:{free_port()}"
default_token = "{TOKEN}"
retry_interval = 1

[client.services.lonely]
local_addr = "127.0.0.1:{free_port()}"
"""
    )
    sock = sockdir / "c.sock"
    proc = procs.ratui("--daemon", str(config), "--control-socket", str(sock))
    proc.wait_for_output("Control socket at", 15)
    result = status(str(sock), "--json")
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert data["all_up"] is False
    (service,) = data["services"]
    assert service["name"] == "lonely" and service["state"] != "up"
    table = status(str(sock))
    assert table.returncode == 1
    assert "0/1 services up" in table.stdout


@pytest.mark.timeout(30)
def test_status_without_a_daemon(tmp_path: Path) -> None:
    for args in ([str(tmp_path / "nothing.sock")], [str(tmp_path / "nothing.sock"), "--json"]):
        result = status(*args)
        assert result.returncode == 3
        assert result.stdout == ""
        assert result.stderr.startswith("ratui: error: no ratui daemon at ")
        assert len(result.stderr.splitlines()) == 1
    # A socket file that nothing serves any more (a killed daemon's).
    import socket

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))
    result = status(str(stale))
    assert result.returncode == 3
    assert "connection refused" in result.stderr


@pytest.mark.timeout(60)
def test_status_finds_the_default_socket(tmp_path, procs: Procs, echo, sockdir) -> None:
    runtime_dir = sockdir / "xdg"
    runtime_dir.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime_dir), "RATUI_CONTROL_SOCKET": "", "RATUI_WATCH": "off"}
    control, public = free_port(), free_port()
    config = tmp_path / "c.toml"
    from daemons import both_toml

    config.write_text(both_toml(control, public, echo.addr))
    proc = procs.ratui("--daemon", str(config), env=env)
    wait_port(public, 15)
    proc.wait_for_output("Control socket at", 15)
    result = wait_for(
        lambda: (r := status("--json", env=env)).returncode == 0 and r, 15, "all up", 0.2
    )
    data = json.loads(result.stdout)
    assert data["daemon"]["socket"] == str(runtime_dir / "ratui" / "control.sock")
