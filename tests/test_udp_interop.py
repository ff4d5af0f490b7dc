"""UDP services between ratui and the reference rathole v0.5, in both directions.

Each test runs one side as the real rathole binary (``../shared/rathole/rathole``) and the
other as ratui, either as a ``python -m ratui`` process or, where the test needs a short
mapping timeout or ratui's counters, as a Runtime in the test's own event loop. The visitors,
the UDP echo service and the DNS server run in the test's event loop. 127.0.0.1 only, every
wait bounded.

rathole reads every datagram into a 2048-byte buffer (PROTOCOL.md §3.1, §7 item 21). With
rathole as the server, a visitor's datagram is cut to 2048 bytes before it is framed; with
rathole as the client, the service's reply is cut when rathole reads it. Longer frames that
ratui sends, rathole forwards intact. So a 65507-byte datagram comes back as its first
2048 bytes in both directions, and with a ratui server the service behind the rathole client
does receive all 65507 bytes.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from conftest import Procs, free_port, poll_until, write_config
from test_udp import (
    BIG,
    SERVICE,
    ZONE,
    big_roundtrip,
    check_dns,
    exchange,
    make_payloads,
    open_fds,
    run,
    section,
    start_dns,
    start_echo,
    tunnel_toml,
    visitor,
    wait_dns_up,
    wait_udp_up,
)

from ratui.engine import udp
from ratui.engine.config import parse_config
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import ControlState, Role

pytestmark = pytest.mark.interop

DIRECTIONS = [
    pytest.param("rathole", "ratui", id="rathole-server-ratui-client"),
    pytest.param("ratui", "rathole", id="ratui-server-rathole-client"),
]


def start_pair(
    procs: Procs, tmp_path: Path, server: str, client: str, local: int
) -> tuple[int, int]:
    """Start ``server`` and ``client`` ("ratui" or "rathole") for a UDP service in front of
    127.0.0.1:``local``; return (control port, service port)."""
    control, public = free_port(), free_port()
    text = tunnel_toml(control, public, local)
    server_cfg = write_config(tmp_path / "server.toml", section(text, "server"))
    client_cfg = write_config(tmp_path / "client.toml", section(text, "client"))
    for who, flag, cfg in ((server, "--server", server_cfg), (client, "--client", client_cfg)):
        start = procs.rathole if who == "rathole" else procs.ratui
        start(flag, str(cfg))
    return control, public


def reply_of(size: int) -> bytes:
    """What comes back for big_roundtrip(size) when rathole is on one end."""
    return random.Random(size).randbytes(size)[:2048]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "client"), DIRECTIONS)
def test_thousand_datagrams_from_fifty_visitors(
    procs: Procs, tmp_path: Path, server: str, client: str
) -> None:
    async def main() -> None:
        echo, local = await start_echo()
        sizes = echo.sizes
        _, public = start_pair(procs, tmp_path, server, client, local)
        async with asyncio.timeout(80):
            await wait_udp_up(public)
            result = await exchange(public, make_payloads(50, 20))
            assert (result.lost, result.misrouted) == (0, 0), result.errors[:5]
            assert result.answered == 1000
            # One local socket per visitor, and one more for the probe.
            assert len(echo.sources) == 51
            assert max(sizes) == 1400 and min(sizes) == 1
            # Over 2048 bytes: rathole cuts what it reads from a socket to 2048 bytes.
            sizes.clear()
            assert await big_roundtrip(public, BIG) == reply_of(BIG)
            assert await big_roundtrip(public, 2049) == reply_of(2049)
            assert await big_roundtrip(public, 2048) == reply_of(2048)
            if server == "ratui":
                # ratui carried the visitor's datagrams whole; rathole passed them on whole.
                assert sizes == [BIG, 2049, 2048], sizes
            else:
                assert sizes == [2048, 2048, 2048], sizes

    run(main())


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "client"), DIRECTIONS)
def test_dns_resolver_through_mixed_tunnel(
    procs: Procs, tmp_path: Path, server: str, client: str
) -> None:
    async def main() -> None:
        dns_server, local = await start_dns()
        _, public = start_pair(procs, tmp_path, server, client, local)
        async with asyncio.timeout(80):
            await wait_dns_up(public)
            await check_dns(public)
            assert dns_server.queries >= 3 * len(ZONE) + 2

    run(main())


@pytest.mark.timeout(90)
@pytest.mark.parametrize("ratui_role", ["client", "server"])
def test_idle_visitors_expire_against_rathole(
    procs: Procs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ratui_role: str
) -> None:
    """ratui in this process (2 s mapping timeout), rathole on the other end: after the
    timeout the visitor records are closed and, on a ratui client, the per-visitor sockets
    too (the process's fd count returns to its baseline)."""
    monkeypatch.setattr(udp, "UDP_TIMEOUT", 2.0)

    async def main() -> None:
        _, local = await start_echo()
        control, public = free_port(), free_port()
        text = tunnel_toml(control, public, local)
        other = "server" if ratui_role == "client" else "client"
        cfg = write_config(tmp_path / f"{other}.toml", section(text, other))
        procs.rathole(f"--{other}", str(cfg))
        roles = Roles(server=ratui_role == "server", client=ratui_role == "client")
        runtime = Runtime(parse_config(section(text, ratui_role), source="<interop>"), roles)
        role = Role(ratui_role)
        await runtime.start()
        try:
            async with asyncio.timeout(80):

                def snap():  # type: ignore[no-untyped-def]
                    found = runtime.state.snapshot().service(role, SERVICE)
                    assert found is not None
                    return found

                await poll_until(lambda: snap().state is ControlState.UP, 20, "ratui up")
                await wait_udp_up(public)
                await poll_until(lambda: snap().visitors_open == 0, 8, "probe expiry")
                baseline = open_fds()
                result = await exchange(public, make_payloads(50, 4))
                assert (result.lost, result.misrouted) == (0, 0), result.errors[:5]
                assert snap().visitors_open == 50
                if ratui_role == "client":
                    assert open_fds() == baseline + 50
                    # rathole asked for 2 data channels and uses one: the other stays idle.
                    assert snap().idle_data_channels == 1
                await poll_until(lambda: snap().visitors_open == 0, 8, "visitor expiry")
                await poll_until(lambda: open_fds() == baseline, 5, "fds back to baseline")
                assert snap().visitors_total == 51
                assert snap().rx == snap().tx > 0
                # A visitor after the expiry gets a fresh mapping that works.
                v = await visitor(public)
                assert await v.ask(b"fresh") == b"fresh"
                v.close()
        finally:
            await runtime.stop()

    run(main())
