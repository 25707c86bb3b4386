"""The report's results per dataset: the metrics tables (every scope, the VAE ceiling, the spread
over sampling seeds, ratios with bootstrap intervals, published numbers), the structure and
perceptual scores, quality per training cost, the sample grid, per-sample distributions, the
error by distance and line of sight, the calibration of RadioDiff's spread over its samples, and
ICASSP's per-building and per-band breakdowns. Reads the evaluation's ``summary.json`` and
``per_sample.csv``, the sampled maps, the training logs and ``benchmark.json``."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from radiodiff.core.encodings import PG_FLOOR_DB, PG_MAX_DB, PL_MAX_DB, PL_MIN_DB
from radiodiff.core.io import read_json
from radiodiff.eda.common import evenly_spaced
from radiodiff.report import figures as F
from radiodiff.report.document import Doc, fmt
from radiodiff.report.grids import icassp_grid_rows, radiomapseer_grid_rows
from radiodiff.report.inputs import read_csv
from radiodiff.report.texts import DATASETS, PUBLISHED_ICASSP, PUBLISHED_RADIOMAPSEER

METRIC_COLUMNS = ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "rmse_whole_set", "n_images", "ms_per_map")
# the structure scores (radiodiff.metrics) and, where the evaluation took them, LPIPS, FID and KID
STRUCTURE_COLUMNS = ("relative_error", "peak_distance_m", "peak_hit", "sharpness_ratio", "lpips", "fid", "kid")
HIGHER_IS_BETTER = {"ssim", "psnr", "peak_hit"}
NOT_RANKED = {"n_images", "ms_per_map", "sharpness_ratio"}  # no best: counts, time, a ratio whose ideal is 1
CEILING_VAE = {"radiomapseer": "radiomapseer", "icassp": "radio"}  # the VAE whose latents each LDM samples
FIRST_STAGE = {"radiomapseer": ("radiomapseer",), "icassp": ("building", "antenna", "radio")}  # each LDM's VAEs
SCOPE = {"radiomapseer": "all", "icassp": "valid"}  # the headline scope of each dataset's evaluation
SECOND_SCOPE = {"radiomapseer": "outdoor", "icassp": "open"}
SECOND_SCOPE_TEXT = {"outdoor": "pixels not fully covered by a building.", "open": "valid pixels off the walls."}


def dataset_section(doc: Doc, dataset: str, results: Path, root: Path, data: dict | None) -> dict:
    """The results of one dataset (``root`` and ``data``: its test data, for the sample grid);
    returns the evaluation's summary."""
    ev = results / "evaluate" / dataset
    summary = read_json(ev / "summary.json")
    per_sample = read_csv(ev / "per_sample.csv")
    samples = results / "samples" / dataset
    _intro(doc, dataset, summary, read_json(samples / "sampling.json"))
    ceiling = _ceiling(results, dataset)
    _metrics_table(doc, dataset, summary, ceiling)
    _structure_table(doc, dataset, summary)
    _seed_spread(doc, summary)
    _quality_per_cost(doc, dataset, results, summary, ceiling)
    _ratios(doc, summary)
    _scope_tables(doc, dataset, summary)
    _sample_grid(doc, dataset, root, data, samples, per_sample)
    _distributions(doc, dataset, per_sample)
    _error_profile(doc, dataset, summary)
    _uncertainty(doc, dataset, summary)
    if dataset == "icassp":
        _icassp_breakdowns(doc, summary)
    return summary


def _intro(doc: Doc, dataset: str, summary: dict, sampling: dict) -> None:
    """The heading and the test protocol in sentences."""
    protocol = summary.get("protocol", {})
    doc.heading(f"{DATASETS[dataset]}: results", 2, f"results-{dataset}")
    steps = sampling.get("methods", {}).get("radiodiff", {}).get("steps", "?")
    sentences = [
        f"Test split: {fmt(protocol.get('maps'))} maps at {protocol.get('resolution', '?')}",
        f"scale: {protocol.get('scale', '?')}",
        f"split: {protocol['split_rule']}" if "split_rule" in protocol else "",
        protocol.get("scope", ""),
        protocol.get("buildings", ""),
        f"RadioDiff samples with {steps} steps",
    ]
    doc.para(" ".join(f"{t[0].upper()}{t[1:]}." for t in sentences if t))


