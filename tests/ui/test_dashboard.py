"""The dashboard in a real browser (Debian chromium, headless) against a real gateway and agents.

The module's stack starts its playback outage 12 s in, so the alert test sees the rule change
state live. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mantis_py.demo.runner import Stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


def points(page: Any) -> int:
    return int(page.locator("#chart").get_attribute("data-points") or 0)


def test_page_loads_without_console_errors(stack: Stack, page: Any) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(stack.url)
    page.wait_for_selector("#presets button")
    page.wait_for_function("document.querySelector('#alerts li') !== null")
    page.wait_for_timeout(500)
    assert page.title() == "mantis_py dashboard"
    assert problems == []


def test_preset_query_draws_a_chart_whose_points_grow(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    page.click("#presets button[data-preset='0']")  # plays per second by country
    page.wait_for_function("+document.querySelector('#chart').dataset.points > 0")
    first = points(page)
    page.wait_for_function(f"+document.querySelector('#chart').dataset.points > {first}")
    assert points(page) > first
    assert page.locator("#chart polyline").count() >= 3  # one line per country
    legend = page.locator("#legend").inner_text()
    assert "US" in legend
    assert "coverage" in page.locator("#st-coverage").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-chart.png"))


def test_bad_query_marks_the_error_at_the_right_place(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    page.fill("#query", "select country\nfrom playback wher status >= 500")
    mark = page.wait_for_selector("#error-mark")
    assert mark.inner_text() == "wher"
    assert (mark.get_attribute("data-line"), mark.get_attribute("data-column")) == ("2", "15")
    error = page.locator("#error").inner_text()
    assert "wher" in error
    assert "^^^^" in error
    # fixing the query clears the mark
    page.fill("#query", "select country from playback where status >= 500")
    page.wait_for_selector("#error-mark", state="detached")
    page.wait_for_selector("#check.ok")


def test_raw_query_fills_the_table(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    page.fill("#query", "select country, device, title, latency_ms from playback where event == 'play'")
    page.click("#run")
    page.wait_for_function("document.querySelectorAll('#rows tbody tr').length >= 10")
    headers = page.locator("#rows thead th").all_inner_texts()
    assert headers[:2] == ["country", "device"]
    assert page.locator("#chart-panel").is_hidden()  # raw rows are not charted


def test_alert_panel_shows_the_state_change(stack: Stack, page: Any) -> None:
    page.goto(stack.url + "?preset=plays")  # the URL the demo prints
    page.wait_for_function("+document.querySelector('#chart').dataset.points > 0")
    alert = "#alerts li[data-alert='playback-plays-per-second']"
    page.wait_for_selector(alert)
    before = page.locator(alert).get_attribute("data-state")
    assert before in ("insufficient_data", "ok", "firing")
    page.wait_for_selector(f"{alert}[data-state='firing']", timeout=45_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    page.wait_for_selector(f"{alert}[data-state='resolved']", timeout=45_000)
    snapshot = json.loads(page.evaluate("fetch('/v1/alerts').then(r => r.text())"))
    history = [h["state"] for h in snapshot["alerts"][0]["history"]]
    assert history[-2:] == ["firing", "resolved"]
