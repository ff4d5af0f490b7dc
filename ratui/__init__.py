"""ratui: a rathole-compatible reverse tunnel with a terminal UI."""

__version__ = "0.1.0"
