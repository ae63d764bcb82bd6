"""``diagnostics._locate`` (C-speed string scans) against a plain reference that walks every
character: same line, column, line start and line text for every offset, on seeded random
texts mixing LF, CR LF and lone CR."""

from __future__ import annotations

import random

from mantis_py.query.syntax.diagnostics import _locate


def _reference(text: str, offset: int) -> tuple[int, int, int, str]:
    offset = max(0, min(offset, len(text)))
    starts = [0]
    i = 0
    while i < len(text):
        if text[i] == "\n":
            starts.append(i + 1)
        elif text[i] == "\r":
            if text[i + 1 : i + 2] == "\n":
                i += 1
            starts.append(i + 1)
        i += 1
    line_no = max(k for k, s in enumerate(starts) if s <= offset)
    start = starts[line_no]
    end = starts[line_no + 1] if line_no + 1 < len(starts) else len(text)
    line = text[start:end].rstrip("\r\n")
    return line_no + 1, min(offset - start, len(line)) + 1, start, line


def test_locate_matches_reference_on_random_texts() -> None:
    rng = random.Random(9)
    for _ in range(3000):
        text = "".join(rng.choice("ab \t\r\n") for _ in range(rng.randrange(0, 14)))
        for offset in range(-1, len(text) + 2):
            assert _locate(text, offset) == _reference(text, offset), (text, offset)


def test_locate_on_a_16_kb_line() -> None:
    text = "select " + "a " * 8000 + "\r\nwhere"
    assert _locate(text, len(text)) == (2, 6, len(text) - 5, "where")
    assert _locate(text, 7) == (1, 8, 0, text[: text.index("\r")])
