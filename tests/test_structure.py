"""The library's import graph: no cycle inside ``densenet/``, and the demo is a leaf that nothing else imports.

The graph is read from the source with ``ast`` (every ``import``, also inside functions, except under
``if TYPE_CHECKING:``), so a lazy import that hides a cycle counts as one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "densenet"
DEMO = "densenet.demo"
#: Modules that may import the demo: a command line that resolves the word ``demo`` to the bundled model.
RESOLVE_THE_WORD_DEMO = {"densenet.audit.cli"}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in typing_only]


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that module ``name`` (file ``path``) imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module
            candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for candidate in candidates:
            while candidate and candidate not in modules:  # ``import a.b.c`` of a name inside a module
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in (root / package).rglob("*.py")}
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_inside_the_library():
    graph = import_graph()
    assert "densenet.model" in graph["densenet.explain.cam"]  # the graph is read, not empty
    assert cycles(graph) == []


def test_nothing_in_the_library_imports_the_demo():
    graph = import_graph()
    offenders = {name: sorted(d for d in deps if d == DEMO or d.startswith(DEMO + "."))
                 for name, deps in graph.items()
                 if not (name == DEMO or name.startswith(DEMO + ".")) and name not in RESOLVE_THE_WORD_DEMO}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(d.startswith(DEMO) for name in RESOLVE_THE_WORD_DEMO for d in graph[name])  # the exception is real


@pytest.mark.parametrize("source, expected", [
    ({"a/__init__.py": "", "a/x.py": "from . import y\n", "a/y.py": "def f():\n    from .x import g\n"},
     [["a.x", "a.y"]]),
    ({"a/__init__.py": "", "a/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .y import T\n",
      "a/y.py": "from a.x import g\n"}, []),
    ({"a/__init__.py": "from .x import g\n", "a/x.py": "import a.y\n", "a/y.py": "import a\n"},
     [["a", "a.x", "a.y"]]),
])
def test_the_checker_finds_cycles_lazy_imports_included(tmp_path, source, expected):
    for rel, text in source.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert cycles(import_graph(tmp_path, "a")) == expected


def test_importing_the_apps_runtime_leaves_torchs_threads_alone():
    import subprocess
    import sys

    code = ("import torch; torch.set_num_threads(1); import dashboard.runtime as r; "
            "assert r.THREADS_PER_JOB >= 1; print(torch.get_num_threads()); r.use_threads(); "
            "print(torch.get_num_threads(), r.THREADS_PER_JOB)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    at_import, (after, wanted) = out.stdout.split("\n")[0], out.stdout.split("\n")[1].split()
    assert at_import == "1" and after == wanted  # set when the app asks, not when the module is imported
