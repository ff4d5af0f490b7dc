"""Server and client configs made from a few answers, and the pairing code between them.

The files are plain rathole v0.5 configs (``rathole --server FILE`` runs the server one),
built with tomlkit and commented for whoever edits them next. The server side starts from a
:class:`ServerDraft` (what the wizard or ``ratui init server`` collected); :func:`complete`
fills in the secrets it lacks, :func:`server_toml` writes the config, :func:`pairing_for`
the pairing that :func:`client_toml` turns into the matching client config.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import tomlkit
from tomlkit.items import Table

from ..engine.config import DEFAULT_NOISE_PATTERN, ServerConfig, TransportType, split_host_port
from ..engine.transport.noise import public_key
from ..genkey import generate_keypair
from .pairing import TRANSPORTS, PairedService, Pairing
from .tokens import new_token
from .validate import validate_addr, validate_name

__all__ = [
    "ServerDraft",
    "ServiceDraft",
    "client_toml",
    "complete",
    "pairing_for",
    "pairing_from_config",
    "read_public_addr",
    "server_toml",
]

DEFAULT_BIND = "0.0.0.0:2333"
#: The comment line that records the server's public address (not a rathole key).
_PUBLIC_ADDR_LINE = re.compile(r'^#\s*public_addr\s*=\s*"([^"]+)"', re.M)


@dataclass(frozen=True)
class ServiceDraft:
    name: str
    type: str = "tcp"
    bind_addr: str = ""  # public address on the server, e.g. "0.0.0.0:8080"
    token: str | None = field(default=None, repr=False)  # None: the server's default token


@dataclass(frozen=True)
class ServerDraft:
    bind_addr: str  # where clients connect, e.g. "0.0.0.0:2333"
    public_addr: str  # what clients dial, e.g. "vps.example.com:2333"
    transport: str  # "tcp" | "noise" | "tls"
    services: tuple[ServiceDraft, ...]
    default_token: str | None = field(default=None, repr=False)
    noise_private_key: str | None = field(default=None, repr=False)
    noise_public_key: str | None = None
    tls_pkcs12: str | None = None
    tls_pkcs12_password: str | None = field(default=None, repr=False)
    tls_hostname: str | None = None


def complete(d: ServerDraft) -> ServerDraft:
    """``d`` with the secrets it lacks: a default token when a service relies on it, and for
    Noise a fresh keypair (or the public half of a given private key)."""
    changes: dict[str, str] = {}
    if d.default_token is None and any(s.token is None for s in d.services):
        changes["default_token"] = new_token()
    if d.transport == "noise":
        if d.noise_private_key is None:
            changes["noise_private_key"], changes["noise_public_key"] = generate_keypair()
        elif d.noise_public_key is None:
            changes["noise_public_key"] = _public_of(d.noise_private_key)
    return dataclasses.replace(d, **changes) if changes else d


def _public_of(private_key: str) -> str:
    return base64.b64encode(public_key(base64.b64decode(private_key))).decode()


def check_draft(d: ServerDraft) -> str | None:
    """The first problem that keeps ``d`` from being written, in plain words, or None."""
    if d.transport not in TRANSPORTS:
        return f"transport {d.transport!r}: expected tcp, noise or tls"
    for what, addr in (("bind address", d.bind_addr), ("public address", d.public_addr)):
        problem = validate_addr(addr)
        if problem:
            return f"{what}: {problem}"
    if not d.services:
        return "add at least one service"
    names: set[str] = set()
    for svc in d.services:
        problem = validate_name(svc.name) or validate_addr(svc.bind_addr)
        if problem:
            return f"service {svc.name!r}: {problem}"
        if svc.name in names:
            return f"service {svc.name!r} appears twice"
        names.add(svc.name)
        if svc.type not in ("tcp", "udp"):
            return f"service {svc.name!r}: type {svc.type!r}, expected tcp or udp"
        if svc.token is None and d.default_token is None:
            return f"service {svc.name!r} has no token and there is no default token"
    if d.transport == "noise" and d.noise_private_key is None:
        return "the noise transport needs the server's private key"
    if d.transport == "tls" and (d.tls_pkcs12 is None or d.tls_pkcs12_password is None):
        return "the tls transport needs a PKCS#12 file and its password"
    return None


def _require_valid(d: ServerDraft) -> None:
    problem = check_draft(d)
    if problem:
        raise ValueError(problem)


def _document(role: str, made: str, secrets: str) -> tomlkit.TOMLDocument:
    """A new config document that starts with the comment saying what it is and how to run
    it."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment(f"ratui {role} config (rathole v0.5 format){made}"))
    doc.add(tomlkit.comment(f"  ratui --{role} THIS_FILE    (or: rathole --{role} THIS_FILE)"))
    doc.add(tomlkit.comment("Edit it freely: a running ratui applies a saved change at once."))
    doc.add(tomlkit.comment(f"It holds {secrets}: keep it mode 0600."))
    doc.add(tomlkit.nl())
    return doc


