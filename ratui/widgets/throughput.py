"""Throughput over the last minutes: a total graph and one line per service."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from ..engine.state import ServiceSnapshot
from .format import format_rate, format_window
from .graph import RateGraph
from .history import RateHistory, service_key
from .palette import Palette
from .readout import Readout
from .services import row_key_of


class ServiceRate(Horizontal):
    """``name  ▁▂▅▇█▇  12.3 Mbit/s``"""

    DEFAULT_CSS = """
    ServiceRate {
        height: 1;
    }
    ServiceRate > .rate-name {
        width: 16;
        padding: 0 1 0 0;
        text-overflow: ellipsis;
        text-wrap: nowrap;
    }
    ServiceRate > .rate-value {
        width: 13;
        text-align: right;
    }
    ServiceRate.-selected > .rate-name {
        text-style: bold reverse;
    }
    """

    def compose(self) -> ComposeResult:
        yield Readout(classes="rate-name")
        yield RateGraph()
        yield Readout(classes="rate-value")

    ready = False

    def on_mount(self) -> None:
        # Mounting is asynchronous: polls that came meanwhile skipped this row.
        self.ready = True
        self.query_ancestor(ThroughputPanel).refill()


class ThroughputPanel(Vertical):
    DEFAULT_CSS = """
    ThroughputPanel {
        height: auto;
    }
    ThroughputPanel > #total-head {
        height: 1;
    }
    ThroughputPanel #total-label {
        width: auto;
        text-style: bold;
    }
    ThroughputPanel #total-rates {
        width: 1fr;
        text-align: right;
    }
    ThroughputPanel > #total-graph {
        height: 2;
    }
    ThroughputPanel > #total-graph > .rate-graph--bar {
        color: $accent;
    }
    ThroughputPanel > #service-rates {
        height: auto;
        margin-top: 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._rows: dict[str, ServiceRate] = {}
        self._latest: tuple[Sequence[ServiceSnapshot], RateHistory, bool, str | None] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="total-head"):
            yield Readout("total", id="total-label")
            yield Readout(id="total-rates")
        yield RateGraph(id="total-graph")
        yield Vertical(id="service-rates")

    def show(
        self,
        services: Sequence[ServiceSnapshot],
        history: RateHistory,
        *,
        bits: bool,
        palette: Palette,
        selected: str | None,
        total_label: str,
    ) -> None:
        graph = self.query_one("#total-graph", RateGraph)
        graph.plot(history.total, history.last_second)
        self.border_title = f"Throughput · last {format_window(graph.span())}"
        rx = history.total_in[-1] if history.total_in else 0.0
        tx = history.total_out[-1] if history.total_out else 0.0
        peak = max(history.total, default=0.0)
        rates = Text()
        rates.append("↓ ", style=palette.muted)
        rates.append(format_rate(rx, bits=bits), style=palette.accent if rx else "")
        rates.append("  ↑ ", style=palette.muted)
        rates.append(format_rate(tx, bits=bits), style=palette.accent if tx else "")
        rates.append(f"  peak {format_rate(peak, bits=bits)}", style=palette.muted)
        self.query_one("#total-rates", Readout).set_text(rates)
        self.query_one("#total-label", Readout).set_text(total_label)
        self._show_services(services, history, bits, selected)

    def _show_services(
        self,
        services: Sequence[ServiceSnapshot],
        history: RateHistory,
        bits: bool,
        selected: str | None,
    ) -> None:
        self._latest = (services, history, bits, selected)
        keys = [row_key_of(s) for s in services]
        if keys != list(self._rows):
            box = self.query_one("#service-rates", Vertical)
            box.remove_children()
            self._rows = {key: ServiceRate() for key in keys}
            box.mount_all(self._rows.values())  # each row fills itself once mounted
            return
        self.refill()

    def refill(self) -> None:
        """Write the latest figures into every mounted row."""
        if self._latest is None:
            return
        services, history, bits, selected = self._latest
        for service in services:
            row = self._rows.get(row_key_of(service))
            if row is None or not row.ready:
                continue
            row.set_class(row_key_of(service) == selected, "-selected")
            row.query_one(".rate-name", Readout).set_text(
                f"{service.name} {service.role.value[:3]}"
            )
            row.query_one(RateGraph).plot(history.series(service_key(service)), history.last_second)
            rate = service.rx_rate + service.tx_rate
            row.query_one(".rate-value", Readout).set_text(format_rate(rate, bits=bits))
