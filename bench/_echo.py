"""Tiny TCP/UDP echo server on 127.0.0.1, run as a subprocess by the benches.

Usage: ``python bench/_echo.py [--tcp PORT] [--udp PORT]``

It is used as a tunnel's ``local_addr`` while the bench checks that the tunnel carries
data end to end, and later benches (latency, UDP) can use it as the service behind a tunnel.
Running it as a separate process keeps the bench process single-threaded and keeps the
echo work off the measuring process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

HOST = "127.0.0.1"


async def _echo_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


class _EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an asyncio.DatagramTransport subclass on every Python (3.11's selector one).
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def _serve(tcp_port: int | None, udp_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    if tcp_port is not None:
        await asyncio.start_server(_echo_tcp, HOST, tcp_port, reuse_address=True)
    if udp_port is not None:
        await loop.create_datagram_endpoint(_EchoUdp, local_addr=(HOST, udp_port))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp", type=int, help="TCP port to echo on")
    parser.add_argument("--udp", type=int, help="UDP port to echo on")
    args = parser.parse_args()
    if args.tcp is None and args.udp is None:
        parser.error("give --tcp and/or --udp")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.tcp, args.udp))


if __name__ == "__main__":
    main()
