"""The report stage: one self-contained HTML page and a Markdown twin, from finished outputs.

It reads only what earlier stages wrote (training logs and ``metrics.json`` files, sampled maps,
evaluation summaries and per-sample tables, EDA figures, ``benchmark.json``, the validation
reports) plus the few ground-truth maps shown in the sample grids; it never trains or samples.
``index.html`` embeds every figure as a data URI and carries its own CSS, so it opens from disk
with no server and no network; ``report.md`` links the same figures under ``figures/``.

Figure style lives in params (``report.*``), so editing it re-runs this stage alone.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib import rc_context
from matplotlib.figure import Figure

from radiodiff.core.errors import DataError
from radiodiff.core.io import atomic_dir, read_json, read_png
from radiodiff.eda.analysis import evenly_spaced
from radiodiff.report import figures as F

MODELS = (
    ("vae", "radiomapseer", "RadioMapSeer radio VAE"),
    ("vae", "building", "ICASSP building VAE"),
    ("vae", "antenna", "ICASSP antenna VAE"),
    ("vae", "radio", "ICASSP radio VAE"),
    ("ldm", "radiomapseer", "RadioDiff LDM, RadioMapSeer"),
    ("ldm", "icassp", "RadioDiff LDM, ICASSP"),
    ("radiounet", "radiomapseer", "RadioUNet baseline, RadioMapSeer"),
    ("radiounet", "icassp", "RadioUNet baseline, ICASSP"),
)
DATASETS = {"radiomapseer": "RadioMapSeer", "icassp": "ICASSP 2025 (indoor)"}
DEFAULT_ROOTS = {"radiomapseer": "data/raw/radiomapseer", "icassp": "data/raw/icassp"}
METRIC_COLUMNS = ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "rmse_whole_set", "n_images", "ms_per_map")
HIGHER_IS_BETTER = {"ssim", "psnr"}
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

# Published RadioMapSeer numbers (REFERENCE §4): 256×256 real DPM maps; the protocols differ
# between papers, so they are context, not a like-for-like comparison.
PUBLISHED_RADIOMAPSEER = (
    {"method": "RadioUNet (published)", "nmse": 0.0074, "rmse": 0.0244, "ssim": 0.959, "psnr": 32.0},
    {"method": "RME-GAN (published)", "nmse": 0.0115, "rmse": 0.0303, "ssim": 0.932},
    {"method": "RadioDiff (published)", "nmse": 0.0049, "rmse": 0.0190, "ssim": 0.969, "psnr": 35.1},
)
PUBLISHED_ICASSP = (
    "Challenge winners, weighted RMSE over tasks 1–3 (real data): SIP2Net 9.41 dB, IPP-Net 9.50 dB, TerRaIn 10.32 dB."
)

# Where radiodiff departs from the paper and the original code, and why.
DEPARTURES = (
    (
        "Data",
        "RadioMapSeer (DPM/IRT ray tracing) and the ICASSP 2025 challenge data",
        "physics-based synthetic stand-ins in the same layouts; real roots are a param",
        "no network or dataset download at run time; `data.*.root` points at real data",
    ),
    (
        "Resolution (quick scale)",
        "256×256 maps, latent 3×64×64",
        "64×64 maps, latent 16×16 (paper preset: 256×256)",
        "the whole DAG must fit 30 min on a 2-core CPU",
    ),
    (
        "Training length (quick)",
        "VAE 150 k steps, LDM 50 k steps",
        "hundreds to a few thousand steps (paper preset: as published)",
        "CPU budget; curves show what is left on the table",
    ),
    (
        "Swin condition encoder",
        "Swin-B, ImageNet-pretrained",
        "timm Swin sized from params, trained from scratch unless a local checkpoint is configured",
        "no pretrained weights can be downloaded here; random weights are never passed off as pretrained",
    ),
    (
        "Third condition channel",
        "[buildings, Tx, buildings] (static)",
        "static, dynamic (cars) or a log-distance physics prior; quick/ci use the prior, paper keeps static",
        "the prior helps a small, briefly trained model most",
    ),
    (
        "Latent scale factor",
        "fixed 0.3",
        "`auto` = 1 / std of the training posterior samples (a number overrides)",
        "the VAEs here are new, so the right scale is measured, not assumed",
    ),
    (
        "U-Net details",
        "strided/heavy downsampling convs, 7×7 stem, 3×3 AFT conv, BatchNorm projections (~137 M without the backbone)",
        "space-to-depth + 1×1 downsampling, LayerNorm before the Swin projections "
        "(paper config: 123 M outside the Swin)",
        "written from the paper's description, not from its code",
    ),
    (
        "PSNR / SSIM",
        "torchmetrics without `data_range` (range inferred from each image)",
        "data range 1, stated in every summary",
        "current torchmetrics requires the range; inferring it inflates PSNR",
    ),
    (
        "Scoring",
        "full-resolution maps",
        "the model's resolution; known building pixels set to 0 in every method's output; outdoor / open scopes too",
        "buildings are an input, so they are not a prediction",
    ),
    (
        "RadioUNet baseline",
        "two cascaded U-Nets (RadioUNet's W-Net) trained in two phases",
        "one supervised U-Net, MSE, same inputs and split as RadioDiff",
        "a like-for-like supervised baseline within the same budget",
    ),
    (
        "Physics baselines",
        "(none in RadioDiff's tables)",
        "log-distance path gain with an exponent fitted on the training split; "
        "ICASSP FSPL minus the antenna gain, no walls",
        "a no-training floor every learned model must beat",
    ),
)


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV; a missing, empty or corrupt file raises :class:`DataError` naming it."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None


# --------------------------------------------------------------------------------------------- document


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "–"
        a = abs(float(v))
        return f"{v:.4g}" if a == 0 or 1e-3 <= a < 1e5 else f"{v:.3e}"
    return str(v)


@dataclass
class Doc:
    """The report as HTML and Markdown at once; figures go to ``figures/`` and into the HTML."""

    figures_dir: Path
    style: F.Style
    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    toc: list[tuple[str, str, int]] = field(default_factory=list)
    figure_names: list[str] = field(default_factory=list)

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        anchor = anchor or "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
        self.toc.append((anchor, text, level))
        self.html.append(f'<h{level} id="{anchor}">{html.escape(text)}</h{level}>')
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.html.append(f"<p>{_inline(text)}</p>")
        self.md.append(f"{text}\n")

    def pre(self, text: str, lang: str = "") -> None:
        self.html.append(f"<pre>{html.escape(text)}</pre>")
        self.md.append(f"```{lang}\n{text.rstrip()}\n```\n")

    def table(self, rows: list[dict], columns=None, css: str = "", best: dict | None = None, html_id: str = "") -> None:
        """A table of dicts; ``best`` maps a column to the row index to set in bold."""
        if not rows:
            self.para("(no rows)")
            return
        columns = list(columns or dict.fromkeys(k for r in rows for k in r))
        best = best or {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = []
        md = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
        for i, r in enumerate(rows):
            cells, mcells = [], []
            for c in columns:
                text = _fmt(r.get(c))
                bold = best.get(c) == i
                cells.append(f"<td>{'<b>' if bold else ''}{_inline(text)}{'</b>' if bold else ''}</td>")
                mcells.append(f"**{text}**" if bold else text.replace("|", "\\|"))
            body.append("<tr>" + "".join(cells) + "</tr>")
            md.append("| " + " | ".join(mcells) + " |")
        attrs = (f' id="{html_id}"' if html_id else "") + (f' class="{css}"' if css else "")
        self.html.append(f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        self.md.append("\n".join(md) + "\n")

    def figure(self, fig: Figure, name: str, caption: str) -> None:
        path = self.figures_dir / f"{name}.png"
        fig.savefig(path, dpi=self.style.dpi)
        self._embed(path, name, caption)

    def image_file(self, src: Path, name: str, caption: str) -> None:
        """An existing PNG (an EDA figure, the Graphviz DAG), copied into ``figures/``."""
        path = self.figures_dir / f"{name}.png"
        if src != path:
            shutil.copyfile(src, path)
        self._embed(path, name, caption)

    def _embed(self, path: Path, name: str, caption: str) -> None:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.figure_names.append(path.name)
        self.html.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{_inline(caption)}</figcaption></figure>"
        )
        self.md.append(f"![{caption}](figures/{path.name})\n")

    def render_html(self, title: str) -> str:
        toc = "".join(
            f'<li class="l{level}"><a href="#{a}">{html.escape(t)}</a></li>' for a, t, level in self.toc if level <= 3
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><nav><ul>{toc}</ul></nav><main>{''.join(self.html)}</main></body></html>\n"
        )

    def render_md(self, title: str) -> str:
        return f"# {title}\n\n" + "\n".join(self.md)


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markup the texts use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1280px;
padding:1em 2em;color:#222}
h1{border-bottom:2px solid #5b7bd5}h2{margin-top:2em;border-bottom:1px solid #ccc}
nav ul{columns:3;font-size:.9em}nav li.l3{margin-left:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}th{background:#eef2fb}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{font-size:.88em;color:#555}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.8em;max-height:36em}
code{background:#f0f0f0;padding:0 .2em}
"""


