"""Run-time caps (docs/mql.md#limits-and-notices): configuration constants the gateway sends to agents with a query.

A replay uses :data:`DEFAULT_CAPS`. Caps are never a reason to raise: exceeding one folds groups,
truncates values or rows (with a notice), or switches percentiles to histogram mode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DEFAULT_CAPS", "Caps"]


@dataclass(frozen=True, slots=True)
class Caps:
    """``GROUP_CAP``, ``VALUE_CAP``, ``PERCENTILE_EXACT_MAX`` and ``ROW_CAP`` (§5.5)."""

    group_cap: int = 10000
    value_cap: int = 10000
    percentile_exact_max: int = 10000
    row_cap: int = 10000

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if type(v) is not int or v < 1:
                raise ValueError(f"Caps.{f.name} must be an integer >= 1, got {v!r}")

    def to_json(self) -> dict[str, int]:
        """A JSON-able dict, e.g. ``{"group_cap": 10000, ...}``."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> Caps:
        """Inverse of :meth:`to_json`. Missing members take their defaults; unknown ones are
        ignored; bad values raise ``ValueError``."""
        if not isinstance(obj, dict):
            raise ValueError("caps must be a JSON object")
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in names})


DEFAULT_CAPS = Caps()
