"""Pure config parsing, auth decisions, SSE framing and the metrics exposition."""

from __future__ import annotations

import hashlib

import pytest

from mantis_py.errors import AuthenticationError, ConfigurationError
from mantis_py.gateway.auth import (
    Authenticator,
    Principal,
    audit_record,
    bearer_token,
    origin_allowed,
)
from mantis_py.gateway.config import load_config, parse_config
from mantis_py.gateway.metrics import Metrics, render
from mantis_py.gateway.sse import event_frame


def test_defaults_match_system_md() -> None:
    c = parse_config({})
    assert (c.limits.client_frame_max, c.limits.client_queue_frames, c.limits.client_queue_bytes,
            c.limits.send_deadline_s, c.limits.slow_client_s, c.limits.connections_per_user,
            c.limits.connections_total, c.limits.submissions_per_s,
            c.limits.submissions_burst) == (65536, 256, 1 << 20, 5.0, 30.0, 20, 2000, 5.0, 10)
    assert c.grace_s == 5.0
    assert c.tokens == ()


def test_alerts_pass_through_untouched_and_overrides_win(tmp_path: object) -> None:
    data = {"gateway": {"port": 1}, "alerts": [{"name": "x", "anything": {"nested": [1]}}]}
    c = parse_config(data, port=9, host=None)
    assert c.port == 9
    assert c.alerts == ({"name": "x", "anything": {"nested": [1]}},)


@pytest.mark.parametrize(
    "data",
    [
        {"gateway": {"bogus": 1}},
        {"gateway": {"port": "x"}},
        {"limits": {"client_queue_frames": 0}},
        {"limits": {"nope": 1}},
        {"tokens": [{"user": "a"}]},
        {"tokens": [{"user": "a", "token": "t", "roles": ["root"]}]},
        {"tokens": [{"user": "a", "token": "t"}, {"user": "b", "token": "t"}]},
        {"gateway": {"tls_cert": "x"}},
        {"other": 1},
    ],
)
def test_bad_configs_raise_one_clear_error(data: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        parse_config(data)


def test_load_config_reports_bad_toml(tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "g.toml"
    p.write_text("[gateway\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(p)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(Path(str(tmp_path)) / "missing.toml")


def test_authenticator_by_token_and_digest() -> None:
    digest = hashlib.sha256(b"s3").hexdigest()
    c = parse_config({"tokens": [
        {"user": "a", "token": "s1", "read": ["play"]},
        {"user": "b", "token_sha256": digest, "read": ["*"], "masked": True,
         "roles": ["client", "agent"]},
    ]})
    auth = Authenticator(c.tokens)
    assert auth.authenticate("s1").user == "a"
    assert auth.authenticate("s3", "agent").masked
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate(None)
    assert info.value.status == 401
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate("s1", "agent")
    assert info.value.status == 403
    with pytest.raises(AuthenticationError) as info:
        auth.authenticate("wrong")
    assert "wrong" not in str(info.value)
    assert "s1" not in repr(c.tokens)


def test_open_gateway_without_tokens() -> None:
    assert Authenticator(()).authenticate(None).may_read("any", "thing")


def test_rights_patterns() -> None:
    p = Principal("u", ("play", "api/log", "web/*"))
    assert p.may_read("play", "default")
    assert p.may_read("play", "log")
    assert p.may_read("api", "log")
    assert not p.may_read("api", "default")
    assert p.may_read("web", "x")
    assert p.first_refused([("play", "default"), ("api", "default")]) == ("api", "default")


def test_bearer_token_sources() -> None:
    assert bearer_token({"authorization": "Bearer abc"}, {}) == "abc"
    assert bearer_token({}, {"token": "xyz"}) == "xyz"
    assert bearer_token({"authorization": "Basic abc"}, {}) is None


def test_origin_rules() -> None:
    assert origin_allowed(None, "h:1", (), False)
    assert origin_allowed("http://h:1", "h:1", (), False)
    assert not origin_allowed("https://h:1", "h:1", (), False)
    assert not origin_allowed("http://evil", "h:1", (), False)
    assert origin_allowed("http://ok", "h:1", ("http://ok",), False)


def test_audit_record_has_no_query_text() -> None:
    rec = audit_record("u", ["b", "a", "a"], "select secret from a", "accepted")
    assert rec["apps"] == ["a", "b"]
    assert "secret" not in str(rec)


def test_sse_frames() -> None:
    assert event_frame("meta", b'{"a":1}') == b'event: meta\ndata: {"a":1}\n\n'
    assert event_frame("x", b"a\nb") == b"event: x\ndata: a\ndata: b\n\n"


def test_metrics_exposition() -> None:
    m = Metrics()
    m.inc("dropped_total", 3, reason='we"ird')
    text = render(m, {"agents_connected": 2}).decode()
    assert '# TYPE mantis_gateway_dropped_total counter' in text
    assert 'mantis_gateway_dropped_total{reason="we\\"ird"} 3' in text
    assert "mantis_gateway_agents_connected 2" in text