# --------------------------------------------------------------------------------------------- sections


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
            f"{k} {_fmt(v)}" for k, v in metrics.items() if k in ("nmse", "rmse", "ssim", "psnr", "rmse_db")
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
        if disc_start is not None:
            doc.para(
                f"Loss phases: steps below `disc_start` = {disc_start} train the autoencoder alone "
                "(reconstruction + KL); from there the patch discriminator's adversarial term joins (VAE-GAN)."
            )
            doc.table(F.phase_table(log, disc_start))
    return overview


def _rms_grid_rows(root: Path, data: dict, samples: Path, names: list[str]) -> list[dict]:
    from radiodiff.data.radiomapseer import PG_FLOOR_DB, PG_MAX_DB, RadioMapSeerDataset
    from radiodiff.evaluate.metrics import zero_buildings
    from radiodiff.evaluate.sampling import read_maps

    maps = sorted({int(n.split("_")[0]) for n in names})
    ds = RadioMapSeerDataset(
        root,
        "test",
        simulation=data["simulation"],
        condition="static",
        image_size=data["image_size"],
        split_cfg=data.get("split"),
        gain_threshold=data["gain_threshold"],
        maps=maps,
    )
    index = {f"{s.map_id}_{s.tx}": i for i, s in enumerate(ds.samples)}
    t = float(data["gain_threshold"])

    def db(u):
        return PG_FLOOR_DB + (t + np.asarray(u) * (1 - t)) * (PG_MAX_DB - PG_FLOOR_DB)

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
    from radiodiff.data.icassp import ICASSPCropDataset

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
            "truth": np.where(valid, 160.0 - 147.0 * unit, np.nan),
        }
        for method in ("radiodiff", "radiounet"):
            pl = read_png(samples / method / f"{name}.png", "L").astype(np.float64)
            row[method] = np.where(valid, pl, np.nan)
        rows.append(row)
    return rows


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
        f"Test split: {_fmt(protocol.get('maps'))} maps at {protocol.get('resolution', '?')}",
        f"scale: {protocol.get('scale', '?')}",
        protocol.get("scope", ""),
        protocol.get("buildings", ""),
        f"RadioDiff samples with {steps} steps",
    ]
    doc.para(" ".join(f"{t[0].upper()}{t[1:]}." for t in sentences if t))
    rows, best = _metrics_rows(summary)
    doc.table(rows, css="metrics", best=best, html_id=f"metrics-{dataset}")
    second = "outdoor" if dataset == "radiomapseer" else "open"
    rows2, best2 = _metrics_rows(summary, second)
    if any(len(r) > 2 for r in rows2):
        doc.para(
            f"Scope `{second}`: "
            + ("pixels not fully covered by a building." if second == "outdoor" else "valid pixels off the walls.")
        )
        doc.table(rows2, css="metrics", best=best2)
    if dataset == "radiomapseer":
        doc.para("Published numbers for context (256×256 real DPM maps; protocols differ between papers):")
        doc.table(list(PUBLISHED_RADIOMAPSEER), columns=("method", "nmse", "rmse", "ssim", "psnr"))
    else:
        doc.para(PUBLISHED_ICASSP)

    scope = "all" if dataset == "radiomapseer" else "valid"
    names = sorted(per_sample.loc[(per_sample["method"] == "radiodiff") & (per_sample["scope"] == scope), "name"])
    chosen = evenly_spaced(names, doc.style.grid_samples)
    if dataset == "radiomapseer":
        from radiodiff.data.radiomapseer import PG_FLOOR_DB, PG_MAX_DB

        grid = _rms_grid_rows(root, data, samples, chosen)
        unit, vmin, vmax = "path gain (dB)", PG_FLOOR_DB, PG_MAX_DB
        metrics = ["nmse", "rmse", "ssim", "psnr"]
    else:
        grid = _icassp_grid_rows(root, samples, chosen)
        unit, vmin, vmax = "path loss (dB)", 13.0, 160.0
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
        f"RadioMapSeer: {_fmt(rms.get('maps'))} maps, {_fmt(rms.get('samples'))} (map, Tx) samples. "
        f"ICASSP: {_fmt(ica.get('buildings'))} buildings, {_fmt(ica.get('samples'))} samples. "
        "Figures from `results/eda/`."
    )
    for name in eda.get("figures", []):
        src = eda_dir / name
        if not src.is_file():
            raise DataError(f"{src}: listed in eda.json but missing (re-run the eda stage)")
        stem = Path(name).stem
        doc.image_file(src, f"eda_{stem}", stem.replace("_", " "))


