"""The analyzer's result: everything the compiler and the engines need to know about a query.

Produced by ``analyze.analyze()``; consumed by ``compiler.py``, ``engine.py``, ``replay.py`` and
the ``check`` command. See docs/architecture.md for the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from typing import Literal as TLiteral

from ..syntax.ast import Condition, Operand, OrderKey, Query
from .plan import plan_json

__all__ = ["Analysis", "Column"]


@dataclass(frozen=True, slots=True)
class Column:
    """One output column of an aggregate query (docs/mql.md#aggregate-queries).

    ``role`` is ``"aggregate"`` (``operand`` is an aggregate ``Call``), ``"first"`` (a property or
    ``tick()``: the first non-null value of the batch) or ``"literal"``. Hidden columns are the
    HAVING aggregates that the select list lacks; they never appear in output rows.
    """

    name: str
    operand: Operand
    role: TLiteral["aggregate", "first", "literal"]
    hidden: bool = False


@dataclass(frozen=True, slots=True)
class Analysis:
    """A checked query. See docs/architecture.md for each member.

    Details the table there leaves open:
    - ``columns``: visible columns in select order, then hidden HAVING aggregates (one per
      distinct canonical call). A HAVING call equal to a select-list aggregate reuses its column.
    - ``fields``/``field_paths``/``field_prefixes``: a path whose first segment is ``[*]``
      (``e[*]``) reads every top-level member, so it is shipped as the prefix selector
      ``e[^'']`` (prefix ``""``); a path starting with an index (``e[0]``) reads nothing from an
      object and ships nothing. In live mode a one-segment meta name (``_app`` ...) is listed as
      a field (and in ``field_paths``) but never subsumes ``e['_app'][...]`` paths, which read the
      event.
    - ``meta_fields``: in order of first reference (select list, WHERE, GROUP BY, hidden HAVING
      aggregates, plain ORDER BY keys, STICKY keys); ``()`` in replay.
    """

    query: Query
    canonical: str
    mode: TLiteral["live", "replay"]
    kind: TLiteral["plain", "aggregate"]
    columns: tuple[Column, ...]
    having: Condition | None
    order_by: tuple[OrderKey, ...]
    fields: tuple[str, ...]
    field_paths: tuple[tuple[str, ...], ...]
    field_prefixes: tuple[str, ...]
    star: bool
    meta_fields: tuple[str, ...]
    ships: TLiteral["partials", "events"]
    completes: bool

    def plan(self) -> dict[str, Any]:
        """The JSON object that ``mantis-py check`` prints (docs/mql.md#commands)."""
        return plan_json(self)
