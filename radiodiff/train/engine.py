"""The training engine shared by every radiodiff model (VAE-GAN, latent diffusion, U-Net).

A model describes itself as a :class:`TrainTask`; :func:`train` runs the loop around it, in
the shape of diffusers' canonical Accelerate loop (``accumulate``; clip, step and EMA only when
``sync_gradients``; ``save_state``/``load_state``; resume from the latest state) and reading
top to bottom like nanoGPT's ``train.py``.

One *global step* is one optimizer step of every optimizer, i.e. ``grad_accum`` micro-batches of
``batch_size`` samples. Per micro-batch, for each optimizer in the order of
``task.param_groups()`` (e.g. autoencoder then discriminator, as in the VAE-GAN), the engine
computes ``task.loss(batch, step, i)``, back-propagates it and, at the end of the accumulation
window, clips the gradient norm *before* ``optimizer.step()`` (RadioDiff's code clipped after
the step, which did nothing), steps the optimizer and its LR scheduler and zeroes the gradients.
While optimizer ``i``'s loss is computed, the parameters of the other optimizers have
``requires_grad`` switched off (Lightning's ``toggle_optimizer``, which the LDM/RadioDiff code
relied on), so the generator loss never leaves gradients in the discriminator.

Exact resume. Every ``save_every`` steps and at the end the full state goes to
``state_dir/checkpoint-{step:08d}``: Accelerate's ``save_state`` (module weights, optimizers,
schedulers, GradScaler, the Python/NumPy/torch/CUDA RNG states) plus ``engine_state.pt`` (EMA
weights, counters, data position) and, written last, the completion marker ``checkpoint.json``.
The folder is written under a temporary name in ``state_dir`` and renamed into place, so a
crash mid-save leaves the previous checkpoint as the latest complete one. A run that finds a
complete checkpoint resumes from the newest one. The data order is a pure function of
``(seed, epoch)`` (a fresh ``torch.Generator`` per epoch shuffles the indices; the last partial
batch is dropped), so a resumed run rebuilds the epoch's order and starts at the first
micro-batch not yet consumed; evaluation runs with its own RNG so it never perturbs training.
On CPU a run killed part-way and resumed ends with the very same weights as an uninterrupted one.
Not covered: randomness drawn inside ``Dataset.__getitem__`` in DataLoader worker processes
(``num_workers > 0``), whose seeds restart from ``seed`` at every (re)start.

Test hook: if the environment variable ``RADIODIFF_KILL_AT_STEP`` is ``N``, the process sends
itself SIGKILL right after finishing global step N (after any log row, evaluation and checkpoint
of that step). Tests use it to simulate a crash; never set it otherwise.

Several processes (``accelerate launch --num_processes N`` or ``torchrun``; one GPU each):
synchronous data parallelism. Each process takes every N-th batch of the same global order
(``batch_size`` is per process, so a step sees N·batch_size samples); gradients are averaged
over the processes with ``all_reduce`` before clipping and the step, and a non-finite loss on
any process skips the step on all, so the weights stay identical everywhere. The modules are
not wrapped in DDP (the task computes its loss with its own module references, which DDP's
forward hooks would miss). Only the main process evaluates, logs, exports and writes the
engine's part of a checkpoint; every process saves its own RNG state into it, so resume is
exact for the same number of processes (a different number is refused).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
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
from torch.utils.data import DataLoader, Dataset

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import atomic_dir, atomic_file, write_json

KILL_ENV = "RADIODIFF_KILL_AT_STEP"
CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint.json"  # written last: a checkpoint folder without it does not count
ENGINE_STATE = "engine_state.pt"
MIXED_PRECISION = ("no", "bf16", "fp16")
# Fields that only change bookkeeping; every other field changes the trajectory, so a resume
# with a different value would not continue the same run.
_BOOKKEEPING = {"save_every", "eval_every", "log_every", "max_nonfinite", "keep_states", "num_workers"}


@dataclass
class TrainConfig:
    """Settings of one training run (the values live in params.yaml; these defaults mirror it)."""

    max_steps: int
    batch_size: int  # samples per micro-batch; one global step uses batch_size * grad_accum samples
    lr: float
    grad_accum: int = 1
    # LR multiplier max((1 - step/max_steps) ** lr_power, min_lr): RadioDiff's power decay. The
    # original floors the *multiplier* at min_lr, so the effective floor LR is lr * min_lr.
    lr_power: float = 0.95
    min_lr: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float | None = 1.0  # clipped before optimizer.step() (the original clipped after it)
    # EMA of task.model: updated every ema_every steps after ema_start, a plain copy until then.
    # With ema_warmup the decay ramps up as 1 - (1 + k)^(-2/3), k = steps since ema_start, capped
    # at ema_decay (ema_pytorch's default warm-up, which the RadioDiff code trains with), so a
    # short run's EMA is not stuck near the initial weights.
    ema_decay: float = 0.999
    ema_every: int = 10
    ema_start: int = 0
    ema_warmup: bool = True
    mixed_precision: str = "no"  # no | bf16 | fp16 (fp16 needs CUDA; bf16 also runs on CPU)
    save_every: int = 500
    eval_every: int = 500
    log_every: int = 10
    max_nonfinite: int = 10  # this many non-finite steps in a row stop the run
    seed: int = 0
    keep_states: int = 2
    num_workers: int = 0

    def validate(self) -> None:
        """Raise :class:`ParamsError` naming the first invalid field."""
        positive = ("max_steps", "batch_size", "grad_accum", "ema_every", "save_every", "eval_every", "log_every")
        for name in (*positive, "max_nonfinite", "keep_states"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamsError(f"train config: {name} must be an integer >= 1, got {value!r}")
        for name in ("ema_start", "num_workers", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ParamsError(f"train config: {name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)):
            raise ParamsError(f"train config: lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.min_lr <= 1.0:
            raise ParamsError(f"train config: min_lr (a multiplier floor) must be in [0, 1], got {self.min_lr!r}")
        if self.lr_power < 0:
            raise ParamsError(f"train config: lr_power must be >= 0, got {self.lr_power!r}")
        if self.weight_decay < 0:
            raise ParamsError(f"train config: weight_decay must be >= 0, got {self.weight_decay!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ParamsError(f"train config: betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ParamsError(f"train config: clip_grad_norm must be > 0 or null, got {self.clip_grad_norm!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ParamsError(f"train config: ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ParamsError(
                f"train config: mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"got {self.mixed_precision!r}"
            )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


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

    def export(self, model: torch.nn.Module, out_dir: Path) -> None:
        """Write the final model (the EMA copy) into ``out_dir`` (an empty temporary folder)."""
        ...


# --------------------------------------------------------------------------- small pure helpers


def lr_multiplier(step: int, max_steps: int, power: float, floor: float) -> float:
    """RadioDiff's LR multiplier ``max((1 - step/max_steps) ** power, floor)``."""
    frac = min(max(step / max_steps, 0.0), 1.0)
    return max((1.0 - frac) ** power, floor)


