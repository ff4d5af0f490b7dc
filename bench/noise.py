"""Layered tunnels: Noise (and optionally TLS, WebSocket) throughput of ratui vs rathole, and
a microbench of the Noise handshake and per-message crypto.

Usage::

    .venv/bin/python bench/noise.py [--seconds 5] [--streams 1,4] [--repeat 3]
                                    [--transports noise,tls,websocket,websocket-tls] [--json]
    .venv/bin/python bench/noise.py --micro

Tunnel mode, on 127.0.0.1 only: for each transport, one ratui tunnel (``python -m ratui``
server + client) and one rathole tunnel (the reference binary), each with one service whose
``local_addr`` is an ``iperf3 -s``. Noise uses rathole's default pattern
(Noise_NK_25519_ChaChaPoly_BLAKE2s) with a fresh key pair; TLS a fresh CA and PKCS#12 made
with ``tests/certs.py``; ``websocket`` and ``websocket-tls`` the WebSocket transport without
and with TLS (ratui only: the reference rathole is built without WebSocket). Paths run
interleaved (ratui, rathole, ratui, ...); each run is
``iperf3 -c 127.0.0.1 -p PORT -t SECONDS -P STREAMS -J`` and its figure is
``end.sum_received.bits_per_second``. Reported: median (min-max) Gbit/s, ratui/rathole,
tunnel CPU seconds (server+client) per Gbit, peak RSS. The measuring code is
``bench/throughput.py``'s.

``--micro`` (no processes): the Noise handshake (both sides, in process) per pattern, and
encrypt/decrypt throughput per write size for the two ways to do transport messages:
``noiseprotocol``'s ``NoiseConnection.encrypt/decrypt`` and ``cryptography``'s
ChaCha20Poly1305 used directly with the handshake's keys (what ratui runs: ``NoiseSession``).
Both use the same framing; best of 5 timings.

Hidden option: ``--ratui-cmd "CMD"`` replaces ``<python> -m ratui`` (e.g. to compare two
versions of ratui against the same rathole).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from _harness import (  # noqa: E402
    HOST,
    RATHOLE_BIN,
    HarnessError,
    ProcessSet,
    TunnelSpec,
    ensure_tool,
    install_signal_handlers,
    log,
    workspace,
)
from throughput import (  # noqa: E402
    BenchPath,
    Sample,
    _int_list,
    measure,
    run_iperf,
    start_iperf_server,
    start_tunnel,
    tool_version,
)

# This file is called noise.py: with bench/ on sys.path, ``import noise`` (the noiseprotocol
# package, used by ratui) would find it. The helpers above are loaded; drop bench/ again.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]

NK = "Noise_NK_25519_ChaChaPoly_BLAKE2s"


# --------------------------------------------------------------------------- micro


def _best(fn: Callable[[], object], reps: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, time.perf_counter() - start)
    return best / reps


def micro() -> dict[str, Any]:
    from noise.connection import Keypair, NoiseConnection

    from ratui.engine.transport.noise import MAX_PLAINTEXT, NoiseSession, NoiseSpec

    def keypair() -> tuple[bytes, bytes]:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        key = X25519PrivateKey.generate()
        return key.private_bytes_raw(), key.public_key().public_bytes_raw()

    out: dict[str, Any] = {"handshake_ms": {}, "crypto": []}
    server_priv, server_pub = keypair()
    client_priv, client_pub = keypair()

    def handshake(pattern: str) -> tuple[NoiseSession, NoiseSession]:
        spec = NoiseSpec.parse(pattern)
        i = NoiseSession(spec, initiator=True, local_private=client_priv, remote_public=server_pub)
        r = NoiseSession(spec, initiator=False, local_private=server_priv, remote_public=client_pub)
        i.start()
        sender, receiver, done = i, r, 0
        while done < 2:
            if receiver.handshake(sender.take_output()) is not None:
                done += 1
            sender, receiver = receiver, sender
        return i, r

    print("Noise handshake, initiator + responder in one process (best of 5 x 50):")
    for pattern in (NK, NK.replace("NK", "XX"), NK.replace("NK", "KK")):
        ms = _best(lambda p=pattern: handshake(p), 50) * 1e3
        out["handshake_ms"][pattern] = ms
        print(f"  {pattern}: {ms:.2f} ms")

    length = struct.Struct("<H")

    def np_pair() -> tuple[Any, Any]:
        i = NoiseConnection.from_name(NK.encode())
        i.set_as_initiator()
        i.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, server_pub)
        r = NoiseConnection.from_name(NK.encode())
        r.set_as_responder()
        r.set_keypair_from_private_bytes(Keypair.STATIC, server_priv)
        i.start_handshake()
        r.start_handshake()
        r.read_message(i.write_message())
        i.read_message(r.write_message())
        return i, r

    def np_encrypt(conn: Any, data: bytes) -> bytes:
        view = memoryview(data)
        parts = []
        for start in range(0, len(data), MAX_PLAINTEXT):
            message = conn.encrypt(bytes(view[start : start + MAX_PLAINTEXT]))
            parts += [length.pack(len(message)), message]
        return b"".join(parts)

    def np_decrypt(conn: Any, wire: bytes) -> bytes:
        view = memoryview(wire)
        pos, parts = 0, []
        while pos < len(wire):
            (n,) = length.unpack_from(wire, pos)
            parts.append(conn.decrypt(bytes(view[pos + 2 : pos + 2 + n])))
            pos += 2 + n
        return b"".join(parts)

    print("\nTransport messages: encrypt+frame and de-frame+decrypt, Gbit/s of plaintext")
    print(f"  {'write size':>10}  {'impl':14} {'encrypt':>8} {'decrypt':>8}")

    def timed(
        encrypt: Callable[[bytes], object], decrypt: Callable[[bytes], object], wires: list[bytes]
    ) -> tuple[float, float]:
        feed = iter(wires)
        dec = _best(lambda: decrypt(next(feed)), len(wires) // 5)
        enc = _best(lambda: encrypt(data), len(wires) // 5)
        return enc, dec

    for size in (64, 1024, 8192, MAX_PLAINTEXT, 256 * 1024):
        data = os.urandom(size)
        reps = max(20, int(20e6 / size))
        # Ciphertexts for the decrypt timing are made first, by a sender whose nonces then
        # go on for the encrypt timing (whose output nobody reads).
        results = {}
        np_i, np_r = np_pair()
        wires = [np_encrypt(np_i, data) for _ in range(reps * 5)]
        results["noiseprotocol"] = timed(
            lambda d, c=np_i: np_encrypt(c, d), lambda w, c=np_r: np_decrypt(c, w), wires
        )
        ours_i, ours_r = handshake(NK)
        wires = [bytes(ours_i.encrypt(data)) for _ in range(reps * 5)]
        results["cryptography"] = timed(ours_i.encrypt, ours_r.decrypt, wires)
        for impl, (enc, dec) in results.items():
            gbit_e, gbit_d = size * 8 / enc / 1e9, size * 8 / dec / 1e9
            out["crypto"].append(
                {"size": size, "impl": impl, "encrypt_gbps": gbit_e, "decrypt_gbps": gbit_d}
            )
            print(f"  {size:>10}  {impl:14} {gbit_e:8.2f} {gbit_d:8.2f}")
    out["connect_ms"] = connects()
    return out


def connects(count: int = 200) -> dict[str, float]:
    """Loopback connect + transport handshake, client and server in one uvloop process."""
    import tempfile

    import uvloop

    from ratui.engine.config import NoiseConfig, TcpTransportConfig, TlsConfig
    from ratui.engine.transport.noise import NoiseTransport
    from ratui.engine.transport.tcp import TcpTransport
    from ratui.engine.transport.tls import TlsTransport
    from ratui.genkey import generate_keypair

    sys.path.insert(0, str(BENCH.parent / "tests"))
    from certs import server_identity

    private, public = generate_keypair()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ident = server_identity(Path(tmp))
        transports = {
            "tcp": TcpTransport(TcpTransportConfig()),
            "noise NK": NoiseTransport(TcpTransportConfig(), NoiseConfig(NK, private, public)),
            "tls": TlsTransport(
                TcpTransportConfig(),
                TlsConfig(None, str(ident.ca_pem), str(ident.pkcs12), ident.password),
            ),
        }

        async def run() -> None:
            for name, transport in transports.items():
                accepted: list[Any] = []
                listener = await transport.listen("127.0.0.1:0", accepted.append)
                addr = f"127.0.0.1:{listener.sockets[0].getsockname()[1]}"
                start = time.perf_counter()
                for _ in range(count):
                    channel = await transport.connect(addr)
                    channel.close()
                results[name] = (time.perf_counter() - start) / count * 1e3
                listener.close()
                for server_side in accepted:
                    server_side.close()

        uvloop.run(run())
    print(f"\nLoopback connect + handshake, both ends in one uvloop process (mean of {count}):")
    for name, ms in results.items():
        print(f"  {name:9s} {ms:.2f} ms")
    return results


# --------------------------------------------------------------------------- tunnels


def noise_transports() -> tuple[dict[str, Any], dict[str, Any]]:
    from ratui.genkey import generate_keypair

    private, public = generate_keypair()
    return (
        {"type": "noise", "noise": {"local_private_key": private}},
        {"type": "noise", "noise": {"remote_public_key": public}},
    )


def tls_transports(workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from certs import server_identity

    ident = server_identity(workdir / "pki")
    return (
        {"type": "tls", "tls": {"pkcs12": str(ident.pkcs12), "pkcs12_password": ident.password}},
        {"type": "tls", "tls": {"trusted_root": str(ident.ca_pem), "hostname": "localhost"}},
    )


def websocket_transports(workdir: Path, tls: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    if not tls:
        return (
            {"type": "websocket", "websocket": {"tls": False}},
            {"type": "websocket", "websocket": {"tls": False}},
        )
    server_t, client_t = tls_transports(workdir)
    for table in (server_t, client_t):
        table["type"] = "websocket"
        table["websocket"] = {"tls": True}
    return server_t, client_t


def transport_pair(transport: str, workdir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    if transport == "noise":
        return noise_transports()
    if transport == "tls":
        return tls_transports(workdir)
    return websocket_transports(workdir, tls=transport == "websocket-tls")


def impls_for(transport: str) -> list[str]:
    """The reference rathole is built without WebSocket: those paths are ratui's only."""
    return ["ratui"] if transport.startswith("websocket") else ["ratui", "rathole"]


