"""The TLS transport (PROTOCOL.md §5.3), interoperable with rathole's native-tls build.

* Server: the identity is ``[server.transport.tls] pkcs12`` + ``pkcs12_password``, read with
  ``cryptography`` and handed to OpenSSL through an anonymous in-memory file (``memfd`` on
  Linux), so the private key never touches a disk; elsewhere through a 0600 file in a private
  temporary directory that is deleted right after loading.
* Client: the server's certificate must chain to the system's CAs or to ``trusted_root`` (a
  PEM file), and match ``hostname``, else the host part of the address it connects to. That
  name is also sent as SNI (not for IP literals). rathole keeps the brackets of an IPv6 host
  (``[::1]``), which can never match; ratui checks ``::1``.

TLS runs on the layered transport (``layered.py``) with ``ssl.SSLObject`` over memory BIOs,
the same machinery asyncio's and uvloop's ``create_connection(ssl=...)`` use, instead of the
loop's own TLS transport, because that one cannot half-close (``can_write_eof()`` is False):
a visitor that shuts down its sending side would have the whole tunnel closed under it
before the reply came back. Here ``write_eof`` sends TLS close_notify and then a TCP FIN,
which is what rathole (tokio-native-tls ``shutdown``) does and understands.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)

from ..config import TcpTransportConfig, TlsConfig, split_host_port
from .layered import LayeredTransport, LayerError, Session, TransportSetupError

READ_SIZE = 32 * 1024  # one TLS record carries at most 16 KiB of plaintext

_PLAIN_HELLOS = (b"\x00\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01")


def load_pkcs12(path: str, password: str | None) -> bytes:
    """The identity in ``path`` as one PEM blob: private key, leaf certificate, then chain."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TransportSetupError(f"cannot read tls.pkcs12 {path}: {exc.strerror or exc}") from None
    secret = (password or "").encode()
    try:
        key, cert, chain = pkcs12.load_key_and_certificates(data, secret)
    except ValueError:
        try:
            key, cert, chain = pkcs12.load_key_and_certificates(data, None)
        except ValueError:
            raise TransportSetupError(
                f"cannot load tls.pkcs12 {path}: wrong pkcs12_password, or not a PKCS#12 file"
            ) from None
    if key is None or cert is None:
        raise TransportSetupError(
            f"tls.pkcs12 {path} must hold the server's private key and certificate"
        )
    blob = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    blob += cert.public_bytes(Encoding.PEM)
    for extra in chain:
        blob += extra.public_bytes(Encoding.PEM)
    return blob


def load_identity(ctx: ssl.SSLContext, pem: bytes) -> None:
    """``ctx.load_cert_chain`` from memory: OpenSSL only reads files, so give it one that
    lives in RAM (memfd) or, where there is none, one that exists for a moment."""
    if sys.platform == "linux" and hasattr(os, "memfd_create"):
        fd = os.memfd_create("ratui-tls-identity", os.MFD_CLOEXEC)
        try:
            os.write(fd, pem)
            with contextlib.suppress(FileNotFoundError):  # no /proc: fall through
                ctx.load_cert_chain(f"/proc/self/fd/{fd}")
                return
        finally:
            os.close(fd)
    with tempfile.TemporaryDirectory(prefix="ratui-tls-") as directory:  # mode 0700
        path = os.path.join(directory, "identity.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        try:
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)


def server_context(cfg: TlsConfig) -> ssl.SSLContext:
    assert cfg.pkcs12 is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        load_identity(ctx, load_pkcs12(cfg.pkcs12, cfg.pkcs12_password))
    except ssl.SSLError as exc:
        raise TransportSetupError(
            f"tls.pkcs12 {cfg.pkcs12}: OpenSSL refuses the identity: {exc.reason or exc}"
        ) from None
    return ctx


