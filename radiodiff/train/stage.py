"""What every training stage does around the engine: key a resumable state folder by params and
inputs, run :func:`~radiodiff.train.engine.train`, copy the CSV log out, and report the run."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch

from radiodiff.core.io import atomic_file
from radiodiff.train.engine import TrainConfig, state_key, train


def fingerprint(paths: list[Path]) -> str:
    """Cheap identity of the input folders: names, sizes and mtimes of their files."""
    h = hashlib.sha256()
    for root in paths:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def run_stage(
    stage: str,
    task,
    train_set,
    val_set,
    train_cfg: dict,
    key: dict,
    sources: list[Path],
    out_dir: Path,
    state_root: Path,
) -> dict:
    """Train ``task`` with the engine; returns the engine's summary.

    The state folder ``state_root/stage/<key>`` is keyed by ``key`` (the stage's params) and
    the inputs' fingerprint: a re-run resumes the same run, an edit starts fresh. The log lives
    with the state (engines delete stage outputs before a re-run) and is copied to
    ``out_dir/train_log.csv`` at the end; the model goes to ``out_dir/model``.
    """
    out_dir = Path(out_dir)
    state_dir = Path(state_root) / stage / state_key({"stage": stage, **key, "inputs": fingerprint(sources)})
    summary = train(
        task,
        train_set,
        val_set,
        TrainConfig(**train_cfg),
        state_dir=state_dir,
        model_dir=out_dir / "model",
        log_csv=state_dir / "train_log.csv",
        tb_dir=Path(os.environ.get("RADIODIFF_TB_DIR", "logs/tensorboard")) / stage,
    )
    if not summary.get("main_process", True):
        # Several processes (accelerate launch): the main one writes the stage's outputs.
        raise SystemExit(0)
    with atomic_file(out_dir / "train_log.csv") as f:
        f.write((state_dir / "train_log.csv").read_text())
    return summary


def run_report(summary: dict, section: dict) -> dict:
    """The run's fields of a stage's ``metrics.json``."""
    return {
        "steps": summary["steps"],
        "steps_per_s": summary["steps_per_s"],
        "seconds": summary["seconds"],
        "peak_memory_mb": summary["peak_memory_mb"],
        "skipped_nonfinite": summary["skipped_nonfinite"],
        "resumed_from": summary["resumed_from"],
        "device": summary.get("device"),
        "params": json.loads(json.dumps(section)),
    }


@torch.no_grad()
def map_metrics(predict: Callable[[dict], torch.Tensor], loader) -> dict[str, float]:
    """Mean NMSE, RMSE, SSIM and PSNR over a loader of maps (``target`` in [−1, 1]; ``valid``
    masks ICASSP's padding); ``predict(batch)`` returns maps on [0, 1]. Undefined values (e.g.
    the NMSE of an all-zero map) are left out of the means."""
    # Imported here: the VAE stages use this module but not radiodiff.evaluate (not a code dep of theirs).
    from radiodiff.evaluate.metrics import per_image_metrics

    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batch in loader:
        pred = predict(batch).float()
        target = ((batch["target"] + 1) / 2).clamp(0, 1).float()
        m = per_image_metrics(pred, target, batch.get("valid"))
        for k in ("nmse", "rmse", "ssim", "psnr"):
            ok = torch.isfinite(m[k])
            sums[k] = sums.get(k, 0.0) + float(m[k][ok].sum())
            counts[k] = counts.get(k, 0) + int(ok.sum())
    return {k: v / max(counts[k], 1) for k, v in sums.items()}
