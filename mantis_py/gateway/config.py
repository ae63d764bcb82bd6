"""Gateway settings: one frozen record, read from a TOML file (``tomllib``) or built in code.

Theory: everything the gateway may be told lives in :class:`GatewayConfig`; every default is the
one `docs/operations.md` shows. ``load_config(path)`` validates the whole file at start-up and raises
:class:`~mantis_py.errors.ConfigurationError` with one readable line naming the bad key, so a
typo never surfaces later as a runtime surprise. The ``[[alerts]]`` array is passed through
untouched to the alert runner (issue #5), which validates it itself.

File layout (every table and key optional)::

    [gateway]
    host = "127.0.0.1"
    port = 7100
    grace_s = 5.0                 # wait for late partials (docs/mql.md#windows)
    heartbeat_s = 10.0            # ping agents this often
    origins = ["https://dash.example"]   # browser Origins allowed besides the gateway's own
    tls_cert = "gw.pem"           # both set: serve wss:// and https:// only
    tls_key = "gw.key"
    audit_log = "audit.log"       # also log every query decision to this file (JSON lines)

    [limits]                      # docs/operations.md
    client_frame_max = 65536
    agent_frame_max = 16777216
    client_queue_frames = 256
    client_queue_bytes = 1048576
    send_deadline_s = 5.0
    slow_client_s = 30.0
    connections_per_user = 20
    connections_total = 2000     # clients (websocket and SSE)
    agent_connections_total = 5000  # agents: a separate cap, so a client flood never locks them out
    submissions_per_s = 5.0       # also POST /v1/check when tokens are configured
    compile_cpu_per_s = 0.1       # per user: CPU seconds of query compilation earned per second
    compile_cpu_burst_s = 1.0     # ... and stored at most
    live_columns_per_user = 1000  # select items + GROUP BY keys over a user's live queries
    submissions_burst = 10
    meta_interval_s = 1.0
    app_gone_s = 30.0             # unused: live queries wait for agents (kept so old files load)
    client_sndbuf = 131072        # kernel send buffer per client socket: loss shows up in our
                                  # queue (and in meta) instead of hiding in the kernel

    [caps]                        # run-time caps sent to agents with each query (docs/mql.md#limits-and-notices)
    group_cap = 10000

    [[tokens]]
    user = "alice"
    token = "..."                 # or token_sha256 = "<hex digest>", to keep secrets out of the file
    read = ["playback", "api/log"]   # "app" = all its streams, "app/stream", "*" = everything
    masked = false                # true: may see fields agents mask
    roles = ["client"]            # "client" and/or "agent"

    [[alerts]]                    # passed through to the alert runner untouched

    [cluster]                     # join a cluster of gateways over NATS: docs/cluster.md
    nats = ["nats://127.0.0.1:4222"]
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .cluster.config import ClusterConfig, parse_cluster

__all__ = ["GatewayConfig", "Limits", "TokenConfig", "load_config", "parse_config"]


@dataclass(frozen=True, slots=True)
class Limits:
    """docs/operations.md limits enforced by the gateway (defaults as stated there)."""

    client_frame_max: int = 64 * 1024
    agent_frame_max: int = 16 * 1024 * 1024
    client_queue_frames: int = 256
    client_queue_bytes: int = 1024 * 1024
    send_deadline_s: float = 5.0
    slow_client_s: float = 30.0
    connections_per_user: int = 20
    connections_total: int = 2000
    submissions_per_s: float = 5.0
    submissions_burst: int = 10
    meta_interval_s: float = 1.0
    raw_batch_rows: int = 1000
    handshake_timeout_s: float = 10.0
    client_sndbuf: int = 128 * 1024
    app_gone_s: float = 30.0  # unused: live queries wait for their agents, never time out
    request_head_max: int = 16 * 1024
    agent_connections_total: int = 5000
    compile_cpu_per_s: float = 0.1
    compile_cpu_burst_s: float = 1.0
    live_columns_per_user: int = 1000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigurationError(f"limits.{f.name} must be a positive number, got {value!r}")


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """One bearer token: who it is, what it may read, whether it sees masked fields."""

    user: str
    token_sha256: str
    read: tuple[str, ...] = ()
    masked: bool = False
    roles: tuple[str, ...] = ("client",)

    def __post_init__(self) -> None:
        if not self.user:
            raise ConfigurationError("tokens: every token needs a non-empty user")
        if len(self.token_sha256) != 64:
            raise ConfigurationError(f"tokens: user {self.user!r}: token_sha256 must be 64 hex digits")
        for role in self.roles:
            if role not in ("client", "agent"):
                raise ConfigurationError(f"tokens: user {self.user!r}: unknown role {role!r}")

    def __repr__(self) -> str:  # never print the digest either
        return f"TokenConfig(user={self.user!r}, read={self.read!r}, masked={self.masked})"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole gateway configuration. ``tokens == ()`` means open access (development)."""

    host: str = "127.0.0.1"
    port: int = 7100
    grace_s: float = 5.0
    heartbeat_s: float = 10.0
    origins: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    audit_log: str | None = None
    limits: Limits = field(default_factory=Limits)
    caps: Mapping[str, Any] = field(default_factory=dict)
    tokens: tuple[TokenConfig, ...] = ()
    alerts: tuple[Mapping[str, Any], ...] = ()
    cluster: ClusterConfig | None = None  # [cluster] / --cluster: join a cluster (docs/cluster.md)

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("gateway: tls_cert and tls_key must be given together")
        if not 0 <= self.port <= 65535:
            raise ConfigurationError(f"gateway.port must be 0..65535, got {self.port}")
        if self.grace_s < 0:
            raise ConfigurationError("gateway.grace_s must be >= 0")
        users = [t.user for t in self.tokens]
        digests = [t.token_sha256 for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ConfigurationError("tokens: two entries share the same token")
        del users

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


_GATEWAY_KEYS = {
    "host": str,
    "port": int,
    "grace_s": (int, float),
    "heartbeat_s": (int, float),
    "origins": list,
    "tls_cert": str,
    "tls_key": str,
    "audit_log": str,
}
_TOKEN_KEYS = {"user", "token", "token_sha256", "read", "masked", "roles"}


def _check_type(where: str, value: Any, kind: Any) -> None:
    if isinstance(value, bool) and kind is not bool:
        raise ConfigurationError(f"{where} has the wrong type: {type(value).__name__}")
    if not isinstance(value, kind):
        raise ConfigurationError(f"{where} has the wrong type: {type(value).__name__}")


def _token(i: int, raw: Any) -> TokenConfig:
    where = f"tokens[{i}]"
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where} must be a table")
    unknown = set(raw) - _TOKEN_KEYS
    if unknown:
        raise ConfigurationError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if ("token" in raw) == ("token_sha256" in raw):
        raise ConfigurationError(f"{where}: give exactly one of token or token_sha256")
    if "token" in raw:
        _check_type(f"{where}.token", raw["token"], str)
        digest = hashlib.sha256(raw["token"].encode()).hexdigest()
    else:
        _check_type(f"{where}.token_sha256", raw["token_sha256"], str)
        digest = raw["token_sha256"].lower()
    read = raw.get("read", [])
    roles = raw.get("roles", ["client"])
    _check_type(f"{where}.read", read, list)
    _check_type(f"{where}.roles", roles, list)
    for item in [*read, *roles]:
        _check_type(f"{where} list item", item, str)
    masked = raw.get("masked", False)
    _check_type(f"{where}.masked", masked, bool)
    user = raw.get("user", "")
    _check_type(f"{where}.user", user, str)
    return TokenConfig(user, digest, tuple(read), masked, tuple(roles))


