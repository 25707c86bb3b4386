"""Where radiodiff installs: the package's metadata holds ranges (the lock holds the pins), the
pipeline's engines are an extra, and the library's own commands run without them."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement

from radiodiff.core.io import read_png, write_png
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.cond_unet import CondUNet
from radiodiff.models.map_model import RadioDiffRecord
from radiodiff.models.radiodiff import RadioDiffPipeline
from radiodiff.models.unet_config import CondUNetConfig

REPO = Path(__file__).resolve().parents[1]
BLOCKER = REPO / "tests" / "fixtures" / "without_engines"  # its sitecustomize.py blocks the engines
ENGINES = ("snakemake", "dvc", "lpips")
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def lock_versions() -> dict[str, str]:
    """requirements.lock's exact versions, by normalized name."""
    pins = (line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line)
    return {normalize(name): version.strip() for name, version in pins}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_metadata_holds_ranges_and_the_engines_are_an_extra():
    """No exact pin and no Python ceiling in the package (pip installs it beside another torch
    or Python 3.12); Snakemake, DVC and LPIPS only in ``radiodiff[pipeline]``."""
    assert PROJECT["requires-python"] == ">=3.11"
    extras = PROJECT["optional-dependencies"]
    for req in (Requirement(r) for r in [*PROJECT["dependencies"], *(r for e in extras.values() for r in e)]):
        assert not any(s.operator in ("==", "===") for s in req.specifier), f"{req}: an exact pin belongs in the lock"
    library = {normalize(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert library.isdisjoint(ENGINES)
    assert {normalize(Requirement(r).name) for r in extras["pipeline"]} >= set(ENGINES)
    assert {"torch", "torchvision", "jsonschema", "xxhash"} <= library


def test_the_lock_satisfies_the_package_and_its_pipeline_extra():
    """./run.sh installs the lock, then radiodiff without dependencies: every requirement of the
    library and of its pipeline extra must be in the lock at an allowed version, and run.sh's
    import check must import the engines."""
    lock = lock_versions()
    for text in [*PROJECT["dependencies"], *PROJECT["optional-dependencies"]["pipeline"]]:
        req = Requirement(text)
        version = lock.get(normalize(req.name))
        assert version is not None, f"requirements.lock: {req.name} missing ({text} in pyproject.toml)"
        assert req.specifier.contains(version, prereleases=True), f"requirements.lock: {req.name}=={version} not {req}"
    check = next(line for line in (REPO / "run.sh").read_text().splitlines() if "-c 'import radiodiff" in line)
    assert all(f" {engine}" in check for engine in ENGINES), check


def test_the_library_imports_no_engine_and_lpips_only_where_lpips_runs():
    """Every module of radiodiff (predict, evaluate --model, import, from_pretrained, the stages'
    handlers) imports neither Snakemake nor DVC; LPIPS only inside the loss that uses it."""
    found = []
    for path in sorted((REPO / "radiodiff").rglob("*.py")):
        tree = ast.parse(path.read_text())
        module_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            rel = path.relative_to(REPO).as_posix()
            found += [(rel, n, id(node) in module_level) for n in names if n.partition(".")[0] in ENGINES]
    assert found == [("radiodiff/models/losses.py", "lpips", False)]


def tiny_radiodiff_folder(folder: Path) -> Path:
    """An untrained RadioMapSeer RadioDiff model folder at 32 px (1 m per pixel)."""
    torch.manual_seed(0)
    vae = AutoencoderKL(
        AutoencoderKLConfig(in_channels=1, out_channels=1, resolution=32, ch=8, ch_mult=(1, 1, 2), z_channels=3)
    )
    unet = CondUNet(
        CondUNetConfig(
            image_size=32, dim=8, dim_mults=(1, 2), resnet_groups=4, time_dim=16, attn_heads=1, attn_dim_head=8,
            cross_windows=(1, 1), swin_embed_dim=8, swin_depths=(1, 1), swin_num_heads=(1, 1), swin_window_size=4,
        )
    )  # fmt: skip
    record = RadioDiffRecord(
        dataset="radiomapseer", condition="static", image_size=32, metres_per_pixel=1.0, scale_factor=1.0,
        sampling_steps=1,
    )  # fmt: skip
    return RadioDiffPipeline(unet, vae, record).save_pretrained(folder)


def without_engines_env() -> dict:
    """The environment of a library-only install: the checkout first, the engines blocked."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # a tiny model; busy shared cores stall two threads
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BLOCKER), str(REPO), env.get("PYTHONPATH")]))
    return env


def test_predict_runs_without_the_pipeline_engines(tmp_path):
    """``radiodiff predict`` (model folder → from_pretrained → sampling → PNG) in a process where
    Snakemake, DVC and LPIPS cannot be imported."""
    env = without_engines_env()
    for engine in ENGINES:  # the blocker works
        p = subprocess.run([sys.executable, "-c", f"import {engine}"], env=env, capture_output=True, text=True)
        assert p.returncode != 0 and "blocked" in p.stderr, engine
    model = tiny_radiodiff_folder(tmp_path / "model")
    buildings = np.zeros((32, 32), np.uint8)
    buildings[4:12, 16:28] = 255
    write_png(tmp_path / "buildings.png", buildings)
    cmd = [sys.executable, "-m", "radiodiff.cli", "predict", "--model", str(model), "--buildings", "buildings.png",
           "--tx", "20,8", "--out", "pred"]  # fmt: skip
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    printed = p.stdout.strip().splitlines()
    assert len(printed) == 1 and printed[0].endswith(".png")
    pred = read_png(tmp_path / printed[0], "L")
    assert pred.shape == (32, 32) and (pred[buildings > 0] == 0).all()


def test_lpips_missing_is_one_error_naming_the_key(tmp_path, monkeypatch):
    """With perceptual_weight > 0 and no lpips package (a library-only install), the VAE loss
    stops with a ParamsError that says what to install or set."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.models.losses import LPIPSLoss

    backbone = tmp_path / "vgg16.pth"
    backbone.write_bytes(b"never read: lpips is missing first")
    monkeypatch.setitem(sys.modules, "lpips", None)  # `import lpips` raises ImportError
    with pytest.raises(ParamsError, match=r"perceptual_weight.*radiodiff\[lpips\]"):
        LPIPSLoss("vgg", backbone)