def _metrics_rows(summary: dict, scope: str | None = None, columns=METRIC_COLUMNS) -> tuple[list[dict], dict]:
    rows = []
    for method in F.METHOD_COLORS:
        if method not in summary:
            continue
        s = summary[method] if scope is None else summary[method].get(scope, {})
        row = {"method": F.METHOD_LABELS[method]}
        row.update({k: s.get(k) for k in columns if k in s})
        if scope is not None and "ms_per_map" in summary[method] and "ms_per_map" in columns:
            row["ms_per_map"] = summary[method]["ms_per_map"]
        rows.append(row)
    best = {}
    for col in columns:
        if col in NOT_RANKED:
            continue
        vals = [(i, r[col]) for i, r in enumerate(rows) if isinstance(r.get(col), int | float)]
        if vals:
            pick = max if col in HIGHER_IS_BETTER else min
            best[col] = pick(vals, key=lambda iv: iv[1])[0]
    return rows, best


def _ceiling(results: Path, dataset: str) -> dict:
    """The headline metrics of the first stage's test reconstruction (``ceiling_*`` of the VAE's
    ``metrics.json``), or {} for a VAE trained before they were scored."""
    metrics = read_json(results / "vae" / CEILING_VAE[dataset] / "metrics.json")
    return {k.removeprefix("ceiling_"): v for k, v in metrics.items() if k.startswith("ceiling_")}


def _metrics_table(doc: Doc, dataset: str, summary: dict, ceiling: dict) -> None:
    """The headline table (best per column in bold), the VAE ceiling as its last row, and what
    the ceiling bounds."""
    rows, best = _metrics_rows(summary)
    if ceiling:  # after `best`: the first stage's reconstruction is a bound, not a competitor
        rows.append({"method": "VAE ceiling (reconstruction)", **ceiling})
    doc.table(rows, css="metrics", best=best, html_id=f"metrics-{dataset}")
    headline = summary.get("protocol", {}).get("headline")
    if headline:
        doc.para(
            f"RadioDiff's headline: {headline['what']} (`{headline['radiodiff']}`; RadioDiff's published protocol "
            "is a single sample, the `RadioDiff` row). `RadioUNet through the VAE`: RadioUNet's maps encoded by "
            "RadioDiff's first stage and decoded from the posterior mean, the error the VAE adds to a good map."
        )
    if ceiling and isinstance(summary.get("radiodiff", {}).get("nmse"), int | float) and ceiling.get("nmse"):
        doc.para(
            f"VAE ceiling: the first-stage VAE that RadioDiff's latents come from reconstructs the same test "
            f"targets (decode of the posterior mean, scored the same way) at NMSE {fmt(ceiling['nmse'])}; RadioDiff's "
            f"NMSE is {summary['radiodiff']['nmse'] / ceiling['nmse']:.2f}× that. No diffusion model on these "
            "latents can go below the ceiling."
        )


def _structure_table(doc: Doc, dataset: str, summary: dict) -> None:
    """The structure scores on the headline scope, and LPIPS, FID and KID where they were taken."""
    rows, best = _metrics_rows(summary, columns=STRUCTURE_COLUMNS)
    if not any(len(r) > 1 for r in rows):
        return  # an evaluation from before these scores
    protocol = summary.get("protocol", {})
    n_fid = next((summary[m]["n_fid"] for m in F.METHOD_COLORS if "n_fid" in summary.get(m, {})), None)
    doc.para(
        "Structure scores on the same scope, as the Enhanced suite's comparison tool reports them: the relative "
        "error (mean of clip(√(|p − t| / (|t| + 1e-8)), 0, 1) on maps in [−1, 1]); the distance in metres between "
        "the brightest points of prediction and truth (RadioDiff's convergence check: the Tx is the brightest "
        "point) and `peak_hit`, the share of maps where they coincide; the sharpness ratio var(Laplacian(p)) / "
        "var(Laplacian(t)) (1: as sharp as the truth, below 1 smoother; not ranked). "
        + (
            f"FID and KID compare each method's {n_fid} test maps with the {n_fid} ground truths (small n biases "
            "FID upwards: compare FIDs only at equal n). "
            if n_fid
            else f"FID and KID: {protocol.get('fid_kid', 'not taken')}. "
        )
        + ("" if any("lpips" in r for r in rows) else f"LPIPS: {protocol.get('lpips', 'not taken')}.")
    )
    doc.table(rows, css="metrics", best=best, html_id=f"structure-{dataset}")


