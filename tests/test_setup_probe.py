"""probe() against real ratui and rathole servers: each way of failing gets its own words."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from conftest import Procs, free_port, run, wait_port, write_config

from ratui.engine.config import ClientConfig, parse_config
from ratui.genkey import generate_keypair
from ratui.setup.generate import (
    ServerDraft,
    ServiceDraft,
    client_toml,
    complete,
    pairing_for,
    server_toml,
)
from ratui.setup.pairing import PairedService, Pairing
from ratui.setup.probe import ProbeResult, probe


def server_draft(transport: str) -> ServerDraft:
    port = free_port()
    return complete(
        ServerDraft(
            f"127.0.0.1:{port}",
            f"127.0.0.1:{port}",
            transport,
            (
                ServiceDraft("ssh", bind_addr=f"127.0.0.1:{free_port()}"),
                ServiceDraft("dns", "udp", f"127.0.0.1:{free_port()}"),
            ),
        )
    )


def start_server(procs: Procs, tmp_path: Path, d: ServerDraft, impl: str = "ratui") -> None:
    config = write_config(tmp_path / "server.toml", server_toml(d))
    getattr(procs, impl)("--server", str(config))
    wait_port(int(d.bind_addr.rsplit(":", 1)[1]))


def client_config(pairing: Pairing) -> ClientConfig:
    local = {svc.name: "127.0.0.1:9" for svc in pairing.services}
    client = parse_config(client_toml(pairing, local)).client
    assert client is not None
    return client


def with_service(pairing: Pairing, service: PairedService) -> Pairing:
    others = tuple(s for s in pairing.services if s.name != service.name)
    return dataclasses.replace(pairing, services=(*others, service))


def check_outcomes(d: ServerDraft) -> None:
    """ok, wrong token, unknown service and (for Noise) a wrong server key, one probe each."""
    pairing = pairing_for(d)
    good = client_config(pairing)
    assert run(probe(good, "ssh")) == ProbeResult("ssh", True)
    assert run(probe(good, "dns")) == ProbeResult("dns", True)

    wrong_token = client_config(with_service(pairing, PairedService("ssh", "tcp", "not-it")))
    assert run(probe(wrong_token, "ssh")) == ProbeResult(
        "ssh", False, "the server refused the token for 'ssh'"
    )
    unknown = client_config(with_service(pairing, PairedService("ghost", "tcp", "t")))
    assert run(probe(unknown, "ghost")) == ProbeResult(
        "ghost", False, "the server has no service 'ghost'"
    )
    if d.transport == "noise":
        other_key = dataclasses.replace(pairing, noise_public_key=generate_keypair()[1])
        result = run(probe(client_config(other_key), "ssh", timeout=3.0))
        assert not result.ok
        assert result.problem.startswith("the server's Noise key does not match")


@pytest.mark.parametrize("transport", ["tcp", "noise"])
def test_probe_against_ratui(procs: Procs, tmp_path: Path, transport: str) -> None:
    d = server_draft(transport)
    start_server(procs, tmp_path, d)
    check_outcomes(d)


@pytest.mark.interop
def test_probe_against_rathole(procs: Procs, tmp_path: Path) -> None:
    d = server_draft("noise")
    start_server(procs, tmp_path, d, impl="rathole")
    check_outcomes(d)


def test_probe_unreachable_server() -> None:
    d = server_draft("tcp")  # nothing is started: the port is free
    result = run(probe(client_config(pairing_for(d)), "ssh"))
    assert result == ProbeResult("ssh", False, f"cannot reach {d.public_addr}: connection refused")


def test_probe_names_a_service_missing_from_the_config() -> None:
    result = run(probe(client_config(pairing_for(server_draft("tcp"))), "web"))
    assert result == ProbeResult("web", False, "the client config has no service 'web'")


def test_probe_tcp_client_against_noise_server(procs: Procs, tmp_path: Path) -> None:
    d = server_draft("noise")
    start_server(procs, tmp_path, d)
    plain = dataclasses.replace(pairing_for(d), transport="tcp", noise_public_key=None)
    result = run(probe(client_config(plain), "ssh", timeout=3.0))
    assert not result.ok
    assert 'does it use transport type = "tcp" like this config?' in result.problem
