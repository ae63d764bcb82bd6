"""MQL value semantics (MQL.md §3.3–§3.5, §3.11): every example table, plus properties."""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.query.semantics.values import (
    canonical_text,
    clean,
    contains,
    equals,
    greater,
    greater_eq,
    group_key,
    is_number,
    less,
    less_eq,
    negate_operand,
    prefix_items,
    resolve,
    resolve_star,
    sort_key,
    string_form,
)
from mantis_py.query.syntax.ast import STAR

NAN = float("nan")
INF = float("inf")

# --------------------------------------------------------------------------- §3.3.2 paths

E = {"a": {"b": [10, {"c": 2}]}, "nf.app": "p", "s": "xyz", "m": {"0": "zero"}}


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        (["nf.app"], "p"),
        (["a.b"], None),
        (["a", "b", 0], 10),
        (["a", "b", -1, "c"], 2),
        (["a", "b", 2], None),
        (["a", "b", "0"], None),
        (["m", 0], None),
        (["m", "0"], "zero"),
        (["s", 0], None),
        (["a", "b", -3], None),
        (["a", "b", -2], 10),
        ([], E),
        (["nope", "x"], None),
    ],
)
def test_resolve_table(segments: list[Any], expected: Any) -> None:
    assert resolve(E, segments) == expected


@pytest.mark.parametrize("event", [None, 1, "s", [1, 2], True, 1.5])
def test_resolve_on_non_objects(event: Any) -> None:
    assert resolve(event, ["a"]) is None
    assert resolve_star(event, ["a", STAR]) == []


def test_resolve_star_examples() -> None:
    ev = {"items": [{"sku": "A"}, {"qty": 2}]}
    assert resolve_star(ev, ["items", STAR, "sku"]) == ["A", None]
    assert resolve_star(ev, ["items", STAR, STAR]) == ["A", 2]
    assert resolve_star(ev, ["none", STAR]) == []
    assert resolve_star({"o": {"x": 1, "y": [2, 3]}}, ["o", STAR]) == [1, [2, 3]]
    assert resolve_star({"l": [[1, 2], [3], 4, None]}, ["l", STAR, STAR]) == [1, 2, 3]
    assert resolve_star({"l": [[1, 2], [3]]}, ["l", STAR, -1]) == [2, 3]
    assert resolve_star({"l": [1, "s"]}, ["l", STAR, 0]) == [None, None]


def test_prefix_items() -> None:
    ev = {"nf.app": 1, "x": 2, "nf.zone": None, "NF.y": 3}
    assert prefix_items(ev, "nf.") == [("nf.app", 1), ("nf.zone", None)]
    assert prefix_items(ev, "") == list(ev.items())
    assert prefix_items([1], "a") == []


# --------------------------------------------------------------------------- §3.4 string form


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"),
        ("", ""),
        (200, "200"),
        (-5, "-5"),
        (10**20, "100000000000000000000"),
        (200.0, "200"),
        (-0.0, "0"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (1e-07, "1e-07"),
        (2.0**53, "9007199254740992.0"),
        (2.0**53 - 1, "9007199254740991"),
        (True, "true"),
        (False, "false"),
        ({"b": 1, "a": [True]}, '{"a":[true],"b":1}'),
        ([1, "é", None, 2.0], '[1,"é",null,2.0]'),
        (None, None),
        (NAN, None),
        (INF, None),
    ],
)
def test_string_form_table(value: Any, expected: str | None) -> None:
    assert string_form(value) == expected


def test_string_form_huge_and_deep() -> None:
    assert string_form(10**5000) == "1" + "0" * 5000
    assert string_form([10**5000]) == "[1" + "0" * 5000 + "]"
    assert string_form({"a": [NAN, INF]}) == '{"a":[null,null]}'
    deep: Any = []
    cur = deep
    for _ in range(5000):
        nxt: list[Any] = []
        cur.append(nxt)
        cur = nxt
    assert string_form(deep) == "[" * 5001 + "]" * 5001


# --------------------------------------------------------------------------- §3.5 conditions

# (operator, left, right, expected) from the §3.5 "Examples" table, with events resolved.
MISSING = None
EXAMPLES = [
    ("==", 1.0, 1, True),
    ("==", 1, "1", False),
    ("==", 1, True, False),
    ("==", MISSING, None, True),
    ("==", MISSING, MISSING, True),
    ("==", [1, 2], [1.0, 2], True),
    ("!=", MISSING, 1, True),
    ("<", MISSING, 5, False),
    ("not<", MISSING, 5, True),
    (">", "c", "b", True),
    (">", "5", 1, False),
    ("<", False, 1, False),
]


def _apply(op: str, a: Any, b: Any) -> bool:
    return {
        "==": equals,
        "!=": lambda x, y: not equals(x, y),
        "<": less,
        "not<": lambda x, y: not less(x, y),
        ">": greater,
    }[op](a, b)


@pytest.mark.parametrize(("op", "a", "b", "expected"), EXAMPLES)
def test_condition_examples(op: str, a: Any, b: Any, expected: bool) -> None:
    assert _apply(op, a, b) is expected


