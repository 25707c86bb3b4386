"""Per-image and whole-set scores for predicted radio maps (REFERENCE §4).

Maps are float tensors on the [0, 1] gray scale (bright = strong signal), batched as
(B, C, H, W) with C = 1 for radio maps. An optional boolean ``mask`` of the same shape, or
(B, 1, H, W) broadcast over channels, selects the pixels to score: outdoor (not building)
pixels for RadioMapSeer, valid (not padded) pixels for ICASSP crops. Pixels outside the mask
are ignored entirely by the error metrics, even if they hold nan.

Per image, over the n scored pixels, with p the prediction and g the ground truth:

- ``nmse`` = Σ (p − g)² / Σ g²
- ``rmse`` = √(Σ (p − g)² / n), ``mae`` = Σ |p − g| / n
- ``psnr`` = 10 · log10(1 / mse), data range 1 (RadioDiff left the range to torchmetrics to
  infer; radiodiff fixes it at 1, so its PSNR is not strictly the published protocol's)
- ``ssim``: Gaussian window 11, σ 1.5, k1 0.01, k2 0.03, data range 1 (torchmetrics). With a
  mask it is the mean of torchmetrics' full SSIM map (``return_full_image=True``: one value per
  pixel, borders reflect-padded) over the masked pixels. The windows still see the unmasked
  neighbours (zeroed buildings, padding): the mask restricts where SSIM is averaged, not what
  it is computed from.
- ``rmse_db`` = rmse × ``db_per_unit``, only when ``db_per_unit`` is given: 99.16 dB per unit
  for RadioMapSeer gray, 147 dB per unit for ICASSP's (160 − PL) / 147
  (:mod:`radiodiff.core.encodings`).

Structure scores, as the Enhanced suite's comparison tool reports them (``compare_images.py``):

- ``relative_error``: mean over the scored pixels of clip(√(|p' − g'| / (|g'| + 1e-8)), 0, 1), on
  the maps in [−1, 1] (p' = 2p − 1, g' = 2g − 1: the models' scale, on which the suite computes it).
- ``peak_distance_px``: the distance in pixels between the brightest scored point of p and of g
  (RadioDiff's own convergence check: the Tx is the brightest point of a radio map); when several
  pixels share the maximum, their centroid. ``peak_distance_m`` = that × ``metres_per_pixel``,
  when given. ``peak_hit`` = 1 at distance 0, else 0: its mean is the share of maps at distance 0.
- ``sharpness_ratio`` = var(L(p)) / var(L(g)), L the 4-neighbour Laplacian [[0, 1, 0], [1, −4, 1],
  [0, 1, 0]] (the suite's kernel; OpenCV's ``cv2.Laplacian`` at ``ksize=1``) with reflected borders
  (OpenCV's default ``BORDER_REFLECT_101``; the suite zero-pads), variances over the scored
  pixels. Below 1: smoother than the truth. nan (null in the summaries, left out of the means)
  when var(L(g)) = 0, e.g. a constant truth.

Edge cases give a value, never an error: Σ g² = 0 → nmse nan (NMSE is undefined against an
all-zero target, even for a perfect prediction); an empty mask → every metric nan;
mse = 0 → psnr +inf; images smaller than 6×6 → ssim nan (the window's reflect padding of 5
pixels needs at least 6); a constant truth → sharpness_ratio nan.

Whole-set RMSE (RadioUNet's protocol) pools all squared errors, √(Σ SSE / Σ n) over every
scored pixel of every image; it weights images by their scored pixel count, so it differs from
the mean of per-image RMSEs (RadioDiff's averaging). :class:`MetricAccumulator` reports both.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radiodiff.core.io import atomic_file

# SSIM as RadioDiff evaluates it (REFERENCE §4). torchmetrics derives the Gaussian window from
# sigma: int(3.5·1.5 + 0.5)·2 + 1 = 11 taps, padded by 5 on each side.
SSIM_SIGMA = 1.5
SSIM_KERNEL_SIZE = 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_PAD = (SSIM_KERNEL_SIZE - 1) // 2

METRIC_NAMES = ("nmse", "rmse", "mae", "psnr", "ssim")
STRUCTURE_NAMES = ("relative_error", "peak_distance_px", "peak_hit", "sharpness_ratio")
RELATIVE_ERROR_EPS = 1e-8  # the suite's guard against a zero target
# The 4-neighbour Laplacian of the sharpness ratio (cv2.Laplacian, ksize=1)
LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
# var(L(g)) at or below this is a constant truth's rounding noise (values on [0, 1]: var ~1e-32)
SHARPNESS_MIN_VAR = 1e-20
_DIMS = (1, 2, 3)


# --------------------------------------------------------------------------------------------
# Per-image metrics
# --------------------------------------------------------------------------------------------


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate shapes; return the mask expanded to pred's shape (or None)."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"metrics: pred and target must be tensors, got {type(pred).__name__}, {type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(f"metrics: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if pred.dim() != 4:
        raise ValueError(f"metrics: expected (B, C, H, W) maps, got pred shape {tuple(pred.shape)}")
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(
            f"metrics: mask must be a bool tensor (True = scored), got "
            f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}; "
            "building_pixels() turns a fractional building map into one"
        )
    b, c, h, w = pred.shape
    if mask.dim() != 4 or mask.shape[0] != b or mask.shape[1] not in (1, c) or tuple(mask.shape[2:]) != (h, w):
        raise ValueError(
            f"metrics: mask shape {tuple(mask.shape)} does not fit pred shape {tuple(pred.shape)} "
            f"(expected {(b, c, h, w)} or {(b, 1, h, w)})"
        )
    return mask.to(pred.device).expand(b, c, h, w)


def _nan_like(x: torch.Tensor) -> torch.Tensor:
    return torch.full_like(x, float("nan"))


def error_sums(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-image sums over the scored pixels, each (B,) float64: ``sse`` = Σ (p − g)²,
    ``sae`` = Σ |p − g|, ``sum_g2`` = Σ g², ``n`` = number of scored pixels (all channels)."""
    m = _check(pred, target, mask)
    p, g = pred.double(), target.double()
    d = p - g
    sq, ab, g2 = d * d, d.abs(), g * g
    if m is None:
        n = torch.full((p.shape[0],), float(math.prod(p.shape[1:])), dtype=torch.float64, device=p.device)
    else:
        zero = torch.zeros((), dtype=torch.float64, device=p.device)
        # where(), not a multiply: nan or inf outside the mask must not leak into the sums.
        sq, ab, g2 = torch.where(m, sq, zero), torch.where(m, ab, zero), torch.where(m, g2, zero)
        n = m.sum(dim=_DIMS).double()
    return {"sse": sq.sum(dim=_DIMS), "sae": ab.sum(dim=_DIMS), "sum_g2": g2.sum(dim=_DIMS), "n": n}


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image SSIM (B,) float64 on [0, 1] maps (data range 1; Gaussian 11, σ 1.5, k1 .01, k2 .03).

    Without a mask this is torchmetrics' own per-image value; with one, the mean of the full
    SSIM map over the masked pixels (nan where the mask is empty). nan for images under 6×6.
    """
    m = _check(pred, target, mask)
    b, _, h, w = pred.shape
    if min(h, w) <= _SSIM_PAD:
        return torch.full((b,), float("nan"), dtype=torch.float64, device=pred.device)
    # At least float32 (half precision loses SSIM's small variances); float64 stays float64.
    dtype = torch.promote_types(pred.dtype, torch.float32) if pred.dtype.is_floating_point else torch.float32
    from torchmetrics.functional.image import structural_similarity_index_measure  # 3 s to import: on use

    per_image, full = structural_similarity_index_measure(
        pred.to(dtype),
        target.to(dtype),
        gaussian_kernel=True,
        sigma=SSIM_SIGMA,
        kernel_size=SSIM_KERNEL_SIZE,
        reduction="none",
        data_range=1.0,
        k1=SSIM_K1,
        k2=SSIM_K2,
        return_full_image=True,
    )
    if m is None:
        return per_image.double()
    full = full.double()
    n = m.sum(dim=_DIMS)
    total = torch.where(m, full, torch.zeros((), dtype=full.dtype, device=full.device)).sum(dim=_DIMS)
    return torch.where(n > 0, total / n.clamp_min(1), _nan_like(total))


def _masked_mean(x: torch.Tensor, m: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean (B,) of ``x`` over the mask (all pixels without one); nan for an empty mask."""
    if m is None:
        return x.mean(dim=_DIMS)
    n = m.sum(dim=_DIMS)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=_DIMS)
    return torch.where(n > 0, total / n.clamp_min(1), _nan_like(total))


