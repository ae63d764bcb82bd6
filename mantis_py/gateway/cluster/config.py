"""The ``[cluster]`` table of the gateway config and ``--cluster``: pure validation.

File layout (every key but ``nats`` optional)::

    [cluster]
    nats = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]   # any node; the others are learned
    name = "prod"                 # subject prefix mantis.<name>.*; gateways of one cluster share it
    user = "mantis"               # user/password, or token, or nkey_seed (a file): at most one kind
    password = "..."
    token = "..."
    nkey_seed = "/etc/mantis/gw.nk"
    tls_ca = "ca.pem"             # verify the NATS servers with this CA (tls:// URLs or any of these)
    tls_cert = "client.pem"       # client certificate, with tls_key, when the servers require one
    tls_key = "client.key"
    ping_interval_s = 1.0         # NATS keepalive: a frozen node is noticed within ~2 pings
    max_outstanding_pings = 2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError

__all__ = ["ClusterConfig", "parse_cluster", "parse_urls"]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How this gateway joins its cluster (see the module header)."""

    nats: tuple[str, ...]
    name: str = "mantis"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey_seed: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ping_interval_s: float = 1.0
    max_outstanding_pings: int = 2

    def __post_init__(self) -> None:
        if not self.nats:
            raise ConfigurationError("cluster.nats: give at least one nats:// URL")
        for url in self.nats:
            if not url.startswith(("nats://", "tls://")):
                raise ConfigurationError(f"cluster.nats: expected nats://host:port, got {url!r}")
        if not _NAME.match(self.name):
            raise ConfigurationError(
                f"cluster.name must be 1-64 letters, digits, '-' or '_', got {self.name!r}")
        kinds = sum(x is not None for x in (self.user, self.token, self.nkey_seed))
        if kinds > 1:
            raise ConfigurationError("cluster: give at most one of user/password, token, nkey_seed")
        if (self.user is None) != (self.password is None):
            raise ConfigurationError("cluster: user and password must be given together")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigurationError("cluster: tls_cert and tls_key must be given together")
        if self.ping_interval_s <= 0 or self.max_outstanding_pings < 1:
            raise ConfigurationError("cluster: ping_interval_s must be > 0, max_outstanding_pings >= 1")

    @property
    def tls(self) -> bool:
        return (self.tls_ca is not None or self.tls_cert is not None
                or any(u.startswith("tls://") for u in self.nats))

    def __repr__(self) -> str:  # never print a secret
        return f"ClusterConfig(nats={self.nats!r}, name={self.name!r})"


_KEYS: dict[str, Any] = {
    "nats": list, "name": str, "user": str, "password": str, "token": str, "nkey_seed": str,
    "tls_ca": str, "tls_cert": str, "tls_key": str, "ping_interval_s": (int, float),
    "max_outstanding_pings": int,
}


def parse_urls(text: str) -> tuple[str, ...]:
    """``--cluster nats://a:4222,nats://b:4222`` -> the URLs (blank items ignored)."""
    return tuple(u.strip() for u in text.split(",") if u.strip())


def parse_cluster(raw: Mapping[str, Any]) -> ClusterConfig:
    """Build a :class:`ClusterConfig` from the ``[cluster]`` table.

    Raises:
        ConfigurationError: an unknown key, a wrong type or an impossible value (one line).
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError("cluster must be a table")
    for key, value in raw.items():
        kind = _KEYS.get(key)
        if kind is None:
            raise ConfigurationError(f"cluster: unknown key {key!r}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ConfigurationError(f"cluster.{key} has the wrong type: {type(value).__name__}")
    kwargs = dict(raw)
    nats = kwargs.pop("nats", [])
    if not all(isinstance(u, str) for u in nats):
        raise ConfigurationError("cluster.nats must be a list of URLs")
    return ClusterConfig(nats=tuple(nats), **kwargs)
