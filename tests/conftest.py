"""Shared fixtures: tiny datasets built in tmp_path, the real samples in ../shared/real,
and throwaway copies of the repository for end-to-end runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "real" / "radiomapseer_map0"
VENV_BIN = Path(sys.executable).parent


def need_real() -> Path:
    if not (REAL / "gain_DPM").is_dir():
        pytest.skip(f"real RadioMapSeer samples not found at {REAL} (only present beside the project checkout)")
    return REAL


@pytest.fixture
def real_root(tmp_path) -> Path:
    """A RadioMapSeer folder rebuilt from ../shared/real (buildings = gain 0 everywhere, Tx = argmax)."""
    from tests.real_layout import real_layout_from_gain_maps

    return real_layout_from_gain_maps(need_real() / "gain_DPM", tmp_path / "real_radiomapseer")


@pytest.fixture(scope="session")
def tiny_radiomapseer(tmp_path_factory) -> Path:
    from radiodiff.synthetic.radiomapseer import synthesize

    out = tmp_path_factory.mktemp("rms") / "radiomapseer"
    synthesize(out, maps=5, tx_per_map=2, seed=1, size_px=64, cars=True, cars_per_map=6)
    return out


def env_with_venv(code: Path | None = None) -> dict:
    """The project's environment; with ``code`` (a checkout, e.g. a test's copy of the repo), its
    ``radiodiff`` package is the one imported (ahead of the editable install of this checkout), so
    an edit to the copy's code is an edit to the code that runs."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    if code is not None and (Path(code) / "radiodiff" / "__init__.py").is_file():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return env


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the project's environment in ``cwd`` (a checkout there runs its own
    code); on failure show its output."""
    p = subprocess.run(cmd, cwd=cwd, env=env_with_venv(cwd), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the checkout (what a clone would hold)."""
    p = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [f for f in p.stdout.split("\0") if f and (REPO / f).is_file()]


def copy_repo(dest: Path) -> Path:
    """A fresh copy of the repository at ``dest`` as a git repo (DVC needs one), at the ci scale."""
    for f in repo_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, dest / f)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    run(["radiodiff", "scale", "ci"], cwd=dest)
    return dest


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """A fresh copy of the repository as a git repo (DVC needs one), at the ci scale."""
    return copy_repo(tmp_path / "repo")


ARTIFACTS = Path(os.environ.get("RADIODIFF_TEST_ARTIFACTS", REPO / "test-artifacts"))


def chromium() -> str:
    """The headless browser for report tests (Debian's chromium), or skip saying why."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")


def edit_params(repo: Path, key: str, value) -> None:
    """Set a dotted key in the copy's params.yaml."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def snakemake_ran(output: str) -> set[str]:
    """Rule names Snakemake executed, from its log."""
    return set(re.findall(r"^\s*(?:local)?rule (\w+):", output, flags=re.M)) - {"all"}


def dvc_ran(output: str) -> set[str]:
    """Stage names `dvc repro` executed."""
    return set(re.findall(r"Running stage '([\w@-]+)'", output))


@pytest.fixture(scope="session")
def random_alexnet(tmp_path_factory) -> Path:
    """A stand-in for torchvision's AlexNet checkpoint (LPIPS's backbone): random weights, the
    features only (~10 MB)."""
    import torch
    import torchvision

    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None)
    path = tmp_path_factory.mktemp("weights") / "alexnet-owt-7be5be79.pth"
    torch.save({k: v for k, v in alex.state_dict().items() if k.startswith("features.")}, path)
    return path


@pytest.fixture(scope="session")
def random_inception(tmp_path_factory) -> Path:
    """A stand-in for torch-fidelity's Inception-v3 weights (FID, KID): its network with random
    weights, saved to a file (~95 MB); nothing is downloaded."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random initialization
            return None

    folder = tmp_path_factory.mktemp("weights")
    torch.save({}, folder / "empty.pth")
    torch.manual_seed(0)
    net = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth"))
    path = folder / "weights-inception-random.pth"
    torch.save(net.state_dict(), path)
    return path
