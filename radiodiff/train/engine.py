"""The training engine shared by every radiodiff model (VAE-GAN, latent diffusion, U-Net).

A model describes itself as a :class:`TrainTask`; :func:`train` runs the loop around it, in
the shape of diffusers' canonical Accelerate loop (``accumulate``; clip, step and EMA only when
``sync_gradients``; ``save_state``/``load_state``; resume from the latest state), one screen per
phase: set-up, resume, the loop, the finish. The phases' parts live beside it: settings
(:mod:`~radiodiff.train.config`), checkpoints and resume (:mod:`~radiodiff.train.checkpoint`),
the data order (:mod:`~radiodiff.train.data_order`), the EMA (:mod:`~radiodiff.train.ema`),
logs (:mod:`~radiodiff.train.logs`) and several processes (:mod:`~radiodiff.train.distributed`).

One *global step* is one optimizer step of every optimizer, i.e. ``grad_accum`` micro-batches of
``batch_size`` samples. Per micro-batch, for each optimizer in the order of
``task.param_groups()`` (e.g. autoencoder then discriminator, as in the VAE-GAN), the engine
computes ``task.loss(batch, step, i)``, back-propagates it and, at the end of the accumulation
window, clips the gradient norm *before* ``optimizer.step()`` (RadioDiff's code clipped after
the step, which did nothing), steps the optimizer and its LR scheduler and zeroes the gradients.
While optimizer ``i``'s loss is computed, the parameters of the other optimizers have
``requires_grad`` switched off (Lightning's ``toggle_optimizer``, which the LDM/RadioDiff code
relied on), so the generator loss never leaves gradients in the discriminator. A non-finite
loss or gradient skips the step (counted); ``max_nonfinite`` in a row stop the run.

Exact resume: a run that finds a complete checkpoint resumes from the newest one; the data order
is a pure function of ``(seed, epoch)`` and evaluation runs with its own RNG, so on CPU a run
killed part-way and resumed ends with the very same weights as an uninterrupted one.

Test hook: if the environment variable ``RADIODIFF_KILL_AT_STEP`` is ``N``, the process sends
itself SIGKILL right after finishing global step N (after any log row, evaluation and checkpoint
of that step). Tests use it to simulate a crash; never set it otherwise.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import atomic_dir
from radiodiff.models.persistence import load_network_weights
from radiodiff.train import checkpoint, data_order, previews
from radiodiff.train.config import TrainConfig
from radiodiff.train.distributed import average_gradients, make_accelerator, prepare
from radiodiff.train.ema import EMA
from radiodiff.train.logs import RunLog, accumulate_terms, peak_memory

KILL_ENV = "RADIODIFF_KILL_AT_STEP"
PREVIEWS = "previews"  # state_dir/previews: the task's sample previews (see TrainTask)


class TrainTask(Protocol):
    """What a model provides to the engine."""

    model: torch.nn.Module  # the network whose EMA is evaluated and exported

    def param_groups(self) -> list[tuple[str, list[torch.nn.Parameter], dict]]:
        """One AdamW optimizer per entry, in step order: ``(name, params, overrides)``.

        ``overrides`` merge into the AdamW keyword arguments (``lr``, ``betas``, ``weight_decay``),
        e.g. ``[("ae", [...], {}), ("disc", [...], {"lr": 1e-4})]``.
        """
        ...

    def modules(self) -> dict[str, torch.nn.Module]:
        """Every module to put on the device and checkpoint (``model`` included)."""
        ...

    def loss(self, batch: Any, step: int, opt_index: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss of optimizer ``opt_index`` and its terms to log.

        ``step`` is the number of global steps completed before this one (0 for the first);
        ``batch`` is already on the training device; the call runs under Accelerate's autocast.
        """
        ...

    def evaluate(self, model: torch.nn.Module, loader: Any) -> dict[str, float]:
        """Metrics of ``model`` (the EMA copy, in eval mode, under no_grad) on the validation loader."""
        ...

    def export(self, model: torch.nn.Module, out_dir: Path, raw: torch.nn.Module | None = None) -> None:
        """Write the final model (the EMA copy) into ``out_dir`` (an empty temporary folder);
        ``raw``: the trained weights themselves, for the tasks that export both."""
        ...

    # Optional (the LDM): ``preview_every`` (steps; 0 or absent: none) and
    # ``preview(model) -> (H×W×3 uint8 image, per-item RMSE dB) | None``, a grid of samples of
    # fixed validation items by ``model`` (the EMA copy, eval mode, no_grad, isolated RNG); the
    # engine writes it to TensorBoard and ``state_dir/previews`` (:mod:`radiodiff.train.previews`).


