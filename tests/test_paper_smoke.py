"""End-to-end: the paper-architecture DAG (params/paper_smoke.yaml) under Snakemake on a CPU.

The preset keeps every network, resolution and crop of paper_jul2025 (the 55 M VAEs, the paper
U-Net with its Swin-B, 256 x 256) and trains each model 2 steps on a few synthetic maps, LPIPS
off (README "Scales"). Several minutes on 2 cores: marked ``slow`` as well as ``e2e``
(``pytest -m "not slow"`` leaves it out).
"""

from __future__ import annotations

import json
import shutil

import pytest

from radiodiff.core.params import load_params
from radiodiff.dag.stages import STAGES
from radiodiff.data.items import VAE_CHANNELS
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.cond_unet import CondUNet, swin_parameters
from radiodiff.models.persistence import count_parameters
from radiodiff.models.pipelines import load_pipeline
from radiodiff.train.ldm import unet_config
from tests.conftest import REPO, copy_repo, run, snakemake_ran

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PAPER = load_params(REPO / "params" / "paper_jul2025.yaml")
VAE_STAGES = {name: f"train_vae_{name}" for name in VAE_CHANNELS}


def paper_vae_parameters(name: str) -> int:
    """Parameters of the paper's VAE (paper_jul2025's model section) for VAE ``name``'s channels."""
    ch = VAE_CHANNELS[name]
    cfg = AutoencoderKLConfig.from_params(
        PAPER[VAE_STAGES[name]]["model"], in_channels=ch, out_channels=ch, resolution=256
    )
    return count_parameters(AutoencoderKL(cfg))


def paper_unet_parameters(dataset: str) -> tuple[int, int]:
    """(all, without the Swin-B) parameters of the paper's U-Net for ``dataset`` (paper_jul2025's
    model section; ICASSP also takes the building and antenna VAEs' latents, 3 channels each)."""
    cfg = unet_config(PAPER[f"train_ldm_{dataset}"]["model"], 3, 6 if dataset == "icassp" else 0, 256)
    unet = CondUNet(cfg)
    total = count_parameters(unet)
    return total, total - sum(p.numel() for p in swin_parameters(unet))


def test_the_paper_architecture_dag_runs_end_to_end_on_a_cpu(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    try:
        check_the_smoke_run(repo)
    finally:  # about 19 GB: training states (a 224 M U-Net with AdamW), models, DVC's cache
        for big in ("state", ".dvc/cache", "results"):
            shutil.rmtree(repo / big, ignore_errors=True)


def check_the_smoke_run(repo):
    run(["radiodiff", "scale", "paper_smoke"], cwd=repo)
    p = run(["snakemake", "--cores", "all"], cwd=repo)
    assert snakemake_ran(p.stdout + p.stderr) == set(STAGES)
    report = repo / "results/report"
    assert (report / "index.html").is_file() and (report / "report.md").is_file()
    assert load_params(repo / "params.yaml")["scale"] == "paper_smoke"

    for name in VAE_STAGES:
        metrics = json.loads((repo / f"results/vae/{name}/metrics.json").read_text())
        expected = paper_vae_parameters(name)
        assert metrics["steps"] == 2 and metrics["parameters"] == expected, name
        assert 50e6 < expected < 60e6  # REFERENCE §3.1: ~55 M
        assert metrics["latent_shape"][1:] == [64, 64]  # 256 x 256 down by 4

    for dataset in ("radiomapseer", "icassp"):
        folder = repo / f"results/ldm/{dataset}"
        metrics = json.loads((folder / "metrics.json").read_text())
        total, without_swin = paper_unet_parameters(dataset)
        unet = load_pipeline(folder / "model").unet
        assert unet.num_parameters() == metrics["parameters"] == total, dataset
        assert metrics["parameters_without_swin"] == without_swin
        assert 80e6 < total - without_swin < 95e6  # timm's Swin-B without its classifier
        assert 100e6 < without_swin < 180e6  # REFERENCE §3.2: ~137 M
        assert metrics["steps"] == 2 and metrics["latent_shape"] == [3, 64, 64]
        assert unet.config.dims == [128, 128, 256, 512, 512] and unet.config.swin_depths == (2, 2, 18, 2)
        summary = json.loads((repo / f"results/evaluate/{dataset}/summary.json").read_text())
        assert summary["radiodiff"]["rmse"] >= 0 and 1 <= summary["protocol"]["maps"] <= 2

    bench = json.loads((repo / "results/benchmark.json").read_text())
    for dataset in ("radiomapseer", "icassp"):
        entry = bench["models"][f"radiodiff/{dataset}"]
        assert entry["image_size"] == 256 and entry["train"]["batch_size"] == 1 and entry["train"]["ms_per_step"] > 0
