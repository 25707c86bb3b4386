"""Accelerate's setup, and synchronous data parallelism over several processes.

Several processes (``runtime.num_processes``, :mod:`radiodiff.train.launch`; or by hand,
``accelerate launch --num_processes N`` or ``torchrun``; one GPU each): ``batch_size`` is the
global batch, and each process takes its 1/N share of every batch of the one global order
(Accelerate's ``split_batches``), so N processes see what one would; gradients are averaged over
the processes with ``all_reduce`` before clipping and the step, and a non-finite loss on any
process skips the step on all, so the weights stay identical everywhere. BatchNorm statistics
stay per process (no SyncBatchNorm). The modules are not wrapped in DDP (the task computes
its loss with its own module references, which DDP's forward hooks would miss). Only the main
process evaluates, logs, exports and writes the engine's part of a checkpoint; every process
saves its own RNG state into it, so resume is exact for the same number of processes.
"""

from __future__ import annotations

import os

import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.train.config import TrainConfig


def make_accelerator(cfg: TrainConfig):
    """An Accelerator for ``cfg`` (precision, accumulation), checked against how it was launched."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import GradientAccumulationPlugin

    # Accelerate keeps its settings in process-wide singletons; a second run in the same process
    # (tests, notebooks) with another precision or accumulation would otherwise be refused.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    accelerator = Accelerator(
        # several processes without a GPU (torchrun on CPU): Accelerate's gloo-backed MULTI_CPU
        cpu=launched > 1 and not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        # The engine owns the data order and never ends an epoch inside the loop, so the
        # accumulation window is counted in micro-batches only.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.grad_accum, sync_with_dataloader=False, adjust_scheduler=False
        ),
        # LR is a function of the global step: the scheduler steps exactly once per global step.
        step_scheduler_with_optimizer=False,
    )
    if launched != accelerator.num_processes:
        # e.g. `accelerate launch --multi_gpu` on a machine without GPUs: every process would
        # train alone and write the same state folder
        raise RadiodiffError(
            f"launched as {launched} processes but Accelerate runs {accelerator.num_processes} "
            f"({accelerator.distributed_type}); check the launcher's settings (`accelerate env`)"
        )
    if cfg.mixed_precision == "fp16" and accelerator.device.type != "cuda":
        raise ParamsError(
            f"train config: mixed_precision fp16 needs a CUDA GPU (on {accelerator.device.type} Accelerate "
            "would silently train in fp32); use bf16 or no"
        )
    return accelerator


def prepare(accelerator, modules: list, optimizers: list, schedulers: list) -> tuple[list, list, list]:
    """Place the modules, optimizers and schedulers (one process: Accelerate's ``prepare``;
    several: placed but not DDP-wrapped, gradients are averaged by :func:`average_gradients`)."""
    if accelerator.num_processes > 1:
        prepared = [accelerator.prepare_model(m, evaluation_mode=True) for m in modules]
        prepared += list(accelerator.prepare(*optimizers, *schedulers))
    else:
        prepared = accelerator.prepare(*modules, *optimizers, *schedulers)
        prepared = list(prepared) if isinstance(prepared, tuple | list) else [prepared]
    n_mod, n_opt = len(modules), len(optimizers)
    return prepared[:n_mod], prepared[n_mod : n_mod + n_opt], prepared[n_mod + n_opt :]


def average_gradients(accelerator, params, bad_loss: bool) -> bool:
    """Average the gradients of ``params`` over the processes; return whether any process had a
    non-finite loss in the window (then every process skips the step)."""
    import torch.distributed as dist

    device = accelerator.device
    flags = torch.tensor([float(bad_loss), float(any(p.grad is not None for p in params))], device=device)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    if flags[0] > 0 or flags[1] == 0:  # skip everywhere, or no process has gradients: nothing to sync
        for p in params:
            p.grad = None
        return bool(flags[0] > 0)
    for p in params:
        if p.grad is None:  # this process's loss did not reach p, another's did
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= accelerator.num_processes
    return False
