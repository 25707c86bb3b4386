"""The report's sections: results per dataset (metrics tables, sample grids, distributions,
ICASSP breakdowns), training curves per model, the EDA figures, the benchmark and provenance.
Each reads finished outputs only and writes into a :class:`~radiodiff.report.document.Doc`."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context

from radiodiff.core.encodings import PG_FLOOR_DB, PG_MAX_DB, PL_MAX_DB, PL_MIN_DB, unit_to_gain_db, unit_to_pl_db
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json, read_png
from radiodiff.dag.stages import STAGES
from radiodiff.data.icassp import ICASSPCropDataset
from radiodiff.data.items import radiomapseer_dataset
from radiodiff.eda.common import evenly_spaced
from radiodiff.evaluate.maps import read_maps
from radiodiff.metrics import zero_buildings
from radiodiff.report import figures as F
from radiodiff.report.document import Doc, fmt
from radiodiff.report.texts import DATASETS, MODELS, PUBLISHED_ICASSP, PUBLISHED_RADIOMAPSEER
from radiodiff.train.previews import read_index


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV; a missing, empty or corrupt file raises :class:`DataError` naming it."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None


PACKAGES = (
    "radiodiff",
    "torch",
    "torchvision",
    "accelerate",
    "timm",
    "lpips",
    "torchmetrics",
    "numpy",
    "opencv-python-headless",
    "matplotlib",
    "pandas",
    "snakemake",
    "dvc",
)
METRIC_COLUMNS = ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "rmse_whole_set", "n_images", "ms_per_map")
HIGHER_IS_BETTER = {"ssim", "psnr"}


def _metrics_rows(summary: dict, scope: str | None = None) -> tuple[list[dict], dict]:
    rows = []
    for method in F.METHOD_COLORS:
        if method not in summary:
            continue
        s = summary[method] if scope is None else summary[method].get(scope, {})
        row = {"method": F.METHOD_LABELS[method]}
        row.update({k: s.get(k) for k in METRIC_COLUMNS if k in s})
        if scope is not None and "ms_per_map" in summary[method]:
            row["ms_per_map"] = summary[method]["ms_per_map"]
        rows.append(row)
    best = {}
    for col in METRIC_COLUMNS:
        if col in ("n_images", "ms_per_map"):
            continue
        vals = [(i, r[col]) for i, r in enumerate(rows) if isinstance(r.get(col), int | float)]
        if vals:
            pick = max if col in HIGHER_IS_BETTER else min
            best[col] = pick(vals, key=lambda iv: iv[1])[0]
    return rows, best


def training_section(doc: Doc, results: Path) -> list[dict]:
    doc.heading("Training", 2, "training")
    overview = []
    runs = []
    for kind, name, title in MODELS:
        base = results / kind / name
        metrics = read_json(base / "metrics.json")
        log = read_csv(base / "train_log.csv")
        if "step" not in log.columns:
            raise DataError(f"{base / 'train_log.csv'}: no 'step' column")
        runs.append((kind, name, title, metrics, log))
        row = {"model": title, "steps": metrics.get("steps"), "parameters": metrics.get("parameters")}
        for k in ("seconds", "steps_per_s", "peak_memory_mb", "skipped_nonfinite", "device"):
            row[k] = metrics.get(k)
        row["resumed from"] = metrics.get("resumed_from")
        row["validation"] = ", ".join(
            f"{k} {fmt(v)}" for k, v in metrics.items() if k in ("nmse", "rmse", "ssim", "psnr", "rmse_db")
        )
        overview.append(row)
    doc.para(
        "Every model trains on the shared engine (Accelerate, AdamW with RadioDiff's power LR decay, EMA, "
        "NaN/Inf guard). Validation metrics are the EMA model's on the validation split, from each `metrics.json`."
    )
    doc.table(overview)
    for kind, name, title, metrics, log in runs:
        doc.heading(title, 3, f"train-{kind}-{name}")
        disc_start = None
        if kind == "vae":
            disc_start = int(metrics.get("params", {}).get("loss", {}).get("disc_start", 0)) or None
        _, constant = F.loss_terms(log)
        with rc_context(doc.style.rc()):
            doc.figure(
                F.training_terms_figure(log, title, doc.style, disc_start),
                f"train_{kind}_{name}_terms",
                f"{title}: every varying loss term and validation metric on its own axis"
                + (f" (smoothed over {doc.style.smooth} log rows; raw values faint)" if doc.style.smooth > 1 else "")
                + (f". Constant over the run: {', '.join(constant)}." if constant else "."),
            )
            doc.figure(
                F.training_overview_figure(log, title, doc.style, disc_start),
                f"train_{kind}_{name}_overview",
                f"{title}: terms min-max normalized on one axis, learning rate, gradient norm, "
                "skipped non-finite steps.",
            )
        if kind == "ldm":
            previews_section(doc, results / kind / name, title)
        if disc_start is not None:
            doc.para(
                f"Loss phases: steps below `disc_start` = {disc_start} train the autoencoder alone "
                "(reconstruction + KL); from there the patch discriminator's adversarial term joins (VAE-GAN)."
            )
            doc.table(F.phase_table(log, disc_start))
    return overview


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
    with rc_context(doc.style.rc()):
        doc.figure(
            F.preview_progression_figure(picks, title, doc.style),
            f"previews_{base.parent.name}_{base.name}",
            f"{title}: the EMA model's samples of the first {len(index[0]['rmse_db'])} validation items at "
            f"{len(picks)} of its {len(index)} previews (rows: items; columns: condition, ground truth, prediction, "
            "|prediction − truth| on 0–20 dB). RMSE in dB over the items' scored pixels.",
        )


def _rms_grid_rows(root: Path, data: dict, samples: Path, names: list[str]) -> list[dict]:
    maps = sorted({int(n.split("_")[0]) for n in names})
    ds = radiomapseer_dataset(root, "test", data, maps=maps)
    index = {f"{s.map_id}_{s.tx}": i for i, s in enumerate(ds.samples)}

    def db(u):
        return unit_to_gain_db(u, data["gain_threshold"])

    rows = []
    for name in names:
        if name not in index:
            raise DataError(f"{root}: test sample {name} from the evaluation is not in this dataset")
        item = ds[index[name]]
        row = {"name": name, "condition": item["buildings"][0].numpy(), "tx": tuple(item["tx"])}
        row["truth"] = db(((item["target"][0] + 1) / 2).clamp(0, 1).numpy())
        for method in ("radiodiff", "radiounet"):
            pred = zero_buildings(read_maps(samples / method, [name], "radiomapseer"), item["buildings"][None])
            row[method] = db(pred[0, 0].numpy())
        rows.append(row)
    return rows


def _icassp_grid_rows(crops: Path, samples: Path, names: list[str]) -> list[dict]:
    ds = ICASSPCropDataset(crops, "test")
    index = {r["name"]: i for i, r in enumerate(ds.rows)}
    rows = []
    for name in names:
        if name not in index:
            raise DataError(f"{crops}: test crop {name} from the evaluation is not in this folder")
        item = ds[index[name]]
        valid = item["valid"][0].numpy()
        unit = ((item["target"][0] + 1) / 2).numpy()
        row = {
            "name": name,
            "condition": ((item["input"].numpy().transpose(1, 2, 0) + 1) / 2).clip(0, 1),
            "tx": tuple(int(v) for v in item["tx"]),
            "truth": np.where(valid, unit_to_pl_db(unit), np.nan),
        }
        for method in ("radiodiff", "radiounet"):
            pl = read_png(samples / method / f"{name}.png", "L").astype(np.float64)
            row[method] = np.where(valid, pl, np.nan)
        rows.append(row)
    return rows


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


CEILING_VAE = {"radiomapseer": "radiomapseer", "icassp": "radio"}  # the VAE whose latents each LDM samples
FIRST_STAGE = {"radiomapseer": ("radiomapseer",), "icassp": ("building", "antenna", "radio")}  # each LDM's VAEs


def _train_seconds(metrics: dict) -> float:
    """A run's training wall-seconds, resumed parts included (``seconds`` in older folders)."""
    return float(metrics.get("train_seconds") or metrics.get("seconds") or 0.0)


