"""The daemon (issue 9): ``ratui --daemon CONFIG`` as a real subprocess and its control socket.

The socket's JSON-lines protocol is driven by hand (hello, snapshot, events, subscribe, apply,
reload, config, errors); its permissions (0600 in a 0700 directory) and the peer check
(SO_PEERCRED) are tried from a second user; the lock that keeps two daemons off one socket;
the stale socket a killed daemon leaves; graceful stops on SIGTERM/SIGINT; SIGHUP; JSON logs.
The snapshot codec is checked against the engine's own dataclasses. Sockets live in short
private directories under /tmp, TCP on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import pytest
from conftest import Procs, free_port, roundtrip, wait_closed, wait_port
from daemons import (
    TOKEN,
    Client,
    both_toml,
    extra_service,
    start_daemon,
    wait_for,
)

from ratui.control import ProtocolError, decode, encode, from_wire, to_wire
from ratui.daemon import peer_allowed
from ratui.engine.config import ConfigDiff
from ratui.engine.state import (
    ControlState,
    EngineState,
    Event,
    EventKind,
    Level,
    Role,
    ServiceSnapshot,
    Snapshot,
    VisitorSnapshot,
)
from ratui.setup.files import write_secret_file

NOBODY = 65534

# ---------------------------------------------------------------------------- the codec


def sample_snapshot() -> Snapshot:
    state = EngineState()
    stats = state.register(Role.SERVER, "web", "tcp", "0.0.0.0:8080")
    stats.set_state(ControlState.UP)
    stats.peer = "203.0.113.9:5000"
    visitor = state.open_visitor(stats, "198.51.100.1:40000")
    visitor.rx, visitor.tx = 1234, 56789
    stats.reconnects, stats.auth_failures, stats.udp_dropped = 3, 2, 1
    stats.last_error = "something ✓ unicode"
    stats.last_heartbeat = 1700000000.5
    state.register(Role.CLIENT, "ssh", "udp", "127.0.0.1:22")
    return state.snapshot()


def test_snapshot_round_trips_through_json() -> None:
    snapshot = sample_snapshot()
    wire = json.loads(json.dumps(to_wire(snapshot)))
    back = from_wire(Snapshot, wire)
    assert back == snapshot
    assert isinstance(back.services[0].state, ControlState)
    assert isinstance(back.services[0].role, Role)
    assert isinstance(back.services[0].visitors, tuple)
    assert isinstance(back.services[0].visitors[0], VisitorSnapshot)
    assert wire["services"][0]["state"] == "up"


def test_event_and_diff_round_trip() -> None:
    event = Event(7, 1.5, EventKind.AUTH_FAILED, Level.WARNING, "bad token", "web", Role.SERVER)
    assert from_wire(Event, json.loads(json.dumps(to_wire(event)))) == event
    plain = Event(8, 2, EventKind.CONFIG_LOADED, Level.INFO, "running x")
    assert from_wire(Event, to_wire(plain)) == plain
    diff = ConfigDiff(False, True, server_added=("a", "b"), client_removed=("c",))
    assert from_wire(ConfigDiff, to_wire(diff)) == diff


def test_codec_tolerates_newer_and_older_peers() -> None:
    wire = to_wire(sample_snapshot().services[0])
    wire["a_field_from_the_future"] = 1  # a newer daemon: ignored
    del wire["udp_dropped"]  # an older daemon: the default
    service = from_wire(ServiceSnapshot, wire)
    assert service.udp_dropped == 0
    for broken in ({**wire, "state": "exploded"}, {**wire, "rx": "12"}, {"name": "x"}):
        with pytest.raises(ProtocolError):
            from_wire(ServiceSnapshot, broken)


def test_lines_carry_the_version() -> None:
    line = encode({"id": 1, "op": "hello"})
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert decode(line) == {"v": 1, "id": 1, "op": "hello"}
    with pytest.raises(ProtocolError) as info:
        decode(b'{"v": 2, "op": "hello"}\n')
    assert info.value.code == "version"
    for bad in (b"not json\n", b"[1, 2]\n", b"\xff\n"):
        with pytest.raises(ProtocolError):
            decode(bad)


def test_peer_rule() -> None:
    assert peer_allowed(1000, own_uid=1000)
    assert peer_allowed(0, own_uid=1000)  # root may, as it may anything
    assert not peer_allowed(1001, own_uid=1000)
    assert not peer_allowed(None, own_uid=1000) or sys.platform != "linux"


# ---------------------------------------------------------------------------- a real daemon


@pytest.mark.timeout(60)
def test_socket_serves_state_events_and_changes(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    # Owner-only: the socket 0600 in a 0700 directory that the daemon made.
    assert stat.S_IMODE(daemon.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(daemon.socket.stat().st_mode)
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700

    with Client(daemon.socket) as client:
        hello = client.result("hello")
        assert hello["protocol"] == 1
        assert hello["server"] == "ratui"
        assert hello["pid"] == daemon.proc.popen.pid
        assert hello["roles"] == {"server": True, "client": True}
        assert hello["source"] == str(daemon.config)

        def services() -> dict[tuple[str, str], ServiceSnapshot]:
            snap = from_wire(Snapshot, client.result("snapshot")["snapshot"])
            return {(s.role, s.name): s for s in snap.services}

        wait_for(
            lambda: all(s.state is ControlState.UP for s in services().values()),
            15,
            "both ends of echo up",
        )
        backlog = client.result("subscribe")["backlog"]
        assert any(e["kind"] == "control_up" for e in backlog)
        assert [e["seq"] for e in backlog] == sorted(e["seq"] for e in backlog)

        payload = os.urandom(200_000)
        assert roundtrip(daemon.public, payload) == payload
        server_echo = wait_for(
            lambda: (s := services()[("server", "echo")]).rx == len(payload) and s,
            10,
            "the bytes in the snapshot",
        )
        assert server_echo.tx == len(payload)
        assert server_echo.visitors_total >= 1
        # The visitor's events arrive as pushes, numbered after the backlog.
        pushed = []
        while not any(f"{len(payload)} bytes in" in e["message"] for e in pushed):
            push = client.push()
            assert push["push"] == "event" and push["dropped"] == 0
            assert push["event"]["seq"] > backlog[-1]["seq"]
            pushed.append(push["event"])
        assert {"visitor_opened", "visitor_closed"} <= {e["kind"] for e in pushed}
        events = client.result("events")["events"]
        assert {e["kind"] for e in events} >= {"visitor_opened", "visitor_closed"}

        # apply: a second service, through the hot reload path; echo keeps running.
        public2 = free_port()
        text = both_toml(
            daemon.control,
            daemon.public,
            echo.addr,
            extra_services=extra_service("two", public2, echo.addr),
        )
        result = client.result("apply", toml=text)
        assert result["applied"] is True, result
        assert result["diff"]["server_added"] == ["two"]
        assert result["diff"]["client_added"] == ["two"]
        assert "control socket, pid" in result["message"]
        wait_port(public2, 15)
        assert roundtrip(public2, b"through two") == b"through two"
        assert roundtrip(daemon.public, b"still echo") == b"still echo"
        assert "two" not in daemon.config.read_text()  # not persisted unless asked

        # A config that does not parse is refused; the running one stays.
        refused = client.result("apply", toml="[server\nbind_addr = 1")
        assert refused["applied"] is False
        assert refused["diff"] is None
        assert "still running the previous one" in refused["message"]
        assert roundtrip(public2, b"two still") == b"two still"

        # persist: the file is replaced, with its mode kept.
        saved = client.result("apply", toml=text, persist=True)
        assert saved["applied"] is True and saved["saved"] is True
        assert daemon.config.read_text() == text
        assert stat.S_IMODE(daemon.config.stat().st_mode) == 0o600
        assert client.result("config") == {"source": str(daemon.config), "text": text}

        # reload: read the file again (it is the same now: nothing changes).
        reloaded = client.result("reload")
        assert reloaded["applied"] is True
        assert "no change" in reloaded["message"]

        # Errors are answers, not disconnections.
        unknown = client.call("frobnicate")
        assert unknown["ok"] is False and unknown["error"]["code"] == "unknown_op"
        client.send_raw(b'{"v": 99, "id": 41, "op": "hello"}\n')
        assert client.read()["error"]["code"] == "version"
        client.send_raw(b"this is not json\n")
        assert client.read()["error"]["code"] == "bad_request"
        assert client.call("apply")["error"]["code"] == "bad_request"
        assert client.result("hello")["protocol"] == 1

        unsubscribed = client.result("unsubscribe")
        assert unsubscribed == {}

    assert daemon.proc.popen.poll() is None
    assert daemon.proc.stop(signal.SIGTERM) == 0
    assert not daemon.socket.exists()  # removed on a clean stop
    assert "Traceback" not in daemon.proc.output()


@pytest.mark.timeout(60)
def symlinked_config(config: Path, mode: int) -> Path:
    """Turn ``config`` into a link to a file of that text and ``mode`` in a directory of its
    own, as a config kept in a dotfiles repository is; returns that file."""
    target = config.parent / "dotfiles" / config.name
    target.parent.mkdir()
    config.rename(target)
    target.chmod(mode)
    config.symlink_to(target)
    return target


def save_outcome(config: Path, target: Path, old: str, new: str) -> tuple[object, ...]:
    backup = target.with_name(target.name + ".bak")
    assert target.read_text() == new and backup.read_text() == old
    return (
        config.is_symlink(),
        stat.S_IMODE(target.stat().st_mode),
        stat.S_IMODE(backup.stat().st_mode),
        sorted(p.name for p in target.parent.iterdir()),
    )


def test_a_save_through_the_daemon_writes_as_a_local_save(
    tmp_path, procs: Procs, echo, sockdir
) -> None:
    """The daemon's persist and the editor's local save write with one policy: a .bak, 0600
    for a file others could read, and a symlinked config written through to its target."""
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    old = daemon.config.read_text()
    target = symlinked_config(daemon.config, 0o644)
    new = old + "\n# saved\n"
    with Client(daemon.socket) as client:
        saved = client.result("apply", toml=new, persist=True)
    assert saved["applied"] is True and saved["saved"] is True
    remote = save_outcome(daemon.config, target, old, new)

    local = tmp_path / "local" / daemon.config.name
    local.parent.mkdir()
    local.write_text(old)
    local_target = symlinked_config(local, 0o644)
    write_secret_file(local, new, overwrite=True)  # what the editor's local save calls
    assert save_outcome(local, local_target, old, new) == remote
    assert remote == (True, 0o600, 0o600, [target.name, f"{target.name}.bak"])


def test_several_clients_at_once(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    clients = [Client(daemon.socket) for _ in range(5)]
    try:
        for client in clients:
            client.result("subscribe")
        assert roundtrip(daemon.public, b"x" * 1000) == b"x" * 1000
        for client in clients:
            seen = set()
            while "visitor_closed" not in seen:
                seen.add(client.push()["event"]["kind"])
        clients[0].close()  # one leaves; the others are served on
        for client in clients[1:]:
            assert client.result("hello")["pid"] == daemon.proc.popen.pid
    finally:
        for client in clients[1:]:
            client.close()
    assert daemon.proc.popen.poll() is None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_removes_the_socket(tmp_path, procs: Procs, echo, sockdir, sig) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    with Client(daemon.socket) as client:
        client.result("subscribe")
        assert daemon.proc.stop(sig) == 0
        with pytest.raises((EOFError, OSError)):  # the attached client's connection closes
            for _ in range(1000):
                assert "push" in client.read()  # the last events first
    assert not daemon.socket.exists()
    wait_closed(daemon.public)
    assert "Shutting down" in daemon.proc.output()


@pytest.mark.timeout(60)
def test_sighup_reloads_and_is_seen_on_the_socket(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    public2 = free_port()
    with Client(daemon.socket) as client:
        client.result("subscribe")
        daemon.config.write_text(
            both_toml(
                daemon.control,
                daemon.public,
                echo.addr,
                extra_services=extra_service("two", public2, echo.addr),
            )
        )
        daemon.proc.popen.send_signal(signal.SIGHUP)
        while True:
            event = client.push()["event"]
            if event["kind"] == "config_reloaded":
                break
        assert "(SIGHUP)" in event["message"] and "added two" in event["message"]
    wait_port(public2, 15)
    assert roundtrip(public2, b"hup") == b"hup"


@pytest.mark.timeout(60)
def test_second_daemon_on_a_socket_in_use(tmp_path, procs: Procs, echo, sockdir) -> None:
    """A path given with --control-socket that another daemon serves is an error; the
    default path only costs a warning, and both tunnels run."""
    first = start_daemon(procs, tmp_path, sockdir, echo.addr)
    other = tmp_path / "other"
    other.mkdir()
    control, public = free_port(), free_port()
    config = other / "c.toml"
    config.write_text(both_toml(control, public, echo.addr))
    second = procs.ratui(
        "--daemon", str(config), "--control-socket", str(first.socket), env={"RATUI_WATCH": "off"}
    )
    assert second.popen.wait(20) == 1
    assert "served by another ratui" in second.output()
    assert "Traceback" not in second.output()
    # The first one's socket is untouched.
    with Client(first.socket) as client:
        assert client.result("hello")["pid"] == first.proc.popen.pid

    # Through the environment's default location: the second runs without a socket.
    runtime_dir = sockdir / "xdg"
    runtime_dir.mkdir(mode=0o700)
    env = {"RATUI_WATCH": "off", "XDG_RUNTIME_DIR": str(runtime_dir), "RATUI_CONTROL_SOCKET": ""}
    a = procs.ratui("--daemon", str(config), env=env)
    a.wait_for_output("Control socket at", 15)
    default = runtime_dir / "ratui" / "control.sock"
    assert default.exists()
    config_b = other / "b.toml"
    control_b, public_b = free_port(), free_port()
    config_b.write_text(both_toml(control_b, public_b, echo.addr))
    b = procs.ratui("--daemon", str(config_b), env=env)
    b.wait_for_output("runs without a control socket", 15)
    wait_port(public_b, 15)
    assert roundtrip(public_b, b"b works") == b"b works"
    with Client(default) as client:
        assert client.result("hello")["pid"] == a.popen.pid


@pytest.mark.timeout(60)
def test_stale_socket_of_a_killed_daemon_is_replaced(tmp_path, procs: Procs, echo, sockdir) -> None:
    first = start_daemon(procs, tmp_path, sockdir, echo.addr)
    first.proc.stop(signal.SIGKILL)
    assert first.socket.exists()  # nobody cleaned up
    wait_closed(first.control)
    second = procs.ratui(
        "--daemon",
        str(first.config),
        "--control-socket",
        str(first.socket),
        env={"RATUI_WATCH": "off"},
    )
    second.wait_for_output("Control socket at", 15)
    with Client(first.socket) as client:
        assert client.result("hello")["pid"] == second.popen.pid


@pytest.mark.timeout(60)
def test_control_socket_off(tmp_path, procs: Procs, echo, sockdir) -> None:
    control, public = free_port(), free_port()
    config = tmp_path / "c.toml"
    config.write_text(both_toml(control, public, echo.addr))
    runtime_dir = sockdir / "xdg"
    runtime_dir.mkdir(mode=0o700)
    env = {"RATUI_WATCH": "off", "XDG_RUNTIME_DIR": str(runtime_dir)}
    proc = procs.ratui("--daemon", str(config), "--control-socket", "off", env=env)
    wait_port(public, 15)
    proc2 = procs.ratui(
        "--daemon",
        str(config).replace("c.toml", "d.toml"),
        env={**env, "RATUI_CONTROL_SOCKET": "off"},
    )
    assert proc2.popen.wait(20) == 1  # d.toml does not exist: the usual one-line error
    assert not (runtime_dir / "ratui").exists()
    assert "Control socket" not in proc.output()


@pytest.mark.timeout(60)
def test_json_log_format(tmp_path, procs: Procs, echo, sockdir) -> None:
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr, "--log-format", "json")
    assert roundtrip(daemon.public, b"log me") == b"log me"
    assert daemon.proc.stop() == 0
    lines = daemon.proc.output().splitlines()
    assert lines
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(entries[0])
    assert any(e["message"].startswith("Control socket at") for e in entries)
    assert any(e["level"] == "debug" and "visitor" in e["message"] for e in entries)
    assert TOKEN not in daemon.proc.output()

    # The environment variable does the same.
    control, public = free_port(), free_port()
    config = tmp_path / "env.toml"
    config.write_text(both_toml(control, public, echo.addr))
    proc = procs.ratui(
        "--daemon",
        str(config),
        "--control-socket",
        "off",
        env={"RATUI_LOG_FORMAT": "json", "RATUI_WATCH": "off"},
    )
    wait_port(public, 15)
    assert proc.stop() == 0
    assert all(json.loads(line)["logger"] for line in proc.output().splitlines())


# ---------------------------------------------------------------------------- other users


def _as_nobody(path: Path) -> dict[str, object]:
    """Connect to ``path`` as uid 65534 in a forked child; what happened, as a dict."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report, leave without cleanup
        outcome: dict[str, object]
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(os.fspath(path))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b'{"v": 1, "id": 1, "op": "snapshot"}\n')  # may be hung up on
            data = b""
            with contextlib.suppress(ConnectionResetError):  # a hang-up with our line unread
                while chunk := sock.recv(65536):
                    data += chunk
            outcome = {"connected": True, "reply": data.decode()}
        except OSError as exc:
            outcome = {"connected": False, "errno": exc.errno}
        except BaseException as exc:  # pragma: no cover - reported, not raised
            outcome = {"connected": False, "error": repr(exc)}
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    data = b""
    deadline = time.monotonic() + 20
    while chunk := os.read(read_end, 65536):
        data += chunk
        if time.monotonic() > deadline:  # pragma: no cover
            break
    os.close(read_end)
    os.waitpid(pid, 0)
    return json.loads(data)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to a second user needs root")


