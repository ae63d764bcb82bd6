"""``mantis-py demo --gateways 3``: a NATS cluster, three gateways, the services spread over them;
every process it started is gone when it stops."""

from __future__ import annotations

import re
import socket
import subprocess
import sys


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_as_a_cluster_and_stops_everything() -> None:
    proc = subprocess.run([sys.executable, "-m", "mantis_py", "demo", "--gateways", "3",
                           "--port", "0", "--for", "6s"], capture_output=True, text=True,
                          timeout=90)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert re.search(r"Dashboard\s+http://127\.0\.0\.1:\d+/\?preset=plays", out)
    gateways = [int(p) for p in re.findall(r"gateway \d\s+http://127\.0\.0\.1:(\d+)/", out)]
    nats = [int(p) for p in re.findall(r"nats://127\.0\.0\.1:(\d+)", out)]
    assert len(gateways) == 3
    assert len(nats) == 3
    # the dashboard's gateway saw plays from agents on all three gateways (playback-1..3)
    assert re.search(r"plays/s\s+\d+ \(", out), out
    assert "stopped 3 gateways and 3 NATS servers" in out
    assert not any(_open(p) for p in gateways + nats)
