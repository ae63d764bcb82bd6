"""Browser tests: Debian chromium driven by Playwright against a real gateway with real agents
(the demo's simulated services, ``mantis_py.demo.runner.open_stack``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mantis_py.demo.runner import Stack, open_stack
from mantis_py.demo.traffic import Scenario

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# plays fall from ~120/s to ~12/s during the outage; 2 windows of 1 s under 40 fire the alert
UI_CONFIG = """
[gateway]
host = "127.0.0.1"
port = {port}
grace_s = 1.0

[[alerts]]
name = "playback-plays-per-second"
query = "select count(*) as pps from playback where event == 'play' window 1"
condition = "pps < 40"
windows = 2
actions = ["log"]
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.path.exists(CHROMIUM):
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is absent (apt-get install chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """A gateway and services whose playback outage starts 20 s in and lasts 15 s."""
    with open_stack(0, config=UI_CONFIG, scenario=Scenario(outage_at=20, outage_for=15)) as s:
        s.wait_apps()
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    try:
        yield pg
    finally:
        context.close()