@needs_root
@pytest.mark.timeout(60)
def test_another_user_is_refused(tmp_path, procs: Procs, echo, sockdir) -> None:
    """As uid 65534: the 0700 directory keeps the socket out of reach; and with the modes
    opened wide on purpose, the daemon itself refuses the peer (SO_PEERCRED) before reading
    anything, and says so in its log."""
    sockdir.chmod(0o755)  # the test's own directory is not the guard under test
    daemon = start_daemon(procs, tmp_path, sockdir, echo.addr)
    outcome = _as_nobody(daemon.socket)
    assert outcome == {"connected": False, "errno": 13}, outcome  # EACCES

    daemon.socket.parent.chmod(0o755)
    daemon.socket.chmod(0o666)
    outcome = _as_nobody(daemon.socket)
    assert outcome["connected"] is True, outcome
    lines = [json.loads(line) for line in str(outcome["reply"]).splitlines()]
    assert len(lines) == 1, lines  # one refusal, then the daemon hangs up: no snapshot
    assert lines[0]["ok"] is False
    assert lines[0]["error"]["code"] == "forbidden"
    assert "uid 65534" in lines[0]["error"]["message"]
    daemon.proc.wait_for_output("refused a connection from uid 65534", 10)
    # The owner is still served.
    with Client(daemon.socket) as client:
        assert client.result("hello")["pid"] == daemon.proc.popen.pid


@pytest.mark.timeout(60)
def test_rathole_command_line_as_a_daemon(tmp_path, procs: Procs, echo, sockdir) -> None:
    """`ratui --daemon --server FILE` where `rathole --server FILE` was: same file, same
    flags, only the server runs; the control socket comes with it."""
    control, public = free_port(), free_port()
    config = tmp_path / "rathole.server.toml"
    config.write_text(both_toml(control, public, echo.addr))
    sock = sockdir / "s.sock"
    proc = procs.ratui(
        "--daemon",
        "--server",
        str(config),
        "--control-socket",
        str(sock),
        env={"RATUI_WATCH": "off"},
    )
    proc.wait_for_output("Control socket at", 15)
    wait_port(control, 15)
    with Client(sock) as client:
        assert client.result("hello")["roles"] == {"server": True, "client": False}
        snapshot = from_wire(Snapshot, client.result("snapshot")["snapshot"])
        assert [(s.role, s.name) for s in snapshot.services] == [(Role.SERVER, "echo")]
    assert proc.stop(signal.SIGTERM) == 0
