"""The TLS transport: half-close and flow control in process, interop with rathole's
native-tls build both ways, and a clear log line for each way a TLS link can be misconfigured.

Every test makes its own CA and server identity under ``tmp_path`` (``certs.py``).
"""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from certs import ServerIdentity, make_ca, server_identity
from conftest import EchoServer, Proc, Procs, free_port, wait_port, write_config
from test_transport_noise import (
    assert_dropped,
    assert_roundtrip,
    check_flow_control,
    check_half_close,
    check_handshake_before_channel,
    client_toml,
    run,
    server_toml,
    start,
    wait_for_count,
)

from ratui.engine.config import TcpTransportConfig, TlsConfig
from ratui.engine.transport.layered import TransportSetupError
from ratui.engine.transport.tls import TlsTransport


def tls_table(
    role: str,
    *,
    pkcs12: Path | None = None,
    password: str | None = None,
    trusted_root: Path | None = None,
    hostname: str | None = None,
) -> str:
    lines = [f"[{role}.transport]", 'type = "tls"', f"[{role}.transport.tls]"]
    for key, value in (
        ("pkcs12", pkcs12),
        ("pkcs12_password", password),
        ("trusted_root", trusted_root),
        ("hostname", hostname),
    ):
        if value is not None:
            lines.append(f'{key} = "{value}"')
    return "\n".join(lines) + "\n"


@pytest.fixture
def identity(tmp_path: Path) -> ServerIdentity:
    return server_identity(tmp_path / "pki")


# ------------------------------------------------------------------------------ in process
def tls_transport(identity: ServerIdentity) -> TlsTransport:
    """Serves with ``identity`` and trusts its CA; connects by IP (the cert has 127.0.0.1)."""
    cfg = TlsConfig(
        trusted_root=str(identity.ca_pem),
        pkcs12=str(identity.pkcs12),
        pkcs12_password=identity.password,
    )
    return TlsTransport(TcpTransportConfig(), cfg)


@pytest.mark.timeout(30)
def test_channel_over_tls(identity):
    run(check_handshake_before_channel(tls_transport(identity)))


@pytest.mark.timeout(30)
def test_half_close_over_tls(identity):
    """close_notify + FIN one way, data still flows the other way (what rathole does and
    what asyncio's own TLS transport cannot: its can_write_eof() is False)."""
    run(check_half_close(tls_transport(identity)))


@pytest.mark.timeout(90)
def test_flow_control_both_ways_over_tls(identity):
    run(check_flow_control(tls_transport(identity)), timeout=80)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("legacy", [False, True], ids=["aes256-sha256", "legacy-3des-sha1"])
def test_pkcs12_flavours_load(tmp_path, legacy):
    ident = server_identity(tmp_path, legacy=legacy)
    tls_transport(ident).check_server()


