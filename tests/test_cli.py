from __future__ import annotations

import subprocess
import sys


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mantis_py", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0
    for name in ("gateway", "query", "replay", "check", "demo"):
        assert name in out.stdout
