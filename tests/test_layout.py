"""The layout is the data flow: imports run one way with no cycle, no module is long, the demo stays apart,
deploy.sh uploads exactly what the function imports, and the README's layout section lists every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("entry", "trigger", "core", "checks", "probe", "sources", "report", "demo")
MAX_LINES = 600
# Lower layers never import higher ones (DESIGN: main → pipeline → checks/report → probes/sources → model).
# A module may import its own layer and those below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ("core.model", "core.signals", "core.errors", "core.expect", "core.schema", "core.backoff", "core.logs", "core.redact")),
    ("reaching the revision and Google", ("trigger", "probe", "sources")),
    ("judging and reporting", ("checks", "report", "core.config", "core.runner")),
    ("pipeline", ("core.pipeline", "core.act")),
    ("ways in", ("entry", "demo")),
    ("entry point", ("main",)),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_files() -> list[Path]:
    return [ROOT / "main.py", *sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))]


MODULES = {module_name(p): p for p in product_files()}


def imported(path: Path) -> set[str]:
    """The project modules a file imports anywhere in it: top level, inside functions, under TYPE_CHECKING."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found - {module_name(path)}


GRAPH = {name: imported(path) for name, path in MODULES.items()}


def layer(module: str) -> int:
    """The layer of the longest prefix that names the module (``core.model`` before ``core``)."""
    best = max(((len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or module.startswith(prefix + ".")), default=None)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[1]


def cycle_through(start: str) -> list[str]:
    """A shortest import path from ``start`` back to itself, or [] when there is none."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for dep in sorted(GRAPH[module]):
                if dep == start:
                    return [*paths[module], start]
                if dep not in paths:
                    paths[dep] = [*paths[module], dep]
                    following.append(dep)
        frontier = following
    return []


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    # The walker must see what a cycle hides in: an import inside a function, and one under TYPE_CHECKING.
    assert "demo.run" in GRAPH["entry.cli"]  # inside cmd_demo
    assert "core.pipeline" in GRAPH["entry.function"]  # inside _handle
    assert "entry.function" in GRAPH["demo.run"]  # under TYPE_CHECKING and inside run_demo
    assert "probe.golden.paths" in GRAPH["probe.golden.session"]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_one_that_imports_it_back(module: str) -> None:
    cycle = cycle_through(module)
    assert not cycle, "import cycle: " + " → ".join(cycle)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module: str) -> None:
    upward = sorted(dep for dep in GRAPH[module] if layer(dep) > layer(module))
    assert not upward, (f"{module} (layer {LAYERS[layer(module)][0]!r}) imports "
                        + ", ".join(f"{dep} (layer {LAYERS[layer(dep)][0]!r})" for dep in upward))


@pytest.mark.parametrize("path", [*product_files(), *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_long(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it along a seam"


def test_checks_and_the_report_never_import_each_other() -> None:
    # Same layer, separate roles: a check judges what it measured; the report scores and renders the results.
    crossing = sorted(f"{m} → {d}" for m, deps in GRAPH.items() for d in deps
                      if {m.split(".")[0], d.split(".")[0]} == {"checks", "report"})
    assert crossing == []


def test_the_demo_is_imported_only_by_the_demo_command() -> None:
    importers = sorted(m for m, deps in GRAPH.items() if not m.startswith("demo")
                       and any(d == "demo" or d.startswith("demo.") for d in deps))
    assert importers == ["entry.cli"]
    cli = (ROOT / "entry" / "cli.py").read_text(encoding="utf-8")
    demo_imports = re.findall(r"^\s*from demo[.\w]* import .*$", cli, re.M)
    assert demo_imports and all(line.startswith("    ") for line in demo_imports)  # lazily, inside cmd_demo


def reachable(start: str, skip: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen and not dep.startswith(skip):
                seen.add(dep)
                todo.append(dep)
    return seen


def test_deploy_uploads_every_package_the_function_imports_and_not_the_demo() -> None:
    script = (ROOT / "deploy" / "deploy.sh").read_text(encoding="utf-8")
    uploaded = set(re.search(r"^readonly SOURCE_PACKAGES=\(([^)]*)\)", script, re.M).group(1).split())  # type: ignore[union-attr]
    needed = {m.split(".")[0] for m in reachable("main", skip="demo")} - {"main"}
    assert uploaded == needed
    assert "demo" not in uploaded


def readme_layout() -> tuple[set[str], set[str]]:
    """(files, folders) the README's layout block names, paths relative to the repository."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^## Layout\n.*?^```\n(.*?)^```", text, re.M | re.S)
    assert block, "README.md has no ## Layout section with a code block"
    files: set[str] = set()
    folders: set[str] = set()
    parents: list[tuple[int, str]] = []  # (indent, folder) of the enclosing folders
    for line in block.group(1).splitlines():
        if not line.strip() or not re.match(r"^\s*[\w.]+[/,]?(?:,? [\w.]+[/,]?)*(?:\s{2,}|$)", line):
            continue
        indent = len(line) - len(line.lstrip())
        names = re.split(r",? ", re.split(r"\s{2,}", line.strip())[0])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        prefix = "".join(folder for _, folder in parents)
        for name in names:
            if name.endswith("/"):
                folders.add(prefix + name)
                parents.append((indent, name))
            elif name.endswith((".py", ".j2", ".txt", ".md", ".yaml", ".sh")) or name == "Makefile":
                files.add(prefix + name)
    return files, folders


def test_the_readme_layout_lists_every_module_and_only_what_exists() -> None:
    files, folders = readme_layout()
    modules = {str(p.relative_to(ROOT)) for p in product_files() if p.name != "__init__.py"}
    assert sorted(modules - files) == [], "modules missing from the README layout"
    assert sorted(f for f in files if not (ROOT / f).is_file()) == [], "the README layout names files that do not exist"
    assert sorted(f for f in folders if not (ROOT / f).is_dir()) == [], "the README layout names folders that do not exist"
    assert {f"{p}/" for p in PACKAGES} <= folders
