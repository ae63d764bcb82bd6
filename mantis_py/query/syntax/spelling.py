"""Spellings that need no lexer: quoted strings and the bracketed form of a property path.

``format.py`` builds canonical text on top of these (it asks the lexer whether a name may be
written bare); the lexer uses :func:`bracketed_path` for its E117 suggestion, which is why this
small module stands apart: the lexer must not import ``format.py``, which imports the lexer.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ast import Segment, Star

__all__ = ["bracketed_path", "format_string"]


def format_string(s: str) -> str:
    """``'…'``, or ``"…"`` when the content contains ``'``."""
    return f'"{s}"' if "'" in s else f"'{s}'"


def bracketed_path(segments: Sequence[Segment]) -> str:
    """``e['a'][0][*]``: every segment in brackets, which reads back as the same path always."""
    parts = ["e"]
    for s in segments:
        if isinstance(s, Star):
            parts.append("[*]")
        elif isinstance(s, str):
            parts.append(f"[{format_string(s)}]")
        else:
            parts.append(f"[{s}]")
    return "".join(parts)
