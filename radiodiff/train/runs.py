"""What every training stage does around the engine: key a resumable state folder by everything
that decides the run, run :func:`~radiodiff.train.engine.train`, copy the CSV log out, and report
the run.

The state key (:func:`state_key_parts`) is computed here, once for every training stage, from what
the stage is handed: every params key it declares (the CLI hands a stage exactly those, plus the
undeclared ``runtime``), with its ``train`` section reduced to the run's trajectory and its
bookkeeping sections left out; the inputs' fingerprint (and ``init_from``'s); and the contents of
the stage's code, the import closure of its handler module that both engines declare as its
inputs. An edit to any of them trains a new run in a new folder, so a re-run never resumes a
finished run of other data, params or code (issue 26). Each folder keeps its key's parts in
``key.json``; a fresh run says what changed since the newest other run of its stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from radiodiff.core.io import atomic_file, write_json
from radiodiff.core.params import differing_keys
from radiodiff.dag.code_deps import REPO_ROOT, code_deps
from radiodiff.data.items import ItemCache
from radiodiff.train.checkpoint import list_checkpoints, state_key
from radiodiff.train.config import TrainConfig, trajectory
from radiodiff.train.engine import train

BOOKKEEPING_SECTIONS = ("previews",)  # stage sections that change no trained weight
KEY_FILE = "key.json"  # a state folder's key parts


def fingerprint(paths: list[Path]) -> str:
    """Cheap identity of the input folders: names, sizes and mtimes of their files."""
    h = hashlib.sha256()
    for root in paths:
        for p in sorted(Path(root).rglob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def code_digests(handler: str) -> dict[str, str]:
    """sha256 (16 hex digits) of the contents of every file the stage's handler module runs
    (:func:`~radiodiff.dag.code_deps.code_deps`, the closure both engines declare)."""
    return {path: hashlib.sha256((REPO_ROOT / path).read_bytes()).hexdigest()[:16] for path in code_deps(handler)}


def state_key_parts(stage: str, handler: str, params: dict, sources: list[Path]) -> dict:
    """What the state folder of ``stage`` is keyed by: ``params`` as the stage is handed them
    (its declared keys; ``runtime`` left out) with ``params[stage]["train"]`` reduced to the run's
    :func:`~radiodiff.train.config.trajectory` (so raising ``max_steps`` under a fixed LR horizon,
    or changing the cadence of logs, evaluations, saves and exports, keeps the folder) and the
    bookkeeping sections (the LDM's ``previews``) left out; the fingerprint of the ``sources``
    and of ``init_from``; and :func:`code_digests` of ``handler``."""
    declared = {k: v for k, v in params.items() if k != "runtime"}
    section = {k: v for k, v in (declared.get(stage) or {}).items() if k not in BOOKKEEPING_SECTIONS}
    train_section = section.get("train") or {}
    if train_section:
        section["train"] = trajectory(train_section)
    declared[stage] = section
    if train_section.get("init_from"):
        sources = [*sources, Path(train_section["init_from"])]
    return {
        "stage": stage,
        "params": json.loads(json.dumps(declared)),
        "inputs": fingerprint(sources),
        "code": code_digests(handler),
    }


def run_state_dir(stage: str, handler: str, params: dict, sources: list[Path]) -> Path:
    """The resumable state folder of a run: ``runtime.state_dir/stage/<key>``, the key a short
    hash of :func:`state_key_parts`."""
    return Path(params["runtime"]["state_dir"]) / stage / state_key(state_key_parts(stage, handler, params, sources))


def key_changes(old: dict, new: dict) -> list[str]:
    """What differs between two :func:`state_key_parts`, in words (params keys, inputs, code files)."""
    changes = [f"params {k}" for k in differing_keys(old.get("params"), new.get("params"))]
    if old.get("inputs") != new.get("inputs"):
        changes.append("the input files")
    changes += [f"code {f}" for f in differing_keys(old.get("code") or {}, new.get("code") or {})]
    return changes


def announce_state(state_dir: Path, parts: dict) -> None:
    """Record the key's parts in the state folder (``key.json``); for a fresh run, say on stderr
    what changed since the newest other run of the stage (its ``key.json``)."""
    if list_checkpoints(state_dir):
        return  # a resumed run: same key
    others = [p for p in state_dir.parent.glob(f"*/{KEY_FILE}") if p.parent != state_dir]
    write_json(state_dir / KEY_FILE, parts)
    if not others:
        return
    newest = max(others, key=lambda p: p.stat().st_mtime_ns)
    try:
        changes = key_changes(json.loads(newest.read_text()), parts)
    except (OSError, ValueError):
        return
    print(
        f"radiodiff: {parts['stage']}: a new run in {state_dir} (the run in {newest.parent} differs in: "
        f"{', '.join(changes) or 'nothing recorded'})",
        file=sys.stderr,
        flush=True,
    )


def run_training(
    stage: str,
    handler: str,
    task,
    train_set,
    val_set,
    params: dict,
    sources: list[Path],
    out_dir: Path,
) -> dict:
    """Train ``task`` with the engine (``params[stage]["train"]`` + ``params["runtime"]``); returns
    the engine's summary.

    ``params`` are the values the stage was handed, ``handler`` its module and ``sources`` its
    input folders: the state folder ``runtime.state_dir/stage/<key>`` (:func:`run_state_dir`)
    holds the run, so a re-run with the same key resumes it and any edit starts fresh. The log
    lives with the state (engines delete stage outputs before a re-run) and is copied to
    ``out_dir/train_log.csv`` at the end; the model goes to ``out_dir/model``. Lazily read sets
    share one :class:`~radiodiff.data.items.ItemCache` of ``runtime.item_cache_mb``.
    """
    out_dir = Path(out_dir)
    runtime = params["runtime"]
    parts = state_key_parts(stage, handler, params, sources)
    state_dir = Path(runtime["state_dir"]) / stage / state_key(parts)
    cache = ItemCache(int(runtime["item_cache_mb"]) * 2**20)  # decoded samples, shared by both sets
    for items in (train_set, val_set):
        if hasattr(items, "cache"):
            items.cache = cache
    if os.environ.get("RANK", "0") == "0":  # the main process records the key
        announce_state(state_dir, parts)
    summary = train(
        task,
        train_set,
        val_set,
        TrainConfig.from_params(params[stage]["train"], runtime),
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


def map_model_metrics(summary: dict, section: dict, record, model, train_items: int) -> dict:
    """``metrics.json`` of a map model (the LDM and RadioUNet): validation scores and the run;
    ``record`` is the model folder's :class:`~radiodiff.models.map_model.MapModelRecord`."""
    return {
        **{k: summary["val"].get(k) for k in ("nmse", "rmse", "ssim", "psnr")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1"
        + (", building pixels 0" if record.dataset == "radiomapseer" else ", valid pixels"),
        "condition": record.condition,
        "physics_exponent": record.physics_exponent,
        "parameters": model.num_parameters(),
        "train_items": train_items,
    }
