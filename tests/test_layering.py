"""The import rules of docs/architecture.md, read from the source with ``ast``.

Pure cores (query, wire, the agent core, the gateway's registry/merge/alerts) must not reach for
sockets, threads or the event loop; heavy or foreign libraries stay behind one module each.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mantis_py"

# module (dotted, relative to the package) -> the top-level names it imports
IO_LIBS = {"trio", "websockets", "h11", "socket", "threading", "asyncio", "ssl"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative import: resolve against the module's package
                parts = path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level]
                base = ".".join(parts)
                names.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                names.add(node.module)
    return names


def _modules(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).glob("*.py"))


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _touches(names: set[str], prefix: str) -> bool:
    return any(n == prefix or n.startswith(prefix + ".") for n in names)


@pytest.mark.parametrize("path", _modules("query"), ids=lambda p: p.name)
def test_query_modules_are_pure(path: Path) -> None:
    names = _imports(path)
    io = _top(names) & IO_LIBS
    if path.name == "parser.py":
        io -= {"threading"}  # one lock guarding the one-time LALR table build
    assert not io, f"{path.name} imports {io}"
    for other in ("mantis_py.wire", "mantis_py.agents", "mantis_py.gateway", "orjson"):
        assert not _touches(names, other), f"{path.name} imports {other}"


@pytest.mark.parametrize("path", _modules("wire"), ids=lambda p: p.name)
def test_wire_modules_are_pure_and_do_not_know_the_query_engine(path: Path) -> None:
    names = _imports(path)
    assert not _top(names) & IO_LIBS
    assert not _touches(names, "mantis_py.query")
    if path.name != "codec.py":
        assert "orjson" not in _top(names)


@pytest.mark.parametrize("path", _modules("agents"), ids=lambda p: p.name)
def test_only_the_agent_runners_do_io(path: Path) -> None:
    names = _imports(path)
    if path.name not in {"sync.py", "trio.py"}:
        assert not _top(names) & IO_LIBS, f"{path.name} imports {_top(names) & IO_LIBS}"
    assert not _touches(names, "mantis_py.gateway")


@pytest.mark.parametrize("path", _modules("gateway"), ids=lambda p: p.name)
def test_gateway_never_imports_the_agent(path: Path) -> None:
    names = _imports(path)
    assert not _touches(names, "mantis_py.agents")
    shells = {"server.py", "handlers.py", "http.py", "alert_runner.py"}
    if path.name not in shells:
        assert not _top(names) & IO_LIBS, f"{path.name} imports {_top(names) & IO_LIBS}"


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("lark", {"query/parser.py"}),
        ("re2", {"query/regex.py"}),
        ("hdrh", {"query/percentiles.py"}),
        ("orjson", {"wire/codec.py", "commands/replay.py"}),
    ],
)
def test_foreign_libraries_stay_behind_one_module(library: str, allowed: set[str]) -> None:
    users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if library in _top(_imports(path))
    }
    assert users <= allowed, f"{library} imported by {sorted(users - allowed)}"
    assert users, f"{library} is not used where expected"


@pytest.mark.parametrize("path", _modules("client"), ids=lambda p: p.name)
def test_only_the_client_shells_do_io(path: Path) -> None:
    names = _imports(path)
    if path.name not in {"sync.py", "trio.py"}:
        assert not _top(names) & IO_LIBS, f"{path.name} imports {_top(names) & IO_LIBS}"
    assert not _touches(names, "mantis_py.gateway")
    assert not _touches(names, "mantis_py.agents")
