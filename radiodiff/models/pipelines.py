"""Trained model folders of either kind: :func:`load_pipeline` opens a RadioDiff folder
(:class:`~radiodiff.models.radiodiff.RadioDiffPipeline`) or a RadioUNet one
(:class:`~radiodiff.models.radiounet.RadioUNetPipeline`) by what it holds; both offer the face of
:class:`~radiodiff.models.map_model.MapModel`."""

from __future__ import annotations

import os
from pathlib import Path

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
