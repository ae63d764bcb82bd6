"""Pure limits: token bucket, connection caps, outbound queue drop policies."""

from __future__ import annotations

from mantis_py.gateway.limits import ConnectionCaps, OutboundItem, OutboundQueue, TokenBucket


def rows(qid: str, n: int, size: int = 100) -> OutboundItem:
    return OutboundItem("rows", qid, {"n": n}, b"x" * size, n_rows=n)


def window(qid: str, k: int) -> OutboundItem:
    return OutboundItem("window", qid, {"k": k}, b"w" * 50, n_rows=1)


def drain(q: OutboundQueue) -> list[OutboundItem]:
    out = []
    while (item := q.get_nowait(0.0)) is not None:
        out.append(item)
    return out


def test_token_bucket_allows_burst_then_rate() -> None:
    b = TokenBucket(rate=5, burst=10, now=0.0)
    assert all(b.try_take(0.0) for _ in range(10))
    assert not b.try_take(0.0)
    assert b.try_take(0.2)
    assert not b.try_take(0.2)


def test_connection_caps_per_user_then_total() -> None:
    caps = ConnectionCaps(per_user=2, total=3)
    assert caps.try_open("a") is None
    assert caps.try_open("a") is None
    assert caps.try_open("a") == 429
    assert caps.try_open("b") is None
    assert caps.try_open("c") == 503
    caps.close("a")
    assert caps.try_open("c") is None
    assert caps.open_connections == 3


def test_raw_rows_drop_oldest_and_count_rows() -> None:
    q = OutboundQueue(max_frames=3, max_bytes=10_000)
    for i in range(5):
        q.put(rows("q", i + 1), now=1.0)
    assert [it.msg["n"] for it in drain(q)] == [3, 4, 5]
    assert q.drops_for("q") == {"client_queue": 1 + 2}


def test_windows_latest_wins_per_query() -> None:
    q = OutboundQueue(max_frames=2, max_bytes=10_000)
    q.put(window("a", 1), 0.0)
    q.put(window("b", 1), 0.0)
    q.put(window("a", 2), 0.0)  # replaces a/1, keeps b/1
    assert [(it.qid, it.msg["k"]) for it in drain(q)] == [("b", 1), ("a", 2)]
    assert q.drops_for("a") == {"client_queue_windows": 1}
    assert q.drops_for("b") == {}


def test_windows_push_out_raw_rows_first() -> None:
    q = OutboundQueue(max_frames=2, max_bytes=10_000)
    q.put(rows("r", 5), 0.0)
    q.put(window("w", 1), 0.0)
    q.put(window("w2", 1), 0.0)
    assert [it.qid for it in drain(q)] == ["w", "w2"]
    assert q.drops_for("r") == {"client_queue": 5}


def test_control_frames_are_never_dropped_and_meta_coalesces() -> None:
    q = OutboundQueue(max_frames=1, max_bytes=10_000)
    q.put(OutboundItem("control", "q", {"t": "accepted"}), 0.0)
    q.put(rows("q", 1), 0.0)
    q.put(OutboundItem("meta", "q", {"v": 1}), 0.0)
    q.put(OutboundItem("meta", "q", {"v": 2}), 0.0)
    q.put(OutboundItem("control", "q", {"t": "complete"}), 0.0)
    kinds = [(it.kind, it.msg) for it in drain(q)]
    assert ("meta", {"v": 2}) in kinds
    assert ("meta", {"v": 1}) not in kinds
    assert kinds[0] == ("control", {"t": "accepted"})
    assert kinds[-1] == ("control", {"t": "complete"})


def test_urgent_meta_jumps_the_queue_but_not_accepted() -> None:
    q = OutboundQueue(max_frames=10, max_bytes=10_000)
    q.put(OutboundItem("control", "q", {"t": "accepted"}), 0.0)
    q.put(rows("q", 1), 0.0)
    q.put(rows("q", 1), 0.0)
    q.put(OutboundItem("meta", "q", {"m": 1}, urgent=True), 0.0)
    assert [it.kind for it in drain(q)] == ["control", "meta", "rows", "rows"]


def test_too_slow_after_staying_full() -> None:
    q = OutboundQueue(max_frames=2, max_bytes=10_000, slow_after=30.0)
    for i in range(3):
        q.put(rows("q", 1), now=100.0 + i)
    # full since the first put that had to drop (t = 102)
    assert not q.too_slow(131.9)
    assert q.too_slow(132.0)
    drain(q)
    assert not q.too_slow(200.0)


def test_byte_budget_applies() -> None:
    q = OutboundQueue(max_frames=100, max_bytes=250)
    for _ in range(5):
        q.put(rows("q", 1, size=100), 0.0)
    assert len(q) == 2
    assert q.queued_bytes == 200
