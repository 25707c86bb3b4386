"""What every training stage does around the engine: key a resumable state folder by params and
inputs, run :func:`~radiodiff.train.engine.train`, copy the CSV log out, and report the run."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from radiodiff.core.io import atomic_file
from radiodiff.data.items import ItemCache
from radiodiff.train.checkpoint import state_key
from radiodiff.train.config import TrainConfig, trajectory
from radiodiff.train.engine import train

BOOKKEEPING_SECTIONS = ("previews",)  # stage sections that change no trained weight


def fingerprint(paths: list[Path]) -> str:
    """Cheap identity of the input folders: names, sizes and mtimes of their files."""
    h = hashlib.sha256()
    for root in paths:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def run_state_dir(stage: str, key: dict, sources: list[Path], runtime: dict) -> Path:
    """The resumable state folder of a run: ``runtime["state_dir"]/stage/<key>``, keyed by the
    stage's params (``key``, its ``params.train`` reduced to the run's trajectory, so raising
    ``max_steps`` under a fixed LR horizon, changing the cadence of logs, evaluations, saves
    and exports, or the LDM's ``previews``, keeps the folder) and the fingerprint of the inputs and of ``init_from``."""
    params = {k: v for k, v in (key.get("params") or {}).items() if k not in BOOKKEEPING_SECTIONS}
    train = params.get("train") or {}
    if train:
        params["train"] = trajectory(train)
    key = {**key, "params": params} if "params" in key else key
    if train.get("init_from"):
        sources = [*sources, Path(train["init_from"])]
    return Path(runtime["state_dir"]) / stage / state_key({"stage": stage, **key, "inputs": fingerprint(sources)})


def run_training(
    stage: str,
    task,
    train_set,
    val_set,
    section: dict,
    runtime: dict,
    key: dict,
    sources: list[Path],
    out_dir: Path,
) -> dict:
    """Train ``task`` with the engine (``section["train"]`` + ``runtime``); returns the engine's summary.

    The state folder ``runtime["state_dir"]/stage/<key>`` is keyed by ``key`` (the stage's params) and
    the inputs' fingerprint: a re-run resumes the same run, an edit starts fresh. The log lives
    with the state (engines delete stage outputs before a re-run) and is copied to
    ``out_dir/train_log.csv`` at the end; the model goes to ``out_dir/model``. Lazily read sets
    share one :class:`~radiodiff.data.items.ItemCache` of ``runtime["item_cache_mb"]``.
    """
    out_dir = Path(out_dir)
    state_dir = run_state_dir(stage, key, sources, runtime)
    cache = ItemCache(int(runtime["item_cache_mb"]) * 2**20)  # decoded samples, shared by both sets
    for items in (train_set, val_set):
        if hasattr(items, "cache"):
            items.cache = cache
    summary = train(
        task,
        train_set,
        val_set,
        TrainConfig.from_params(section["train"], runtime),
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


def run_fields(summary: dict, section: dict) -> dict:
    """The run's fields of a stage's ``metrics.json``."""
    return {
        "steps": summary["steps"],
        "steps_per_s": summary["steps_per_s"],
        "seconds": summary["seconds"],
        "train_seconds": summary["train_seconds"],
        "peak_memory_mb": summary["peak_memory_mb"],
        "skipped_nonfinite": summary["skipped_nonfinite"],
        "resumed_from": summary["resumed_from"],
        "device": summary.get("device"),
        "params": json.loads(json.dumps(section)),
    }


def map_model_metrics(summary: dict, section: dict, dataset: str, meta: dict, model, train_items: int) -> dict:
    """``metrics.json`` of a map model (the LDM and RadioUNet): validation scores and the run."""
    return {
        **{k: summary["val"].get(k) for k in ("nmse", "rmse", "ssim", "psnr")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1"
        + (", building pixels 0" if dataset == "radiomapseer" else ", valid pixels"),
        "condition": meta["condition"],
        "physics_exponent": meta.get("physics_exponent"),
        "parameters": model.num_parameters(),
        "train_items": train_items,
    }
