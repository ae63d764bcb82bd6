"""mantis_py/wire/codec.py: every message round-trips; every bad frame is a RemoteProtocolError."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.errors import LocalProtocolError, RemoteProtocolError
from mantis_py.wire import (
    MESSAGE_TYPES,
    Accepted,
    Cancel,
    Complete,
    Error,
    Events,
    Hello,
    Message,
    Meta,
    Partial,
    Ping,
    Pong,
    Query,
    Rows,
    Stats,
    SubError,
    Subscribe,
    Unsubscribe,
    Welcome,
    decode,
    encode,
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
texts = st.text(max_size=30)
ints = st.integers(min_value=0, max_value=2**62)
records = st.lists(
    st.fixed_dictionaries(
        {"subs": st.lists(texts, max_size=3), "t": ints, "s": ints, "e": json_objects}
    ),
    max_size=4,
)

EXAMPLES: dict[type[Any], st.SearchStrategy[Any]] = {
    Hello: st.builds(
        Hello,
        app=texts,
        instance=texts,
        streams=st.lists(texts, max_size=3).map(tuple),
        tags=st.dictionaries(texts, texts, max_size=3),
        zone=st.none() | texts,
        version=texts,
        pid=ints,
    ),
    Events: st.builds(Events, stream=texts, records=records),
    Partial: st.builds(Partial, sub=texts, part=json_objects),
    Stats: st.builds(Stats, streams=json_objects, subs=json_objects),
    SubError: st.builds(SubError, sub=texts, code=texts, message=texts),
    Pong: st.builds(Pong, nonce=texts),
    Welcome: st.builds(Welcome, session=texts, heartbeat_s=st.floats(0, 1e6)),
    Subscribe: st.builds(
        Subscribe, sub=texts, query=texts, stream=texts, start=st.floats(0, 2e9), caps=json_objects
    ),
    Unsubscribe: st.builds(Unsubscribe, sub=texts),
    Ping: st.builds(Ping, nonce=texts),
    Query: st.builds(Query, id=texts, query=texts),
    Cancel: st.builds(Cancel, id=texts),
    Accepted: st.builds(Accepted, id=texts, canonical=texts, agents=ints),
    Error: st.builds(Error, id=st.none() | texts, error=json_objects),
    Rows: st.builds(
        Rows,
        id=texts,
        window=st.none() | st.tuples(ints, ints),
        rows=st.lists(json_objects, max_size=3),
    ),
    Meta: st.builds(
        Meta,
        id=texts,
        dropped=st.dictionaries(texts, ints, max_size=3),
        coverage=st.fixed_dictionaries({"reporting": ints, "expected": ints}),
    ),
    Complete: st.builds(Complete, id=texts, reason=texts),
}


def test_every_message_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(MESSAGE_TYPES.values())


@settings(max_examples=300, deadline=None)
@given(st.one_of(*EXAMPLES.values()))
def test_encode_then_decode_is_the_identity(msg: Message) -> None:
    data = encode(msg)
    assert decode(data) == msg
    assert decode(data.decode()) == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_frame_decodes_or_raises_remote_protocol_error(data: bytes | str) -> None:
    try:
        decode(data)
    except RemoteProtocolError as exc:
        assert exc.close_code in (1007, 4000)  # noqa: PT017


@settings(max_examples=200, deadline=None)
@given(json_objects, st.sampled_from(sorted(MESSAGE_TYPES)))
def test_any_json_object_decodes_or_raises(obj: dict[str, Any], kind: str) -> None:
    import json

    obj["type"] = kind
    try:
        msg = decode(json.dumps(obj))
    except RemoteProtocolError as exc:
        assert exc.close_code == 4000  # noqa: PT017
    else:
        assert msg.type == kind


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{", 1007),
        (b"\xff\xfe", 1007),
        (b'{"type": "hello", "app": NaN, "instance": "i"}', 1007),
        (b"[1, 2]", 4000),
        (b'{"app": "x"}', 4000),
        (b'{"type": "nope"}', 4000),
        (b'{"type": "hello", "instance": "i"}', 4000),
        (b'{"type": "hello", "app": 3, "instance": "i"}', 4000),
        (b'{"type": "events", "stream": "s", "records": {"subs": ["a"]}}', 4000),
        (b'{"type": "rows", "id": "q", "window": [1], "rows": []}', 4000),
    ],
)
def test_malformed_frames_raise_with_close_code(frame: bytes, code: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(frame)
    assert info.value.close_code == code


def test_unknown_members_are_ignored() -> None:
    assert decode(b'{"type": "ping", "nonce": "n", "future": 1}') == Ping(nonce="n")


def test_type_not_allowed_in_this_direction_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        decode(encode(Ping(nonce="x")), allowed={"hello"})


def test_integers_beyond_64_bits_survive() -> None:
    msg = Partial(sub="s", part={"sum": 2**100, "neg": -(2**90)})
    assert decode(encode(msg)) == msg


def test_non_finite_floats_encode_as_null() -> None:
    msg = Partial(sub="s", part={"x": float("nan"), "y": float("inf"), "big": 2**70})
    assert decode(encode(msg)).part == {"x": None, "y": None, "big": 2**70}  # type: ignore[union-attr]


def test_unencodable_value_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Partial(sub="s", part={"x": object()}))
