"""EDA of an ICASSP 2025 folder: structure, path-loss distribution per band, Tx density, input
channel previews, antenna patterns, image sizes and materials (REFERENCE.md §2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data import icassp
from radiodiff.data.splits import SPLITS, split_ids
from radiodiff.eda.common import (
    SPLIT_COLORS,
    bar_labels,
    density_bins,
    evenly_spaced,
    figure,
    hist_percentiles,
    percentile_lines,
)
from radiodiff.physics.antenna import read_pattern


def analyse(root: Path, task: str, split_cfg: dict, cap: int, grid: int, save) -> dict:
    ids = icassp.discover(root, task)
    buildings = sorted({s.building for s in ids})
    parts = split_ids(buildings, **split_cfg)
    split_of = {b: name for name, bs in parts.items() for b in bs}

    sizes = {}
    for b in buildings:
        path = icassp.details_path(root, b)
        sizes[b] = icassp.read_details(path) if path.is_file() else None

    # Tx positions of the discovered samples (row s of each positions file), normalized by W, H.
    groups = sorted({(s.building, s.antenna, s.band) for s in ids})
    tx_norm = []
    for b, a, f in evenly_spaced(groups, cap):
        path = icassp.positions_path(root, b, a, f)
        table = icassp.read_positions(path)
        if sizes[b] is None:
            continue
        w, h = sizes[b]
        rows = [s.sample for s in ids if (s.building, s.antenna, s.band) == (b, a, f) and s.sample < len(table)]
        tx_norm.extend(zip(table[rows, 0] / w, table[rows, 1] / h, strict=True))

    chosen = evenly_spaced(ids, cap)
    grid_set = set(evenly_spaced(chosen, grid))
    pl_hist = {f: np.zeros(256, dtype=np.int64) for f in sorted({s.band for s in ids})}
    g_hist = np.zeros(256, dtype=np.int64)
    r_hist = np.zeros(256, dtype=np.int64)
    image_sizes: dict[int, tuple[int, int]] = {}
    previews = []
    for sid in chosen:
        inp = read_png(icassp.input_path(root, task, sid), "RGB")
        out_path = icassp.output_path(root, task, sid)
        pl = read_png(out_path, "L")
        if pl.shape != inp.shape[:2]:
            raise DataError(f"{out_path}: size {pl.shape} differs from its input {inp.shape[:2]}")
        image_sizes.setdefault(sid.building, (pl.shape[1], pl.shape[0]))
        pl_hist[sid.band] += np.bincount(pl.ravel(), minlength=256)
        g_hist += np.bincount(inp[..., 1].ravel(), minlength=256)
        r_hist += np.bincount(inp[..., 0].ravel(), minlength=256)
        if sid in grid_set:
            previews.append((sid, inp, pl))

    patterns = {}
    for p in sorted((root / "Radiation_Patterns").glob("Ant*_Pattern.csv"), key=_antenna_number):
        patterns[_antenna_number(p)] = read_pattern(p)

    all_pl = sum(pl_hist.values())
    size_src = {b: sizes[b] or image_sizes.get(b) for b in buildings}
    known = [v for v in size_src.values() if v is not None]
    summary = {
        "root": str(root),
        "task": task,
        "samples": len(ids),
        "buildings": len(buildings),
        "antennas": sorted({s.antenna for s in ids}),
        "bands": sorted({s.band for s in ids}),
        "per_building": _count(s.building for s in ids),
        "per_antenna": _count(s.antenna for s in ids),
        "per_band": _count(s.band for s in ids),
        "split": {
            s: {
                "buildings": len(parts[s]),
                "samples": sum(split_of[x.building] == s for x in ids),
                "building_ids": parts[s],
            }
            for s in SPLITS
        },
        "files_read": {"samples": len(chosen), "positions": len(evenly_spaced(groups, cap)), "patterns": len(patterns)},
        "path_loss_db_percentiles": hist_percentiles(all_pl),
        "path_loss_db_percentiles_per_band": {f"f{f}": hist_percentiles(h) for f, h in pl_hist.items()},
        "antenna_patterns": {f"Ant{a}": _pattern_stats(p) for a, p in patterns.items()},
        "image_size_px": {
            "width": [min(w for w, _ in known), max(w for w, _ in known)] if known else None,
            "height": [min(h for _, h in known), max(h for _, h in known)] if known else None,
            "per_building": {str(b): list(v) for b, v in size_src.items() if v is not None},
        },
        "transmittance_db_values": {str(v): int(g_hist[v]) for v in np.nonzero(g_hist)[0] if v > 0},
        "reflectance_db_values": {str(v): int(r_hist[v]) for v in np.nonzero(r_hist)[0] if v > 0},
        "tx_positions": len(tx_norm),
    }

    save(_ica_structure(ids, parts, split_of), "icassp_structure.png")
    save(_ica_pl_hist(pl_hist, summary["path_loss_db_percentiles"]), "icassp_path_loss_histogram.png")
    save(_ica_tx_density(tx_norm), "icassp_tx_density.png")
    save(_ica_previews(previews), "icassp_channels.png")
    save(_ica_patterns(patterns), "icassp_antenna_patterns.png")
    save(_ica_sizes(size_src, split_of), "icassp_image_sizes.png")
    save(_ica_materials(g_hist), "icassp_materials.png")
    return summary


def _count(values) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def _antenna_number(path: Path) -> int:
    digits = path.name[len("Ant") : -len("_Pattern.csv")]
    if not digits.isdigit():
        raise DataError(f"{path}: pattern file name is not Ant{{a}}_Pattern.csv")
    return int(digits)


def _pattern_stats(pattern: np.ndarray) -> dict[str, float]:
    """Peak and mean gain (dB over the 360 degrees), gain span (max − min) and front-to-back
    ratio: gain at the peak minus gain 180° from it."""
    peak = int(np.argmax(pattern))
    return {
        "max_gain_db": round(float(pattern.max()), 3),
        "mean_gain_db": round(float(pattern.mean()), 3),
        "min_gain_db": round(float(pattern.min()), 3),
        "gain_span_db": round(float(pattern.max() - pattern.min()), 3),
        "peak_deg": peak,
        "front_to_back_db": round(float(pattern[peak] - pattern[(peak + 180) % 360]), 3),
    }


def _ica_structure(ids, parts, split_of) -> Figure:
    fig = figure(figsize=(12, 7))
    gs = fig.add_gridspec(2, 3)
    ax_b = fig.add_subplot(gs[0, :])
    per_b = Counter(s.building for s in ids)
    bs = sorted(per_b)
    ax_b.bar(
        [f"B{b}" for b in bs], [per_b[b] for b in bs], color=[SPLIT_COLORS[split_of[b]] for b in bs], edgecolor="none"
    )
    ax_b.set_ylabel("samples")
    ax_b.set_title("samples per building (colour = split)")
    ax_b.tick_params(axis="x", labelsize=7, rotation=90 if len(bs) > 20 else 0)
    ax_b.legend(handles=[Patch(color=SPLIT_COLORS[s], label=s) for s in SPLITS], fontsize=8)
    for ax, key, prefix in ((fig.add_subplot(gs[1, 0]), "antenna", "Ant"), (fig.add_subplot(gs[1, 1]), "band", "f")):
        c = Counter(getattr(s, key) for s in ids)
        ks = sorted(c)
        bar_labels(ax, ax.bar([f"{prefix}{k}" for k in ks], [c[k] for k in ks], color="tab:gray"))
        ax.set_title(f"samples per {key}")
        ax.set_ylabel("samples")
    ax_s = fig.add_subplot(gs[1, 2])
    samples = [sum(split_of[x.building] == s for x in ids) for s in SPLITS]
    bars = ax_s.bar(SPLITS, samples, color=[SPLIT_COLORS[s] for s in SPLITS])
    ax_s.bar_label(
        bars, labels=[f"{n}\n({len(parts[s])} bldg)" for n, s in zip(samples, SPLITS, strict=True)], fontsize=7
    )
    ax_s.set_title("samples per split (by building)")
    ax_s.set_ylabel("samples")
    ax_s.margins(y=0.2)
    fig.suptitle(f"ICASSP structure: {len(ids)} samples, {len(per_b)} buildings")
    return fig


def _ica_pl_hist(pl_hist: dict[int, np.ndarray], pct: dict) -> Figure:
    fig = figure(figsize=(8, 4.4))
    ax = fig.add_subplot()
    levels = np.arange(256)
    for f, h in pl_hist.items():
        freq = icassp.FREQUENCIES_HZ.get(f)
        label = f"f{f}" + (f" ({freq / 1e9:g} GHz)" if freq else "")
        ax.step(levels, h, where="mid", label=label)
    total = sum(pl_hist.values())
    ax.step(levels, total, where="mid", color="k", lw=1.2, label="all bands")
    percentile_lines(ax, pct)
    nz = np.nonzero(total)[0]
    if nz.size:
        ax.set_xlim(max(int(nz[0]) - 5, 0), min(int(nz[-1]) + 5, 255))
    ax.set_yscale("log")
    ax.set_xlabel("path loss (dB)")
    ax.set_ylabel("pixels (log)")
    ax.set_title("ICASSP path-loss distribution (dashed: percentiles of all bands)")
    ax.legend(fontsize=8)
    return fig


def _ica_tx_density(tx_norm) -> Figure:
    fig = figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    xy = np.asarray(tx_norm, dtype=np.float64).reshape(-1, 2)
    h, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=density_bins(len(xy), 20), range=[[0, 1], [0, 1]])
    im = ax.imshow(h, extent=(0, 1, 1, 0), cmap="magma", interpolation="nearest")
    ax.scatter(xy[:, 0], xy[:, 1], s=3, c="cyan", alpha=0.5, lw=0)
    fig.colorbar(im, ax=ax, label="Tx count per bin")
    ax.set_xlabel("X / W (column / building width)")
    ax.set_ylabel("Y / H (row / building height)")
    ax.set_title(f"ICASSP Tx position density ({len(xy)} Tx)")
    return fig


def _ica_previews(previews) -> Figure:
    n = max(1, len(previews))
    fig = figure(figsize=(13, 2.6 * n + 0.6))
    axes = np.asarray(fig.subplots(n, 4, squeeze=False))
    spec = (
        ("R: reflectance", "dB", "magma"),
        ("G: transmittance", "dB", "magma"),
        ("B: distance", "m", "viridis"),
        ("path loss", "dB", "viridis_r"),
    )
    for i, (sid, inp, pl) in enumerate(previews):
        for j, (title, unit, cmap) in enumerate(spec):
            img = inp[..., j] if j < 3 else pl
            ax = axes[i, j]
            im = ax.imshow(img, cmap=cmap)
            fig.colorbar(im, ax=ax, label=unit, fraction=0.046, pad=0.02)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
        axes[i, 0].set_ylabel(sid.name, fontsize=8)
    fig.suptitle("ICASSP inputs (R, G, B channels) and output")
    return fig


def _ica_patterns(patterns: dict[int, np.ndarray]) -> Figure:
    n = max(1, len(patterns))
    fig = figure(figsize=(3.2 * n, 3.8))
    theta = np.deg2rad(np.arange(361))
    for i, (a, p) in enumerate(patterns.items()):
        ax = fig.add_subplot(1, n, i + 1, projection="polar")
        # Screen convention (SPEC): 0° along +columns, angles clockwise on screen.
        ax.set_theta_zero_location("E")
        ax.set_theta_direction(-1)
        lo = float(np.floor(p.min() / 5.0) * 5.0)
        hi = float(p.max())
        if hi - lo < 1.0:  # isotropic: give the flat circle some room
            lo, hi = lo - 5.0, hi + 1.0
        ax.plot(theta, np.append(p, p[0]), color="tab:blue")
        ax.set_ylim(lo, hi)
        ax.set_rlabel_position(157.5)  # radial labels away from the main lobe
        ax.tick_params(labelsize=7)
        s = _pattern_stats(p)
        ax.set_title(
            f"Ant{a}: peak {s['max_gain_db']:+.1f}, mean {s['mean_gain_db']:+.1f} dB\n"
            f"span {s['gain_span_db']:.1f} dB, F/B {s['front_to_back_db']:.1f} dB",
            fontsize=9,
        )
    if not patterns:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no Radiation_Patterns/Ant*_Pattern.csv", ha="center")
    fig.suptitle("ICASSP antenna patterns (gain dB vs azimuth from boresight)")
    return fig


def _ica_sizes(size_src: dict, split_of: dict) -> Figure:
    fig = figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for s in SPLITS:
        pts = [(b, v) for b, v in size_src.items() if v is not None and split_of[b] == s]
        if pts:
            ax.scatter([v[0] for _, v in pts], [v[1] for _, v in pts], color=SPLIT_COLORS[s], label=s, s=30)
            for b, (w, h) in pts:
                ax.annotate(f"B{b}", (w, h), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"W (px, {ICASSP_PIXEL_SIZE_M} m/px)")
    ax.set_ylabel(f"H (px, {ICASSP_PIXEL_SIZE_M} m/px)")
    ax.set_title("ICASSP image size per building")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.margins(0.1)
    return fig


def _ica_materials(g_hist: np.ndarray) -> Figure:
    fig = figure(figsize=(7, 4))
    ax = fig.add_subplot()
    values = [v for v in np.nonzero(g_hist)[0] if v > 0]
    if values:
        bars = ax.bar([str(v) for v in values], [g_hist[v] for v in values], color="tab:purple")
        bar_labels(ax, bars)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no non-zero transmittance values", ha="center", transform=ax.transAxes)
    ax.set_xlabel("transmittance (dB), channel G")
    ax.set_ylabel("wall pixels (log)")
    ax.set_title("ICASSP material values (non-zero transmittance)")
    return fig
