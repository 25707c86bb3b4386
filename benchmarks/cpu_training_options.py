"""Benchmark: training steps per second under the options a CPU offers (issue 17, item 3).

For trained model folders of a workspace (default: the quick preset's RadioMapSeer VAE, LDM and
RadioUNet), trains a copy of each network as its training stage does (the task's own loss,
backward, AdamW) on random batches of its shapes, under each option set:

- ``fp32``: the default (float32, ``torch.get_num_threads()`` intra-op threads);
- ``bf16``: bfloat16 autocast around the loss (what ``train.mixed_precision: bf16`` does);
- ``channels_last``: the network and its 4-D inputs in channels-last memory format;
- ``bf16+channels_last``;
- ``compile``: ``torch.compile`` of the network (compiled in its first steps, reported apart);
- ``1 thread``: ``torch.set_num_threads(1)``.

Per model and option: ms per step (mean of ``--steps`` after ``--warmup`` untimed ones) and,
to compare at equal loss, the mean training loss of ``--loss-steps`` steps on one fixed batch from
the same initial weights and seeds (a faster option whose loss drifts is not a free win).

    python benchmarks/cpu_training_options.py --workspace /path/to/quick/workspace --out options.json

Measured on this project's 2-core VM: see the README ("Training").
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.params import read_yaml
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.pipelines import load_pipeline
from radiodiff.train.ldm import LDMTask
from radiodiff.train.radiounet import RadioUNetTask
from radiodiff.train.vae import VAETask

OPTIONS = {
    "fp32": {},
    "bf16": {"bf16": True},
    "channels_last": {"channels_last": True},
    "bf16+channels_last": {"bf16": True, "channels_last": True},
    "compile": {"compile": True},
    "1 thread": {"threads": 1},
}


def vae_task(folder: Path, params: dict, batch: int):
    """The RadioMapSeer VAE's training task (its stage's loss settings) and a random batch."""
    vae = AutoencoderKL.from_pretrained(folder)
    loss = dict(params["train_vae_radiomapseer"]["loss"])
    disc_lr, noise = loss.pop("disc_lr"), loss.pop("decoder_noise", 0.0)
    task = VAETask(vae.config, loss, disc_lr=disc_lr, use_edges=loss.get("edge_weight", 0) > 0, decoder_noise=noise)
    task.model.load_state_dict(vae.state_dict())
    size = vae.config.resolution
    g = torch.Generator().manual_seed(0)
    data = {
        "image": torch.rand(batch, vae.config.in_channels, size, size, generator=g) * 2 - 1,
        "edges": (torch.rand(batch, 1, size, size, generator=g) > 0.9).float(),
    }
    return task, data


def map_task(folder: Path, batch: int):
    pipe = load_pipeline(folder)
    size = pipe.grid_px
    g = torch.Generator().manual_seed(0)
    data = {
        "condition": torch.rand(batch, 3, size, size, generator=g) * 2 - 1,
        "target": torch.rand(batch, 1, size, size, generator=g) * 2 - 1,
    }
    task_class = LDMTask if pipe.is_latent else RadioUNetTask
    return task_class(pipe.with_network(copy.deepcopy(pipe.network))), data


def run_option(make, option: dict, steps: int, warmup: int, loss_steps: int) -> dict:
    torch.set_num_threads(option.get("threads", THREADS))
    task, data = make()
    fmt = torch.channels_last if option.get("channels_last") else torch.contiguous_format
    task.model.to(memory_format=fmt)
    data = {k: v.contiguous(memory_format=fmt) if v.ndim == 4 else v for k, v in data.items()}
    if option.get("compile"):
        task.model.compile()  # in place: the task calls its own module (compiled at the first call)
    optimizers = [torch.optim.AdamW(p, lr=1e-5) for _, p, _ in task.param_groups()]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if option.get("bf16") else contextlib.nullcontext()

    def step(i: int) -> float:
        total = 0.0
        for k, opt in enumerate(optimizers):
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = task.loss(data, i, k)[0]
            loss.backward()
            opt.step()
            total += float(loss.detach())
        return total

    torch.manual_seed(0)
    t_first = time.perf_counter()
    losses = [step(i) for i in range(loss_steps)]  # the fixed batch from the same start: equal loss?
    first_s = time.perf_counter() - t_first
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step(loss_steps + i)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {
        "ms_per_step": 1000 * float(np.mean(times)),
        "mean_loss": float(np.mean(losses)),
        "last_loss": losses[-1],
        "first_steps_s": first_s,  # includes torch.compile's compilation
    }


THREADS = torch.get_num_threads()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=Path("."), help="a workspace with trained quick models")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--loss-steps", type=int, default=10)
    ap.add_argument("--models", nargs="*", default=["vae", "ldm", "radiounet"])
    ap.add_argument("--options", nargs="*", default=list(OPTIONS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    ws = args.workspace
    params = read_yaml(ws / "params.yaml")  # the loss settings its VAE trained with (any version)
    makers = {
        "vae": lambda: vae_task(ws / "results/vae/radiomapseer/model", params, args.batch),
        "ldm": lambda: map_task(ws / "results/ldm/radiomapseer/model", args.batch),
        "radiounet": lambda: map_task(ws / "results/radiounet/radiomapseer/model", args.batch),
    }
    result = {"cpu": platform.processor() or "cpu", "torch": torch.__version__, "threads": THREADS, "models": {}}
    for name in args.models:
        rows = {}
        for opt in args.options:
            rows[opt] = run_option(makers[name], OPTIONS[opt], args.steps, args.warmup, args.loss_steps)
            base = rows.get("fp32", rows[opt])
            print(
                f"{name:10s} {opt:20s} {rows[opt]['ms_per_step']:8.1f} ms/step "
                f"(×{base['ms_per_step'] / rows[opt]['ms_per_step']:.2f})  mean loss {rows[opt]['mean_loss']:.5f}"
                + f"  first {args.loss_steps} steps {rows[opt]['first_steps_s']:.1f} s",
                flush=True,
            )
        result["models"][name] = rows
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
