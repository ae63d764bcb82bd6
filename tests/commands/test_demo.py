"""`mantis-py demo --for 20s` starts everything, shows events flowing, and stops by itself."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)


def test_demo_runs_and_stops_by_itself_with_events_flowing() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mantis_py", "demo", "--port", "0", "--for", "20s"],
        capture_output=True, text=True, timeout=100,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert re.search(r"Dashboard\s+http://127\.0\.0\.1:\d+/", out)
    # the commentary's plays/s comes from a live query through the gateway: events flow end to end
    flowing = [int(m) for m in re.findall(r"plays/s\s+(\d+) \(", out)]
    assert flowing, out
    assert max(flowing) > 20
    m = re.search(r"published (\d+) events, agents matched (\d+)", out)
    assert m, out
    assert int(m.group(1)) > 1000
    assert int(m.group(2)) > 0
