"""Widgets of the dashboard. They read only ``ratui.engine.state`` values handed to them."""
