"""The ``eda`` stage: structure and statistics of RadioMapSeer and ICASSP 2025 folders as figures + eda.json.

``run_eda`` reads both dataset roots (real or synthetic, same layouts: REFERENCE.md §1, §2) and
writes, atomically into one folder, a set of PNG figures and ``eda.json`` (counts, splits,
percentiles, antenna statistics, the figure list, the roots and the params used).

Reading is capped by ``eda.max_maps``: at most that many gain maps (RadioMapSeer) and
input/output pairs (ICASSP) are read for the statistics, chosen evenly spaced over the sorted
samples, so the selection is deterministic. Counts and splits always cover the whole dataset.

Figures are built with matplotlib's object API on an Agg canvas, never registered with pyplot,
so no figure stays open and nothing depends on a display or the global backend.
The per-dataset analyses live in :mod:`radiodiff.eda.radiomapseer` and :mod:`radiodiff.eda.icassp`.
"""

from __future__ import annotations

import json

from matplotlib.figure import Figure

from radiodiff.core.io import atomic_dir, write_json
from radiodiff.eda import icassp, radiomapseer
from radiodiff.eda.common import check_root


def run_eda(radiomapseer_root, icassp_root, out, params: dict) -> dict:
    """Write the EDA figures and ``eda.json`` of both datasets into ``out`` (atomically).

    ``params`` holds the stage's declared keys only: ``eda.{grid_samples, dpi, max_maps}``,
    ``data.radiomapseer.{simulation, split}`` and ``data.icassp.{task, split}``.
    Returns a short summary (the folder, the figure names, the main counts).
    """
    eda = params["eda"]
    rms_cfg, ica_cfg = params["data"]["radiomapseer"], params["data"]["icassp"]
    grid, dpi, cap = int(eda["grid_samples"]), int(eda["dpi"]), int(eda["max_maps"])
    rms_root, ica_root = check_root(radiomapseer_root, "RadioMapSeer"), check_root(icassp_root, "ICASSP")

    with atomic_dir(out) as tmp:
        figures: list[str] = []

        def save(fig: Figure, name: str) -> None:
            fig.savefig(tmp / name, dpi=dpi)
            figures.append(name)

        rms = radiomapseer.analyse(
            rms_root, rms_cfg["simulation"], rms_cfg["split"], rms_cfg["allow_missing_maps"], cap, grid, save
        )
        ica = icassp.analyse(ica_root, ica_cfg["task"], ica_cfg["split"], cap, grid, save)
        content = {
            "radiomapseer": rms,
            "icassp": ica,
            "figures": figures,
            "roots": {"radiomapseer": str(rms_root), "icassp": str(ica_root)},
            "params": json.loads(json.dumps(params)),
        }
        write_json(tmp / "eda.json", content)
    return {
        "out": str(out),
        "figures": figures,
        "radiomapseer_maps": rms["maps"],
        "radiomapseer_samples": rms["samples"],
        "icassp_samples": ica["samples"],
        "icassp_buildings": ica["buildings"],
    }


def run(params: dict, radiomapseer_root, icassp_root, out) -> dict:
    """The ``eda`` stage (see :func:`run_eda`)."""
    return {"stage": "eda", **run_eda(radiomapseer_root, icassp_root, out, params)}
