"""The gateway raises its open-files limit (Linux often starts processes at 1,024)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_the_soft_open_files_limit_is_raised_up_to_the_hard_limit() -> None:
    # in a child process: this one's limits stay as they are
    script = textwrap.dedent("""
        import resource
        from mantis_py.oslimits import raise_open_files
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        got = raise_open_files(512)
        after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        beyond = raise_open_files(10**9)  # never above the hard limit
        print(got, after, beyond, hard)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30, check=True).stdout.split()
    got, after, beyond, hard = (int(x) for x in out)
    expected = 512 if hard < 0 or hard >= 512 else hard
    assert got == after == expected
    assert beyond == (hard if hard >= 0 else 10**9)  # (-1: no hard limit)