def setup(
    procs: ProcessSet, iperf3: str, name: str, command: list[str], transports: Any, workdir: Path
) -> BenchPath:
    server_t, client_t = transports
    spec = TunnelSpec.single("iperf", server_transport=server_t, client_transport=client_t)
    svc = spec.service("iperf")
    log(f"starting {name} (service {svc.bind_port})")
    tunnel = start_tunnel(procs, name, command, spec, workdir, timeout=30)
    start_iperf_server(procs, iperf3, name, svc.local_port)
    path = BenchPath(name, svc.bind_port, tunnel)
    path.idle_rss_kib = path.rss_kib()
    return path


def tunnels(args: argparse.Namespace) -> int:
    iperf3 = ensure_tool("iperf3")
    ratui = shlex.split(args.ratui_cmd) if args.ratui_cmd else [sys.executable, "-m", "ratui"]
    commands = {"ratui": ratui, "rathole": [str(RATHOLE_BIN)]}
    if not RATHOLE_BIN.is_file():
        raise HarnessError(f"reference rathole binary not found at {RATHOLE_BIN}")
    samples: list[Sample] = []
    with workspace(args.log_dir) as workdir, ProcessSet(workdir) as procs:
        paths: list[BenchPath] = []
        for transport in args.transports:
            for impl in impls_for(transport):
                pair = transport_pair(transport, workdir)
                name = f"{impl}-{transport}"
                paths.append(setup(procs, iperf3, name, commands[impl], pair, workdir))
        if args.warmup > 0:
            for path in paths:
                run_iperf(iperf3, path.port, args.warmup, max(args.streams))
        for streams in args.streams:
            for rep in range(1, args.repeat + 1):
                for path in paths:
                    sample = measure(path, iperf3, args.seconds, streams, rep)
                    samples.append(sample)
                    log(
                        f"P={streams} rep {rep} {path.name:20s} "
                        f"{sample.bits_per_second / 1e9:6.2f} Gbit/s  "
                        f"cpu {sample.cpu_per_gbit or 0:.3f} s/Gbit"
                    )
                    time.sleep(0.2)
        procs.stop_all()
    print(
        f"\n{HOST}, iperf3 -t {args.seconds:g}, median of {args.repeat} interleaved runs; "
        "CPU = tunnel server+client"
    )
    print(
        f"{'path':20} {'P':>2}  {'Gbit/s median (min-max)':26} {'ratui/rathole':>13}"
        f"  {'CPU s/Gbit':>10}  {'peak RSS MiB srv/cli':>20}"
    )
    rows = []
    for transport in args.transports:
        for streams in args.streams:
            mine = {
                impl: [
                    s for s in samples if s.path == f"{impl}-{transport}" and s.streams == streams
                ]
                for impl in impls_for(transport)
            }
            med = {
                impl: statistics.median(s.bits_per_second / 1e9 for s in x)
                for impl, x in mine.items()
            }
            for impl, runs in mine.items():
                gbps = [s.bits_per_second / 1e9 for s in runs]
                cpu = statistics.median(s.cpu_per_gbit or 0 for s in runs)
                rss = "/".join(
                    f"{max(s.peak_rss_kib[r] for s in runs) / 1024:.1f}"
                    for r in ("server", "client")
                )
                ratio = ""
                if impl == "ratui" and "rathole" in med:
                    ratio = f"{med['ratui'] / med['rathole']:.2f}x"
                elif impl == "ratui":
                    ratio = "n/a"
                rows.append(
                    {"path": f"{impl}-{transport}", "streams": streams, "gbps": gbps, "cpu": cpu}
                )
                spread = f"{med[impl]:6.2f} ({min(gbps):.2f}-{max(gbps):.2f})"
                print(
                    f"{impl + '-' + transport:20} {streams:>2}  {spread:26} {ratio:>13}"
                    f"  {cpu:10.3f}  {rss:>20}"
                )
    if args.json:
        doc = {
            "bench": "noise",
            "versions": {
                "iperf3": tool_version([iperf3]),
                "rathole": tool_version(commands["rathole"]),
            },
            "rows": rows,
            "samples": [asdict(s) for s in samples],
        }
        json.dump(doc, sys.stdout, indent=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--micro", action="store_true", help="crypto microbench only")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=_int_list, default=[1, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--transports",
        type=lambda s: [t for t in s.split(",") if t],
        default=["noise"],
        help="comma-separated: noise,tls,websocket,websocket-tls (default noise); rathole "
        "has no WebSocket, so websocket paths run ratui only",
    )
    parser.add_argument("--log-dir", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--ratui-cmd", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.micro:
        doc = micro()
        if args.json:
            json.dump(doc, sys.stdout, indent=2)
        return 0
    if set(args.transports) - {"noise", "tls", "websocket", "websocket-tls"}:
        parser.error("--transports takes noise, tls, websocket and/or websocket-tls")
    install_signal_handlers()
    try:
        return tunnels(args)
    except HarnessError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        log("interrupted; all bench processes stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