def state_key(obj: dict) -> str:
    """A short sha256 (16 hex digits) of ``obj`` as canonical JSON, to key a state folder by."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray | tuple):
        return list(o.tolist() if isinstance(o, np.ndarray) else o)
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"state_key: not JSON serializable: {type(o).__name__}")


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training samples in ``epoch``: a pure function of (seed, epoch)."""
    digest = hashlib.sha256(f"radiodiff-data-order:{seed}:{epoch}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=generator)


def list_checkpoints(state_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints in ``state_dir`` (folder named right and with its marker), oldest first."""
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return []
    found = []
    for path in state_dir.iterdir():
        m = re.fullmatch(rf"{CHECKPOINT_PREFIX}(\d{{8}})", path.name)
        if m and path.is_dir() and (path / COMPLETE_MARKER).is_file():
            found.append((int(m.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(state_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``state_dir``, or None."""
    found = list_checkpoints(state_dir)
    return found[-1] if found else None


class _ResumableBatchSampler:
    """Endless batches of indices: epoch after epoch of ``epoch_permutation``, from micro-batch ``start``.

    The training loop never reaches an epoch end, so Accelerate's accumulation counter is never
    reset by one, and the position to resume from is just the number of micro-batches consumed.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start
        epoch, order = -1, None
        while True:
            # process `rank` of `world` takes every world-th batch of the one global order
            e, b = divmod(micro * self.world + self.rank, self.per_epoch)
            if e != epoch:
                epoch, order = e, epoch_permutation(self.n, self.seed, e)
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            micro += 1


class _DeviceLoader:
    """A DataLoader whose batches arrive on the training device."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __iter__(self):
        from accelerate.utils import send_to_device

        for batch in self.loader:
            yield send_to_device(batch, self.device)

    def __len__(self) -> int:
        return len(self.loader)


class _EMA:
    """Exponential moving average of a model's weights (a separate copy, never trained)."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.cfg = cfg

    def decay(self, step: int) -> float:
        if not self.cfg.ema_warmup:
            return self.cfg.ema_decay
        k = max(step - self.cfg.ema_start - 1, 0)
        return min(self.cfg.ema_decay, 1.0 - (1.0 + k) ** (-2.0 / 3.0))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Called after global step ``step``: copy before ema_start, average every ema_every steps after."""
        if step <= self.cfg.ema_start:
            decay = 0.0
        elif step % self.cfg.ema_every == 0:
            decay = self.decay(step)
        else:
            return
        for ema_t, t in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_t.dtype.is_floating_point and decay > 0.0:
                ema_t.lerp_(t.detach().to(ema_t.dtype), 1.0 - decay)
            else:
                ema_t.copy_(t.detach())


class _CsvLog:
    """The CSV log: one row per logged step; a new column rewrites the file with the wider header."""

    def __init__(self, path: Path, keep_until_step: int):
        self.path = path
        self.fields: list[str] = []
        rows = self._read_rows(keep_until_step) if keep_until_step > 0 else []
        for row in rows:
            self._add_fields(row)
        self._rewrite(rows)

    def _read_rows(self, max_step: int) -> list[dict]:
        if not self.path.is_file():
            return []
        kept = []
        with open(self.path, newline="") as f:
            for row in csv.DictReader(f):
                try:  # a run killed mid-write can leave a torn last line: drop it
                    step = int(row.get("step") or "")
                except ValueError:
                    continue
                if step <= max_step and None not in row:
                    kept.append({k: v for k, v in row.items() if v not in (None, "")})
        return kept

    def _add_fields(self, row: dict) -> bool:
        new = [k for k in row if k not in self.fields]
        self.fields.extend(new)
        return bool(new)

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_file(self.path, mode="w") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            if self.fields:
                writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self._add_fields(row):
            rows = self._read_rows(sys.maxsize)
            self._rewrite([*rows, row])
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)


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


def _first_nonfinite(named: dict[str, torch.nn.Module]) -> str | None:
    """The name of the first parameter or buffer holding NaN/Inf, or None."""
    for prefix, module in named.items():
        for name, t in module.state_dict().items():
            if torch.is_tensor(t) and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                return f"{prefix}.{name}"
    return None


def _write_engine_state(path: Path, state: dict) -> None:
    torch.save(state, path)


def _peak_memory() -> dict:
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    out = {"peak_rss_mb": rss_kb / 1024.0}
    if torch.cuda.is_available():
        out["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_memory_mb"] = out["peak_gpu_mem_mb"]
    else:
        out["peak_memory_mb"] = out["peak_rss_mb"]
    return out


def _make_accelerator(cfg: TrainConfig):
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


def _check_resumable(ckpt: Path, info: dict, cfg: TrainConfig, n_train: int) -> None:
    saved, now = info.get("config", {}), cfg.to_dict()
    changed = sorted(k for k in now if k not in _BOOKKEEPING and saved.get(k) != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise RadiodiffError(f"{ckpt}: cannot resume, the training config changed ({diffs}); use a new state folder")
    if info.get("n_train") != n_train:
        raise RadiodiffError(
            f"{ckpt}: cannot resume, the training set had {info.get('n_train')} samples and now has {n_train}"
        )


# --------------------------------------------------------------------------- the loop


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

    Writes checkpoints to ``state_dir`` (keyed by the caller, e.g. with :func:`state_key`), the
    EMA model via ``task.export`` to ``model_dir`` (atomically, at the end), the CSV log to
    ``log_csv`` and TensorBoard scalars to ``tb_dir``. Returns a summary: steps, steps_run,
    seconds, steps_per_s, peak memory (peak_memory_mb, peak_rss_mb, peak_gpu_mem_mb on CUDA), device,
    val (the final metrics of ``task.evaluate``, unprefixed; ``val/``-prefixed in the logs),
    skipped_nonfinite and resumed_from (the step resumed from, or None).
    """
    from accelerate.utils import send_to_device, set_seed
    from tqdm.auto import tqdm

    cfg.validate()
    state_dir, model_dir, log_csv = Path(state_dir), Path(model_dir), Path(log_csv)
    kill_at = int(os.environ.get(KILL_ENV) or 0)
    accelerator = _make_accelerator(cfg)
    device = accelerator.device
    set_seed(cfg.seed)

    # ---- model, optimizers (one AdamW per param group), LR schedulers ----
    modules = task.modules()
    groups = task.param_groups()
    _check_param_groups(groups, modules)
    ema = _EMA(task.model, cfg)  # copied before prepare() patches forward() for autocast
    ema.model.to(device)
    names = [name for name, _, _ in groups]
    group_params = [list(params) for _, params, _ in groups]
    optimizers = []
    for _, params, overrides in groups:
        kwargs = {"lr": cfg.lr, "betas": tuple(cfg.betas), "weight_decay": cfg.weight_decay, **overrides}
        optimizers.append(torch.optim.AdamW(params, **kwargs))

    def multiplier(step: int) -> float:
        return lr_multiplier(step, cfg.max_steps, cfg.lr_power, cfg.min_lr)

    schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, multiplier) for opt in optimizers]
    world, main = accelerator.num_processes, accelerator.is_main_process
    if world > 1:
        # Not wrapped in DDP (see the module docstring): placed, and gradients averaged by hand.
        prepared = [accelerator.prepare_model(m, evaluation_mode=True) for m in modules.values()]
        prepared += list(accelerator.prepare(*optimizers, *schedulers))
    else:
        prepared = accelerator.prepare(*modules.values(), *optimizers, *schedulers)
        prepared = list(prepared) if isinstance(prepared, tuple | list) else [prepared]
    n_mod, n_opt = len(modules), len(optimizers)
    prepared_modules = prepared[:n_mod]
    optimizers = prepared[n_mod : n_mod + n_opt]
    schedulers = prepared[n_mod + n_opt :]
    others = [[p for j, ps in enumerate(group_params) if j != i for p in ps] for i in range(n_opt)]

    # ---- data: the engine's own resumable order ----
    n_train = len(train_set)
    if n_train < cfg.batch_size:
        raise ParamsError(f"train config: batch_size {cfg.batch_size} exceeds the {n_train} training samples")
    per_epoch = n_train // cfg.batch_size
    if world > 1 and n_train < cfg.batch_size * world:
        raise ParamsError(
            f"train config: {world} processes x batch_size {cfg.batch_size} exceed the {n_train} training samples"
        )
    val_loader = None
    if val_set is not None and len(val_set) > 0:
        val_loader = _DeviceLoader(
            DataLoader(
                val_set,
                batch_size=cfg.batch_size,
                shuffle=False,
                num_workers=cfg.num_workers,
                generator=torch.Generator().manual_seed(cfg.seed),
            ),
            device,
        )

    # ---- resume from the newest complete checkpoint ----
    if main:  # one process cleans, so none removes another's temporary folder
        _remove_stale_temporaries(state_dir, model_dir)
    step, skipped, in_a_row = 0, 0, 0
    ckpt = latest_checkpoint(state_dir)
    resumed_from = None
    if ckpt is not None:
        info = json.loads((ckpt / COMPLETE_MARKER).read_text())
        _check_resumable(ckpt, info, cfg, n_train)
        if info.get("processes", 1) != world:
            raise RadiodiffError(
                f"{ckpt}: saved by {info.get('processes', 1)} process(es), resumed by {world}; "
                "resume with the same number of processes or use a new state folder"
            )
        accelerator.load_state(str(ckpt))  # weights, optimizers, schedulers, scaler, RNG states
        engine_state = torch.load(ckpt / ENGINE_STATE, map_location=device, weights_only=True)
        ema.model.load_state_dict(engine_state["ema"])
        step, skipped, in_a_row = engine_state["step"], engine_state["skipped_nonfinite"], engine_state["in_a_row"]
        resumed_from = step
    accelerator.step = step * cfg.grad_accum  # Accelerate's micro-batch counter (restored too; made explicit)
    micro = step * cfg.grad_accum  # micro-batches consumed so far

    train_loader = DataLoader(
        train_set,
        batch_sampler=_ResumableBatchSampler(
            n_train, cfg.batch_size, cfg.seed, start=micro, rank=accelerator.process_index, world=world
        ),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        # DataLoader seeds its workers from this generator; without one it would draw from the
        # global RNG at every new iterator and shift the task's own random numbers after a resume.
        generator=torch.Generator().manual_seed(cfg.seed),
    )

    csv_log = _CsvLog(log_csv, keep_until_step=step) if main else None
    tb = None
    if tb_dir is not None and main:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(tb_dir), purge_step=step + 1 if step > 0 else None)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()

    def evaluate() -> dict[str, float]:
        if val_loader is None or not main:
            return {}
        ema.model.eval()
        with _isolated_rng(cfg.seed), torch.no_grad():
            metrics = task.evaluate(ema.model, val_loader)
        return {k: float(v) for k, v in metrics.items()}

    def save(at_step: int) -> None:
        dest = state_dir / f"{CHECKPOINT_PREFIX}{at_step:08d}"
        if (dest / COMPLETE_MARKER).is_file():  # resumed from a finished run: already saved
            return
        if world > 1:
            save_distributed(dest, at_step)
            return
        bad = _first_nonfinite({**modules, "ema": ema.model})
        if bad is not None:
            raise RadiodiffError(
                f"refusing to save the state at step {at_step}: non-finite weights in {bad}; "
                f"last good state kept in {latest_checkpoint(state_dir) or 'none (no checkpoint yet)'}"
            )
        with atomic_dir(dest) as tmp:
            accelerator.save_state(str(tmp))
            _write_engine_state(
                tmp / ENGINE_STATE,
                {"step": at_step, "skipped_nonfinite": skipped, "in_a_row": in_a_row, "ema": ema.model.state_dict()},
            )
            write_json(
                tmp / COMPLETE_MARKER,
                {
                    "step": at_step,
                    "micro_batches": at_step * cfg.grad_accum,
                    "n_train": n_train,
                    "config": cfg.to_dict(),
                },
            )
        for old in list_checkpoints(state_dir)[: -cfg.keep_states]:
            shutil.rmtree(old, ignore_errors=True)

    def save_distributed(dest: Path, at_step: int) -> None:
        """Every process writes its part (Accelerate: weights and optimizers from the main one,
        an RNG file per process) into one temporary folder; the main one completes and renames it."""
        tmp = state_dir / f".{dest.name}.partial"
        if main:
            bad = _first_nonfinite({**modules, "ema": ema.model})
            if bad is not None:
                raise RadiodiffError(f"refusing to save the state at step {at_step}: non-finite weights in {bad}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            _write_engine_state(
                tmp / ENGINE_STATE,
                {"step": at_step, "skipped_nonfinite": skipped, "in_a_row": in_a_row, "ema": ema.model.state_dict()},
            )
            info = {"step": at_step, "micro_batches": at_step * cfg.grad_accum, "n_train": n_train}
            write_json(tmp / COMPLETE_MARKER, {**info, "processes": world, "config": cfg.to_dict()})
            os.replace(tmp, dest)
            for old in list_checkpoints(state_dir)[: -cfg.keep_states]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    # ---- the loop: one iteration = one global step ----
    data = iter(train_loader)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train", file=sys.stderr, disable=not (progress and main))
    val_metrics: dict[str, float] = {}
    steps_run, t_start = 0, time.perf_counter()
    try:
        while step < cfg.max_steps:
            t0 = time.perf_counter()
            terms: dict[str, float] = {}
            window_bad = [False] * n_opt  # a non-finite loss anywhere in the window skips that optimizer
            grad_norms = [float("nan")] * n_opt
            lrs = [opt.param_groups[0]["lr"] for opt in optimizers]
            stepped = [False] * n_opt
            for _ in range(cfg.grad_accum):
                batch = send_to_device(next(data), device)
                micro += 1
                with accelerator.accumulate(*prepared_modules):
                    for i, opt in enumerate(optimizers):
                        with _frozen(others[i]), accelerator.autocast():
                            loss, loss_terms = task.loss(batch, step, i)
                        if not torch.is_tensor(loss) or loss.numel() != 1:
                            raise RadiodiffError(f"task.loss for optimizer {names[i]!r} must return a scalar tensor")
                        if not bool(torch.isfinite(loss.detach()).all()):
                            window_bad[i] = True
                        elif not window_bad[i] and loss.requires_grad:
                            accelerator.backward(loss)
                        _accumulate_terms(terms, names[i], loss, loss_terms, cfg.grad_accum)
                        if accelerator.sync_gradients:
                            if world > 1:
                                window_bad[i] = _average_gradients(accelerator, group_params[i], window_bad[i])
                            grad_norms[i], stepped[i] = _optimizer_step(
                                accelerator, opt, group_params[i], cfg.clip_grad_norm, window_bad[i]
                            )
                            with warnings.catch_warnings():  # torch warns when a skipped step preceded it
                                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                                schedulers[i].step()
            if not accelerator.sync_gradients:  # the window must close on the step's last micro-batch
                raise RadiodiffError("internal error: gradient accumulation out of step with the global step")
            step += 1
            steps_run += 1
            if all(stepped):
                in_a_row = 0
            else:
                skipped += 1
                in_a_row += 1
                if in_a_row >= cfg.max_nonfinite:
                    last = latest_checkpoint(state_dir)
                    raise RadiodiffError(
                        f"training stopped: {in_a_row} non-finite losses in a row at step {step}; "
                        f"last good state kept in {last or 'none (no checkpoint yet)'}"
                    )
            ema.update(task.model, step)
            bar.update(1)

            is_last = step == cfg.max_steps
            do_eval = step % cfg.eval_every == 0 or is_last
            if do_eval:
                val_metrics = evaluate()
            if do_eval or step % cfg.log_every == 0:
                row = {
                    "step": step,
                    "epoch": (micro - 1) // per_epoch,
                    **terms,
                    **{f"lr/{n}": lr for n, lr in zip(names, lrs, strict=True)},
                    **{f"grad_norm/{n}": g for n, g in zip(names, grad_norms, strict=True)},
                    "skipped_nonfinite": skipped,
                    "step_time_s": time.perf_counter() - t0,
                    **({f"val/{k}": v for k, v in val_metrics.items()} if do_eval else {}),
                }
                if csv_log is not None:
                    csv_log.write(row)
                if tb is not None:
                    for k, v in row.items():
                        if k != "step":
                            tb.add_scalar(k, v, step)
                bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items() if k.startswith("loss/")}, refresh=False)
            if step % cfg.save_every == 0 or is_last:
                save(step)
            if step == kill_at:  # test hook (see the module docstring)
                bar.close()
                if tb is not None:
                    tb.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        seconds = time.perf_counter() - t_start

        if steps_run == 0:  # resumed from a finished run: evaluate and export again
            val_metrics = evaluate()
            save(step)
        bad = _first_nonfinite({"ema": ema.model})
        if bad is not None:
            raise RadiodiffError(f"refusing to export {model_dir}: non-finite weights in {bad}")
        if main:  # one process cleans, so none removes another's temporary folder
            _remove_stale_temporaries(state_dir, model_dir)
        if main:
            with atomic_dir(model_dir) as tmp:
                task.export(ema.model, tmp)
        accelerator.wait_for_everyone()
    finally:
        bar.close()
        if tb is not None:
            tb.close()

    return {
        "steps": step,
        "steps_run": steps_run,
        "seconds": seconds,
        "steps_per_s": steps_run / seconds if seconds > 0 else float("nan"),
        **_peak_memory(),
        "device": str(device),
        "val": val_metrics,
        "skipped_nonfinite": skipped,
        "resumed_from": resumed_from,
        "processes": world,
        "main_process": main,
    }


def _average_gradients(accelerator, params, bad_loss: bool) -> bool:
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


def _accumulate_terms(terms: dict, name: str, loss: torch.Tensor, loss_terms: dict, n: int) -> None:
    """Log values of one micro-batch, averaged over the accumulation window."""
    values = {f"loss/{name}": loss.detach()} | {f"{name}/{k}": v for k, v in loss_terms.items()}
    for k, v in values.items():
        terms[k] = terms.get(k, 0.0) + float(v) / n


def _remove_stale_temporaries(state_dir: Path, model_dir: Path) -> None:
    """Delete temporary folders a killed save or export left behind (they never count as states)."""
    stale = []
    if state_dir.is_dir():
        stale += [p for p in state_dir.iterdir() if p.name.startswith(f".{CHECKPOINT_PREFIX}")]
    if model_dir.parent.is_dir():
        stale += [p for p in model_dir.parent.iterdir() if p.name.startswith(f".{model_dir.name}.")]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