def lr_multiplier(step: int, horizon: int, power: float, floor: float) -> float:
    """RadioDiff's LR multiplier ``max((1 - step/horizon) ** power, floor)`` (the original's
    horizon is its ``max_steps``; here ``train.lr_horizon``, by default ``max_steps``)."""
    frac = min(max(step / horizon, 0.0), 1.0)
    return max((1.0 - frac) ** power, floor)


@dataclass
class _Optimization:
    """The task's modules as prepared by Accelerate, one AdamW + LR schedule per param group."""

    modules: dict[str, torch.nn.Module]
    prepared: list[torch.nn.Module]
    names: list[str]
    params: list[list[torch.nn.Parameter]]  # per optimizer
    others: list[list[torch.nn.Parameter]]  # per optimizer: the other optimizers' parameters
    optimizers: list
    schedulers: list


def _check_param_groups(groups, modules: dict[str, torch.nn.Module]) -> None:
    if not groups:
        raise RadiodiffError("task.param_groups() returned no optimizer")
    owned = {id(p) for m in modules.values() for p in m.parameters()}
    seen: dict[int, str] = {}
    for name, params, _ in groups:
        if not params:
            raise RadiodiffError(f"optimizer {name!r}: no parameters")
        for p in params:
            if id(p) in seen:
                raise RadiodiffError(f"a parameter is in both optimizers {seen[id(p)]!r} and {name!r}")
            if id(p) not in owned:
                raise RadiodiffError(f"optimizer {name!r}: a parameter belongs to none of task.modules()")
            seen[id(p)] = name
    if len({name for name, _, _ in groups}) != len(groups):
        raise RadiodiffError("task.param_groups(): optimizer names must be unique")


def _optimization(cfg: TrainConfig, accelerator, groups, modules) -> _Optimization:
    optimizers = []
    for _, params, overrides in groups:
        kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay, **overrides}
        optimizers.append(torch.optim.AdamW(params, **kwargs))

    def multiplier(step: int) -> float:
        return lr_multiplier(step, cfg.horizon, cfg.lr_power, cfg.min_lr)

    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, multiplier) for opt in optimizers]
    prepared, optimizers, schedulers = prepare(accelerator, list(modules.values()), optimizers, schedulers)
    params = [list(p) for _, p, _ in groups]
    others = [[p for j, ps in enumerate(params) if j != i for p in ps] for i in range(len(params))]
    return _Optimization(modules, prepared, [n for n, _, _ in groups], params, others, optimizers, schedulers)


def _check_data(n_train: int, cfg: TrainConfig, world: int) -> None:
    if n_train < cfg.batch_size:
        raise ParamsError(f"train config: batch_size {cfg.batch_size} exceeds the {n_train} training samples")
    check_batch_split(cfg.batch_size, world)


def check_batch_split(batch_size: int, world: int, key: str = "train config: batch_size") -> None:
    """``batch_size`` is the global batch: it must split evenly over the ``world`` processes."""
    if batch_size % world:
        raise ParamsError(
            f"{key} {batch_size} is the global batch and does not split over {world} processes; "
            f"use a multiple of {world} or another runtime.num_processes"
        )


@contextlib.contextmanager
def _isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with every global RNG seeded to ``seed`` and restore them afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextlib.contextmanager
def _frozen(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """Switch ``requires_grad`` off for ``params`` (other optimizers' parameters) inside the block."""
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, saved, strict=True):
            p.requires_grad_(flag)