# server ------------------------------------------------------------------------------------
def server_toml(d: ServerDraft) -> str:
    """The server config for ``d`` (after :func:`complete`); ValueError if ``d`` is not
    usable (see :func:`check_draft`)."""
    _require_valid(d)
    doc = _document("server", ". Run it with", "secrets (tokens, keys)")

    server = tomlkit.table()
    server.add(tomlkit.comment("What clients dial (used for pairing codes; not a rathole key):"))
    server.add(tomlkit.comment(f"public_addr = {tomlkit.string(d.public_addr).as_string()}"))
    server.add("bind_addr", _commented(d.bind_addr, "clients connect here"))
    if d.default_token is not None:
        server.add(
            "default_token",
            _commented(d.default_token, "for every service without its own token; secret"),
        )
    transport = _server_transport(d)
    if transport is not None:
        server.add("transport", transport)
    services = tomlkit.table(is_super_table=True)
    for svc in d.services:
        table = tomlkit.table()
        table.add("bind_addr", _commented(svc.bind_addr, "visitors connect here"))
        if svc.type != "tcp":
            table.add("type", svc.type)
        if svc.token is not None:
            table.add("token", _commented(svc.token, "the client needs the same token"))
        services.add(svc.name, table)
    server.add("services", services)
    doc.add("server", server)
    return tomlkit.dumps(doc)


def _server_transport(d: ServerDraft) -> Table | None:
    if d.transport == "tcp":
        return None
    transport = tomlkit.table()
    transport.add("type", d.transport)
    if d.transport == "noise":
        assert d.noise_private_key is not None
        noise = tomlkit.table()
        public = d.noise_public_key or _public_of(d.noise_private_key)
        noise.add(tomlkit.comment(f"Public key, for the clients' remote_public_key: {public}"))
        noise.add("local_private_key", _commented(d.noise_private_key, "secret: never share"))
        transport.add("noise", noise)
    else:
        tls = tomlkit.table()
        tls.add("pkcs12", _commented(d.tls_pkcs12 or "", "the server's key and certificate"))
        tls.add("pkcs12_password", d.tls_pkcs12_password or "")
        transport.add("tls", tls)
    return transport


def _commented(value: str, comment: str) -> tomlkit.items.String:
    item = tomlkit.string(value)
    item.comment(comment)
    return item


def read_public_addr(text: str) -> str | None:
    """The public address that :func:`server_toml` recorded in a comment, if still there."""
    match = _PUBLIC_ADDR_LINE.search(text)
    return match.group(1) if match else None


# pairing -----------------------------------------------------------------------------------
def pairing_for(d: ServerDraft) -> Pairing:
    """What a client of ``d`` (after :func:`complete`) needs, for :func:`pairing.encode`."""
    _require_valid(d)
    services = tuple(
        PairedService(s.name, s.type, s.token if s.token is not None else d.default_token or "")
        for s in d.services
    )
    return Pairing(
        d.public_addr,
        d.transport,
        services,
        noise_public_key=(
            d.noise_public_key or _public_of(d.noise_private_key or "")
            if d.transport == "noise"
            else None
        ),
        tls_hostname=_tls_hostname(d.tls_hostname, d.public_addr) if d.transport == "tls" else None,
    )


