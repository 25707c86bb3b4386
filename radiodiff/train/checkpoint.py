"""Resumable training state: atomic checkpoints, the newest complete one, and resuming from it.

Every ``save_every`` steps and at the end the full state goes to
``state_dir/checkpoint-{step:08d}``: Accelerate's ``save_state`` (module weights, optimizers,
schedulers, GradScaler, the Python/NumPy/torch/CUDA RNG states) plus ``engine_state.pt`` (EMA
weights, counters) and, written last, the completion marker ``checkpoint.json``. The folder is
written under a temporary name in ``state_dir`` and renamed into place, so a crash mid-save
leaves the previous checkpoint as the latest complete one. Non-finite weights are never saved.
With several processes every process writes its part (its RNG state) into one temporary folder
and the main process completes and renames it.

A checkpoint knows it is whole: its marker records every file's size and xxh3-128 checksum
(about 25 GB/s here, so verifying a multi-GB state takes seconds). Resuming verifies the
checkpoint it picks; a damaged one (a truncated or missing file, disk damage, a bad copy) is
renamed ``damaged-checkpoint-…`` (so saving and pruning never count it), one warning names the
file, and the run resumes from the previous whole checkpoint. Checkpoints written before the
marker held checksums are accepted if they load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xxhash

from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import atomic_dir, write_json
from radiodiff.train.config import TrainConfig, trajectory

CHECKPOINT_PREFIX = "checkpoint-"
COMPLETE_MARKER = "checkpoint.json"  # written last: a checkpoint folder without it does not count
ENGINE_STATE = "engine_state.pt"
EXPORTS = "exports"  # milestone model exports: state_dir/exports/step-{step:08d}/ (train.export_every)
DAMAGED_PREFIX = "damaged-"  # a checkpoint that failed verification, set aside (never resumed, pruned or counted)
CHECKSUM = "xxh3_128"


@dataclass
class Counters:
    """The engine's own progress, saved with every checkpoint."""

    step: int = 0  # global steps completed
    skipped: int = 0  # steps skipped for a non-finite loss or gradient
    in_a_row: int = 0  # of them, consecutive up to now
    seconds: float = 0.0  # training wall seconds (steps, validation, previews) up to this state


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


def file_checksum(path: Path) -> str:
    """The xxh3-128 checksum of a file (hex), hashed from a memory map (no copy out of the page
    cache: about 25 GB/s here, 4× a chunked read)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return xxhash.xxh3_128().hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return xxhash.xxh3_128(m).hexdigest()


def file_records(folder: Path) -> dict[str, dict]:
    """Size and checksum of every file of a checkpoint folder but its marker, by relative path."""
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, CHECKSUM: file_checksum(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).as_posix() != COMPLETE_MARKER
    }


def damage(ckpt: Path, info: dict) -> str | None:
    """The first file of ``ckpt`` that differs from its marker's record (missing, another size or
    checksum), in words; None when every recorded file is whole (or none is recorded: an older
    checkpoint)."""
    for name, rec in (info.get("files") or {}).items():
        path = ckpt / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != rec["size"]:
            return f"{path} has {size} bytes, {rec['size']} were saved"
        if file_checksum(path) != rec[CHECKSUM]:
            return f"{path} does not match its {CHECKSUM} checksum"
    return None


def set_aside(ckpt: Path, why: str, main: bool = True) -> None:
    """Rename a damaged checkpoint ``damaged-checkpoint-…`` (the main process) and warn once."""
    if not main:
        return
    dest, n = ckpt.with_name(DAMAGED_PREFIX + ckpt.name), 1
    while dest.exists():
        dest, n = ckpt.with_name(f"{DAMAGED_PREFIX}{ckpt.name}.{n}"), n + 1
    ckpt.rename(dest)
    print(f"radiodiff: warning: {why}: checkpoint set aside as {dest.name}", file=sys.stderr, flush=True)


def latest_checkpoint(state_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``state_dir``, or None."""
    found = list_checkpoints(state_dir)
    return found[-1] if found else None


