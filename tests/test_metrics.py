"""Prometheus metrics (issue 9): nothing is served unless ``--metrics-addr`` asks; when it is,
``/metrics`` scraped in the middle of a transfer shows the bytes moved so far, and the text
parses with prometheus-client's own parser. Real daemon subprocesses, 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Procs, free_port, wait_port
from daemons import start_daemon, wait_for
from prometheus_client.parser import text_string_to_metric_families

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CHUNK = 64 * 1024


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    """(status, content type, body)."""
    try:
        with OPENER.open(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus-client."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def value(body: str, name: str, **labels: str) -> float:
    return samples(body)[(name, tuple(sorted(labels.items())))]


@pytest.mark.timeout(90)
def test_metrics_during_a_transfer(tmp_path, procs: Procs, echo, sockdir) -> None:
    port = free_port()
    daemon = start_daemon(
        procs, tmp_path, sockdir, echo.addr, "--metrics-addr", f"127.0.0.1:{port}"
    )
    wait_port(port, 10)
    server = {"role": "server", "service": "echo"}
    client = {"role": "client", "service": "echo"}
    wait_for(
        lambda: (
            value(scrape(port)[2], "ratui_service_up", **server) == 1
            and value(scrape(port)[2], "ratui_service_up", **client) == 1
        ),
        15,
        "both ends up",
    )
    status, content_type, body = scrape(port)
    assert status == 200
    assert content_type.startswith("text/plain")
    before = value(body, "ratui_service_rx_bytes_total", **server)

    # A visitor sends 2 MiB, reads the echo back, and stays connected while we scrape.
    with socket.create_connection(("127.0.0.1", daemon.public), timeout=20) as visitor:
        sent = 0
        received = 0
        payload = b"m" * CHUNK
        while sent < 2 * 1024 * 1024:
            visitor.sendall(payload)
            sent += len(payload)
            while received < sent:
                received += len(visitor.recv(1 << 20))

        def moved() -> str | None:
            text = scrape(port)[2]
            return text if value(text, "ratui_service_rx_bytes_total", **server) >= sent else None

        mid = wait_for(moved, 10, "the bytes in /metrics")
        assert value(mid, "ratui_service_rx_bytes_total", **server) - before == sent
        assert value(mid, "ratui_service_tx_bytes_total", **server) == received
        assert value(mid, "ratui_service_rx_bytes_total", **client) == sent
        assert value(mid, "ratui_service_visitors", **server) == 1  # open right now
        assert value(mid, "ratui_service_visitors_total", **server) >= 1

    # After: the visitor is gone, its bytes stay counted.
    after = wait_for(
        lambda: (t := scrape(port)[2]) and value(t, "ratui_service_visitors", **server) == 0 and t,
        10,
        "the visitor to close",
    )
    assert value(after, "ratui_service_rx_bytes_total", **server) - before == sent
    assert value(after, "ratui_service_reconnects_total", **client) == 0
    assert value(after, "ratui_service_auth_failures_total", **server) == 0
    assert value(after, "ratui_events_total", kind="control_up") >= 2
    assert value(after, "ratui_info", version=__import__("ratui").__version__) == 1
    assert value(after, "ratui_start_time_seconds") <= time.time()

    # Reloads are counted by result.
    applied = value(after, "ratui_reloads_total", result="applied")
    daemon.config.write_text(daemon.config.read_text() + "\n[client.services.more]\n")
    daemon.proc.popen.send_signal(signal.SIGHUP)  # refused: no local_addr
    wait_for(
        lambda: value(scrape(port)[2], "ratui_reloads_total", result="refused") == 1,
        10,
        "the refused reload",
    )
    assert value(scrape(port)[2], "ratui_reloads_total", result="applied") == applied


@pytest.mark.timeout(60)
def test_metrics_http_edges(tmp_path, procs: Procs, echo, sockdir) -> None:
    port = free_port()
    start_daemon(procs, tmp_path, sockdir, echo.addr, "--metrics-addr", f"127.0.0.1:{port}")
    wait_port(port, 10)
    assert scrape(port, "/")[0] == 200
    assert scrape(port, "/nope")[0] == 404
    assert scrape(port, "/metrics?name[]=x")[0] == 200
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as info:
        OPENER.open(request, timeout=10)
    assert info.value.code == 405
    head = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD")
    with OPENER.open(head, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
        assert int(response.headers["Content-Length"]) > 100
    # A client that says nothing does not hold the server up.
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)
    threads = [threading.Thread(target=scrape, args=(port,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert scrape(port)[0] == 200
    silent.close()


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (Linux: its socket inodes in /proc/net)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc")
@pytest.mark.timeout(60)
def test_no_metrics_unless_asked(tmp_path, procs: Procs, echo, sockdir) -> None:
    """Without --metrics-addr the daemon listens on its tunnel ports and nothing else."""
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    assert listening_ports(daemon.proc.popen.pid) == {daemon.control, daemon.public}
    assert "Metrics" not in daemon.proc.output()
    port = free_port()
    asked = start_daemon(
        procs, tmp_path, sockdir, echo.addr, "--metrics-addr", f"127.0.0.1:{port}", name="b.sock"
    )
    wait_port(port, 10)
    assert listening_ports(asked.proc.popen.pid) == {asked.control, asked.public, port}


@pytest.mark.timeout(60)
def test_metrics_address_errors(tmp_path, procs: Procs, echo, sockdir) -> None:
    config = tmp_path / "c.toml"
    from daemons import both_toml

    config.write_text(both_toml(free_port(), free_port(), echo.addr))
    bad = procs.ratui("--daemon", str(config), "--metrics-addr", "9100")
    assert bad.popen.wait(20) == 2
    assert "--metrics-addr: expected HOST:PORT" in bad.output()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        taken = procs.ratui(
            "--daemon",
            str(config),
            "--control-socket",
            "off",
            env={"RATUI_METRICS_ADDR": f"127.0.0.1:{port}"},
        )
        assert taken.popen.wait(20) == 1
    assert f"cannot serve metrics at 127.0.0.1:{port}" in taken.output()
    assert "Traceback" not in taken.output()
