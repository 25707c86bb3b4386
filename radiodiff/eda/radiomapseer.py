"""EDA of a RadioMapSeer folder: structure, Tx and building density, gray levels, path gain
against distance and a sample grid, as figures and a JSON-able summary (REFERENCE.md §1)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from radiodiff.core.encodings import (
    PG_FLOOR_DB,
    PG_MAX_DB,
    RADIOMAPSEER_DB_PER_UNIT,
    RADIOMAPSEER_FREQUENCY_HZ,
    gray_to_gain_db,
)
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data.radiomapseer import available_tx, discover_maps, simulation_coverage, split_maps, tx_position
from radiodiff.data.splits import SPLITS
from radiodiff.eda.common import (
    SPLIT_COLORS,
    bar_labels,
    density_bins,
    evenly_spaced,
    figure,
    hist_percentiles,
    percentile_lines,
    stats,
)
from radiodiff.physics.propagation import fspl_db

DISTANCE_MAPS = 4  # maps in the path-gain-vs-distance figure


def _gain_db_to_gray_level(db) -> np.ndarray:
    """Inverse of :func:`gray_to_gain_db`, unrounded (the histogram's secondary axis)."""
    return (np.asarray(db, dtype=np.float64) - PG_FLOOR_DB) / RADIOMAPSEER_DB_PER_UNIT * 255.0


def analyse(root: Path, simulation: str, split_cfg, allow_missing: bool, cap: int, grid: int, save) -> dict:
    n_tx = discover_maps(root)
    splits = split_maps(root, split_cfg, allow_missing)
    gain_dir = root / "gain" / simulation
    txs = available_tx(root, simulation, n_tx)
    samples = [(m, t) for m, ts in txs.items() for t in ts]
    if not samples:
        raise DataError(f"{gain_dir}: no gain map of any Tx listed in {root / 'antenna'}")
    coverage = simulation_coverage(root, n_tx)

    # Building statistics over up to `cap` maps, gain statistics over up to `cap` samples (both
    # evenly spaced); the masks of the gain samples' maps are read as well.
    mask_maps = evenly_spaced(list(n_tx), cap)
    masks = {m: read_png(root / "png/buildings_complete" / f"{m}.png", "L") > 127 for m in mask_maps}
    chosen = evenly_spaced(samples, cap)
    chosen_maps = sorted({m for m, _ in chosen} - set(masks))
    masks.update({m: read_png(root / "png/buildings_complete" / f"{m}.png", "L") > 127 for m in chosen_maps})
    building_fraction = {m: float(masks[m].mean()) for m in mask_maps}
    shapes = Counter(masks[m].shape for m in mask_maps)
    shape = shapes.most_common(1)[0][0]

    gray_hist = np.zeros(256, dtype=np.int64)
    tx_rc: list[tuple[float, float]] = []  # on the common shape's grid
    gains: dict[tuple[int, int], tuple[np.ndarray, tuple[int, int]]] = {}
    grid_set = set(evenly_spaced(chosen, grid))
    distance_set = set(evenly_spaced(sorted({m for m, _ in chosen}), DISTANCE_MAPS))
    distance_samples = []
    for m, t in chosen:
        path = gain_dir / f"{m}_{t}.png"
        gray = read_png(path, "L")
        if gray.shape != masks[m].shape:
            raise DataError(f"{path}: size {gray.shape} != building mask {masks[m].shape}")
        rc = tx_position(root / "png/antennas" / f"{m}_{t}.png")
        tx_rc.append((rc[0] * shape[0] / gray.shape[0], rc[1] * shape[1] / gray.shape[1]))
        gray_hist += np.bincount(gray[~masks[m]], minlength=256)
        if (m, t) in grid_set:
            gains[(m, t)] = (gray, rc)
        if m in distance_set:  # first Tx of each of a few maps
            distance_set.discard(m)
            distance_samples.append((m, t, gray, rc))

    summary = {
        "root": str(root),
        "simulation": simulation,
        "maps": len(n_tx),
        "transmitters": sum(n_tx.values()),
        "samples": len(samples),
        "coverage": coverage,
        "tx_per_map": stats(list(n_tx.values())),
        "gain_files": sum(1 for _ in gain_dir.glob("*.png")),
        "image_size_px": list(shape),
        "split": {
            s: {"maps": len(splits[s]), "samples": sum(len(txs[m]) for m in splits[s]), "map_ids": splits[s]}
            for s in SPLITS
        },
        "files_read": {"building_masks": len(masks), "gain_maps": len(chosen)},
        "building_fraction": {"maps": len(building_fraction), **stats(list(building_fraction.values()))},
        "outdoor_pixels": int(gray_hist.sum()),
        "outdoor_zero_gray_fraction": round(float(gray_hist[0] / max(gray_hist.sum(), 1)), 4),
        "gray_percentiles_outdoor": hist_percentiles(gray_hist),
    }
    summary["path_gain_db_percentiles_outdoor"] = {
        k: None if v is None else round(float(gray_to_gain_db(v)), 2)
        for k, v in summary["gray_percentiles_outdoor"].items()
    }

    save(_rms_structure(n_tx, txs, splits, coverage, simulation), "radiomapseer_structure.png")
    save(_rms_tx_density(tx_rc, shape), "radiomapseer_tx_density.png")
    save(_rms_buildings(masks, mask_maps, shape, building_fraction), "radiomapseer_buildings.png")
    save(_rms_gray_hist(gray_hist, summary["gray_percentiles_outdoor"]), "radiomapseer_gray_histogram.png")
    save(_rms_distance(distance_samples, masks), "radiomapseer_gain_vs_distance.png")
    grid_rows = [(m, t, masks[m], *gains[(m, t)]) for m, t in sorted(grid_set)]
    save(_rms_grid(grid_rows, simulation), "radiomapseer_samples.png")
    return summary


def _rms_structure(n_tx: dict[int, int], txs: dict[int, list[int]], splits: dict, coverage: dict, sim: str) -> Figure:
    fig = figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 4)
    n = sum(len(t) for t in txs.values())
    fig.suptitle(f"RadioMapSeer structure: {len(n_tx)} maps, {n} samples of {sim} (split by map)")
    for ax, (label, values) in zip(
        axes,
        [
            ("maps", [len(splits[s]) for s in SPLITS]),
            ("samples (map × Tx)", [sum(len(txs[m]) for m in splits[s]) for s in SPLITS]),
        ],
        strict=False,
    ):
        bar_labels(ax, ax.bar(SPLITS, values, color=[SPLIT_COLORS[s] for s in SPLITS]))
        ax.set_ylabel(label)
        ax.set_title(f"{label} per split")
    counts = Counter(n_tx.values())
    ks = sorted(counts)
    bar_labels(axes[2], axes[2].bar([str(k) for k in ks], [counts[k] for k in ks], color="tab:gray"))
    axes[2].set_xlabel("Tx per map")
    axes[2].set_ylabel("maps")
    axes[2].set_title("transmitters per map (antenna/*.json)")
    sims = list(coverage)
    colors = ["tab:blue" if s == sim else "tab:gray" for s in sims]
    bars = axes[3].bar(sims, [100 * coverage[s]["fraction"] for s in sims], color=colors)
    axes[3].bar_label(bars, labels=[f"{coverage[s]['samples']}/{coverage[s]['listed']}" for s in sims], fontsize=8)
    axes[3].set_ylim(0, 115)
    axes[3].set_ylabel("listed Tx with a gain map (%)")
    axes[3].set_title("coverage per simulation")
    axes[3].tick_params(axis="x", labelrotation=30)
    return fig


