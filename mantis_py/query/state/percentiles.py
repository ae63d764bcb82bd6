"""Percentile states (docs/mql.md#aggregate-queries). The only module that imports ``hdrhistogram``.

Theory of operation:
- A state holds the exact numbers while it has at most ``exact_max`` (``PERCENTILE_EXACT_MAX``)
  of them; the result is then the exact nearest-rank value, ints before equal floats.
- Beyond that it is in **histogram mode**: two HdrHistograms (1 .. 2**62, 3 significant digits),
  one for positive and one for negative numbers, in units of 10**-6, plus a zero counter. Inputs
  beyond 2**62 units are clamped and counted (``percentile-clamped``).
- Exact mode or histogram mode, and the histogram counts, are deterministic functions of the
  multiset of numbers (whatever the split and merge order), so merged results equal single-node
  results exactly (§4.4). The result walks the buckets itself; ``get_value_at_percentile`` is not
  used (it rounds ranks differently).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["HIST_MAX", "PercentileState", "nearest_rank", "pct_decode", "pct_encode",
           "pct_merge", "pct_record", "pct_result"]

HIST_MAX = 1 << 62
_HIST_MAX_F = float(HIST_MAX)
_SIG = 3


def _new_hist() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX, _SIG)


# The bucket layout of _new_hist(), for recording batches without a Python call per value
# (``record_value`` costs ~2 µs). Checked against ``record_value`` in the tests.
_PROBE = _new_hist()
_FAST = _PROBE.unit_magnitude == 0
_MASK = _PROBE.sub_bucket_mask
_MASK_BITS = _MASK.bit_length()
_HALF_MAG = _PROBE.sub_bucket_half_count_magnitude
_HALF = _PROBE.sub_bucket_half_count
del _PROBE
_PENDING_MAX = 4096


def _record_batch(h: HdrHistogram, units: list[int]) -> None:
    """``h.record_value(u)`` for every ``u`` in ``units`` (each in 1 .. HIST_MAX)."""
    if not units:
        return
    if not _FAST:  # pragma: no cover - only if hdrhistogram changes its layout
        for u in units:
            h.record_value(u)
        return
    counts = h.counts
    for u in units:
        b = (u | _MASK).bit_length() - _MASK_BITS
        counts[((b + 1) << _HALF_MAG) + (u >> b) - _HALF] += 1
    h.total_count += len(units)
    hi = max(units)
    lo = min(units)
    if hi > h.max_value:
        h.max_value = hi
    if lo < h.min_value:
        h.min_value = lo


class PercentileState:
    """``vals`` (a list) in exact mode, None in histogram mode; then ``pos``/``neg`` histograms,
    ``zeros``. ``n`` counts every number; ``clamped`` counts clamped histogram inputs."""

    __slots__ = ("clamped", "n", "neg", "neg_pending", "pos", "pos_pending", "vals", "zeros")

    def __init__(self) -> None:
        self.vals: list[int | float] | None = []
        self.pos: HdrHistogram | None = None
        self.neg: HdrHistogram | None = None
        self.pos_pending: list[int] = []  # units not yet recorded into ``pos``
        self.neg_pending: list[int] = []
        self.zeros = 0
        self.n = 0
        self.clamped = 0


def nearest_rank(q: Fraction, n: int) -> int:
    """``r = max(1, ceil(q·n/100))``, exactly, capped at ``n``."""
    r = -((-q.numerator * n) // (q.denominator * 100))
    return min(max(1, r), n)


def _record(st: PercentileState, v: int | float) -> None:
    """Record one number into the histograms (histogram mode)."""
    if type(v) is int:
        units = abs(v) * 1_000_000
    else:
        x = abs(v) * 1e6
        units = HIST_MAX + 1 if x > _HIST_MAX_F else round(x)
    if units == 0:
        st.zeros += 1
        return
    if units > HIST_MAX:
        units = HIST_MAX
        st.clamped += 1
    pending = st.pos_pending if v > 0 else st.neg_pending
    pending.append(units)
    if len(pending) >= _PENDING_MAX:
        _flush(st)


def _flush(st: PercentileState) -> None:
    """Record the pending units into the histograms."""
    if st.pos_pending:
        if st.pos is None:
            st.pos = _new_hist()
        _record_batch(st.pos, st.pos_pending)
        st.pos_pending = []
    if st.neg_pending:
        if st.neg is None:
            st.neg = _new_hist()
        _record_batch(st.neg, st.neg_pending)
        st.neg_pending = []


def _to_hist(st: PercentileState) -> None:
    vals = st.vals
    st.vals = None
    if vals:
        for v in vals:
            _record(st, v)


def pct_record(st: PercentileState, v: int | float, exact_max: int) -> None:
    """Add one number (the caller has checked it is a finite int or float)."""
    st.n += 1
    vals = st.vals
    if vals is not None:
        vals.append(v)
        if len(vals) > exact_max:
            _to_hist(st)
    else:
        _record(st, v)


def _add_hist(a: HdrHistogram | None, b: HdrHistogram | None) -> HdrHistogram | None:
    if b is None or b.get_total_count() == 0:
        return a
    if a is None:
        a = _new_hist()
    a.add(b)
    return a


def pct_merge(a: PercentileState, b: PercentileState, exact_max: int) -> PercentileState:
    """``a ⊕ b``: concatenate while the combined count is ≤ ``exact_max``, else histogram mode
    for both, counts added. Mutates and returns ``a``; ``b`` is left unchanged."""
    if b.n == 0:
        return a
    n = a.n + b.n
    if a.vals is not None and b.vals is not None and n <= exact_max:
        a.vals.extend(b.vals)
        a.n = n
        return a
    if a.vals is not None:
        _to_hist(a)
    if b.vals is not None:
        for v in b.vals:
            _record(a, v)
    else:
        _flush(b)
        _flush(a)
        a.pos = _add_hist(a.pos, b.pos)
        a.neg = _add_hist(a.neg, b.neg)
        a.zeros += b.zeros
        a.clamped += b.clamped
    a.n = n
    return a


def _exact_key(v: int | float) -> tuple[int | float, bool]:
    return (v, type(v) is float)


def _max_key(v: int | float) -> tuple[int | float, bool]:
    return (v, type(v) is int)


def _counts(h: HdrHistogram) -> Any:
    return memoryview(h.counts).cast("B").cast("Q")


def pct_result(st: PercentileState, q: Fraction) -> int | float | None:
    """The q-th percentile by nearest rank (§3.7.4), or None without numbers."""
    n = st.n
    if n == 0:
        return None
    r = nearest_rank(q, n)
    if st.vals is not None:
        vals = st.vals
        if r == 1:
            v = min(vals, key=_exact_key)
        elif r == n:
            v = max(vals, key=_max_key)
        else:
            s = sorted(vals)  # numbers compare exactly across int and float; no key: C speed
            j = r - 1
            v = s[j]
            if type(v) is float:
                # An equal int, if any, is the answer (§3.7.7): look through the run of equals.
                lo = hi = j
                while lo > 0 and s[lo - 1] == v:
                    lo -= 1
                while hi + 1 < len(s) and s[hi + 1] == v:
                    hi += 1
                v = next((x for x in s[lo : hi + 1] if type(x) is int), v)
        if type(v) is float and v == 0.0:
            return 0.0
        return v
    # Histogram walk: negatives from the largest magnitude down, zeros, positives ascending.
    _flush(st)
    seen = 0
    neg = st.neg
    if neg is not None and neg.get_total_count():
        c = _counts(neg)
        for i in range(len(c) - 1, -1, -1):
            k = c[i]
            if k:
                seen += k
                if seen >= r:
                    hv = neg.get_highest_equivalent_value(neg.get_value_from_index(i))
                    return -(hv / 1_000_000)  # type: ignore[no-any-return]
    seen += st.zeros
    if seen >= r:
        return 0.0
    pos = st.pos
    if pos is not None:
        c = _counts(pos)
        for i in range(len(c)):
            k = c[i]
            if k:
                seen += k
                if seen >= r:
                    hv = pos.get_highest_equivalent_value(pos.get_value_from_index(i))
                    return hv / 1_000_000  # type: ignore[no-any-return]
    return None  # unreachable when the counts are consistent


def pct_encode(st: PercentileState, enc_num: Any) -> Any:
    """JSON-able form. Exact mode: ``{"e": [numbers]}``; histogram mode: the histograms in their
    standard compressed encoding (base64 text), zeros, count and clamped count."""
    if st.vals is not None:
        return {"e": [enc_num(v) for v in st.vals]}
    _flush(st)
    return {
        "p": st.pos.encode().decode("ascii") if st.pos is not None else None,
        "m": st.neg.encode().decode("ascii") if st.neg is not None else None,
        "z": st.zeros,
        "n": st.n,
        "c": st.clamped,
    }


def _decode_hist(text: Any) -> HdrHistogram | None:
    if text is None:
        return None
    decoded = HdrHistogram.decode(text.encode("ascii") if isinstance(text, str) else text)
    h = _new_hist()
    h.add(decoded)
    return h


def pct_decode(obj: Any, dec_num: Any) -> PercentileState:
    """Inverse of :func:`pct_encode`."""
    st = PercentileState()
    if "e" in obj:
        st.vals = [dec_num(v) for v in obj["e"]]
        st.n = len(st.vals)
        return st
    st.vals = None
    st.pos = _decode_hist(obj.get("p"))
    st.neg = _decode_hist(obj.get("m"))
    st.zeros = int(obj.get("z", 0))
    st.n = int(obj["n"])
    st.clamped = int(obj.get("c", 0))
    return st

