"""The package's import structure, read from the source with ``ast`` (every ``import`` statement of ``lrl.*``, at
module level and inside functions): no import cycles; the networks know nothing of the data side; no algorithm
imports from another (shared code lives in ``lrl.networks``, ``lrl.estimators`` or ``lrl.algos.base``; the one
exception is NPG subclassing TRPO); and no ``type: ignore[attr-defined]`` papers over a missing interface."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout holding this test: its lrl/ is what is checked
PACKAGE = ROOT / "lrl"

# (importing algorithm folder, imported module, names it may take from there)
ALLOWED_CROSS_ALGO = {("npg", "lrl.algos.trpo.module"): {"TRPO"},
                      ("rlhf_ppo", "lrl.algos.ppo.loss"): {"clipped_surrogate", "ppo_loss"}}  # PPO maths reused


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # an imported lrl module
    names: tuple[str, ...]  # the names taken from it ("*" for a whole-module import)
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(source: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module of a ``from ... import`` (relative ones resolved against ``source``)."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


@cache
def imports() -> tuple[Import, ...]:
    """Every import of an ``lrl`` module anywhere in ``lrl/``. ``from pkg import name`` imports ``pkg`` and, when
    ``pkg.name`` is a module, that module too."""
    known = modules()
    out: list[Import] = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [Import(source, a.name, ("*",), node.lineno) for a in node.names if a.name in known]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(source, node, path.name == "__init__.py")
                if target in known:
                    out.append(Import(source, target, tuple(a.name for a in node.names), node.lineno))
                out += [Import(source, f"{target}.{a.name}", ("*",), node.lineno) for a in node.names
                        if f"{target}.{a.name}" in known]
    return tuple(out)


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for imp in imports():
        if imp.target != imp.source:
            graph[imp.source].add(imp.target)
    return graph


def _algo_folder(module: str) -> str | None:
    """``X`` for a module inside ``lrl/algos/X/``, else None (``lrl.algos.base`` is in no algorithm's folder)."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["lrl", "algos"] and (PACKAGE / "algos" / parts[2]).is_dir():
        return parts[2]
    return None


def test_the_graph_reader_sees_function_level_and_relative_imports() -> None:
    tree = ast.parse("def f():\n    from . import b\n    from ..c import d\n")
    found = [_resolve("lrl.x.y", n, False) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["lrl.x", "lrl.c"]
    assert strongly_connected_components({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["c"], ["a", "b"]]
    assert any(i.source == "lrl.algos.npg.module" and i.target == "lrl.algos.trpo.module" for i in imports())


def test_no_import_cycles() -> None:
    cycles = [c for c in strongly_connected_components(import_graph()) if len(c) > 1]
    assert not cycles, "modules that import each other (directly or through others): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_networks_import_nothing_from_the_data_side() -> None:
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in imports()
           if i.source.startswith("lrl.networks") and (i.target == "lrl.data" or i.target.startswith("lrl.data."))]
    assert not bad, bad


def test_no_algorithm_imports_from_another() -> None:
    bad = []
    for imp in imports():
        source, target = _algo_folder(imp.source), _algo_folder(imp.target)
        if source is None or target is None or source == target:
            continue
        allowed = ALLOWED_CROSS_ALGO.get((source, imp.target))
        if allowed is None or not set(imp.names) <= allowed:
            bad.append(f"{imp.source}:{imp.line} imports {imp.names} from {imp.target}")
    assert not bad, "shared code belongs in lrl.networks, lrl.estimators or lrl.algos.base: " + "; ".join(bad)


def test_no_attr_defined_ignores() -> None:
    """An ``attr-defined`` ignore reaches past a declared interface (e.g. ``trainer.datamodule.frames``)."""
    needle = "type: ignore[attr-defined]"
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in modules().values()
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if needle in line]
    assert not hits, f"{len(hits)} × {needle!r}: " + ", ".join(hits)
