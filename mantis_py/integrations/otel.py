"""Span capture for OpenTelemetry tracing: every ended span becomes one event on ``spans``.

    from mantis_py.integrations.otel import MantisSpanProcessor
    provider.add_span_processor(MantisSpanProcessor(agent))

One event: ``name``, ``kind`` (``"SERVER"``, ``"INTERNAL"``, …), ``trace_id`` (32 hex digits),
``span_id`` (16), ``parent_id`` (16, or null for a root span), ``status`` (``"UNSET"``, ``"OK"``,
``"ERROR"``), ``duration_ms``, ``attributes`` (the span's attributes as one flat object, sequence
values as lists) and ``service`` (the resource's ``service.name``).

``on_end`` asks ``agent.has_subscribers(stream)`` first and builds nothing when nobody listens;
it never raises into the tracer (a failure of ours is counted in :meth:`statistics`). Needs the
OpenTelemetry SDK: ``pip install 'mantis_py[otel]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._common import AgentLike, Counters, IntegrationStatistics, missing_extra

try:
    from opentelemetry.sdk.trace import SpanProcessor
except ImportError:  # pragma: no cover - exercised in a subprocess without the SDK
    raise missing_extra("otel", "the OpenTelemetry SDK (opentelemetry-sdk)", "otel") from None

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span

__all__ = ["MantisSpanProcessor"]


class MantisSpanProcessor(SpanProcessor):
    """An OpenTelemetry span processor that publishes ended spans to an agent.

    Args:
        agent: the service's :class:`mantis_py.agents.Agent`.
        stream: the stream to publish on (default ``"spans"``).
    """

    def __init__(self, agent: AgentLike, *, stream: str = "spans") -> None:
        self.agent = agent
        self.stream = stream
        self._has = agent.has_subscribers
        # the agents' own publish without the defensive copy (the event is ours, built per call)
        self._publish = getattr(agent, "_publish_owned", None) or agent.publish
        self._counters = Counters()

    def statistics(self) -> IntegrationStatistics:
        """How many events were built, and how many failures of ours were swallowed."""
        return self._counters.snapshot()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if not self._has(self.stream):
            return
        try:
            self._publish(self._event(span), self.stream)
        except Exception:
            self._counters.failed += 1

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def _event(self, span: ReadableSpan) -> dict[str, Any]:
        ctx = span.get_span_context()
        parent = span.parent
        start, end = span.start_time, span.end_time
        resource = span.resource.attributes if span.resource is not None else {}
        attributes = {
            k: list(v) if isinstance(v, tuple | list) else v
            for k, v in (span.attributes or {}).items()
        }
        event: dict[str, Any] = {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(ctx.trace_id, "032x") if ctx is not None else None,
            "span_id": format(ctx.span_id, "016x") if ctx is not None else None,
            "parent_id": format(parent.span_id, "016x") if parent is not None else None,
            "status": span.status.status_code.name,
            "duration_ms": (end - start) / 1e6 if start is not None and end is not None else None,
            "attributes": attributes,
            "service": resource.get("service.name"),
        }
        self._counters.built += 1
        return event
