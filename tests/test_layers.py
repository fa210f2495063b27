"""The package's layers, checked from the source: every import points down, no cycle between packages.

The picture and the reasons are in docs/architecture.md; this is the same stack, bottom first. A
unit may import its own unit and any unit of a lower level; units of one level (sync and intake,
web and cli) may import each other only if that makes no cycle. Imports inside functions count
the same as imports at the top of a module: a local import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STACK: list[tuple[str, ...]] = [
    ("bridge", "bridge.defaults", "bridge.exceptions", "bridge.jsonlimits", "bridge.queue"),
    ("bridge.translate",),  # pure: settings validate the mapping rules with it
    ("bridge.config",),
    ("bridge.storage",),
    ("bridge.clients",),
    ("bridge.ops",),  # observability: a library, no routes
    ("bridge.context",),  # composes settings, Redis, clients and metrics for one process
    ("bridge.sync", "bridge.intake"),
    ("workers",),
    ("bridge.web", "bridge.cli"),  # the operator surfaces: nothing imports them
]
"""Units by level, bottom first."""

SIDE_UNITS = {"bridge.sandbox": {"bridge.defaults"}}
"""Units outside the stack, with everything they may import (the sandbox stands in for the vendors)."""

NO_RQ = ("bridge.sync", "bridge.intake", "bridge.translate", "bridge.storage", "bridge.clients")
"""Units that reach RQ only through the queue API (bridge.queue) and the worker runtime."""

LEVEL = {unit: level for level, units in enumerate(STACK) for unit in units}
UNITS = sorted([unit for unit in [*LEVEL, *SIDE_UNITS] if unit != "bridge"], key=len, reverse=True)


def unit_of(module: str) -> str | None:
    """The unit a dotted module name belongs to (longest prefix), or None outside the project's units."""
    if module == "bridge":
        return "bridge"  # the package itself (its version): a unit of its own, never a prefix
    for unit in UNITS:
        if module == unit or module.startswith(unit + "."):
            return unit
    return None


def module_name(path: Path) -> str:
    """The dotted name of a source file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, text: str | None = None) -> list[tuple[str, int]]:
    """Every module a file imports (at module level and inside functions), with its line."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def source_files() -> list[Path]:
    """The project's modules: bridge/ and workers/."""
    return sorted([*ROOT.joinpath("bridge").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")])


def edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> where, for every import between two different units."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in source_files():
        source = unit_of(module_name(path))
        assert source is not None, f"{path.relative_to(ROOT)} belongs to no unit: add its package to STACK"
        for imported, line in imports_of(path):
            target = unit_of(imported)
            if target is not None and target != source:
                found[(source, target)].append(f"{path.relative_to(ROOT)}:{line} imports {imported}")
    return found


def test_the_walk_sees_the_imports_it_must_judge():
    found = edges()
    # Known downward edges: if these vanish the walk is broken, and every check below passes vacuously.
    assert ("workers", "bridge.sync") in found
    assert ("bridge.web", "bridge.intake") in found
    assert ("bridge.sync", "bridge.storage") in found
    assert len(source_files()) > 50


def test_every_import_points_down_the_stack():
    upward = []
    for (source, target), where in sorted(edges().items()):
        if source in SIDE_UNITS:
            if target not in SIDE_UNITS[source]:
                upward += [f"{line} (the sandbox may import only {sorted(SIDE_UNITS[source])})" for line in where]
        elif target in SIDE_UNITS:
            if LEVEL[source] < LEVEL["bridge.web"]:
                upward += [f"{line} (only the surfaces may start the sandbox)" for line in where]
        elif LEVEL[target] > LEVEL[source]:
            upward += [f"{line} (level {LEVEL[source]} -> {LEVEL[target]})" for line in where]
    assert not upward, "imports pointing up the stack of docs/architecture.md:\n" + "\n".join(upward)


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = defaultdict(set)
    found = edges()
    for source, target in found:
        graph[source].add(target)

    def path_back(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
        return None

    cycles = {tuple(cycle) for unit in list(graph) if (cycle := path_back(unit))}
    explained = [" -> ".join(cycle) + "\n    " + "\n    ".join(found[(cycle[0], cycle[1])]) for cycle in sorted(cycles)]
    assert not cycles, "import cycles between units:\n" + "\n".join(explained)


def test_the_core_of_the_sync_reaches_rq_only_through_the_queue_api():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {imported}"
                 for path in source_files() if unit_of(module_name(path)) in NO_RQ
                 for imported, line in imports_of(path) if imported == "rq" or imported.startswith("rq.")]
    assert not offenders, "use bridge.queue instead:\n" + "\n".join(offenders)


def test_the_checker_catches_an_upward_import_inside_a_function():
    probe = ROOT / "bridge" / "sync" / "probe.py"  # never written: the text is handed over
    (imported, line), *_ = imports_of(probe, "def f():\n    from bridge.web import console\n")
    assert (unit_of(module_name(probe)), unit_of(imported), line) == ("bridge.sync", "bridge.web", 2)
    assert LEVEL["bridge.web"] > LEVEL["bridge.sync"]
