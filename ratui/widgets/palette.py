"""Rich styles taken from the current Textual theme, for text built in Python (table cells,
log lines), so that colours follow the theme on dark and light terminals alike."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from textual.app import App
from textual.color import Color

from ..engine.state import ControlState, Level


def _colour(variables: dict[str, str], name: str, fallback: str) -> Color:
    try:
        return Color.parse(variables.get(name, fallback))
    except Exception:  # a theme variable that is not a plain colour (e.g. "auto 87%")
        return Color.parse(fallback)


@dataclass(frozen=True, slots=True)
class Palette:
    ok: Style
    warn: Style
    bad: Style
    muted: Style
    faint: Style
    primary: Style
    accent: Style
    strong: Style
    error_badge: Style
    warning_badge: Style

    @classmethod
    def from_app(cls, app: App[object]) -> Palette:
        variables = app.theme_variables or app.get_css_variables()
        background = _colour(variables, "background", "#121212")
        foreground = _colour(variables, "foreground", "#e0e0e0")

        def fg(name: str, fallback: str, **kw: bool) -> Style:
            colour = background + _colour(variables, name, fallback)
            return Style(color=colour.rich_color, **kw)

        def badge(name: str, fallback: str) -> Style:
            back = background + _colour(variables, name, fallback)
            return Style(
                color=back.get_contrast_text().rich_color, bgcolor=back.rich_color, bold=True
            )

        return cls(
            ok=fg("text-success", "#4ebf71"),
            warn=fg("text-warning", "#ffa62b"),
            bad=fg("text-error", "#ba3c5b", bold=True),
            muted=fg("foreground-muted", foreground.hex),
            faint=fg("foreground-disabled", foreground.hex),
            primary=fg("text-primary", "#0178d4"),
            accent=fg("text-accent", "#ffa62b"),
            strong=Style(bold=True),
            error_badge=badge("error", "#ba3c5b"),
            warning_badge=badge("warning", "#ffa62b"),
        )

    def state(self, state: ControlState) -> Style:
        return {
            ControlState.UP: self.ok,
            ControlState.WAITING: self.warn,
            ControlState.CONNECTING: self.warn,
            ControlState.RETRYING: self.bad,
            ControlState.STOPPED: self.muted,
        }[state]

    def level(self, level: Level) -> Style:
        return {
            Level.DEBUG: self.faint,
            Level.INFO: Style(),
            Level.WARNING: self.warn,
            Level.ERROR: self.bad,
        }[level]


STATE_GLYPH = {
    ControlState.UP: "●",
    ControlState.WAITING: "○",
    ControlState.CONNECTING: "◐",
    ControlState.RETRYING: "✕",
    ControlState.STOPPED: "■",
}

STATE_SHORT = {
    ControlState.UP: "up",
    ControlState.WAITING: "wait",
    ControlState.CONNECTING: "conn",
    ControlState.RETRYING: "retry",
    ControlState.STOPPED: "stop",
}

#: Sort order of control states: the ones that need attention first.
STATE_RANK = {
    ControlState.RETRYING: 0,
    ControlState.CONNECTING: 1,
    ControlState.WAITING: 2,
    ControlState.UP: 3,
    ControlState.STOPPED: 4,
}
