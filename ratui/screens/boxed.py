"""The look of ratui's boxed screens (welcome, keys, help): one bordered box in the middle
of the terminal, as wide as its content wants up to ``width`` cells."""

from __future__ import annotations


def boxed_css(screen: str, box: str, width: int, backdrop: str = "$background 60%") -> str:
    """CSS for ``screen`` whose child of type ``box`` is the box, over ``backdrop``."""
    return f"""
    {screen} {{
        align: center middle;
        background: {backdrop};
    }}
    {screen} > {box} {{
        width: {width};
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-style: bold;
        border-subtitle-color: $text-muted;
        background: $surface;
        padding: 0 1;
    }}
    """
