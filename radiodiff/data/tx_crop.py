"""Tx-aware cropping of arranged ICASSP maps (REFERENCE.md §2, "RadioDiff Enhanced").

One ``size_px``×``size_px`` crop per sample, placed so the Tx stays at least ``margin_px`` from
every crop border. Per axis, among the origins that keep the margin, origins with the crop
fully inside the image are preferred; when the image is shorter than the crop, origins that
hold the whole image are preferred instead. When no origin satisfies both, the margin wins and
the origin is the one nearest the preferred range. Pixels outside the image are padded with 0;
``radiodiff.data.icassp.valid_mask`` rebuilds which pixels are real from a metadata row.

Written (atomically) into ``out``: ``inputs/{name}.png``, ``targets/{name}.png`` and
``metadata.csv`` = the arranged metadata plus ``CROP_COLUMNS``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from radiodiff.core.errors import DataError, ParamsError
from radiodiff.core.io import atomic_dir, read_png, write_png
from radiodiff.data.icassp import read_metadata, valid_mask, write_metadata

PLACEMENTS = ("random", "center")
CROP_COLUMNS = ["crop_size", "row0", "col0", "crop_tx_row", "crop_tx_col", "valid_rows", "valid_cols"]


def origin_range(tx: int, length: int, size: int, margin: int) -> tuple[int, int]:
    """Inclusive range of crop origins along one axis (see the module docstring for the rules)."""
    m_lo, m_hi = tx - (size - 1 - margin), tx - margin  # Tx lands at crop index tx − o ∈ [margin, size−1−margin]
    p_lo, p_hi = (0, length - size) if length >= size else (length - size, 0)
    lo, hi = max(m_lo, p_lo), min(m_hi, p_hi)
    if lo <= hi:
        return lo, hi
    nearest = m_lo if m_lo > p_hi else m_hi
    return nearest, nearest


def cut(image: np.ndarray, row0: int, col0: int, size: int) -> np.ndarray:
    """The ``size``×``size`` window at origin (row0, col0) of ``image``, zero where it leaves the image."""
    h, w = image.shape[:2]
    out = np.zeros((size, size) + image.shape[2:], dtype=image.dtype)
    r_a, r_b = max(row0, 0), min(row0 + size, h)
    c_a, c_b = max(col0, 0), min(col0 + size, w)
    if r_a < r_b and c_a < c_b:
        out[r_a - row0 : r_b - row0, c_a - col0 : c_b - col0] = image[r_a:r_b, c_a:c_b]
    return out


def crop(
    arranged_dir: str | os.PathLike,
    out: str | os.PathLike,
    size_px: int,
    margin_px: int = 10,
    placement: str = "random",
    seed: int = 0,
) -> dict:
    """Crop every arranged sample around its Tx into ``out``; returns a summary."""
    if placement not in PLACEMENTS:
        raise ParamsError(f"placement: expected one of {PLACEMENTS}, got {placement!r}")
    if margin_px < 0 or size_px < 2 * margin_px + 1:
        raise ParamsError(f"size_px/margin_px: need size_px ≥ 2·margin_px + 1, got {size_px} and {margin_px}")
    arranged_dir = Path(arranged_dir)
    rows = read_metadata(arranged_dir / "metadata.csv")
    if not rows:
        raise DataError(f"{arranged_dir / 'metadata.csv'}: no samples")
    columns = list(rows[0].keys()) + [c for c in CROP_COLUMNS if c not in rows[0]]
    out_rows, padded = [], 0
    with atomic_dir(out) as tmp:
        (tmp / "inputs").mkdir()
        (tmp / "targets").mkdir()
        for index, row in enumerate(rows):
            name = row["name"]
            in_path = arranged_dir / "inputs" / f"{name}.png"
            tgt_path = arranged_dir / "targets" / f"{name}.png"
            inp = read_png(in_path, mode="RGB")[..., :3]
            tgt = read_png(tgt_path, mode="L")
            if tgt.shape != inp.shape[:2]:
                raise DataError(f"{tgt_path}: size differs from its input {in_path}")
            height, width = tgt.shape
            tx_r, tx_c = int(round(float(row["tx_row"]))), int(round(float(row["tx_col"])))
            if not (0 <= tx_r < height and 0 <= tx_c < width):
                raise DataError(f"{arranged_dir / 'metadata.csv'}: Tx of {name} lies outside its {width}×{height} map")
            ranges = [origin_range(tx_r, height, size_px, margin_px), origin_range(tx_c, width, size_px, margin_px)]
            if placement == "random":
                rng = np.random.default_rng([seed, index])  # per-sample stream: deterministic for any subset order
                row0, col0 = (int(rng.integers(lo, hi + 1)) for lo, hi in ranges)
            else:
                row0, col0 = (
                    int(np.clip(tx - size_px // 2, lo, hi)) for tx, (lo, hi) in zip((tx_r, tx_c), ranges, strict=True)
                )
            write_png(tmp / "inputs" / f"{name}.png", cut(inp, row0, col0, size_px))
            write_png(tmp / "targets" / f"{name}.png", cut(tgt, row0, col0, size_px))
            new = {
                **row,
                "crop_size": size_px,
                "row0": row0,
                "col0": col0,
                "crop_tx_row": tx_r - row0,
                "crop_tx_col": tx_c - col0,
                "height": height,
                "width": width,
            }
            mask = valid_mask(new)
            new["valid_rows"], new["valid_cols"] = int(mask.any(axis=1).sum()), int(mask.any(axis=0).sum())
            padded += not mask.all()
            out_rows.append(new)
        write_metadata(tmp / "metadata.csv", out_rows, columns)
    return {
        "samples": len(out_rows),
        "size_px": size_px,
        "margin_px": margin_px,
        "placement": placement,
        "seed": seed,
        "padded_crops": padded,
    }


def run(params: dict, arranged, out) -> dict:
    """The ``crop_icassp`` stage: Tx-aware crops of the ``arranged`` samples into ``out``."""
    return {"stage": "crop_icassp", **crop(arranged, out, **params["crop_icassp"])}
