"""`mantis-py replay` as a subprocess: formats, exit codes, bad lines, `| head`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CMD = [sys.executable, "-m", "mantis_py", "replay"]


def run(query: str, text: str | bytes, *extra: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    f = tmp_path / "in.jsonl"
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return subprocess.run([*CMD, query, "--input", str(f), *extra], capture_output=True, timeout=60)


def test_tour_t1_exact_output(tmp_path: Path) -> None:
    events = "\n".join([
        '{"ts": 100.0, "event": "play", "country": "US"}', '{"ts": 101.5, "event": "play", "country": "BR"}',
        '{"ts": 103.2, "event": "pause", "country": "US"}', '{"ts": 104.9, "event": "play", "country": "US"}',
        '{"ts": 108.0, "event": "play"}', '{"ts": 112.3, "event": "play", "country": "BR"}',
    ]) + "\n"
    r = run("select country, count(*) as plays from playback where event == 'play' window 10 group by country", events, "--time-field", "ts", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == '{"country":"US","plays":2}\n{"country":"BR","plays":1}\n{"country":null,"plays":1}\n{"country":"BR","plays":1}\n'
    assert r.stderr == b""


def test_t12_float_formatting(tmp_path: Path) -> None:
    r = run("select average(latency_ms), max(latency_ms) from api window |3|", '{"latency_ms": 10}\n{"latency_ms": 20}\n{"latency_ms": 25}\n{"latency_ms": 7}\n{"status": 200}\n', tmp_path=tmp_path)
    assert r.stdout.decode() == '{"AVERAGE(latency_ms)":18.333333333333332,"MAX(latency_ms)":25}\n{"AVERAGE(latency_ms)":7.0,"MAX(latency_ms)":7}\n'


def test_bad_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    text = b'{"a": 1}\n[1, 2]\n{"a": \n\n   \n\xff\n{"a": NaN}\n"s"\n{"a": 123456789012345678901234567890}\n{"a": 1e999}\r\n'
    r = run("select a from s", text, tmp_path=tmp_path)
    assert r.returncode == 0
    assert r.stdout.decode().splitlines() == ['{"a":1}', '{"a":123456789012345678901234567890}', "{}"]
    err = r.stderr.decode().splitlines()
    assert err[0] == "line 2: skipped: not a JSON object (found array)"
    assert err[1].startswith("line 3: skipped: not valid JSON: ")
    assert err[2] == "line 6: skipped: not valid UTF-8"
    assert err[3].startswith("line 7: skipped: not valid JSON: ")
    assert err[4] == "line 8: skipped: not a JSON object (found string)"
    assert len(err) == 5


def test_time_field_errors_and_late_events(tmp_path: Path) -> None:
    text = '{"ts": 100}\n{"ts": "x"}\n{"ts": true}\n{"ts": 120}\n{"ts": 101.5}\n'
    r = run("select count(*) as n from s window 10", text, "--time-field", "ts", tmp_path=tmp_path)
    assert r.returncode == 0
    assert r.stdout.decode().splitlines() == ['{"n":1}', '{"n":0}', '{"n":1}']
    assert r.stderr.decode().splitlines() == [
        "line 2: skipped: time field ts is missing or not a number",
        "line 3: skipped: time field ts is missing or not a number",
        "line 5: skipped: late event: every window for time 101.5 is already closed",
    ]


def test_rejected_query_exits_2_with_error_object(tmp_path: Path) -> None:
    r = run("select count(*) from x where count(*) > 1", "{}\n", tmp_path=tmp_path)
    assert r.returncode == 2
    assert r.stdout == b""
    err = json.loads(r.stderr)
    assert err["code"] == "E201"
    assert err["kind"] == "semantic"


def test_bad_time_field_exits_2(tmp_path: Path) -> None:
    r = run("select a from s", "{}\n", "--time-field", "e[", tmp_path=tmp_path)
    assert r.returncode == 2
    assert "code" in json.loads(r.stderr)


def test_unreadable_input_exits_1(tmp_path: Path) -> None:
    r = subprocess.run([*CMD, "select a from s", "--input", str(tmp_path / "nope.jsonl")], capture_output=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.decode().startswith(f"mantis-py: cannot read {tmp_path / 'nope.jsonl'}: ")


def test_usage_error_exits_2() -> None:
    r = subprocess.run([*CMD, "select a from s"], capture_output=True, timeout=60)
    assert r.returncode == 2


def test_stdin_and_limit(tmp_path: Path) -> None:
    r = subprocess.run([*CMD, "select a from s limit 2", "--input", "-"], input=b'{"a":1}\n{"a":2}\n{"a":3}\n', capture_output=True, timeout=60)
    assert r.returncode == 0
    assert r.stdout == b'{"a":1}\n{"a":2}\n'


def test_head_ends_quietly(tmp_path: Path) -> None:
    f = tmp_path / "big.jsonl"
    f.write_text('{"a": 1}\n' * 200000)
    r = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m mantis_py replay 'select a from s' --input {f} "
         "| head -n 2; exit ${PIPESTATUS[0]}"],
        capture_output=True, timeout=60,
    )
    assert r.stdout == b'{"a":1}\n{"a":1}\n'
    assert r.stderr == b""  # quietly: no traceback, no "cannot read"
    assert r.returncode == 0


def test_notice_on_stderr(tmp_path: Path) -> None:
    text = "".join(json.dumps({"x": i}) + "\n" for i in range(3))
    r = run("select count(*) as n from s where x.y == 1 or true", text, tmp_path=tmp_path)
    assert r.returncode == 0
    assert r.stdout == b'{"n":3}\n'


def test_seed_changes_random_sample(tmp_path: Path) -> None:
    text = "".join(json.dumps({"x": i}) + "\n" for i in range(100))
    a = run("select x from s sample 50%", text, "--seed", "1", tmp_path=tmp_path).stdout
    b = run("select x from s sample 50%", text, "--seed", "2", tmp_path=tmp_path).stdout
    assert a != b
    assert a == run("select x from s sample 50%", text, "--seed", "1", tmp_path=tmp_path).stdout


def _cases() -> list[dict]:
    path = Path(__file__).parents[1] / "query" / "fixtures" / "cases.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_every_fixture_case_through_the_command(tmp_path: Path, monkeypatch: object) -> None:
    """The command's chunked fast path gives the fixture rows, byte-exact JSON per §3.18."""
    import argparse
    import io

    from mantis_py.commands import replay as cmd

    for i, case in enumerate(_cases()):
        f = tmp_path / f"c{i}.jsonl"
        f.write_text("".join(json.dumps(e) + "\n" for e in case["events"]))
        out = io.BytesIO()
        err = io.StringIO()
        saved = sys.stdout, sys.stderr
        wrapper = io.TextIOWrapper(out)
        sys.stdout, sys.stderr = wrapper, err
        try:
            rc = cmd.run(argparse.Namespace(query=case["query"], input=str(f), time_field=case["time_field"], seed=0))
            wrapper.flush()
            data = out.getvalue()
            wrapper.detach()
        finally:
            sys.stdout, sys.stderr = saved
        assert rc == 0, (case["name"], err.getvalue())
        want = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in case["rows"])
        assert data.decode() == want, case["name"]