@pytest.mark.timeout(30)
def test_setup_errors_are_clear(tmp_path, identity):
    with pytest.raises(TransportSetupError, match="wrong pkcs12_password"):
        TlsTransport(
            TcpTransportConfig(),
            TlsConfig(pkcs12=str(identity.pkcs12), pkcs12_password="nope"),
        )
    with pytest.raises(TransportSetupError, match=r"cannot read tls\.pkcs12"):
        TlsTransport(
            TcpTransportConfig(), TlsConfig(pkcs12=str(tmp_path / "x.p12"), pkcs12_password="x")
        )
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(TransportSetupError, match=r"cannot load tls\.trusted_root"):
        TlsTransport(TcpTransportConfig(), TlsConfig(trusted_root=str(bogus)))


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "tempfile"])
def test_identity_never_lands_in_a_visible_file(tmp_path, identity, monkeypatch, memfd):
    """The decrypted key goes to OpenSSL through memfd on Linux; elsewhere through a 0600 file
    in a 0700 directory that is gone right after loading."""
    import ssl
    import tempfile

    from ratui.engine.transport import tls

    seen: list[tuple[str, int, int]] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self, certfile, *args, **kwargs):
        path = Path(certfile)
        seen.append(
            (certfile, stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode))
        )
        return original(self, certfile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    if not memfd:
        monkeypatch.setattr(tls.sys, "platform", "other")
    tls_transport(identity).check_server()
    assert len(seen) == 1
    path, file_mode, dir_mode = seen[0]
    if memfd:
        assert path.startswith("/proc/self/fd/")
    else:
        assert path.startswith(str(scratch)) and file_mode == 0o600 and dir_mode == 0o700
    assert list(scratch.iterdir()) == []


# --------------------------------------------------------------------- processes: helpers
class TlsServer:
    """A TLS server (ratui or rathole) with services ``good`` and ``other``."""

    def __init__(
        self, tmp_path: Path, procs: Procs, ident: ServerIdentity, *, impl: str = "ratui"
    ) -> None:
        self.tmp_path = tmp_path
        self.procs = procs
        self.ident = ident
        self.impl = impl
        self.port = free_port()
        self.ports = {"good": free_port(), "other": free_port()}
        self.cfg = write_config(
            tmp_path / f"server-{impl}.toml",
            server_toml(
                self.port,
                self.ports,
                tls_table("server", pkcs12=ident.pkcs12, password=ident.password),
            ),
        )
        self.proc: Proc | None = None

    def start(self) -> Proc:
        self.proc = start(self.procs, self.impl, "server", self.cfg)
        wait_port(self.port)
        return self.proc

    def client(
        self, impl: str, service: str, local: str, transport: str, *, host: str = "localhost"
    ) -> Proc:
        cfg = write_config(
            self.tmp_path / f"client-{service}-{impl}.toml",
            client_toml(f"{host}:{self.port}", {service: local}, transport),
        )
        return start(self.procs, impl, "client", cfg)

    def good_client(self, impl: str, echo: EchoServer, host: str = "localhost") -> Proc:
        proc = self.client(
            impl, "good", echo.addr, tls_table("client", trusted_root=self.ident.ca_pem), host=host
        )
        wait_port(self.ports["good"], timeout=15)
        return proc


# ------------------------------------------------------------------ processes: interop
@pytest.mark.interop
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("server_impl", "client_impl"),
    [("rathole", "ratui"), ("ratui", "rathole")],
    ids=["ratui-client-rathole-server", "rathole-client-ratui-server"],
)
@pytest.mark.parametrize("legacy", [False, True], ids=["p12-aes", "p12-legacy"])
def test_tls_interop_1mib(tmp_path, procs, echo, server_impl, client_impl, legacy):
    ident = server_identity(tmp_path / "pki", legacy=legacy)
    server = TlsServer(tmp_path, procs, ident, impl=server_impl)
    server.start()
    client = server.good_client(client_impl, echo)
    assert_roundtrip(server.ports["good"])  # the visitor half-closes: needs TLS write_eof
    assert_roundtrip(server.ports["good"], 100_000)
    for proc in (server.proc, client):
        assert proc is not None and proc.popen.poll() is None
        assert "WARN ratui.transport" not in proc.output()


@pytest.mark.timeout(60)
def test_ratui_to_ratui_tls_by_ip_1mib(tmp_path, procs, echo, identity):
    server = TlsServer(tmp_path, procs, identity)
    server.start()
    server.good_client("ratui", echo, host="127.0.0.1")  # checked against the IP SAN
    assert_roundtrip(server.ports["good"])


# ------------------------------------------------------------------ processes: failures
@pytest.mark.timeout(60)
@pytest.mark.parametrize("bad_impl", ["ratui", pytest.param("rathole", marks=pytest.mark.interop)])
def test_wrong_ca_is_logged_and_others_keep_working(tmp_path, procs, echo, identity, bad_impl):
    server = TlsServer(tmp_path, procs, identity)
    proc = server.start()
    stranger = server_identity(tmp_path / "other-pki", ca=make_ca("some other CA"))
    bad = server.client(
        bad_impl, "other", echo.addr, tls_table("client", trusted_root=stranger.ca_pem)
    )
    proc.wait_for_output(
        "failed: the client rejected this server's certificate (tlsv1 alert unknown ca) - does "
        "the client's trusted_root hold the CA that signed it",
        timeout=15,
    )
    if bad_impl == "ratui":
        bad.wait_for_output(
            "tls handshake with 127.0.0.1:"  # resolved from localhost
        )
        # The server sends its CA along, hence "self-signed certificate in certificate
        # chain" rather than "unable to get local issuer certificate".
        bad.wait_for_output(
            "failed: the server's certificate did not verify (self-signed certificate in "
            "certificate chain) - the certificate does not chain to a trusted CA: is "
            f"{stranger.ca_pem} (tls.trusted_root) the CA that signed it?"
        )
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])
    wait_for_count(proc, "the client rejected this server's certificate", 2)
    assert proc.popen.poll() is None


