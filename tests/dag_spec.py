"""Dump a pipeline's DAG as JSON, as Snakemake or DVC sees it (used by the parity test).

    python tests/dag_spec.py snakemake|dvc [REPO]

Per stage: the command (log redirection stripped), deps (data and library files), outs and
declared params keys; plus the edges between stages.
Runs in a subprocess so neither engine's global state leaks into pytest.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path


def _edges(stages: dict) -> list[list[str]]:
    producers = {o: name for name, s in stages.items() for o in s["outs"]}
    return sorted([producers[d], name] for name, s in stages.items() for d in s["deps"] if d in producers)


def snakemake_spec(repo: Path) -> dict:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import OutputSettings, ResourceSettings

    stages = {}
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=repo / "Snakefile", workdir=repo)
        for rule in wf._workflow.rules:
            if rule.name == "all":
                continue
            params = dict(rule.params.items())
            cmd = re.sub(r"\s*>\s*\{log\}\s*2>&1\s*$", "", rule.shellcmd)
            cmd = cmd.replace("{params.command}", params.pop("command"))
            stages[rule.name] = {
                "cmd": cmd,
                "deps": sorted(str(p) for p in rule.input),
                "outs": sorted(str(p).rstrip("/") for p in rule.output),
                "params": sorted(k.replace("__", ".") for k in params),
            }
    return {"stages": stages, "edges": _edges(stages)}


def dvc_spec(repo: Path) -> dict:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = {}
    with Repo(str(repo)) as r:
        for s in r.index.stages:
            params = sorted(p for d in s.deps if isinstance(d, ParamsDependency) for p in d.params)
            deps = [d.def_path for d in s.deps if not isinstance(d, ParamsDependency)]
            stages[s.name] = {
                "cmd": s.cmd,
                "deps": sorted(deps),
                "outs": sorted(o.def_path.rstrip("/") for o in s.outs),
                "params": params,
            }
    return {"stages": stages, "edges": _edges(stages)}


if __name__ == "__main__":
    engine = sys.argv[1]
    repo = Path(sys.argv[2] if len(sys.argv) > 2 else ".").resolve()
    os.chdir(repo)
    spec = snakemake_spec(repo) if engine == "snakemake" else dvc_spec(repo)
    json.dump(spec, sys.stdout, indent=1, sort_keys=True)