def _seed_spread(doc: Doc, summary: dict) -> None:
    spread = summary.get("radiodiff", {}).get("seed_spread")
    if spread and len(spread.get("seeds", [])) > 1:
        parts = [
            f"{k} {fmt(v['mean'])} ± {fmt(v['std'])} (range {fmt(v['min'])}–{fmt(v['max'])})"
            for k, v in spread.items()
            if k in ("nmse", "rmse_db", "ssim") and isinstance(v, dict)
        ]
        doc.para(
            f"RadioDiff under {len(spread['seeds'])} sampling seeds ({', '.join(map(str, spread['seeds']))}; the table "
            f"shows the first): mean ± standard deviation over the seeds, {'; '.join(parts)}."
        )


def _train_seconds(metrics: dict) -> float:
    """A run's training wall-seconds, resumed parts included (``seconds`` in older folders)."""
    return float(metrics.get("train_seconds") or metrics.get("seconds") or 0.0)


def learning_curves(results: Path, dataset: str, summary: dict) -> list[dict]:
    """RadioDiff's and RadioUNet's validation NMSE against training wall-seconds (RadioDiff's
    clock starts after its VAEs' training seconds) and training FLOPs (the benchmark's counted
    FLOPs per item × batch × step; the LDM's only); [] for logs without ``wall_s``."""
    bench_path = results / "benchmark.json"
    bench = read_json(bench_path).get("models", {}) if bench_path.is_file() else {}
    curves = []
    for method, kind in (("radiodiff", "ldm"), ("radiounet", "radiounet")):
        base = results / kind / dataset
        log = read_csv(base / "train_log.csv")
        if "wall_s" not in log.columns or "val/nmse" not in log.columns:
            return []
        log = log[log["val/nmse"].notna()]
        offset = 0.0
        if method == "radiodiff":
            offset = sum(_train_seconds(read_json(results / "vae" / v / "metrics.json")) for v in FIRST_STAGE[dataset])
        train = bench.get(f"{method}/{dataset}", {}).get("train", {})
        batch = read_json(base / "metrics.json").get("params", {}).get("train", {}).get("batch_size")
        flops = None
        if train.get("flops_per_step") and train.get("batch_size") and batch:
            flops = log["step"].to_numpy() * batch * train["flops_per_step"] / train["batch_size"]
        curves.append(
            {
                "method": method,
                "wall_s": log["wall_s"].to_numpy() + offset,
                "flops": flops,
                "nmse": log["val/nmse"].to_numpy(),
                "test_nmse": summary.get(method, {}).get("nmse"),
            }
        )
    return curves


def _quality_per_cost(doc: Doc, dataset: str, results: Path, summary: dict, ceiling: dict) -> None:
    """The learning curves against training seconds and FLOPs, where the logs have ``wall_s``."""
    curves = learning_curves(results, dataset, summary)
    if not curves:
        return
    title = DATASETS[dataset]
    heading = f"{title}: quality per training cost"
    doc.figure(
        partial(F.learning_curves_figure, curves, ceiling.get("nmse"), doc.style, heading),
        f"learning_curves_{dataset}",
        f"{title}: validation NMSE at each evaluation against training wall-seconds (RadioDiff's clock "
        "starts after its VAEs' training seconds) and training FLOPs (the benchmark's counted FLOPs per item "
        "× batch × step; RadioDiff's exclude its VAEs), with each method's test NMSE (star) and the VAE's "
        "test reconstruction, the ceiling (dashed).",
    )


def _ratio_rows(ratios: dict) -> list[dict]:
    rows = []
    for pair, metrics in ratios.items():
        if not isinstance(metrics, dict) or "/" not in pair:
            continue
        a, b = pair.split("/")
        row = {"ratio": f"{F.METHOD_LABELS.get(a, a)} / {F.METHOD_LABELS.get(b, b)}"}
        for k, r in metrics.items():
            lo, hi = r["ci95"]
            row[k] = f"{fmt(r['ratio'])} [{fmt(lo)}, {fmt(hi)}]" if r["ratio"] is not None else "n/a"
        rows.append(row)
    return rows


