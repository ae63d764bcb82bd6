"""Registry invariants under random attach/detach/connect/disconnect sequences (hypothesis):
what the agents were told to run is exactly what the live runs need, each part once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mantis_py.gateway.registry import AgentInfo, Registry, Subscribe, Unsubscribe, sub_id

APPS = ("a", "b")
QUERIES = ("q1", "q2", "q3")
STREAMS = ("default", "log")

ops = st.lists(
    st.one_of(
        st.tuples(st.just("attach"), st.integers(0, 5), st.sampled_from(QUERIES),
                  st.lists(st.tuples(st.sampled_from(APPS), st.sampled_from(STREAMS)),
                           min_size=1, max_size=2, unique=True)),
        st.tuples(st.just("detach"), st.integers(0, 5)),
        st.tuples(st.just("connect"), st.integers(0, 3), st.sampled_from(APPS)),
        st.tuples(st.just("disconnect"), st.integers(0, 3)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_agents_run_exactly_the_parts_live_runs_need(sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    reg = Registry()
    told: set[tuple[str, str]] = set()  # (agent, sub) the agent currently runs
    runs: dict[str, tuple[str, list[tuple[str, str]]]] = {}

    def apply(out: list[Subscribe] | list[Unsubscribe]) -> None:
        for msg in out:
            key = (msg.agent_id, msg.sub)
            if isinstance(msg, Subscribe):
                assert key not in told, "subscribed twice"
                told.add(key)
            else:
                assert key in told, "unsubscribed something never subscribed"
                told.discard(key)

    for op in sequence:
        if op[0] == "attach" and f"r{op[1]}" not in runs:
            run_id, q, sources = f"r{op[1]}", op[2], op[3]
            runs[run_id] = (q, sources)
            ids, out = reg.attach(run_id, q, sources, 0.0, {})
            assert ids == tuple(sub_id(q, a, s) for a, s in sources)
            apply(out)
        elif op[0] == "detach" and f"r{op[1]}" in runs:
            del runs[f"r{op[1]}"]
            apply(reg.detach(f"r{op[1]}"))
        elif op[0] == "connect" and f"g{op[1]}" not in reg.agents:
            apply(reg.add_agent(AgentInfo(f"g{op[1]}", op[2], f"i{op[1]}")))
        elif op[0] == "disconnect" and f"g{op[1]}" in reg.agents:
            gone = reg.remove_agent(f"g{op[1]}")
            told.difference_update({(f"g{op[1]}", s) for s in gone})  # the link is gone
        needed = {
            (agent.agent_id, sub_id(q, app, stream))
            for q, sources in runs.values()
            for app, stream in sources
            for agent in reg.agents.values()
            if agent.app == app
        }
        assert told == needed
        assert set(reg.subs) == {sub_id(q, a, s) for q, src in runs.values() for a, s in src}
