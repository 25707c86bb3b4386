# Helpers shared by the rules. The stages, their commands, params keys, data inputs and outputs
# come from radiodiff.dag.stages (the table the CLI and dvc.yaml use too); each stage's
# library files from radiodiff.dag.code_deps. tests/test_parity.py checks that Snakemake and
# DVC parse the same DAG.
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

from radiodiff.core.errors import RadiodiffError
from radiodiff.core.params import differing_keys, load_params, write_params
from radiodiff.dag.code_deps import code_deps
from radiodiff.dag.stages import (
    DVC_PARAMS,
    SNAKEMAKE_PARAMS,
    STAGES,
    param_deps,
    resolve,
)

# dvc.lock as Snakemake last saw it (after its own `dvc commit`)
DVC_LOCK_SEEN = ".snakemake/radiodiff/dvc.lock.sha256"

# The values the jobs compute with: Snakemake's own config (params.yaml + --config, --configfile,
# profiles), validated and written where every command reads it (`--params SNAKEMAKE_PARAMS`).
try:
    write_params(
        SNAKEMAKE_PARAMS,
        config,
        source="Snakemake's config (params.yaml and overrides)",
    )
except RadiodiffError as e:  # one line naming the key, before any job runs
    sys.exit(f"radiodiff: error: {e}")


def _dvc_lock_digest():
    lock = Path("dvc.lock")
    return hashlib.sha256(lock.read_bytes()).hexdigest() if lock.is_file() else ""


def remember_dvc_lock():
    Path(DVC_LOCK_SEEN).parent.mkdir(parents=True, exist_ok=True)
    Path(DVC_LOCK_SEEN).write_text(_dvc_lock_digest())


def warn_if_dvc_ran():
    """DVC's runs do not update Snakemake's record: say so (once) when dvc.lock moved since
    Snakemake last saw it."""
    seen = Path(DVC_LOCK_SEEN)
    if seen.is_file() and seen.read_text() != _dvc_lock_digest():
        remember_dvc_lock()
        print(
            "radiodiff: dvc.lock changed since Snakemake's last run (dvc repro, checkout or pull), so "
            "Snakemake's own record may be stale; to adopt DVC's outputs as they are, run "
            "`snakemake --touch --cores 1` (README: Both engines in one workspace)"
        )


warn_if_dvc_ran()

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


def stage_gpus(stage):
    """GPUs a job holds: a training stage one per process (`runtime.num_processes`, which
    relaunches it under `accelerate launch`), sampling and the benchmark one, the rest none.
    """
    if not STAGES[stage].accelerator:
        return 0
    return int(config["runtime"]["num_processes"]) if stage.startswith("train_") else 1


def stage_inputs(stage):
    """Data inputs (dataset roots resolved from the config), the inputs a params value names
    (init_from folders, the evaluate stages' weight files) and the library files the stage runs.
    """
    s = STAGES[stage]
    return (
        [resolve(d, config) for d in s.deps]
        + param_deps(stage, config)
        + code_deps(s.handler)
    )


def _output(path):
    p = PurePosixPath(path)
    out = directory(path) if "." not in p.name else path
    if p.name not in REPORTED:
        return out
    caption, category = REPORTED[p.name]
    extra = {"patterns": FIGURES[p.name]} if p.name in FIGURES else {}
    # per model or dataset: results/vae/radio/train_log.csv is vae/radio
    if category in ("Training", "Evaluation"):
        folder = str(PurePosixPath(*p.parts[1:-1]))
        extra["subcategory"] = folder.removeprefix("evaluate/")
    return report(out, caption=f"../report/{caption}", category=category, **extra)


def stage_outputs(stage):
    return [_output(o.path) for o in STAGES[stage].outs]


def stage_command(stage):
    """The stage's command (both engines run the same one), dataset roots from the config."""
    return resolve(STAGES[stage].command(SNAKEMAKE_PARAMS), config)


def all_targets():
    """Every stage's outputs but the synthetic datasets' (built only when a stage needs them)."""
    return [
        o.path
        for s in STAGES.values()
        if not s.name.startswith("synthesize_")
        for o in s.outs
    ]


def record_in_dvc():
    """After a successful run, DVC records the outputs of every stage of the run (`dvc commit`),
    so `dvc status` is clean for them and `dvc repro` re-runs only what a later edit touches.
    Only when the run's values are params.yaml's: a run with overrides leaves DVC's record alone.
    """
    # `--touch` adopts the outputs as they are (e.g. as DVC restored them): nothing to record
    if workflow.touch or not Path(".dvc").is_dir():
        return
    try:
        differ = differing_keys(config, load_params(DVC_PARAMS))
    except RadiodiffError as e:
        differ = [str(e)]
    if differ:
        shown = ", ".join(differ[:3]) + (", …" if len(differ) > 3 else "")
        print(
            f"radiodiff: this run's values differ from {DVC_PARAMS} in {len(differ)} key(s) "
            f"({shown}): DVC's record (dvc.lock) is left unchanged"
        )
        return
    if not shutil.which("dvc"):
        print(
            "radiodiff: dvc is not installed here: DVC's record (dvc.lock) is left unchanged"
        )
        return
    stages = sorted({job.rule.name for job in workflow.dag.jobs} & set(STAGES))
    done = subprocess.run(
        ["dvc", "commit", "--force", "--quiet", *stages], capture_output=True, text=True
    )
    if done.returncode:
        print(
            f"radiodiff: `dvc commit` failed, DVC's record is not updated: {done.stderr[-500:]}"
        )
        return
    print(f"radiodiff: DVC recorded the {len(stages)} stages of this run in dvc.lock")
    remember_dvc_lock()
