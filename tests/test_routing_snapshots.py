"""Snapshots of the dashboard for a VPS whose services share ports 443 and 80 by host name
(ratui extension ``sni``/``http_host``/``default_route``): the services table shows each
shared service's port and first route, the channels panel its routes and the host each visitor
asked for. Built like tests/test_snapshots.py (a hand-filled state, a frozen clock); refresh
with ``pytest tests/test_routing_snapshots.py --snapshot-update`` after a deliberate change."""

from __future__ import annotations

from test_snapshots import (  # noqa: F401 - _snapshot_dir_and_timezone is an autouse fixture
    T0,
    Clock,
    _snapshot_dir_and_timezone,
    _up,
    frozen_state_time,
    seeder,
)

from ratui.app import EngineStatus, RatuiApp
from ratui.engine.config import parse_config
from ratui.engine.runtime import Roles
from ratui.engine.state import ControlState, EngineState, Role, ServiceStats
from ratui.widgets.services import address_label

SERVER_TOML = """
[server]
bind_addr = "0.0.0.0:2333"
default_token = "x"
[server.services.pi]
bind_addr = "0.0.0.0:443"
sni = ["pi.example.com", "*.pi.example.com"]
[server.services.nas]
bind_addr = "0.0.0.0:443"
sni = ["nas.example.com"]
[server.services.blog]
bind_addr = "0.0.0.0:80"
http_host = ["blog.example.com"]
proxy_protocol = "v2"
[server.services.home]
bind_addr = "0.0.0.0:80"
default_route = true
[server.services.ssh]
bind_addr = "0.0.0.0:2222"
"""

RATES = {"pi": (30_000.0, 1_800_000.0), "nas": (900.0, 52_000.0), "blog": (4_000.0, 90_000.0)}


def routed_state(clock: Clock) -> tuple[EngineState, dict[str, ServiceStats]]:
    config = parse_config(SERVER_TOML)
    assert config.server is not None
    stats: dict[str, ServiceStats] = {}
    with frozen_state_time(clock):
        state = EngineState()
        clock.now = T0 - 5000
        for name, svc in config.server.services.items():
            stats[name] = state.register(Role.SERVER, name, str(svc.type), svc.bind_addr)
            stats[name].routes = svc.routes.labels()
            stats[name].set_state(ControlState.WAITING)
        for offset, name in enumerate(("pi", "nas", "blog", "ssh")):
            _up(stats[name], clock, T0 - 4000 + offset * 60)
            stats[name].peer = f"198.51.100.{7 + offset % 2}:{40010 + offset}"
            stats[name].idle_data_channels = 8
        for age, peer, route, rx, tx in (
            (300, "203.0.113.9:51234", "pi.example.com", 48_213, 3_912_004),
            (42, "203.0.113.44:60011", "photos.pi.example.com", 812, 96_330),
            (5, "192.0.2.77:41002", "pi.example.com", 2_100, 8_192),
        ):
            clock.now = T0 - age
            record = state.open_visitor(stats["pi"], peer, route)
            record.rx, record.tx = rx, tx
        stats["pi"].visitors_total = 57
        clock.now = T0
    return state, stats


def routed_app() -> tuple[RatuiApp, object]:
    clock = Clock(T0)
    state, stats = routed_state(clock)
    app = RatuiApp(
        parse_config(SERVER_TOML, source="/etc/ratui/server.toml"),
        Roles(server=True, client=False),
        state=state,
        run_engine=False,
        clock=clock,
        started_at=T0 - 5000,
    )
    app.status = EngineStatus.RUNNING
    clock.now = T0 - 180
    return app, seeder(app, clock, stats, RATES)


def test_shared_ports_80x24(snap_compare) -> None:
    """``j`` selects pi (the table is sorted by name): its routes and visitors' hosts."""
    app, run_before = routed_app()
    assert snap_compare(app, press=["j", "j", "j"], terminal_size=(80, 24), run_before=run_before)


def test_shared_ports_160x48(snap_compare) -> None:
    app, run_before = routed_app()
    assert snap_compare(app, press=["j", "j", "j"], terminal_size=(160, 48), run_before=run_before)


def test_address_label_keeps_a_host_that_is_not_a_wildcard() -> None:
    """Routed services on 127.0.0.1:443 and 10.0.0.5:443 must not look the same."""
    state = EngineState()
    for name, addr in (
        ("lan", "10.0.0.5:443"),
        ("lo", "127.0.0.1:443"),
        ("any", "0.0.0.0:443"),
        ("any6", "[::]:443"),
    ):
        state.register(Role.SERVER, name, "tcp", addr).routes = ("pi.example.com",)
    state.register(Role.SERVER, "ssh", "tcp", "0.0.0.0:2222")
    labels = {s.name: address_label(s) for s in state.snapshot().services}
    assert labels == {
        "lan": "10.0.0.5:443 · pi.example.com",
        "lo": "127.0.0.1:443 · pi.example.com",
        "any": "443 · pi.example.com",
        "any6": "443 · pi.example.com",
        "ssh": "0.0.0.0:2222",
    }
