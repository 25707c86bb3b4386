"""End-to-end: the DAG at the ci scale in a throwaway copy of the repo, under Snakemake and DVC.

Checks what ran (parsed from each engine's log), that a param edit re-runs exactly its stage
and what depends on it, and that pointing data.radiomapseer.root at a real folder runs the
RadioMapSeer stages on it without synthesis.
"""

from __future__ import annotations

import json

import pytest

from radiodiff.stages import STAGES
from tests.conftest import dvc_ran, edit_params, run, snakemake_ran

pytestmark = pytest.mark.e2e

ALL = set(STAGES)
ICASSP_VAES = {"train_vae_building", "train_vae_antenna", "train_vae_radio"}
RMS_MODELS = {"train_ldm_radiomapseer", "sample_radiomapseer", "evaluate_radiomapseer", "benchmark"}
ICASSP_MODELS = {"train_ldm_icassp", "train_radiounet_icassp", "sample_icassp", "evaluate_icassp", "benchmark"}
ICASSP_LDM = {"train_ldm_icassp", "sample_icassp", "evaluate_icassp", "benchmark"}
METRICS = {"nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "rmse_whole_set", "ms_per_map"}


def check_outputs(repo):
    for ds in ("radiomapseer", "icassp"):
        report = json.loads((repo / f"data/validation/{ds}.json").read_text())
        assert report["ok"] and report["counts"]["samples"] > 0
    n_gain = len(list((repo / "data/raw/radiomapseer/gain/DPM").glob("*.png")))
    assert n_gain == 6 * 3 and len(list((repo / "data/radiomapseer/edges").glob("*.png"))) == n_gain
    assert (repo / "data/icassp/crops/metadata.csv").is_file()
    assert (repo / "data/icassp/arranged/metadata.csv").is_file()
    assert json.loads((repo / "results/eda/eda.json").read_text())
    for name in ("radiomapseer", "building", "antenna", "radio"):
        metrics = json.loads((repo / f"results/vae/{name}/metrics.json").read_text())
        assert metrics["psnr"] > 0 and metrics["latent_shape"][1:] == [8, 8]
        assert (repo / f"results/vae/{name}/model/config.json").is_file()
        assert (repo / f"results/vae/{name}/train_log.csv").read_text().startswith("step")
    for ds in ("radiomapseer", "icassp"):
        summary = json.loads((repo / f"results/evaluate/{ds}/summary.json").read_text())
        assert {"radiodiff", "radiounet", "physics"} <= set(summary)
        for method in ("radiodiff", "radiounet", "physics"):
            assert METRICS <= set(summary[method]), (ds, method)
            assert 0 <= summary[method]["rmse"] <= 1 and summary[method]["ms_per_map"] > 0
            pngs = sorted(p.name for p in (repo / f"results/samples/{ds}/{method}").glob("*.png"))
            assert len(pngs) == summary["protocol"]["maps"] > 0
        rows = (repo / f"results/evaluate/{ds}/per_sample.csv").read_text().splitlines()
        assert len(rows) == 1 + 3 * 2 * summary["protocol"]["maps"]  # methods x scopes x maps
    icassp = json.loads((repo / "results/evaluate/icassp/summary.json").read_text())
    assert icassp["radiodiff"]["per_building"] and icassp["radiodiff"]["per_band"]
    bench = json.loads((repo / "results/benchmark.json").read_text())
    assert set(bench["models"]) == {f"{k}/{d}" for k in ("radiodiff", "radiounet") for d in ("radiomapseer", "icassp")}
    assert set(bench["models"]["radiodiff/icassp"]["sample_ms_per_map"]) == {"1", "2"}
    for name in ("ldm/radiomapseer", "ldm/icassp", "radiounet/radiomapseer", "radiounet/icassp"):
        assert json.loads((repo / f"results/{name}/metrics.json").read_text())["steps"] > 0
    assert not list(repo.glob("data/**/.*.tmp-*")), "no temporary leftovers"
    assert not list(repo.glob("results/**/.*.tmp-*")), "no temporary leftovers"


def snakemake(repo, *targets):
    p = run(["snakemake", "--cores", "2", *targets], cwd=repo)
    return snakemake_ran(p.stdout + p.stderr)


def dvc_repro(repo, *targets):
    p = run(["dvc", "repro", *targets], cwd=repo)
    return dvc_ran(p.stdout + p.stderr)


def test_snakemake_runs_the_dag_and_reruns_only_what_an_edit_touches(repo_copy):
    assert snakemake(repo_copy) == ALL
    check_outputs(repo_copy)
    assert snakemake(repo_copy) == set(), "a second run has nothing to do"
    edit_params(repo_copy, "edges.low_threshold", 30)
    assert snakemake(repo_copy) == {"edges", "train_vae_radiomapseer", *RMS_MODELS}
    edit_params(repo_copy, "crop_icassp.margin_px", 6)
    assert snakemake(repo_copy) == {"crop_icassp", *ICASSP_VAES, *ICASSP_MODELS}
    edit_params(repo_copy, "train_vae_radio.train.lr", 1.0e-3)
    assert snakemake(repo_copy) == {"train_vae_radio", *ICASSP_LDM}
    edit_params(repo_copy, "sample.steps", 3)
    assert snakemake(repo_copy) == {"sample_radiomapseer", "sample_icassp", "evaluate_radiomapseer", "evaluate_icassp"}


def test_dvc_repro_runs_the_dag_and_reruns_only_what_an_edit_touches(repo_copy):
    assert dvc_repro(repo_copy) == ALL
    check_outputs(repo_copy)
    assert dvc_repro(repo_copy) == set()
    edit_params(repo_copy, "edges.low_threshold", 30)
    assert dvc_repro(repo_copy) == {"edges", "train_vae_radiomapseer", *RMS_MODELS}
    edit_params(repo_copy, "data.icassp.split.seed", 7)
    assert dvc_repro(repo_copy) == {"arrange_icassp", "crop_icassp", "eda", *ICASSP_VAES, *ICASSP_MODELS}
    edit_params(repo_copy, "train_vae_radio.train.lr", 1.0e-3)
    assert dvc_repro(repo_copy) == {"train_vae_radio", *ICASSP_LDM}
    edit_params(repo_copy, "train_radiounet_radiomapseer.train.lr", 2.0e-3)  # ci has 1e-3
    assert dvc_repro(repo_copy) == {
        "train_radiounet_radiomapseer",
        "sample_radiomapseer",
        "evaluate_radiomapseer",
        "benchmark",
    }


def test_real_radiomapseer_root_runs_without_synthesis(repo_copy, real_root):
    edit_params(repo_copy, "data.radiomapseer.root", str(real_root))
    assert snakemake(repo_copy, "data/radiomapseer/edges") == {"validate_radiomapseer", "edges"}
    assert not (repo_copy / "data/raw/radiomapseer").exists()
    assert len(list((repo_copy / "data/radiomapseer/edges").glob("*.png"))) == 4
    report = json.loads((repo_copy / "data/validation/radiomapseer.json").read_text())
    assert report["root"] == str(real_root) and report["counts"] == {"maps": 1, "samples": 4, "tx_per_map": [4]}

    assert dvc_repro(repo_copy, "edges") == {"validate_radiomapseer", "edges"}
    assert not (repo_copy / "data/raw/radiomapseer").exists()
