"""Benchmark: what checkpoints that know they are whole cost at the paper scale.

Builds the paper_smoke LDM's U-Net (paper_jul2025's network: the original's blocks and a Swin-B,
about 224 M parameters) from ``params/paper_smoke.yaml``, gives it AdamW moments (one step on zero
gradients) and an EMA copy, and saves its full training state with the engine's own
:class:`~radiodiff.train.checkpoint.Saver` (Accelerate's ``save_state`` + the engine's part, about
3.6 GB), and times the save, the per-file checksums the marker records
(:func:`~radiodiff.train.checkpoint.file_records` on the files just written, as the save computes
them: timed alone, since the disk's write-back makes whole saves vary by more than the checksums
cost) and the verification a resume runs (:func:`~radiodiff.train.checkpoint.damage`: sizes and
xxh3-128 of every file), with the files in the page cache and, where the kernel allows dropping it
(root), read from disk.

    python benchmarks/checkpoint_io.py --dir /scratch/ckpt-bench --repeats 3 --out checkpoint_io.json

Needs about 3.6 GB of free disk under ``--dir`` (deleted at the end). Measured on this
project's 2-core VM: see the README ("exact resume").
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from radiodiff.core.params import load_params
from radiodiff.models.cond_unet import CondUNet
from radiodiff.train import checkpoint
from radiodiff.train.config import TrainConfig
from radiodiff.train.distributed import make_accelerator
from radiodiff.train.ldm import unet_config

REPO = Path(__file__).resolve().parents[1]


def drop_page_cache() -> bool:
    """Ask the kernel to drop its page cache (root only); False when it refuses."""
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def build_state(preset: Path) -> tuple:
    """The paper_smoke RadioMapSeer U-Net, prepared with AdamW (moments filled) and an EMA copy."""
    section = load_params(preset)["train_ldm_radiomapseer"]
    size = int(load_params(preset)["data"]["radiomapseer"]["image_size"])
    cfg_unet = unet_config(section["model"], latent_channels=3, extra_channels=0, image_size=size)
    torch.manual_seed(0)
    unet = CondUNet(cfg_unet)
    cfg = TrainConfig.with_defaults(keep_states=1)
    accelerator = make_accelerator(cfg)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    unet, opt = accelerator.prepare(unet, opt)
    for p in unet.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # AdamW's two moments per parameter, as a trained run's state holds them
    opt.zero_grad(set_to_none=True)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    return accelerator, unet, ema, cfg


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="scratch folder for the saved states (emptied at the end)")
    ap.add_argument("--preset", default=str(REPO / "params" / "paper_smoke.yaml"), help="params preset of the U-Net")
    ap.add_argument("--repeats", type=int, default=3, help="saves timed (default 3; medians reported)")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    accelerator, unet, ema, cfg = build_state(Path(args.preset))
    params = sum(p.numel() for p in unet.parameters())
    root = Path(args.dir)
    save_s, checksum_s, verify_cached, verify_disk, state_bytes = [], [], [], [], 0
    records = checkpoint.file_records
    try:
        for i in range(args.repeats + 1):  # the first save warms the allocator and the disk: untimed
            folder = root / f"save-{i}"
            saver = checkpoint.Saver(folder, accelerator, {"unet": unet}, ema, cfg, n_train=1)
            checkpoint.file_records = lambda f: {}  # the save without its checksums...
            t0 = time.perf_counter()
            saver.save(checkpoint.Counters(step=1))
            elapsed = time.perf_counter() - t0
            checkpoint.file_records = records
            ckpt = checkpoint.latest_checkpoint(folder)
            state_bytes = folder_bytes(ckpt)
            t0 = time.perf_counter()
            files = records(ckpt)  # ...and the checksums alone, as the save computes them (files just written)
            checksums = time.perf_counter() - t0
            info = {"files": files}
            t0 = time.perf_counter()
            assert checkpoint.damage(ckpt, info) is None  # what a resume verifies
            cached = time.perf_counter() - t0
            disk = None
            if drop_page_cache():
                t0 = time.perf_counter()
                assert checkpoint.damage(ckpt, info) is None
                disk = time.perf_counter() - t0
            shutil.rmtree(folder)
            if i:
                save_s.append(elapsed)
                checksum_s.append(checksums)
                verify_cached.append(cached)
                if disk is not None:
                    verify_disk.append(disk)
    finally:
        checkpoint.file_records = records
        shutil.rmtree(root, ignore_errors=True)

    save, checksums = statistics.median(save_s), statistics.median(checksum_s)
    result = {
        "preset": str(args.preset),
        "parameters": params,
        "state_gb": state_bytes / 1e9,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "save_s_without_checksums": save,
        "checksum_s": checksums,
        "checksum_overhead": checksums / save,
        "verify_s_page_cache": statistics.median(verify_cached),
        "verify_s_from_disk": statistics.median(verify_disk) if verify_disk else None,
        "all_s": {"save": save_s, "checksum": checksum_s, "verify_cached": verify_cached, "verify_disk": verify_disk},
    }
    print(
        f"U-Net {params / 1e6:.1f} M parameters, state {result['state_gb']:.2f} GB: save {save:.2f} s, its checksums "
        f"{checksums:.2f} s (+{100 * result['checksum_overhead']:.0f} %); verify {result['verify_s_page_cache']:.2f} s "
        "(page cache)"
        + (f", {result['verify_s_from_disk']:.2f} s (from disk)" if verify_disk else ", from disk: not measured")
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
