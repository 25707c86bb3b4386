"""The library files a stage runs: the static import closure of its handler module.

Every ``import`` and ``from … import`` of a ``radiodiff`` module is followed, at module level and
inside functions alike, transitively; ``from radiodiff.pkg import name`` also counts
``radiodiff/pkg/name.py`` when that is a module. A module brings the ``__init__.py`` of every
package above it (Python runs them on import). The result is a sorted list of paths relative to
the repository root (``radiodiff/core/io.py``, …), which the Snakemake rules and the ``dvc.yaml``
writer both declare as the stage's code inputs, so an edit re-runs exactly the stages that run
the edited file.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "radiodiff"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../radiodiff
REPO_ROOT = PACKAGE_DIR.parent


def module_path(module: str) -> Path | None:
    """The file of a ``radiodiff`` module (a ``.py`` file or a package's ``__init__.py``), or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages_above(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


@cache
def imports_of(module: str) -> tuple[str, ...]:
    """The ``radiodiff`` modules ``module`` imports anywhere in its file (sorted)."""
    path = module_path(module)
    if path is None:
        raise ValueError(f"{module}: not a radiodiff module")
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found.add(node.module)
            # `from radiodiff.pkg import mod` imports the module radiodiff.pkg.mod
            found.update(f"{node.module}.{a.name}" for a in node.names if module_path(f"{node.module}.{a.name}"))
    return tuple(sorted(m for m in found if module_path(m) is not None))


def closure(root: str) -> list[str]:
    """Every ``radiodiff`` module importing ``root`` runs: itself, what it imports, transitively,
    and the packages above each (sorted)."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(m for m in (*imports_of(module), *_packages_above(module)) if m not in seen)
    return sorted(seen)


def code_deps(handler: str) -> list[str]:
    """The files of :func:`closure` as repository-relative paths (``radiodiff/...``), sorted."""
    return sorted(module_path(m).relative_to(REPO_ROOT).as_posix() for m in closure(handler))
