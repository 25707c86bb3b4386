"""EDA of RadioMapSeer and ICASSP 2025 folders: structure and statistics as figures + eda.json.

``run_eda`` reads both dataset roots (real or synthetic, same layouts: REFERENCE.md §1, §2) and
writes, atomically into one folder, a set of PNG figures and ``eda.json`` (counts, splits,
percentiles, antenna statistics, the figure list, the roots and the params used).

Reading is capped by ``eda.max_maps``: at most that many gain maps (RadioMapSeer) and
input/output pairs (ICASSP) are read for the statistics, chosen evenly spaced over the sorted
samples, so the selection is deterministic. Counts and splits always cover the whole dataset.

Figures are built with matplotlib's object API on an Agg canvas, never registered with pyplot,
so no figure stays open and nothing depends on a display or the global backend.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_dir, read_png, write_json
from radiodiff.data import icassp
from radiodiff.data.radiomapseer import FREQUENCY_HZ, PG_FLOOR_DB, PG_MAX_DB, discover_maps, split_maps, tx_position
from radiodiff.data.splits import SPLITS, split_ids
from radiodiff.physics.antenna import read_pattern
from radiodiff.physics.propagation import fspl_db

PERCENTILES = (1, 10, 50, 90, 99)
GRAY_TO_DB = (PG_MAX_DB - PG_FLOOR_DB) / 255.0  # ≈ 0.39 dB per uint8 level
DISTANCE_MAPS = 4  # maps in the path-gain-vs-distance figure
SPLIT_COLORS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}


def run_eda(radiomapseer_root, icassp_root, out, params: dict) -> dict:
    """Write the EDA figures and ``eda.json`` of both datasets into ``out`` (atomically).

    ``params`` holds the stage's declared keys only: ``eda.{grid_samples, dpi, max_maps}``,
    ``data.radiomapseer.{simulation, split}`` and ``data.icassp.{task, split}``.
    Returns a short summary (the folder, the figure names, the main counts).
    """
    eda = params["eda"]
    rms_cfg, ica_cfg = params["data"]["radiomapseer"], params["data"]["icassp"]
    grid, dpi, cap = int(eda["grid_samples"]), int(eda["dpi"]), int(eda["max_maps"])
    rms_root, ica_root = _check_root(radiomapseer_root, "RadioMapSeer"), _check_root(icassp_root, "ICASSP")

    with atomic_dir(out) as tmp:
        figures: list[str] = []

        def save(fig: Figure, name: str) -> None:
            fig.savefig(tmp / name, dpi=dpi)
            figures.append(name)

        rms = _radiomapseer(rms_root, rms_cfg["simulation"], rms_cfg["split"], cap, grid, save)
        ica = _icassp(ica_root, ica_cfg["task"], ica_cfg["split"], cap, grid, save)
        report = {
            "radiomapseer": rms,
            "icassp": ica,
            "figures": figures,
            "roots": {"radiomapseer": str(rms_root), "icassp": str(ica_root)},
            "params": json.loads(json.dumps(params)),
        }
        write_json(tmp / "eda.json", report)
    return {
        "out": str(out),
        "figures": figures,
        "radiomapseer_maps": rms["maps"],
        "radiomapseer_samples": rms["samples"],
        "icassp_samples": ica["samples"],
        "icassp_buildings": ica["buildings"],
    }


# --- shared helpers -----------------------------------------------------------------------------


def _check_root(root, what: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {what} folder not found")
    if not any(root.iterdir()):
        raise DataError(f"{root}: {what} folder is empty")
    return root


def _figure(**kw) -> Figure:
    fig = Figure(layout="constrained", **kw)
    FigureCanvasAgg(fig)
    return fig


def evenly_spaced(items: list, k: int) -> list:
    """At most ``k`` items, evenly spaced over ``items`` (first and last included), in order."""
    n = len(items)
    if n <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[i] for i in np.unique(np.linspace(0, n - 1, k).round().astype(int))]


def hist_percentiles(hist: np.ndarray, qs=PERCENTILES) -> dict[str, int]:
    """Percentiles of integer values given their histogram (index = value), by the inverted
    CDF: the smallest value whose cumulative share reaches q %."""
    hist = np.asarray(hist, dtype=np.float64)
    total = hist.sum()
    if total == 0:
        return {f"p{q}": None for q in qs}
    cdf = np.cumsum(hist) / total
    return {f"p{q}": int(np.searchsorted(cdf, q / 100.0 - 1e-12)) for q in qs}


def _stats(values) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "median": None, "max": None}
    return {
        "mean": round(float(v.mean()), 4),
        "std": round(float(v.std()), 4),
        "min": round(float(v.min()), 4),
        "median": round(float(np.median(v)), 4),
        "max": round(float(v.max()), 4),
    }


def _gain_db(gray) -> np.ndarray:
    return np.asarray(gray, dtype=np.float64) * GRAY_TO_DB + PG_FLOOR_DB


def _db_to_gray(db) -> np.ndarray:
    return (np.asarray(db, dtype=np.float64) - PG_FLOOR_DB) / GRAY_TO_DB


def _density_bins(n_points: int, most: int) -> int:
    """Bins per axis of a 2D histogram: about 1.5 points per bin, between 8 and ``most``."""
    return int(np.clip(np.sqrt(n_points / 1.5), 8, most))


def _bar_labels(ax, bars) -> None:
    ax.bar_label(bars, fontsize=7, padding=1)


# --- RadioMapSeer -------------------------------------------------------------------------------


def _radiomapseer(root: Path, simulation: str, split_cfg: dict, cap: int, grid: int, save) -> dict:
    n_tx = discover_maps(root)
    splits = split_maps(root, split_cfg)
    gain_dir = root / "gain" / simulation
    if not gain_dir.is_dir():
        raise DataError(f"{gain_dir}: gain folder of simulation {simulation!r} not found")
    samples = [(m, t) for m, n in n_tx.items() for t in range(n)]
    if not samples:
        raise DataError(f"{root / 'antenna'}: no transmitters listed in any map")

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

    report = {
        "root": str(root),
        "simulation": simulation,
        "maps": len(n_tx),
        "transmitters": len(samples),
        "samples": len(samples),
        "tx_per_map": _stats(list(n_tx.values())),
        "gain_files": sum(1 for _ in gain_dir.glob("*.png")),
        "image_size_px": list(shape),
        "split": {
            s: {"maps": len(splits[s]), "samples": sum(n_tx[m] for m in splits[s]), "map_ids": splits[s]}
            for s in SPLITS
        },
        "files_read": {"building_masks": len(masks), "gain_maps": len(chosen)},
        "building_fraction": {"maps": len(building_fraction), **_stats(list(building_fraction.values()))},
        "outdoor_pixels": int(gray_hist.sum()),
        "outdoor_zero_gray_fraction": round(float(gray_hist[0] / max(gray_hist.sum(), 1)), 4),
        "gray_percentiles_outdoor": hist_percentiles(gray_hist),
    }
    report["path_gain_db_percentiles_outdoor"] = {
        k: None if v is None else round(float(_gain_db(v)), 2) for k, v in report["gray_percentiles_outdoor"].items()
    }

    save(_rms_structure(n_tx, splits), "radiomapseer_structure.png")
    save(_rms_tx_density(tx_rc, shape), "radiomapseer_tx_density.png")
    save(_rms_buildings(masks, mask_maps, shape, building_fraction), "radiomapseer_buildings.png")
    save(_rms_gray_hist(gray_hist, report["gray_percentiles_outdoor"]), "radiomapseer_gray_histogram.png")
    save(_rms_distance(distance_samples, masks), "radiomapseer_gain_vs_distance.png")
    grid_rows = [(m, t, masks[m], *gains[(m, t)]) for m, t in sorted(grid_set)]
    save(_rms_grid(grid_rows, simulation), "radiomapseer_samples.png")
    return report


def _rms_structure(n_tx: dict[int, int], splits: dict[str, list[int]]) -> Figure:
    fig = _figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 3)
    fig.suptitle(f"RadioMapSeer structure: {len(n_tx)} maps, {sum(n_tx.values())} samples (split by map)")
    for ax, (label, values) in zip(
        axes,
        [
            ("maps", [len(splits[s]) for s in SPLITS]),
            ("samples (map × Tx)", [sum(n_tx[m] for m in splits[s]) for s in SPLITS]),
        ],
        strict=False,
    ):
        _bar_labels(ax, ax.bar(SPLITS, values, color=[SPLIT_COLORS[s] for s in SPLITS]))
        ax.set_ylabel(label)
        ax.set_title(f"{label} per split")
    counts = Counter(n_tx.values())
    ks = sorted(counts)
    _bar_labels(axes[2], axes[2].bar([str(k) for k in ks], [counts[k] for k in ks], color="tab:gray"))
    axes[2].set_xlabel("Tx per map")
    axes[2].set_ylabel("maps")
    axes[2].set_title("transmitters per map")
    return fig


def _rms_tx_density(tx_rc: list[tuple[float, float]], shape: tuple[int, int]) -> Figure:
    fig = _figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    rc = np.asarray(tx_rc, dtype=np.float64).reshape(-1, 2)
    bins = _density_bins(len(rc), 32)
    h, _, _ = np.histogram2d(rc[:, 0], rc[:, 1], bins=bins, range=[[0, shape[0]], [0, shape[1]]])
    im = ax.imshow(h, extent=(0, shape[1], shape[0], 0), cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="Tx count per bin")
    ax.set_xlabel("column (px, 1 m)")
    ax.set_ylabel("row (px, 1 m)")
    ax.set_title(f"RadioMapSeer Tx position density ({len(rc)} Tx)")
    return fig


def _rms_buildings(masks, mask_maps, shape, building_fraction) -> Figure:
    fig = _figure(figsize=(10, 4.2))
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


def _percentile_lines(ax, pct: dict) -> None:
    for k, v in pct.items():
        if v is not None:
            ax.axvline(v, color="tab:red", lw=0.8, ls="--")
            ax.text(v + 1, 0.97, k, transform=ax.get_xaxis_transform(), fontsize=7, color="tab:red", va="top")


def _rms_gray_hist(gray_hist: np.ndarray, pct: dict) -> Figure:
    fig = _figure(figsize=(8, 4.4))
    ax = fig.add_subplot()
    levels = np.arange(256)
    ax.bar(levels, gray_hist, width=1.0, color="tab:blue", log=True)
    _percentile_lines(ax, pct)
    ax.set_xlim(-1, 256)
    ax.set_xlabel("gray level (uint8)")
    ax.set_ylabel("outdoor pixels (log)")
    top = ax.secondary_xaxis("top", functions=(_gain_db, _db_to_gray))
    top.set_xlabel("path gain (dB) = gray/255·99.16 − 147")
    fig.suptitle("RadioMapSeer gray levels of non-building pixels (dashed: percentiles)")
    return fig


def _rms_distance(distance_samples, masks) -> Figure:
    n = max(1, len(distance_samples))
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig = _figure(figsize=(5.0 * ncols, 3.8 * nrows + 0.4))
    axes = np.asarray(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    d_ref = np.logspace(0, np.log10(400), 50)
    for ax, (m, t, gray, rc) in zip(axes, distance_samples, strict=False):
        rows, cols = np.indices(gray.shape)
        keep = ~masks[m] & (gray > 0)
        d = np.maximum(np.hypot(rows - rc[0], cols - rc[1])[keep], 1.0)
        hb = ax.hexbin(d, _gain_db(gray[keep]), xscale="log", gridsize=50, mincnt=1, bins="log", cmap="viridis")
        ax.plot(d_ref, -fspl_db(d_ref, FREQUENCY_HZ), "r--", lw=1, label="free space (5.9 GHz)")
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
    fig = _figure(figsize=(2.2 * n + 1.4, 3 * 2.2 + 0.6))
    axes = np.asarray(fig.subplots(3, n, squeeze=False))
    im = None
    for j, (m, t, mask, gray, rc) in enumerate(rows):
        axes[0, j].imshow(mask, cmap="gray_r", vmin=0, vmax=1)
        axes[0, j].set_title(f"{m}_{t}", fontsize=9)
        axes[1, j].imshow(mask, cmap="gray_r", vmin=0, vmax=3)
        axes[1, j].plot(rc[1], rc[0], marker="*", color="red", ms=12, mec="k")
        pg = np.where(mask, np.nan, _gain_db(gray))
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


# --- ICASSP 2025 --------------------------------------------------------------------------------


def _icassp(root: Path, task: str, split_cfg: dict, cap: int, grid: int, save) -> dict:
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
    report = {
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
    save(_ica_pl_hist(pl_hist, report["path_loss_db_percentiles"]), "icassp_path_loss_histogram.png")
    save(_ica_tx_density(tx_norm), "icassp_tx_density.png")
    save(_ica_previews(previews), "icassp_channels.png")
    save(_ica_patterns(patterns), "icassp_antenna_patterns.png")
    save(_ica_sizes(size_src, split_of), "icassp_image_sizes.png")
    save(_ica_materials(g_hist), "icassp_materials.png")
    return report


def _count(values) -> dict[str, int]:
    return {str(k): v for k, v in sorted(Counter(values).items())}


def _antenna_number(path: Path) -> int:
    digits = path.name[len("Ant") : -len("_Pattern.csv")]
    if not digits.isdigit():
        raise DataError(f"{path}: pattern file name is not Ant{{a}}_Pattern.csv")
    return int(digits)


def _pattern_stats(pattern: np.ndarray) -> dict[str, float]:
    """Gain span (max − min) and front-to-back ratio: gain at the peak minus gain 180° from it."""
    peak = int(np.argmax(pattern))
    return {
        "max_gain_db": round(float(pattern.max()), 3),
        "min_gain_db": round(float(pattern.min()), 3),
        "gain_span_db": round(float(pattern.max() - pattern.min()), 3),
        "peak_deg": peak,
        "front_to_back_db": round(float(pattern[peak] - pattern[(peak + 180) % 360]), 3),
    }


def _ica_structure(ids, parts, split_of) -> Figure:
    fig = _figure(figsize=(12, 7))
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
        _bar_labels(ax, ax.bar([f"{prefix}{k}" for k in ks], [c[k] for k in ks], color="tab:gray"))
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
    fig = _figure(figsize=(8, 4.4))
    ax = fig.add_subplot()
    levels = np.arange(256)
    for f, h in pl_hist.items():
        freq = icassp.FREQUENCIES_HZ.get(f)
        label = f"f{f}" + (f" ({freq / 1e9:g} GHz)" if freq else "")
        ax.step(levels, h, where="mid", label=label)
    total = sum(pl_hist.values())
    ax.step(levels, total, where="mid", color="k", lw=1.2, label="all bands")
    _percentile_lines(ax, pct)
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
    fig = _figure(figsize=(5.2, 4.4))
    ax = fig.add_subplot()
    xy = np.asarray(tx_norm, dtype=np.float64).reshape(-1, 2)
    h, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=_density_bins(len(xy), 20), range=[[0, 1], [0, 1]])
    im = ax.imshow(h, extent=(0, 1, 1, 0), cmap="magma", interpolation="nearest")
    ax.scatter(xy[:, 0], xy[:, 1], s=3, c="cyan", alpha=0.5, lw=0)
    fig.colorbar(im, ax=ax, label="Tx count per bin")
    ax.set_xlabel("X / W (column / building width)")
    ax.set_ylabel("Y / H (row / building height)")
    ax.set_title(f"ICASSP Tx position density ({len(xy)} Tx)")
    return fig


def _ica_previews(previews) -> Figure:
    n = max(1, len(previews))
    fig = _figure(figsize=(13, 2.6 * n + 0.6))
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
    fig = _figure(figsize=(3.2 * n, 3.8))
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
        ax.set_title(f"Ant{a}\nspan {s['gain_span_db']:.1f} dB, F/B {s['front_to_back_db']:.1f} dB", fontsize=9)
    if not patterns:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no Radiation_Patterns/Ant*_Pattern.csv", ha="center")
    fig.suptitle("ICASSP antenna patterns (gain dB vs azimuth from boresight)")
    return fig


def _ica_sizes(size_src: dict, split_of: dict) -> Figure:
    fig = _figure(figsize=(6, 5))
    ax = fig.add_subplot()
    for s in SPLITS:
        pts = [(b, v) for b, v in size_src.items() if v is not None and split_of[b] == s]
        if pts:
            ax.scatter([v[0] for _, v in pts], [v[1] for _, v in pts], color=SPLIT_COLORS[s], label=s, s=30)
            for b, (w, h) in pts:
                ax.annotate(f"B{b}", (w, h), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"W (px, {icassp.PIXEL_SIZE_M} m/px)")
    ax.set_ylabel(f"H (px, {icassp.PIXEL_SIZE_M} m/px)")
    ax.set_title("ICASSP image size per building")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.margins(0.1)
    return fig


def _ica_materials(g_hist: np.ndarray) -> Figure:
    fig = _figure(figsize=(7, 4))
    ax = fig.add_subplot()
    values = [v for v in np.nonzero(g_hist)[0] if v > 0]
    if values:
        bars = ax.bar([str(v) for v in values], [g_hist[v] for v in values], color="tab:purple")
        _bar_labels(ax, bars)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no non-zero transmittance values", ha="center", transform=ax.transAxes)
    ax.set_xlabel("transmittance (dB), channel G")
    ax.set_ylabel("wall pixels (log)")
    ax.set_title("ICASSP material values (non-zero transmittance)")
    return fig
