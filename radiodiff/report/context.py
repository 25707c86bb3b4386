"""The report's closing parts: the EDA figures, the benchmark, where radiodiff departs from the
paper and the original code, and the provenance (data, device and software, params)."""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
from pathlib import Path

import yaml

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_json
from radiodiff.dag.stages import STAGES
from radiodiff.report.document import Doc, fmt
from radiodiff.report.texts import DATASETS, departures

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
        row, per_n = _model_row(model, b)
        rows.append(row)
        sampling += [_sampling_row(model, n, ms, f) for n, (ms, f) in per_n.items() if f]
    for dataset, b in (bench.get("physics") or {}).items():
        ms = b.get("sample_ms_per_map") if isinstance(b, dict) else b
        rows.append({"model": f"physics/{dataset}", "sample ms/map": ms})
    doc.table(rows)
    if sampling:
        doc.para("FLOPs per sampled map (one sampling batch counted, divided by its maps) and the rate achieved:")
        doc.table(sampling)


def _model_row(model: str, b: dict) -> tuple[dict, dict]:
    """A model's row of the benchmark table, and its sampling (ms per map, FLOPs or None) per
    sampler step count (the key None where one count was timed)."""
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
        return row, {k: (ms, (flops or {}).get(k)) for k, ms in sample.items()}
    row["sample ms/map"] = sample
    return row, {None: (sample, flops)}


def _sampling_row(model: str, n, ms, flops: dict) -> dict:
    return {
        "model": model,
        "sampler steps": n,
        "ms/map": ms,
        "GFLOP/map": _giga(flops.get("flops_per_map")),
        "GFLOP/s": _giga(flops.get("flop_per_s")),
        "% of peak": _percent(flops.get("fraction_of_peak")),
    }


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


def condition_rows(params: dict, models: dict) -> list[tuple[str, str, str, str]]:
    """The departures of the run's conditioning and sampling choices (issue 28's levers), when on."""
    rows = []
    stem = [DATASETS[d] for d, m in models.items() if m.get("cond_stem")]
    if stem:
        rows.append((
            f"Condition at full resolution ({', '.join(stem)})",
            "the condition reaches the U-Net only through the Swin's 4×4 patch embedding",
            "`model.cond_stem`: the raw condition also pixel-unshuffled to the latent grid, concatenated at the stem",
            "every condition pixel (the Tx's included) reaches the network; measured in the README",
        ))  # fmt: skip
    if any(m.get("prior_latent") for m in models.values()):
        rows.append((
            "Physics prior as a latent (RadioMapSeer)",
            "(no physics prior)",
            "`model.prior_latent`: the log-distance prior encoded by the target VAE, concatenated with z_t at the stem",
            "the prior in the space the LDM works in, as the ICASSP LDM takes its condition VAEs' latents",
        ))  # fmt: skip
    if params.get("sample", {}).get("ensemble"):
        k = params["sample"]["seeds"]
        rows.append((
            "Headline prediction",
            "one sample per map",
            f"`sample.ensemble`: the per-pixel mean of {k} samples (the single sample is scored beside it)",
            "averaging samples removes the sampling noise a single draw carries",
        ))  # fmt: skip
    return rows


def departures_section(doc: Doc, params: dict) -> None:
    doc.heading("Where radiodiff departs from the paper and the original code", 2, "departures")
    models = {d: params[f"train_ldm_{d}"]["model"] for d in DATASETS}
    rows = departures({d: m["block_style"] for d, m in models.items()}, condition_rows(params, models))
    doc.table([{"topic": a, "paper / original code": b, "radiodiff": c, "why": d} for a, b, c, d in rows])


def provenance_section(doc: Doc, params: dict, validation: dict, bench: dict) -> None:
    """Where the data came from, the device and the software, and the whole params.yaml."""
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
