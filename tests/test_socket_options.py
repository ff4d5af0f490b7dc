"""``[*.transport.tcp]`` nodelay and keepalive on the sockets, read back with getsockopt
(PROTOCOL.md §3.4), for every transport type: tcp, noise, tls, websocket, websocket over TLS.

* Every TCP socket a transport accepts or connects gets ``nodelay`` and keepalive
  (``keepalive_secs`` idle, ``keepalive_interval`` between probes); the layered transports
  run on those same sockets. Through a proxy it is the socket to the proxy.
* ``connect(nodelay=...)`` overrides the setting (the client's control channels and a
  service's ``nodelay``).
* End to end, ratui server and client in one process: control channels have nodelay on both
  sides whatever the setting; data channels have the service's ``nodelay`` when it is set,
  else the transport's; keepalive everywhere.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest
from certs import ServerIdentity, server_identity
from conftest import free_port
from test_transport_noise import noise_table, open_pair, run
from test_transport_proxy import Proxies, proxies  # noqa: F401 - a fixture
from test_transport_tls import tls_table
from test_transport_websocket import ws_table

from ratui.engine.config import (
    NoiseConfig,
    TcpTransportConfig,
    TlsConfig,
    WebsocketConfig,
    parse_config,
)
from ratui.engine.protocol import service_digest
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.transport.base import Transport
from ratui.engine.transport.noise import NoiseTransport
from ratui.engine.transport.tcp import TcpTransport
from ratui.engine.transport.tls import TlsTransport
from ratui.engine.transport.websocket import WebsocketTransport
from ratui.genkey import generate_keypair

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_KEEPIDLE"), reason="TCP_KEEPIDLE/TCP_KEEPINTVL are Linux options"
)

KINDS = ["tcp", "noise", "tls", "websocket", "websocket-tls"]
IDLE, INTERVAL = 33, 7


def options(sock: socket.socket) -> dict[str, int]:
    return {
        "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    }


def expected(nodelay: bool) -> dict[str, int]:
    return {"nodelay": int(nodelay), "keepalive": 1, "idle": IDLE, "interval": INTERVAL}


def sock_of(channel) -> socket.socket:
    sock = channel.transport.get_extra_info("socket")
    assert sock is not None
    return sock


@pytest.fixture
def identity(tmp_path: Path) -> ServerIdentity:
    return server_identity(tmp_path / "pki")


def make(
    kind: str, ident: ServerIdentity, tcp: TcpTransportConfig, keys: tuple[str, str]
) -> Transport:
    """One transport that can serve and connect (for Noise, ``keys`` play both roles)."""
    tls = TlsConfig(
        trusted_root=str(ident.ca_pem), pkcs12=str(ident.pkcs12), pkcs12_password=ident.password
    )
    if kind == "tcp":
        return TcpTransport(tcp)
    if kind == "noise":
        private, public = keys
        return NoiseTransport(tcp, NoiseConfig(local_private_key=private, remote_public_key=public))
    if kind == "tls":
        return TlsTransport(tcp, tls)
    return WebsocketTransport(tcp, WebsocketConfig(tls=kind == "websocket-tls"), tls)


# ------------------------------------------------------------------------ transport level
@pytest.mark.timeout(30)
@pytest.mark.parametrize("nodelay", [True, False], ids=["nodelay", "no-nodelay"])
@pytest.mark.parametrize("kind", KINDS)
def test_both_ends_get_the_options(identity, kind, nodelay):
    tcp = TcpTransportConfig(nodelay=nodelay, keepalive_secs=IDLE, keepalive_interval=INTERVAL)
    transport = make(kind, identity, tcp, generate_keypair())

    async def main() -> None:
        client, server, listener = await open_pair(transport)
        try:
            assert options(sock_of(client)) == expected(nodelay)
            assert options(sock_of(server)) == expected(nodelay)
            # The per-connection override (control channels; a service's nodelay).
            port = listener.sockets[0].getsockname()[1]
            other = await transport.connect(f"127.0.0.1:{port}", nodelay=not nodelay)
            assert options(sock_of(other)) == expected(not nodelay)
            other.close()
        finally:
            client.close()
            server.close()
            listener.close()

    run(main())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", KINDS)
def test_the_socket_to_the_proxy_gets_the_options(identity, proxies: Proxies, kind):  # noqa: F811
    tcp = TcpTransportConfig(nodelay=False, keepalive_secs=IDLE, keepalive_interval=INTERVAL)
    keys = generate_keypair()
    server_side = make(kind, identity, tcp, keys)
    via = TcpTransportConfig(
        nodelay=False,
        keepalive_secs=IDLE,
        keepalive_interval=INTERVAL,
        proxy=proxies.url("socks5-auth"),
    )
    client_side = make(kind, identity, via, keys)

    async def main() -> None:
        accepted: asyncio.Queue = asyncio.Queue()
        listener = await server_side.listen("127.0.0.1:0", accepted.put_nowait)
        port = listener.sockets[0].getsockname()[1]
        try:
            client = await client_side.connect(f"localhost:{port}")
            server = await asyncio.wait_for(accepted.get(), 10)
            sock = sock_of(client)
            assert sock.getpeername()[1] == proxies.ports["socks5-auth"]
            assert options(sock) == expected(False)
            client.write(b"through the proxy")
            got = await server.receive(lambda r: r.take_rest() if len(r) >= 17 else None)
            assert got == b"through the proxy"
            client.close()
            server.close()
        finally:
            listener.close()

    run(main())


# ----------------------------------------------------------------------------- end to end
def transport_text(kind: str, role: str, ident: ServerIdentity, keys: tuple[str, str]) -> str:
    if kind == "tcp":
        text = f'[{role}.transport]\ntype = "tcp"\n'
    elif kind == "noise":
        text = (
            noise_table(role, None, keys[0])
            if role == "server"
            else noise_table(role, None, None, keys[1])
        )
    elif kind == "tls":
        text = (
            tls_table(role, pkcs12=ident.pkcs12, password=ident.password)
            if role == "server"
            else tls_table(role, trusted_root=ident.ca_pem)
        )
    else:
        text = ws_table(role, kind == "websocket-tls", ident)
    return text + (
        f"[{role}.transport.tcp]\nnodelay = false\nkeepalive_secs = {IDLE}\n"
        f"keepalive_interval = {INTERVAL}\n"
    )


def run_result(coro, timeout: float):
    box = []

    async def wrapper() -> None:
        box.append(await coro)

    run(wrapper(), timeout=timeout)
    return box[0]


def sockets_by_local_port() -> dict[int, socket.socket]:
    """Every TCP socket of this process, by local port (dup'ed: close them after)."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            sock.close()
            continue
        try:
            found[sock.getsockname()[1]] = sock
        except OSError:
            sock.close()
    return found


@pytest.mark.timeout(60)
@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/fd")
@pytest.mark.parametrize("kind", KINDS)
def test_engine_sockets_end_to_end(identity, kind):
    control = free_port()
    keys = generate_keypair()
    services = {"fast": free_port(), "plain": free_port()}
    text = f'[server]\nbind_addr = "127.0.0.1:{control}"\n' + transport_text(
        kind, "server", identity, keys
    )
    for name, port in services.items():
        text += f'[server.services.{name}]\ntoken = "t"\nbind_addr = "127.0.0.1:{port}"\n'
        if name == "fast":
            text += "nodelay = true\n"
    text += f'[client]\nremote_addr = "localhost:{control}"\nretry_interval = 1\n'
    text += transport_text(kind, "client", identity, keys)
    for name in services:
        text += f'[client.services.{name}]\ntoken = "t"\nlocal_addr = "127.0.0.1:9"\n'
        if name == "fast":
            text += "nodelay = true\n"

    async def main() -> list[int]:
        runtime = Runtime(parse_config(text, source="<sockopts>"), Roles(server=True, client=True))
        await runtime.start()
        try:
            assert runtime.server is not None
            controls = {n: runtime.server.services[service_digest(n)] for n in services}
            async with asyncio.timeout(20):
                while not all(s.control and len(s.control.pool) == 8 for s in controls.values()):
                    await asyncio.sleep(0.05)
            local = sockets_by_local_port()
            server_control_nodelay = []
            try:
                for name, service in controls.items():
                    assert service.control is not None
                    ctrl = sock_of(service.control.channel)
                    peer = local[ctrl.getpeername()[1]]  # the client's end
                    assert options(peer) == expected(True), f"{name}: client control channel"
                    got = options(ctrl)
                    server_control_nodelay.append(got.pop("nodelay"))
                    want = expected(True)
                    del want["nodelay"]
                    assert got == want, f"{name}: server control channel"
                    for data in service.control.pool:
                        want = expected(name == "fast")
                        sock = sock_of(data)
                        assert options(sock) == want, f"{name}: server data channel"
                        assert options(local[sock.getpeername()[1]]) == want, f"{name}: client"
            finally:
                for sock in local.values():
                    sock.close()
        finally:
            await runtime.stop()
        return server_control_nodelay

    server_control_nodelay = run_result(main(), timeout=50)
    # rathole sets nodelay on the control channels it accepts (server.rs:285); so does ratui.
    assert server_control_nodelay == [1, 1]
