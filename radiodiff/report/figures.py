"""The report's figures, drawn from logs, metrics and sampled maps (never from a model).

Every figure is built with matplotlib's object API on an Agg canvas (as in
:mod:`radiodiff.eda.analysis`): nothing is registered with pyplot, so no figure stays open and
nothing depends on a display. Style (dpi, font size, colour maps, smoothing) comes from the
``report`` params section through :class:`Style`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from radiodiff.core.errors import ParamsError

METHOD_COLORS = {
    "radiodiff": "tab:blue",
    "radiodiff_mean": "tab:purple",  # sample.ensemble: the mean of the K samples
    "radiounet": "tab:orange",
    "physics": "tab:green",
    "radiounet_vae": "tab:red",  # RadioUNet's maps through the LDM's VAE: what the first stage costs
}
METHOD_LABELS = {
    "radiodiff": "RadioDiff",
    "radiodiff_mean": "RadioDiff, mean of K samples",
    "radiounet": "RadioUNet",
    "physics": "physics",
    "radiounet_vae": "RadioUNet through the VAE",
}
# columns of a training log that are not loss terms
NON_TERMS = ("step", "epoch", "step_time_s", "wall_s", "skipped_nonfinite")
NON_TERM_PREFIXES = ("lr/", "grad_norm/", "val/")


@dataclass(frozen=True)
class Style:
    dpi: int = 100
    font_size: float = 9.0
    cmap: str = "viridis"
    error_cmap: str = "magma"
    grid_samples: int = 4
    smooth: int = 1
    dag: bool = True

    @classmethod
    def from_params(cls, p: dict) -> Style:
        fields = set(cls.__dataclass_fields__)
        unknown = sorted(set(p) - fields)
        if unknown:
            raise ParamsError(f"report.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
        style = cls(**p)
        for key in ("cmap", "error_cmap"):
            name = getattr(style, key)
            if name not in colormaps:
                raise ParamsError(f"report.{key}: unknown matplotlib colour map {name!r}")
        return style

    def figure(self, width: float, height: float) -> Figure:
        fig = Figure(figsize=(width, height), layout="constrained")
        FigureCanvasAgg(fig)
        return fig

    def rc(self) -> dict:
        return {"font.size": self.font_size, "axes.titlesize": self.font_size, "axes.labelsize": self.font_size}


# --------------------------------------------------------------------------------------------- training


def loss_terms(log: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The log's loss-term columns that vary, and those that are constant (shown as a note)."""
    varying, constant = [], []
    for col in log.columns:
        if col in NON_TERMS or col.startswith(NON_TERM_PREFIXES):
            continue
        values = log[col].dropna()
        if values.empty:
            continue
        (varying if values.nunique() > 1 else constant).append(col)
    return varying, constant


def _smoothed(values: pd.Series, window: int) -> pd.Series:
    return values.rolling(window, min_periods=1).mean() if window > 1 else values


def _phases(ax, disc_start: int | None, last_step: float) -> None:
    """Mark the VAE-GAN's two phases: reconstruction only, then with the discriminator."""
    if disc_start is None or disc_start > last_step:
        return
    ax.axvspan(disc_start, last_step, color="tab:red", alpha=0.06, lw=0)
    ax.axvline(disc_start, color="tab:red", lw=0.8, ls="--")


def _series_axis(ax, log: pd.DataFrame, col: str, style: Style, color="tab:blue", logy=False) -> None:
    d = log[["step", col]].dropna()
    if d.empty:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="gray")
        return
    if len(d) > 1 and style.smooth > 1:
        ax.plot(d["step"], d[col], color=color, alpha=0.25, lw=0.8)
    ax.plot(d["step"], _smoothed(d[col], style.smooth), color=color, lw=1.2, marker="o" if len(d) < 12 else None, ms=3)
    if logy and (d[col] > 0).all():
        ax.set_yscale("log")


