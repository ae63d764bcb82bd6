"""MQL: text -> AST -> analysis -> compiled evaluators -> engines (pure). See docs/architecture.md.

``parse``, ``format_query`` and ``analyze`` are loaded on first use, so that importing one engine
module never drags in (or breaks on) the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mantis_py.errors import QueryCompileError, QueryError, QueryLimitError, QuerySyntaxError

from .analysis import Analysis
from .engine import Complete, Merger, Notice, PreparedQuery, Rows, SourceRunner, prepare
from .projection import make_projector, project, union_fields

if TYPE_CHECKING:
    from .analyze import analyze as analyze
    from .format import format_query as format_query
    from .parser import parse as parse

__all__ = [
    "Analysis",
    "Complete",
    "Merger",
    "Notice",
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

_LAZY = {"parse": ".parser", "format_query": ".format", "analyze": ".analyze"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(_LAZY[name], __name__)
        value = getattr(mod, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
