"""mantis_py/wire/client_link.py: per-query states of the public client protocol."""

from __future__ import annotations

import pytest

from mantis_py.errors import LocalProtocolError, RemoteProtocolError
from mantis_py.wire import (
    Accepted,
    Cancel,
    ClientLink,
    Complete,
    Error,
    Meta,
    Query,
    QueryState,
    Rows,
)


def test_a_query_runs_to_completion() -> None:
    client, gw = ClientLink("client"), ClientLink("gateway")
    gw.receive_data(client.send(Query(id="q1", query="select *")))
    assert gw.queries == {"q1": QueryState.PENDING}
    client.receive_data(gw.send(Accepted(id="q1", canonical="select *", agents=2)))
    client.receive_data(gw.send(Rows(id="q1", window=None, rows=[{"a": 1}])))
    client.receive_data(gw.send(Meta(id="q1", dropped={}, coverage={"reporting": 2})))
    gw.receive_data(client.send(Cancel(id="q1")))
    client.receive_data(gw.send(Complete(id="q1", reason="cancelled")))
    assert gw.queries == {}
    assert client.queries == {}
    # the id may be reused once finished
    gw.receive_data(client.send(Query(id="q1", query="select *")))


def test_refused_query_ends() -> None:
    client, gw = ClientLink("client"), ClientLink("gateway")
    gw.receive_data(client.send(Query(id="q", query="selec")))
    client.receive_data(gw.send(Error(id="q", error={"message": "bad"})))
    assert client.queries == {}


def test_duplicate_live_id_is_a_remote_error() -> None:
    gw = ClientLink("gateway")
    gw.receive(Query(id="q", query="select *"))
    with pytest.raises(RemoteProtocolError):
        gw.receive(Query(id="q", query="select *"))


def test_rows_before_accepted_are_refused() -> None:
    gw = ClientLink("gateway")
    gw.receive(Query(id="q", query="select *"))
    with pytest.raises(LocalProtocolError):
        gw.send(Rows(id="q", window=None, rows=[]))
    client = ClientLink("client")
    with pytest.raises(RemoteProtocolError):
        client.receive(Rows(id="zz", window=None, rows=[]))


def test_cancel_of_unknown_id_is_harmless() -> None:
    gw = ClientLink("gateway")
    assert gw.receive(Cancel(id="nobody")) == Cancel(id="nobody")


def test_connection_level_error_is_always_legal() -> None:
    gw = ClientLink("gateway")
    assert gw.send(Error(id=None, error={"message": "rate limited"}))  # the encoded frame
    assert gw.queries == {}  # it ends no query
    assert not gw.closed  # and not the link


def test_wrong_direction_is_refused() -> None:
    gw = ClientLink("gateway")
    with pytest.raises(LocalProtocolError):
        gw.send(Query(id="q", query="x"))
    with pytest.raises(RemoteProtocolError):
        gw.receive_data(b'{"type":"rows","id":"q","window":null,"rows":[]}')
