"""Trained model folders of either kind: :func:`load_pipeline` opens a RadioDiff folder
(:class:`~radiodiff.models.radiodiff.RadioDiffPipeline`) or a RadioUNet one
(:class:`~radiodiff.models.radiounet.RadioUNetPipeline`) by what it holds."""

from __future__ import annotations

import os
from pathlib import Path

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, RADIOMAPSEER_PIXEL_SIZE_M, RADIOMAPSEER_SIDE_PX
from radiodiff.core.errors import RadiodiffError
from radiodiff.models.radiodiff import RADIODIFF_JSON, RadioDiffPipeline
from radiodiff.models.radiounet import RADIOUNET_JSON, RadioUNetPipeline


def load_pipeline(
    directory: str | os.PathLike, device="cpu", ema: bool = True
) -> RadioDiffPipeline | RadioUNetPipeline:
    """Whichever trained model ``directory`` holds (a ``model/`` folder of a train_ldm_* or
    train_radiounet_* stage), with its EMA weights (``ema``) or its raw training weights."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RadiodiffError(f"{directory}: model folder not found")
    if (directory / RADIODIFF_JSON).is_file():
        return RadioDiffPipeline.from_pretrained(directory, device, ema)
    if (directory / RADIOUNET_JSON).is_file():
        return RadioUNetPipeline.from_pretrained(directory, device, ema)
    raise RadiodiffError(
        f"{directory}: not a trained model folder (no {RADIODIFF_JSON} or {RADIOUNET_JSON}; "
        "use results/ldm/<dataset>/model or results/radiounet/<dataset>/model)"
    )


def metres_per_pixel(meta: dict) -> float:
    """The metres per pixel a trained model works at (``metres_per_pixel`` of its folder; a folder
    written before the key existed: RadioMapSeer's 256 m side over its image size, ICASSP's
    0.25 m, as the training data had)."""
    if meta.get("metres_per_pixel"):
        return float(meta["metres_per_pixel"])
    if meta.get("dataset") == "radiomapseer":
        return RADIOMAPSEER_SIDE_PX * RADIOMAPSEER_PIXEL_SIZE_M / int(meta["image_size"])
    return ICASSP_PIXEL_SIZE_M
