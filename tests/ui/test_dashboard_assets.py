"""The dashboard's files (mantis_py/gateway/dashboard.py): shipped, self-contained, offline."""

from __future__ import annotations

import re

import pytest

from mantis_py.gateway.dashboard import asset, page


def test_page_is_html_referencing_only_local_files() -> None:
    html = page().decode()
    assert html.startswith("<!doctype html>")
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert ref.startswith(("/static/", "data:")), ref
        if ref.startswith("/static/"):
            assert asset(ref) is not None, ref


@pytest.mark.parametrize(
    ("path", "ctype"),
    [("/static/app.js", "text/javascript"), ("style.css", "text/css"), ("/static/index.html", "text/html")],
)
def test_assets_have_content_types(path: str, ctype: str) -> None:
    found = asset(path)
    assert found is not None
    assert found[1].startswith(ctype)


@pytest.mark.parametrize(
    "path", ["/static/../alerts.py", "../dashboard.py", "/static/", "/static/nope.js", "/static/a/../app.js",
             "/static/alerts.py"],
)
def test_anything_else_is_not_served(path: str) -> None:
    assert asset(path) is None


def test_no_network_dependencies_in_the_script() -> None:
    js = asset("app.js")
    assert js is not None
    text = js[0].decode()
    assert "http://" not in text
    assert "https://" not in text
    assert "cdn" not in text.lower()