def training_terms_figure(log: pd.DataFrame, title: str, style: Style, disc_start: int | None = None) -> Figure:
    """Every varying loss term and validation metric on its own axis (their scales differ)."""
    terms, _ = loss_terms(log)
    vals = [c for c in log.columns if c.startswith("val/") and log[c].notna().any()]
    panels = terms + vals
    ncols = min(4, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig = style.figure(3.0 * ncols, 2.1 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    last = float(log["step"].max()) if len(log) else 0.0
    for ax, col in zip(axes, panels, strict=False):
        is_val = col.startswith("val/")
        _series_axis(ax, log, col, style, color="tab:purple" if is_val else "tab:blue")
        _phases(ax, disc_start, last)
        ax.set_title(col, fontsize=style.font_size)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    suffix = f" (dashed: disc_start = {disc_start}, shaded: VAE-GAN phase)" if disc_start is not None else ""
    fig.suptitle(f"{title}: loss terms and validation{suffix}", fontsize=style.font_size + 1)
    return fig


def training_overview_figure(log: pd.DataFrame, title: str, style: Style, disc_start: int | None = None) -> Figure:
    """Normalized comparison of the terms, learning rate, gradient norm and skipped steps."""
    terms, _ = loss_terms(log)
    fig = style.figure(13.0, 2.9)
    axes = fig.subplots(1, 4)
    last = float(log["step"].max()) if len(log) else 0.0
    cmap = colormaps["tab20"]
    ax = axes[0]
    for i, col in enumerate(terms):
        d = log[["step", col]].dropna()
        v = _smoothed(d[col], style.smooth)
        span = float(v.max() - v.min())
        ax.plot(d["step"], (v - v.min()) / span if span > 0 else v * 0, lw=1.0, color=cmap(i % 20), label=col)
    ax.set_title("terms, min-max normalized")
    if terms:
        ax.legend(fontsize=max(5.0, style.font_size - 3), ncols=1 if len(terms) < 7 else 2, loc="upper right")
    for ax, prefix, name in (
        (axes[1], "lr/", "learning rate"),
        (axes[2], "grad_norm/", "gradient norm (before clipping)"),
    ):
        cols = [c for c in log.columns if c.startswith(prefix) and log[c].notna().any()]
        for i, col in enumerate(cols):
            _series_axis(ax, log, col, style, color=cmap(2 * i), logy=True)
        ax.set_title(name)
        if cols:
            ax.legend(cols, fontsize=max(5.0, style.font_size - 2))
    ax = axes[3]
    if "skipped_nonfinite" in log.columns:
        ax.step(log["step"], log["skipped_nonfinite"].fillna(0), where="post", color="tab:red")
    total = int(log["skipped_nonfinite"].fillna(0).max()) if "skipped_nonfinite" in log.columns and len(log) else 0
    ax.set_title(f"skipped non-finite steps (total {total})")
    ax.set_ylim(bottom=0, top=max(1, total) * 1.2)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        _phases(ax, disc_start, last)
    fig.suptitle(f"{title}: overview", fontsize=style.font_size + 1)
    return fig


def phase_table(log: pd.DataFrame, disc_start: int) -> list[dict]:
    """Loss-phase analysis of a VAE-GAN log: per phase, the terms' mean over its last quarter."""
    terms, _ = loss_terms(log)
    keep = [t for t in terms if t.split("/")[-1] in ("rec_loss", "kl_loss", "nll_loss", "g_loss", "disc_loss")]
    vals = [c for c in log.columns if c.startswith("val/")]
    rows = []
    for label, part in (
        ("1: reconstruction (VAE)", log[log["step"] < disc_start]),
        ("2: adversarial (VAE-GAN)", log[log["step"] >= disc_start]),
    ):
        if part.empty:
            rows.append({"phase": label, "steps": "not reached"})
            continue
        tail = part.iloc[int(len(part) * 0.75) :]
        row = {"phase": label, "steps": f"{int(part['step'].min())}–{int(part['step'].max())}"}
        row.update({f"{t} (last 25%)": float(tail[t].mean()) for t in keep})
        for v in vals:
            last = part[v].dropna()
            row[f"{v} (last eval)"] = float(last.iloc[-1]) if len(last) else float("nan")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- samples


def sample_grid_figure(
    rows: list[dict], unit: str, style: Style, vmin: float, vmax: float, methods: dict | None = None
) -> Figure:
    """Rows of condition | ground truth | each method | |RadioDiff − truth| (| the std of
    RadioDiff's samples), in dB.

    Each row dict: ``name``, ``condition`` (H×W or H×W×3 on [0, 1]), ``truth``, one map per key
    of ``methods`` (key → column title; default RadioDiff and RadioUNet; dB, NaN where not
    scored), ``tx`` (row, col) or None, and optionally ``uncertainty`` (the per-pixel std of
    RadioDiff's samples, dB) in every row: then a last column shows it.
    """
    methods = methods or {"radiodiff": "RadioDiff", "radiounet": "RadioUNet"}
    spread = all("uncertainty" in r for r in rows)
    cols = ("condition", "ground truth", *methods.values(), "|RadioDiff − truth|")
    last = len(cols) - 1
    if spread:
        cols += ("std of RadioDiff's samples",)
    fig = style.figure(2.3 * len(cols) + 0.8, 2.25 * len(rows) + 0.4)
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    err_max = max(
        [float(np.nanmax(np.abs(r["radiodiff"] - r["truth"]))) for r in rows if np.isfinite(r["truth"]).any()] + [1.0]
    )
    std_max = max([float(np.nanmax(r["uncertainty"])) for r in rows if spread] + [1e-6])
    for i, r in enumerate(rows):
        err = np.abs(r["radiodiff"] - r["truth"])
        panels = (r["condition"], r["truth"], *(r[m] for m in methods), err)
        panels += (r["uncertainty"],) if spread else ()
        for j, img in enumerate(panels):
            ax = axes[i, j]
            if j == 0:
                ax.imshow(img, cmap=None if img.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest")
            elif j < last:
                im = ax.imshow(img, cmap=style.cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            elif j == last:
                eim = ax.imshow(img, cmap=style.error_cmap, vmin=0, vmax=err_max, interpolation="nearest")
            else:
                sim = ax.imshow(img, cmap=style.error_cmap, vmin=0, vmax=std_max, interpolation="nearest")
            if r.get("tx") is not None and j < 2:
                ax.plot(r["tx"][1], r["tx"][0], marker="*", color="red", ms=8, mec="white", mew=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j])
        axes[i, 0].set_ylabel(r["name"], fontsize=max(5.0, style.font_size - 2))
        rmse = float(np.sqrt(np.nanmean(err**2))) if np.isfinite(err).any() else float("nan")
        axes[i, last].set_xlabel(f"RMSE {rmse:.2f} dB", fontsize=max(5.0, style.font_size - 1))
    fig.colorbar(im, ax=axes[:, 1:last], shrink=0.8, label=unit)
    fig.colorbar(eim, ax=axes[:, last], shrink=0.8, label="absolute error (dB)")
    if spread:
        fig.colorbar(sim, ax=axes[:, last + 1], shrink=0.8, label="std (dB)")
    return fig


def preview_progression_figure(previews: list[dict], title: str, style: Style) -> Figure:
    """The LDM's sample previews side by side, one column per step (each preview: ``step``,
    ``mean_rmse_db``, ``image`` an H×W×3 array of rows condition | truth | prediction | error)."""
    aspect = previews[0]["image"].shape[1] / previews[0]["image"].shape[0]
    fig = style.figure(min(16.0, max(4.0, 3.6 * aspect * len(previews))), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(previews), squeeze=False)).ravel()
    for ax, p in zip(axes, previews, strict=True):
        ax.imshow(p["image"], interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"step {p['step']}\nRMSE {p['mean_rmse_db']:.2f} dB")
    fig.suptitle(f"{title}: sample previews while training")
    return fig


def distribution_figure(per_sample: pd.DataFrame, scope: str, metrics: list[str], style: Style, title: str) -> Figure:
    """Per-sample metric distributions per method (box plots with every sample as a dot)."""
    d = per_sample[per_sample["scope"] == scope]
    methods = [m for m in METHOD_COLORS if m in set(d["method"])]
    fig = style.figure(3.0 * len(metrics), 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=True):
        data = [d.loc[d["method"] == m, metric].replace([np.inf, -np.inf], np.nan).dropna().to_numpy() for m in methods]
        ax.boxplot(data, tick_labels=[METHOD_LABELS[m] for m in methods], showfliers=False, widths=0.5)
        for k, (m, values) in enumerate(zip(methods, data, strict=True)):
            jitter = rng.uniform(-0.15, 0.15, len(values))
            ax.scatter(np.full(len(values), k + 1) + jitter, values, s=5, alpha=0.45, color=METHOD_COLORS[m])
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{title}: per-sample metrics ({scope} pixels, {len(d) // max(1, len(methods))} maps)")
    return fig


def breakdown_figure(summary: dict, key: str, metric: str, style: Style, title: str) -> Figure:
    """Grouped bars of one metric per group (``per_building`` / ``per_band``) and method."""
    methods = [m for m in METHOD_COLORS if m in summary and key in summary[m]]
    groups = sorted({g for m in methods for g in summary[m][key]}, key=_natural)
    fig = style.figure(max(4.0, 0.9 * len(groups) * len(methods) / 2 + 2), 3.0)
    ax = fig.subplots()
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups))
    for k, m in enumerate(methods):
        v = [summary[m][key].get(g, {}).get(metric) for g in groups]
        v = [np.nan if a is None else a for a in v]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, v, width, label=METHOD_LABELS[m], color=METHOD_COLORS[m])
    ax.set_xticks(x, groups)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


def learning_curves_figure(curves: list[dict], ceiling: float | None, style: Style, title: str) -> Figure:
    """Validation NMSE against training wall-seconds and, where counted, training FLOPs; each
    curve ``{"method", "wall_s", "flops" (or None), "nmse", "test_nmse"}``, the test NMSE as a
    marker at the curve's end and the VAE ceiling as a dashed line."""
    with_flops = any(c["flops"] is not None for c in curves)
    fig = style.figure(9.0 if with_flops else 5.0, 3.2)
    axes = np.atleast_1d(fig.subplots(1, 2 if with_flops else 1))
    for ax, key, label in zip(axes, ("wall_s", "flops"), ("training wall-seconds", "training FLOPs"), strict=False):
        for c in curves:
            if c[key] is None:
                continue
            color = METHOD_COLORS[c["method"]]
            ax.plot(c[key], c["nmse"], "o-", color=color, label=f"{METHOD_LABELS[c['method']]} (validation)")
            if c.get("test_nmse") is not None:
                ax.plot(
                    [c[key][-1]],
                    [c["test_nmse"]],
                    "*",
                    ms=11,
                    color=color,
                    label=f"{METHOD_LABELS[c['method']]} (test)",
                )
        if ceiling:
            ax.axhline(ceiling, color="0.3", ls="--", lw=1, label="VAE ceiling (test)")
        ax.set_xlabel(label)
        ax.set_ylabel("NMSE")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=style.font_size - 1)
    fig.suptitle(title, fontsize=style.font_size + 1)
    return fig


