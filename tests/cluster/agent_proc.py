"""A subprocess of real agents for the cluster tests: ``python agent_proc.py CONFIG_JSON``.

Config: {"app", "instances": [...], "gateways": [ws urls], "rate": events/s per agent,
"out": dir, "seed"}. Each agent is ``Agent(gateway=[...])``, started on ``gateways[0]``; it moves
to the next URL when its link fails. Every published event is written to
``out/<instance>.jsonl`` with its exact time ``ts`` (the agent stamps the same time), and
``out/<instance>.status.json`` is rewritten every 0.2 s: connected, gateway URL, live
subscription ids, the losses of each stream (``dropped``, host and agent side). Stops on SIGTERM
or when ``out/stop`` exists; publishes nothing while ``out/pause`` exists.

Optional config: ``"settings"`` (more ``Agent`` keyword arguments) and ``"pad_every": k``
(while ``out/pad`` exists, every k-th event carries 300 bytes of padding: with a small
``max_event_bytes`` the agent drops it as ``too_large``).
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from mantis_py.agents import host
from mantis_py.agents.sync import Agent

COUNTRIES = ("fr", "de", "us", "br", "jp")
_T = [0.0]


def make_agent(app: str, urls: list[str], instance: str, **settings: Any) -> Agent:
    """An agent on the gateway list ``urls`` (its fail-over order), starting on the first one
    (the tests place agents; a fleet would start on a random one)."""
    agent = Agent(app, gateway=urls, instance=instance, reconnect_min_s=0.2, reconnect_max_s=1.0,
                  **settings)
    agent.gateways.index = 0
    return agent.start()


def publish(agents: dict[str, Agent], files: dict[str, Any], seqs: dict[str, int],
            rng: random.Random, pad_every: int) -> None:
    """One event per agent, written to its file as published (every ``pad_every``-th padded)."""
    for inst, agent in agents.items():
        # a time exact to the millisecond (+0.25 ms): floor and round give the same ms
        _T[0] = ts = (math.floor(time.time() * 1000) + 0.25) / 1000
        seqs[inst] += 1
        event: dict[str, Any] = {"seq": seqs[inst], "inst": inst,
                                 "country": rng.choice(COUNTRIES),
                                 "ms": rng.randint(1, 500), "ts": ts}
        if pad_every and seqs[inst] % pad_every == 0:
            event["pad"] = "x" * 300
        agent.publish(event)
        files[inst].write(json.dumps(event) + "\n")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    out = Path(cfg["out"])
    rng = random.Random(cfg.get("seed", 0))
    host._now = lambda: _T[0]  # the agents stamp events with the time we record
    settings = dict(cfg.get("settings") or {})
    pad_every = int(cfg.get("pad_every", 0))
    agents = {inst: make_agent(cfg["app"], cfg["gateways"], inst, **settings)
              for inst in cfg["instances"]}
    files = {inst: open(out / f"{inst}.jsonl", "a", encoding="utf-8")  # noqa: SIM115
             for inst in agents}
    seqs = dict.fromkeys(agents, 0)
    stopping = [False]
    signal.signal(signal.SIGTERM, lambda *_: stopping.__setitem__(0, True))
    period = 1.0 / float(cfg["rate"])
    next_t = time.time()
    last_status = 0.0
    while not stopping[0] and not (out / "stop").exists():
        now = time.time()
        if now < next_t:
            time.sleep(next_t - now)
            continue
        next_t += period
        if not (out / "pause").exists():
            publish(agents, files, seqs, rng,
                    pad_every if pad_every and (out / "pad").exists() else 0)
        if now - last_status >= 0.2:
            last_status = now
            for inst, agent in agents.items():
                stats = agent.statistics()
                status = {"connected": agent.connected, "url": agent.url,
                          "subs": sorted(stats.subs), "t": now,
                          "dropped": {name: s.to_json()["dropped"]
                                      for name, s in stats.streams.items()}}
                tmp = out / f"{inst}.status.tmp"
                tmp.write_text(json.dumps(status))
                os.replace(tmp, out / f"{inst}.status.json")
    for f in files.values():
        f.close()
    for agent in agents.values():
        agent.close()


if __name__ == "__main__":
    main()
