# Helpers shared by the rules. The stages, their commands, params keys, data inputs and outputs
# come from radiodiff.pipeline.stages (the table the CLI and dvc.yaml use too); each stage's
# library files from radiodiff.pipeline.code_deps. tests/test_parity.py checks that Snakemake and
# DVC parse the same DAG.
from pathlib import PurePosixPath

from radiodiff.pipeline.code_deps import code_deps
from radiodiff.pipeline.stages import STAGES, resolve

# Snakemake's view of some outputs: captions and categories of `snakemake --report`.
REPORTED = {
    "train_log.csv": ("train_log.rst", "Training"),
    "summary.json": ("summary.rst", "Evaluation"),
    "per_sample.csv": ("per_sample.rst", "Evaluation"),
    "benchmark.json": ("benchmark.rst", "Benchmark"),
    "eda": ("eda.rst", "EDA"),
    "report": ("report.rst", "Report"),
}
FIGURES = {"eda": ["{name}.png"], "report": ["figures/{name}.png"]}


def declared_params(stage):
    """The stage's params keys as Snakemake params (dots become '__'), so editing one re-runs it."""
    return {
        key.replace(".", "__"): lookup(dpath=key.replace(".", "/"), within=config)
        for key in STAGES[stage].params
    }


def stage_inputs(stage):
    """Data inputs (dataset roots resolved from the config) and the library files the stage runs."""
    s = STAGES[stage]
    return [resolve(d, config) for d in s.deps] + code_deps(s.handler)


def _output(path):
    p = PurePosixPath(path)
    out = directory(path) if "." not in p.name else path
    if p.name not in REPORTED:
        return out
    caption, category = REPORTED[p.name]
    extra = {"patterns": FIGURES[p.name]} if p.name in FIGURES else {}
    if category in (
        "Training",
        "Evaluation",
    ):  # e.g. results/vae/radio/train_log.csv: vae/radio
        extra["subcategory"] = str(PurePosixPath(*p.parts[1:-1])).removeprefix(
            "evaluate/"
        )
    return report(out, caption=f"../report/{caption}", category=category, **extra)


def stage_outputs(stage):
    return [_output(o.path) for o in STAGES[stage].outs]


def stage_command(stage):
    """The stage's command (both engines run the same one), dataset roots from the config."""
    return resolve(STAGES[stage].command, config)


def all_targets():
    """Every stage's outputs but the synthetic datasets' (built only when a stage needs them)."""
    return [
        o.path
        for s in STAGES.values()
        if not s.name.startswith("synthesize_")
        for o in s.outs
    ]
