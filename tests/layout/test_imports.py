"""The layering the architecture promises: no import cycles inside ``vectorstore`` or ``indexers``,
``indexers`` never imports ``vectorstore``, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vectorstore", "indexers")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(p): p
    for pkg in PACKAGES
    for p in sorted((ROOT / pkg).rglob("*.py"))
    if "__pycache__" not in p.parts
}


def _imports(name: str, path: Path) -> set[str]:
    """Project modules ``name`` imports at module level or inside functions (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if not typing_only:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                # the longest project module the name refers to
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _without_package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges from a module to the packages that contain it: importing ``a.b`` runs ``a`` first,
    which is the package's own business, not a cycle between modules."""
    return {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}


def test_the_graph_sees_known_edges():
    """The checker itself: it must see edges that certainly exist, or it proves nothing."""
    assert "vectorstore.pipeline" in GRAPH["vectorstore.collection"]
    assert "indexers.base" in GRAPH["indexers.exact"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_without_package_edges(GRAPH)) == []


def test_indexers_never_import_vectorstore():
    bad = {
        m: sorted(d for d in deps if d.startswith("vectorstore"))
        for m, deps in GRAPH.items()
        if m.startswith("indexers")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_library_never_imports_sentence_transformers():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "sentence_transformers" for a in node.names), name
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "sentence_transformers", name


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module on its own, first thing in a new process: an order-dependent import fails here."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    code = f'import importlib; importlib.import_module({name!r})'\n"
        "    import subprocess\n"
        "    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        failed.append((name, r.stderr.strip().splitlines()[-1:]))\n"
        "print(failed)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    names = sorted(n for n in MODULES if not n.endswith("__main__"))
    result = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
