"""Generated server and client configs: ratui's own parser reads them back as drafted."""

from __future__ import annotations

import dataclasses
import re

import pytest

from ratui.engine.config import ServiceType, TransportType, parse_config
from ratui.setup.generate import (
    ServerDraft,
    ServiceDraft,
    check_draft,
    client_toml,
    complete,
    pairing_for,
    pairing_from_config,
    read_public_addr,
    server_toml,
)
from ratui.setup.pairing import PairedService, Pairing, decode, encode
from ratui.setup.validate import join_host_port, validate_addr, validate_name

SERVICES = (
    ServiceDraft("ssh", bind_addr="0.0.0.0:5202"),
    ServiceDraft("dns", "udp", "0.0.0.0:5353", token="own-dns-token"),
)
LOCAL = {"ssh": "127.0.0.1:22", "dns": "192.168.1.2:53"}


def draft(transport: str, **extra: str) -> ServerDraft:
    return complete(
        ServerDraft("0.0.0.0:2333", "vps.example.com:2333", transport, SERVICES, **extra)
    )


TLS = {"tls_pkcs12": "/etc/ratui/identity.p12", "tls_pkcs12_password": "p12-pass"}


@pytest.mark.parametrize(
    ("transport", "extra"), [("tcp", {}), ("noise", {}), ("tls", TLS)], ids=["tcp", "noise", "tls"]
)
def test_server_config_reads_back_as_drafted(transport: str, extra: dict[str, str]) -> None:
    d = draft(transport, **extra)
    text = server_toml(d)
    server = parse_config(text).server
    assert server is not None and parse_config(text).client is None
    assert server.bind_addr == "0.0.0.0:2333"
    assert server.transport.type is TransportType(transport)
    assert server.services["ssh"].token == d.default_token
    assert server.services["dns"].token == "own-dns-token"
    assert server.services["dns"].type is ServiceType.UDP
    assert server.services["dns"].bind_addr == "0.0.0.0:5353"
    assert '# public_addr = "vps.example.com:2333"' in text
    assert read_public_addr(text) == "vps.example.com:2333"
    assert "visitors connect here" in text and "clients connect here" in text
    assert pairing_from_config(server, d.public_addr) == pairing_for(d)


def test_noise_keys_are_made_and_the_public_key_is_noted() -> None:
    d = draft("noise")
    assert d.noise_private_key and d.noise_public_key
    text = server_toml(d)
    server = parse_config(text).server
    assert server is not None and server.transport.noise is not None
    assert server.transport.noise.local_private_key == d.noise_private_key
    assert f"remote_public_key: {d.noise_public_key}" in text
    assert pairing_for(d).noise_public_key == d.noise_public_key
    # A given private key keeps, and its public half is derived.
    again = complete(dataclasses.replace(d, noise_public_key=None))
    assert again.noise_private_key == d.noise_private_key
    assert again.noise_public_key == d.noise_public_key


def test_complete_adds_no_default_token_when_every_service_has_one() -> None:
    d = complete(
        ServerDraft("0.0.0.0:2333", "vps:2333", "tcp", (SERVICES[1],)),
    )
    assert d.default_token is None
    assert "default_token" not in server_toml(d)


@pytest.mark.parametrize(
    ("transport", "extra"), [("tcp", {}), ("noise", {}), ("tls", TLS)], ids=["tcp", "noise", "tls"]
)
def test_client_config_matches_the_pairing(transport: str, extra: dict[str, str]) -> None:
    pairing = decode(encode(pairing_for(draft(transport, **extra))))
    client = parse_config(client_toml(pairing, LOCAL)).client
    assert client is not None
    assert client.remote_addr == "vps.example.com:2333"
    assert client.transport.type is TransportType(transport)
    for svc in pairing.services:
        parsed = client.services[svc.name]
        assert (parsed.token, str(parsed.type), parsed.local_addr) == (
            svc.token,
            svc.type,
            LOCAL[svc.name],
        )
    if transport == "noise":
        assert client.transport.noise is not None
        assert client.transport.noise.remote_public_key == pairing.noise_public_key
    if transport == "tls":
        assert client.transport.tls is not None
        assert client.transport.tls.hostname == "vps.example.com"


