# Helpers shared by the rules. The params keys and library code of each stage come from
# radiodiff.stages (the same table the CLI uses); tests/test_parity.py checks dvc.yaml
# declares the same.
from pathlib import Path

from radiodiff.stages import STAGES

VAE_NAMES = ["radiomapseer", "building", "antenna", "radio"]
DATASETS = ["radiomapseer", "icassp"]
TRAINED_MODELS = [
    *[("vae", name) for name in VAE_NAMES],
    *[(kind, ds) for kind in ("ldm", "radiounet") for ds in DATASETS],
]
RADIOMAPSEER_ROOT = config["data"]["radiomapseer"]["root"]
ICASSP_ROOT = config["data"]["icassp"]["root"]


def declared_params(stage):
    """The stage's params keys as Snakemake params (dots become '__'), so editing one re-runs it."""
    return {
        key.replace(".", "__"): lookup(dpath=key.replace(".", "/"), within=config)
        for key in STAGES[stage].params
    }


def code(stage):
    """The library files a stage runs (its radiodiff/ subpackages), as inputs."""
    return sorted(
        str(p)
        for pkg in STAGES[stage].code
        for p in Path("radiodiff", pkg).rglob("*.py")
    )


def all_targets():
    return [
        "data/validation/radiomapseer.json",
        "data/validation/icassp.json",
        "data/radiomapseer/edges",
        "data/icassp/crops",
        "results/eda",
        *[f"results/vae/{name}/metrics.json" for name in VAE_NAMES],
        *[f"results/evaluate/{ds}/summary.json" for ds in ("radiomapseer", "icassp")],
        "results/benchmark.json",
        "results/report",
    ]
