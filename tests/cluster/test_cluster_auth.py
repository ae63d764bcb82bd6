"""NATS credentials and TLS of the cluster link (docs/cluster.md), each against a real
``nats-server`` configured for it: token, NKey seed file, TLS (server verified against our CA,
and mutual TLS with a client certificate), and a gateway process that joins through TLS + token
from its ``[cluster]`` config. Certificates are made at test time (``openssl``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mantis_py.gateway.cluster.bridge import NatsBridge
from mantis_py.gateway.cluster.config import ClusterConfig

from .harness import ROOT, GatewayProc, NatsServer, make_certs, wait_for


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:  # .ci/run installs it; say so rather than pass quietly
        pytest.fail("the openssl command is needed to make the test certificates")
    return make_certs(tmp_path_factory.mktemp("certs"))


class Bridges:
    def __init__(self) -> None:
        self.started: list[NatsBridge] = []
        self.servers: list[NatsServer] = []

    def start(self, config: ClusterConfig, name: str) -> NatsBridge:
        bridge = NatsBridge(config, name, lambda: None)
        bridge.start()
        self.started.append(bridge)
        return bridge


@pytest.fixture
def bridges() -> Iterator[Bridges]:
    b = Bridges()
    try:
        yield b
    finally:
        for bridge in b.started:
            bridge.stop()
        for server in b.servers:
            server.stop()


def _refused(bridge: NatsBridge, *words: str) -> None:
    """The bridge tried, was refused for one of ``words``, and is not connected."""
    wait_for(lambda: any(w.lower() in e.lower() for e in list(bridge.events) for w in words), 10)
    assert bridge.connected_url is None


def _round_trip(sender: NatsBridge, receiver: NatsBridge) -> None:
    """A message crosses the authenticated link (not just a handshake)."""
    receiver.set_interest({"mantis.auth.hb"})
    got: list[bytes] = []

    def arrived() -> bool:
        sender.publish([("mantis.auth.hb", b'{"n":"x"}')])
        got.extend(data for _, data, _ in receiver.take())
        return bool(got)

    wait_for(arrived, 5, step=0.1)
    assert got[0] == b'{"n":"x"}'


def test_token(tmp_path: Path, bridges: Bridges) -> None:
    server = NatsServer(tmp_path, "--auth", "t0ken-s3cret")
    bridges.servers.append(server)
    url = (server.url(),)
    good = bridges.start(ClusterConfig(url, "auth", token="t0ken-s3cret"), "good")
    other = bridges.start(ClusterConfig(url, "auth", token="t0ken-s3cret"), "other")
    bad = bridges.start(ClusterConfig(url, "auth", token="wrong"), "bad")
    wait_for(lambda: good.connected_url and other.connected_url, 10)
    _round_trip(good, other)
    _refused(bad, "Authorization Violation")
    assert "t0ken" not in repr(good.config)


def test_nkey_seed_file(tmp_path: Path, bridges: Bridges) -> None:
    import nkeys  # in the test and cluster extras

    def new_seed(name: str) -> tuple[Path, str]:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
        path = tmp_path / f"{name}.nk"
        path.write_bytes(seed + b"\n")
        path.chmod(0o600)
        return path, nkeys.from_seed(bytearray(seed)).public_key.decode()

    seed, public = new_seed("gw")
    stranger, _ = new_seed("stranger")
    conf = tmp_path / "nkey.conf"
    conf.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    server = NatsServer(tmp_path, "-c", conf)
    bridges.servers.append(server)
    url = (server.url(),)
    good = bridges.start(ClusterConfig(url, "auth", nkey_seed=str(seed)), "good")
    other = bridges.start(ClusterConfig(url, "auth", nkey_seed=str(seed)), "other")
    bad = bridges.start(ClusterConfig(url, "auth", nkey_seed=str(stranger)), "bad")
    wait_for(lambda: good.connected_url and other.connected_url, 10)
    _round_trip(good, other)
    _refused(bad, "Authorization Violation")


def test_tls_verifies_the_server_and_presents_a_client_certificate(
        tmp_path: Path, bridges: Bridges, certs: dict[str, Path]) -> None:
    server = NatsServer(tmp_path, "--tlsverify", "--tlscert", certs["server_cert"],
                        "--tlskey", certs["server_key"], "--tlscacert", certs["ca"])
    bridges.servers.append(server)
    mutual = {"tls_ca": str(certs["ca"]), "tls_cert": str(certs["client_cert"]),
              "tls_key": str(certs["client_key"])}
    # tls:// asks for TLS from the first byte; a nats:// URL upgrades when the server requires it
    good = bridges.start(ClusterConfig((server.url("tls"),), "auth", **mutual), "good")
    other = bridges.start(ClusterConfig((server.url(),), "auth", **mutual), "other")
    wait_for(lambda: good.connected_url and other.connected_url, 10)
    assert good.connected_url == server.url("tls")
    _round_trip(good, other)
    # no client certificate: the server refuses the handshake
    anonymous = bridges.start(ClusterConfig((server.url("tls"),), "auth",
                                            tls_ca=str(certs["ca"])), "anonymous")
    # a server certificate our CA did not sign: we refuse it
    stranger = bridges.start(ClusterConfig((server.url("tls"),), "auth",
                                           tls_ca=str(certs["other_ca"]),
                                           tls_cert=str(certs["client_cert"]),
                                           tls_key=str(certs["client_key"])), "stranger")
    _refused(stranger, "certificate verify failed")
    _refused(anonymous, "certificate required")
    time.sleep(0.5)
    assert anonymous.connected_url is None  # and stays refused
    assert stranger.connected_url is None


def test_a_gateway_joins_through_tls_and_a_token_from_its_config(
        tmp_path: Path, certs: dict[str, Path]) -> None:
    server = NatsServer(tmp_path, "--auth", "gw-t0ken", "--tls", "--tlscert",
                        certs["server_cert"], "--tlskey", certs["server_key"])
    config = (f'[cluster]\nnats = ["{server.url("tls")}"]\ntoken = "gw-t0ken"\n'
              f'tls_ca = "{certs["ca"]}"\n')
    gw = GatewayProc([server.url("tls")], tmp_path, "tlsgw", config=config)
    try:
        gw.wait_ready()
        wait_for(lambda: gw.get("/healthz")["cluster"]["nats"] == server.url("tls"), 10)
    finally:
        gw.stop()
        server.stop()
    assert "gw-t0ken" not in gw.log.read_text()


@pytest.mark.parametrize(("cluster", "message"), [
    ('tls_ca = "/nonexistent/ca.pem"', "cluster.tls_ca: cannot load /nonexistent/ca.pem"),
    ('nkey_seed = "/nonexistent/gw.nk"', "cluster.nkey_seed: cannot read /nonexistent/gw.nk"),
    ('nkey_seed = "{here}"', "does not hold an NKey seed"),
])
def test_unusable_credentials_stop_the_gateway_in_one_line(
        tmp_path: Path, cluster: str, message: str) -> None:
    conf = tmp_path / "gw.toml"
    conf.write_text(f'[cluster]\nnats = ["nats://127.0.0.1:1"]\n{cluster.format(here=conf)}\n')
    proc = subprocess.run([sys.executable, "-m", "mantis_py", "gateway", "--port", "0",
                           "--config", str(conf)], capture_output=True, text=True, timeout=30,
                          cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