def _tls_hostname(hostname: str | None, public_addr: str) -> str:
    return hostname or split_host_port(public_addr)[0]


def pairing_from_config(cfg: ServerConfig, public_addr: str) -> Pairing:
    """The pairing for a running or loaded server config; ValueError when its transport
    cannot be described by a pairing code (websocket, or a Noise pattern other than
    rathole's default)."""
    problem = validate_addr(public_addr)
    if problem:
        raise ValueError(f"public address: {problem}")
    transport = cfg.transport
    noise_key = tls_hostname = None
    if transport.type is TransportType.NOISE and transport.noise is not None:
        if transport.noise.pattern != DEFAULT_NOISE_PATTERN:
            raise ValueError(
                f"pairing codes carry the default Noise pattern ({DEFAULT_NOISE_PATTERN}) only, "
                f"not {transport.noise.pattern}"
            )
        if transport.noise.local_private_key is None:
            raise ValueError("the server has no Noise local_private_key to pair against")
        noise_key = _public_of(transport.noise.local_private_key)
    elif transport.type is TransportType.TLS and transport.tls is not None:
        tls_hostname = _tls_hostname(transport.tls.hostname, public_addr)
    elif transport.type is not TransportType.TCP:
        raise ValueError(f'pairing codes carry tcp, noise or tls, not type = "{transport.type}"')
    services = tuple(PairedService(s.name, str(s.type), s.token) for s in cfg.services.values())
    return Pairing(public_addr, str(transport.type), services, noise_key, tls_hostname)


# client ------------------------------------------------------------------------------------
def client_toml(
    p: Pairing, local_addrs: Mapping[str, str], *, trusted_root: str | None = None
) -> str:
    """The client config for pairing ``p``; ``local_addrs`` maps every service name to the
    address of the service at home. ``trusted_root`` (TLS only): a PEM CA file for a server
    certificate that the system does not trust. ValueError for a missing or bad address."""
    for svc in p.services:
        if svc.name not in local_addrs:
            raise ValueError(f"no local address for service {svc.name!r}")
        problem = validate_addr(local_addrs[svc.name])
        if problem:
            raise ValueError(f"service {svc.name!r}: local address: {problem}")
    tokens = {svc.token for svc in p.services}
    shared = tokens.pop() if len(tokens) == 1 else None

    doc = _document("client", ", made from a pairing code.", "the service tokens")
    client = tomlkit.table()
    client.add("remote_addr", _commented(p.remote_addr, "the server"))
    if shared is not None:
        client.add("default_token", _commented(shared, "the server's token; secret"))
    if p.transport != "tcp":
        transport = tomlkit.table()
        transport.add("type", p.transport)
        if p.transport == "noise":
            noise = tomlkit.table()
            noise.add(
                "remote_public_key",
                _commented(p.noise_public_key or "", "the server's public key"),
            )
            transport.add("noise", noise)
        else:
            tls = tomlkit.table()
            tls.add(
                "hostname",
                _commented(p.tls_hostname or "", "must match the server's certificate"),
            )
            if trusted_root is not None:
                tls.add("trusted_root", _commented(trusted_root, "CA that signed it"))
            transport.add("tls", tls)
        client.add("transport", transport)
    services = tomlkit.table(is_super_table=True)
    for svc in p.services:
        table = tomlkit.table()
        table.add("local_addr", _commented(local_addrs[svc.name], "the service to expose"))
        if svc.type != "tcp":
            table.add("type", svc.type)
        if shared is None:
            table.add("token", svc.token)
        services.add(svc.name, table)
    client.add("services", services)
    doc.add("client", client)
    return tomlkit.dumps(doc)