def error_profile_figure(profile: dict, style: Style, title: str) -> Figure:
    """Each method's RMSE (dB) by distance bin from the Tx (``error_profile`` of a summary), with
    the share of scored pixels per bin as faint bars."""
    dist = profile["distance_m"]
    edges = [np.inf if e is None else e for e in dist["edges"]]
    keep = [i for i, n in enumerate(dist["pixels"]) if n > 0]
    labels = [f"{edges[i]:g}–{edges[i + 1]:g}" if np.isfinite(edges[i + 1]) else f"≥{edges[i]:g}" for i in keep]
    fig = style.figure(6.0, 3.2)
    ax = fig.subplots()
    x = np.arange(len(keep))
    share = np.array([dist["pixels"][i] for i in keep], dtype=float)
    twin = ax.twinx()
    twin.bar(x, 100 * share / max(share.sum(), 1), color="0.85", width=0.6)
    twin.set_ylabel("share of pixels (%)")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    for m in METHOD_COLORS:
        if m in dist["rmse_db"]:
            v = [dist["rmse_db"][m][i] for i in keep]
            ax.plot(x, [np.nan if a is None else a for a in v], "o-", label=METHOD_LABELS[m], color=METHOD_COLORS[m])
    ax.set_xticks(x, labels)
    ax.set_xlabel("distance from the Tx (m)")
    ax.set_ylabel("RMSE (dB)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _natural(s: str):
    digits = "".join(ch for ch in s if ch.isdigit())
    return (s.rstrip("0123456789"), int(digits) if digits else 0)


# --------------------------------------------------------------------------------------------- DAG


def dag_figure(nodes: dict[str, str], edges: list[tuple[str, str]], style: Style) -> Figure:
    """A layered drawing of the DAG (used when Graphviz's ``dot`` is not installed)."""
    depth = dict.fromkeys(nodes, 0)
    for _ in range(len(nodes)):  # longest-path layering; a DAG settles within |V| passes
        changed = False
        for a, b in edges:
            if depth[b] < depth[a] + 1:
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    layers: dict[int, list[str]] = {}
    for n in sorted(nodes, key=lambda n: nodes[n]):
        layers.setdefault(depth[n], []).append(n)
    width = max(len(v) for v in layers.values()) if layers else 1
    fig = style.figure(max(8.0, 2.3 * width), 0.9 * (len(layers) + 1))
    ax = fig.subplots()
    pos = {}
    for d, members in layers.items():
        for k, n in enumerate(members):
            pos[n] = ((k + 0.5) * width / len(members), -d)
    for a, b in edges:
        ax.annotate(
            "",
            xy=pos[b],
            xytext=pos[a],
            arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 0.7, "shrinkA": 9, "shrinkB": 9},
        )
    for n, (x, y) in pos.items():
        ax.text(
            x,
            y,
            nodes[n].split("\\n")[0],
            ha="center",
            va="center",
            fontsize=max(5.0, style.font_size - 2),
            bbox={"boxstyle": "round,pad=0.3", "fc": "#e8f0fe", "ec": "#5b7bd5", "lw": 0.7},
        )
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-max(layers, default=0) - 0.6, 0.6)
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------------------------- compare


