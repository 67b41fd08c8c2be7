"""The layout holds: no symlinks, rooms of at most 15 modules, no import cycles, one version, one
atomic-write and one lock helper, and a command line that starts without torch."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import tomllib

import lrbench

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lrbench"
MAX_MODULES = 15


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every lrbench module that ``path`` imports, at any level (functions, TYPE_CHECKING too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule where one exists
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    return found - {name}


def test_no_symlinks_in_the_repository():
    files = subprocess.run(["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    links = [line.split("\t")[1] for line in files if line.startswith("120000")]
    assert not links, f"symlinks tracked by git: {links}"
    assert not (PACKAGE / "cli.py").is_symlink()


def test_no_folder_holds_more_than_15_plain_modules():
    crowded = {}
    for folder in [PACKAGE, *[p for p in PACKAGE.rglob("*") if p.is_dir()]]:
        plain = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        if len(plain) > MAX_MODULES:
            crowded[str(folder.relative_to(ROOT))] = len(plain)
    assert not crowded, crowded


def test_no_import_cycles_in_lrbench():
    modules = _modules()
    graph = {name: _imports(path, name, set(modules)) for name, path in modules.items()}
    # depth-first search for a back edge; report the cycle it closes
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_a_function_level_import(tmp_path):
    """The check above would pass vacuously if ``_imports`` missed imports inside functions."""
    path = tmp_path / "a.py"
    path.write_text("def f():\n    from lrbench.bench.results import records\n")
    assert _imports(path, "lrbench.x", set(_modules())) == {"lrbench.bench.results.records"}


def test_one_version_string_from_the_package_metadata():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lrbench.__version__ == metadata.version("lrbench") == declared
    spelled = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if re.search(rf"['\"]{re.escape(declared)}['\"]", p.read_text())]
    assert not spelled, f"the version is written out in {spelled}"


def test_one_atomic_write_and_one_lock_helper():
    """Only lrbench/files.py renames a temporary file into place or takes an flock."""
    offenders = {}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "implementations").rglob("*.py")]:
        if path == PACKAGE / "files.py":
            continue
        text = path.read_text()
        hits = [word for word in ("os.replace(", "os.rename(", "fcntl.flock(", ".rename(")
                if word in text]
        if hits:
            offenders[str(path.relative_to(ROOT))] = hits
    assert not offenders, offenders


def _fresh_modules(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(*sorted(sys.modules))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_lrbench_and_the_help_do_not_import_torch():
    assert "torch" not in _fresh_modules("import lrbench")
    loaded = _fresh_modules("from click.testing import CliRunner\nfrom lrbench.cli import main\n"
                            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
                            "assert CliRunner().invoke(main, ['run', '--help']).exit_code == 0")
    heavy = {"torch", "pandas", "matplotlib", "fvcore"} & loaded
    assert not heavy, f"`lrbench --help` imported {heavy}"


def test_the_public_api_is_reached_lazily():
    for name in lrbench.__all__:
        assert getattr(lrbench, name) is not None
    from lrbench.layer import LocalRelation2d
    from lrbench.registry import get

    assert lrbench.LocalRelation2d is LocalRelation2d and lrbench.get_implementation is get
    assert callable(lrbench.models.lrnet50) and "lrnet50" in lrbench.models.CONFIGS
