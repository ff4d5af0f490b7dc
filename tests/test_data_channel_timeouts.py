"""A data channel has no TCP user timeout, unlike a control channel: a visitor whose local
service stops reading for a while leaves the data channel at a zero window, and a user timeout
would abort it although both ends are alive (Linux aborts a connection whose window stays
zero for longer than the user timeout). Real server and client in one process, real sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import poll_until, run
from test_bad_peers import port_of, tunnel_config

from ratui.engine.runtime import Roles, Runtime
from ratui.engine.server import MIN_CONTROL_USER_TIMEOUT
from ratui.engine.state import ControlState

#: More than every buffer on the way can hold (receive buffers grow up to tcp_rmem's 32 MiB).
PAYLOAD = 160 * 1024 * 1024


async def read_all(sock: socket.socket, size: int) -> None:
    """Read ``size`` bytes from ``sock`` (non-blocking) on the running loop."""
    loop = asyncio.get_running_loop()
    while size > 0:
        data = await loop.sock_recv(sock, 1 << 20)
        assert data, f"EOF with {size} bytes still to come"
        size -= len(data)


def user_timeout(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="a Linux option")
@pytest.mark.timeout(60)
def test_a_stalled_visitor_outlives_the_control_channel_user_timeout() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        # The local service: a bare listening socket whose connection is not read until later.
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        config = tunnel_config(listener.getsockname()[1], ("a",))
        runtime = Runtime(config, Roles(server=True, client=True))
        await runtime.start()
        try:
            await poll_until(
                lambda: all(s.state is ControlState.UP for s in runtime.state.snapshot().services),
                10,
                "the service up",
            )
            assert config.server is not None
            _, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(config.server.services["a"].bind_addr)
            )
            writer.write(bytes(PAYLOAD))
            local, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
            # Everything backs up to the visitor: the data channel sits at a zero window.
            await asyncio.sleep(1.0)
            await poll_until(
                lambda: writer.transport.get_write_buffer_size() > 0, 5, "the visitor blocked"
            )
            server = runtime.server
            assert server is not None
            control = server.services[next(iter(server.services))].control
            assert control is not None
            control_sock = control.channel.transport.get_extra_info("socket")
            assert user_timeout(control_sock) >= MIN_CONTROL_USER_TIMEOUT * 1000
            # Longer than the control channel's user timeout, then the service reads again.
            await asyncio.sleep(MIN_CONTROL_USER_TIMEOUT + 1.5)
            await asyncio.wait_for(read_all(local, PAYLOAD), 30)
            await asyncio.wait_for(writer.drain(), 5)
            writer.close()
            local.close()
        finally:
            await runtime.stop()
            listener.close()

    run(main())
