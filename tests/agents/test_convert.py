"""mantis_py/agents/convert.py: host values -> JSON types, masking."""

from __future__ import annotations

import datetime
import decimal
import enum
import uuid
from dataclasses import dataclass

import pytest

from mantis_py.agents.convert import MASKED, Mask, Unconvertible, convert


class Color(enum.Enum):
    RED = "red"


@dataclass
class Point:
    x: int
    y: int


def test_values_with_a_json_form_are_converted() -> None:
    u = uuid.UUID(int=1)
    ev = {
        "t": (1, 2),
        "s": frozenset({"b", "a"}),
        "mixed": {1, "a"},
        "b": bytearray(b"hi"),
        "inf": float("-inf"),
        "d": datetime.date(2024, 1, 2),
        "dec": decimal.Decimal("1.5"),
        "u": u,
        "e": Color.RED,
        "p": Point(1, 2),
        None: 1,
        True: 2,
        1.5: 3,
    }
    out = convert(ev)
    assert out["t"] == [1, 2]
    assert out["s"] == ["a", "b"]
    assert sorted(map(str, out["mixed"])) == ["1", "a"]
    assert out["b"] == "hi"
    assert out["inf"] is None
    assert out["d"] == "2024-01-02"
    assert out["dec"] == 1.5
    assert out["u"] == str(u)
    assert out["e"] == "red"
    assert out["p"] == {"x": 1, "y": 2}
    assert out["null"] == 1
    assert out["true"] == 2
    assert out["1.5"] == 3


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"o": object()}, "unserializable"),
        ({(1,): 1}, "bad_key"),
        ([1], "not_an_object"),
    ],
)
def test_values_without_a_json_form_raise_with_a_reason(event: object, reason: str) -> None:
    with pytest.raises(Unconvertible) as info:
        convert(event)
    assert info.value.reason == reason


def test_cycles_and_depth_are_detected() -> None:
    a: list[object] = []
    a.append(a)
    with pytest.raises(Unconvertible, match="cycle"):
        convert({"a": a})
    deep: dict[str, object] = {}
    cur = deep
    for _ in range(100):
        cur["x"] = {}
        cur = cur["x"]  # type: ignore[assignment]
    with pytest.raises(Unconvertible, match="too_deep"):
        convert(deep, max_depth=64)


def test_shared_objects_are_not_cycles() -> None:
    shared = {"v": 1}
    assert convert({"a": shared, "b": [shared, shared]}) == {
        "a": {"v": 1},
        "b": [{"v": 1}, {"v": 1}],
    }


def test_masks_by_name_at_any_depth_and_by_path_from_the_root() -> None:
    m = Mask(("password", "user.card"))
    ev = {"PassWord": 1, "x": [{"password": 2}], "user": [{"card": 3, "x": 4}], "card": 5}
    assert convert(ev, m) == {
        "PassWord": MASKED,
        "x": [{"password": MASKED}],
        "user": [{"card": MASKED, "x": 4}],
        "card": 5,
    }
    assert convert(ev) is not ev


def test_masks_flat_dotted_keys_like_mql_names() -> None:
    m = Mask(("password", "user.card"))
    ev = {"user.card": 1, "user.Password": 2, "user": {"card.x": 3}, "a.b": {"card": 4}}
    assert convert(ev, m) == {
        "user.card": MASKED,
        "user.Password": MASKED,
        "user": {"card.x": 3},
        "a.b": {"card": 4},
    }
    assert m.may_apply(b'{"user.card":1}')


def test_case_sensitive_masks_when_configured() -> None:
    m = Mask(("password",), ignore_case=False)
    assert convert({"Password": 1, "password": 2}, m) == {"Password": 1, "password": MASKED}
    assert not m.may_apply(b'{"Password":1}')
    assert m.may_apply(b'{"password":1}')


def test_the_input_is_never_mutated() -> None:
    ev = {"password": "p", "n": {"password": "q"}}
    convert(ev, Mask(("password",)))
    assert ev == {"password": "p", "n": {"password": "q"}}
