"""Benchmark: does a training process's memory grow with the dataset? (issue: streaming data)

Builds, in a work folder, RadioMapSeer folders at 256² with the same 52 maps (50 train, 1 val,
1 test) and 8 or 80 Tx per map (400 or 4,000 training items), and ICASSP Tx-aware crop folders
of 256² with 400 or 4,000 training crops (×8 flips/rotations with augmentation). The files are
symbolic links to a few synthetic maps: memory and speed do not depend on the pixels. The VAEs
are untrained (``save_pretrained`` of the quick preset's architectures at 256²).

Then runs ``radiodiff train ldm radiomapseer``, ``radiodiff train ldm icassp`` (augmentation
on) and ``radiodiff train radiounet radiomapseer`` on each size as a user would (a subprocess;
a few steps at batch 2, the final validation pass included), sampling ``RssAnon`` (anonymous memory: what a
held dataset occupies; the page cache of the PNGs is not counted) from ``/proc/PID/status`` every
50 ms, and measures how fast the training loader delivers items at 256² beside the training's own
items per second.

    python benchmarks/streaming.py --work /tmp/radiodiff-bench --out streaming.json

With ``--runs sample/radiomapseer evaluate/radiomapseer --models WORKSPACE`` it measures the
test-side stages the same way: ``radiodiff sample`` (1 sampler step) and ``radiodiff evaluate``
on folders whose test split holds 400 or 4,000 samples (48 or 50 of 52 maps; the maps are the
same), with the RadioDiff and RadioUNet models of a finished quick run in ``WORKSPACE``.

Prints a table and writes the figures as JSON. Takes about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from radiodiff.core.io import read_json, write_json
from radiodiff.core.params import schema_default_params
from radiodiff.data.arrange_icassp import arrange
from radiodiff.data.icassp import read_metadata, write_metadata
from radiodiff.data.items import radiomapseer_items
from radiodiff.data.tx_crop import crop
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.synthetic.icassp import synthesize as synthesize_icassp
from radiodiff.synthetic.radiomapseer import synthesize as synthesize_radiomapseer

SIZE = 256
MAPS = 52  # 50 train, 1 val, 1 test with SPLIT
SPLIT = {"train": 0.96, "val": 0.02, "test": 0.02, "seed": 42}
SOURCE_MAPS, SOURCE_TX = 2, 20


def link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.symlink(src.resolve(), dst)


def radiomapseer_folder(work: Path, tx_per_map: int) -> Path:
    """52 maps × ``tx_per_map`` Tx, linked to a 2-map × 20-Tx synthetic source."""
    src = work / "src_radiomapseer"
    if not src.is_dir():
        synthesize_radiomapseer(src, maps=SOURCE_MAPS, tx_per_map=SOURCE_TX, seed=0, size_px=SIZE)
    root = work / f"radiomapseer_{tx_per_map}tx"
    if root.is_dir():
        return root
    for m in range(MAPS):
        s = m % SOURCE_MAPS
        txs = read_json(src / f"antenna/{s}.json")
        write_json(root / f"antenna/{m}.json", [txs[t % SOURCE_TX] for t in range(tx_per_map)])
        link(src / f"png/buildings_complete/{s}.png", root / f"png/buildings_complete/{m}.png")
        for t in range(tx_per_map):
            link(src / f"png/antennas/{s}_{t % SOURCE_TX}.png", root / f"png/antennas/{m}_{t}.png")
            link(src / f"gain/DPM/{s}_{t % SOURCE_TX}.png", root / f"gain/DPM/{m}_{t}.png")
    return root


def icassp_folder(work: Path, crops: int) -> Path:
    """``crops`` training crops (+ 8 validation crops) of 256², linked to a few synthetic ones."""
    src = work / "src_icassp"
    if not (src / "crops").is_dir():
        synthesize_icassp(src / "raw", buildings=3, seed=0, width_px=(200, 280), height_px=(200, 280),
                          positions_per_antenna=1)  # fmt: skip
        arrange(src / "raw", src / "arranged", task="Task_3_ICASSP", split_cfg={**SPLIT, "train": 0.34,
                "val": 0.33, "test": 0.33})  # fmt: skip
        crop(src / "arranged", src / "crops", size_px=SIZE)
    root = work / f"icassp_{crops}crops"
    if root.is_dir():
        return root
    rows = read_metadata(src / "crops/metadata.csv")
    out = []
    for i in range(crops + 8):
        row = dict(rows[i % len(rows)])
        name = f"B{1 + i // 1000}_Ant{1 + i % 5}_f{1 + i % 3}_S{i}"
        link(src / "crops/inputs" / f"{row['name']}.png", root / "inputs" / f"{name}.png")
        link(src / "crops/targets" / f"{row['name']}.png", root / "targets" / f"{name}.png")
        row.update(name=name, split="train" if i < crops else "val")
        out.append(row)
    write_metadata(root / "metadata.csv", out, list(out[0]))
    return root


def vae(work: Path, params: dict, stage: str, channels: int) -> Path:
    folder = work / f"vae_{stage}"
    if not folder.is_dir():
        cfg = AutoencoderKLConfig.from_params(
            params[stage]["model"], in_channels=channels, out_channels=channels, resolution=SIZE
        )
        AutoencoderKL(cfg).save_pretrained(folder)
    return folder


def training_params(work: Path, model: str, dataset: str, steps: int, batch: int, tag: str) -> Path:
    p = schema_default_params()
    p["data"]["radiomapseer"].update(image_size=SIZE, split=SPLIT, condition="static")
    stage = p[f"train_{model}_{dataset}"]
    stage["train"].update(max_steps=steps, batch_size=batch, eval_every=10**6, save_every=10**6, log_every=1)
    stage["data"]["augment"] = dataset == "icassp"
    if model == "ldm":
        stage["diffusion"]["sampling_steps"] = 1  # the final validation pass: 2 network calls per map
        # the original's fixed latent scale: no pass over the targets (that pass reads at most
        # ldm.SCALE_ITEMS samples, whatever the dataset's size; ICASSP's condition scales still run it)
        stage["diffusion"]["scale_factor"] = 0.3
    p["runtime"]["state_dir"] = str(work / f"state_{tag}")
    path = work / f"params_{tag}.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def peak_rss_anon(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; peak RssAnon and VmHWM (kB → MB) sampled every 50 ms, and its wall time."""
    peak = {"RssAnon": 0, "VmHWM": 0}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)

        def sample():
            while proc.poll() is None:
                try:
                    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                        key, _, value = line.partition(":")
                        if key in peak:
                            peak[key] = max(peak[key], int(value.split()[0]))
                except (FileNotFoundError, ProcessLookupError):
                    break
                time.sleep(0.05)

        thread = threading.Thread(target=sample)
        thread.start()
        proc.wait()
        thread.join()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    return {"peak_rss_anon_mb": peak["RssAnon"] / 1024, "peak_vm_hwm_mb": peak["VmHWM"] / 1024,
            "wall_s": time.perf_counter() - t0}  # fmt: skip