def _learning_curves(results: Path, dataset: str, summary: dict) -> list[dict]:
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


def _ceiling(results: Path, dataset: str) -> dict:
    """The headline metrics of the first stage's test reconstruction (``ceiling_*`` of the VAE's
    ``metrics.json``), or {} for a VAE trained before they were scored."""
    metrics = read_json(results / "vae" / CEILING_VAE[dataset] / "metrics.json")
    return {k.removeprefix("ceiling_"): v for k, v in metrics.items() if k.startswith("ceiling_")}


def dataset_section(doc: Doc, dataset: str, results: Path, root: Path, data: dict | None) -> dict:
    title = DATASETS[dataset]
    ev = results / "evaluate" / dataset
    summary = read_json(ev / "summary.json")
    per_sample = read_csv(ev / "per_sample.csv")
    samples = results / "samples" / dataset
    sampling = read_json(samples / "sampling.json")
    protocol = summary.get("protocol", {})
    doc.heading(f"{title}: results", 2, f"results-{dataset}")
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
    rows, best = _metrics_rows(summary)
    ceiling = _ceiling(results, dataset)
    if ceiling:  # after `best`: the first stage's reconstruction is a bound, not a competitor
        rows.append({"method": "VAE ceiling (reconstruction)", **ceiling})
    doc.table(rows, css="metrics", best=best, html_id=f"metrics-{dataset}")
    if ceiling and isinstance(summary.get("radiodiff", {}).get("nmse"), int | float) and ceiling.get("nmse"):
        doc.para(
            f"VAE ceiling: the first-stage VAE that RadioDiff's latents come from reconstructs the same test "
            f"targets (decode of the posterior mean, scored the same way) at NMSE {fmt(ceiling['nmse'])}; RadioDiff's "
            f"NMSE is {summary['radiodiff']['nmse'] / ceiling['nmse']:.2f}× that. No diffusion model on these "
            "latents can go below the ceiling."
        )
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
    curves = _learning_curves(results, dataset, summary)
    if curves:
        with rc_context(doc.style.rc()):
            doc.figure(
                F.learning_curves_figure(curves, ceiling.get("nmse"), doc.style, f"{title}: quality per training cost"),
                f"learning_curves_{dataset}",
                f"{title}: validation NMSE at each evaluation against training wall-seconds (RadioDiff's clock "
                "starts after its VAEs' training seconds) and training FLOPs (the benchmark's counted FLOPs per item "
                "× batch × step; RadioDiff's exclude its VAEs), with each method's test NMSE (star) and the VAE's "
                "test reconstruction, the ceiling (dashed).",
            )
    ratios = _ratio_rows(summary.get("ratios", {}))
    if ratios:
        doc.para(
            "Ratios between methods (mean over the test images of the first method / of the second; below 1 the "
            f"first is better), each with a paired bootstrap 95 % interval over the test images "
            f"({summary['ratios'].get('resamples', '?')} resamples, scope `{summary['ratios'].get('scope', '?')}`):"
        )
        doc.table(ratios)
    second = "outdoor" if dataset == "radiomapseer" else "open"
    rows2, best2 = _metrics_rows(summary, second)
    if any(len(r) > 2 for r in rows2):
        doc.para(
            f"Scope `{second}`: "
            + ("pixels not fully covered by a building." if second == "outdoor" else "valid pixels off the walls.")
        )
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

    scope = "all" if dataset == "radiomapseer" else "valid"
    names = sorted(per_sample.loc[(per_sample["method"] == "radiodiff") & (per_sample["scope"] == scope), "name"])
    chosen = evenly_spaced(names, doc.style.grid_samples)
    if dataset == "radiomapseer":
        grid = _rms_grid_rows(root, data, samples, chosen)
        unit, vmin, vmax = "path gain (dB)", PG_FLOOR_DB, PG_MAX_DB
        metrics = ["nmse", "rmse", "ssim", "psnr"]
    else:
        grid = _icassp_grid_rows(root, samples, chosen)
        unit, vmin, vmax = "path loss (dB)", PL_MIN_DB, PL_MAX_DB
        metrics = ["rmse_db", "nmse", "ssim", "psnr"]
    with rc_context(doc.style.rc()):
        doc.figure(
            F.sample_grid_figure(grid, unit, doc.style, vmin, vmax),
            f"samples_{dataset}",
            f"{title}: {len(grid)} test samples evenly spaced over the split. Condition (the Tx is the red star), "
            "ground truth, RadioDiff, RadioUNet, and RadioDiff's absolute error, all in dB"
            + (" (padded pixels blank)." if dataset == "icassp" else "."),
        )
        metrics = [m for m in metrics if m in per_sample.columns]
        doc.figure(
            F.distribution_figure(per_sample, scope, metrics, doc.style, title),
            f"per_sample_{dataset}",
            f"{title}: per-sample metric distributions on the test split (`per_sample.csv`).",
        )
        profile = summary.get("error_profile")
        if profile:
            doc.heading(f"{title}: where the error is", 3, f"error-profile-{dataset}")
            doc.figure(
                F.error_profile_figure(profile, doc.style, f"{title}: RMSE by distance from the Tx"),
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
        if dataset == "icassp":
            for key, label in (("per_building", "building"), ("per_band", "band")):
                doc.heading(f"ICASSP per {label}", 3, f"icassp-{label}")
                table = []
                for method in F.METHOD_COLORS:
                    for group, s in sorted(
                        summary.get(method, {}).get(key, {}).items(), key=lambda kv: F._natural(kv[0])
                    ):
                        table.append({label: group, "method": F.METHOD_LABELS[method], **s})
                doc.table(table, columns=(label, "method", "rmse_db", "nmse", "rmse", "ssim", "psnr", "n_images"))
                doc.figure(
                    F.breakdown_figure(summary, key, "rmse_db", doc.style, f"RMSE (dB) per {label}"),
                    f"icassp_{key}",
                    f"ICASSP test RMSE in dB per {label} and method (the challenge metric).",
                )
    return summary


def eda_section(doc: Doc, eda_dir: Path) -> None:
    eda = read_json(eda_dir / "eda.json")
    doc.heading("Exploratory data analysis", 2, "eda")
    rms, ica = eda.get("radiomapseer", {}), eda.get("icassp", {})
    doc.para(
        f"RadioMapSeer: {fmt(rms.get('maps'))} maps, {fmt(rms.get('samples'))} (map, Tx) samples. "
        f"ICASSP: {fmt(ica.get('buildings'))} buildings, {fmt(ica.get('samples'))} samples. "
        "Figures from `results/eda/`."
    )
    for name in eda.get("figures", []):
        src = eda_dir / name
        if not src.is_file():
            raise DataError(f"{src}: listed in eda.json but missing (re-run the eda stage)")
        stem = Path(name).stem
        doc.image_file(src, f"eda_{stem}", stem.replace("_", " "))


def _giga(v):
    """``v`` in units of 10⁹ (GFLOP, GFLOP/s), or None where a benchmark did not record it."""
    return None if v is None else v / 1e9


def _percent(v):
    return None if v is None else 100 * v


def _peak_text(bench: dict) -> str:
    """The device peak(s) of ``benchmark.json`` in words, or "" for one written before they were measured."""
    peaks = [bench[k] for k in ("device_peak_flops", "device_peak_flops_bfloat16") if bench.get(k)]
    if not peaks:
        return ""
    measured = ", ".join(f"{fmt(_giga(p['flop_per_s']))} GFLOP/s in {p['dtype']}" for p in peaks)
    return (
        f" Measured peak: {measured} (the fastest of a few {peaks[0]['n']}×{peaks[0]['n']} matmuls); "
        "% of peak: training against the float32 peak (it runs in float32), sampling against the peak of "
        f"its precision ({bench.get('sample_precision', 'fp32')}). FLOPs count matrix products "
        "and convolutions only (2 per multiply-accumulate), so achieved GFLOP/s is a lower bound."
    )


def benchmark_section(doc: Doc, bench: dict) -> None:
    """The benchmark table per model (training speed, memory, FLOPs and their share of the device
    peak, sampling ms per map) and, where counted, FLOPs per sampled map; an older ``benchmark.json``
    without FLOPs renders its columns as "–"."""
    doc.heading("Benchmark", 2, "benchmark")
    doc.para(
        f"Device: {bench.get('device', '?')}. Timed training steps (random inputs of the model's shapes) and "
        "sampling per map; peak memory is the device's peak (CUDA) or the process RSS (CPU), a bound."
        + _peak_text(bench)
    )
    rows, sampling = [], []
    for model, b in bench.get("models", {}).items():
        train = b.get("train", {})
        row = {"model": model}
        row.update({k: train.get(k) for k in ("steps_per_s", "ms_per_step", "peak_memory_mb", "parameters")})
        row["GFLOP/step"] = _giga(train.get("flops_per_step"))
        row["GFLOP/s"] = _giga(train.get("flop_per_s"))
        row["% of peak"] = _percent(train.get("fraction_of_peak"))
        sample = b.get("sample_ms_per_map")
        flops = b.get("sample_flops")
        if isinstance(sample, dict):
            row.update({f"sample ms/map, N={k}": v for k, v in sample.items()})
            per_n = {k: (ms, (flops or {}).get(k)) for k, ms in sample.items()}
        else:
            row["sample ms/map"] = sample
            per_n = {None: (sample, flops)}
        rows.append(row)
        for n, (ms, f) in per_n.items():
            if f:
                sampling.append(
                    {
                        "model": model,
                        "sampler steps": n,
                        "ms/map": ms,
                        "GFLOP/map": _giga(f.get("flops_per_map")),
                        "GFLOP/s": _giga(f.get("flop_per_s")),
                        "% of peak": _percent(f.get("fraction_of_peak")),
                    }
                )
    for dataset, b in (bench.get("physics") or {}).items():
        ms = b.get("sample_ms_per_map") if isinstance(b, dict) else b
        rows.append({"model": f"physics/{dataset}", "sample ms/map": ms})
    doc.table(rows)
    if sampling:
        doc.para("FLOPs per sampled map (one sampling batch counted, divided by its maps) and the rate achieved:")
        doc.table(sampling)


def provenance_rows(params: dict, validation: dict) -> list[dict]:
    rows = []
    for dataset, title in DATASETS.items():
        root = params["data"][dataset]["root"]
        synthetic = Path(root) == Path(STAGES[f"synthesize_{dataset}"].outs[0].path)
        synth = params.get(f"synthesize_{dataset}", {})
        report = validation.get(dataset, {})
        rows.append(
            {
                "dataset": title,
                "source": "synthetic (radiodiff synthesize)" if synthetic else "user-supplied folder (real data)",
                "folder": root,
                "seed": synth.get("seed") if synthetic else "–",
                "validated": report.get("ok"),
                "counts": ", ".join(f"{k} {v}" for k, v in report.get("counts", {}).items()),
                "split seed": params["data"][dataset].get("split", {}).get("seed"),
            }
        )
    return rows


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    dot = shutil.which("dot")
    out["graphviz (dot)"] = "installed" if dot else "not installed"
    return out


FULL_METHODS = {
    "radiodiff": "RadioDiff",
    "radiodiff_independent": "RadioDiff (independent windows)",
    "radiodiff_joint": "RadioDiff (joint windows)",
    "radiounet": "RadioUNet",
    "physics": "physics",
}


def whole_building_section(doc: Doc, results: Path, arranged: Path) -> dict:
    """ICASSP on whole test buildings (``evaluate_icassp_full``): the challenge's weighted score
    per method beside the published winners, the seam errors, and a grid of whole buildings."""
    summary = read_json(results / "evaluate/icassp_full/summary.json")
    samples = results / "samples/icassp_full"
    protocol = summary.get("protocol", {})
    methods = [m for m in FULL_METHODS if m in summary]
    doc.heading("ICASSP 2025: whole buildings (the challenge's score)", 2, "results-icassp-full")
    doc.para(
        f"{fmt(protocol.get('maps'))} test maps of buildings {protocol.get('buildings')} at their own sizes "
        f"({protocol.get('sizes_px')} px, W×H), predicted by sliding windows at each model's resolution and scored "
        f"as the challenge scores: {protocol.get('score', '')}. Scope: {protocol.get('scope', '')}. "
        f"`RadioDiff` samples in `{summary.get('radiodiff', {}).get('seams', {}).get('mode', '?')}` windows."
    )
    rows = []
    for m in methods:
        s = summary[m]
        row = {"method": FULL_METHODS[m], "weighted_rmse_db": s["weighted_rmse_db"]}
        row |= {f"{t} rmse_db": s["tasks"][t]["rmse_db"] for t in ("T1", "T2", "T3")}
        row["ms_per_map"] = s.get("ms_per_map")
        rows.append(row)
    lowest = min((r["weighted_rmse_db"] for r in rows if r["weighted_rmse_db"] is not None), default=None)
    doc.table(rows, css="metrics", best={"weighted_rmse_db": lowest}, html_id="metrics-icassp-full")
    doc.para(
        "Published challenge winners (weighted RMSE dB on the real challenge data; **not comparable** while "
        "these data are synthetic): "
        + ", ".join(f"{k} {v}" for k, v in protocol.get("published_winners_weighted_rmse_db", {}).items())
        + "."
    )
    seams = [{"method": FULL_METHODS[m], **summary[m]["seams"]} for m in methods if "seams" in summary[m]]
    if seams:
        doc.para(
            f"Seams: {protocol.get('seams', '')}. A ratio above 1 means pixels where windows meet are predicted "
            "worse than the rest."
        )
        doc.table(seams, columns=("method", "mode", "border_rmse_db", "interior_rmse_db", "ratio"))
    names = sorted({r["name"] for r in read_csv(results / "evaluate/icassp_full/per_sample.csv").to_dict("records")})
    chosen = evenly_spaced(names, min(doc.style.grid_samples, 3))
    grid = []
    for name in chosen:
        rgb = read_png(arranged / "inputs" / f"{name}.png", "RGB")[..., :3]
        row = {
            "name": name,
            "condition": rgb.astype(np.float64) / 255.0,
            "tx": None,
            "truth": read_png(arranged / "targets" / f"{name}.png", "L").astype(np.float64),
        }
        for m in methods:
            row[m] = read_png(samples / m / f"{name}.png", "L").astype(np.float64)
        grid.append(row)
    with rc_context(doc.style.rc()):
        doc.figure(
            F.sample_grid_figure(
                grid, "path loss (dB)", doc.style, PL_MIN_DB, PL_MAX_DB, {m: FULL_METHODS[m] for m in methods}
            ),
            "samples_icassp_full",
            f"ICASSP whole test buildings: {len(grid)} maps evenly spaced over the test samples. Arranged input "
            "(reflectance, transmittance, FSPL − G as RGB), ground truth, each method's challenge PNG, and "
            "RadioDiff's absolute error, in dB.",
        )
    return summary
