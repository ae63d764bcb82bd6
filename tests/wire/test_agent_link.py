"""mantis_py/wire/agent_link.py: the link state machines accept the protocol and nothing else."""

from __future__ import annotations

import pytest

from mantis_py.errors import LocalProtocolError, RemoteProtocolError
from mantis_py.wire import (
    AGENT_SIDE,
    GATEWAY_SIDE,
    AgentLink,
    Events,
    GatewayLink,
    Hello,
    LinkState,
    Ping,
    Pong,
    Stats,
    Subscribe,
    Welcome,
)

HELLO = Hello(app="a", instance="i", streams=("default",), pid=1)


def open_pair() -> tuple[AgentLink, GatewayLink]:
    agent, gw = AgentLink(), GatewayLink()
    gw.receive_data(agent.send(HELLO))
    agent.receive_data(gw.send(Welcome(session="s1", heartbeat_s=5)))
    return agent, gw


def test_handshake_opens_both_ends() -> None:
    agent, gw = open_pair()
    assert agent.state is LinkState.OPEN
    assert gw.state is LinkState.OPEN
    assert gw.hello == HELLO


def test_messages_flow_both_ways_once_open() -> None:
    agent, gw = open_pair()
    sub = Subscribe(sub="x1", query="select *", stream="default", start=0.0)
    assert agent.receive_data(gw.send(sub)) == sub
    ev = Events(stream="default", records=[{"subs": ["x1"], "t": 1, "s": 0, "e": {"a": 1}}])
    assert gw.receive_data(agent.send(ev)) == ev
    assert agent.receive_data(gw.send(Ping(nonce="n"))) == Ping(nonce="n")
    assert gw.receive_data(agent.send(Pong(nonce="n"))) == Pong(nonce="n")


def test_agent_may_not_send_before_hello() -> None:
    with pytest.raises(LocalProtocolError):
        AgentLink().send(Stats(streams={}, subs={}))


def test_agent_rejects_subscribe_before_welcome() -> None:
    agent, _gw = AgentLink(), GatewayLink()
    agent.send(HELLO)
    with pytest.raises(RemoteProtocolError) as info:
        agent.receive(Subscribe(sub="x", query="q", stream="s", start=0))
    assert info.value.close_code == 4000


def test_gateway_rejects_events_before_hello() -> None:
    with pytest.raises(RemoteProtocolError):
        GatewayLink().receive(Events(stream="s", records=[]))


def test_gateway_rejects_second_hello() -> None:
    _, gw = open_pair()
    with pytest.raises(RemoteProtocolError):
        gw.receive_data(b'{"type":"hello","app":"a","instance":"i"}')


def test_gateway_must_welcome_before_subscribing() -> None:
    gw = GatewayLink()
    gw.receive(HELLO)
    with pytest.raises(LocalProtocolError):
        gw.send(Subscribe(sub="x", query="q", stream="s", start=0))


def test_wrong_direction_is_refused() -> None:
    agent, gw = open_pair()
    with pytest.raises(RemoteProtocolError):
        agent.receive_data(b'{"type":"pong","nonce":"n"}')
    with pytest.raises(LocalProtocolError):
        gw.send(Pong(nonce="n"))


def test_nothing_after_close() -> None:
    agent, gw = open_pair()
    agent.close()
    gw.close()
    with pytest.raises(LocalProtocolError):
        agent.send(Pong(nonce="n"))
    with pytest.raises(RemoteProtocolError):
        gw.receive(Pong(nonce="n"))


def test_tables_only_mention_known_types() -> None:
    from mantis_py.wire import MESSAGE_TYPES

    for _, _, kind in [*AGENT_SIDE, *GATEWAY_SIDE]:
        assert kind in MESSAGE_TYPES