def test_client_config_shares_one_token_as_default_token() -> None:
    pairing = Pairing(
        "vps:2333", "tcp", (PairedService("a", "tcp", "same"), PairedService("b", "udp", "same"))
    )
    text = client_toml(pairing, {"a": "127.0.0.1:1", "b": "127.0.0.1:2"})
    assert text.count("same") == 1 and 'default_token = "same"' in text
    client = parse_config(text).client
    assert client is not None and client.services["b"].token == "same"


def test_client_config_with_trusted_root() -> None:
    pairing = Pairing("vps:443", "tls", (PairedService("a", "tcp", "t"),), tls_hostname="vps")
    client = parse_config(client_toml(pairing, {"a": "127.0.0.1:1"}, trusted_root="/ca.pem")).client
    assert client is not None and client.transport.tls is not None
    assert client.transport.tls.trusted_root == "/ca.pem"


def test_client_config_needs_every_local_address() -> None:
    pairing = pairing_for(draft("tcp"))
    with pytest.raises(ValueError, match="no local address for service 'dns'"):
        client_toml(pairing, {"ssh": "127.0.0.1:22"})
    with pytest.raises(ValueError, match="local address"):
        client_toml(pairing, {"ssh": "127.0.0.1", "dns": "127.0.0.1:53"})


def test_check_draft_names_the_problem() -> None:
    base = draft("tcp")
    cases = {
        "transport 'quic'": dataclasses.replace(base, transport="quic"),
        "bind address": dataclasses.replace(base, bind_addr="2333"),
        "at least one service": dataclasses.replace(base, services=()),
        "appears twice": dataclasses.replace(base, services=(SERVICES[0], SERVICES[0])),
        "no token": dataclasses.replace(base, default_token=None),
        "PKCS#12": dataclasses.replace(base, transport="tls"),
        "private key": dataclasses.replace(base, transport="noise"),
        "service 'bad name'": dataclasses.replace(
            base, services=(ServiceDraft("bad name", bind_addr="0.0.0.0:1"),)
        ),
    }
    for expected, bad in cases.items():
        problem = check_draft(bad)
        assert problem is not None and expected in problem
        with pytest.raises(ValueError, match=re.escape(expected)):
            server_toml(bad)
    assert check_draft(base) is None


def test_pairing_from_config_refuses_what_a_code_cannot_carry() -> None:
    websocket = parse_config(
        '[server]\nbind_addr = "0.0.0.0:2333"\n[server.transport]\ntype = "websocket"\n'
        "[server.transport.websocket]\ntls = false\n"
        '[server.services.a]\nbind_addr = "0.0.0.0:1"\ntoken = "t"\n'
    ).server
    assert websocket is not None
    with pytest.raises(ValueError, match="websocket"):
        pairing_from_config(websocket, "vps:2333")
    server = parse_config(server_toml(draft("tcp"))).server
    assert server is not None
    with pytest.raises(ValueError, match="public address"):
        pairing_from_config(server, "vps")
    other_pattern = server_toml(draft("noise")).replace(
        "[server.transport.noise]",
        '[server.transport.noise]\npattern = "Noise_XX_25519_ChaChaPoly_BLAKE2s"',
    )
    noise = parse_config(other_pattern).server
    assert noise is not None
    with pytest.raises(ValueError, match="default Noise pattern"):
        pairing_from_config(noise, "vps:2333")


def test_secrets_are_not_in_the_repr() -> None:
    d = draft("tls", **TLS)
    shown = repr(d)
    secrets = [d.default_token, d.tls_pkcs12_password, "own-dns-token"]
    assert all(secret and secret not in shown for secret in secrets)
    assert "ssh" in shown and d.public_addr in shown
    keyed = draft("noise")
    assert keyed.noise_private_key and keyed.noise_private_key not in repr(keyed)


def test_validators() -> None:
    assert validate_name("home-ssh_2.0") is None
    for bad in ("", "-x", "a b", "x" * 64, "ä"):
        assert validate_name(bad)
    assert validate_addr("[::1]:2333") is None and validate_addr("vps:1") is None
    assert join_host_port("::1", 5202) == "[::1]:5202"
    assert join_host_port("0.0.0.0", "80") == "0.0.0.0:80"
    for bad in ("vps", "vps:", "::1:80", "vps:70000"):
        problem = validate_addr(bad)
        assert problem is not None and "host:port" in problem
