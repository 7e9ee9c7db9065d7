"""The package's structure, read from its source with ast and graphlib (no
import is run): no import cycle, vocabularies at the bottom, the probes below
their registry, and rooms small enough for one job."""
import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "lstrace"
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 300, 50


def module_name(path):
    parts = ("lstrace",) + path.relative_to(PKG).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(mod, node):
    """Modules of lstrace an import statement names (a `from X import y` names
    X.y when that is a module, else X)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    package = mod if MODULES[mod].name == "__init__.py" else mod.rsplit(".", 1)[0]
    base = package
    for _ in range(node.level - 1):
        base = base.rsplit(".", 1)[0]
    base = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
    out = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    if len(out) < len(node.names) and base in MODULES:
        out.append(base)
    return out


def imports():
    """{module: set of lstrace modules it imports}, top-level and in functions."""
    graph = {}
    for mod, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(d for d in _resolve(mod, node) if d != mod)
        graph[mod] = deps
    return graph


def reach(graph, start):
    seen, todo = set(), [start]
    while todo:
        for d in graph[todo.pop()]:
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycle():
    try:
        graphlib.TopologicalSorter(imports()).prepare()
    except graphlib.CycleError as e:
        pytest.fail(f"import cycle: {' -> '.join(e.args[1])}")


def test_layout_is_a_leaf():
    assert imports()["lstrace.layout"] == set()


def test_probe_modules_are_below_their_registry():
    """A probe module (or what it imports) never imports the registry or the
    core that iterates it: the registry finds the probes, not the reverse."""
    graph = imports()
    above = {"lstrace.probes", "lstrace.snapshot", "lstrace.decode", "lstrace.counters",
             "lstrace.plan", "lstrace.program", "lstrace.session", "lstrace.exporter",
             "lstrace.render"}
    for mod in MODULES:
        if mod.startswith("lstrace.probes."):
            assert not reach(graph, mod) & above, (mod, reach(graph, mod) & above)


def test_rooms_are_small():
    """No module (Python or C) over 300 lines, no Python function over 50."""
    big = []
    for mod, path in MODULES.items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            big.append(f"{mod}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    big.append(f"{mod}.{node.name}: {n} lines")
    for path in sorted(p for p in (ROOT / "bpf").rglob("*") if p.suffix in (".c", ".h")):
        n = path.read_text().count("\n")
        if n > MAX_MODULE_LINES:
            big.append(f"{path.relative_to(ROOT)}: {n} lines")
    assert not big, big