def _ratios(doc: Doc, summary: dict) -> None:
    ratios = _ratio_rows(summary.get("ratios", {}))
    if ratios:
        doc.para(
            "Ratios between methods (mean over the test images of the first method / of the second; below 1 the "
            f"first is better), each with a paired bootstrap 95 % interval over the test images "
            f"({summary['ratios'].get('resamples', '?')} resamples, scope `{summary['ratios'].get('scope', '?')}`):"
        )
        doc.table(ratios)


def _scope_tables(doc: Doc, dataset: str, summary: dict) -> None:
    """The same table in the second scope and in the paper's, then the published numbers."""
    second = SECOND_SCOPE[dataset]
    rows2, best2 = _metrics_rows(summary, second)
    if any(len(r) > 2 for r in rows2):
        doc.para(f"Scope `{second}`: " + SECOND_SCOPE_TEXT[second])
        doc.table(rows2, css="metrics", best=best2)
    rows3, best3 = _metrics_rows(summary, "paper")
    if any(len(r) > 2 for r in rows3):
        doc.para(
            "Scope `paper` (RadioDiff's protocol): every pixel of each method's raw float prediction, "
            "buildings included, nothing zeroed and no PNG rounding."
        )
        doc.table(rows3, css="metrics", best=best3, html_id=f"metrics-{dataset}-paper")
    if dataset == "radiomapseer":
        doc.para("Published numbers for context (256×256 real DPM maps; protocols differ between papers):")
        doc.table(list(PUBLISHED_RADIOMAPSEER), columns=("method", "nmse", "rmse", "ssim", "psnr"))
    else:
        doc.para(PUBLISHED_ICASSP)


def _sample_grid(
    doc: Doc, dataset: str, root: Path, data: dict | None, samples: Path, per_sample: pd.DataFrame
) -> None:
    """Test samples evenly spaced over the split: condition, truth, both methods, the error."""
    title = DATASETS[dataset]
    names = per_sample.loc[(per_sample["method"] == "radiodiff") & (per_sample["scope"] == SCOPE[dataset]), "name"]
    chosen = evenly_spaced(sorted(names), doc.style.grid_samples)
    if dataset == "radiomapseer":
        grid = radiomapseer_grid_rows(root, data, samples, chosen)
        unit, vmin, vmax = "path gain (dB)", PG_FLOOR_DB, PG_MAX_DB
    else:
        grid = icassp_grid_rows(root, samples, chosen)
        unit, vmin, vmax = "path loss (dB)", PL_MIN_DB, PL_MAX_DB
    spread = bool(grid) and all("uncertainty" in r for r in grid)
    doc.figure(
        partial(F.sample_grid_figure, grid, unit, doc.style, vmin, vmax),
        f"samples_{dataset}",
        f"{title}: {len(grid)} test samples evenly spaced over the split. Condition (the Tx is the red star), "
        "ground truth, RadioDiff, RadioUNet, and RadioDiff's absolute error"
        + (", then the per-pixel standard deviation of RadioDiff's samples (its uncertainty)" if spread else "")
        + ", all in dB"
        + (" (padded pixels blank)." if dataset == "icassp" else "."),
    )


def _distributions(doc: Doc, dataset: str, per_sample: pd.DataFrame) -> None:
    title = DATASETS[dataset]
    metrics = ["nmse", "rmse", "ssim", "psnr"] if dataset == "radiomapseer" else ["rmse_db", "nmse", "ssim", "psnr"]
    metrics = [m for m in metrics if m in per_sample.columns]
    doc.figure(
        partial(F.distribution_figure, per_sample, SCOPE[dataset], metrics, doc.style, title),
        f"per_sample_{dataset}",
        f"{title}: per-sample metric distributions on the test split (`per_sample.csv`).",
    )


