"""UDP services, ratui on both ends, in one event loop: real sockets on 127.0.0.1 only.

What is checked: many visitors' datagrams of assorted sizes (up to 65507 bytes) reach the
service behind the client and every reply reaches its own visitor; a DNS resolver library gets
answers from a small authoritative server through the tunnel; idle mappings expire and the
number of open file descriptors returns to where it was; a peer that sends oversized or
malformed frames is dropped with a log line and other visitors go on (a fake rathole peer plays
the client or the server for that); a data channel that cannot keep up drops datagrams and
counts them instead of growing memory. Every wait is bounded.

The helpers at the top (echo service, visitors, DNS server, fake peers) are also used by
``test_udp_interop.py``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import socket
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
from conftest import free_port, poll_until, run

from ratui.engine import udp
from ratui.engine.config import parse_config
from ratui.engine.protocol import (
    Ack,
    Auth,
    ControlChannelHello,
    ControlCmd,
    DataChannelHello,
    DataCmd,
    UdpFrameDecoder,
    UdpPacket,
    auth_digest,
    decode_ack,
    decode_control_cmd,
    decode_data_cmd,
    decode_hello,
    encode_ack,
    encode_auth,
    encode_control_cmd,
    encode_data_cmd,
    encode_hello,
    encode_udp_packet,
    service_digest,
)
from ratui.engine.runtime import Roles, Runtime
from ratui.engine.state import ControlState, EngineState, Role

TOKEN = "udp-test-token"
SERVICE = "dns"
HOST = "127.0.0.1"
BIG = 65507  # the largest IPv4 UDP payload


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------------ the local service


class UdpEcho(asyncio.DatagramProtocol):
    """The service behind the client: echoes every datagram; remembers who sent them."""

    def __init__(self) -> None:
        self.sources: set[tuple[str, int]] = set()
        self.sizes: list[int] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]
        self.sock = transport.get_extra_info("socket")

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.add(addr)
        self.sizes.append(len(data))
        self.transport.sendto(data, addr)


async def start_echo(host: str = HOST) -> tuple[UdpEcho, int]:
    loop = asyncio.get_running_loop()
    transport, echo = await loop.create_datagram_endpoint(UdpEcho, local_addr=(host, 0))
    # Big datagrams in flight from 50 visitors: give the service some room.
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    return echo, transport.get_extra_info("sockname")[1]


# ------------------------------------------------------------------------ visitors


class Visitor(asyncio.DatagramProtocol):
    """One visitor socket, connected to the service port; datagrams land in a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:  # ICMP before the port is up
        pass

    async def ask(self, data: bytes, timeout: float = 2.0) -> bytes:
        self.transport.sendto(data)
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        self.transport.close()


async def visitor(port: int, host: str = HOST) -> Visitor:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(Visitor, remote_addr=(host, port))
    return proto


async def wait_udp_up(port: int, timeout: float = 20.0) -> None:
    """Send probes to the service port until one comes back echoed."""
    probe = await visitor(port)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                if await probe.ask(b"probe", 0.3) == b"probe":
                    return
            except TimeoutError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"UDP tunnel on port {port} not up after {timeout} s")
    finally:
        probe.close()


def make_payloads(visitors: int, per_visitor: int, seed: int = 5) -> list[list[bytes]]:
    """``visitors * per_visitor`` datagrams, 1 to 1400 bytes (both ends included), each
    starting with its visitor's number so a reply that reached the wrong visitor shows."""
    rng = random.Random(seed)
    sizes = [1, 1400, 2, 1399, *(rng.randint(1, 1400) for _ in range(visitors * per_visitor - 4))]
    rng.shuffle(sizes)
    out: list[list[bytes]] = []
    for v in range(visitors):
        mine = []
        for s in range(per_visitor):
            size = sizes[v * per_visitor + s]
            mine.append((bytes([v, s]) + rng.randbytes(size))[:size])
        out.append(mine)
    return out


@dataclass
class ExchangeResult:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    retries: int = 0
    misrouted: int = 0
    errors: list[str] = field(default_factory=list)


