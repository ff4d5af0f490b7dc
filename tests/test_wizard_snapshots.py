"""Snapshot tests of every step of the server and client setup wizards, at 80x24.

Tokens and the Noise keypair come from fixed generators handed to the wizard, the host name
is given, the config path is relative to a temporary working directory, and the ports are
fixed, so every screen is the same on every run. The server wizard's check that a port is
free is replaced by :func:`every_port_free`, so the pictures do not depend on 2333, 5202 and
27015 being free on the machine (tests/test_wizards.py tries that check for real); the
client's connection test really connects to 127.0.0.1:9, where nothing listens, so it shows
a refusal (there, and at the local address of the TCP service). SVGs live under
``snapshots/test_wizard_snapshots/``; refresh with
``pytest tests/test_wizard_snapshots.py --snapshot-update`` after looking at them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from conftest import poll_until
from test_snapshots import _snapshot_dir_and_timezone  # noqa: F401 - autouse fixture
from textual.pilot import Pilot
from wizard_host import WizardHost, fill, paste_code

from ratui.screens.client_wizard import ClientWizard, ProbeStep
from ratui.screens.server_wizard import ServerWizard
from ratui.setup.pairing import PairedService, Pairing, encode

SIZE = (80, 24)
#: Made once with ``ratui --genkey``; used for nothing but these pictures.
KEYPAIR = (
    "YBvFTAfkT9aAPubKTFBRnPEPpYOlRVAMS0H9S4IeQEQ=",
    "MD8CalyZdEkBrPaE8SzROD08zW2Xc3v6WsmIINwyd2o=",
)
TOKEN = "k3Y9w_fixed-token-for-snapshots-0123456789A"
CODE = encode(
    Pairing(
        remote_addr="127.0.0.1:9",
        transport="noise",
        services=(
            PairedService("ssh", "tcp", TOKEN),
            PairedService("game", "udp", TOKEN),
        ),
        noise_public_key=KEYPAIR[1],
    )
)

Steps = Callable[[Pilot], Awaitable[None]]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Configs are written to a relative path, so the screens show the same path."""
    monkeypatch.chdir(tmp_path)


def every_port_free(host: str, port: int, kind: str) -> None:
    """The port check of a machine where every port the pictures use is free."""
    return None


def server_wizard() -> WizardHost:
    return WizardHost(
        ServerWizard(
            Path("server.toml"),
            new_token=lambda: TOKEN,
            keypair=lambda: KEYPAIR,
            hostname="vps.example.com",
            port_check=every_port_free,
        )
    )


async def server_to_transport(pilot: Pilot) -> None:
    await pilot.pause()
    await pilot.press("ctrl+n")


async def server_to_services(pilot: Pilot) -> None:
    await server_to_transport(pilot)
    await pilot.press("ctrl+n")
    for name, port in (("ssh", "5202"), ("game", "27015")):
        await fill(pilot, "name", name)
        if name == "game":
            await pilot.click("#type")
            await pilot.press("down", "enter")
        await fill(pilot, "port", port)
        await pilot.press("enter")


async def server_to_tokens(pilot: Pilot) -> None:
    await server_to_services(pilot)
    await pilot.press("ctrl+n")


async def server_to_review(pilot: Pilot) -> None:
    await server_to_tokens(pilot)
    await pilot.press("ctrl+n")


async def server_to_result(pilot: Pilot) -> None:
    await server_to_review(pilot)
    await pilot.press("ctrl+n")


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(lambda pilot: pilot.pause(), id="1-listen"),
        pytest.param(server_to_transport, id="2-transport"),
        pytest.param(server_to_services, id="3-services"),
        pytest.param(server_to_tokens, id="4-tokens"),
        pytest.param(server_to_review, id="5-review"),
        pytest.param(server_to_result, id="6-result"),
    ],
)
def test_server_wizard_80x24(snap_compare, steps: Steps) -> None:
    assert snap_compare(server_wizard(), terminal_size=SIZE, run_before=steps)


async def client_code_refused(pilot: Pilot) -> None:
    await paste_code(pilot, CODE[:-20])
    await pilot.press("ctrl+n")


async def client_to_local(pilot: Pilot) -> None:
    await paste_code(pilot, CODE)
    await pilot.press("ctrl+n")


async def client_to_probe(pilot: Pilot) -> None:
    await client_to_local(pilot)
    await fill(pilot, "local-0", "127.0.0.1:9")  # not the machine's own ssh, if it runs one
    await pilot.press("ctrl+n")
    probes = pilot.app.screen.query_one(ProbeStep)
    await poll_until(lambda: bool(probes.results), what="the connection test")
    await pilot.pause()


async def client_to_review(pilot: Pilot) -> None:
    await client_to_probe(pilot)
    await pilot.press("ctrl+n")


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(client_code_refused, id="1-code-truncated"),
        pytest.param(client_to_local, id="2-local-addresses"),
        pytest.param(client_to_probe, id="3-connection-test"),
        pytest.param(client_to_review, id="4-review"),
    ],
)
def test_client_wizard_80x24(snap_compare, steps: Steps) -> None:
    app = WizardHost(ClientWizard(Path("client.toml")))
    assert snap_compare(app, terminal_size=SIZE, run_before=steps)