def train_run(work: Path, model: str, dataset: str, n: int, steps: int, batch: int, params: dict) -> dict:
    tag = f"{model}_{dataset}_{n}"
    out = work / f"out_{tag}"
    path = training_params(work, model, dataset, steps, batch, tag)
    if dataset == "radiomapseer":
        root = radiomapseer_folder(work, n // 50)
        cmd = ["--root", str(root)]
        if model == "ldm":
            cmd += ["--vae", str(vae(work, params, "train_vae_radiomapseer", 1))]
    else:
        root = icassp_folder(work, n)
        cmd = ["--crops", str(root)] + [
            a
            for kind, ch in (("radio", 1), ("building", 2), ("antenna", 1))
            for a in (f"--vae-{kind}", str(vae(work, params, f"train_vae_{kind}", ch)))
        ]
    exe = shutil.which("radiodiff") or str(Path(sys.executable).parent / "radiodiff")
    result = peak_rss_anon(
        [exe, "train", model, dataset, *cmd, "--out", str(out), "--params", str(path)], work / f"{tag}.log"
    )
    with open(out / "train_log.csv") as f:
        step_times = [float(r["step_time_s"]) for r in csv.DictReader(f)][1:]  # the first step warms up
    return {
        "stage": f"train_{model}_{dataset}",
        "training_items": n * (8 if dataset == "icassp" else 1),
        "samples": n,
        "steps": steps,
        "batch_size": batch,
        "train_items_per_s": batch / statistics.median(step_times),
        **result,
    }


TEST_SPLIT = {"train": 0.02, "val": 0.02, "test": 0.96, "seed": 42}  # 50 of the 52 maps in test


def test_side_run(work: Path, stage: str, n: int, models: Path) -> dict:
    """Peak anonymous memory of ``radiodiff sample|evaluate radiomapseer`` on a test split of
    ``n`` samples, with the quick run's models (their own resolution and condition)."""
    if models is None:
        sys.exit("--models WORKSPACE (a finished quick run) is needed for the sample and evaluate runs")
    tag = f"{stage}_radiomapseer_{n}"
    root = radiomapseer_folder(work, n // 50)
    p = yaml.safe_load((models / "params.yaml").read_text())
    p["data"]["radiomapseer"].update(root=str(root), split=TEST_SPLIT)
    p["sample"]["steps"] = 1
    path = work / f"params_{tag}.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    samples = work / f"samples_radiomapseer_{n}"
    exe = shutil.which("radiodiff") or str(Path(sys.executable).parent / "radiodiff")
    if stage == "sample":
        shutil.rmtree(samples, ignore_errors=True)
        cmd = [exe, "sample", "radiomapseer", "--root", str(root), "--out", str(samples),
               "--ldm", str(models / "results/ldm/radiomapseer/model"),
               "--radiounet", str(models / "results/radiounet/radiomapseer/model")]  # fmt: skip
    else:
        cmd = [exe, "evaluate", "radiomapseer", "--root", str(root), "--samples", str(samples),
               "--out", str(work / f"evaluate_{n}")]  # fmt: skip
    result = peak_rss_anon([*cmd, "--params", str(path)], work / f"{tag}.log")
    return {"stage": f"{stage}_radiomapseer", "training_items": 0, "samples": n, "test_items": n, **result}


def loader_rate(work: Path, workers: int, batches: int = 12, batch: int = 16) -> float:
    """Items per second the training DataLoader delivers (RadioMapSeer, 256², static condition)."""
    import torch

    data = {"simulation": "DPM", "image_size": SIZE, "split": SPLIT, "gain_threshold": 0.0}
    items = radiomapseer_items(radiomapseer_folder(work, 80), "train", data, "static", 2.0)
    loader = torch.utils.data.DataLoader(items, batch_size=batch, shuffle=True, num_workers=workers)
    it = iter(loader)
    next(it)  # workers started, first batch not timed
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/radiodiff-bench"))
    ap.add_argument("--out", type=Path, default=Path("streaming.json"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 4000])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument(
        "--runs", nargs="+", default=["ldm/radiomapseer", "ldm/icassp", "radiounet/radiomapseer"],
        help="MODEL/DATASET training stages to measure",
    )  # fmt: skip
    ap.add_argument("--no-loader", action="store_true", help="skip the loader-rate measurement")
    ap.add_argument("--models", type=Path, help="a finished quick run (for the sample and evaluate runs)")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    params = schema_default_params()
    runs = []
    for run in args.runs:
        model, dataset = run.split("/")
        for n in args.sizes:
            if model in ("sample", "evaluate"):
                runs.append(test_side_run(args.work, model, n, args.models))
            else:
                runs.append(train_run(args.work, model, dataset, n, args.steps, args.batch, params))
    default_workers = params["runtime"]["num_workers"]
    loader = {} if args.no_loader else {f"workers_{w}": loader_rate(args.work, w) for w in sorted({default_workers, 2})}
    result = {"image_size": SIZE, "runs": runs, "loader_items_per_s": loader, "default_workers": default_workers}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'stage':<30}{'samples':>8}{'items':>8}{'RssAnon MB':>12}{'VmHWM MB':>10}{'train it/s':>11}{'wall s':>8}")
    for r in runs:
        rate = r.get("train_items_per_s", float("nan"))
        print(f"{r['stage']:<30}{r['samples']:>8}{r['training_items']:>8}{r['peak_rss_anon_mb']:>12.0f}"
              f"{r['peak_vm_hwm_mb']:>10.0f}{rate:>11.1f}{r['wall_s']:>8.0f}")  # fmt: skip
    print("loader items/s at 256²:", {k: round(v, 1) for k, v in loader.items()})


if __name__ == "__main__":
    main()
