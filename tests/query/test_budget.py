"""The query complexity budget (E308, kind ``limit``): tokens, select items, regex literals and
GROUP BY keys. Over-budget queries are rejected early and cheaply, with a position and a hint."""

from __future__ import annotations

import pytest

from mantis_py.errors import QueryLimitError
from mantis_py.query.syntax.lexer import MAX_REGEXES, MAX_TOKENS
from mantis_py.query.syntax.parser import MAX_GROUP_KEYS, MAX_SELECT_ITEMS, parse


def _err(text: str) -> QueryLimitError:
    with pytest.raises(QueryLimitError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "what", "at"),
    [
        ("select * from x where " + " or ".join(f"a=={i}" for i in range(1500)), "tokens", None),
        ("select " + ",".join(f"a{i}" for i in range(MAX_SELECT_ITEMS + 5)) + " from x",
         "select items", f"a{MAX_SELECT_ITEMS}"),
        ("select * from x where " + " or ".join(f"a ==~ /x{i}/" for i in range(MAX_REGEXES + 1)),
         "regex literals", f"/x{MAX_REGEXES}/"),
        ("select count(*) from x window 1 group by "
         + ",".join(f"g{i}" for i in range(MAX_GROUP_KEYS + 1)), "GROUP BY keys",
         f"g{MAX_GROUP_KEYS}"),
    ],
)
def test_over_budget_is_e308_at_the_first_item_over(text: str, what: str, at: str | None) -> None:
    err = _err(text)
    d = err.to_dict()
    assert d["code"] == "E308"
    assert d["kind"] == "limit"
    assert what in d["message"]
    assert d["hint"]
    if at is not None:
        start = d["column"] - 1
        assert text[start : start + d["length"]] == at


def test_the_budget_leaves_room_for_the_largest_in_list() -> None:
    """A 1,000-item IN list (the E303 limit) is within the token budget."""
    q = parse("select * from x where a in (" + ",".join(str(i) for i in range(1000)) + ")")
    assert q.where is not None
    assert MAX_TOKENS >= 2100


def test_a_syntax_error_past_the_budget_is_still_e308() -> None:
    """Rejection over the budget does not parse what came before (it is the cheap path)."""
    text = "select a from x where " + "a " * (MAX_TOKENS + 10)
    assert _err(text).code == "E308"
