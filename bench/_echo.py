"""Tiny TCP/UDP echo server on 127.0.0.1, run as a subprocess by the benches.

Usage: ``python bench/_echo.py [--tcp PORT] [--udp PORT]``

It is used as a tunnel's ``local_addr`` while the bench checks that the tunnel carries
data end to end, and as the service behind the tunnel in the connection-rate, latency and
memory benches. It runs on uvloop when installed, with plain Protocols (no streams), so that
it costs as little CPU per connection and per message as Python allows: the benches compare
paths that all share this backend, and a slow backend would hide the tunnel's cost. A
connection is closed once the peer has half-closed and everything was echoed. The open-file
limit is raised to the hard limit so that 10,000 idle connections fit.

Running it as a separate process keeps the bench process single-threaded and keeps the
echo work off the measuring process's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource

HOST = "127.0.0.1"


class _EchoTcp(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once the write buffer is flushed

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class _EchoUdp(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an asyncio.DatagramTransport subclass on every Python (3.11's selector one).
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


async def _serve(tcp_port: int | None, udp_port: int | None) -> None:
    loop = asyncio.get_running_loop()
    if tcp_port is not None:
        await loop.create_server(_EchoTcp, HOST, tcp_port, reuse_address=True, backlog=4096)
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
    with contextlib.suppress(ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        run = asyncio.run
    else:
        run = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        run(_serve(args.tcp, args.udp))


if __name__ == "__main__":
    main()
