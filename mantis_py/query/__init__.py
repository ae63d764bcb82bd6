"""MQL, pure: text -> AST -> analysis -> compiled evaluators -> engines. See docs/architecture.md.

The package is split into phases that import one way only (tests/test_layering.py checks it):
``syntax`` -> ``semantics`` -> ``state`` -> ``compile`` -> ``run``. This module re-exports the
names the agent, the gateway and the commands use.
"""

from __future__ import annotations

from mantis_py.errors import QueryCompileError, QueryError, QueryLimitError, QuerySyntaxError

from .run.engine import Merger, PreparedQuery, SourceRunner, prepare
from .run.outputs import Complete, CompleteReason, Coverage, Notice, NoticeKind, Output, Rows
from .semantics.analysis import Analysis
from .semantics.analyze import analyze
from .state.projection import make_projector, project, union_fields
from .syntax.format import format_query
from .syntax.parser import parse

__all__ = [
    "Analysis",
    "Complete",
    "CompleteReason",
    "Coverage",
    "Merger",
    "Notice",
    "NoticeKind",
    "Output",
    "PreparedQuery",
    "QueryCompileError",
    "QueryError",
    "QueryLimitError",
    "QuerySyntaxError",
    "Rows",
    "SourceRunner",
    "analyze",
    "format_query",
    "make_projector",
    "parse",
    "prepare",
    "project",
    "union_fields",
]
