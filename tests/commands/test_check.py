"""Tests for `mantis-py check` (MQL.md §7.2), run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mantis_py", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


SPEC_STDOUT = """{
  "canonical": "SELECT country, count(*) AS 'plays' FROM playback WHERE event == 'play' WINDOW 10 GROUP BY country",
  "kind": "aggregate",
  "mode": "live",
  "sources": [{"app": "playback", "stream": "default"}],
  "fields": ["country", "event"],
  "columns": ["country", "plays"],
  "agent": {
    "sample": null,
    "where": "event == 'play'",
    "ships": "partials",
    "window": {"type": "tumbling", "length": 10},
    "group_by": ["country"],
    "partials": ["first(country)", "count(*)"]
  },
  "gateway": {
    "window": {"type": "tumbling", "length": 10},
    "group_by": ["country"],
    "having": null,
    "order_by": [],
    "limit": null,
    "completes": false
  }
}
"""


def test_spec_example_prints_the_plan() -> None:
    out = run_check(
        "select country, count(*) as plays from playback where event == 'play' "
        "window 10 group by country"
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert json.loads(out.stdout) == json.loads(SPEC_STDOUT)
    assert out.stdout.startswith('{\n  "canonical": ')  # indented by 2


def test_rejected_query_writes_one_compact_json_line_and_exits_2() -> None:
    out = run_check("select count(*) from x where count(*) > 1", "--mode", "replay")
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0] == (
        '{"kind":"semantic","code":"E201","message":"aggregate count() cannot be used in WHERE",'
        '"line":1,"column":30,"length":8,"snippet":"select count(*) from x where count(*) > 1\\n'
        '                             ^^^^^^^^","expected":[],"suggestion":null,'
        '"hint":"filter on aggregates with HAVING"}'
    )


def test_mode_defaults_to_live() -> None:
    out = run_check("select count(*) from x")
    assert out.returncode == 2
    assert json.loads(out.stderr)["code"] == "E221"
    out = run_check("select count(*) from x", "--mode", "replay")
    assert out.returncode == 0
    assert json.loads(out.stdout)["mode"] == "replay"


def test_live_check_does_not_look_up_applications() -> None:
    out = run_check("select * from stream")
    assert out.returncode == 0, out.stderr


def test_syntax_errors_are_reported_the_same_way() -> None:
    out = run_check("select a form x")
    assert out.returncode == 2
    err = json.loads(out.stderr)
    assert (err["kind"], err["code"]) == ("syntax", "E102")
    assert "Traceback" not in out.stderr


def test_limit_errors_and_non_ascii_text() -> None:
    out = run_check("select count(*) as 'über' from x window 3600")
    assert out.returncode == 2
    assert json.loads(out.stderr)["code"] == "E306"
    out = run_check("select a as 'über' from x")
    assert out.returncode == 0
    assert "über" in out.stdout


def test_bad_mode_is_a_usage_error() -> None:
    out = run_check("select a from x", "--mode", "both")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
