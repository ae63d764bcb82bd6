"""The per-event recipe: from a host's event to a buffered, tagged record. Pure.

:meth:`Pipeline.run` takes a batch the runner drained from a stream's ingress queue and, for each
event, in this order:

1. CPU sampling: skipped with probability ``1 - sample_rate`` (lost: ``cpu_budget``);
2. serialize once (validates JSON types, measures the size, finds masked keys);
3. mask: a masked key anywhere in the event (or a value that is not plain JSON) sends it through
   :func:`~.convert.convert`, which returns a masked JSON-typed copy; queries, projection and the
   wire only ever see that copy (docs/operations.md);
4. size check against ``max_event_bytes`` (lost: ``too_large``);
5. SAMPLE + WHERE of every events-mode subscription (its id joins the record's ``subs`` tags),
   and the window partials of every partials-mode one (the event is folded);
6. project once to the union of every events-mode subscription's fields (the stream's plan) and
   serialize that;
7. buffer the record in the stream's pending queue (lost: ``queue_full``).

The most common plan, one events-mode query on the stream, takes the same recipe without the
per-event tag list and loops (every record shares one ``subs`` list, never mutated).

A subscription whose ``caps`` carry ``"unmasked": true`` (the gateway sends those for tokens that
may see masked fields, and only when the service allows it) sees the unmasked event instead; an
event holding a masked key while such subscriptions run takes :meth:`Pipeline.split_event`, which
never lets an unmasked byte into a record tagged with a masked subscription.

Nothing the engine or the host's data does raises out of the pipeline: failures are counted on
the stream (``lost``) or the subscription (``errors``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..wire.codec import VALUE_OPTS, Fragment, dumps, encode_value_slow
from .config import AgentConfig
from .convert import Mask, Unconvertible, convert
from .stream import Stream
from .subscriptions import Subscription

__all__ = ["NO_MASK", "Pipeline", "sub_failed"]

NO_MASK = Mask()
"""Nothing masked: converts the event of unmasked subscriptions to JSON types."""


def sub_failed(sub: Subscription, exc: Exception) -> None:
    """Count an exception that escaped ``sub``'s engine code (reported upstream as ``sub_error``)."""
    sub.raised += 1
    sub.last_message = f"{type(exc).__name__}: {exc}"[:500]


