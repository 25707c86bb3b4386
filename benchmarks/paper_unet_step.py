"""Benchmark: seconds per training step of the paper U-Net on this device, at batch 1 and 2.

Takes a trained LDM model folder (default: ``results/ldm/radiomapseer/model`` of a paper_smoke
run, i.e. paper_jul2025's CondUNet with its Swin-B at 256 x 256, 64 x 64 latents) and trains a
copy of its U-Net as the training stage does: the LDM loss (const-SDE with the folder's weighting,
L1 and skip settings), backward, an AdamW step. Per batch size:

- ``unet``: the step alone, the batch's VAE encodings made once beforehand (as the training
  stage's latent cache serves them after an item's first epoch);
- ``ldm`` (with ``--with-encoding``): the same step encoding the batch with the frozen VAE(s)
  every time, i.e. :func:`radiodiff.benchmark.time_training`, what the benchmark stage times.

Random batches of the model's shapes; ``--warmup`` untimed steps (the first one also counts the
FLOPs, :func:`radiodiff.benchmark.count_flops`), then the mean of ``--steps`` timed ones. Prints a
table; ``--out`` also writes the figures as JSON. Peak memory is the process's peak RSS so far
(on a CPU; a bound, not a per-batch figure). :func:`unet_step` also runs on a GPU and under bf16
autocast: ``benchmarks/gpu_check.py`` calls it there.

    radiodiff scale paper_smoke && snakemake --cores all
    python benchmarks/paper_unet_step.py --batch 1 2 --out unet_step.json

Measured on this project's 2-core VM: see the README ("Scales").
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from radiodiff.benchmark import count_flops, peak_memory_mb, sync, time_training
from radiodiff.models.pipelines import load_pipeline
from radiodiff.models.radiodiff import RadioDiffPipeline
from radiodiff.train.ldm import LDMTask

CPU = torch.device("cpu")
PRECISIONS = ("fp32", "bf16")  # bf16: autocast, as training's mixed_precision: bf16


def unet_step(
    pipe: RadioDiffPipeline, batch: int, steps: int, warmup: int, device=CPU, precision: str = "fp32"
) -> dict:
    """The U-Net's training step (loss, backward, AdamW) on cached encodings of a random batch, on
    ``device``, in fp32 or under bf16 autocast (``precision``). A copy of the U-Net trains, so
    ``pipe`` is left as it was (its VAE moves to ``device``). Peak memory: CUDA's peak allocated
    during the steps, or on a CPU the process's peak RSS so far (a bound, not a per-batch figure)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    g = torch.Generator().manual_seed(0)
    size = pipe.grid_px
    data = {
        "condition": (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device),
        "target": (torch.rand(batch, 1, size, size, generator=g) * 2 - 1).to(device),
    }
    task = LDMTask(pipe.with_network(copy.deepcopy(pipe.network).to(device)))
    task.pipe.place_first_stage(device)  # the frozen VAE encodes on the device, as in training
    with torch.no_grad():
        encodings = task.encodings(data)
    task.encodings = lambda batch, mask=None: encodings  # the latent cache's role
    task.model.train()
    opt = torch.optim.AdamW(task.model.parameters(), lr=1e-5)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = task.loss(data, i, 0)[0]
        loss.backward()
        opt.step()

    flops = count_flops(lambda: step(0)) if warmup else None
    times = []
    for i in range(max(warmup - 1, 0) + steps):
        sync(device)
        t0 = time.perf_counter()
        step(i)
        sync(device)
        if i >= warmup - 1:
            times.append(time.perf_counter() - t0)
    mean = float(np.mean(times))
    return {
        "batch_size": batch,
        "precision": precision,
        "timed_steps": steps,
        "s_per_step": mean,
        "steps_per_s": 1 / mean,
        "flops_per_step": flops,
        "peak_memory_mb": peak_memory_mb(device),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="results/ldm/radiomapseer/model", help="a trained LDM model folder")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2], help="batch sizes (default 1 2)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per batch size (default 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--with-encoding", action="store_true", help="also time the step with the VAE encoding")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args(argv)

    pipe = load_pipeline(args.model).eval()
    if not pipe.is_latent:
        ap.error(f"{args.model}: not an LDM model folder")
    unet = pipe.network
    result = {
        "model": str(args.model),
        "device": platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "image_size": pipe.grid_px,
        "parameters": unet.num_parameters(),
        "unet": [],
        "ldm": [],
    }
    for b in args.batch:
        result["unet"].append(unet_step(pipe, b, args.steps, args.warmup))
        if args.with_encoding:
            t = time_training(pipe, b, args.steps, args.warmup, CPU)
            result["ldm"].append({**t, "s_per_step": t["ms_per_step"] / 1000})
    print(
        f"paper U-Net ({result['parameters']:,} parameters, {result['image_size']}², "
        f"{result['threads']} threads, torch {result['torch']}): seconds per training step"
    )
    print(f"{'batch':>5} {'unet s/step':>12} {'GFLOP':>8} {'ldm s/step':>11} {'peak RSS MB':>12}")
    for i, u in enumerate(result["unet"]):
        ldm = f"{result['ldm'][i]['s_per_step']:11.1f}" if result["ldm"] else f"{'-':>11}"
        gflop = f"{u['flops_per_step'] / 1e9:8.0f}" if u["flops_per_step"] else f"{'-':>8}"
        print(f"{u['batch_size']:>5} {u['s_per_step']:12.1f} {gflop} {ldm} {u['peak_memory_mb']:12.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
