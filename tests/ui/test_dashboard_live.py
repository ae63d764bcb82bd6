"""The dashboard as a long-lived consumer, in headless chromium against real gateways and agents:
it survives a gateway restart without a reload, names a wrong token "401", waits for agents that
are not there yet, keeps colours per group across reloads, orders legend and table alike, and
leaves a running query alone when the new one has a typo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mantis_py.demo.runner import Stack
from mantis_py.testing.processes import GatewayProcess, Publisher

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

COUNT = "select count(*) as n from play window 1"
PLAYS = "select country, count(*) as pps from playback where event == 'play' window 1 group by country"
ALERT_QUERY = "select count(*) as pps from playback where event == 'play' window 1"


def points(page: Any) -> int:
    return int(page.locator("#chart").get_attribute("data-points") or 0)


def run(page: Any, text: str) -> None:
    page.fill("#query", text)
    page.click("#run")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path)
    gw.start()
    yield gw
    gw.stop()


def test_the_dashboard_recovers_from_a_gateway_restart_without_reload(gateway: GatewayProcess,
                                                                      page: Any) -> None:
    pub = Publisher("play", gateway.url)
    pub.start()
    try:
        page.goto(f"http://127.0.0.1:{gateway.port}/")
        run(page, COUNT)
        page.wait_for_function("+document.querySelector('#chart').dataset.points > 0")
        page.evaluate("window.__loaded = 'same page'")
        gateway.stop()
        page.wait_for_selector("#conn[data-state='reconnecting']")
        assert "reconnecting" in page.locator("#st-query").inner_text()
        before = points(page)
        gateway.start()
        page.wait_for_selector("#conn[data-state='live']", timeout=30_000)
        page.wait_for_function(f"+document.querySelector('#chart').dataset.points > {before}",
                               timeout=30_000)
        assert page.evaluate("window.__loaded") == "same page"  # no reload happened
        # the windows missed while reconnecting are a gap in the line, not a straight segment
        assert page.locator("#chart polyline").count() >= 2
    finally:
        pub.stop()


def test_a_wrong_token_shows_401(tmp_path: Path, page: Any) -> None:
    config = ('[gateway]\nhost = "127.0.0.1"\nport = {port}\n\n[[tokens]]\nuser = "ops"\n'
              'token = "right"\nread = ["*"]\nroles = ["client"]\n')
    gw = GatewayProcess(tmp_path, config=config)
    gw.start()
    try:
        page.goto(f"http://127.0.0.1:{gw.port}/?token=wrong")
        run(page, COUNT)
        page.wait_for_selector("#conn[data-state='error']")
        assert page.locator("#conn").inner_text() == "401"
        error = page.locator("#error").inner_text()
        assert "401" in error
        assert "E222" not in error
    finally:
        gw.stop()


def test_a_query_before_any_agent_waits_then_draws(gateway: GatewayProcess, page: Any) -> None:
    page.goto(f"http://127.0.0.1:{gateway.port}/")
    run(page, "select count(*) as n from late window 1")
    page.wait_for_function("document.querySelector('#empty').textContent.includes('waiting for agents of late')")
    assert page.locator("#conn").inner_text() == "live"  # accepted, not refused
    pub = Publisher("late", gateway.url)
    pub.start()
    try:
        page.wait_for_function("+document.querySelector('#chart').dataset.points > 0", timeout=30_000)
        assert page.locator("#empty").is_hidden()
    finally:
        pub.stop()


def _legend(page: Any) -> list[tuple[str, str]]:
    return page.evaluate("[...document.querySelectorAll('#legend span')].map(s => [s.dataset.key, s.dataset.color])")


def test_same_group_same_colour_after_reload(stack: Stack, page: Any) -> None:
    page.goto(stack.url + "?preset=plays")
    page.wait_for_function("document.querySelectorAll('#legend span').length >= 3")
    first = dict(_legend(page))
    page.reload()
    page.wait_for_function("document.querySelectorAll('#legend span').length >= 3")
    second = dict(_legend(page))
    common = set(first) & set(second)
    assert len(common) >= 3
    assert {k: first[k] for k in common} == {k: second[k] for k in common}
    slots = page.evaluate("[...window.mantis.colors().values()]")
    assert len(slots) == len(set(slots))  # no two groups share colour and dash


def test_legend_and_table_order_agree(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    run(page, PLAYS)
    page.wait_for_function("document.querySelectorAll('#legend span').length >= 3")
    page.wait_for_timeout(1500)
    legend, table, values = page.evaluate("""[
        [...document.querySelectorAll('#legend span')].map(s => s.dataset.key),
        [...document.querySelectorAll('#rows tbody tr')].map(r => r.cells[0].textContent),
        [...document.querySelectorAll('#rows tbody tr')].map(r => +r.cells[1].textContent)]""")
    present = [k for k in legend if k in table]
    assert present == table[:len(present)]
    assert values == sorted(values, reverse=True)  # no ORDER BY: largest first
    ticks = page.evaluate("[...document.querySelectorAll('#chart .xtick')].map(t => t.textContent)")
    assert len(ticks) == len(set(ticks))
    assert page.locator("#y-label").text_content() == "pps"


def test_order_by_decides_the_order(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    run(page, PLAYS + " order by country")
    page.wait_for_function("document.querySelectorAll('#rows tbody tr').length >= 3")
    page.wait_for_timeout(1200)
    legend, table = page.evaluate("""[
        [...document.querySelectorAll('#legend span')].map(s => s.dataset.key),
        [...document.querySelectorAll('#rows tbody tr')].map(r => r.cells[0].textContent)]""")
    assert table == sorted(table)
    assert [k for k in legend if k in table] == table[:len([k for k in legend if k in table])]


def test_a_typo_leaves_the_running_query_alone_and_stop_stops_the_footer(stack: Stack,
                                                                        page: Any) -> None:
    page.goto(stack.url)
    run(page, PLAYS)
    page.wait_for_function("+document.querySelector('#chart').dataset.points > 0")
    page.fill("#query", "select country, count(*) as pps form playback window 1")
    page.press("#query", "Control+Enter")
    page.wait_for_selector("#error-mark")
    before = points(page)
    page.wait_for_function(f"+document.querySelector('#chart').dataset.points > {before}")
    assert page.locator("#conn").inner_text() == "live"
    page.click("#stop")
    assert page.locator("#st-query").inner_text().startswith("stopped")
    assert page.locator("#st-window").inner_text() == ""
    stopped_at = points(page)
    page.wait_for_timeout(2500)
    assert points(page) == stopped_at
    assert page.locator("#st-query").inner_text().startswith("stopped")


def test_an_alert_threshold_is_drawn_when_its_query_is_on_screen(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    run(page, ALERT_QUERY)
    page.wait_for_selector("#chart line.threshold[data-alert='playback-plays-per-second']",
                           state="attached")
    assert "pps < 40" in (page.locator("#chart .threshold-label").text_content() or "")


def test_an_empty_state_counts_down_to_the_first_window(stack: Stack, page: Any) -> None:
    page.goto(stack.url)
    run(page, "select count(*) as n from playback window 5")
    page.wait_for_function("document.querySelector('#empty').textContent.includes('first window')")
    text = page.locator("#empty").inner_text()
    assert "waiting for the first window" in text
    page.wait_for_function("+document.querySelector('#chart').dataset.points > 0", timeout=30_000)
    assert page.locator("#empty").is_hidden()


def test_a_group_absent_from_a_window_is_a_gap_not_its_old_value(gateway: GatewayProcess,
                                                                 page: Any) -> None:
    pub = Publisher("play", gateway.url)  # publishes n = 0, 1, 2 ... every 10 ms
    pub.start()
    try:
        page.goto(f"http://127.0.0.1:{gateway.port}/")
        # the group exists only while n < 600 (about the first six seconds of the publisher)
        run(page, "select event, count(*) as c from play where n < 600 window 1 group by event")
        page.wait_for_function("document.querySelector('#legend span b') && "
                               "/\\d/.test(document.querySelector('#legend span b').textContent)")
        page.wait_for_function("document.querySelector('#legend span b').textContent === '—'",
                               timeout=30_000)
        assert page.locator("#legend span").count() == 1
    finally:
        pub.stop()