def relative_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image (B,) float64 mean of clip(√(|p' − g'| / (|g'| + 1e-8)), 0, 1) over the scored
    pixels, p' and g' the [0, 1] maps taken to [−1, 1] (2x − 1), as the Enhanced suite computes it."""
    m = _check(pred, target, mask)
    return _masked_mean(relative_error_map(pred, target), m)


def relative_error_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The per-pixel terms of :func:`relative_error`, float64, shaped like ``pred``."""
    p, g = 2.0 * pred.double() - 1.0, 2.0 * target.double() - 1.0
    return ((p - g).abs() / (g.abs() + RELATIVE_ERROR_EPS)).sqrt().clamp(0.0, 1.0)


def brightest_point(maps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 2) float64 (row, col) of each map's brightest scored pixel (channels averaged); the
    centroid of the pixels sharing the maximum when there are several; nan for an empty mask."""
    x = maps.double().mean(dim=1)  # (B, H, W)
    scored = torch.ones_like(x, dtype=torch.bool) if mask is None else mask.any(dim=1)
    x = torch.where(scored, x, torch.full((), -math.inf, dtype=x.dtype, device=x.device))
    peak = x.flatten(1).max(dim=1).values
    at_max = scored & (x == peak[:, None, None])
    h, w = x.shape[1:]
    rows = torch.arange(h, dtype=torch.float64, device=x.device)[None, :, None]
    cols = torch.arange(w, dtype=torch.float64, device=x.device)[None, None, :]
    count = at_max.sum(dim=(1, 2)).double()
    row = torch.where(at_max, rows, 0.0).sum(dim=(1, 2)) / count  # 0 / 0 = nan for an empty mask
    col = torch.where(at_max, cols, 0.0).sum(dim=(1, 2)) / count
    return torch.stack([row, col], dim=1)


def peak_distance_px(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image (B,) float64 distance in pixels between the brightest scored points of ``pred``
    and ``target`` (:func:`brightest_point`); nan for an empty mask."""
    m = _check(pred, target, mask)
    d = brightest_point(pred, m) - brightest_point(target, m)
    return torch.hypot(d[:, 0], d[:, 1])


def laplacian(maps: torch.Tensor) -> torch.Tensor:
    """The 4-neighbour Laplacian (:data:`LAPLACIAN_KERNEL`) of each channel of (B, C, H, W) maps,
    borders reflected (OpenCV's ``cv2.Laplacian(x, cv2.CV_64F, ksize=1)``), float64."""
    x = maps.double()
    b, c, h, w = x.shape
    kernel = torch.tensor(LAPLACIAN_KERNEL, dtype=torch.float64, device=x.device)[None, None]
    flat = x.reshape(b * c, 1, h, w)
    if min(h, w) > 1:
        flat = torch.nn.functional.pad(flat, (1, 1, 1, 1), mode="reflect")
    else:  # a single row or column: reflection needs two pixels; replicate (its one neighbour is itself)
        flat = torch.nn.functional.pad(flat, (1, 1, 1, 1), mode="replicate")
    return torch.nn.functional.conv2d(flat, kernel).reshape(b, c, h, w)


def sharpness_ratio(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image (B,) float64 var(L(p)) / var(L(g)) over the scored pixels (population variances
    of :func:`laplacian`); nan where var(L(g)) is 0 (a constant truth: at most
    :data:`SHARPNESS_MIN_VAR`, its rounding noise) or the mask is empty."""
    m = _check(pred, target, mask)

    def variance(x):
        lap = laplacian(x)
        mean = _masked_mean(lap, m)
        return _masked_mean((lap - mean.view(-1, 1, 1, 1)) ** 2, m)

    vp, vt = variance(pred), variance(target)
    defined = vt > SHARPNESS_MIN_VAR
    return torch.where(defined, vp / torch.where(defined, vt, torch.ones_like(vt)), _nan_like(vt))


def _metrics_from_sums(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sse, n, sum_g2 = sums["sse"], sums["n"], sums["sum_g2"]
    scored = n > 0
    mse = torch.where(scored, sse / n.clamp_min(1), _nan_like(sse))
    psnr = 10.0 * torch.log10(1.0 / mse)  # mse 0 -> 1/0 = inf -> +inf; nan stays nan
    return {
        "nmse": torch.where(sum_g2 > 0, sse / torch.where(sum_g2 > 0, sum_g2, torch.ones_like(sum_g2)), _nan_like(sse)),
        "rmse": mse.sqrt(),
        "mae": torch.where(scored, sums["sae"] / n.clamp_min(1), _nan_like(sse)),
        "psnr": psnr,
    }


def _check_db(db_per_unit: float | None) -> float | None:
    return _check_positive(db_per_unit, "db_per_unit")


def _check_positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"metrics: {name} must be a positive number, got {value!r}")
    return float(value)


def _compute(
    pred, target, mask, db_per_unit, metres_per_pixel=None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    db = _check_db(db_per_unit)
    mpp = _check_positive(metres_per_pixel, "metres_per_pixel")
    sums = error_sums(pred, target, mask)
    out = _metrics_from_sums(sums)
    out["ssim"] = masked_ssim(pred, target, mask)
    if db is not None:
        out["rmse_db"] = out["rmse"] * db
    out["relative_error"] = relative_error(pred, target, mask)
    distance = peak_distance_px(pred, target, mask)
    out["peak_distance_px"] = distance
    out["peak_hit"] = torch.where(distance.isnan(), distance, (distance == 0).double())
    if mpp is not None:
        out["peak_distance_m"] = distance * mpp
    out["sharpness_ratio"] = sharpness_ratio(pred, target, mask)
    return out, sums


@torch.no_grad()
def per_image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    db_per_unit: float | None = None,
    metres_per_pixel: float | None = None,
) -> dict[str, torch.Tensor]:
    """``nmse``, ``rmse``, ``mae``, ``psnr``, ``ssim`` (and ``rmse_db`` when ``db_per_unit`` is
    given), ``relative_error``, ``peak_distance_px``, ``peak_hit``, ``sharpness_ratio`` (and
    ``peak_distance_m`` when ``metres_per_pixel`` is given), each a (B,) float64 tensor; see the
    module docstring for definitions and edge cases.

    ``pred`` and ``target``: (B, C, H, W) on the [0, 1] scale; ``mask``: bool, True = scored.
    A shape mismatch raises ValueError naming both shapes.
    """
    return _compute(pred, target, mask, db_per_unit, metres_per_pixel)[0]


def whole_set_rmse(
    sum_sq_err: float | Iterable[float] | torch.Tensor, n_pixels: float | Iterable[float] | torch.Tensor
) -> float:
    """√(Σ squared errors / Σ scored pixels) pooled over a whole set (RadioUNet); nan if no pixel."""

    def total(x) -> float:
        if isinstance(x, torch.Tensor):
            return float(x.double().sum())
        if isinstance(x, int | float):
            return float(x)
        return float(math.fsum(float(v) for v in x))

    sse, n = total(sum_sq_err), total(n_pixels)
    return math.sqrt(sse / n) if n > 0 else float("nan")


# --------------------------------------------------------------------------------------------
# Building pixels
# --------------------------------------------------------------------------------------------


def building_pixels(buildings: torch.Tensor, min_fraction: float = 1.0) -> torch.Tensor:
    """Bool map of the known building pixels.

    A bool input is returned as is. A float map holds the building fraction of each pixel
    (the quick scale area-averages the mask): a pixel counts as building when its fraction is
    at least ``min_fraction`` (default 1: fully covered, where the area-averaged ground truth is
    exactly 0), with a 1e-6 tolerance for the averaging's rounding.
    """
    if buildings.dtype == torch.bool:
        return buildings
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"building_pixels: min_fraction must be in (0, 1], got {min_fraction}")
    return buildings >= (min_fraction - 1e-6)


def scope_masks(dataset: str, batch: dict) -> dict[str, torch.Tensor | None]:
    """The evaluation scopes of a batch of test items, first the headline one (True = scored):
    RadioMapSeer ``all`` (None: every pixel) and ``outdoor`` (not fully covered by a building);
    ICASSP ``valid`` (not padded) and ``open`` (valid and off the walls, from the arranged R and G
    channels of ``condition``)."""
    if dataset == "radiomapseer":
        return {"all": None, "outdoor": ~building_pixels(batch["buildings"])}
    valid = batch["valid"]
    walls = (batch["condition"][:, :2] > -1.0).any(dim=1, keepdim=True)
    return {"valid": valid, "open": valid & ~walls}


def zero_buildings(pred: torch.Tensor, buildings_mask: torch.Tensor, min_fraction: float = 1.0) -> torch.Tensor:
    """A copy of ``pred`` with the known building pixels set to 0 (SPEC: done to every method's
    output before scoring). ``buildings_mask``: bool, or building fractions (see
    :func:`building_pixels`), broadcastable to ``pred`` (e.g. (B, 1, H, W) for (B, C, H, W))."""
    mask = building_pixels(buildings_mask, min_fraction).to(pred.device)
    try:
        fits = torch.broadcast_shapes(mask.shape, pred.shape) == pred.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"zero_buildings: buildings mask shape {tuple(buildings_mask.shape)} does not broadcast to "
            f"pred shape {tuple(pred.shape)}"
        )
    return pred.masked_fill(mask, 0.0)


# --------------------------------------------------------------------------------------------
# Accumulating a test set
# --------------------------------------------------------------------------------------------


def _nanmean(values: Sequence[float]) -> float:
    """Mean ignoring nan (inf counts); nan when every value is nan or there are none."""
    kept = [v for v in values if not math.isnan(v)]
    return math.fsum(kept) / len(kept) if kept else float("nan")


class MetricAccumulator:
    """Per-image rows for a test set, their means and the whole-set RMSE.

    Each :meth:`add` scores one batch and stores one row per image: ``name``, the extra columns
    given (e.g. ``building="B3"``, ``band=2``, ``scope="outdoor"``), the metrics, and ``sse`` /
    ``n_pixels`` (the image's squared-error sum and scored pixel count, so the whole-set RMSE of
    any subset can be recomputed from the CSV)::

        acc = MetricAccumulator(db_per_unit=RADIOMAPSEER_DB_PER_UNIT)
        for batch in loader:
            acc.add(zero_buildings(pred, b), target, mask=~building_pixels(b), names=batch["name"])
        acc.summary()      # {"n_images", "n_scored_pixels", nmse, rmse, ..., "whole_set_rmse", ...}
        acc.write_csv(path)

    Means ignore nan (an image with an undefined metric, e.g. NMSE on an all-zero target, is
    left out of that metric's mean, and ``n_undefined`` counts them); an infinite PSNR (a
    perfect image) is kept and makes the PSNR mean inf.

    ``metres_per_pixel`` adds ``peak_distance_m``; ``extra_metrics`` names per-image scores
    computed elsewhere (e.g. LPIPS, which needs a network), handed to :meth:`add` as ``scores``
    and averaged like the others.
    """

    def __init__(
        self, db_per_unit: float | None = None, metres_per_pixel: float | None = None, extra_metrics: Sequence[str] = ()
    ):
        self.db_per_unit = _check_db(db_per_unit)
        self.metres_per_pixel = _check_positive(metres_per_pixel, "metres_per_pixel")
        self.extra_metrics = tuple(extra_metrics)
        self._rows: list[dict[str, Any]] = []

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (
            METRIC_NAMES
            + (("rmse_db",) if self.db_per_unit is not None else ())
            + STRUCTURE_NAMES
            + (("peak_distance_m",) if self.metres_per_pixel is not None else ())
            + self.extra_metrics
        )

    def __len__(self) -> int:
        return len(self._rows)

    @torch.no_grad()
    def add(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        names: Sequence[str] | None = None,
        scores: dict[str, torch.Tensor] | None = None,
        **columns: Any,
    ) -> dict[str, torch.Tensor]:
        """Score a batch, store its rows and return its per-image metrics.

        ``names``: one per image (default: the running index). ``scores``: a (B,) tensor for each
        of ``extra_metrics``. Each extra column is one scalar for the whole batch or a sequence /
        tensor with one value per image.
        """
        b = pred.shape[0] if isinstance(pred, torch.Tensor) and pred.dim() > 0 else 0
        reserved = {"name", "sse", "n_pixels", *self.metric_names}
        clash = sorted(set(columns) & reserved)
        if clash:
            raise ValueError(f"MetricAccumulator.add: column name(s) {clash} are reserved")
        if names is not None and len(names) != b:
            raise ValueError(f"MetricAccumulator.add: {len(names)} names for a batch of {b} images")
        per_col: dict[str, list] = {}
        for key, value in columns.items():
            if isinstance(value, torch.Tensor):
                value = value.tolist() if value.dim() > 0 else value.item()
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                per_col[key] = [value] * b
            elif len(value) == b:
                per_col[key] = list(value)
            else:
                raise ValueError(f"MetricAccumulator.add: column {key!r} has {len(value)} values for {b} images")
        scores = dict(scores or {})
        if set(scores) != set(self.extra_metrics):
            raise ValueError(f"MetricAccumulator.add: scores {sorted(scores)}, expected {sorted(self.extra_metrics)}")
        for key, value in scores.items():
            if value.shape != (b,):
                raise ValueError(f"MetricAccumulator.add: score {key!r} of shape {tuple(value.shape)} for {b} images")
        metrics, sums = _compute(pred, target, mask, self.db_per_unit, self.metres_per_pixel)
        metrics.update({k: v.double().cpu() for k, v in scores.items()})
        start = len(self._rows)
        as_lists = {k: v.tolist() for k, v in metrics.items()}
        sse, n = sums["sse"].tolist(), sums["n"].tolist()
        for i in range(b):
            row: dict[str, Any] = {"name": str(names[i]) if names is not None else str(start + i)}
            row.update({k: v[i] for k, v in per_col.items()})
            row.update({k: as_lists[k][i] for k in self.metric_names})
            row.update({"sse": sse[i], "n_pixels": int(n[i])})
            self._rows.append(row)
        return metrics

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per image, in the order added (copies)."""
        return [dict(r) for r in self._rows]

    def _summarize(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"n_images": len(rows), "n_scored_pixels": sum(r["n_pixels"] for r in rows)}
        undefined = {}
        for k in self.metric_names:
            col = [r[k] for r in rows]
            out[k] = _nanmean(col)
            if any(math.isnan(v) for v in col):
                undefined[k] = sum(math.isnan(v) for v in col)
        out["whole_set_rmse"] = whole_set_rmse([r["sse"] for r in rows], [r["n_pixels"] for r in rows])
        if self.db_per_unit is not None:
            out["whole_set_rmse_db"] = out["whole_set_rmse"] * self.db_per_unit
        out["n_undefined"] = undefined
        return out

    def summary(self, group_by: str | None = None) -> dict[str, Any]:
        """Means over images (nan ignored) plus the whole-set RMSE (and dB versions).

        With ``group_by`` (an extra column such as ``"band"``), a dict from each of the column's
        values (as a string, for JSON) to that group's summary.
        """
        if group_by is None:
            return self._summarize(self._rows)
        if self._rows and group_by not in self._rows[0]:
            raise KeyError(f"MetricAccumulator.summary: no column {group_by!r}; columns: {list(self._rows[0])}")
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in self._rows:
            groups.setdefault(str(r[group_by]), []).append(r)
        return {k: self._summarize(v) for k, v in groups.items()}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_rows` as a CSV (see :func:`write_rows`), atomically."""
        return write_rows(path, self._rows)


def write_rows(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Per-sample rows as a CSV whose header is the union of the rows' keys (first seen first),
    written atomically."""
    path = Path(path)
    fields: list[str] = []
    for r in rows:
        fields.extend(k for k in r if k not in fields)
    with atomic_file(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=fields or ["name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------
# Validation during training
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def loader_means(predict, loader) -> dict[str, float]:
    """Mean NMSE, RMSE, SSIM and PSNR over a loader of maps (``target`` in [−1, 1]; ``valid``
    masks ICASSP's padding); ``predict(batch)`` returns maps on [0, 1]. Undefined values (e.g.
    the NMSE of an all-zero map) are left out of the means. The map models' validation."""
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


def reconstruction_metrics(x: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image RMSE, PSNR and SSIM of a VAE's reconstruction on [0, 1]-scaled maps (data range 1,
    all channels, float32 and torchmetrics' own reductions): the VAEs' validation."""
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    x01 = ((x + 1) / 2).clamp(0, 1).float()
    r01 = ((recon + 1) / 2).clamp(0, 1).float()
    dims = tuple(range(1, x.ndim))
    return {
        "rmse": ((r01 - x01) ** 2).mean(dim=dims).sqrt(),
        "psnr": peak_signal_noise_ratio(r01, x01, data_range=1.0, reduction="none", dim=dims),
        "ssim": structural_similarity_index_measure(r01, x01, data_range=1.0, reduction="none"),
    }


def ratio_interval(a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """mean(a) / mean(b) over paired per-image values (two methods on the same test images) and
    its bootstrap 95 % interval (percentile, images resampled with replacement, seeded):
    ``{"ratio", "ci95": [low, high], "n_images"}``. Images where either value is nan are dropped;
    fewer than two left, or mean(b) = 0, gives nan."""
    from scipy.stats import bootstrap

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"ratio_interval: {x.size} values against {y.size}; they must be paired")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    nan = {"ratio": math.nan, "ci95": [math.nan, math.nan], "n_images": int(x.size)}
    if x.size < 2 or y.mean() == 0:
        return nan

    def stat(u, v, axis=-1):
        return np.mean(u, axis=axis) / np.mean(v, axis=axis)

    res = bootstrap(
        (x, y),
        stat,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = res.confidence_interval
    return {"ratio": float(stat(x, y)), "ci95": [float(low), float(high)], "n_images": int(x.size)}


class RunningStd:
    """Standard deviation (ddof 1) of every element of a stream of tensors, or with
    ``per_channel`` of each channel of (B, C, ...) tensors, from float64 sums."""

    def __init__(self, per_channel: bool = False):
        self.per_channel = per_channel
        self.n, self.sum, self.sumsq = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        if self.per_channel:
            x = x.transpose(0, 1).flatten(1)  # (C, elements)
            self.n += x.shape[1]
            self.sum, self.sumsq = self.sum + x.sum(1), self.sumsq + (x * x).sum(1)
        else:
            self.n += x.numel()
            self.sum += float(x.sum())
            self.sumsq += float((x * x).sum())

    def std(self) -> float | list[float]:
        if self.per_channel:
            if self.n < 2:
                return [0.0] * len(self.sum)
            var = (self.sumsq - self.sum * self.sum / self.n).clamp_min(0.0) / (self.n - 1)
            return [float(v) for v in var.sqrt()]
        if self.n < 2:
            return 0.0
        return (max(self.sumsq - self.sum * self.sum / self.n, 0.0) / (self.n - 1)) ** 0.5


# --------------------------------------------------------------------------------------------
# Set-level scores on Inception features (FID, KID)
# --------------------------------------------------------------------------------------------

KID_DEGREE, KID_COEF = 3, 1.0  # KID's polynomial kernel (x·y / d + 1)³ (Bińkowski et al. 2018)


def inception_distances(real: torch.Tensor, fake: torch.Tensor) -> dict[str, float | None]:
    """FID and KID between two sets of Inception features (N, D), by torch-fidelity's own
    functions: FID = ‖μ_r − μ_f‖² + Tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^½) (covariances with ddof 1); KID
    = the unbiased MMD² estimate (the kernel's diagonal left out of the within-set sums) with the
    cubic polynomial kernel, over one subset of all the min(N_r, N_f) features (no resampling, so
    deterministic). Each needs at least 2 features per set: with fewer, None."""
    n = min(len(real), len(fake))
    if n < 2:
        return {"fid": None, "kid": None, "n": n}
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    real, fake = real.detach().cpu().double(), fake.detach().cpu().double()
    fid = fid_statistics_to_metric(fid_features_to_statistics(real), fid_features_to_statistics(fake), verbose=False)
    kid = kid_features_to_metric(
        real[:n],
        fake[:n],
        kid_subsets=1,
        kid_subset_size=n,
        kid_kernel="poly",
        kid_kernel_poly_degree=KID_DEGREE,
        kid_kernel_poly_gamma=None,  # 1 / D
        kid_kernel_poly_coef0=KID_COEF,
        kid_degree=KID_DEGREE,  # the same kernel under torch-fidelity 0.3's names
        kid_gamma=None,
        kid_coef0=KID_COEF,
        rng_seed=0,
        verbose=False,
    )
    return {"fid": float(fid[KEY_METRIC_FID]), "kid": float(kid[KEY_METRIC_KID_MEAN]), "n": n}
