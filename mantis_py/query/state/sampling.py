"""SAMPLE decisions (docs/mql.md#sample). Pure: the RNG is passed in.

- STICKY (§3.13.3): BLAKE2b-64 of the key values' string forms joined with U+001F, then U+001F and
  the salt; the bucket is ``h mod factor``. Every agent and a replay decide identically.
- RANDOM (§3.13.4): exactly one ``rng.randrange(factor)`` draw per call, kept when it is below
  ``threshold``, so a seeded replay is reproducible.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from mantis_py.query.semantics.values import string_form
from mantis_py.query.syntax.ast import Sample

__all__ = ["random_keep", "sticky_bucket", "sticky_data", "sticky_keep"]

_SEP = "\x1f"
_blake2b = hashlib.blake2b


def sticky_data(key_values: Sequence[object], salt: str) -> str | None:
    """The ``data`` string of §3.13.3, or None when every key value is null."""
    parts: list[str] = []
    any_value = False
    for v in key_values:
        s = string_form(v)
        if s is None:
            parts.append("")
        else:
            parts.append(s)
            any_value = True
    if not any_value:
        return None
    parts.append(salt)
    return _SEP.join(parts)


def sticky_bucket(key_values: Sequence[object], salt: str, factor: int) -> int | None:
    """The STICKY bucket ``h mod factor`` (§3.13.3), or None when every key value is null."""
    data = sticky_data(key_values, salt)
    if data is None:
        return None
    # surrogatepass: a lone surrogate (impossible in valid JSON text) must not raise.
    raw = data.encode("utf-8", "surrogatepass")
    h = int.from_bytes(_blake2b(raw, digest_size=8).digest(), "big")
    return h % factor


def sticky_keep(key_values: Sequence[object], sample: Sample) -> bool:
    """Whether STICKY sampling keeps an event whose ``keys`` resolved to ``key_values``."""
    if sample.threshold >= sample.factor:
        return True
    bucket = sticky_bucket(key_values, sample.salt, sample.factor)
    if bucket is None:
        return False
    return bucket < sample.threshold


def random_keep(rng: random.Random, sample: Sample) -> bool:
    """RANDOM sampling: one ``rng.randrange(factor)`` draw, kept when it is ``< threshold``.

    The draw is made even when ``threshold ≥ factor``, so the RNG stream does not depend on it.
    """
    return rng.randrange(sample.factor) < sample.threshold
