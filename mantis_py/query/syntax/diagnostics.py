"""Building MQL error objects: positions, snippets, suggestions (docs/mql.md#errors).

Everything here is pure. The parser and the analyzer locate a problem as a code-point offset into
the query text plus a length, and :func:`query_error` turns that into the right
:class:`~mantis_py.errors.QueryError` subclass with ``line``, ``column`` and ``snippet`` filled in.

- Lines break at LF, CR LF and a lone CR; lines and columns count from 1, in code points; a tab is
  one column (and is shown as a space in the snippet).
- A source line longer than 100 code points is shown as a 100-code-point window that contains the
  column, with ``…`` added at each cut end; the carets are shifted to match.
- An error "at the end of the query" is an offset just after the last character, length 0: the
  snippet shows that last line and one caret after it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from mantis_py.errors import QueryError, error_class_for
from mantis_py.query.syntax.vocabulary import SYNONYMS

__all__ = [
    "SNIPPET_WIDTH",
    "SYNONYMS",
    "describe_char",
    "describe_token",
    "line_column",
    "osa_distance",
    "query_error",
    "snippet",
    "suggest",
]

SNIPPET_WIDTH = 100
"""Longest source line shown whole in a snippet (code points)."""

ELLIPSIS = "…"

_C0_NAMES = (
    "NULL", "START OF HEADING", "START OF TEXT", "END OF TEXT", "END OF TRANSMISSION", "ENQUIRY",
    "ACKNOWLEDGE", "BELL", "BACKSPACE", "CHARACTER TABULATION", "LINE FEED", "LINE TABULATION",
    "FORM FEED", "CARRIAGE RETURN", "SHIFT OUT", "SHIFT IN", "DATA LINK ESCAPE",
    "DEVICE CONTROL ONE", "DEVICE CONTROL TWO", "DEVICE CONTROL THREE", "DEVICE CONTROL FOUR",
    "NEGATIVE ACKNOWLEDGE", "SYNCHRONOUS IDLE", "END OF TRANSMISSION BLOCK", "CANCEL",
    "END OF MEDIUM", "SUBSTITUTE", "ESCAPE", "INFORMATION SEPARATOR FOUR",
    "INFORMATION SEPARATOR THREE", "INFORMATION SEPARATOR TWO", "INFORMATION SEPARATOR ONE",
)  # fmt: skip


# --------------------------------------------------------------------------- positions


def _locate(text: str, offset: int) -> tuple[int, int, int, str]:
    """(line, column, line start offset, line text) for a code-point offset into ``text``.

    Lines break at LF, CR LF and a lone CR. Found with C-speed string scans (``count``,
    ``rfind``, ``find``), so an error in a 16 KB query costs microseconds."""
    offset = max(0, min(offset, len(text)))
    head = text[:offset]
    # line breaks that end before `offset` (a CR LF pair counts once)
    breaks = head.count("\n") + head.count("\r") - head.count("\r\n")
    start = max(head.rfind("\n"), head.rfind("\r")) + 1
    if head.endswith("\r") and text.startswith("\n", offset):
        # `offset` is on the LF of a CR LF pair: it belongs to the line that pair ends
        breaks -= 1
        start = max(text.rfind("\n", 0, offset - 1), text.rfind("\r", 0, offset - 1)) + 1
    # the line's text stops at its line break
    lf, cr = text.find("\n", start), text.find("\r", start)
    stop = min(lf, cr) if lf >= 0 and cr >= 0 else max(lf, cr)
    line = text[start:stop] if stop >= 0 else text[start:]
    # an offset inside a CR LF pair counts as the end of its line
    column = min(offset - start, len(line)) + 1
    return breaks + 1, column, start, line


def line_column(text: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) of a code-point offset into ``text`` (docs/mql.md#text-and-tokens)."""
    line, column, _, _ = _locate(text, offset)
    return line, column