def _rms_tx_density(tx_rc: list[tuple[float, float]], shape: tuple[int, int]) -> Figure:
    fig = figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    rc = np.asarray(tx_rc, dtype=np.float64).reshape(-1, 2)
    bins = density_bins(len(rc), 32)
    h, _, _ = np.histogram2d(rc[:, 0], rc[:, 1], bins=bins, range=[[0, shape[0]], [0, shape[1]]])
    im = ax.imshow(h, extent=(0, shape[1], shape[0], 0), cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="Tx count per bin")
    ax.set_xlabel("column (px, 1 m)")
    ax.set_ylabel("row (px, 1 m)")
    ax.set_title(f"RadioMapSeer Tx position density ({len(rc)} Tx)")
    return fig


def _rms_buildings(masks, mask_maps, shape, building_fraction) -> Figure:
    fig = figure(figsize=(10, 4.2))
    ax_img, ax_hist = fig.subplots(1, 2)
    same = [masks[m] for m in mask_maps if masks[m].shape == shape]
    mean = np.mean(np.stack(same), axis=0) if same else np.zeros(shape)
    im = ax_img.imshow(mean, cmap="viridis", vmin=0, vmax=max(float(mean.max()), 1e-6))
    fig.colorbar(im, ax=ax_img, label="building probability")
    ax_img.set_title(f"mean building mask ({len(same)} maps)")
    ax_img.set_xlabel("column (px)")
    ax_img.set_ylabel("row (px)")
    fr = np.asarray(list(building_fraction.values()))
    ax_hist.hist(fr, bins=min(30, max(5, len(fr) // 2)), color="tab:brown", edgecolor="white")
    ax_hist.axvline(fr.mean(), color="k", ls="--", label=f"mean {fr.mean():.3f}")
    ax_hist.set_xlabel("building fraction per map")
    ax_hist.set_ylabel("maps")
    ax_hist.set_title("building fraction")
    ax_hist.legend()
    fig.suptitle("RadioMapSeer building density")
    return fig


def _rms_gray_hist(gray_hist: np.ndarray, pct: dict) -> Figure:
    fig = figure(figsize=(8, 4.4))
    ax = fig.add_subplot()
    levels = np.arange(256)
    ax.bar(levels, gray_hist, width=1.0, color="tab:blue", log=True)
    percentile_lines(ax, pct)
    ax.set_xlim(-1, 256)
    ax.set_xlabel("gray level (uint8)")
    ax.set_ylabel("outdoor pixels (log)")
    top = ax.secondary_xaxis("top", functions=(gray_to_gain_db, _gain_db_to_gray_level))
    top.set_xlabel("path gain (dB) = gray/255·99.16 − 147")
    fig.suptitle("RadioMapSeer gray levels of non-building pixels (dashed: percentiles)")
    return fig


def _rms_distance(distance_samples, masks) -> Figure:
    n = max(1, len(distance_samples))
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig = figure(figsize=(5.0 * ncols, 3.8 * nrows + 0.4))
    axes = np.asarray(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    d_ref = np.logspace(0, np.log10(400), 50)
    for ax, (m, t, gray, rc) in zip(axes, distance_samples, strict=False):
        rows, cols = np.indices(gray.shape)
        keep = ~masks[m] & (gray > 0)
        d = np.maximum(np.hypot(rows - rc[0], cols - rc[1])[keep], 1.0)
        hb = ax.hexbin(d, gray_to_gain_db(gray[keep]), xscale="log", gridsize=50, mincnt=1, bins="log", cmap="viridis")
        ax.plot(d_ref, -fspl_db(d_ref, RADIOMAPSEER_FREQUENCY_HZ), "r--", lw=1, label="free space (5.9 GHz)")
        ax.set_xlim(1, max(float(d.max()) if d.size else 2.0, 2.0))
        ax.set_title(f"map {m}, Tx {t}")
        ax.set_xlabel("distance to Tx (m)")
        ax.legend(fontsize=7, loc="upper right")
        fig.colorbar(hb, ax=ax, label="pixels (log)")
    for ax in axes[::ncols]:
        ax.set_ylabel("path gain (dB)")
    for ax in axes[len(distance_samples) :]:
        ax.set_visible(False)
    fig.suptitle("RadioMapSeer path gain vs distance (outdoor pixels above the floor)")
    return fig


def _rms_grid(rows, simulation: str) -> Figure:
    n = max(1, len(rows))
    fig = figure(figsize=(2.2 * n + 1.4, 3 * 2.2 + 0.6))
    axes = np.asarray(fig.subplots(3, n, squeeze=False))
    im = None
    for j, (m, t, mask, gray, rc) in enumerate(rows):
        axes[0, j].imshow(mask, cmap="gray_r", vmin=0, vmax=1)
        axes[0, j].set_title(f"{m}_{t}", fontsize=9)
        axes[1, j].imshow(mask, cmap="gray_r", vmin=0, vmax=3)
        axes[1, j].plot(rc[1], rc[0], marker="*", color="red", ms=12, mec="k")
        pg = np.where(mask, np.nan, gray_to_gain_db(gray))
        im = axes[2, j].imshow(pg, cmap="viridis", vmin=PG_FLOOR_DB, vmax=PG_MAX_DB)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for i, label in enumerate(("buildings", "Tx", f"path gain ({simulation})")):
        axes[i, 0].set_ylabel(label)
    if im is not None:
        fig.colorbar(im, ax=axes[2, :].tolist(), label="path gain (dB)", shrink=0.9)
    fig.suptitle("RadioMapSeer samples: buildings | Tx | gain map")
    return fig
