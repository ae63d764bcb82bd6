"""Gateway counters and the Prometheus text exposition format (version 0.0.4). Pure.

Theory: the gateway keeps plain integer counters and gauges in one :class:`Metrics` object that
every part increments directly (``metrics.inc("frames_in_total", kind="agent")``); ``GET /metrics``
renders them with :func:`render`. Names get the ``mantis_gateway_`` prefix; label values are
escaped as the format requires. Gauges that are read from elsewhere at scrape time (connected
agents, live queries) are passed to ``render`` as a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Metrics", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "mantis_gateway_"

HELP: dict[str, str] = {
    "connections_total": "Connections accepted, by kind (agent, client, sse, http).",
    "connections_refused_total": "Handshakes refused before the upgrade, by HTTP status.",
    "frames_in_total": "Websocket frames received, by kind.",
    "frames_out_total": "Frames sent to clients (websocket and SSE).",
    "bytes_in_total": "Payload bytes received from agents and clients, by kind.",
    "bytes_out_total": "Payload bytes sent to clients.",
    "events_in_total": "Event records received from agents.",
    "parts_in_total": "Partial aggregates received from agents.",
    "queries_total": "Query decisions, by decision (accepted, refused, error, rate_limited).",
    "dropped_total": "Items dropped at the gateway, by reason.",
    "clients_evicted_total": "Clients closed by the gateway, by reason (too_slow, send_deadline).",
    "protocol_errors_total": "Connections closed for protocol errors, by close code.",
    "agents_connected": "Agents connected now.",
    "clients_connected": "Websocket and SSE clients connected now.",
    "queries_live": "Client queries running now.",
    "subscriptions_live": "Distinct agent subscriptions live now.",
}

GAUGES = {"agents_connected", "clients_connected", "queries_live", "subscriptions_live"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class Metrics:
    """Monotonic counters keyed by (name, sorted labels)."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        series = self.counters.setdefault(name, {})
        key = tuple(sorted(labels.items()))
        series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        """Current value (0 when never incremented)."""
        return self.counters.get(name, {}).get(tuple(sorted(labels.items())), 0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(metrics: Metrics, gauges: Mapping[str, float] | None = None) -> bytes:
    """The Prometheus text exposition of ``metrics`` plus the ``gauges``.

    >>> m = Metrics(); m.inc("queries_total", decision="accepted")
    >>> b'mantis_gateway_queries_total{decision="accepted"} 1' in render(m)
    True
    """
    lines: list[str] = []
    series: dict[str, dict[Labels, float]] = dict(metrics.counters)
    for name, value in (gauges or {}).items():
        series[name] = {(): value}
    for name in sorted(series):
        full = PREFIX + name
        kind = "gauge" if name in GAUGES else "counter"
        lines.append(f"# HELP {full} {HELP.get(name, name)}")
        lines.append(f"# TYPE {full} {kind}")
        for labels, value in sorted(series[name].items()):
            if labels:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{full}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{full} {_number(value)}")
    return ("\n".join(lines) + "\n").encode()