def _finite(rows: list[dict], metric: str) -> np.ndarray:
    v = np.array([r[metric] for r in rows], dtype=np.float64)
    return v[np.isfinite(v)]


def metric_histograms_figure(rows: list[dict], metrics: list[str], style: Style, title: str) -> Figure:
    """One histogram per metric over the compared pairs, the mean dashed (undefined and infinite
    values left out, counted in the title)."""
    ncols = min(4, len(metrics))
    nrows = math.ceil(len(metrics) / ncols)
    fig = style.figure(3.0 * ncols, 2.4 * nrows + 0.4)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        v = _finite(rows, metric)
        left = len(rows) - len(v)
        if len(v):
            ax.hist(v, bins=min(30, max(5, len(v) // 3)), color="tab:blue", alpha=0.75, edgecolor="white")
            ax.axvline(float(v.mean()), color="tab:red", ls="--", lw=1.2, label=f"mean {v.mean():.4g}")
            ax.legend(fontsize=max(5.0, style.font_size - 2))
        else:
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="gray")
        ax.set_title(metric + (f" ({left} left out)" if left else ""))
        ax.grid(alpha=0.3)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=style.font_size + 1)
    return fig


def relative_error_figure(hist: np.ndarray, mean: float, style: Style, title: str) -> Figure:
    """The per-pixel relative error pooled over every pair: a density histogram on [0, 1]."""
    fig = style.figure(6.0, 3.2)
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, len(hist) + 1)
    total = max(int(hist.sum()), 1)
    density = hist / total / np.diff(edges)
    ax.bar(edges[:-1], density, width=np.diff(edges), align="edge", color="tab:blue", alpha=0.6, lw=0)
    if np.isfinite(mean):
        ax.axvline(mean, color="tab:red", ls="--", lw=1.2, label=f"mean of the per-map means {mean:.4g}")
        ax.legend()
    ax.set_xlabel("relative error per pixel, clip(sqrt(|p - t| / (|t| + 1e-8)), 0, 1)")
    ax.set_ylabel("density")
    ax.set_title(f"{title} ({hist.sum():,} pixels)")
    ax.grid(alpha=0.3)
    return fig