def parse_config(data: Mapping[str, Any], **overrides: Any) -> GatewayConfig:
    """Build a :class:`GatewayConfig` from parsed TOML (a dict).

    Args:
        data: the parsed file.
        overrides: keyword values that win over the file (the command line's --host/--port).

    Raises:
        ConfigurationError: an unknown key, a wrong type or an impossible value.
    """
    known = {"gateway", "limits", "caps", "tokens", "alerts", "cluster"}
    unknown = set(data) - known
    if unknown:
        raise ConfigurationError(f"unknown top-level key {sorted(unknown)[0]!r}")
    gw = dict(data.get("gateway", {}))
    for key, value in gw.items():
        if key not in _GATEWAY_KEYS:
            raise ConfigurationError(f"gateway: unknown key {key!r}")
        _check_type(f"gateway.{key}", value, _GATEWAY_KEYS[key])
    limits_raw = dict(data.get("limits", {}))
    limit_names = {f.name: f for f in fields(Limits)}
    for key, value in limits_raw.items():
        if key not in limit_names:
            raise ConfigurationError(f"limits: unknown key {key!r}")
        _check_type(f"limits.{key}", value, (int, float))
    caps = data.get("caps", {})
    if not isinstance(caps, dict):
        raise ConfigurationError("caps must be a table")
    tokens_raw = data.get("tokens", [])
    if not isinstance(tokens_raw, list):
        raise ConfigurationError("tokens must be an array of tables ([[tokens]])")
    alerts = data.get("alerts", [])
    if not isinstance(alerts, list) or not all(isinstance(a, dict) for a in alerts):
        raise ConfigurationError("alerts must be an array of tables ([[alerts]])")
    kwargs: dict[str, Any] = {k: v for k, v in gw.items()}
    if "origins" in kwargs:
        kwargs["origins"] = tuple(str(o) for o in kwargs["origins"])
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return GatewayConfig(
        limits=Limits(**limits_raw),
        caps=dict(caps),
        tokens=tuple(_token(i, t) for i, t in enumerate(tokens_raw)),
        alerts=tuple(alerts),
        cluster=parse_cluster(data["cluster"]) if "cluster" in data else None,
        **kwargs,
    )


def load_config(path: str | Path | None, **overrides: Any) -> GatewayConfig:
    """Read and validate a TOML config file; ``None`` gives the defaults (plus overrides).

    Raises:
        ConfigurationError: the file cannot be read, is not TOML, or fails validation.
    """
    if path is None:
        return parse_config({}, **overrides)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config {path} is not valid TOML: {exc}") from None
    return parse_config(data, **overrides)
