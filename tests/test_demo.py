"""``ratui --demo`` as a user runs it: a real subprocess, its printed address fetched over HTTP
on 127.0.0.1, stopped with Ctrl-C (SIGINT). Also README's first command. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO, free_port

#: The environment of a run left to the default control socket.
OFF = {"RATUI_CONTROL_SOCKET": ""}

URL = re.compile(r"^\s*try:\s+curl (http://127\.0\.0\.1:(\d+)/)$", re.M)

# No proxy from the environment may intercept loopback fetches.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Demo:
    """A ``--demo`` process with stdout and stderr kept apart in files."""

    def __init__(
        self,
        argv: list[str],
        tmp_path: Path,
        cwd: Path | None = None,
        session: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.out_path = tmp_path / "demo.stdout"
        self.err_path = tmp_path / "demo.stderr"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env={**os.environ, "RATUI_LOG": "info", **(env or {})},
                start_new_session=session,
            )

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def url(self, timeout: float = 20.0) -> str:
        """Wait for the ``curl http://127.0.0.1:PORT/`` line on stdout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := URL.search(self.stdout()):
                return match[1]
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no curl address from {self.popen.args} (exit {self.popen.poll()}):\n"
            f"stdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
        )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
                raise AssertionError(
                    f"{self.popen.args} ignored signal {sig} for {timeout} s"
                ) from None
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    try:
        yield started
    finally:
        for demo in started:
            demo.kill()


def fetch(url: str, timeout: float = 10.0) -> tuple[int, str]:
    with OPENER.open(url, timeout=timeout) as response:
        return response.status, response.read().decode()


def check_page(url: str) -> str:
    status, body = fetch(url)
    assert status == 200
    assert "Hello from ratui" in body
    return body


