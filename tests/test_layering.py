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


def _query_modules() -> list[Path]:
    return sorted((PACKAGE / "query").rglob("*.py"))


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _touches(names: set[str], prefix: str) -> bool:
    return any(n == prefix or n.startswith(prefix + ".") for n in names)


@pytest.mark.parametrize("path", _query_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
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


AGENT_LAYERS = (
    {"config", "buffer", "convert", "subscriptions", "stats", "budget", "link"},
    {"stream"},
    {"pipeline"},
    {"core"},
    {"host"},
    {"sync"},
    {"trio"},
)
"""The agent's modules bottom-up (docs/architecture.md): each imports only from earlier layers
(its own layer too, except where a cycle would form, which the cycle test catches)."""


@pytest.mark.parametrize("path", _modules("agents"), ids=lambda p: p.name)
def test_agent_modules_import_only_lower_layers(path: Path) -> None:
    layer = {name: i for i, names in enumerate(AGENT_LAYERS) for name in names}
    if path.name == "__init__.py":
        return  # the package facade re-exports from every layer
    here = layer.get(path.stem)
    assert here is not None, f"agents/{path.name} is in no layer of AGENT_LAYERS"
    for name in _imports(path):
        if name.startswith("mantis_py.agents."):
            other = name.split(".")[2]
            assert layer[other] <= here, f"agents/{path.name} imports the higher layer {other}"
        elif _touches({name}, "mantis_py.query"):
            # the agent imports cheaply: the engine is loaded on the first subscription only
            assert path.name == "subscriptions.py", f"agents/{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules("gateway"), ids=lambda p: p.name)
def test_gateway_never_imports_the_agent(path: Path) -> None:
    names = _imports(path)
    assert not _touches(names, "mantis_py.agents")
    shells = {"server.py", "handlers.py", "http.py", "agent_socket.py", "alert_runner.py"}
    if path.name not in shells:
        assert not _top(names) & IO_LIBS, f"{path.name} imports {_top(names) & IO_LIBS}"


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("lark", {"query/syntax/lalr.py"}),
        ("re2", {"query/semantics/regex.py"}),
        ("hdrh", {"query/state/percentiles.py"}),
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


# --------------------------------------------------------------------------- the import graph
#
# Every import counts: module level, inside functions, under ``if TYPE_CHECKING``. An edge goes
# to the module a statement names: ``from . import ast`` imports ``query.syntax.ast``, not the
# package ``query``; ``from ..query import prepare`` imports the package ``query``.

QUERY_PHASES = ("syntax", "semantics", "state", "compile", "run")
"""The phases of ``mantis_py/query/``, in the order a query passes through them."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def known(name: str) -> str | None:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, path in paths.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    origin = ".".join([*base, node.module] if node.module else base)
                else:
                    origin = node.module or ""
                subs = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in paths]
                whole = len(subs) < len(node.names)  # some name comes from the module itself
                targets = subs + ([origin] if whole else [])
            for target in targets:
                found = known(target)
                if found and found != mod and found.startswith("mantis_py"):
                    edges.add(found)
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_the_import_graph_reads_the_source() -> None:
    graph = _graph()
    # the test would pass vacuously if it missed the imports it is about
    assert "mantis_py.query.syntax.ast" in graph["mantis_py.query.semantics.analyze"]
    assert "mantis_py.query.syntax.parser" in graph["mantis_py.query.run.engine"]  # in a function
    assert "mantis_py.query" in graph["mantis_py.gateway.core"]  # from ..query import prepare
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_package() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles: {cycles}"


def _phase(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "query" and parts[2] in QUERY_PHASES:
        return QUERY_PHASES.index(parts[2])
    return None


def test_query_phases_import_only_earlier_phases() -> None:
    graph = _graph()
    phases = {m for m in graph if _phase(m) is not None}
    assert {m.split(".")[2] for m in phases} == set(QUERY_PHASES)
    flat = [m for m in graph if m.startswith("mantis_py.query.") and _phase(m) is None]
    assert not flat, f"query modules outside a phase: {flat}"
    for module in sorted(phases):
        for target in graph[module]:
            if target == "mantis_py.query" or target.startswith("mantis_py.query."):
                here, there = _phase(module), _phase(target)
                assert there is not None, f"{module} imports the package facade {target}"
                assert there <= here, f"{module} (phase {QUERY_PHASES[here]}) imports the later {target}"  # type: ignore[index]


@pytest.mark.parametrize("phase", QUERY_PHASES)
def test_phase_packages_re_export_nothing(phase: str) -> None:
    """A phase's ``__init__`` only documents it: importing one module never loads its siblings."""
    assert not _imports(PACKAGE / "query" / phase / "__init__.py")


def test_lark_is_pinned_to_the_minor_version_the_adapter_is_tested_with() -> None:
    """``query/syntax/lalr.py`` uses lark internals (``Shift``, ``ParserState``): a new minor
    version of lark must be a deliberate change of the pin, after the parser tests pass on it."""
    import re
    from importlib.metadata import version

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    pin = re.search(r'"lark>=(\d+)\.(\d+),<(\d+)\.(\d+)"', pyproject)
    assert pin, "lark must be pinned as lark>=X.Y,<X.Y+1 in pyproject.toml"
    low, high = (int(pin[1]), int(pin[2])), (int(pin[3]), int(pin[4]))
    assert high == (low[0], low[1] + 1), "the pin spans exactly one minor version"
    installed = tuple(int(x) for x in version("lark").split(".")[:2])
    assert low <= installed < high


@pytest.mark.parametrize("path", _modules("client"), ids=lambda p: p.name)
def test_only_the_client_shells_do_io(path: Path) -> None:
    names = _imports(path)
    if path.name not in {"sync.py", "trio.py"}:
        assert not _top(names) & IO_LIBS, f"{path.name} imports {_top(names) & IO_LIBS}"
    assert not _touches(names, "mantis_py.gateway")
    assert not _touches(names, "mantis_py.agents")
