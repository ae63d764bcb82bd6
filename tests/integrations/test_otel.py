"""MantisSpanProcessor with the real OpenTelemetry SDK, a real agent and gateway: spans arrive on
``spans`` with their trace, span and parent ids; the missing-SDK ImportError names the extra."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from mantis_py.integrations.otel import MantisSpanProcessor

from .helpers import LiveQuery, running_agent, running_gateway, wait_for

pytestmark = pytest.mark.timeout(90)


def test_spans_arrive_with_parent_and_child_ids() -> None:
    with running_gateway() as gw, running_agent("checkout", gw) as agent:
        provider = TracerProvider(resource=Resource.create({"service.name": "checkout-api"}))
        processor = MantisSpanProcessor(agent)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("itest")
        with tracer.start_as_current_span("before anyone asks"):
            pass
        assert processor.statistics().built == 0
        with LiveQuery(gw, "select name, kind, trace_id, span_id, parent_id, status, duration_ms, "
                           "attributes, service from checkout/spans") as q:
            wait_for(lambda: agent.has_subscribers("spans"), what="the subscription")
            server_attrs = {"http.method": "GET", "http.status_code": 200}
            with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER,
                                              attributes=server_attrs) as parent, \
                    tracer.start_as_current_span("select orders",
                                                 attributes={"db.tables": ["orders", "users"]}
                                                 ) as child:
                child.set_status(Status(StatusCode.ERROR, "timeout"))
            wait_for(lambda: len(q.rows) >= 2, what="both spans")
        provider.shutdown()
    rows = {r["name"]: r for r in q.rows}
    assert len(q.rows) == 2
    p, c = rows["GET /orders/{id}"], rows["select orders"]
    pctx, cctx = parent.get_span_context(), child.get_span_context()
    assert p["trace_id"] == c["trace_id"] == format(pctx.trace_id, "032x")
    assert p["span_id"] == format(pctx.span_id, "016x")
    assert c["span_id"] == format(cctx.span_id, "016x")
    assert c["parent_id"] == p["span_id"]
    assert p.get("parent_id") is None
    assert (p["kind"], c["kind"]) == ("SERVER", "INTERNAL")
    assert (p["status"], c["status"]) == ("UNSET", "ERROR")
    assert p["attributes"] == {"http.method": "GET", "http.status_code": 200}
    assert c["attributes"] == {"db.tables": ["orders", "users"]}
    assert p["service"] == c["service"] == "checkout-api"
    assert p["duration_ms"] >= c["duration_ms"] >= 0
    assert processor.statistics().built == 2


def test_missing_sdk_gives_one_import_error_naming_the_extra() -> None:
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "try:\n    import mantis_py.integrations.otel\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'mantis_py[otel]'" in out.stdout
    assert "opentelemetry-sdk" in out.stdout