@pytest.mark.parametrize(
    ("condition", "event", "expected"),
    [
        ("a in ('x', 1)", {"a": 1.0}, True),  # numbers compare by value
        ("a in ('x', 1)", {"a": True}, False),  # a boolean is not the number 1
        ("a not in (1)", {}, True),  # missing is null, and null is not 1
        ("a in (1, null)", {}, True),
        ("a in (1, null)", {"a": None}, True),
        ("a in ('x', 'y')", {"a": "y"}, True),  # the all-strings fast path
        ("a in ('x', 'y')", {"a": 1}, False),
        ("a in ('x', null)", {}, True),
        ("a not in ('x', 'y')", {"a": ["x"]}, True),
        ("e['a'][*] in (2)", {"a": [1, 2.0]}, True),  # any element
        ("e['a'][*] in (3)", {"a": [1, 2.0]}, False),
    ],
)
def test_in_examples(condition: str, event: dict[str, Any], expected: bool) -> None:
    """IN through the compiler's generated code (``Gen.in_``) and through the interpreter."""
    from mantis_py.query import prepare
    from mantis_py.query.compile.interpret import Context, eval_condition

    p = prepare(f"select a from s where {condition}")
    assert p.compiled.where(event, {}, None) is expected, p.compiled.source
    assert p.analysis.query.where is not None
    assert eval_condition(p.analysis.query.where, Context(event)) is expected
    # the value-level rule the generated code implements
    items = [it.value for it in p.analysis.query.where.items]  # type: ignore[union-attr]
    if "[*]" not in condition:
        hit = any(equals(event.get("a"), v) for v in items)
        assert hit is (expected != ("not in" in condition))


def test_negated_operand_examples() -> None:
    # not a == true
    assert equals(negate_operand("yes"), True) is False
    assert equals(negate_operand(None), True) is True
    for v in (0, "", [], {}, 0.0, True):
        assert negate_operand(v) is False
    assert negate_operand(False) is True
    assert negate_operand(NAN) is True


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (None, None, True),
        (True, True, True),
        (True, False, False),
        (True, 1, False),
        (False, 0, False),
        (1, 1.0, True),
        (10**20, 1e20, True),
        (10**20 + 1, 1e20, False),
        (0, -0.0, True),
        ("a", "a", True),
        ("1", 1, False),
        ([1, [2, {"a": 1}]], [1.0, [2, {"a": 1.0}]], True),
        ([1, 2], [1, 2, 3], False),
        ([True], [1], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ({"a": None}, {"b": None}, False),
        ({}, [], False),
        (None, 0, False),
        (NAN, None, True),
        (None, INF, True),
        (NAN, 1, False),
    ],
)
def test_equality(a: Any, b: Any, expected: bool) -> None:
    assert equals(a, b) is expected
    assert equals(b, a) is expected
    assert (group_key(a) == group_key(b)) is expected


@pytest.mark.parametrize(
    ("a", "b", "lt", "le"),
    [
        (1, 2, True, True),
        (2, 2.0, False, True),
        (10**20, 1e20 * 2, True, True),
        ("a", "b", True, True),
        ("b", "b", False, True),
        ("Z", "a", True, True),
        ("é", "z", False, False),
        (None, 1, False, False),
        (1, None, False, False),
        (None, None, False, False),
        (True, 2, False, False),
        (False, True, False, False),
        ("1", 2, False, False),
        ([1], [2], False, False),
        ({}, {}, False, False),
        (NAN, 1, False, False),
        (-INF, 1, False, False),
    ],
)
def test_ordering(a: Any, b: Any, lt: bool, le: bool) -> None:
    assert less(a, b) is lt
    assert less_eq(a, b) is le
    assert greater(b, a) is lt
    assert greater_eq(b, a) is le


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("stderr", "err", True),
        (1200, "20", True),
        (1.5, ".5", True),
        (200.0, ".0", False),
        (True, "ru", True),
        ({"a": 1}, '"a":1', True),
        (None, "", False),
        ("abc", None, False),
        ("abc", 1, False),
        ("abc", "", True),
    ],
)
def test_contains(a: Any, b: Any, expected: bool) -> None:
    assert contains(a, b) is expected


def test_null_handling_summary() -> None:
    for right in (None, 1, "x", True, [1]):
        assert equals(None, right) is (right is None)
        assert (not equals(None, right)) is (right is not None)
        assert not less(None, right)
        assert not less_eq(None, right)
        assert not greater(None, right)
        assert not greater_eq(None, right)
        assert not contains(None, right)
    for left in (1, "x", True, [1], {}):
        assert not equals(left, None)
        assert not less(left, None)
        assert not contains(left, None)


def test_is_number() -> None:
    for v in (1, 1.5, 10**30, -0.0):
        assert is_number(v)
    for v in (True, False, None, "1", [1], {}, NAN, INF, -INF):
        assert not is_number(v)


# --------------------------------------------------------------------------- §3.11 order