def _error_profile(doc: Doc, dataset: str, summary: dict) -> None:
    """RMSE by distance from the Tx and in versus out of line of sight, where the evaluation
    measured them (``error_profile`` of the summary)."""
    profile = summary.get("error_profile")
    if not profile:
        return
    title = DATASETS[dataset]
    doc.heading(f"{title}: where the error is", 3, f"error-profile-{dataset}")
    doc.figure(
        partial(F.error_profile_figure, profile, doc.style, f"{title}: RMSE by distance from the Tx"),
        f"error_profile_{dataset}",
        f"{title}: RMSE in dB pooled over the outdoor pixels of the test split, by distance from the Tx "
        "(grey bars: the share of pixels in each bin).",
    )
    sight = profile["line_of_sight"]
    doc.para(
        "In line of sight (the straight segment from the Tx crosses no building) versus not: RMSE in dB "
        f"pooled over the outdoor pixels ({fmt(sight['pixels']['los'])} in sight, "
        f"{fmt(sight['pixels']['nlos'])} not)."
    )
    doc.table(
        [
            {"method": F.METHOD_LABELS[m], "los rmse_db": v["los"], "nlos rmse_db": v["nlos"]}
            for m, v in sight["rmse_db"].items()
            if m in F.METHOD_LABELS
        ]
    )


def _uncertainty(doc: Doc, dataset: str, summary: dict) -> None:
    """How well the spread of RadioDiff's samples predicts the error of their mean (the
    ``uncertainty`` of the summary): a table beside the methods that have no spread, and the
    reliability curve; or why there is none."""
    title = DATASETS[dataset]
    calib = summary.get("uncertainty")
    doc.heading(f"{title}: uncertainty", 3, f"uncertainty-{dataset}")
    if not calib:
        note = summary.get("protocol", {}).get("uncertainty", "none: the sample stage drew one sample per map")
        doc.para(f"No per-pixel uncertainty: {note}.")
        return
    k, cover, rank = calib["k"], calib["coverage"], calib["rank_correlation"]
    t = cover["t_interval"]
    doc.para(
        f"RadioDiff draws {k} samples per test map; their per-pixel standard deviation (ddof 1) is its uncertainty "
        f"and their mean the map scored (`{calib['method']}`). On the `{calib['scope']}` pixels "
        f"({fmt(calib['pixels'])}): if the truth were one more draw, (truth − mean) / (std·√(1 + 1/{k})) would follow "
        f"Student's t with {k - 1} degrees of freedom, so mean ± {fmt(t['t'])}·std·√(1 + 1/{k}) would hold "
        f"{t['level']:.0%} of the truth pixels. Spearman's ρ ranks the test images by their RMS std and by their "
        "RMSE."
    )
    rows = [
        {
            "method": f"RadioDiff (mean of {k})",
            "spread": f"std of its {k} samples",
            "share within ±2σ": cover["within_2sigma"],
            f"share within the t interval ({t['level']:.0%})": t["share"],
            "Spearman ρ (std, RMSE)": rank["spearman"],
            "images": rank["n_images"],
        }
    ]
    rows += [{"method": F.METHOD_LABELS[m], "spread": why} for m, why in calib["none"].items()]
    doc.table(rows)
    doc.figure(
        partial(F.reliability_figure, calib, doc.style, f"{title}: reliability of RadioDiff's spread"),
        f"reliability_{dataset}",
        f"{title}: the RMSE of RadioDiff's {k}-sample mean against the predicted std, pixels binned by their std "
        f"(dB); dashed, what a calibrated spread gives (std × √(1 + 1/{k})); grey bars, the share of pixels per bin.",
    )


def _icassp_breakdowns(doc: Doc, summary: dict) -> None:
    """ICASSP's test metrics per building and per band: a table and the challenge metric's bars."""
    for key, label in (("per_building", "building"), ("per_band", "band")):
        doc.heading(f"ICASSP per {label}", 3, f"icassp-{label}")
        table = []
        for method in F.METHOD_COLORS:
            for group, s in sorted(summary.get(method, {}).get(key, {}).items(), key=lambda kv: F._natural(kv[0])):
                table.append({label: group, "method": F.METHOD_LABELS[method], **s})
        doc.table(table, columns=(label, "method", "rmse_db", "nmse", "rmse", "ssim", "psnr", "n_images"))
        doc.figure(
            partial(F.breakdown_figure, summary, key, "rmse_db", doc.style, f"RMSE (dB) per {label}"),
            f"icassp_{key}",
            f"ICASSP test RMSE in dB per {label} and method (the challenge metric).",
        )