@pytest.mark.timeout(60)
def test_wrong_hostname_is_logged(tmp_path, procs, echo, identity):
    server = TlsServer(tmp_path, procs, identity)
    proc = server.start()
    bad = server.client(
        "ratui",
        "other",
        echo.addr,
        tls_table("client", trusted_root=identity.ca_pem, hostname="wrong.example"),
    )
    bad.wait_for_output(
        "the server's certificate did not verify (Hostname mismatch, certificate is not valid "
        "for 'wrong.example'.) - the name checked is \"wrong.example\"",
        timeout=15,
    )
    bad.wait_for_output("set [client.transport.tls] hostname to a name the certificate is for")
    proc.wait_for_output("failed: the client rejected this server's certificate")
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])


@pytest.mark.interop
@pytest.mark.timeout(60)
def test_ratui_client_with_wrong_ca_against_rathole_server(tmp_path, procs, echo, identity):
    server = TlsServer(tmp_path, procs, identity, impl="rathole")
    server.start()
    stranger = server_identity(tmp_path / "other-pki")
    bad = server.client(
        "ratui", "other", echo.addr, tls_table("client", trusted_root=stranger.ca_pem)
    )
    # The client dials localhost (the certificate's name); the handshake names the address.
    bad.wait_for_output(
        f"cannot establish the control channel to localhost:{server.port}: tls handshake "
        "with 127.0.0.1:",
        timeout=15,
    )
    bad.wait_for_output("failed: the server's certificate did not verify")
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])


@pytest.mark.timeout(60)
def test_plain_tcp_client_against_tls_server(tmp_path, procs, echo, identity):
    server = TlsServer(tmp_path, procs, identity)
    proc = server.start()
    bad = server.client("ratui", "other", echo.addr, "")
    proc.wait_for_output(
        'failed: the client sent a plain rathole Hello, not TLS: it uses type = "tcp"; both '
        'sides need type = "tls"',
        timeout=15,
    )
    bad.wait_for_output("cannot establish the control channel")
    # Raw garbage and silence too; the server keeps serving meanwhile.
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as garbage:
        garbage.sendall(b"\x99" * 64)
        assert_dropped(garbage)
    proc.wait_for_output("failed: the client does not speak TLS (first bytes 99 99")
    server.good_client("ratui", echo)
    assert_roundtrip(server.ports["good"])
    assert_dropped(silent)
    silent.close()
    proc.wait_for_output("failed: timed out after 5 s (0 bytes received)")


@pytest.mark.timeout(60)
def test_tls_client_against_plain_server_says_so(tmp_path, procs, echo, identity):
    port, service = free_port(), free_port()
    cfg = write_config(tmp_path / "server.toml", server_toml(port, {"other": service}, ""))
    procs.ratui("--server", str(cfg))
    wait_port(port)
    client_cfg = write_config(
        tmp_path / "client.toml",
        client_toml(
            f"127.0.0.1:{port}",
            {"other": echo.addr},
            tls_table("client", trusted_root=identity.ca_pem),
        ),
    )
    bad = procs.ratui("--client", str(client_cfg))
    bad.wait_for_output(
        f"tls handshake with 127.0.0.1:{port} failed: the server closed the connection during "
        'the handshake - does it use type = "tls"?',
        timeout=15,
    )


@pytest.mark.timeout(30)
def test_wrong_pkcs12_password_refuses_to_start(tmp_path, procs, identity):
    cfg = write_config(
        tmp_path / "server.toml",
        server_toml(
            free_port(),
            {"a": free_port()},
            tls_table("server", pkcs12=identity.pkcs12, password="not-it"),
        ),
    )
    proc = procs.ratui("--server", str(cfg))
    assert proc.popen.wait(20) != 0
    out = proc.output()
    assert f"cannot load tls.pkcs12 {identity.pkcs12}: wrong pkcs12_password" in out
    assert "not-it" not in out
    assert "Traceback" not in out
