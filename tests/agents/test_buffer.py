"""mantis_py/agents/buffer.py: bounded, never blocking, drops counted."""

from __future__ import annotations

import threading

from mantis_py.agents.buffer import Ingress, Pending


def test_ingress_drops_new_items_when_full() -> None:
    q = Ingress(3)
    assert [q.put_nowait(0.0, i) for i in range(5)] == [True, True, True, False, False]
    assert q.dropped == 2
    assert [e for _, e in q.take(10)] == [0, 1, 2]
    assert q.enqueued == 3


def test_ingress_counts_exactly_under_concurrent_publishers() -> None:
    q = Ingress(1000)

    def pub() -> None:
        for i in range(2000):
            q.put_nowait(0.0, i)

    threads = [threading.Thread(target=pub) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert q.enqueued + q.dropped == 8000
    assert q.enqueued <= 1000 + 4


def test_pending_respects_count_and_bytes() -> None:
    p = Pending(max_records=3, max_bytes=10)
    assert p.add({"a": 1}, 4, 0.0)
    assert p.add({"a": 2}, 4, 0.0)
    assert not p.add({"a": 3}, 4, 0.0)  # bytes
    assert p.add({"a": 4}, 2, 0.0)
    assert not p.add({"a": 5}, 1, 0.0)  # count
    assert p.take(5) == [{"a": 1}]
    assert p.nbytes == 6
    assert p.clear() == 2
