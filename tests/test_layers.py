"""The engine's layers point one way.

Every import of every module under ``engine/`` is read with :mod:`ast` (imports inside functions
and under ``TYPE_CHECKING`` included, so laziness cannot hide a dependency), folded to the
engine's packages (``engine.config``, ``engine.delivery``, ...) and top-level modules
(``engine.pilot``, ...). The resulting graph must have no cycle, and nothing below the CLI may
import ``engine.commands``: commands parse, call the library and format; the library never
reaches back up into them.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
# The CLI: what may import engine.commands.
CLI = ("engine.cli", "engine.__main__", "engine.commands")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from engine import delivery` imports the package engine.delivery
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def layer(module: str) -> str:
    """engine.X for a package or a top-level module X."""
    return ".".join(module.split(".")[:2])


def import_graph(root: Path) -> dict[str, dict[str, list[str]]]:
    """layer -> imported layer -> ["engine/x/y.py:LINE", ...] (an edge between different layers)."""
    engine = root / "engine"
    known = {layer(module_name(path, root)) for path in engine.rglob("*.py")}
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(engine.rglob("*.py")):
        source = layer(module_name(path, root))
        for target, line in imports_of(path, root):
            if not target.startswith("engine."):
                continue
            target_layer = layer(target)
            if target_layer in known and target_layer != source:
                graph[source][target_layer].append(f"{path.relative_to(root)}:{line}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one layer (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(graph: dict[str, dict[str, list[str]]], component: list[str]) -> str:
    lines = [" <-> ".join(component)]
    for source in component:
        for target in component:
            if target in graph.get(source, {}):
                lines.append(f"  {source} -> {target}: {', '.join(graph[source][target][:5])}")
    return "\n".join(lines)


def test_the_engine_packages_import_each_other_without_a_cycle() -> None:
    graph = import_graph(ROOT)
    assert "engine.config" in graph and "engine.delivery" in graph  # the walk saw the tree
    found = cycles(graph)
    assert not found, "import cycles between the engine's packages:\n" + "\n".join(describe(graph, c) for c in found)


def test_nothing_below_the_cli_imports_the_commands() -> None:
    offenders = []
    for path in sorted(ENGINE.rglob("*.py")):
        name = module_name(path, ROOT)
        if name.startswith(CLI):
            continue
        offenders += [
            f"{path.relative_to(ROOT)}:{line} imports {target}"
            for target, line in imports_of(path, ROOT)
            if target == "engine.commands" or target.startswith("engine.commands.")
        ]
    assert not offenders, "\n".join(offenders)


def copy_of_engine(tmp_path: Path) -> Path:
    shutil.copytree(ENGINE, tmp_path / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_cycle_added_back_inside_a_function_is_found(tmp_path: Path) -> None:
    """The check sees through function-level imports: the migrations calling back into delivery
    (as they did before the table builders moved under engine/state) is reported, with its line."""
    root = copy_of_engine(tmp_path)
    migrations = root / "engine" / "state" / "migrations.py"
    migrations.write_text(
        migrations.read_text(encoding="utf-8") + "\n\ndef _late() -> None:\n    from engine.delivery import ledger\n",
        encoding="utf-8",
    )
    graph = import_graph(root)
    found = cycles(graph)
    assert any({"engine.state", "engine.delivery"} <= set(component) for component in found)
    assert "engine/state/migrations.py:" in describe(graph, next(c for c in found if "engine.state" in c))


def test_a_library_module_importing_a_command_is_found(tmp_path: Path) -> None:
    root = copy_of_engine(tmp_path)
    (root / "engine" / "pilot.py").write_text(
        (root / "engine" / "pilot.py").read_text(encoding="utf-8") + "\nfrom engine.commands import common\n",
        encoding="utf-8",
    )
    graph = import_graph(root)
    assert "engine.commands" in graph["engine.pilot"]


def test_validate_imports_neither_sqlalchemy_nor_httpx(tmp_path: Path) -> None:
    """`campaigns validate` runs on every commit in pre-commit and CI: it stays free of the
    state's and the providers' libraries (about 150 ms of imports) when there is no directory."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("platform.yaml", "campaigns", "creatives", "audiences", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, repo / name)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "engine", "validate", "--repo", str(repo), "--no-cache"],
        capture_output=True,
        text=True,
        env={**os.environ, "CAMPAIGNS_STATE": ""},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "engine.validation.pipeline" in imported  # importtime did report
    assert not {name for name in imported if name.split(".")[0] in {"sqlalchemy", "httpx", "httpcore"}}