def test_total_order() -> None:
    ordered = [None, False, True, -5, 1, 1.5, 10**20, "", "B", "a", "é", ["a"], [1], [], {"a": 1}, {}]
    shuffled = list(ordered)
    random.Random(3).shuffle(shuffled)
    assert sorted(shuffled, key=sort_key) == ordered
    assert sort_key(1) == sort_key(1.0)
    assert sort_key(NAN) == sort_key(None)
    # lists and objects by the code points of their string form
    assert sort_key([10]) < sort_key([9])
    assert sort_key({"a": 2}) < sort_key({"b": 1})
    # stable ties under sorting: 1 and 1.0 keep their order
    assert sorted([1.0, 1], key=sort_key) == [1.0, 1]
    assert [type(x) for x in sorted([1.0, 1], key=sort_key)] == [float, int]


def test_group_key_separations() -> None:
    assert group_key(True) != group_key(1)
    assert group_key(False) != group_key(0)
    assert group_key(1) == group_key(1.0) == group_key(True and 1)
    assert group_key(10**20) == group_key(1e20)
    assert hash(group_key(10**20)) == hash(group_key(1e20))
    assert group_key([True]) != group_key([1])
    assert group_key(["b", 1]) != group_key(["b", True])
    assert group_key({"a": [1, 2]}) == group_key({"a": [1.0, 2.0]})
    assert group_key("1") != group_key(1)
    assert group_key([]) != group_key({})
    assert group_key(None) == group_key(NAN)


def test_clean() -> None:
    v = {"a": [1, NAN, {"b": INF}], "c": "x"}
    assert clean(v) == {"a": [1, None, {"b": None}], "c": "x"}
    assert v["a"][1] is NAN  # not mutated
    same = {"a": [1, 2.5]}
    assert clean(same) is same
    assert clean(NAN) is None
    assert clean(1.5) == 1.5


# --------------------------------------------------------------------------- properties

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 1, 1.0, -0.0, 2, 2.0, 10**20, 1e20])
    | st.text(max_size=4)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=10,
)


def _reference_equals(a: Any, b: Any) -> bool:
    """Straightforward restatement of §3.5.2."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_reference_equals(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_reference_equals(a[k], b[k]) for k in a)
    return False


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
def test_equals_matches_reference_and_group_key(a: Any, b: Any) -> None:
    expected = _reference_equals(a, b)
    assert equals(a, b) is expected
    assert (group_key(a) == group_key(b)) is expected
    assert (canonical_text(a) == canonical_text(b)) is expected
    assert equals(a, a)
    if expected:
        assert hash(group_key(a)) == hash(group_key(b))
        assert sort_key(a) == sort_key(b) or not (is_number(a) or isinstance(a, str))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_string_form_of_containers_is_json_dumps(v: Any) -> None:
    s = string_form(v)
    if isinstance(v, (list, dict)):
        assert s == json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    elif v is None:
        assert s is None
    else:
        assert isinstance(s, str)


@settings(max_examples=60, deadline=None)
@given(st.lists(json_values, max_size=8))
def test_sort_key_is_a_total_order(vals: list[Any]) -> None:
    keys = [sort_key(v) for v in vals]
    ordered = sorted(keys)
    for x, y in itertools.pairwise(ordered):
        assert x <= y


NASTY: list[Any] = [
    None, True, False, 0, -0.0, NAN, INF, -INF, 10**5000, -(10**5000), "", "\ud800", "\x00",
    [], {}, [NAN], {"a": INF}, {"$int": "1"}, [[[[]]]], 1e308, 5e-324,
]


@pytest.mark.parametrize("a", NASTY, ids=range(len(NASTY)))
def test_never_raises(a: Any) -> None:
    for b in NASTY:
        equals(a, b)
        less(a, b)
        less_eq(a, b)
        greater(a, b)
        greater_eq(a, b)
        contains(a, b)
        contains(a, "x")
    string_form(a)
    group_key(a)
    sort_key(a)
    negate_operand(a)
    clean(a)
    resolve(a, ["a", 0, -1])
    resolve_star(a, [STAR, STAR, "x"])
    prefix_items(a, "")
    is_number(a)
    assert isinstance(hash(group_key(a)), int)
    assert math.isfinite(1.0)


def _nest(depth: int, leaf: Any) -> Any:
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


@pytest.mark.parametrize("depth", [0, 1, 47, 48, 49, 50, 200, 3000])
def test_deep_structures(depth: int) -> None:
    a, b, c = _nest(depth, 1), _nest(depth, 1.0), _nest(depth, True)
    assert equals(a, b)
    assert not equals(a, c)
    assert group_key(a) == group_key(b)
    assert hash(group_key(a)) == hash(group_key(b))
    assert group_key(a) != group_key(c)
    assert group_key(a) != group_key(_nest(depth + 1, 1))
    assert sort_key(a) == sort_key(_nest(depth, 1))
    assert string_form(clean(_nest(depth, NAN))) == string_form(_nest(depth, None))
