"""The dashboard: a single page and its static files, shipped as package data (docs/operations.md).

Theory of operation: the server calls ``page()`` for ``GET /`` and ``asset(path)`` for
``GET /static/...``. Both only read files from ``mantis_py/gateway/static/`` (cached after the
first read), so the dashboard works on an offline machine: no CDN, no build step. The page talks
to the gateway it came from: ``WS /v1/query`` (``?token=`` when the page URL has one),
``POST /v1/check`` as the user types, and ``GET /v1/alerts`` every two seconds.
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["CONTENT_TYPES", "asset", "page"]

CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


@functools.cache
def _read(name: str) -> bytes | None:
    node = resources.files(__package__).joinpath("static")
    for part in name.split("/"):
        node = node.joinpath(part)
    if not node.is_file():
        return None
    return node.read_bytes()


def page() -> bytes:
    """The HTML served at ``GET /``."""
    body = _read("index.html")
    assert body is not None, "mantis_py/gateway/static/index.html is missing from the package"
    return body


def asset(path: str) -> tuple[bytes, str] | None:
    """A static file for ``GET /static/<path>`` (``path`` may start with ``/static/``).

    Returns:
        ``(body, content type)``, or None for anything that is not a shipped file (including
        any attempt to leave the static directory).
    """
    name = path.split("?", 1)[0]
    if name.startswith("/static/"):
        name = name[len("/static/") :]
    name = name.lstrip("/")
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") or "\\" in p for p in parts):
        return None
    dot = parts[-1].rfind(".")
    ctype = CONTENT_TYPES.get(parts[-1][dot:] if dot >= 0 else "")
    if ctype is None:
        return None
    body = _read("/".join(parts))
    return None if body is None else (body, ctype)
