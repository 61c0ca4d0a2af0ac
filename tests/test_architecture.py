"""Keeps the layer rules of ARCHITECTURE.md true by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llmscen"

# layer → llmscen modules (prefixes) it may import
ALLOWED: dict[str, tuple[str, ...]] = {
    "spec": ("llmscen.spec",),
    "compile": ("llmscen.spec", "llmscen.compile"),
    "engine": ("llmscen.spec", "llmscen.compile", "llmscen.engine", "llmscen.assertions"),
    "assertions": ("llmscen.spec", "llmscen.compile", "llmscen.engine.protocol",
                   "llmscen.metrics", "llmscen.assertions"),
    "metrics": ("llmscen.spec", "llmscen.compile", "llmscen.engine.protocol",
                "llmscen.engine.events", "llmscen.metrics"),
    "runners": ("llmscen.spec", "llmscen.compile.plan", "llmscen.engine.protocol",
                "llmscen.runners"),
    "services": ("llmscen.spec", "llmscen.compile.plan", "llmscen.engine.protocol",
                 "llmscen.services"),
    "report": ("llmscen.spec", "llmscen.metrics", "llmscen.assertions", "llmscen.report",
               "llmscen.compile.slo", "llmscen.compile.plan"),
    "driver": ("llmscen.spec", "llmscen.compile", "llmscen.engine", "llmscen.assertions",
               "llmscen.metrics", "llmscen.runners", "llmscen.services", "llmscen.report",
               "llmscen.driver"),
    "testing": ("llmscen.spec", "llmscen.compile", "llmscen.engine", "llmscen.assertions",
                "llmscen.metrics", "llmscen.runners", "llmscen.services", "llmscen.report",
                "llmscen.driver", "llmscen.testing"),
}
ROOT_MODULES = ("llmscen", "llmscen.errors", "llmscen.timer")


def test_the_plugin_facade_exports_what_the_example_plugin_uses() -> None:
    """Third-party plugins import `llmscen.plugin` only (docs/plugins.md)."""
    import llmscen.plugin as facade

    example = PACKAGE.parent / "plugins" / "llmscen-ollama" / "llmscen_ollama"
    for path in example.rglob("*.py"):
        for line, name in _imports(path):
            if name.startswith("llmscen.") or name == "llmscen":
                assert name == "llmscen.plugin", f"{path.name}:{line} imports {name}"
    assert all(hasattr(facade, n) for n in facade.__all__)


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, name in _imports(path):
            if not name.startswith("llmscen.") or name in ROOT_MODULES:
                continue
            if not name.startswith(ALLOWED[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_cli_exits() -> None:
    bad = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("cli",) or rel.name == "__main__.py":
            continue
        text = path.read_text()
        if "sys.exit(" in text and "def main(" not in text:
            bad.append(str(rel))
    assert not bad, f"sys.exit outside cli/: {bad}"


def test_tritonclient_is_imported_lazily() -> None:
    bad = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[:2] in (("services", "triton_sim"), ("runners", "triton")):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:   # module level only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.startswith(("tritonclient", "pytriton")) for n in names):
                bad.append(str(rel))
    assert not bad, f"module-level tritonclient imports: {bad}"


def test_architecture_doc_names_every_layer() -> None:
    doc = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    for layer in layers:
        assert f"`{layer}/`" in doc, layer


def test_core_imports_no_optional_dependencies() -> None:
    """`pip install llmscen` (no extras) must run HTTP scenarios: no numpy, no tritonclient."""
    import subprocess
    import sys

    code = ("import sys, llmscen.cli.main, llmscen.cli.run, llmscen.engine.flow, "
            "llmscen.runners.openai, llmscen.runners.http, llmscen.report.html; "
            "print(sorted(m for m in ('numpy', 'tritonclient', 'pytriton') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def _module_graph() -> dict[str, set[str]]:
    """llmscen module → the llmscen modules it imports (anywhere in the file)."""
    modules = {}
    for path in _modules():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in modules:
                        graph[name].add(full)
                    elif node.module in modules:
                        graph[name].add(node.module)
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name in modules}
    return graph


def test_no_import_cycles() -> None:
    """Also lazy imports inside functions: a cycle there is a layering mistake all the same."""
    graph = _module_graph()
    cycles = []
    state: dict[str, int] = {}     # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)
