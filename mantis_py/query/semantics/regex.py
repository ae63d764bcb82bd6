"""Regex matching for ``==~`` and ``!~`` (docs/mql.md#conditions). The only module that imports ``re2``.

Patterns run in RE2 (linear time) with full-match semantics, dot-matches-newline and UTF-8 text,
exactly as written. Whatever RE2 cannot compile (backreferences, lookaround, possessive
quantifiers, repeat counts above 1,000, programs over the memory budget, syntax errors) raises
``ValueError(engine_message)`` from :func:`compile_regex`; the analyzer turns that into E216 when
the query is submitted, so agents only ever see patterns that compile.

Compiled patterns are cached by their text (bounded LRU).
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from mantis_py.query.semantics.values import string_form

__all__ = ["Regex", "compile_regex", "regex_matches"]

_MAX_MEM = 8 << 20  # RE2's default budget, stated explicitly so every node uses the same one
_ANCHOR_BOTH = re2._Anchor.ANCHOR_BOTH
_NULL_SPAN = re2._NULL_SPAN


def _options() -> Any:
    o = re2.Options()
    o.dot_nl = True
    o.log_errors = False
    o.never_capture = True
    o.max_mem = _MAX_MEM
    o.encoding = re2.Options.Encoding.UTF8
    return o


class Regex:
    """A compiled pattern. ``pattern`` is the text as written; ``match(s)`` is a full match."""

    __slots__ = ("_re", "pattern")

    def __init__(self, pattern: str, compiled: Any) -> None:
        self.pattern = pattern
        self._re = compiled._regexp  # the raw RE2 object: skips re2's span decoding

    def match(self, text: str) -> bool:
        """True when the pattern matches the whole of ``text``."""
        data = text.encode("utf-8", "surrogatepass")
        return self._re.Match(_ANCHOR_BOTH, data, 0, len(data))[0] != _NULL_SPAN  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> Regex:
    try:
        compiled = re2.compile(pattern, _options())
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        if isinstance(msg, bytes):
            msg = msg.decode("utf-8", "replace")
        raise ValueError(str(msg)) from None
    except Exception as exc:  # e.g. a pattern that is not valid UTF-8
        raise ValueError(str(exc) or type(exc).__name__) from None
    return Regex(pattern, compiled)


def compile_regex(pattern: str) -> Regex:
    """Compile ``pattern`` for full matching; raise ``ValueError(engine message)`` when RE2
    rejects it (E216), e.g. ``"invalid escape sequence: \\\\1"`` for ``(a)\\1``."""
    if not isinstance(pattern, str):
        raise ValueError("pattern must be a string")
    return _compile(pattern)


def regex_matches(compiled: Regex, v: object) -> bool:
    """``v ==~ /p/`` (§3.5.4): false for null, else a full match on the string form of ``v``."""
    if type(v) is str:
        s: str | None = v  # type: ignore[assignment]
    else:
        s = string_form(v)
        if s is None:
            return False
    try:
        return compiled.match(s)  # type: ignore[arg-type]
    except Exception:
        return False