def test_output_text_matches_json_dumps_for_awkward_values(tmp_path: Path) -> None:
    rows = [
        {"a": 1e-07, "b": 1.5e-05, "c": 0.0001, "d": 1e20, "e": -0.0},
        {"n": {"big": 2**70, "l": [1e-05, "é\u2028\x01\"\\"]}},
        {"s": "text with e- and 0.0000 inside", "f": 2.5},
    ]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    r = run("select * from s", text, tmp_path=tmp_path)
    assert r.returncode == 0
    want = "".join(json.dumps(x, separators=(",", ":"), ensure_ascii=False) + "\n" for x in rows)
    assert r.stdout.decode() == want


def test_streamed_rows_with_bad_lines_and_times_in_the_middle(tmp_path: Path) -> None:
    lines = [json.dumps({"ts": i, "a": i}) for i in range(3000)]
    lines[1000] = '{"ts": true, "a": -1}'
    lines[2000] = "[1]"
    lines[2500] = ""
    r = run("select a from s where a >= 999 and a <= 2001", "\n".join(lines) + "\n", "--time-field", "ts", tmp_path=tmp_path)
    assert r.returncode == 0
    assert [json.loads(x)["a"] for x in r.stdout.decode().splitlines()] == [999, *range(1001, 2000), 2001]
    assert r.stderr.decode().splitlines() == [
        "line 1001: skipped: time field ts is missing or not a number",
        "line 2001: skipped: not a JSON object (found array)",
    ]


def test_time_field_is_exactly_one_property() -> None:
    """§7.1: --time-field is one MQL property; anything after it is E102 (expected end of query), an
    empty field is E101 (expected a property), never the select list's clause vocabulary."""
    import pytest

    from mantis_py.commands.replay import _time_field_segments
    from mantis_py.errors import QueryError

    assert _time_field_segments("ts") == ("ts",)
    assert _time_field_segments(" from ") == ("from",)
    assert _time_field_segments("E[\"a\"][0]") == ("a", 0)
    cases = {
        "ts window 10": ("E102", 1, 4, 6, ["end of query"], "expected end of query, found 'window'"),
        "ts as x": ("E102", 1, 4, 2, ["end of query"], "expected end of query, found 'as'"),
        "ts, b": ("E102", 1, 3, 1, ["end of query"], "expected end of query, found ','"),
        "a\nb": ("E102", 2, 1, 1, ["end of query"], "expected end of query, found 'b'"),
        "": ("E101", 1, 1, 0, ["a property"], "the query ends too early: expected a property"),
        "e['a'][*]": ("E116", 1, 1, 9, [], "--time-field must be a property (a name or an e[…] path), found 'e['a'][*]'"),
    }
    for field, (code, line, col, length, expected, message) in cases.items():
        with pytest.raises(QueryError) as info:
            _time_field_segments(field)
        d = info.value.to_dict()
        assert (d["code"], d["line"], d["column"], d["length"], d["expected"], d["message"]) == (
            code, line, col, length, expected, message), field
