"""The pipeline's stages as radiodiff sees them: the params keys each reads and the library
subpackages each runs.

This table is engine-neutral: the CLI hands a stage only its declared keys (reading any other
raises), the Snakemake rules declare exactly these params and code inputs, and a test checks
that ``dvc.yaml`` declares the same (tests/test_parity.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    params: tuple[str, ...]  # dotted params.yaml keys
    code: tuple[str, ...]  # radiodiff/ subpackages


_DATA = ("core", "physics", "data")
_TRAIN = (*_DATA, "models", "train")
# The LDM, RadioUNet, sampling, evaluation and benchmark also run the sampler and the metrics.
_MODEL = (*_TRAIN, "diffusion", "evaluate")
_RMS_DATA = (
    "data.radiomapseer.simulation",
    "data.radiomapseer.condition",
    "data.radiomapseer.image_size",
    "data.radiomapseer.gain_threshold",
    "data.radiomapseer.physics_exponent",
    "data.radiomapseer.split",
)

# params.yaml's top-level sections (the schema's `required` list, in file order)
ALL_SECTIONS = (
    "scale",
    "synthesize_radiomapseer",
    "synthesize_icassp",
    "data",
    "arrange_icassp",
    "crop_icassp",
    "edges",
    "eda",
    "train_vae_radiomapseer",
    "train_vae_building",
    "train_vae_antenna",
    "train_vae_radio",
    "train_ldm_radiomapseer",
    "train_ldm_icassp",
    "train_radiounet_radiomapseer",
    "train_radiounet_icassp",
    "sample",
    "benchmark",
    "report",
)

STAGES: dict[str, Stage] = {
    "synthesize_radiomapseer": Stage(("synthesize_radiomapseer",), ("core", "physics", "synthetic")),
    # the ICASSP generator reuses the layout's names and constants from radiodiff.data.icassp
    "synthesize_icassp": Stage(("synthesize_icassp",), ("core", "physics", "data", "synthetic")),
    "validate_radiomapseer": Stage(("data.radiomapseer.simulation", "data.radiomapseer.condition"), _DATA),
    "validate_icassp": Stage(("data.icassp.task",), _DATA),
    "edges": Stage(("edges", "data.radiomapseer.simulation"), _DATA),
    "arrange_icassp": Stage(("arrange_icassp", "data.icassp.task", "data.icassp.split"), _DATA),
    "crop_icassp": Stage(("crop_icassp",), _DATA),
    "eda": Stage(
        (
            "eda",
            "data.radiomapseer.simulation",
            "data.radiomapseer.split",
            "data.icassp.task",
            "data.icassp.split",
        ),
        (*_DATA, "eda"),
    ),
    "train_vae_radiomapseer": Stage(
        (
            "train_vae_radiomapseer",
            "data.radiomapseer.simulation",
            "data.radiomapseer.image_size",
            "data.radiomapseer.gain_threshold",
            "data.radiomapseer.split",
        ),
        _TRAIN,
    ),
    "train_vae_building": Stage(("train_vae_building",), _TRAIN),
    "train_vae_antenna": Stage(("train_vae_antenna",), _TRAIN),
    "train_vae_radio": Stage(("train_vae_radio",), _TRAIN),
    "train_ldm_radiomapseer": Stage(("train_ldm_radiomapseer", *_RMS_DATA), _MODEL),
    "train_ldm_icassp": Stage(("train_ldm_icassp",), _MODEL),
    "train_radiounet_radiomapseer": Stage(("train_radiounet_radiomapseer", *_RMS_DATA), _MODEL),
    "train_radiounet_icassp": Stage(("train_radiounet_icassp",), _MODEL),
    "sample_radiomapseer": Stage(("sample", *_RMS_DATA), _MODEL),
    "sample_icassp": Stage(("sample",), _MODEL),
    "evaluate_radiomapseer": Stage(
        (
            "data.radiomapseer.simulation",
            "data.radiomapseer.image_size",
            "data.radiomapseer.gain_threshold",
            "data.radiomapseer.split",
        ),
        _MODEL,
    ),
    "evaluate_icassp": Stage((), _MODEL),
    "benchmark": Stage(("benchmark",), _MODEL),
    # The report prints every section (the params used), so it declares them all; an edit
    # anywhere re-runs some stage upstream of it anyway, and a `report.*` edit re-runs it alone.
    "report": Stage(ALL_SECTIONS, (*_MODEL, "eda", "report")),
}
