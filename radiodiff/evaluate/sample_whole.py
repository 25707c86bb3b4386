"""The ``sample_icassp_full`` stage: every method's prediction of each whole test building, in
the challenge's format.

Reads the test buildings' full-size arranged inputs (``arrange_icassp`` output; each building's
size as it is) and writes, per method, ``{method}/B{b}_Ant{a}_f{f}_S{s}.png``: the input's
size, path loss in dB (round(PL), 13–160), every pixel, walls included — what a challenge entry
hands in. RadioDiff and RadioUNet predict by sliding windows at their own resolution
(:mod:`radiodiff.evaluate.windows`, settings ``sample.window``); RadioDiff in
``sample.window.mode`` (MultiDiffusion ``joint`` windows by default) and, when
``sample.window.compare_modes``, also in the other mode (``radiodiff_{mode}/``) for the seam
comparison. Physics is free space with the antenna pattern (the arranged B channel), no walls.
``sampling.json`` records per method the time per whole map and the window geometry the
evaluate stage needs to find the seams. One building at a time: memory follows the largest map.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radiodiff.core.encodings import pl_db_to_png, unit_to_pl_png
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import atomic_dir, read_png, write_json, write_png
from radiodiff.core.progress import progress_bar
from radiodiff.data.icassp import held_out_rows
from radiodiff.evaluate.sample_test import Clock, check_model, default_device, sampling_precision, timing
from radiodiff.evaluate.whole_maps import icassp_whole
from radiodiff.evaluate.windows import MODES
from radiodiff.models.pipelines import load_pipeline


def read_arranged(arranged, row: dict) -> np.ndarray:
    """A test sample's arranged input (H, W, 3), checked against its metadata size."""
    path = Path(arranged) / "inputs" / f"{row['name']}.png"
    image = read_png(path, "RGB")[..., :3]
    if image.shape[:2] != (int(row["height"]), int(row["width"])):
        raise DataError(
            f"{path}: {image.shape[1]}×{image.shape[0]} px, its metadata says {row['width']}×{row['height']}"
        )
    return image


def geometry(pipe, window: dict, mode: str) -> dict:
    """What the evaluate stage needs to rebuild a method's tiling."""
    return {
        "window_px": pipe.grid_px,
        "step_px": pipe.latent_step,
        "overlap": window["overlap"],
        "metres_per_pixel": pipe.metres_per_pixel,
        "mode": mode,
    }


def run(params: dict, arranged, ldm, radiounet, out, device=None) -> dict:
    """Predict every whole test building of ``arranged`` with each method into ``out`` (atomically)."""
    sample = params["sample"]
    window = sample["window"]
    if window["mode"] not in MODES:
        raise RadiodiffError(f"sample.window.mode: expected one of {MODES}, got {window['mode']!r}")
    device = torch.device(device) if device else default_device()
    rows = held_out_rows(arranged)
    other = next(m for m in MODES if m != window["mode"])
    runs = [("radiodiff", ldm, window["mode"])]
    if window["compare_modes"]:
        runs.append((f"radiodiff_{other}", ldm, other))
    runs.append(("radiounet", radiounet, "independent"))
    methods: dict = {}
    with atomic_dir(out) as tmp:
        for method, model_dir, mode in runs:
            pipe = load_pipeline(model_dir, ema=sample["use_ema"]).to(device)
            check_model(pipe, "icassp", None, model_dir)
            steps = pipe.steps_for(sample["steps"])
            generator = torch.Generator(device=device).manual_seed(sample["seed"])
            settings = {"mode": mode, "overlap": window["overlap"], "batch_size": window["batch_size"]}
            clock, bar = Clock(device), progress_bar(f"sample_icassp_full {method}")
            (tmp / method).mkdir()
            for i, row in enumerate(rows):
                image = read_arranged(arranged, row)
                with clock, sampling_precision(device, sample["precision"]):
                    unit, _ = icassp_whole(pipe, image, window=settings, steps=steps, generator=generator)
                write_png(tmp / method / f"{row['name']}.png", unit_to_pl_png(unit))
                bar(i + 1, len(rows))
            methods[method] = {
                **timing(clock.seconds, len(rows), device, steps, sample["seed"], str(model_dir)),
                **geometry(pipe, window, mode),
                "weights": "ema" if sample["use_ema"] else "raw",
                "precision": sample["precision"],
            }
        clock = Clock(torch.device("cpu"))
        (tmp / "physics").mkdir()
        for row in rows:
            image = read_arranged(arranged, row)
            with clock:
                png = pl_db_to_png(image[..., 2])  # FSPL − G(θ), clipped to 13–160 dB
            write_png(tmp / "physics" / f"{row['name']}.png", png)
        methods["physics"] = timing(clock.seconds, len(rows), torch.device("cpu"), None, None, None)
        sizes = sorted({(int(r["width"]), int(r["height"])) for r in rows})
        write_json(
            tmp / "sampling.json",
            {"dataset": "icassp", "split": "test", "whole_buildings": True, "sizes_px": sizes, "methods": methods},
        )
    return {"stage": "sample_icassp_full", "maps": len(rows), "methods": methods}
