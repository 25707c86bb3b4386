"""The report's training part: per model an overview row, every loss term and validation metric
against the step, the overview figure, the VAE-GAN's two phases, and the LDM's sample previews
as they improved. Reads each model folder's ``metrics.json``, ``train_log.csv`` and
``previews/`` only."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json, read_png
from radiodiff.eda.common import evenly_spaced
from radiodiff.report import figures as F
from radiodiff.report.document import Doc, fmt
from radiodiff.report.inputs import read_csv
from radiodiff.report.texts import MODELS
from radiodiff.train.previews import read_index


def training_section(doc: Doc, results: Path) -> list[dict]:
    """The overview table of every model in :data:`MODELS`, then each model's part; returns the
    overview rows."""
    doc.heading("Training", 2, "training")
    runs = []
    for kind, name, title in MODELS:
        base = results / kind / name
        metrics = read_json(base / "metrics.json")
        log = read_csv(base / "train_log.csv")
        if "step" not in log.columns:
            raise DataError(f"{base / 'train_log.csv'}: no 'step' column")
        runs.append((kind, name, title, metrics, log))
    overview = [_overview_row(title, metrics) for _, _, title, metrics, _ in runs]
    doc.para(
        "Every model trains on the shared engine (Accelerate, AdamW with RadioDiff's power LR decay, EMA, "
        "NaN/Inf guard). Validation metrics are the EMA model's on the validation split, from each `metrics.json`."
    )
    doc.table(overview)
    for kind, name, title, metrics, log in runs:
        _model_part(doc, results, kind, name, title, metrics, log)
    return overview


def _overview_row(title: str, metrics: dict) -> dict:
    row = {"model": title, "steps": metrics.get("steps"), "parameters": metrics.get("parameters")}
    for k in ("seconds", "steps_per_s", "peak_memory_mb", "skipped_nonfinite", "device"):
        row[k] = metrics.get(k)
    row["resumed from"] = metrics.get("resumed_from")
    row["validation"] = ", ".join(
        f"{k} {fmt(v)}" for k, v in metrics.items() if k in ("nmse", "rmse", "ssim", "psnr", "rmse_db")
    )
    return row


def _model_part(doc: Doc, results: Path, kind: str, name: str, title: str, metrics: dict, log) -> None:
    """One model: its loss terms and overview figures, the LDM's previews, the VAE-GAN's phases."""
    doc.heading(title, 3, f"train-{kind}-{name}")
    disc_start = None
    if kind == "vae":
        disc_start = int(metrics.get("params", {}).get("loss", {}).get("disc_start", 0)) or None
    _, constant = F.loss_terms(log)
    doc.figure(
        partial(F.training_terms_figure, log, title, doc.style, disc_start),
        f"train_{kind}_{name}_terms",
        f"{title}: every varying loss term and validation metric on its own axis"
        + (f" (smoothed over {doc.style.smooth} log rows; raw values faint)" if doc.style.smooth > 1 else "")
        + (f". Constant over the run: {', '.join(constant)}." if constant else "."),
    )
    doc.figure(
        partial(F.training_overview_figure, log, title, doc.style, disc_start),
        f"train_{kind}_{name}_overview",
        f"{title}: terms min-max normalized on one axis, learning rate, gradient norm, skipped non-finite steps.",
    )
    if kind == "ldm":
        previews_section(doc, results / kind / name, title)
    if disc_start is not None:
        doc.para(
            f"Loss phases: steps below `disc_start` = {disc_start} train the autoencoder alone "
            "(reconstruction + KL); from there the patch discriminator's adversarial term joins (VAE-GAN)."
        )
        doc.table(F.phase_table(log, disc_start))


def previews_section(doc: Doc, base: Path, title: str, count: int = 4) -> None:
    """The learning progression: up to ``count`` of the LDM's sample previews (first and last
    included) side by side, from ``previews/previews.json``; a run without previews says so."""
    index = read_index(base / "previews")
    if not index:
        doc.para(f"{title}: no sample previews (`previews.sample_every` is null, or the run predates them).")
        return
    picks = evenly_spaced(index, count)
    for p in picks:
        src = base / "previews" / p["file"]
        if not src.is_file():
            raise DataError(f"{src}: listed in previews.json but missing (re-run the training stage)")
        p["image"] = read_png(src, "RGB")
    doc.figure(
        partial(F.preview_progression_figure, picks, title, doc.style),
        f"previews_{base.parent.name}_{base.name}",
        f"{title}: the EMA model's samples of the first {len(index[0]['rmse_db'])} validation items at "
        f"{len(picks)} of its {len(index)} previews (rows: items; columns: condition, ground truth, prediction, "
        "|prediction − truth| on 0–20 dB). RMSE in dB over the items' scored pixels.",
    )