@pytest.mark.timeout(60)
def test_demo_serves_its_page_and_stops_on_ctrl_c(tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo([sys.executable, "-m", "ratui", "--demo"], tmp_path)
    demos.append(demo)
    url = demo.url()
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    body = check_page(url)
    assert f"127.0.0.1:{port}" in body  # the page names the public address it came through
    assert "press q in ratui's dashboard, or Ctrl-C" in body  # how each kind of run stops
    for _ in range(20):
        check_page(url)
    with ThreadPoolExecutor(8) as pool:
        for page in pool.map(check_page, [url] * 16):
            assert "Hello from ratui" in page
    assert demo.stop(signal.SIGINT) == 0
    assert "Traceback" not in demo.stderr() + demo.stdout()
    # The banner is on stdout, the logs on stderr.
    out = demo.stdout()
    assert f"public address: {url}" in out
    assert "Ctrl-C" in out
    assert " INFO " not in out
    assert "Listening at" in demo.stderr()
    # And the public port is closed again.
    with pytest.raises(OSError):
        fetch(url, timeout=2)


@pytest.mark.timeout(60)
def test_demo_stops_on_sigterm(tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo([sys.executable, "-m", "ratui", "--demo"], tmp_path)
    demos.append(demo)
    check_page(demo.url())
    assert demo.stop(signal.SIGTERM) == 0
    assert "Traceback" not in demo.stderr()


@pytest.mark.timeout(60)
def test_two_demos_side_by_side(tmp_path: Path, demos: list[Demo]) -> None:
    """Each demo picks its own ports, so two can run at once."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    first = Demo([sys.executable, "-m", "ratui", "--demo"], first_dir)
    second = Demo([sys.executable, "-m", "ratui", "--demo"], second_dir)
    demos += [first, second]
    urls = first.url(), second.url()
    assert urls[0] != urls[1]
    for url in urls:
        check_page(url)
    assert first.stop() == 0 and second.stop() == 0


def status_json(sock: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "ratui", "status", str(sock), "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.timeout(60)
def test_headless_demo_serves_the_control_socket_and_metrics(
    tmp_path: Path, demos: list[Demo], sockdir: Path
) -> None:
    """``--demo --daemon`` honours --control-socket and --metrics-addr as a daemon does."""
    sock, metrics = sockdir / "demo.sock", free_port()
    argv = [sys.executable, "-m", "ratui", "--demo", "--daemon", "--control-socket", str(sock)]
    demo = Demo([*argv, "--metrics-addr", f"127.0.0.1:{metrics}"], tmp_path)
    demos.append(demo)
    check_page(demo.url())
    data = status_json(sock)
    assert [s["name"] for s in data["services"]] == ["demo-web"] * 2  # server and client
    status, text = fetch(f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200 and "demo-web" in text
    assert demo.stop() == 0
    assert not sock.exists()


@pytest.mark.timeout(60)
def test_headless_demo_takes_its_socket_from_the_environment(
    tmp_path: Path, demos: list[Demo], sockdir: Path
) -> None:
    """RATUI_CONTROL_SOCKET names the demo's socket; the default one (the user's real
    daemon's) is left alone."""
    runtime_dir = sockdir / "xdg"
    runtime_dir.mkdir(mode=0o700)
    sock = sockdir / "env.sock"
    env = {"RATUI_CONTROL_SOCKET": str(sock), "XDG_RUNTIME_DIR": str(runtime_dir)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    demo = Demo([sys.executable, "-m", "ratui", "--demo"], tmp_path / "a", env=env)
    demos.append(demo)
    demo.url()
    assert status_json(sock)["services"]
    plain = Demo([sys.executable, "-m", "ratui", "--demo"], tmp_path / "b", env={**env, **OFF})
    demos.append(plain)
    plain.url()
    assert not (runtime_dir / "ratui").exists()
    assert demo.stop() == 0 and plain.stop() == 0


# --------------------------------------------------------------------------- README


def readme_first_command() -> str:
    readme = REPO / "README.md"
    if not readme.exists():
        pytest.skip("README.md does not exist yet")
    blocks = re.findall(r"```(?:sh|bash|shell|console)\n(.*?)```", readme.read_text(), re.S)
    assert blocks, "README.md has no shell code block"
    lines = [ln.strip() for ln in blocks[0].splitlines() if ln.strip()]
    assert len(lines) == 1, f"README's first command is not one line: {lines}"
    return lines[0].removeprefix("$ ")


@pytest.mark.timeout(60)
def test_readme_first_command_runs_the_demo(tmp_path: Path, demos: list[Demo]) -> None:
    """README's first command installs ratui into .venv and runs ``.venv/bin/ratui --demo``;
    the last step runs here with the ``ratui`` script of the environment running the tests,
    which is what ``pip install .`` produces. The full command, with its install, runs in
    test_readme_first_command_verbatim when RATUI_TEST_README_INSTALL=1."""
    command = readme_first_command()
    steps = [s.strip() for s in command.split("&&")]
    assert steps[-1] == ".venv/bin/ratui --demo", command
    assert any(s.startswith(".venv/bin/pip install") for s in steps), command
    script = Path(sys.executable).parent / "ratui"
    if not script.exists():
        pytest.skip(f"no ratui console script next to {sys.executable}")
    demo = Demo([str(script), "--demo"], tmp_path)
    demos.append(demo)
    # README: "The demo prints a public address; curl it ... the page comes back through the
    # tunnel. Ctrl-C stops it."
    check_page(demo.url())
    assert demo.stop(signal.SIGINT) == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readme_first_command_verbatim(tmp_path: Path) -> None:
    """The README's first command, exactly as written, in a fresh copy of the sources: it
    creates a venv, installs from the package index, and starts the demo."""
    if not os.environ.get("RATUI_TEST_README_INSTALL"):
        pytest.skip("set RATUI_TEST_README_INSTALL=1 to install into a fresh venv (needs an index)")
    command = readme_first_command()
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split("\n")
    src = tmp_path / "src"
    for name in filter(None, files):
        if name.startswith(".venv/") or not (REPO / name).is_file():
            continue
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((REPO / name).read_bytes())
    # Its own process group, so that SIGINT reaches the shell and the demo as Ctrl-C would.
    demo = Demo(["sh", "-c", command], tmp_path, cwd=src, session=True)
    try:
        check_page(demo.url(timeout=500))
        os.killpg(demo.popen.pid, signal.SIGINT)
        demo.popen.wait(20)
    finally:
        if demo.popen.poll() is None:
            os.killpg(demo.popen.pid, signal.SIGKILL)
            demo.popen.wait(5)
    assert "Traceback" not in demo.stderr()
    assert (src / ".venv" / "bin" / "ratui").exists()
