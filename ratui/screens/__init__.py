"""Screens of the terminal UI: the dashboard, the key help and the quit confirmation."""