class Pipeline:
    """The recipe with what it needs besides the stream: settings, the mask and the sampler."""

    __slots__ = ("config", "mask", "rng")

    def __init__(self, config: AgentConfig, mask: Mask, rng: random.Random) -> None:
        self.config = config
        self.mask = mask
        self.rng = rng

    def run(self, st: Stream, batch: list[tuple[float, Any]], now: float, rate: float) -> None:
        """Run ``batch`` (``(t, event)`` pairs taken from ``st.ingress``) through the recipe at
        sample rate ``rate``; locals are hoisted because this is the hot loop."""
        cfg = self.config
        mask = self.mask
        pattern = mask.pattern
        max_event = cfg.max_event_bytes
        plan = st.plan
        event_subs = plan.event_subs
        partial_subs = plan.partial_subs
        one = event_subs[0] if len(event_subs) == 1 and not partial_subs else None
        one_tags = [one.id] if one is not None else []
        one_matches: Any = one.source.matches if one is not None else None
        project = plan.project
        split = plan.split and pattern is not None
        pending = st.pending
        records = pending.records
        sizes = pending.sizes
        max_records, max_pbytes = pending.max_records, pending.max_bytes
        rand = self.rng.random
        lose = st.lose
        opts = VALUE_OPTS
        for t, ev in batch:
            st.in_hand -= 1
            try:
                if rate < 1.0 and rand() >= rate:
                    lose("cpu_budget")
                    continue
                try:
                    data: Any = dumps(ev, None, opts)
                    masked = pattern is not None and pattern.search(data) is not None
                except TypeError:
                    data, masked = None, True
                if masked:
                    if split:  # unmasked subscriptions run: each kind sees its own copy
                        self.split_event(st, t, ev, data, now)
                        continue
                    ev = convert(ev, mask, cfg.max_depth)  # masked JSON-typed copy
                    data = encode_value_slow(ev)  # never reuse the unmasked bytes
                if len(data) > max_event:
                    lose("too_large")
                    continue
                if one is not None:  # one events-mode query: no tag list, no loops
                    try:
                        if not one_matches(ev, t):
                            st.unmatched += 1
                            continue
                    except Exception as exc:
                        sub_failed(one, exc)
                        st.unmatched += 1
                        continue
                    one.matched += 1
                    tags = one_tags
                else:
                    tags = _match(event_subs, ev, t)
                    if partial_subs:
                        _fold(partial_subs, ev, t)
                    if not tags:
                        if partial_subs:
                            st.folded += 1
                        else:
                            st.unmatched += 1
                        continue
                # The shipped object is serialized now (what was checked for masked keys is
                # exactly what leaves, whatever the host does later with nested objects); the
                # record around it is serialized with its whole batch, in one C call.
                if project is None:
                    eb = data
                else:
                    e = project(ev)
                    try:
                        eb = dumps(e, None, opts)
                    except TypeError:
                        eb = encode_value_slow(e)
                n = len(eb) + 64
                if len(records) >= max_records or pending.nbytes + n > max_pbytes:
                    lose("queue_full")
                    continue
                if not records:
                    # a batch is due batch_interval_s after its oldest event was *published*
                    pending.first_at = t if t < now else now
                records.append({"subs": tags, "t": int(t * 1000), "s": st.seq, "e": Fragment(eb)})
                sizes.append(n)
                pending.nbytes += n
                st.seq += 1
            except Unconvertible as u:
                lose(u.reason)
            except Exception:
                lose("agent_error")

    def split_event(self, st: Stream, t: float, ev: Any, data: bytes | None, now: float) -> None:
        """One event holding a masked key (or not plain JSON) while masked and unmasked
        subscriptions may both run on its stream (docs/operations.md, docs/agent.md §Masking).

        Masked subscriptions match, fold and project the masked copy; unmasked ones the original
        converted to JSON types. When both kinds keep it, the two projections are serialized and
        compared: equal bytes ship as one record tagged with both, otherwise as two records (the
        second glued to the first, same ``s``), so no byte of the masked subscriptions' record
        comes from the unmasked event. Raises :class:`Unconvertible` like the hot loop.
        """
        cfg = self.config
        plan = st.plan
        masked_subs, unmasked_subs = plan.masked_events, plan.unmasked_events
        masked_parts, unmasked_parts = plan.masked_partials, plan.unmasked_partials
        if data is None:  # not plain JSON: the unmasked copy is converted too
            uev: Any = convert(ev, NO_MASK, cfg.max_depth)
            data = encode_value_slow(uev)
        else:
            uev = ev
        size = len(data)
        mev: Any = None
        if masked_subs or masked_parts:
            mev = convert(ev, self.mask, cfg.max_depth)
            size = max(size, len(encode_value_slow(mev)))
        if size > cfg.max_event_bytes:
            st.lose("too_large")
            return
        mtags = _match(masked_subs, mev, t)
        utags = _match(unmasked_subs, uev, t)
        _fold(masked_parts, mev, t)
        _fold(unmasked_parts, uev, t)
        if not mtags and not utags:
            if plan.partial_subs:
                st.folded += 1
            else:
                st.unmatched += 1
            return
        project = plan.project
        mb = _project_bytes(project, mev) if mtags else b""
        ub = _project_bytes(project, uev) if utags else b""
        pending = st.pending
        ms = int(t * 1000)
        if not mtags or not utags or mb == ub:
            eb = mb if mtags else ub
            n = len(eb) + 64
            rec = {"subs": mtags + utags, "t": ms, "s": st.seq, "e": Fragment(eb)}
            ok = pending.add(rec, n, t if t < now else now)
        else:
            first = {"subs": mtags, "t": ms, "s": st.seq, "e": Fragment(mb)}
            second = {"subs": utags, "t": ms, "s": st.seq, "e": Fragment(ub)}
            ok = pending.add_pair(first, len(mb) + 64, second, len(ub) + 64, t if t < now else now)
        if not ok:
            st.lose("queue_full")
            return
        st.seq += 1


def _match(subs: tuple[Subscription, ...], ev: Any, t: float) -> list[str]:
    """Ids of the subscriptions in ``subs`` whose SAMPLE + WHERE keep ``ev``."""
    tags: list[str] = []
    for sub in subs:
        try:
            if sub.source.matches(ev, t):
                sub.matched += 1
                tags.append(sub.id)
        except Exception as exc:
            sub_failed(sub, exc)
    return tags


def _fold(subs: tuple[Subscription, ...], ev: Any, t: float) -> None:
    """Offer ``ev`` to the window partials of the partials-mode subscriptions in ``subs``."""
    for sub in subs:
        try:
            sub.source.offer(ev, t)
            sub.folded += 1
        except Exception as exc:
            sub_failed(sub, exc)


def _project_bytes(project: Callable[[Any], Any] | None, ev: Any) -> bytes:
    e = ev if project is None else project(ev)
    try:
        return dumps(e, None, VALUE_OPTS)  # type: ignore[no-any-return]
    except TypeError:
        return encode_value_slow(e)