def _optimizer_step(accelerator, opt, params, clip: float | None, bad_loss: bool) -> tuple[float, bool]:
    """Clip and step one optimizer at the end of its accumulation window; return (grad norm, stepped)."""
    if bad_loss:  # non-finite loss in the window: drop its gradients, keep the weights
        opt.zero_grad(set_to_none=True)
        return float("nan"), False
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:  # the loss did not reach these parameters (e.g. a constant loss): nothing to update
        return 0.0, True
    accelerator.unscale_gradients(optimizer=opt)  # fp16: true gradients before measuring them
    norm = torch.nn.utils.get_total_norm(grads)
    finite = bool(torch.isfinite(norm))
    if finite and clip is not None:
        torch.nn.utils.clip_grads_with_norm_(params, clip, norm)  # before the step, unlike the original
    if finite or accelerator.scaler is not None:
        # fp16 with an overflow: GradScaler skips the update itself and lowers its scale.
        opt.step()
    opt.zero_grad(set_to_none=True)
    return float(norm), finite


@dataclass
class _StepResult:
    terms: dict[str, float]  # loss terms averaged over the accumulation window
    lrs: list[float]
    grad_norms: list[float]
    stepped: list[bool]


def _global_step(task, opt: _Optimization, data, step: int, cfg: TrainConfig, accelerator) -> _StepResult:
    """One global step: ``grad_accum`` micro-batches, then every optimizer's clipped step."""
    from accelerate.utils import send_to_device

    n_opt = len(opt.optimizers)
    terms: dict[str, float] = {}
    window_bad = [False] * n_opt  # a non-finite loss anywhere in the window skips that optimizer
    grad_norms = [float("nan")] * n_opt
    lrs = [o.param_groups[0]["lr"] for o in opt.optimizers]
    stepped = [False] * n_opt
    for _ in range(cfg.grad_accum):
        batch = send_to_device(next(data), accelerator.device)
        with accelerator.accumulate(*opt.prepared):
            for i, optimizer in enumerate(opt.optimizers):
                with _frozen(opt.others[i]), accelerator.autocast():
                    loss, loss_terms = task.loss(batch, step, i)
                if not torch.is_tensor(loss) or loss.numel() != 1:
                    raise RadiodiffError(f"task.loss for optimizer {opt.names[i]!r} must return a scalar tensor")
                if not bool(torch.isfinite(loss.detach()).all()):
                    window_bad[i] = True
                elif not window_bad[i] and loss.requires_grad:
                    accelerator.backward(loss)
                accumulate_terms(terms, opt.names[i], loss, loss_terms, cfg.grad_accum)
                if accelerator.sync_gradients:
                    if accelerator.num_processes > 1:
                        window_bad[i] = average_gradients(accelerator, opt.params[i], window_bad[i])
                    grad_norms[i], stepped[i] = _optimizer_step(
                        accelerator, optimizer, opt.params[i], cfg.clip_grad_norm, window_bad[i]
                    )
                    with warnings.catch_warnings():  # torch warns when a skipped step preceded it
                        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                        opt.schedulers[i].step()
    if not accelerator.sync_gradients:  # the window must close on the step's last micro-batch
        raise RadiodiffError("internal error: gradient accumulation out of step with the global step")
    return _StepResult(terms, lrs, grad_norms, stepped)


def _count(result: _StepResult, counters: checkpoint.Counters, cfg: TrainConfig, state_dir: Path) -> None:
    """Advance the step; count a skipped one, and stop after ``max_nonfinite`` in a row."""
    counters.step += 1
    if all(result.stepped):
        counters.in_a_row = 0
        return
    counters.skipped += 1
    counters.in_a_row += 1
    if counters.in_a_row >= cfg.max_nonfinite:
        last = checkpoint.latest_checkpoint(state_dir)
        raise RadiodiffError(
            f"training stopped: {counters.in_a_row} non-finite losses in a row at step {counters.step}; "
            f"last good state kept in {last or 'none (no checkpoint yet)'}"
        )


