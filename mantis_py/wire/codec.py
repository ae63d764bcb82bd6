"""Encode and decode mantis.v1 frames: the only place that knows JSON (docs/protocol.md §Framing).

Theory of operation: a message is a frozen dataclass whose first field is its ``type``, so
``orjson.dumps(msg)`` is the whole encoder on the fast path. ``decode`` parses with orjson,
looks the ``type`` up in :data:`~mantis_py.wire.messages.MESSAGE_TYPES`, checks every member with
the class's ``FIELDS`` checkers and builds the dataclass. Every failure of the peer's frame
becomes :class:`~mantis_py.errors.RemoteProtocolError` with the close code to use:

- 1007: the frame is not UTF-8 JSON;
- 4000: valid JSON but not a valid message (not an object, unknown type, missing or ill-typed member,
  or a type not allowed in this direction).

orjson handles integers only within 64 bits. Encoding falls back to the standard ``json`` module
(after converting to plain JSON types) when orjson refuses a value; decoding falls back to it when
the frame holds a run of 19+ digits, which orjson would silently turn into a float.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from dataclasses import MISSING as _MISSING
from dataclasses import fields, is_dataclass
from typing import Any, cast

import orjson

from ..errors import LocalProtocolError, RemoteProtocolError
from .messages import MESSAGE_TYPES, Message

__all__ = [
    "CLOSE_BAD_DATA",
    "CLOSE_PROTOCOL",
    "VALUE_OPTS",
    "Fragment",
    "decode",
    "decode_value",
    "dumps",
    "encode",
    "encode_value",
    "encode_value_slow",
    "to_plain",
]

CLOSE_BAD_DATA = 1007
CLOSE_PROTOCOL = 4000

# Digits map to b"0" and every other byte to b" ": a run of 19 zeros in the translated frame is a
# run of 19+ digits in the original. bytes.translate + bytes.find run at memory speed, about ten
# times faster than a regex search over digit-heavy frames (the gateway's ingest path).
_DIGIT_MAP = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_DIGIT_RUN = b"0" * 19


def _may_hold_big_int(data: bytes | str) -> bool:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return data.translate(_DIGIT_MAP).find(_DIGIT_RUN) >= 0


def encode(msg: Message) -> bytes:
    """Serialize one message to the UTF-8 JSON bytes of a text frame.

    Send the result as a *text* frame (``ws.send(data, text=True)`` in websockets).

    Raises:
        LocalProtocolError: ``msg`` holds a value with no JSON form (our bug, not the peer's).
    """
    try:
        return orjson.dumps(msg)
    except TypeError:
        pass
    try:
        return json.dumps(to_plain(msg), separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode {type(msg).__name__}: {exc}") from exc


def to_plain(value: Any) -> Any:
    """Convert a message or payload to plain JSON types for the standard ``json`` fallback.

    Dataclasses become dicts, tuples lists, dict keys strings and non-finite floats ``None``
    (what orjson does with NaN and infinities).
    """
    if isinstance(value, orjson.Fragment):
        return to_plain(_loads(value.contents))
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads(data: bytes | str) -> Any:
    if not _may_hold_big_int(data):
        return orjson.loads(data)
    return json.loads(data, parse_constant=_reject_constant)


def decode(data: bytes | str, allowed: Collection[str] | None = None) -> Message:
    """Parse one frame into its message.

    Args:
        data: the frame payload (text frames may be given as ``str`` or UTF-8 ``bytes``).
        allowed: if given, the message types accepted in this direction.

    Returns:
        The message dataclass.

    Raises:
        RemoteProtocolError: malformed frame; ``close_code`` is 1007 (not JSON) or 4000.
    """
    try:
        obj = _loads(data)
    except (
        ValueError,
        UnicodeDecodeError,
        RecursionError,
    ) as exc:  # JSONDecodeError is a ValueError
        raise RemoteProtocolError(f"frame is not JSON: {exc}", close_code=CLOSE_BAD_DATA) from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError("frame is not a JSON object", close_code=CLOSE_PROTOCOL)
    kind = obj.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {kind!r}", close_code=CLOSE_PROTOCOL)
    if allowed is not None and kind not in allowed:
        raise RemoteProtocolError(f"message {kind!r} not allowed here", close_code=CLOSE_PROTOCOL)
    kwargs: dict[str, Any] = {}
    defaults = cls.__dataclass_fields__
    for name, check in cls.FIELDS.items():
        if name not in obj:
            f = defaults[name]
            if f.default is f.default_factory is _MISSING:  # required member
                raise RemoteProtocolError(
                    f"{kind}: missing member {name!r}", close_code=CLOSE_PROTOCOL
                )
            continue
        value = obj[name]
        if not check(value):
            raise RemoteProtocolError(
                f"{kind}: bad value for {name!r}: {value!r:.80}", close_code=CLOSE_PROTOCOL
            )
        kwargs[name] = value
    return cast(Message, cls(**kwargs))


# ---------------------------------------------------------------- payload helpers for the agent
# The agent serializes host events and pre-encodes records on its hot path; these helpers keep
# orjson behind this module (docs/architecture.md import rules).

_VALUE_OPTS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


VALUE_OPTS = _VALUE_OPTS
Fragment = orjson.Fragment
"""Already-serialized JSON embedded as is when a message is encoded (``Fragment(b'{...}')``)."""
dumps = orjson.dumps
"""The raw serializer for the agent's hot loop: ``dumps(value, None, VALUE_OPTS)`` (positional
arguments are the fastest call form; this module stays the only one importing orjson)."""


def encode_value(value: Any) -> bytes:
    """Serialize a JSON-typed value (an event, a record) to UTF-8 JSON bytes.

    ``datetime`` and dataclass values are *not* converted (they raise ``TypeError``) so that the
    agent converts them itself, the same way for matching and for shipping.

    Raises:
        TypeError: ``value`` holds something with no direct JSON form (bytes, sets, non-string
            keys, objects, cycles) or an integer beyond 64 bits; callers convert and retry with
            :func:`encode_value_slow`.
    """
    return orjson.dumps(value, None, _VALUE_OPTS)


def encode_value_slow(value: Any) -> bytes:
    """Serialize plain JSON types, including integers beyond 64 bits (standard ``json``).

    Raises:
        TypeError, ValueError: the value is not plain JSON.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(to_plain(value), separators=(",", ":"), allow_nan=False).encode()


def decode_value(data: bytes | str) -> Any:
    """Parse JSON bytes produced by :func:`encode_value` (exact for big integers)."""
    return _loads(data)