def first_nonfinite(named: dict[str, torch.nn.Module]) -> str | None:
    """The name of the first parameter or buffer holding NaN/Inf, or None."""
    for prefix, module in named.items():
        for name, t in module.state_dict().items():
            if torch.is_tensor(t) and t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                return f"{prefix}.{name}"
    return None


def remove_stale_temporaries(state_dir: Path, model_dir: Path) -> None:
    """Delete temporary folders a killed save or export left behind (they never count as states)."""
    stale = []
    if state_dir.is_dir():
        stale += [p for p in state_dir.iterdir() if p.name.startswith(f".{CHECKPOINT_PREFIX}")]
    if model_dir.parent.is_dir():
        stale += [p for p in model_dir.parent.iterdir() if p.name.startswith(f".{model_dir.name}.")]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _check_resumable(ckpt: Path, info: dict, cfg: TrainConfig, n_train: int, world: int) -> None:
    saved, now = trajectory(info.get("config", {})), trajectory(cfg.to_dict())
    changed = sorted(k for k in now if saved.get(k) != now[k])
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise RadiodiffError(f"{ckpt}: cannot resume, the training config changed ({diffs}); use a new state folder")
    if info.get("n_train") != n_train:
        raise RadiodiffError(
            f"{ckpt}: cannot resume, the training set had {info.get('n_train')} samples and now has {n_train}"
        )
    if info.get("processes", 1) != world:
        raise RadiodiffError(
            f"{ckpt}: saved by {info.get('processes', 1)} process(es), resumed by {world}; "
            "resume with the same number of processes or use a new state folder"
        )


def checkpoint_step(ckpt: Path) -> int:
    """The global step a checkpoint folder was saved at (from its name)."""
    return int(ckpt.name.removeprefix(CHECKPOINT_PREFIX))


def resumable_checkpoint(state_dir: Path, max_steps: int, exclude: frozenset[str] = frozenset()) -> Path | None:
    """The checkpoint a run to ``max_steps`` resumes from: the newest complete one, or, when the
    folder's run went further (``max_steps`` lowered), the one saved at ``max_steps`` exactly.
    A run cannot be rewound to a step it holds no state for: that is a clear error. Folders
    named in ``exclude`` (found damaged) do not count."""
    found = [p for p in list_checkpoints(state_dir) if p.name not in exclude]
    if not found or checkpoint_step(found[-1]) <= max_steps:
        return found[-1] if found else None
    for ckpt in found:
        if checkpoint_step(ckpt) == max_steps:
            return ckpt
    raise RadiodiffError(
        f"{state_dir}: this run went on to step {checkpoint_step(found[-1])} and holds no state at "
        f"max_steps {max_steps} to stop at; set max_steps >= {checkpoint_step(found[-1])}, or take an "
        f"earlier model from its milestone exports ({state_dir / EXPORTS}/, train.export_every)"
    )


def resume(state_dir: Path, accelerator, ema_model: torch.nn.Module, cfg: TrainConfig, n_train: int) -> Counters | None:
    """Load the checkpoint :func:`resumable_checkpoint` picks into the prepared objects and the
    EMA; None when there is none (a fresh run). The checkpoint is verified first (:func:`damage`);
    a damaged one is set aside and the previous one tried, and with none left whole the run stops
    with an error naming the folder (it does not silently start over)."""
    damaged: list[str] = []
    while (ckpt := resumable_checkpoint(state_dir, cfg.max_steps, frozenset(damaged))) is not None:
        try:
            info = json.loads((ckpt / COMPLETE_MARKER).read_text())
        except (OSError, ValueError) as e:
            why = f"{ckpt / COMPLETE_MARKER} does not read ({type(e).__name__})"
        else:
            _check_resumable(ckpt, info, cfg, n_train, accelerator.num_processes)
            why = damage(ckpt, info)
            if why is None:
                try:
                    return _load(ckpt, accelerator, ema_model)
                except Exception as e:
                    if info.get("files"):  # verified whole: a failure to load it is not damage
                        raise
                    why = f"{ckpt} (saved without checksums) does not load ({type(e).__name__}: {e})"
        set_aside(ckpt, why, accelerator.is_main_process)
        damaged.append(ckpt.name)
    if damaged:
        raise RadiodiffError(
            f"{state_dir}: no whole checkpoint left to resume from ({', '.join(damaged)} damaged, set aside as "
            f"{DAMAGED_PREFIX}*); delete this folder to train the run from its start"
        )
    return None


