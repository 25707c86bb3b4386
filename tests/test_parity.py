"""Snakemake and DVC must describe the same DAG, and both must match radiodiff.stages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from radiodiff.dag.code_deps import code_deps
from radiodiff.dag.stages import DVC_PARAMS, SNAKEMAKE_PARAMS, STAGES
from tests.conftest import REPO, env_with_venv, run


def spec(engine: str, repo: Path = REPO) -> dict:
    p = subprocess.run(
        [sys.executable, str(REPO / "tests" / "dag_spec.py"), engine, str(repo)],
        capture_output=True,
        text=True,
        env=env_with_venv(),
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def specs() -> tuple[dict, dict]:
    return spec("snakemake"), spec("dvc")


def test_same_stage_names(specs):
    smk, dvc = specs
    assert sorted(smk["stages"]) == sorted(dvc["stages"])
    assert set(smk["stages"]) <= set(STAGES), "every rule is a stage radiodiff knows"


def _field(stage: dict, field: str):
    """A stage's field; commands apart from the params file, the one thing the engines differ in."""
    return re.sub(r"--params \S+", "--params FILE", stage[field]) if field == "cmd" else stage[field]


@pytest.mark.parametrize("field", ["cmd", "deps", "outs", "params"])
def test_same_stage_fields(specs, field):
    smk, dvc = specs
    diffs = {
        name: (s[field], dvc["stages"][name][field])
        for name, s in smk["stages"].items()
        if _field(s, field) != _field(dvc["stages"][name], field)
    }
    assert not diffs, f"Snakemake vs DVC {field} differ: {diffs}"


def test_each_engine_hands_the_jobs_its_own_values(specs):
    """DVC's commands read params.yaml; Snakemake's the config it resolved (overrides included)."""
    smk, dvc = specs
    for name in STAGES:
        assert smk["stages"][name]["cmd"].endswith(f"--params {SNAKEMAKE_PARAMS}"), name
        assert dvc["stages"][name]["cmd"].endswith(f"--params {DVC_PARAMS}"), name


def test_same_edges(specs):
    smk, dvc = specs
    assert smk["edges"] == dvc["edges"]
    assert ["validate_radiomapseer", "edges"] in smk["edges"]
    assert ["arrange_icassp", "crop_icassp"] in smk["edges"]


def test_declared_params_and_code_match_the_library_table(specs):
    smk, _ = specs
    for name, s in smk["stages"].items():
        assert s["params"] == sorted(STAGES[name].params), name
        code = sorted(d for d in s["deps"] if d.startswith("radiodiff/"))
        assert code == code_deps(STAGES[name].handler), name


def test_committed_dvc_yaml_is_written_from_the_stage_table(tmp_path):
    """`radiodiff dvc-yaml --check` passes on the committed file and fails on a stale one."""
    run(["radiodiff", "dvc-yaml", "--check"], cwd=REPO)
    stale = tmp_path / "dvc.yaml"
    stale.write_text((REPO / "dvc.yaml").read_text().replace("radiodiff/core/io.py\n", "", 1))
    p = run(["radiodiff", "dvc-yaml", "--check", "--out", str(stale)], cwd=REPO, check=False)
    assert p.returncode == 1 and "stale" in p.stderr and "radiodiff dvc-yaml" in p.stderr


def test_parity_check_catches_a_drift(tmp_path):
    """Edit one stage's params in a copy of dvc.yaml: the DVC spec must then differ."""
    import shutil

    for f in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / f, tmp_path / f)
    shutil.copytree(REPO / "radiodiff", tmp_path / "radiodiff")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    dvc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    dvc["stages"]["edges"]["params"] = ["eda"]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    drifted = spec("dvc", tmp_path)["stages"]["edges"]["params"]
    assert drifted != sorted(STAGES["edges"].params)


def test_init_from_and_evaluate_weights_are_inputs_under_both_engines(tmp_path):
    """A training stage's ``train.init_from`` folder is a dep of that stage in Snakemake's rules
    and in the dvc.yaml `radiodiff dvc-yaml` writes for that params.yaml; the stage's own output
    is refused (a cycle). So are the ``evaluate`` section's weight files of the test-split
    evaluate stages (LPIPS's backbone only when ``evaluate.lpips`` is on)."""
    import shutil

    from radiodiff.core.errors import ParamsError
    from radiodiff.dag.stages import edges, evaluate_deps, init_deps

    for f in ("Snakefile", "params.yaml"):
        shutil.copy(REPO / f, tmp_path / f)
    for d in ("radiodiff", "workflow", "profiles"):
        shutil.copytree(REPO / d, tmp_path / d)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["train_radiounet_radiomapseer"]["train"]["init_from"] = "results/radiounet/icassp/model"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    p = run(["radiodiff", "dvc-yaml", "--check"], cwd=tmp_path, check=False)
    assert p.returncode == 1 and "init_from" in p.stderr  # the committed dvc.yaml lacks the new dep
    run(["radiodiff", "dvc-yaml"], cwd=tmp_path)
    smk, dvc = spec("snakemake", tmp_path), spec("dvc", tmp_path)
    for engine in (smk, dvc):
        assert "results/radiounet/icassp/model" in engine["stages"]["train_radiounet_radiomapseer"]["deps"]
        assert ["train_radiounet_icassp", "train_radiounet_radiomapseer"] in engine["edges"]
    assert smk["edges"] == dvc["edges"]
    assert ("train_radiounet_icassp", "train_radiounet_radiomapseer") in edges(params)
    params["train_radiounet_radiomapseer"]["train"]["init_from"] = "results/radiounet/radiomapseer/model/"
    with pytest.raises(ParamsError, match=r"train_radiounet_radiomapseer\.train\.init_from: .* own output"):
        init_deps("train_radiounet_radiomapseer", params)

    params["train_radiounet_radiomapseer"]["train"]["init_from"] = None
    weights = {"lpips_backbone_path": "models/alexnet.pth", "fid_weights": "models/inception.pth"}
    params["evaluate"] |= {"lpips": False, "lpips_net": "alex", **weights}
    assert evaluate_deps("evaluate_icassp", params) == ["models/inception.pth"]  # LPIPS off: its file unused
    params["evaluate"]["lpips"] = True
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["radiodiff", "dvc-yaml"], cwd=tmp_path)
    smk, dvc = spec("snakemake", tmp_path), spec("dvc", tmp_path)
    for engine in (smk, dvc):
        for ds in ("radiomapseer", "icassp"):
            assert set(weights.values()) <= set(engine["stages"][f"evaluate_{ds}"]["deps"])
            assert "evaluate" in engine["stages"][f"evaluate_{ds}"]["params"]
        assert not set(weights.values()) & set(engine["stages"]["evaluate_icassp_full"]["deps"])
    assert smk["edges"] == dvc["edges"]
