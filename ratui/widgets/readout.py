"""A Static for figures that change on every poll, made cheap to update."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Readout(Static):
    """Repaints only when its text really changed, and asks for a new layout of the screen
    only when its size can have changed: most polls change nothing, or only digits."""

    _key: str | None = None
    _shape: tuple[int, int] | None = None

    def set_text(self, text: Text | str) -> None:
        if isinstance(text, str):
            text = Text(text)
        key = text.markup
        if key == self._key:
            return
        shape = (text.cell_len, text.plain.count("\n"))
        layout = shape != self._shape
        self._key, self._shape = key, shape
        self.update(text, layout=layout)
