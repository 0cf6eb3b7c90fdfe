"""The code's structure: stages are siblings, libraries sit below them, nothing imports in a circle.

Imports are read with ``ast`` from every module of the project (function-level imports too), so a
lazy import inside a function counts like one at the top.
"""
import ast
from pathlib import Path

from jobs.stages import STAGES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jobs", "udfs", "schemas", "conf")
# The modules allowed to import stage modules: the CLI, the nightly driver, the stage registry.
DRIVERS = {"jobs.cli", "jobs.nightly", "jobs.stages"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts a.b.c when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _stage_modules() -> set[str]:
    return {target.split(":")[0] for target in STAGES.values()}


def test_no_module_but_the_drivers_imports_a_stage_module():
    graph, stages = _graph(), _stage_modules()
    assert stages and all(m.startswith("jobs.") for m in stages)
    offenders = {f"{m} -> {t}" for m, targets in graph.items() if m not in DRIVERS
                 for t in targets & stages}
    assert not offenders, sorted(offenders)


def test_layers_point_down_only():
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith(("schemas", "udfs", "conf")):
            assert not {t for t in targets if t.startswith("jobs")}, (module, targets)
        if module.startswith("schemas"):
            assert not {t for t in targets if t.startswith("udfs")}, (module, targets)
        if module.startswith("jobs.common"):
            assert not {t for t in targets if t.startswith(("jobs.ranking", "jobs.evaluation"))}, (module, targets)


def test_there_are_no_import_cycles():
    graph = _graph()

    def reaches(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    cyclic = sorted(m for m in graph if m in reaches(m))
    assert not cyclic, cyclic


def test_the_graph_sees_real_imports():
    graph = _graph()
    # a check that cannot fail would pass on an empty graph: these edges exist
    assert "jobs.ranking" in graph["jobs.rank_topn"]
    assert any(t.startswith("jobs.ranking") for t in graph["jobs.evaluate"])
    assert any(t.startswith("jobs.ranking") for t in graph["jobs.validate"])
    assert "udfs.models" in graph["udfs.device"]
    assert _stage_modules() & graph["jobs.stages"] == set()     # the registry loads stages lazily