async def exchange(
    port: int,
    payloads: list[list[bytes]],
    window: int = 2,
    timeout: float = 1.0,
    tries: int = 4,
) -> ExchangeResult:
    """Every visitor (one socket each) sends its datagrams, at most ``window`` unanswered,
    resending after ``timeout`` up to ``tries`` times, and checks each reply is its own."""
    result = ExchangeResult()
    sockets = [await visitor(port) for _ in payloads]

    async def one(number: int, me: Visitor, mine: list[bytes]) -> None:
        todo = collections.deque(mine)
        waiting: collections.Counter[bytes] = collections.Counter()
        attempts: dict[bytes, int] = {}
        while todo or waiting:
            while todo and sum(waiting.values()) < window:
                data = todo.popleft()
                waiting[data] += 1
                attempts[data] = 1
                me.transport.sendto(data)
                result.sent += 1
            try:
                reply = await asyncio.wait_for(me.queue.get(), timeout)
            except TimeoutError:
                for data in list(waiting):
                    if attempts[data] >= tries:
                        result.lost += waiting.pop(data)
                        result.errors.append(f"visitor {number}: {len(data)} bytes lost")
                    else:
                        attempts[data] += 1
                        result.retries += 1
                        me.transport.sendto(data)
                continue
            if reply[:1] != bytes([number]):
                result.misrouted += 1
                result.errors.append(f"visitor {number} got a reply for visitor {reply[0]}")
            elif waiting[reply]:
                waiting[reply] -= 1
                if not waiting[reply]:
                    del waiting[reply]
                result.answered += 1
            # else: a duplicate answer to a resent datagram

    try:
        await asyncio.gather(
            *(one(n, s, p) for n, (s, p) in enumerate(zip(sockets, payloads, strict=True)))
        )
    finally:
        for s in sockets:
            s.close()
        await asyncio.sleep(0.05)  # let the loop really close them
    return result


async def big_roundtrip(port: int, size: int = BIG) -> bytes:
    """One datagram of ``size`` bytes through the tunnel; returns the reply."""
    v = await visitor(port)
    try:
        data = random.Random(size).randbytes(size)
        for _ in range(4):
            try:
                return await v.ask(data, 1.0)
            except TimeoutError:
                continue
        raise AssertionError(f"no reply to a {size}-byte datagram")
    finally:
        v.close()


# ------------------------------------------------------------------------ a DNS server


ZONE = {
    "www.example.test.": ("A", "192.0.2.10"),
    "mail.example.test.": ("A", "192.0.2.25"),
    "v6.example.test.": ("AAAA", "2001:db8::53"),
    "text.example.test.": ("TXT", '"ratui carries UDP"'),
}


class TinyDns(asyncio.DatagramProtocol):
    """An authoritative server for ``example.test``: answers ZONE, NXDOMAIN for the rest."""

    def __init__(self) -> None:
        self.queries = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queries += 1
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text()
        entry = ZONE.get(name)
        if entry is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif dns.rdatatype.to_text(question.rdtype) == entry[0]:
            response.answer.append(dns.rrset.from_text(name, 300, "IN", *entry))
        self.transport.sendto(response.to_wire(), addr)


async def start_dns() -> tuple[TinyDns, int]:
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(TinyDns, local_addr=(HOST, 0))
    return server, transport.get_extra_info("sockname")[1]