def benchmark_section(doc: Doc, bench: dict) -> None:
    doc.heading("Benchmark", 2, "benchmark")
    doc.para(
        f"Device: {bench.get('device', '?')}. Timed training steps (random inputs of the model's shapes) and "
        "sampling per map; peak memory is the device's peak (CUDA) or the process RSS (CPU), a bound."
    )
    rows = []
    for model, b in bench.get("models", {}).items():
        train = b.get("train", {})
        row = {"model": model}
        row.update({k: train.get(k) for k in ("steps_per_s", "ms_per_step", "peak_memory_mb", "parameters")})
        sample = b.get("sample_ms_per_map")
        if isinstance(sample, dict):
            row.update({f"sample ms/map, N={k}": v for k, v in sample.items()})
        else:
            row["sample ms/map"] = sample
        rows.append(row)
    for dataset, b in (bench.get("physics") or {}).items():
        ms = b.get("sample_ms_per_map") if isinstance(b, dict) else b
        rows.append({"model": f"physics/{dataset}", "sample ms/map": ms})
    doc.table(rows)


def dag_section(doc: Doc, snakefile: Path | None) -> dict:
    """The DAG from ``snakemake --dag``, drawn by Graphviz when installed, else by matplotlib."""
    doc.heading("Pipeline DAG", 2, "dag")
    if not doc.style.dag:
        doc.para("Omitted (`report.dag: false`).")
        return {"dag": "omitted"}
    if snakefile is None or not snakefile.is_file():
        doc.para(f"Not drawn: no Snakefile at `{snakefile}`.")
        return {"dag": "no Snakefile"}
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(snakefile.parent)]
    cmd += ["--dag", "--forceall", "--nolock", "--cores", "1"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        p = None
    dot = p.stdout[p.stdout.find("digraph") :] if p is not None and p.returncode == 0 and "digraph" in p.stdout else ""
    if not dot:
        reason = "timed out" if p is None else (p.stderr.strip().splitlines() or ["no output"])[-1]
        doc.para(f"Not drawn: `snakemake --dag` failed ({reason}).")
        return {"dag": f"failed: {reason}"}
    (doc.figures_dir / "dag.dot").write_text(dot)
    nodes, edges = F.parse_dot(dot)
    dot_exe = shutil.which("dot")
    if dot_exe:
        png = doc.figures_dir / "dag.png"
        r = subprocess.run(
            [dot_exe, "-Tpng", f"-Gdpi={doc.style.dpi}", "-o", str(png)], input=dot, text=True, capture_output=True
        )
        if r.returncode == 0:
            doc.image_file(
                png, "dag", f"`snakemake --dag`, {len(nodes)} jobs and {len(edges)} edges, drawn by Graphviz."
            )
            return {"dag": "graphviz", "jobs": len(nodes), "edges": len(edges)}
    with rc_context(doc.style.rc()):
        doc.figure(
            F.dag_figure(nodes, edges, doc.style),
            "dag",
            f"`snakemake --dag`, {len(nodes)} jobs and {len(edges)} edges, layered by longest path "
            "(Graphviz is not installed; `figures/dag.dot` holds the graph).",
        )
    return {"dag": "matplotlib", "jobs": len(nodes), "edges": len(edges)}


def provenance_rows(params: dict, validation: dict) -> list[dict]:
    rows = []
    for dataset, title in DATASETS.items():
        root = params["data"][dataset]["root"]
        synthetic = Path(root) == Path(DEFAULT_ROOTS[dataset])
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


# --------------------------------------------------------------------------------------------- entry


def build_report(
    results,
    radiomapseer_root,
    icassp_crops,
    validation_dir,
    out,
    params: dict,
    snakefile=None,
) -> dict:
    """Write ``index.html``, ``report.md`` and ``figures/`` into ``out`` (atomically).

    ``params`` is the whole params.yaml (the report prints it); its ``report`` section sets the
    figure style. Every input is read from disk; a missing one raises :class:`DataError`.
    """
    t0 = time.time()
    results, validation_dir = Path(results), Path(validation_dir)
    style = F.Style.from_params(params.get("report", {}))
    validation = {d: read_json(validation_dir / f"{d}.json") for d in DATASETS}
    bench = read_json(results / "benchmark.json")
    title = f"radiodiff report ({params.get('scale', '?')} scale)"
    with atomic_dir(out) as tmp:
        figures_dir = tmp / "figures"
        figures_dir.mkdir()
        doc = Doc(figures_dir, style)
        doc.para(
            "Generated by `radiodiff report` from the pipeline's outputs (no training or sampling happens here). "
            "Figures are embedded; `report.md` beside this page links the same PNGs under `figures/`."
        )
        summaries = {}
        summaries["radiomapseer"] = dataset_section(
            doc, "radiomapseer", results, Path(radiomapseer_root), params["data"]["radiomapseer"]
        )
        summaries["icassp"] = dataset_section(doc, "icassp", results, Path(icassp_crops), None)
        training_section(doc, results)
        eda_section(doc, results / "eda")
        benchmark_section(doc, bench)
        dag = dag_section(doc, Path(snakefile) if snakefile else None)

        doc.heading("Where radiodiff departs from the paper and the original code", 2, "departures")
        doc.table([{"topic": a, "paper / original code": b, "radiodiff": c, "why": d} for a, b, c, d in DEPARTURES])
        doc.heading("Provenance", 2, "provenance")
        doc.heading("Data", 3, "provenance-data")
        doc.table(provenance_rows(params, validation))
        doc.heading("Device and software", 3, "provenance-software")
        device = {
            "benchmark device": bench.get("device", "?"),
            "report host": f"{platform.system()} {platform.machine()}",
        }
        doc.table([{"item": k, "value": v} for k, v in {**device, **versions()}.items()])
        doc.heading("Parameters used (params.yaml)", 3, "params")
        doc.pre(yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=100), "yaml")

        (tmp / "index.html").write_text(doc.render_html(title))
        (tmp / "report.md").write_text(doc.render_md(title))
        figures = list(doc.figure_names)
    return {
        "out": str(out),
        "figures": len(figures),
        "dag": dag["dag"],
        "seconds_building": round(time.time() - t0, 2),
        "radiodiff_nmse": {d: s.get("radiodiff", {}).get("nmse") for d, s in summaries.items()},
    }