def client_context(cfg: TlsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if cfg.trusted_root is not None:
        try:
            ctx.load_verify_locations(cafile=cfg.trusted_root)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise TransportSetupError(
                f"cannot load tls.trusted_root {cfg.trusted_root}: {reason} "
                "(expected a PEM CA certificate)"
            ) from None
    return ctx


def _words(reason: str | None) -> str:
    """``TLSV1_ALERT_UNKNOWN_CA`` -> ``tlsv1 alert unknown ca``."""
    return (reason or "").replace("_", " ").lower()


class TlsSession(Session):
    """One connection's TLS state: an SSLObject between two memory BIOs."""

    kind = "tls"

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None = None,
        trusted_root: str | None = None,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = ctx.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=hostname
        )
        self._server_side = server_side
        self._hostname = hostname
        self._trusted_root = trusted_root
        self._seen = 0
        self._finished = False

    # handshake ----------------------------------------------------------------------------
    def start(self) -> None:
        if not self._server_side:
            self._step()

    def handshake(self, data: bytes) -> bytes | None:
        if self._seen == 0 and data:
            self._sniff(data)
        self._seen += len(data)
        self._incoming.write(data)
        return b"" if self._step() else None

    def _step(self) -> bool:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLCertVerificationError as exc:
            raise LayerError(self._not_verified(exc)) from None
        except ssl.SSLError as exc:
            raise LayerError(self._refused(exc)) from None
        return True

    def _sniff(self, data: bytes) -> None:
        """Refuse at once a peer that plainly speaks something else."""
        other = "client" if self._server_side else "server"
        if data[:1] == b"\x16" or (not self._server_side and data[:1] == b"\x15"):
            return  # a TLS handshake record (or, from a server, an alert)
        if data[:5] in _PLAIN_HELLOS:
            raise LayerError(
                f'the {other} sent a plain rathole Hello, not TLS: it uses type = "tcp"; '
                'both sides need type = "tls"'
            )
        if len(data) >= 2 and data[0] | data[1] << 8 in (32, 48):
            raise LayerError(
                f'the {other} speaks Noise, not TLS: it uses type = "noise"; both sides need '
                "the same type"
            )
        if data[:4] in (b"GET ", b"HTTP", b"POST", b"HEAD", b"CONN"):
            raise LayerError(f"the {other} sent plain HTTP, not TLS")
        raise LayerError(
            f"the {other} does not speak TLS (first bytes {data[:8].hex(' ')}); "
            'both sides need type = "tls"'
        )

    def _not_verified(self, exc: ssl.SSLCertVerificationError) -> str:
        message = exc.verify_message or _words(exc.reason)
        code = exc.verify_code
        if code == 62 or "hostname mismatch" in message.lower():  # X509_V_ERR_HOSTNAME_MISMATCH
            hint = (
                f'the name checked is "{self._hostname}" (tls.hostname, else the host of '
                "remote_addr): set [client.transport.tls] hostname to a name the certificate "
                "is for"
            )
        elif code == 64 or "ip address mismatch" in message.lower():
            hint = f"the certificate is not for the IP address {self._hostname}; set tls.hostname"
        elif code in (2, 18, 19, 20, 21):  # issuer unknown, self-signed, not trusted
            where = (
                f"is {self._trusted_root} (tls.trusted_root) the CA that signed it?"
                if self._trusted_root
                else "tls.trusted_root is not set, so only the system's CAs are trusted"
            )
            hint = f"the certificate does not chain to a trusted CA: {where}"
        elif code == 10:
            hint = "the server's certificate has expired"
        elif code == 9:
            hint = "the server's certificate is not valid yet (check the clocks)"
        else:
            hint = "check tls.trusted_root and tls.hostname"
        return f"the server's certificate did not verify ({message}) - {hint}"

    def _refused(self, exc: ssl.SSLError) -> str:
        reason = _words(exc.reason) or str(exc)
        if "alert" in reason:
            if self._server_side and any(
                word in reason
                for word in ("unknown ca", "bad certificate", "certificate unknown", "decrypt")
            ):
                return (
                    f"the client rejected this server's certificate ({reason}) - does the "
                    "client's trusted_root hold the CA that signed it, and is its hostname (or "
                    "the host of its remote_addr) a name in the certificate?"
                )
            other = "client" if self._server_side else "server"
            return f"the {other} refused the TLS handshake ({reason})"
        if "wrong version number" in reason or "unsupported protocol" in reason:
            return f"no TLS version in common with the peer ({reason})"
        if "no shared cipher" in reason:
            return f"no cipher suite in common with the peer ({reason})"
        return reason

    def closed_during_handshake(self, server_side: bool) -> str:
        if server_side:
            return "the client closed the connection during the handshake"
        return 'the server closed the connection during the handshake - does it use type = "tls"?'

    def describe_progress(self) -> str:
        if self._server_side:
            return f"{self._seen} bytes received"
        if self._seen == 0:
            return 'no answer from the server - does it use type = "tls"?'
        return f"{self._seen} bytes received from the server"

    def take_output(self) -> bytes:
        return self._outgoing.read() if self._outgoing.pending else b""

    def extra_info(self, name: str) -> Any:
        obj = self._obj
        if name == "ssl_object":
            return obj
        if name == "peercert":
            return obj.getpeercert()
        if name == "cipher":
            return obj.cipher()
        if name == "compression":
            return obj.compression()
        return None

    # application data ---------------------------------------------------------------------
    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | bytearray:
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            raise ConnectionError(f"TLS write failed: {_words(exc.reason) or exc}") from None
        return self._outgoing.read()

    def decrypt(self, data: bytes) -> tuple[bytes, bool]:
        if data:
            self._incoming.write(data)
        read = self._obj.read
        parts = []
        eof = False
        while True:
            try:
                chunk = read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                eof = True
                break
            except ssl.SSLError as exc:
                raise LayerError(_words(exc.reason) or str(exc)) from None
            if not chunk:
                eof = True
                break
            parts.append(chunk)
        if len(parts) == 1:
            return parts[0], eof
        return b"".join(parts), eof

    def finish(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: the peer's is not here yet
            self._obj.unwrap()
        return self._outgoing.read()


class TlsTransport(LayeredTransport):
    """``type = "tls"``: a TLS session on every connection (native-tls compatible)."""

    def __init__(self, tcp: TcpTransportConfig, cfg: TlsConfig) -> None:
        super().__init__(tcp)
        self.cfg = cfg
        # As rathole: the PKCS#12 is loaded whenever it is set, the trust store always.
        self._server_ctx = server_context(cfg) if cfg.pkcs12 is not None else None
        self._client_ctx = client_context(cfg)

    def check_server(self) -> None:
        if self._server_ctx is None:
            raise TransportSetupError(
                "[server.transport.tls] pkcs12 and pkcs12_password are required to serve TLS"
            )

    def client_session(self, addr: str) -> TlsSession:
        hostname = self.cfg.hostname or split_host_port(addr)[0]
        if hostname.startswith("[") and hostname.endswith("]"):
            hostname = hostname[1:-1]
        return TlsSession(
            self._client_ctx,
            server_side=False,
            hostname=hostname,
            trusted_root=self.cfg.trusted_root,
        )

    def server_session(self) -> TlsSession:
        assert self._server_ctx is not None
        return TlsSession(self._server_ctx, server_side=True)
