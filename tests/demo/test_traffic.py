"""The demo's traffic model (mantis_py/demo/traffic.py): pure, seeded, realistic enough."""

from __future__ import annotations

import random
from collections import Counter

from mantis_py.demo.traffic import (
    COUNTRIES,
    PLAYS_PER_S,
    Scenario,
    edge_events,
    login_events,
    playback_events,
)


def plays(t0: int, seconds: int, scenario: Scenario, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    return [e for t in range(t0, t0 + seconds) for e in playback_events(t, 1.0, 1.0, rng, scenario)
            if e["event"] == "play"]


def test_same_seed_same_events() -> None:
    a = list(playback_events(3.0, 1.0, 0.5, random.Random(1), Scenario()))
    b = list(playback_events(3.0, 1.0, 0.5, random.Random(1), Scenario()))
    assert a == b


def test_plays_per_second_near_the_nominal_rate_and_vary() -> None:
    per_second = [len(plays(t, 1, Scenario(), seed=t)) for t in range(0, 60)]
    mean = sum(per_second) / len(per_second)
    assert 0.8 * PLAYS_PER_S < mean < 1.25 * PLAYS_PER_S
    assert min(per_second) > 40  # the demo's alert threshold never trips outside the outage
    assert len(set(per_second)) > 10


def test_outage_collapses_plays_and_adds_errors() -> None:
    scenario = Scenario(outage_at=100, outage_for=30)
    normal = plays(60, 10, scenario)
    outage = plays(105, 10, scenario)
    assert len(outage) < len(normal) / 5
    rng = random.Random(3)
    errors = [e for t in range(105, 115) for e in playback_events(t, 1.0, 1.0, rng, scenario)
              if e["event"] == "error"]
    assert len(errors) > 500
    assert all(int(str(e["status"])) >= 500 for e in errors)
    assert scenario.phase(99) == "normal"
    assert scenario.phase(100) == "outage"
    assert scenario.phase(130) == "recovered"


def test_plays_carry_the_documented_fields_and_countries_follow_weights() -> None:
    events = plays(0, 30, Scenario())
    assert set(events[0]) == {"event", "country", "device", "title", "bitrate", "latency_ms", "status"}
    counts = Counter(e["country"] for e in events)
    assert counts.most_common(1)[0][0] == COUNTRIES[0][0]


def test_edge_and_login_events() -> None:
    rng = random.Random(5)
    edge = list(edge_events(0, 1.0, 1.0, rng, Scenario()))
    assert edge
    assert {e["cache"] for e in edge} <= {"HIT", "MISS"}
    logins = list(login_events(0, 10.0, 1.0, rng, Scenario()))
    assert logins
    assert all("password" in e for e in logins)  # the demo agent masks it
