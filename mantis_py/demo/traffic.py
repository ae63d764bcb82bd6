"""Simulated traffic for the demo: three services with realistic, varying load and a scripted
outage. Pure: time (seconds since the demo started) and a ``random.Random`` are arguments.

- ``playback`` (the playback API): ``play``, ``pause``, ``stop`` and ``error`` events with country,
  device, title, bitrate, latency and status. Plays run at about ``PLAYS_PER_S`` per second in
  total, swelling and ebbing on a two-minute cycle, each country on its own phase.
- ``edge`` (the edge cache): requests with cache ``HIT``/``MISS``, bytes, latency, pop and status.
- ``login``: logins with result ``ok``/``bad_password``/``locked``, method, country, latency.

The outage (``Scenario``): from ``outage_at`` for ``outage_for`` seconds the playback API fails:
plays collapse to a tenth, most requests answer 503 with slow latencies, the edge cache misses
more (origin trouble) and logins slow down. The demo's alert on plays per second fires during it
and resolves after.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COUNTRIES",
    "PLAYS_PER_S",
    "SERVICES",
    "Scenario",
    "edge_events",
    "login_events",
    "playback_events",
]

PLAYS_PER_S = 120.0
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.30), ("BR", 0.15), ("IN", 0.12), ("GB", 0.10), ("DE", 0.08),
    ("MX", 0.08), ("FR", 0.07), ("JP", 0.06), ("CA", 0.04),
)
DEVICES: tuple[tuple[str, float], ...] = (
    ("tv", 0.45), ("phone", 0.30), ("web", 0.15), ("tablet", 0.07), ("console", 0.03),
)
TITLES = (
    "Stranger Things", "Wednesday", "The Crown", "Squid Game", "Bridgerton", "Dark",
    "Money Heist", "The Witcher", "Ozark", "Narcos", "Mindhunter", "Black Mirror",
)
BITRATES = (235, 560, 1050, 1750, 3000, 5800, 8000, 16000)
POPS = ("iad", "gru", "bom", "lhr", "fra", "nrt")


@dataclass(frozen=True, slots=True)
class Scenario:
    """When the scripted outage happens, in seconds since the demo started."""

    outage_at: float = 60.0
    outage_for: float = 30.0

    def in_outage(self, t: float) -> bool:
        return self.outage_at <= t < self.outage_at + self.outage_for

    def phase(self, t: float) -> str:
        if t < self.outage_at:
            return "normal"
        return "outage" if self.in_outage(t) else "recovered"


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def _load(t: float, phase: float = 0.0) -> float:
    """A smooth load factor around 1: a two-minute swell plus a slower drift."""
    return 1.0 + 0.25 * math.sin(2 * math.pi * t / 120.0 + phase) + 0.08 * math.sin(
        2 * math.pi * t / 37.0 + 2 * phase
    )


def playback_events(
    t: float, dt: float, share: float, rng: random.Random, scenario: Scenario
) -> Iterator[dict[str, Any]]:
    """The playback API events of one instance carrying ``share`` of the traffic during
    ``[t, t + dt)`` (seconds since the demo started)."""
    outage = scenario.in_outage(t)
    for index, (country, weight) in enumerate(COUNTRIES):
        mean = PLAYS_PER_S * weight * share * dt * _load(t, phase=index * 0.7)
        if outage:
            mean *= 0.1
        for _ in range(_poisson(rng, mean)):
            yield _play(rng, country, outage)
        # the requests that fail during the outage are errors, not plays
        failures = _poisson(rng, PLAYS_PER_S * weight * share * dt * (0.9 if outage else 0.004))
        for _ in range(failures):
            yield {
                "event": "error",
                "country": country,
                "device": _pick(rng, DEVICES),
                "title": rng.choice(TITLES),
                "latency_ms": round(rng.uniform(800, 3000) if outage else rng.uniform(100, 400), 1),
                "status": rng.choice((503, 503, 503, 500, 504)) if outage else 500,
            }
    for kind, rate in (("pause", 0.15), ("stop", 0.10)):
        for _ in range(_poisson(rng, PLAYS_PER_S * rate * share * dt)):
            yield {"event": kind, "country": _pick(rng, COUNTRIES), "device": _pick(rng, DEVICES),
                   "title": rng.choice(TITLES), "status": 200,
                   "latency_ms": round(rng.lognormvariate(3.0, 0.4), 1)}


def _play(rng: random.Random, country: str, outage: bool) -> dict[str, Any]:
    device = _pick(rng, DEVICES)
    base = {"tv": 3.6, "phone": 3.9, "web": 3.7, "tablet": 3.8, "console": 3.5}[device]
    latency = rng.lognormvariate(base + (1.5 if outage else 0.0), 0.35)
    bitrates = BITRATES[2:] if device in ("tv", "console") else BITRATES[:6]
    return {
        "event": "play",
        "country": country,
        "device": device,
        "title": rng.choice(TITLES),
        "bitrate": rng.choice(bitrates),
        "latency_ms": round(latency, 1),
        "status": 200,
    }


def edge_events(
    t: float, dt: float, share: float, rng: random.Random, scenario: Scenario
) -> Iterator[dict[str, Any]]:
    """Edge cache requests of one instance during ``[t, t + dt)``."""
    outage = scenario.in_outage(t)
    hit_ratio = 0.55 if outage else 0.92
    for _ in range(_poisson(rng, 200.0 * share * dt * _load(t, 1.3))):
        hit = rng.random() < hit_ratio
        yield {
            "path": f"/v1/titles/{rng.randrange(80000, 80200)}/chunk/{rng.randrange(1, 900)}",
            "cache": "HIT" if hit else "MISS",
            "pop": rng.choice(POPS),
            "bytes": rng.randrange(200_000, 2_000_000),
            "latency_ms": round(rng.lognormvariate(1.5 if hit else (5.0 if outage else 3.6), 0.4), 1),
            "status": 200 if hit or not outage or rng.random() < 0.7 else 502,
        }


def login_events(
    t: float, dt: float, share: float, rng: random.Random, scenario: Scenario
) -> Iterator[dict[str, Any]]:
    """Login attempts of one instance during ``[t, t + dt)``. ``password`` is masked by the
    demo's agent, so queries never see it."""
    outage = scenario.in_outage(t)
    for _ in range(_poisson(rng, 15.0 * share * dt * _load(t, 2.1))):
        roll = rng.random()
        result = "ok" if roll < 0.9 else ("bad_password" if roll < 0.98 else "locked")
        yield {
            "user": f"user-{rng.randrange(1, 5000)}",
            "password": "hunter2",
            "result": result,
            "method": rng.choice(("password", "password", "sso", "passkey")),
            "country": _pick(rng, COUNTRIES),
            "latency_ms": round(rng.lognormvariate(4.6 if outage else 4.0, 0.3), 1),
        }


SERVICES: dict[str, Any] = {
    "playback": playback_events,
    "edge": edge_events,
    "login": login_events,
}
"""app name -> event generator ``(t, dt, share, rng, scenario) -> events``."""