def metrics_boxplot_figure(rows: list[dict], metrics: list[str], style: Style, title: str) -> Figure:
    """A box plot per metric (each on its own scale) with every pair as a dot."""
    fig = style.figure(1.9 * len(metrics) + 0.6, 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(metrics), squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes, metrics, strict=True):
        v = _finite(rows, metric)
        if len(v):
            ax.boxplot([v], tick_labels=[metric], showfliers=False, widths=0.5)
            ax.scatter(1 + rng.uniform(-0.15, 0.15, len(v)), v, s=5, alpha=0.45, color="tab:blue")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=style.font_size + 1)
    return fig


def compare_samples_figure(shown: list[dict], unit: str, style: Style, vmin: float, vmax: float) -> Figure:
    """Rows of truth | prediction | |error|, all in dB (each row dict: ``name``, ``truth``,
    ``pred`` in dB, NaN where not scored)."""
    fig = style.figure(3 * 2.3 + 0.8, 2.25 * len(shown) + 0.4)
    axes = fig.subplots(len(shown), 3, squeeze=False)
    errors = [np.abs(r["pred"] - r["truth"]) for r in shown]
    err_max = max([float(np.nanmax(e)) for e in errors if np.isfinite(e).any()] + [1.0])
    for i, (r, err) in enumerate(zip(shown, errors, strict=True)):
        im = axes[i, 0].imshow(r["truth"], cmap=style.cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        axes[i, 1].imshow(r["pred"], cmap=style.cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        eim = axes[i, 2].imshow(err, cmap=style.error_cmap, vmin=0, vmax=err_max, interpolation="nearest")
        for j, label in enumerate(("truth", "prediction", "|prediction − truth|")):
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(label)
        axes[i, 0].set_ylabel(r["name"], fontsize=max(5.0, style.font_size - 2))
        rmse = float(np.sqrt(np.nanmean(err**2))) if np.isfinite(err).any() else float("nan")
        axes[i, 2].set_xlabel(f"RMSE {rmse:.2f} dB", fontsize=max(5.0, style.font_size - 1))
    fig.colorbar(im, ax=axes[:, :2], shrink=0.8, label=unit)
    fig.colorbar(eim, ax=axes[:, 2], shrink=0.8, label="absolute error (dB)")
    return fig


def reliability_figure(calibration: dict, style: Style, title: str) -> Figure:
    """The reliability curve of the ensemble's spread (``uncertainty`` of a summary): each std bin's
    observed RMSE of the mean against its RMS predicted std, the t model's expectation
    (√(1 + 1/K) × std) dashed, and the share of pixels per bin as faint bars."""
    rel = calibration["reliability"]
    keep = [i for i, n in enumerate(rel["pixels"]) if n > 0]
    x = np.array([rel["predicted_std_db"][i] for i in keep], dtype=float)
    observed = np.array([rel["observed_rmse_db"][i] for i in keep], dtype=float)
    expected = np.array([rel["expected_rmse_db"][i] for i in keep], dtype=float)
    share = np.array([rel["pixels"][i] for i in keep], dtype=float)
    fig = style.figure(5.5, 3.4)
    ax = fig.subplots()
    twin = ax.twinx()
    width = np.maximum(0.15 * x, 0.05)
    twin.bar(x, 100 * share / max(share.sum(), 1), width=width, color="0.85")
    twin.set_ylabel("share of pixels (%)")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(x, observed, "o-", color=METHOD_COLORS["radiodiff"], label="observed RMSE of the mean")
    ax.plot(x, expected, "--", color="0.3", label=f"calibrated: std × √(1 + 1/{calibration['k']})")
    ax.set_xlabel(f"predicted std of the {calibration['k']} samples (dB, RMS per bin)")
    ax.set_ylabel("RMSE (dB)")
    ax.set_title(title)
    ax.legend(fontsize=max(5.0, style.font_size - 1))
    ax.grid(alpha=0.3)
    return fig
