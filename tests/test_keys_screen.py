"""The keys and tokens screen: from the welcome screen (``k``), the dashboard (``K``) and the
command palette; real keypairs that decode to 32 bytes and match, copied on a key press."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from test_app import frozen, run, until
from test_snapshots import _snapshot_dir_and_timezone  # noqa: F401 - autouse fixture
from textual.pilot import Pilot

from ratui.app import RatuiApp
from ratui.screens.dashboard import DashboardScreen
from ratui.screens.keys import KeysScreen
from ratui.screens.welcome import WelcomeScreen
from ratui.setup.files import CONFIG_DIR_ENV

#: Fixed values for the snapshots (a real keypair, so the screen shows what it would).
PRIVATE = "cHJpdmF0ZSBrZXkgZm9yIHRoZSBzbmFwc2hvdCEhISE="
PUBLIC = base64.b64encode(
    X25519PrivateKey.from_private_bytes(base64.b64decode(PRIVATE))
    .public_key()
    .public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()
TOKEN = "c25hcHNob3QtdG9rZW4tMzItYnl0ZXMtb2YtcmFuZG9t"


def check_keypair(private: str, public: str) -> None:
    raw_private, raw_public = base64.b64decode(private), base64.b64decode(public)
    assert len(raw_private) == len(raw_public) == 32
    derived = X25519PrivateKey.from_private_bytes(raw_private).public_key()
    assert derived.public_bytes(Encoding.Raw, PublicFormat.Raw) == raw_public


def test_keys_from_the_welcome_screen_are_real_and_copied() -> None:
    async def main() -> None:
        app = RatuiApp(None)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("k")
            screen = app.screen
            assert isinstance(screen, KeysScreen)
            first = dict(screen.values)
            check_keypair(first["private"], first["public"])
            assert len(base64.urlsafe_b64decode(first["token"] + "=")) == 32
            for key, item in (("1", "private"), ("2", "public"), ("3", "token")):
                await pilot.press(key)
                assert app.clipboard == first[item]
            # What is on screen is the value itself, whole (selectable as text).
            shown = {item: str(screen.query_one(f"#{item}").content) for item in first}
            assert shown == first
            await pilot.press("r")
            second = screen.values
            assert all(second[item] != first[item] for item in first)
            check_keypair(second["private"], second["public"])
            await pilot.press("escape")
            assert isinstance(app.screen, WelcomeScreen)

    run(main())


@frozen()
async def test_shift_k_and_the_palette_open_it_on_the_dashboard(pilot: Pilot, app: RatuiApp):
    await pilot.press("K")
    assert isinstance(app.screen, KeysScreen)
    await pilot.press("q")
    assert isinstance(app.screen, DashboardScreen)
    await pilot.press("ctrl+p")
    await pilot.press(*"Keys and tokens")
    await pilot.pause(0.5)  # the palette searches in a worker
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, KeysScreen), "the keys screen")


def test_keys_80x24(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_DIR_ENV, "/home/me/.config/ratui")

    async def show(pilot: Pilot) -> None:
        pilot.app.push_screen(KeysScreen(keypair=lambda: (PRIVATE, PUBLIC), token=lambda: TOKEN))
        await pilot.pause()

    assert snap_compare(RatuiApp(None, theme="ratui-dark"), run_before=show, terminal_size=(80, 24))
