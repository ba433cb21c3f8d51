"""The data plane's boundaries: it imports nothing of Django or the apps, only a few modules
import Ray, and its modules import each other without cycles."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
DATAPLANE = REPO / "dataplane"
# Ray ships `dataplane/` alone to other hosts; none of these are there.
FORBIDDEN = ("django", "rest_framework", "channels", "castray_site", "clusters", "nodes", "transfers", "bridge")
# The client's optional Ray helper (castray_client.ray) runs in a user's Ray driver, outside the server.
RAY_ALLOWED = (
    "bridge/",
    "tests/",
    "dataplane/actor.py",
    "dataplane/object_store.py",
    "dataplane/reference.py",
    "client/castray_client/ray.py",
)
SKIPPED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "migrations"}


def dataplane_modules() -> list[str]:
    return sorted(f"dataplane.{p.stem}" for p in DATAPLANE.glob("*.py") if p.stem != "__init__")


def test_importing_every_data_plane_module_loads_no_django_and_no_app() -> None:
    code = f"""
import importlib, sys
for name in {dataplane_modules()!r}:
    importlib.import_module(name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {FORBIDDEN!r})
assert not loaded, loaded
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    # -I: a fresh interpreter that ignores PYTHONPATH and the user's site; the repo is the cwd only.
    run = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r})\n{code}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def python_files() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith(".")]
        found += [Path(dirpath) / f for f in filenames if f.endswith(".py")]
    return found


def test_only_the_bridge_and_the_data_plane_actors_import_ray() -> None:
    ray_import = re.compile(r"^\s*(import ray\b|from ray\b)", re.MULTILINE)
    offenders = []
    for path in python_files():
        rel = path.relative_to(REPO).as_posix()
        if not rel.startswith(RAY_ALLOWED) and ray_import.search(path.read_text(encoding="utf-8")):
            offenders.append(rel)
    assert offenders == []


def imports_of(path: Path) -> set[str]:
    """The dataplane modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in dataplane_modules()}


def test_data_plane_modules_import_each_other_without_cycles() -> None:
    graph = {f"dataplane.{p.stem}": imports_of(p) for p in DATAPLANE.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
