"""``dvc.yaml`` written from the stage table: ``radiodiff dvc-yaml`` writes it, ``--check`` fails
when the committed file is stale (a test runs it)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import atomic_file
from radiodiff.core.params import load_params, schema_default_params
from radiodiff.dag.code_deps import code_deps
from radiodiff.dag.stages import DVC_PARAMS, STAGES, Stage, param_deps

HEADER = """\
# Written by `radiodiff dvc-yaml` from radiodiff/dag/stages.py: do not edit by hand (a test
# fails when it is stale). The same stages as the Snakemake rules (tests/test_parity.py). Values
# come from params.yaml; code deps are the files each stage's handler imports. Pointing
# data.*.root at a real folder makes the stages below depend on it, and synthesize_* is then
# upstream of nothing (`dvc repro report` skips it).
"""


def stage_entry(stage: Stage, params: dict) -> dict:
    deps = [*stage.deps, *param_deps(stage.name, params), *code_deps(stage.handler)]
    entry: dict = {"cmd": stage.command(DVC_PARAMS), "deps": deps}
    if stage.params:
        entry["params"] = list(stage.params)
    outs = [o.path for o in stage.outs if not o.metric and o.plot is None]
    metrics = [o.path for o in stage.outs if o.metric]
    plots = [{o.path: dict(o.plot)} for o in stage.outs if o.plot is not None]
    for key, values in (("outs", outs), ("metrics", metrics), ("plots", plots)):
        if values:
            entry[key] = values
    return entry


def render() -> str:
    """``dvc.yaml`` for the stage table and ``params.yaml`` (its ``init_from`` folders and
    ``evaluate`` weight files are deps)."""
    params = load_params(DVC_PARAMS) if Path(DVC_PARAMS).is_file() else schema_default_params()
    body = {"stages": {name: stage_entry(s, params) for name, s in STAGES.items()}}
    text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False, width=200)
    lines = []  # a blank line between stages, for the reader
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and lines and lines[-1] != "stages:":
            lines.append("")
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n"


def write(path: str | os.PathLike = "dvc.yaml") -> Path:
    path = Path(path)
    with atomic_file(path) as f:
        f.write(render())
    return path


def check(path: str | os.PathLike = "dvc.yaml") -> None:
    """Raise when ``path`` differs from what :func:`render` writes now."""
    path = Path(path)
    if not path.is_file() or path.read_text() != render():
        raise RadiodiffError(
            f"{path}: stale (the stage table, the library's imports or params.yaml's init_from or evaluate "
            "files changed); run `radiodiff dvc-yaml`"
        )
