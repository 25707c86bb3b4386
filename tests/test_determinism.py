"""The same seed gives the same model: a VAE and the LDM trained on it, each run in a fresh
process (where torch's default generator starts from a random seed), end with identical weights."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO, env_with_venv

DRIVER = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    sys.path.insert(0, sys.argv[3])
    from tests.test_ldm_pipeline import DATA, DIFFUSION, TRAIN, UNET
    from radiodiff.data.edges import extract_edges
    from radiodiff.train import ldm, vae

    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    extract_edges(root / "gain/DPM", out / "edges", method="canny", low_threshold=50, high_threshold=150, ksize=3,
                  threshold=40)
    vae_section = {
        "model": dict(ch=8, ch_mult=[1, 1, 2], num_res_blocks=1, z_channels=3, embed_dim=3, attn_resolutions=[],
                      dropout=0.0),
        "loss": dict(kl_weight=1e-6, perceptual_weight=0.0, disc_start=1, disc_weight=0.5, disc_factor=1.0,
                     disc_loss="hinge", disc_num_layers=1, disc_ndf=8, disc_lr=2e-4, logvar_init=0.0, learn_logvar=True,
                     edge_weight=1.0, decoder_noise=0.0, lpips_net="vgg", lpips_backbone_path=None),
        "data": {"augment": False},
        "train": TRAIN,
    }
    params = {
        "data": {"radiomapseer": DATA},
        "runtime": {
            "num_workers": 0, "pin_memory": True, "item_cache_mb": 512, "keep_states": 1,
            "state_dir": str(out / "state"),
        },
        "train_vae_radiomapseer": vae_section,
        "train_ldm_radiomapseer": {
            "model": UNET,
            "diffusion": DIFFUSION,
            "data": {"augment": False},
            "train": TRAIN,
            "previews": {"sample_every": None, "samples": 4},
        },
    }
    vae.run(params, "radiomapseer", out / "vae", root=str(root), edges=str(out / "edges"))
    ldm.run(params, "radiomapseer", out / "ldm", root=str(root), vae=str(out / "vae/model"))
    digest = {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(out.rglob("*.safetensors")) if "state" not in p.parts}
    print(json.dumps(digest))
    """
)


def _train_in_fresh_process(root: Path, out: Path, driver: Path) -> dict:
    p = subprocess.run(
        [sys.executable, str(driver), str(root), str(out), str(REPO)],
        env={**env_with_venv(), "OMP_NUM_THREADS": "2", "RADIODIFF_TB_DIR": str(out / "tb")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_the_same_seed_gives_the_same_vae_and_ldm(tiny_radiomapseer, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    a = _train_in_fresh_process(tiny_radiomapseer, tmp_path / "a", driver)
    b = _train_in_fresh_process(tiny_radiomapseer, tmp_path / "b", driver)
    assert {"vae/model/model.safetensors", "ldm/model/unet/model.safetensors"} <= set(a)
    assert a == b, "two runs of one seed trained different weights"
    assert hashlib.sha256(b"").hexdigest() not in a.values()
