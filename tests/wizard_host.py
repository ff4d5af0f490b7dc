"""A bare Textual app that pushes one setup wizard and keeps what it dismissed with: the tests'
host for the wizards, and a way to look at them by hand::

    python tests/wizard_host.py server|client CONFIG [CODE]

Also the pilot's ways of typing into a wizard: into a field, a paste of a code, and keys that
arrive together (:func:`type_ahead`).
"""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

from textual import events
from textual.app import App
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.pilot import Pilot
from textual.screen import Screen

from ratui.screens.client_wizard import CodeArea

#: ``result`` before the wizard is dismissed.
PENDING = object()


class WizardHost(App[None]):
    def __init__(self, wizard: Screen[Path | None], *, exit_when_done: bool = False) -> None:
        super().__init__()
        self.wizard = wizard
        self.exit_when_done = exit_when_done
        self.result: object = PENDING

    def on_mount(self) -> None:
        self.push_screen(self.wizard, self._done)

    def _done(self, path: Path | None) -> None:
        self.result = path
        if self.exit_when_done:
            self.exit()


async def fill(pilot: Pilot, field: str, text: str) -> None:
    """Click the field with id ``field``, clear it (ctrl+u) and paste ``text`` into it."""
    await pilot.click(f"#{field}-input")
    await pilot.press("end", "ctrl+u")
    await paste(pilot, text)


async def paste_code(pilot: Pilot, code: str) -> None:
    """Click the pairing code box, empty it and paste ``code``."""
    await pilot.click(CodeArea)
    pilot.app.screen.query_one(CodeArea).clear()
    await paste(pilot, code)


async def paste(pilot: Pilot, text: str) -> None:
    """A terminal's bracketed paste: it arrives at the app, which hands it to the focused
    widget."""
    pilot.app.post_message(events.Paste(text))
    await pilot.pause()


async def type_ahead(pilot: Pilot, *keys: str) -> None:
    """``keys`` (named as for ``pilot.press``: ``*"web"`` types a word) queued all at once,
    before the app handles the first: what one terminal read holds when a fast typist or a
    high-latency SSH link delivers several keys together."""
    driver = pilot.app._driver
    assert driver is not None
    for key in keys:
        driver.send_message(_key_event(key))
    await pilot.pause()
    await pilot.pause()


def _key_event(key: str) -> events.Key:
    """The event a terminal's key press becomes (as ``pilot.press`` makes it)."""
    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    try:
        name = _get_unicode_name_from_key(REPLACED_KEYS.get(key, key))
        char: str | None = unicodedata.lookup(name)
    except KeyError:
        char = key if len(key) == 1 else None
    return events.Key(key, char)


if __name__ == "__main__":
    from ratui.screens.client_wizard import ClientWizard
    from ratui.screens.server_wizard import ServerWizard

    role, config = sys.argv[1], Path(sys.argv[2])
    code = sys.argv[3] if len(sys.argv) > 3 else None
    wizard = ServerWizard(config) if role == "server" else ClientWizard(config, code)
    host = WizardHost(wizard, exit_when_done=True)
    host.run()
    print(f"wizard result: {host.result}")
