"""The integrations' public names and import rules (docs/architecture.md)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mantis_py" / "integrations"
PUBLIC = {
    "asgi": "MantisASGIMiddleware",
    "wsgi": "MantisWSGIMiddleware",
    "logging": "MantisLogHandler",
    "otel": "MantisSpanProcessor",
}


@pytest.mark.parametrize(("module", "name"), sorted(PUBLIC.items()))
def test_each_integration_exports_its_one_class(module: str, name: str) -> None:
    mod = importlib.import_module(f"mantis_py.integrations.{module}")
    assert mod.__all__ == [name]
    assert callable(getattr(mod, name))


def _top_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_frameworks_stay_behind_their_own_integration(path: Path) -> None:
    names = _top_imports(path)
    text = path.read_text(encoding="utf-8")
    assert "mantis_py.gateway" not in text
    assert "..gateway" not in text
    assert ("opentelemetry" in names) == (path.name == "otel.py")
    assert not names & {"starlette", "fastapi", "uvicorn", "waitress", "trio", "websockets"}
    if path.name != "wsgi.py":
        assert "flask" not in names
