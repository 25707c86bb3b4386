"""The library's shape: layers that point down, no import cycle, one file per fact.

The import graph is read from the source (module-level and function-level imports, with
``radiodiff.dag.code_deps.imports_of``, whose completeness the per-stage ``sys.modules`` test
in test_pipeline_e2e.py checks against real runs).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from radiodiff.dag.code_deps import PACKAGE_DIR, imports_of

# Lowest first. A module may import its own subpackage's modules (without a cycle) and any
# module of a lower layer; never one of a higher layer or of a sibling in the same layer.
LAYERS = (
    ("core",),
    ("physics", "diffusion", "dag"),
    ("data", "models", "metrics"),
    ("synthetic", "eda", "train", "evaluate"),
    ("benchmark", "report", "recipes"),  # recipes: the `radiodiff recipes` command's tables
    ("cli",),
)
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found.append(".".join(parts))
    return found


def part_of(module: str) -> str | None:
    """The layer unit of a module: its subpackage, or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def graph() -> dict[str, set[str]]:
    return {m: set(imports_of(m)) for m in modules()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_every_library_module_has_a_layer():
    units = {part_of(m) for m in modules()} - {None}
    assert units <= set(LAYER), f"modules outside the declared layers: {sorted(units - set(LAYER))}"


def test_no_import_cycle_between_modules():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycle_between_subpackages():
    units: dict[str, set[str]] = {}
    for module, imported in graph().items():
        a = part_of(module)
        for other in imported:
            b = part_of(other)
            if a and b and a != b:
                units.setdefault(a, set()).add(b)
    cycle = find_cycle(units)
    assert cycle is None, " -> ".join(cycle)


def test_imports_point_down_the_layers():
    bad = []
    for module, imported in graph().items():
        a = part_of(module)
        for other in imported:
            b = part_of(other)
            if a is None or b is None or a == b:
                continue
            if LAYER[b] >= LAYER[a]:
                kind = "a sibling" if LAYER[b] == LAYER[a] else "a higher layer"
                bad.append(f"{module} imports {other} ({kind})")
    assert not bad, "\n".join(bad)


def test_the_checker_catches_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert LAYER["train"] == LAYER["evaluate"] and LAYER["report"] > LAYER["train"] > LAYER["data"]


# ------------------------------------------------------------------------------ one place per fact


ENCODING_FACTS = {
    "RadioMapSeer floor −147 dB": r"\b147\.0\b|-147\b",
    "RadioMapSeer span 99.16 dB": r"99\.16",
    "RadioMapSeer max −47.84 dB": r"47\.84",
    "ICASSP PL ceiling 160 dB": r"\b160(\.0)?\s*[-−]",
}


@pytest.mark.parametrize("fact, pattern", sorted(ENCODING_FACTS.items()))
def test_encoding_constants_live_in_one_module(fact, pattern):
    """A dataset's encoding constants appear in code only in radiodiff/core/encodings.py
    (docstrings and comments may cite them)."""
    offenders = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if path.name == "encodings.py":
            continue
        for lineno, line in enumerate(_code_lines(path), 1):
            if re.search(pattern, line):
                offenders.append(f"{path.relative_to(PACKAGE_DIR.parent)}:{lineno}: {line.strip()}")
    assert not offenders, f"{fact} outside core/encodings.py:\n" + "\n".join(offenders)


def _code_lines(path: Path) -> list[str]:
    """The file's lines with comments and string literals blanked (line numbers kept)."""
    import io
    import tokenize

    lines = path.read_text().splitlines()
    out = [""] * (len(lines) + 1)  # + the end marker's row
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE):
            continue
        if hasattr(tokenize, "FSTRING_START") and tok.type in (tokenize.FSTRING_START, tokenize.FSTRING_MIDDLE):
            continue
        row = tok.start[0] - 1
        out[row] += " " + tok.string
    return out


def test_the_fact_check_reads_code_not_prose(tmp_path):
    f = tmp_path / "m.py"
    f.write_text('"""PL = 160 - u * 147; 99.16 dB."""\n\nx = 160.0 - 147.0 * u  # 99.16 per unit\n')
    code = "\n".join(_code_lines(f))
    assert re.search(ENCODING_FACTS["ICASSP PL ceiling 160 dB"], code)
    assert re.search(ENCODING_FACTS["RadioMapSeer floor −147 dB"], code)
    assert not re.search(ENCODING_FACTS["RadioMapSeer span 99.16 dB"], code), "docstring and comment are prose"