def export_milestone(task: TrainTask, ema_model, raw_model, state_dir: Path, step: int) -> Path:
    """Export the model at ``step`` as the run's milestone ``state_dir/exports/step-{step:08d}``
    (``train.export_every``; kept, never pruned, not a stage output)."""
    dest = state_dir / checkpoint.EXPORTS / f"step-{step:08d}"
    if not dest.is_dir():  # a resumed run does not export a step twice
        with atomic_dir(dest) as tmp:
            task.export(ema_model, tmp, raw=raw_model)
    return dest


def train(
    task: TrainTask,
    train_set: Dataset,
    val_set: Dataset | None,
    cfg: TrainConfig,
    state_dir: Path,
    model_dir: Path,
    log_csv: Path,
    tb_dir: Path | None = None,
    progress: bool = True,
) -> dict:
    """Train ``task`` for ``cfg.max_steps`` global steps, resuming from ``state_dir`` if it holds a checkpoint.

    ``cfg.init_from`` (a model folder) starts ``task.model`` from its network's weights;
    ``cfg.export_every`` exports milestone models under ``state_dir/exports``. A state folder whose
    run stopped at N continues to a raised ``max_steps`` when the LR horizon (``cfg.horizon``) is
    unchanged: the log goes on at N+1 and the weights are those of a straight run.

    Writes checkpoints to ``state_dir`` (keyed by the caller, e.g. with
    :func:`~radiodiff.train.checkpoint.state_key`), the EMA model via ``task.export`` to
    ``model_dir`` (atomically, at the end), the CSV log to ``log_csv`` and TensorBoard scalars to
    ``tb_dir``. Returns a summary: steps, steps_run, seconds, steps_per_s, peak memory
    (peak_memory_mb, peak_rss_mb, peak_gpu_mem_mb on CUDA), device, val (the final metrics of
    ``task.evaluate``, unprefixed; ``val/``-prefixed in the logs), skipped_nonfinite and
    resumed_from (the step resumed from, or None).
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    # ---- set-up: device, seed, optimizers, EMA, data ----
    cfg.validate()
    state_dir, model_dir, log_csv = Path(state_dir), Path(model_dir), Path(log_csv)
    kill_at = int(os.environ.get(KILL_ENV) or 0)
    accelerator = make_accelerator(cfg)
    device = accelerator.device
    set_seed(cfg.seed)
    modules, groups = task.modules(), task.param_groups()
    _check_param_groups(groups, modules)
    if cfg.init_from:  # start from another run's weights (a resumed run then loads its own)
        load_network_weights(task.model, cfg.init_from)
    ema = EMA(task.model, cfg)  # copied before prepare() patches forward() for autocast
    ema.model.to(device)
    opt = _optimization(cfg, accelerator, groups, modules)
    world, main = accelerator.num_processes, accelerator.is_main_process
    n_train = len(train_set)
    _check_data(n_train, cfg, world)
    per_epoch = n_train // cfg.batch_size
    val_loader = data_order.val_loader(val_set, cfg.batch_size, cfg.seed, cfg.num_workers, device)

    # ---- resume from the newest complete checkpoint ----
    if main:  # one process cleans, so none removes another's temporary folder
        checkpoint.remove_stale_temporaries(state_dir, model_dir)
    counters = checkpoint.resume(state_dir, accelerator, ema.model, cfg, n_train)
    resumed_from = None if counters is None else counters.step
    counters = counters or checkpoint.Counters()
    accelerator.step = counters.step * cfg.grad_accum  # Accelerate's micro-batch counter (restored too; made explicit)
    micro = counters.step * cfg.grad_accum  # micro-batches consumed so far
    loader = data_order.train_loader(
        train_set, cfg.batch_size, cfg.seed, micro, accelerator.process_index, world, cfg.num_workers,
        pin=cfg.pin_memory and device.type == "cuda",
    )  # fmt: skip
    saver = checkpoint.Saver(state_dir, accelerator, modules, ema.model, cfg, n_train)
    log = RunLog(log_csv, tb_dir, counters.step, main)
    preview_every = int(getattr(task, "preview_every", 0) or 0)
    if preview_every and main:  # like the log: drop what a killed run drew after its state
        previews.keep_until(state_dir / PREVIEWS, counters.step)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    def evaluate() -> dict[str, float]:
        if val_loader is None or not main:
            return {}
        ema.model.eval()
        with _isolated_rng(cfg.seed), torch.no_grad():
            metrics = task.evaluate(ema.model, val_loader)
        return {k: float(v) for k, v in metrics.items()}

    def preview(step: int) -> None:
        ema.model.eval()
        with _isolated_rng(cfg.seed), torch.no_grad():
            drawn = task.preview(ema.model)
        if drawn is not None:
            image, rmses = drawn
            previews.write_preview(state_dir / PREVIEWS, step, image, rmses)
            log.image("preview", image, step)

    # ---- the loop: one iteration = one global step ----
    data = iter(loader)
    bar = tqdm(
        total=cfg.max_steps, initial=counters.step, desc="train", file=sys.stderr, disable=not (progress and main)
    )
    val_metrics: dict[str, float] = {}
    steps_run, t_start = 0, time.perf_counter()
    seconds_before = counters.seconds  # a resumed run's clock goes on from its state

    def wall_s() -> float:
        return seconds_before + time.perf_counter() - t_start

    try:
        while counters.step < cfg.max_steps:
            t0 = time.perf_counter()
            result = _global_step(task, opt, data, counters.step, cfg, accelerator)
            micro += cfg.grad_accum
            _count(result, counters, cfg, state_dir)
            steps_run += 1
            ema.update(task.model, counters.step)
            bar.update(1)

            step = counters.step
            is_last = step == cfg.max_steps
            do_eval = step % cfg.eval_every == 0 or is_last
            if do_eval:
                val_metrics = evaluate()
            if do_eval or step % cfg.log_every == 0:
                log.write(
                    {
                        "step": step,
                        "epoch": (micro - 1) // per_epoch,
                        **result.terms,
                        **{f"lr/{n}": lr for n, lr in zip(opt.names, result.lrs, strict=True)},
                        **{f"grad_norm/{n}": g for n, g in zip(opt.names, result.grad_norms, strict=True)},
                        "skipped_nonfinite": counters.skipped,
                        "step_time_s": time.perf_counter() - t0,
                        "wall_s": wall_s(),
                        **({f"val/{k}": v for k, v in val_metrics.items()} if do_eval else {}),
                    }
                )
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in result.terms.items() if k.startswith("loss/")}, refresh=False
                )
            # previews and milestones before the state: a kill between them and the save is
            # resumed from an earlier state, which redraws the preview (the exact same export)
            if preview_every and main and (step % preview_every == 0 or is_last):
                preview(step)
            if cfg.export_every and step % cfg.export_every == 0 and main:
                export_milestone(task, ema.model, accelerator.unwrap_model(task.model), state_dir, step)
            if step % cfg.save_every == 0 or is_last:
                counters.seconds = wall_s()
                saver.save(counters)
            if step == kill_at:  # test hook (see the module docstring)
                bar.close()
                log.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        seconds = time.perf_counter() - t_start

        # ---- finish: export the EMA model (and the raw weights beside it) ----
        if steps_run == 0:  # resumed from a finished run: evaluate and export again
            val_metrics = evaluate()
            saver.save(counters)
        bad = checkpoint.first_nonfinite({"ema": ema.model})
        if bad is not None:
            raise RadiodiffError(f"refusing to export {model_dir}: non-finite weights in {bad}")
        if main:  # one process cleans and exports
            checkpoint.remove_stale_temporaries(state_dir, model_dir)
            with atomic_dir(model_dir) as tmp:
                task.export(ema.model, tmp, raw=accelerator.unwrap_model(task.model))
        accelerator.wait_for_everyone()
    finally:
        bar.close()
        log.close()

    return {
        "steps": counters.step,
        "steps_run": steps_run,
        "seconds": seconds,
        "train_seconds": wall_s(),  # the whole run's, resumed parts included
        "steps_per_s": steps_run / seconds if seconds > 0 else float("nan"),
        **peak_memory(),
        "device": str(device),
        "val": val_metrics,
        "skipped_nonfinite": counters.skipped,
        "resumed_from": resumed_from,
        "processes": world,
        "main_process": main,
    }
