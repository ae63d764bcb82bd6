"""SAMPLE (MQL.md §3.13): STICKY test vectors bit for bit, RANDOM draws."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from mantis_py.query.state.sampling import random_keep, sticky_bucket, sticky_data, sticky_keep
from mantis_py.query.syntax.ast import Sample

VECTORS: list[tuple[list[Any], str, str, str, int]] = [
    (["s-1001"], "0", "s-1001\x1f0", "71099819cd3dc263", 3763),
    (["s-1002"], "0", "s-1002\x1f0", "a9dc4da8746dcbc6", 2630),
    (["s-1003"], "0", "s-1003\x1f0", "98c71e3b04fdbe3a", 8730),
    (["s-1004"], "0", "s-1004\x1f0", "8b12a676c6f19c46", 9606),
    (["s-1001"], "v2", "s-1001\x1fv2", "7f7ffa1e7c973fe3", 1139),
    ([42], "0", "42\x1f0", "24d19eb850747f66", 5942),
    (["US", "tv"], "0", "US\x1ftv\x1f0", "37780c2ff73a135a", 9818),
    ([None, "tv"], "0", "\x1ftv\x1f0", "ea5381f4eadd5b16", 118),
    (["über"], "0", "über\x1f0", "7b0ed061bb277c8d", 7613),
]


@pytest.mark.parametrize(("values", "salt", "data", "h", "bucket"), VECTORS)
def test_sticky_vectors(values: list[Any], salt: str, data: str, h: str, bucket: int) -> None:
    assert sticky_data(values, salt) == data
    digest = hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest()
    assert digest.hex() == h
    assert sticky_bucket(values, salt, 10000) == bucket
    keep = Sample("STICKY", keys=tuple(f"k{i}" for i in range(len(values))), salt=salt,
                  threshold=bucket + 1)
    assert sticky_keep(values, keep)
    drop = Sample("STICKY", keys=keep.keys, salt=salt, threshold=bucket)
    assert not sticky_keep(values, drop)


def test_sticky_string_forms() -> None:
    assert sticky_bucket([42.0], "0", 10000) == sticky_bucket([42], "0", 10000)
    assert sticky_data([True, [1, {"b": 1, "a": 2}]], "0") == 'true\x1f[1,{"a":2,"b":1}]\x1f0'


def test_sticky_all_null() -> None:
    assert sticky_bucket([None, None], "0", 10000) is None
    assert sticky_bucket([float("nan")], "0", 10000) is None
    s = Sample("STICKY", keys=("a", "b"), threshold=100)
    assert not sticky_keep([None, None], s)
    assert sticky_keep([None, None], Sample("STICKY", keys=("a",), factor=10, threshold=10))
    assert sticky_keep(["x"], Sample("STICKY", keys=("a",), factor=10, threshold=50))


def test_random_one_draw_per_call() -> None:
    s = Sample("RANDOM", threshold=200)
    rng = random.Random(0)
    ref = random.Random(0)
    kept = 0
    for _ in range(20000):
        k = random_keep(rng, s)
        assert k == (ref.randrange(10000) < 200)
        kept += k
    assert 300 < kept < 500  # about 2%
    # threshold >= factor keeps everything, still drawing once
    rng2, ref2 = random.Random(5), random.Random(5)
    assert all(random_keep(rng2, Sample("RANDOM", factor=10, threshold=10)) for _ in range(50))
    for _ in range(50):
        ref2.randrange(10)
    assert rng2.random() == ref2.random()
