"""The settings of one training run: a stage's ``train`` section plus the ``runtime`` section.

The fields mirror the schema's ``$defs/train`` and ``runtime`` one for one; their defaults live
in the schema only (:meth:`TrainConfig.with_defaults` reads them there).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from radiodiff.core.errors import ParamsError

MIXED_PRECISION = ("no", "bf16", "fp16")
RUNTIME_FIELDS = ("num_workers", "pin_memory", "keep_states")  # execution settings: read, never re-run triggers
# Fields that only change bookkeeping; every other field changes the trajectory, so a resume
# with a different value would not continue the same run.
BOOKKEEPING = {"save_every", "eval_every", "log_every", "export_every", "max_nonfinite", *RUNTIME_FIELDS}
# Where a run stops is not its trajectory either: with the LR horizon fixed, a run to N is the
# first N steps of a run to 2N (raising max_steps extends it; see TrainConfig.horizon).
EXTENDABLE = {"max_steps", "lr_horizon"}


def trajectory(train: dict) -> dict:
    """The fields of a ``train`` section (or :meth:`TrainConfig.to_dict`) that decide the run's
    trajectory: everything but bookkeeping and where it stops, with the LR horizon resolved.
    Runs that agree on it are one run stopped at different steps (one state folder)."""
    kept = {k: v for k, v in train.items() if k not in BOOKKEEPING | EXTENDABLE}
    horizon = train.get("lr_horizon")
    return {**kept, "lr_horizon": horizon if horizon is not None else train.get("max_steps")}


@dataclass
class TrainConfig:
    """Settings of one training run (schema ``$defs/train`` + ``runtime``)."""

    max_steps: int  # where the run stops
    # The steps the LR schedule decays over (None: max_steps). Fixing it apart from max_steps
    # lets a run be stopped at N and extended to 2N on the same trajectory.
    lr_horizon: int | None
    batch_size: int  # the global micro-batch (split over the processes); a global step uses batch_size * grad_accum
    grad_accum: int
    lr: float
    # LR multiplier max((1 - step/horizon) ** lr_power, min_lr): RadioDiff's power decay. The
    # original floors the *multiplier* at min_lr, so the effective floor LR is lr * min_lr.
    lr_power: float
    min_lr: float
    weight_decay: float
    betas: tuple[float, float]
    clip_grad_norm: float | None  # clipped before optimizer.step() (the original clipped after it)
    # EMA of task.model: updated every ema_every steps after ema_start, a plain copy until then.
    # With ema_warmup the decay ramps up as 1 - (1 + k)^(-2/3), k = steps since ema_start, capped
    # at ema_decay (ema_pytorch's default warm-up, which the RadioDiff code trains with), so a
    # short run's EMA is not stuck near the initial weights.
    ema_decay: float
    ema_every: int
    ema_start: int
    ema_warmup: bool
    mixed_precision: str  # no | bf16 | fp16 (fp16 needs CUDA; bf16 also runs on CPU)
    save_every: int
    eval_every: int
    log_every: int
    export_every: int | None  # milestone model exports under the state folder (None: none)
    init_from: str | None  # a model folder whose network weights start the run (None: seeded init)
    max_nonfinite: int  # this many non-finite steps in a row stop the run
    seed: int
    num_workers: int
    pin_memory: bool
    keep_states: int

    @classmethod
    def from_params(cls, train: dict, runtime: dict) -> TrainConfig:
        """From a stage's ``train`` section and the ``runtime`` section (both complete: the
        schema requires every key)."""
        fields = {**train, **{k: runtime[k] for k in RUNTIME_FIELDS}}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ParamsError(f"train config: unknown key(s) {unknown}")
        return cls(**fields)

    @classmethod
    def with_defaults(cls, **overrides) -> TrainConfig:
        """The schema's defaults with ``overrides`` (tests and notebooks)."""
        from radiodiff.core.params import schema_defaults

        runtime = schema_defaults("properties/runtime")
        return cls(**{**schema_defaults("$defs/train"), **{k: runtime[k] for k in RUNTIME_FIELDS}, **overrides})

    @property
    def horizon(self) -> int:
        """The steps the LR schedule decays over: ``lr_horizon``, or ``max_steps`` when unset."""
        return self.lr_horizon if self.lr_horizon is not None else self.max_steps

    def validate(self) -> None:
        """Raise :class:`ParamsError` naming the first invalid field."""
        positive = ("max_steps", "batch_size", "grad_accum", "ema_every", "save_every", "eval_every", "log_every")
        for name in (*positive, "max_nonfinite", "keep_states"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ParamsError(f"train config: {name} must be an integer >= 1, got {value!r}")
        for name in ("lr_horizon", "export_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ParamsError(f"train config: {name} must be an integer >= 1 or null, got {value!r}")
        if self.init_from is not None and not (isinstance(self.init_from, str) and self.init_from.strip()):
            raise ParamsError(f"train config: init_from must be a model folder or null, got {self.init_from!r}")
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
        if not isinstance(self.ema_warmup, bool):
            raise ParamsError(f"train config: ema_warmup must be true or false, got {self.ema_warmup!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ParamsError(
                f"train config: mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"got {self.mixed_precision!r}"
            )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d