async def wait_dns_up(port: int, timeout: float = 20.0) -> None:
    """Query through ``port`` until an answer comes (the service port may still be coming up)."""
    deadline = asyncio.get_running_loop().time() + timeout
    query = dns.message.make_query("www.example.test.", "A")
    while True:
        try:
            await dns.asyncquery.udp(query, HOST, port=port, timeout=0.3)
            return
        except (TimeoutError, dns.exception.Timeout, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no DNS answer through port {port} in {timeout} s") from None


async def check_dns(port: int) -> None:
    """Resolve through ``port`` with dnspython's asyncio resolver, as an application would."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [HOST]
    resolver.port = port
    resolver.timeout = 2.0
    resolver.lifetime = 8.0
    for _ in range(3):
        for name, (rdtype, value) in ZONE.items():
            answer = await resolver.resolve(name, rdtype)
            assert [r.to_text() for r in answer] == [value], (name, answer.rrset)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nope.example.test.", "A")
    # dig-style: one query, one socket, look at the raw response.
    query = dns.message.make_query("www.example.test.", "A")
    response = await dns.asyncquery.udp(query, HOST, port=port, timeout=3.0)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert response.answer[0].to_text() == "www.example.test. 300 IN A 192.0.2.10"


# ------------------------------------------------------------------------ an in-process tunnel


def tunnel_toml(control: int, public: int, local: int, bind_host: str = HOST) -> str:
    bind = f"[{bind_host}]" if ":" in bind_host else bind_host
    return f"""
[server]
bind_addr = "{HOST}:{control}"
[server.services.{SERVICE}]
type = "udp"
token = "{TOKEN}"
bind_addr = "{bind}:{public}"

[client]
remote_addr = "{HOST}:{control}"
retry_interval = 1
[client.services.{SERVICE}]
type = "udp"
token = "{TOKEN}"
local_addr = "{HOST}:{local}"
"""


def section(text: str, role: str) -> str:
    """Only the ``[server...]`` or ``[client...]`` tables of a tunnel_toml()."""
    start = text.index(f"[{role}]")
    end = text.index("[client]") if role == "server" else len(text)
    return text[start:end]


class Tunnel:
    """ratui server + client (a Runtime each, one EngineState) in front of a local service."""

    def __init__(self, local_port: int, roles: Roles | None = None, **kw: Any) -> None:
        roles = roles or Roles(server=True, client=True)
        self.control, self.public = free_port(), free_port()
        text = tunnel_toml(self.control, self.public, local_port, **kw)
        if not roles.client:
            text = section(text, "server")
        elif not roles.server:
            text = section(text, "client")
        self.runtime = Runtime(parse_config(text, source="<udp-test>"), roles)
        self.state: EngineState = self.runtime.state

    async def __aenter__(self) -> Tunnel:
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.stop()

    def stats(self, role: Role) -> Any:
        snap = self.state.snapshot().service(role, SERVICE)
        assert snap is not None
        return snap

    def up(self) -> bool:
        snap = self.state.snapshot()
        found = [snap.service(r, SERVICE) for r in (Role.SERVER, Role.CLIENT)]
        return all(s is None or s.state is ControlState.UP for s in found) and any(found)

    def server_udp(self) -> udp.UdpServer:
        assert self.runtime.server is not None
        control = self.runtime.server.services[service_digest(SERVICE)].control
        assert control is not None and control.udp is not None
        return control.udp

    def events(self, text: str) -> list[str]:
        return [e.message for e in self.state.recent_events() if text in e.message]


# ------------------------------------------------------------------------ fake rathole peers


async def read_packets(reader: asyncio.StreamReader, decoder: UdpFrameDecoder) -> list[UdpPacket]:
    """Read from a UDP data channel until at least one whole frame came."""
    while True:
        chunk = await asyncio.wait_for(reader.read(1 << 16), 5)
        if not chunk:
            raise EOFError("data channel closed")
        packets = decoder.feed(chunk)
        if packets:
            return packets


async def expect_eof(reader: asyncio.StreamReader, timeout: float = 5.0) -> None:
    while await asyncio.wait_for(reader.read(1 << 16), timeout):
        pass


class FakeClient:
    """Speaks the client's side of the protocol by hand, to a ratui server."""

    def __init__(self, control_port: int) -> None:
        self.port = control_port
        self.key = b""

    async def connect(self) -> list[ControlCmd]:
        self.ctl_r, self.ctl_w = await asyncio.open_connection(HOST, self.port)
        self.ctl_w.write(encode_hello(ControlChannelHello(service_digest(SERVICE))))
        nonce = decode_hello(await self.ctl_r.readexactly(37))
        assert isinstance(nonce, ControlChannelHello)
        self.key = auth_digest(TOKEN, nonce.digest)
        self.ctl_w.write(encode_auth(Auth(self.key)))
        assert decode_ack(await self.ctl_r.readexactly(4)) is Ack.OK
        return [await self.command() for _ in range(udp.UDP_POOL_SIZE)]

    async def command(self, timeout: float = 5.0) -> ControlCmd:
        return decode_control_cmd(await asyncio.wait_for(self.ctl_r.readexactly(4), timeout))

    async def data_channel(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        writer.write(encode_hello(DataChannelHello(self.key)))
        return reader, writer

    def close(self) -> None:
        self.ctl_w.close()


class FakeServer:
    """Speaks the server's side of the protocol by hand, to a ratui client."""

    def __init__(self) -> None:
        self.data: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.controls: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = decode_hello(await reader.readexactly(37))
        if isinstance(hello, DataChannelHello):
            await self.data.put((reader, writer))
            return
        nonce = os.urandom(32)
        writer.write(encode_hello(ControlChannelHello(nonce)))
        auth = await reader.readexactly(32)
        assert auth == auth_digest(TOKEN, nonce)
        writer.write(encode_ack(Ack.OK))
        writer.write(encode_control_cmd(ControlCmd.CREATE_DATA_CHANNEL) * udp.UDP_POOL_SIZE)
        self.controls.append(writer)

    def close(self) -> None:
        self.server.close()
        for writer in self.controls:
            writer.close()


START_UDP = encode_data_cmd(DataCmd.START_FORWARD_UDP)


# =============================================================================== tests


@pytest.mark.timeout(60)
def test_many_visitors_assorted_sizes_each_reply_to_its_own_visitor() -> None:
    async def main() -> None:
        echo, local = await start_echo()
        async with asyncio.timeout(50), Tunnel(local) as t:
            await poll_until(t.up, what="both roles up")
            await wait_udp_up(t.public)
            result = await exchange(t.public, make_payloads(50, 20))
            assert (result.lost, result.misrouted) == (0, 0), result.errors[:5]
            assert result.answered == 1000
            # ratui carries the largest UDP datagram whole, both ways.
            assert len(await big_roundtrip(t.public)) == BIG
            assert await big_roundtrip(t.public, 2049) == random.Random(2049).randbytes(2049)
            # Under load a resent datagram (or its answer) may still be in flight: wait for
            # both ends to have counted the same bytes.
            await poll_until(
                lambda: (
                    (t.stats(Role.SERVER).rx, t.stats(Role.SERVER).tx)
                    == (t.stats(Role.CLIENT).rx, t.stats(Role.CLIENT).tx)
                ),
                what="both ends counting the same bytes",
            )
            server, client = t.stats(Role.SERVER), t.stats(Role.CLIENT)
            # 50 visitors + the probe + 2 big ones, seen by both ends and by the service
            # as distinct source sockets.
            assert server.visitors_total == client.visitors_total == 53
            assert len(echo.sources) == 53
            assert server.rx >= sum(len(p) for ps in make_payloads(50, 20) for p in ps) + BIG + 2049
            assert server.idle_data_channels == 1  # the spare
            assert server.udp_dropped == client.udp_dropped == 0

    run(main())


@pytest.mark.timeout(60)
def test_dns_resolver_through_the_tunnel() -> None:
    async def main() -> None:
        dns_server, local = await start_dns()
        async with asyncio.timeout(50), Tunnel(local) as t:
            await poll_until(t.up, what="both roles up")
            await wait_dns_up(t.public)
            await check_dns(t.public)
            assert dns_server.queries >= 3 * len(ZONE) + 2
            # Each resolver query came from its own socket: one visitor each on both ends.
            assert t.stats(Role.SERVER).visitors_total >= 3 * len(ZONE) + 2
            assert t.stats(Role.CLIENT).visitors_total == t.stats(Role.SERVER).visitors_total

    run(main())


@pytest.mark.timeout(60)
def test_idle_mappings_expire_and_sockets_return_to_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(udp, "UDP_TIMEOUT", 2.0)

    async def main() -> None:
        _, local = await start_echo()
        async with asyncio.timeout(50), Tunnel(local) as t:
            await poll_until(t.up, what="both roles up")
            await wait_udp_up(t.public)
            await poll_until(lambda: t.stats(Role.CLIENT).visitors_open == 0, 5, "probe expiry")
            baseline = open_fds()
            result = await exchange(t.public, make_payloads(50, 4))
            assert (result.lost, result.misrouted) == (0, 0), result.errors[:5]
            # The 50 visitor sockets of the test are closed now; the client still holds one
            # socket per visitor, the server one record per visitor.
            assert open_fds() == baseline + 50
            assert t.stats(Role.CLIENT).visitors_open == 50
            assert t.stats(Role.SERVER).visitors_open == 50
            await poll_until(
                lambda: open_fds() == baseline, 5, f"fds back to {baseline} (now {open_fds()})"
            )
            server, client = t.stats(Role.SERVER), t.stats(Role.CLIENT)
            assert server.visitors_open == client.visitors_open == 0
            assert server.visitors_total == client.visitors_total == 51
            # Counters survive the records: bytes of closed visitors stay in the totals.
            assert server.rx == client.rx == server.tx == client.tx > 0
            # A mapping that keeps talking does not expire.
            v = await visitor(t.public)
            for _ in range(8):
                assert await v.ask(b"keepalive") == b"keepalive"
                await asyncio.sleep(0.25)
            assert t.stats(Role.CLIENT).visitors_open == 1
            v.close()

    run(main())


@pytest.mark.timeout(60)
def test_ipv6_dual_stack_service_socket_uses_mapped_addresses() -> None:
    """bind_addr [::]: an IPv4 visitor is framed as IPv4-mapped IPv6 (24-byte header), as
    rathole's dual-stack socket does, and the reply finds its way back."""

    async def main() -> None:
        _, local = await start_echo()
        async with asyncio.timeout(50), Tunnel(local, bind_host="::") as t:
            await poll_until(t.up, what="both roles up")
            await wait_udp_up(t.public)
            v = await visitor(t.public)
            assert await v.ask(b"mapped") == b"mapped"
            peers = [vs.peer for vs in t.stats(Role.CLIENT).visitors]
            assert peers and all(p.startswith("[::ffff:127.0.0.1]:") for p in peers), peers
            v.close()
            if socket.has_ipv6:
                try:
                    v6 = await visitor(t.public, "::1")
                except OSError:  # pragma: no cover - no IPv6 loopback here
                    return
                assert await v6.ask(b"six") == b"six"
                v6.close()

    run(main())


@pytest.mark.timeout(60)
def test_bad_frames_from_the_client_side(caplog: pytest.LogCaptureFixture) -> None:
    """A peer client sends an oversized reply (dropped, logged, channel stays) and then a
    frame that cannot be parsed (logged, channel closed): the server moves the service to the
    spare data channel, asks for a new one, and visitors go on."""

    async def main() -> None:
        async with asyncio.timeout(50), Tunnel(free_port(), Roles(True, False)) as t:
            fake = FakeClient(t.control)
            assert await fake.connect() == [ControlCmd.CREATE_DATA_CHANNEL] * 2
            r1, w1 = await fake.data_channel()
            assert decode_data_cmd(await asyncio.wait_for(r1.readexactly(4), 5)) is (
                DataCmd.START_FORWARD_UDP
            )
            r2, w2 = await fake.data_channel()
            await poll_until(lambda: t.stats(Role.SERVER).idle_data_channels == 1)
            await poll_until(lambda: t.stats(Role.SERVER).state is ControlState.UP)
            a, b = await visitor(t.public), await visitor(t.public)
            dec1 = UdpFrameDecoder()

            async def echo_once(reader: asyncio.StreamReader, writer: Any, dec: Any) -> None:
                for p in await read_packets(reader, dec):
                    writer.write(encode_udp_packet(UdpPacket(p.addr, b"re:" + p.data)))

            a.transport.sendto(b"a1")
            await echo_once(r1, w1, dec1)
            assert await asyncio.wait_for(a.queue.get(), 5) == b"re:a1"
            b.transport.sendto(b"b1")
            [pb] = await read_packets(r1, dec1)
            assert pb.data == b"b1"

            # Oversized: 65535 bytes is more than any IPv4 datagram. Dropped, logged, and the
            # channel carries on: the reply to b right behind it arrives.
            w1.write(encode_udp_packet(UdpPacket(pb.addr, bytes(65535))))
            w1.write(encode_udp_packet(UdpPacket(pb.addr, b"re:b1")))
            assert await asyncio.wait_for(b.queue.get(), 5) == b"re:b1"
            assert t.stats(Role.SERVER).udp_dropped == 1
            assert len(t.events("dropped a 65535-byte reply")) == 1

            # Malformed: a header length of 3. The channel is closed with one log line...
            w1.write(b"\x03abc")
            await expect_eof(r1)
            assert len(t.events("malformed UDP frame")) == 1
            assert "switching to a spare data channel" in t.events("malformed UDP frame")[0]
            assert any("malformed UDP frame" in r.getMessage() for r in caplog.records)
            # ...the spare takes over and a replacement is asked for.
            assert decode_data_cmd(await asyncio.wait_for(r2.readexactly(4), 5)) is (
                DataCmd.START_FORWARD_UDP
            )
            assert await fake.command() is ControlCmd.CREATE_DATA_CHANNEL
            dec2 = UdpFrameDecoder()
            for who, data in ((a, b"a2"), (b, b"b2")):
                who.transport.sendto(data)
                await echo_once(r2, w2, dec2)
                assert await asyncio.wait_for(who.queue.get(), 5) == b"re:" + data
            # The replacement data channel becomes the new spare.
            _, w3 = await fake.data_channel()
            await poll_until(lambda: t.stats(Role.SERVER).idle_data_channels == 1)
            assert t.stats(Role.SERVER).state is ControlState.UP
            for s in (a, b):
                s.close()
            for w in (w1, w2, w3):
                w.close()
            fake.close()

    run(main())


@pytest.mark.timeout(60)
def test_bad_frames_from_the_server_side() -> None:
    """A peer server sends frames for IPv4, IPv6 and IPv4-mapped visitors (each answered
    with its own address as ``from``), an oversized frame (dropped with a log line, the
    channel stays) and a malformed one (logged, that channel closed); a later StartForwardUdp
    on the other data channel works."""

    async def main() -> None:
        echo, local = await start_echo()
        fake = FakeServer()
        control = await fake.start()
        text = section(tunnel_toml(control, 0, local), "client")
        runtime = Runtime(parse_config(text, source="<udp-test>"), Roles(False, True))
        await runtime.start()
        state = runtime.state
        try:
            async with asyncio.timeout(50):
                r1, w1 = await asyncio.wait_for(fake.data.get(), 10)
                r2, w2 = await asyncio.wait_for(fake.data.get(), 10)
                w1.write(START_UDP)
                visitors = [("203.0.113.7", 5353), ("2001:db8::1", 443), ("::ffff:1.2.3.4", 9)]
                for addr in visitors:
                    w1.write(encode_udp_packet(UdpPacket(addr, f"hi {addr[0]}".encode())))
                dec = UdpFrameDecoder()
                got: list[UdpPacket] = []
                while len(got) < 3:
                    got += await read_packets(r1, dec)
                assert sorted((p.addr, p.data) for p in got) == sorted(
                    (a, f"hi {a[0]}".encode()) for a in visitors
                )
                assert len(echo.sources) == 3  # one local socket per visitor

                w1.write(encode_udp_packet(UdpPacket(visitors[0], bytes(65535))))
                w1.write(encode_udp_packet(UdpPacket(visitors[0], b"still here")))
                assert [(p.addr, p.data) for p in await read_packets(r1, dec)] == [
                    (visitors[0], b"still here")
                ]
                snap = state.snapshot().service(Role.CLIENT, SERVICE)
                assert snap is not None and snap.udp_dropped == 1
                events = [e.message for e in state.recent_events()]
                assert sum("dropped a 65535-byte datagram" in m for m in events) == 1

                # An address tag that is neither V4 nor V6.
                w1.write(bytes([12]) + (7).to_bytes(4, "little") + bytes(8))
                await expect_eof(r1)
                events = [e.message for e in state.recent_events()]
                assert sum("malformed UDP frame" in m for m in events) == 1
                await poll_until(
                    lambda: state.snapshot().service(Role.CLIENT, SERVICE).visitors_open == 0,
                    what="mappings of the closed channel released",
                )
                w2.write(START_UDP + encode_udp_packet(UdpPacket(visitors[1], b"again")))
                assert [(p.addr, p.data) for p in await read_packets(r2, UdpFrameDecoder())] == [
                    (visitors[1], b"again")
                ]
                w2.close()
        finally:
            await runtime.stop()
            fake.close()

    run(main())


@pytest.mark.timeout(60)
def test_full_data_channel_drops_datagrams_instead_of_growing() -> None:
    """The peer client stops reading its data channel: once the channel's buffer is full the
    server drops visitor datagrams and counts them; its write buffer stays bounded, and
    forwarding resumes when the peer reads again."""

    async def main() -> None:
        async with asyncio.timeout(50), Tunnel(free_port(), Roles(True, False)) as t:
            fake = FakeClient(t.control)
            await fake.connect()
            r1, w1 = await fake.data_channel()
            assert decode_data_cmd(await asyncio.wait_for(r1.readexactly(4), 5)) is (
                DataCmd.START_FORWARD_UDP
            )
            await poll_until(lambda: t.stats(Role.SERVER).state is ControlState.UP)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((HOST, t.public))
            chunk = bytes(1400)
            biggest = 0
            active = t.server_udp().active
            assert active is not None
            for _ in range(400):
                for _ in range(100):
                    try:
                        sock.send(chunk)
                    except BlockingIOError:
                        break
                await asyncio.sleep(0)
                biggest = max(biggest, active.transport.get_write_buffer_size())
                if t.stats(Role.SERVER).udp_dropped > 1000:
                    break
            sock.close()
            assert t.stats(Role.SERVER).udp_dropped > 1000
            assert biggest <= udp.CHANNEL_BUFFER_LIMIT + 64 * 1024, biggest
            events = t.events("UDP datagrams dropped: the data channel is full")
            assert len(events) == 1  # rate-limited: one line, not one per datagram
            # Reading again drains the channel; new datagrams get through.
            drained = 0
            dec = UdpFrameDecoder()
            while t.server_udp().active.paused or drained == 0:  # type: ignore[union-attr]
                drained += len(await read_packets(r1, dec))
            v = await visitor(t.public)
            v.transport.sendto(b"after")
            for _ in range(10_000):
                packets = await read_packets(r1, dec)
                if any(p.data == b"after" for p in packets):
                    break
            else:  # pragma: no cover
                raise AssertionError("datagram after the drain never came")
            v.close()
            w1.close()
            fake.close()

    run(main())


@pytest.mark.timeout(60)
def test_a_young_dying_channel_backs_off_requests() -> None:
    """A client whose UDP data channels die at once (e.g. it has the service as TCP) is not
    asked for new ones in a tight loop."""

    async def main() -> None:
        async with asyncio.timeout(50), Tunnel(free_port(), Roles(True, False)) as t:
            fake = FakeClient(t.control)
            await fake.connect()
            waited = []
            for _ in range(3):
                reader, writer = await fake.data_channel()
                assert decode_data_cmd(await asyncio.wait_for(reader.readexactly(4), 5)) is (
                    DataCmd.START_FORWARD_UDP
                )
                writer.close()  # "Expect TCP traffic": the channel is dropped at once
                lost = asyncio.get_running_loop().time()
                assert await fake.command(10) is ControlCmd.CREATE_DATA_CHANNEL
                waited.append(asyncio.get_running_loop().time() - lost)
            # 0.5 s, 1 s, 2 s: doubling, capped at MAX_REQUEST_DELAY.
            assert [round(w * 2) / 2 for w in waited] == [0.5, 1.0, 2.0], waited
            fake.close()

    run(main())


@pytest.mark.timeout(60)
def test_visitor_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_VISITORS the server counts new visitors on one shared record; past
    MAX_MAPPINGS the client opens no more sockets and drops their datagrams, with a log line
    (so a flood of source addresses cannot exhaust file descriptors)."""
    monkeypatch.setattr(udp, "MAX_VISITORS", 3)
    monkeypatch.setattr(udp, "MAX_MAPPINGS", 3)

    async def main() -> None:
        _, local = await start_echo()
        async with asyncio.timeout(50), Tunnel(local) as t:
            await poll_until(t.up, what="both roles up")
            await wait_udp_up(t.public)  # the probe: visitor 1 of 3, on both ends
            first = [await visitor(t.public) for _ in range(2)]
            for v in first:
                assert await v.ask(b"in") == b"in"
            late = await visitor(t.public)
            with pytest.raises(TimeoutError):
                await late.ask(b"over", 0.5)
            client, server = t.stats(Role.CLIENT), t.stats(Role.SERVER)
            assert client.visitors_open == 3 and client.udp_dropped == 1
            assert len(t.events("3 visitors already have a socket")) == 1
            assert server.visitors_open == 4
            assert [v.peer for v in server.visitors][-1] == "(visitors beyond the first 3)"
            for v in [*first, late]:
                v.close()

    run(main())
