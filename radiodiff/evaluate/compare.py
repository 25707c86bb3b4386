"""Two folders of maps scored one against the other (``radiodiff compare``), with the evaluate
stages' metric code (:class:`radiodiff.metrics.MetricAccumulator`).

Files pair by name: the original RadioDiff sampler's ``gt-sample-N.png`` (truth) with
``sample-N.png`` (prediction), the two possibly in one folder; otherwise the same file name in
both folders (RadioMapSeer gray PNGs ``{map}_{tx}.png``, ICASSP path-loss PNGs
``B{b}_Ant{a}_f{f}_S{s}.png``, the sample stages' ``results/samples/{dataset}/{method}/``). Every
PNG must be 8-bit gray, each prediction the size of its truth, and every file paired: anything
else is one :class:`~radiodiff.core.errors.DataError` naming the file, raised before anything
is written.

Encodings: RadioMapSeer gray / 255 on [0, 1], every pixel scored, RMSE in dB = 99.16 × RMSE;
ICASSP path loss in dB → (160 − PL) / 147, scored where the truth is not 0 (the sample stages'
padding), RMSE in dB = 147 × RMSE. Metres per pixel (for the brightest-point distance): by
default a RadioMapSeer map spans 256 m whatever its size, an ICASSP pixel is 0.25 m.

``compare --truth results/samples/DS/truth --pred results/samples/DS/radiodiff --dataset DS``
reproduces the ``radiodiff`` entry of ``results/evaluate/DS/summary.json`` on its top-level scope
(RadioMapSeer ``all``: every pixel, buildings zeroed, which the PNGs already are; ICASSP
``valid``), except that the evaluate stage scores the float ground truth and ``truth/`` holds it
rounded to the PNG (RadioMapSeer 1/255 steps, at most 0.5/255 ≈ 0.19 dB off per pixel; ICASSP
whole dB, at most 0.5 dB): errors differ by about that much, and the brightest point can move
where rounding makes pixels tie.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from radiodiff.core.encodings import (
    ICASSP_DB_PER_UNIT,
    ICASSP_PIXEL_SIZE_M,
    RADIOMAPSEER_DB_PER_UNIT,
    RADIOMAPSEER_PIXEL_SIZE_M,
    RADIOMAPSEER_SIDE_PX,
    gray_to_unit,
    pl_png_to_unit,
)
from radiodiff.core.errors import DataError
from radiodiff.metrics import MetricAccumulator, relative_error_map

DATASETS = ("radiomapseer", "icassp")
GT_SAMPLE = re.compile(r"gt-sample-(\d+)\.png")
SAMPLE = re.compile(r"sample-(\d+)\.png")
BATCH = 64  # pairs scored at a time
RELATIVE_ERROR_BINS = 100  # histogram of the per-pixel relative error on [0, 1]
STAT_COLUMNS = ("mean", "std", "min", "max", "median", "n")


@dataclass(frozen=True)
class Pair:
    name: str
    truth: Path
    pred: Path


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def pair_files(truth_dir, pred_dir) -> list[Pair]:
    """The (truth, prediction) PNG pairs of two folders, in natural name order (see the module
    docstring for the naming rules); a folder missing or without PNGs, or a file without its
    partner, is a :class:`DataError` naming it."""
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    for d in (truth_dir, pred_dir):
        if not d.is_dir():
            raise DataError(f"{d}: folder not found")
    truth_files = sorted(p.name for p in truth_dir.glob("*.png"))
    pred_files = sorted(p.name for p in pred_dir.glob("*.png"))
    if not truth_files:
        raise DataError(f"{truth_dir}: no PNG files")
    if not pred_files:
        raise DataError(f"{pred_dir}: no PNG files")
    same = truth_dir.resolve() == pred_dir.resolve()
    if any(GT_SAMPLE.fullmatch(n) for n in truth_files):  # the original sampler's names
        truth = {GT_SAMPLE.fullmatch(n).group(1): n for n in truth_files if GT_SAMPLE.fullmatch(n)}
        pred = {SAMPLE.fullmatch(n).group(1): n for n in pred_files if SAMPLE.fullmatch(n)}
        roles = {*truth.values(), *pred.values()} if same else None
        for d, names, known in ((truth_dir, truth_files, truth.values()), (pred_dir, pred_files, pred.values())):
            stray = [n for n in names if n not in (roles if same else known)]
            if stray:
                raise DataError(
                    f"{d / stray[0]}: not named like the original sampler's gt-sample-N.png / sample-N.png "
                    f"({len(stray)} such file(s))"
                )
    else:
        if same:
            raise DataError(f"{truth_dir}: --truth and --pred are one folder without gt-sample-N.png files")
        truth = {Path(n).stem: n for n in truth_files}
        pred = {Path(n).stem: n for n in pred_files}
    common = sorted(set(truth) & set(pred), key=_natural)
    if not common:
        raise DataError(f"{truth_dir}: no file pairs with {pred_dir} (no name in common)")
    for d, names, other, partner in ((truth_dir, truth, pred, pred_dir), (pred_dir, pred, truth, truth_dir)):
        alone = sorted(set(names) - set(other), key=_natural)
        if alone:
            raise DataError(f"{d / names[alone[0]]}: no partner in {partner} ({len(alone)} unpaired file(s) in {d})")
    return [Pair(k, truth_dir / truth[k], pred_dir / pred[k]) for k in common]


def _open_gray(path: Path, load: bool):
    """The size (W, H) of an 8-bit gray PNG and, with ``load``, its pixels (uint8 H×W); any other
    kind of file is a :class:`DataError` naming it. Without ``load`` only the header is read."""
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode != "L":
                kind = {"I;16": "16-bit", "I;16B": "16-bit", "I": "32-bit integer", "F": "float"}.get(mode)
                kind = kind or ("colour" if mode in ("RGB", "RGBA", "P", "CMYK", "LA") else f"mode {mode}")
                raise DataError(f"{path}: a {kind} PNG (mode {mode}); expected 8-bit gray (mode L)")
            return im.size, (np.asarray(im).copy() if load else None)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None


def read_gray(path: Path) -> np.ndarray:
    """An 8-bit gray PNG as uint8 (H, W); any other kind is a :class:`DataError` naming it."""
    return _open_gray(path, load=True)[1]


def check_pairs(pairs: list[Pair]) -> None:
    """Every file 8-bit gray and every prediction its truth's size, from the PNG headers alone
    (before any scoring starts, so a bad file stops the run at once)."""
    for pair in pairs:
        (tw, th), _ = _open_gray(pair.truth, load=False)
        (pw, ph), _ = _open_gray(pair.pred, load=False)
        if (tw, th) != (pw, ph):
            raise DataError(f"{pair.pred}: {pw}x{ph} pixels, its truth {pair.truth} {tw}x{th}")


def default_metres_per_pixel(dataset: str, side: int) -> float:
    """A RadioMapSeer map spans 256 m whatever its size; an ICASSP pixel is 0.25 m."""
    if dataset == "radiomapseer":
        return RADIOMAPSEER_SIDE_PX * RADIOMAPSEER_PIXEL_SIZE_M / side
    return ICASSP_PIXEL_SIZE_M


def to_unit(dataset: str, png: np.ndarray) -> np.ndarray:
    return gray_to_unit(png) if dataset == "radiomapseer" else pl_png_to_unit(png)


def _batches(pairs: list[Pair], dataset: str) -> Iterator[tuple[list[Pair], np.ndarray, np.ndarray]]:
    """Consecutive pairs of one size, read (sizes already checked by :func:`check_pairs`):
    (pairs, truth PNGs, prediction PNGs)."""
    group: list[tuple[Pair, np.ndarray, np.ndarray]] = []
    for pair in pairs:
        truth, pred = read_gray(pair.truth), read_gray(pair.pred)
        if group and (len(group) == BATCH or group[0][1].shape != truth.shape):
            yield [g[0] for g in group], np.stack([g[1] for g in group]), np.stack([g[2] for g in group])
            group = []
        group.append((pair, truth, pred))
    if group:
        yield [g[0] for g in group], np.stack([g[1] for g in group]), np.stack([g[2] for g in group])


@dataclass
class Comparison:
    """The scored pairs: per-pair rows, statistics, the pooled relative-error histogram and a few
    maps for the figures."""

    dataset: str
    rows: list[dict]
    summary: dict
    relative_error_hist: np.ndarray  # pixels per bin of [0, 1]
    shown: list[dict]  # {"name", "truth", "pred"} PNG arrays of the pairs drawn
    metres_per_pixel: float | None


def compare(
    truth_dir,
    pred_dir,
    dataset: str,
    metres_per_pixel: float | None = None,
    show: int = 5,
    progress: Callable[[int, int], None] | None = None,
) -> Comparison:
    """Pair the folders' files and score every pair; ``show`` pairs evenly spaced are kept for
    the figures; ``progress(done, total)`` after each batch."""
    if dataset not in DATASETS:
        raise DataError(f"--dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    pairs = pair_files(truth_dir, pred_dir)
    check_pairs(pairs)
    db = RADIOMAPSEER_DB_PER_UNIT if dataset == "radiomapseer" else ICASSP_DB_PER_UNIT
    k = min(show, len(pairs))
    chosen = {pairs[round(i * (len(pairs) - 1) / max(k - 1, 1))].name for i in range(k)}
    acc = None
    hist = np.zeros(RELATIVE_ERROR_BINS, dtype=np.int64)
    shown, done = [], 0
    if progress:
        progress(0, len(pairs))
    for group, truth_png, pred_png in _batches(pairs, dataset):
        mpp = metres_per_pixel or default_metres_per_pixel(dataset, truth_png.shape[1])
        if acc is None:
            acc = MetricAccumulator(db, mpp)
        elif acc.metres_per_pixel != mpp:  # maps of several sizes: the distance in metres of each size
            acc.metres_per_pixel = mpp
        truth = torch.from_numpy(to_unit(dataset, truth_png))[:, None]
        pred = torch.from_numpy(to_unit(dataset, pred_png))[:, None]
        mask = None if dataset == "radiomapseer" else torch.from_numpy(truth_png > 0)[:, None]
        acc.add(pred, truth, mask=mask, names=[p.name for p in group], truth=[p.truth.name for p in group],
                prediction=[p.pred.name for p in group])  # fmt: skip
        rel = relative_error_map(pred, truth)
        rel = rel[mask] if mask is not None else rel.flatten()
        hist += np.histogram(rel.numpy(), bins=RELATIVE_ERROR_BINS, range=(0.0, 1.0))[0]
        for i, p in enumerate(group):
            if p.name in chosen:
                shown.append({"name": p.name, "truth": truth_png[i], "pred": pred_png[i]})
        done += len(group)
        if progress:
            progress(done, len(pairs))
    rows = acc.to_rows()
    return Comparison(dataset, rows, statistics(rows, acc), hist, shown, metres_per_pixel)


def statistics(rows: list[dict], acc: MetricAccumulator) -> dict[str, dict]:
    """Per metric: mean, std (ddof 1), min, max and median over the pairs where it is defined
    (nan left out; an infinite PSNR kept), and their count; then the whole-set RMSE (pooled)."""
    out: dict[str, dict] = {}
    for k in acc.metric_names:
        v = np.array([r[k] for r in rows], dtype=np.float64)
        v = v[~np.isnan(v)]
        if not len(v):
            out[k] = {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan, "median": math.nan, "n": 0}
            continue
        with np.errstate(invalid="ignore"):
            std = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
        out[k] = {
            "mean": float(np.mean(v)),
            "std": std,
            "min": float(np.min(v)),
            "max": float(np.max(v)),
            "median": float(np.median(v)),
            "n": len(v),
        }
    whole = acc.summary()
    out["whole_set_rmse"] = {"mean": whole["whole_set_rmse"], "n": len(rows)}
    out["whole_set_rmse_db"] = {"mean": whole["whole_set_rmse_db"], "n": len(rows)}
    return out


def summary_table(stats: dict[str, dict]) -> str:
    """The statistics as a plain-text table (the printed summary)."""
    lines = [f"{'metric':<18} " + " ".join(f"{c:>11}" for c in STAT_COLUMNS)]
    for metric, s in stats.items():
        cells = []
        for c in STAT_COLUMNS:
            v = s.get(c)
            cells.append(f"{'':>11}" if v is None else f"{v:>11d}" if c == "n" else f"{v:>11.5g}")
        lines.append(f"{metric:<18} " + " ".join(cells))
    return "\n".join(lines)