def _load(ckpt: Path, accelerator, ema_model: torch.nn.Module) -> Counters:
    accelerator.load_state(str(ckpt))  # weights, optimizers, schedulers, scaler, RNG states
    # on the CPU first: a multi-CPU run's device is "cpu:0", which torch.load cannot map to
    state = torch.load(ckpt / ENGINE_STATE, map_location="cpu", weights_only=True)
    ema_model.load_state_dict(state["ema"])
    # states written before the training seconds were kept count from 0
    return Counters(state["step"], state["skipped_nonfinite"], state["in_a_row"], float(state.get("seconds", 0.0)))


class Saver:
    """Writes the checkpoints of one run and keeps the newest ``cfg.keep_states``."""

    def __init__(self, state_dir: Path, accelerator, modules: dict, ema_model, cfg: TrainConfig, n_train: int):
        self.state_dir, self.accelerator, self.cfg, self.n_train = state_dir, accelerator, cfg, n_train
        self.modules, self.ema_model = modules, ema_model
        self.world, self.main = accelerator.num_processes, accelerator.is_main_process

    def save(self, counters: Counters) -> None:
        at_step = counters.step
        dest = self.state_dir / f"{CHECKPOINT_PREFIX}{at_step:08d}"
        if (dest / COMPLETE_MARKER).is_file():  # resumed from a finished run: already saved
            return
        if self.world > 1:
            self._save_distributed(dest, counters)
            return
        self._refuse_nonfinite(at_step)
        with atomic_dir(dest) as tmp:
            self.accelerator.save_state(str(tmp))
            self._write_engine_part(tmp, counters)
        self._prune()

    def _save_distributed(self, dest: Path, counters: Counters) -> None:
        """Every process writes its part (Accelerate: weights and optimizers from the main one,
        an RNG file per process) into one temporary folder; the main one completes and renames it."""
        tmp = self.state_dir / f".{dest.name}.partial"
        if self.main:
            self._refuse_nonfinite(counters.step)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()
        if self.main:
            self._write_engine_part(tmp, counters)
            os.replace(tmp, dest)
            self._prune()
        self.accelerator.wait_for_everyone()

    def _refuse_nonfinite(self, at_step: int) -> None:
        bad = first_nonfinite({**self.modules, "ema": self.ema_model})
        if bad is not None:
            raise RadiodiffError(
                f"refusing to save the state at step {at_step}: non-finite weights in {bad}; "
                f"last good state kept in {latest_checkpoint(self.state_dir) or 'none (no checkpoint yet)'}"
            )

    def _write_engine_part(self, folder: Path, counters: Counters) -> None:
        state = {
            "step": counters.step,
            "skipped_nonfinite": counters.skipped,
            "in_a_row": counters.in_a_row,
            "seconds": counters.seconds,
            "ema": self.ema_model.state_dict(),
        }
        torch.save(state, folder / ENGINE_STATE)
        info = {"step": counters.step, "micro_batches": counters.step * self.cfg.grad_accum, "n_train": self.n_train}
        if self.world > 1:
            info["processes"] = self.world
        info["files"] = file_records(folder)  # every part, written: the marker is the last file
        write_json(folder / COMPLETE_MARKER, {**info, "config": self.cfg.to_dict()})

    def _prune(self) -> None:
        for old in list_checkpoints(self.state_dir)[: -self.cfg.keep_states]:
            shutil.rmtree(old, ignore_errors=True)
