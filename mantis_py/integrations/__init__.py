"""Zero-code capture: a service's requests, log records and spans as queryable streams.

| module | adds | stream |
|---|---|---|
| :mod:`.asgi` | ``MantisASGIMiddleware(app, agent=agent)`` | ``requests`` |
| :mod:`.wsgi` | ``MantisWSGIMiddleware(app, agent=agent)`` | ``requests`` |
| :mod:`.logging` | ``MantisLogHandler(agent)`` | ``log`` |
| :mod:`.otel` | ``MantisSpanProcessor(agent)`` (needs ``mantis_py[otel]``) | ``spans`` |

Each asks ``agent.has_subscribers(stream)`` first and builds nothing while nobody listens, never
raises into its host, never reads a body, and masks captured header and query-string values the
agent masks. The modules are imported on their own (``from mantis_py.integrations.asgi import
MantisASGIMiddleware``) so a service loads only what it uses; see docs/integrations.md.
"""

from __future__ import annotations

from ._common import IntegrationStatistics as IntegrationStatistics

__all__ = ["IntegrationStatistics"]