def snippet(text: str, offset: int, length: int) -> str:
    """The snippet of docs/mql.md#errors: the source line, a line break, then the caret line."""
    _, column, _, line = _locate(text, offset)
    line = line.replace("\t", " ")
    col0 = column - 1
    carets = max(1, min(length, len(line) - col0))
    if len(line) <= SNIPPET_WIDTH:
        return f"{line}\n{' ' * col0}{'^' * carets}"
    # a window of SNIPPET_WIDTH code points containing the column; show the underline whole when
    # it fits, otherwise keep some context before the column
    if col0 + carets <= SNIPPET_WIDTH:
        w0 = 0
    else:
        w0 = max(0, min(col0 - SNIPPET_WIDTH // 4, len(line) - SNIPPET_WIDTH))
        if col0 >= w0 + SNIPPET_WIDTH:  # the end-of-line caret: keep it just after the window
            w0 = len(line) - SNIPPET_WIDTH
    w1 = w0 + SNIPPET_WIDTH
    shown = line[w0:w1]
    prefix = ELLIPSIS if w0 > 0 else ""
    suffix = ELLIPSIS if w1 < len(line) else ""
    rel = col0 - w0 + len(prefix)
    carets = max(1, min(carets, w1 - col0))
    return f"{prefix}{shown}{suffix}\n{' ' * rel}{'^' * carets}"


def query_error(
    code: str,
    message: str,
    text: str,
    start: int,
    length: int,
    *,
    expected: Iterable[str] = (),
    suggestion: str | None = None,
    hint: str | None = None,
) -> QueryError:
    """A QueryError of the right kind for ``code``, located at ``text[start:start + length]``.

    ``start`` and ``length`` are in code points; ``start == len(text)`` (or just after the last
    non-blank character) with ``length == 0`` is the end of the query. The error is returned, not
    raised.
    """
    line, column = line_column(text, start)
    cls = error_class_for(code)
    return cls(
        code=code,
        message=message,
        line=line,
        column=column,
        length=max(0, length),
        snippet=snippet(text, start, length),
        expected=list(expected),
        suggestion=suggestion,
        hint=hint,
    )


# --------------------------------------------------------------------------- words


def describe_token(s: str) -> str:
    """``s`` shortened to at most 20 code points, ending in ``…`` when it was cut (docs/mql.md#errors)."""
    return s if len(s) <= 20 else s[:19] + ELLIPSIS


def describe_char(c: str) -> str:
    """``U+00A0 (NO-BREAK SPACE)``: a character named for an E112 message."""
    cp = ord(c)
    if cp < 0x20:
        name = _C0_NAMES[cp]
    elif cp == 0x7F:
        name = "DELETE"
    else:
        name = unicodedata.name(c, "")
    return f"U+{cp:04X} ({name})" if name else f"U+{cp:04X}"


def osa_distance(a: str, b: str, limit: int | None = None) -> int:
    """Optimal-string-alignment distance: Levenshtein plus the swap of two adjacent characters.

    With ``limit``, any result above it may be returned as ``limit + 1`` (cheap early exit).
    """
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if limit is not None and abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        ai = a[i - 1]
        for j in range(1, lb + 1):
            cost = 0 if ai == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ai == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if limit is not None and min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[lb]


def suggest(word: str, candidates: Sequence[str]) -> str | None:
    """The nearest candidate to ``word`` by docs/mql.md#errors, or None.

    Case-insensitive optimal-string-alignment distance; a candidate qualifies at distance ≤ 1 for
    a word of up to 4 characters and ≤ 2 for longer words. A multi-word candidate (``GROUP BY``)
    is compared with and without its spaces. Ties go to the earliest candidate, so pass them in
    clause order or function-table order. The candidate is returned as given.

    The synonym table (``avg`` → ``average``, ``p999`` → ``percentile(x, 99.9)`` ...) applies,
    first, when the function it names is among the candidates.
    """
    w = word.lower()
    lowered = [c.lower() for c in candidates]
    syn = SYNONYMS.get(w)
    if syn is not None:
        target = syn.split("(", 1)[0]
        if target in lowered:
            return syn
    limit = 1 if len(word) <= 4 else 2
    best: str | None = None
    best_d = limit + 1
    for cand, low in zip(candidates, lowered, strict=True):
        d = osa_distance(w, low, limit)
        if " " in low:
            d = min(d, osa_distance(w, "".join(low.split()), limit))
        if d < best_d:
            best, best_d = cand, d
    return best
