"""The package's layers import one way: no import cycles and no upward import, counting imports inside
functions and for type checking too (DESIGN: "an import that runs upward is a design bug"); no module
over 400 lines; each package says in its __init__ what it owns and exports a small API with __all__.

The order, lowest first, and why each sits where it does:
- base: errors, clock, data, inert, lazy: leaf modules every layer may use;
- contract: Phase 4D, pure (the package root only re-exports it);
- files: file primitives (bounded reads, atomic writes, locks, deferred signals, hook points, the byte
  grammar of a controls file): below runtime and audit, which both read and write files;
- runtime: executing a job; audit: the log as data and as a file;
- policy: the workspace's files and who may act; runbook: the plan and the state replay, which read
  policy (roles, allowlists); verification: judging an environment against the runbook;
- changes: the write protocol, which defines the store's seam (changes/seam.py);
- store: the seam's two implementations (files, PostgreSQL): above what it implements;
- oversight: what people read of an environment (plan, report, checkpoints);
- workspace: the composition root that opens an environment on the store slotgen.yaml names;
- cli: parse, call, render.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "slotgen_ops"


def _graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names if alias.name in modules)
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_check_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_contract_imports_nothing_above_it():
    graph = _graph()
    upward = {m: sorted(d for d in deps if not d.startswith("slotgen_ops.contract") and d != "slotgen_ops.errors")
              for m, deps in graph.items() if m.startswith("slotgen_ops.contract")}
    assert all(not deps for deps in upward.values()), upward


LAYERS = ["base", "contract", "files", "runtime", "audit", "policy", "runbook", "verification", "changes",
          "store", "oversight", "workspace", "cli"]
BASE = {"errors", "clock", "data", "inert", "lazy"}
ROOT = {"slotgen_ops": "contract", "slotgen_ops.__main__": "cli"}
MAX_LINES = 400


def _layer(module: str) -> int:
    if module in ROOT:
        return LAYERS.index(ROOT[module])
    top = module.split(".")[1]
    return LAYERS.index("base" if top in BASE else top)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m))


def test_every_module_belongs_to_a_layer():
    for module in _graph():
        assert 0 <= _layer(module) < len(LAYERS), module


def test_nothing_imports_a_layer_above_it():
    assert _upward(_graph()) == []


def test_the_check_sees_an_upward_import():
    graph = {"slotgen_ops.audit.log": {"slotgen_ops.files.atomic", "slotgen_ops.changes.environment"},
             "slotgen_ops.files.atomic": set(), "slotgen_ops.changes.environment": {"slotgen_ops.audit.log"},
             "slotgen_ops.store.files": {"slotgen_ops.changes.seam"}, "slotgen_ops.changes.seam": set()}
    assert _upward(graph) == ["slotgen_ops.audit.log -> slotgen_ops.changes.environment"]
    assert _layer("slotgen_ops.errors") == 0 < _layer("slotgen_ops") < _layer("slotgen_ops.files.hooks")
    assert _layer("slotgen_ops.__main__") == LAYERS.index("cli")


def test_the_graph_counts_every_kind_of_import():
    graph = _graph()
    # inside a function, under TYPE_CHECKING, and `import x.y` as well as `from x import y`
    assert "slotgen_ops.store.pg_env" in graph["slotgen_ops.workspace.wiring"]  # in a function
    assert "slotgen_ops.changes.environment" in graph["slotgen_ops.workspace.wiring"]  # and for types
    assert "slotgen_ops.audit.log" in graph["slotgen_ops.store.files"]


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_each_package_says_what_it_owns_and_exports_a_small_api():
    import importlib

    for init in sorted(PACKAGE.glob("*/__init__.py")):
        if init.parent.name.startswith("_"):
            continue
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc and len(doc.strip().splitlines()) == 2, f"{init}: a two-line docstring"
        package = importlib.import_module(f"slotgen_ops.{init.parent.name}")
        exported = getattr(package, "__all__", None)
        assert exported and len(exported) <= 40, f"{init}: __all__"
        for name in exported:
            assert getattr(package, name) is not None, f"{init.parent.name}.{name}"


def test_the_folders_are_the_layers():
    assert not (PACKAGE / "ops").exists()
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))} == (
        set(LAYERS) - {"base"})
