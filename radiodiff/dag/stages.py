"""The pipeline's stages: the one table both engines, the CLI, the tests and the report read.

Per stage: the ``radiodiff`` command it runs (both engines run the same one), the module whose
``run(params, **paths)`` does the work (the CLI dispatches to it), the params keys it reads and
declares (the CLI hands it only those, plus the undeclared ``runtime`` section), its data inputs
and its outputs. ``${data.radiomapseer.root}`` and ``${data.icassp.root}`` stand for the dataset
roots (DVC's own templating; the Snakemake rules substitute Snakemake's config). The library
files each stage depends on are computed from its module's imports
(:func:`radiodiff.dag.code_deps.code_deps`). ``dvc.yaml`` is written from this table
(``radiodiff dvc-yaml``); ``workflow/rules/stages.smk`` makes one Snakemake rule per entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from radiodiff.core.errors import ParamsError
from radiodiff.core.params import DEFAULT_PARAMS

RMS_ROOT = "${data.radiomapseer.root}"
ICASSP_ROOT = "${data.icassp.root}"
RMS_VALIDATION = "data/validation/radiomapseer.json"
ICASSP_VALIDATION = "data/validation/icassp.json"
EDGES = "data/radiomapseer/edges"
ARRANGED = "data/icassp/arranged"
CROPS = "data/icassp/crops"
VAE_NAMES = ("radiomapseer", "building", "antenna", "radio")
DATASETS = ("radiomapseer", "icassp")
MODEL_KINDS = ("ldm", "radiounet")
FULL_SAMPLES = "results/samples/icassp_full"
FULL_EVALUATE = "results/evaluate/icassp_full"
# what the test-split sample stages read of `sample` (its `window` is the whole-building stage's)
SAMPLE_KEYS = (
    "sample.steps",
    "sample.seed",
    "sample.seeds",
    "sample.ensemble",
    "sample.batch_size",
    "sample.use_ema",
    "sample.precision",
)
# How each engine hands a job its values (the one difference between their commands): DVC the
# params file it tracks; Snakemake the config it resolved (params.yaml + --config, --configfile,
# profiles), written to this file when the workflow is parsed.
DVC_PARAMS = DEFAULT_PARAMS
SNAKEMAKE_PARAMS = ".snakemake/radiodiff/config.yaml"

# params.yaml's top-level sections (the schema's `required` list, in file order); `runtime` holds
# execution settings that no stage declares.
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
    "evaluate",
    "benchmark",
    "report",
)
RMS_DATA = (
    "data.radiomapseer.simulation",
    "data.radiomapseer.condition",
    "data.radiomapseer.image_size",
    "data.radiomapseer.gain_threshold",
    "data.radiomapseer.physics_exponent",
    "data.radiomapseer.split",
    "data.radiomapseer.allow_missing_maps",
)


@dataclass(frozen=True)
class Output:
    """An output path; ``metric`` (a DVC metrics file) or ``plot`` (DVC plot axes) or neither."""

    path: str
    metric: bool = False
    plot: dict | None = None


@dataclass(frozen=True)
class Stage:
    name: str
    handler: str  # module with `run(params, **paths)`
    cmd: str  # without the params argument (see command())
    params: tuple[str, ...]  # dotted params.yaml keys
    deps: tuple[str, ...]  # data inputs (paths, or a dataset-root placeholder)
    outs: tuple[Output, ...]
    accelerator: bool = False  # trains or samples: all cores, one GPU

    def command(self, params_file: str = DVC_PARAMS) -> str:
        """The stage's command line, its values read from ``params_file``."""
        return f"{self.cmd} --params {params_file}"


def _training_outs(folder: str) -> tuple[Output, ...]:
    return (
        Output(f"{folder}/model"),
        Output(f"{folder}/metrics.json", metric=True),
        Output(f"{folder}/train_log.csv", plot={"x": "step"}),
    )


def _table() -> list[Stage]:
    stages = [
        Stage(
            "synthesize_radiomapseer",
            "radiodiff.synthetic.radiomapseer",
            "radiodiff synthesize radiomapseer data/raw/radiomapseer",
            ("synthesize_radiomapseer",),
            (),
            (Output("data/raw/radiomapseer"),),
        ),
        Stage(
            "synthesize_icassp",
            "radiodiff.synthetic.icassp",
            "radiodiff synthesize icassp data/raw/icassp",
            ("synthesize_icassp",),
            (),
            (Output("data/raw/icassp"),),
        ),
        Stage(
            "validate_radiomapseer",
            "radiodiff.data.validate_radiomapseer",
            f"radiodiff validate radiomapseer {RMS_ROOT} --out {RMS_VALIDATION}",
            ("data.radiomapseer.simulation", "data.radiomapseer.condition"),
            (RMS_ROOT,),
            (Output(RMS_VALIDATION),),
        ),
        Stage(
            "validate_icassp",
            "radiodiff.data.validate_icassp",
            f"radiodiff validate icassp {ICASSP_ROOT} --out {ICASSP_VALIDATION}",
            ("data.icassp.task",),
            (ICASSP_ROOT,),
            (Output(ICASSP_VALIDATION),),
        ),
        Stage(
            "edges",
            "radiodiff.data.edges",
            f"radiodiff edges {RMS_ROOT} {EDGES}",
            ("edges", "data.radiomapseer.simulation"),
            (RMS_ROOT, RMS_VALIDATION),
            (Output(EDGES),),
        ),
        Stage(
            "arrange_icassp",
            "radiodiff.data.arrange_icassp",
            f"radiodiff arrange {ICASSP_ROOT} {ARRANGED}",
            ("arrange_icassp", "data.icassp.task", "data.icassp.split"),
            (ICASSP_ROOT, ICASSP_VALIDATION),
            (Output(ARRANGED),),
        ),
        Stage(
            "crop_icassp",
            "radiodiff.data.tx_crop",
            f"radiodiff crop {ARRANGED} {CROPS}",
            ("crop_icassp",),
            (ARRANGED,),
            (Output(CROPS),),
        ),
        Stage(
            "eda",
            "radiodiff.eda.analysis",
            f"radiodiff eda --radiomapseer {RMS_ROOT} --icassp {ICASSP_ROOT} --out results/eda",
            (
                "eda",
                "data.radiomapseer.simulation",
                "data.radiomapseer.split",
                "data.radiomapseer.allow_missing_maps",
                "data.icassp.task",
                "data.icassp.split",
            ),
            (RMS_ROOT, ICASSP_ROOT, RMS_VALIDATION, ICASSP_VALIDATION),
            (Output("results/eda"),),
        ),
    ]
    for name in VAE_NAMES:
        folder = f"results/vae/{name}"
        if name == "radiomapseer":
            args, deps = f"--root {RMS_ROOT} --edges {EDGES}", (RMS_ROOT, RMS_VALIDATION, EDGES)
            data = ("data.radiomapseer.simulation", "data.radiomapseer.image_size")
            data += (
                "data.radiomapseer.gain_threshold",
                "data.radiomapseer.split",
                "data.radiomapseer.allow_missing_maps",
            )
        else:
            args, deps, data = f"--crops {CROPS}", (CROPS, ICASSP_VALIDATION), ()
        stages.append(
            Stage(
                f"train_vae_{name}",
                "radiodiff.train.vae",
                f"radiodiff train vae {name} {args} --out {folder}",
                (f"train_vae_{name}", *data),
                deps,
                _training_outs(folder),
                accelerator=True,
            )
        )
    for kind in MODEL_KINDS:
        for ds in DATASETS:
            folder = f"results/{kind}/{ds}"
            if ds == "radiomapseer":
                args, deps, data = f"--root {RMS_ROOT}", (RMS_ROOT, RMS_VALIDATION), RMS_DATA
                vaes = {"vae": "results/vae/radiomapseer/model"}
            else:
                args, deps, data = f"--crops {CROPS} --arranged {ARRANGED}", (CROPS, ARRANGED, ICASSP_VALIDATION), ()
                vaes = {f"vae-{n}": f"results/vae/{n}/model" for n in ("radio", "building", "antenna")}
            if kind == "ldm":
                args += "".join(f" --{flag} {path}" for flag, path in vaes.items())
                deps += tuple(vaes.values())
            stages.append(
                Stage(
                    f"train_{kind}_{ds}",
                    f"radiodiff.train.{kind}",
                    f"radiodiff train {kind} {ds} {args} --out {folder}",
                    (f"train_{kind}_{ds}", *data),
                    deps,
                    _training_outs(folder) + ((Output(f"{folder}/previews"),) if kind == "ldm" else ()),
                    accelerator=True,
                )
            )
    for ds in DATASETS:
        source = f"--root {RMS_ROOT}" if ds == "radiomapseer" else f"--crops {CROPS}"
        data = RMS_DATA if ds == "radiomapseer" else ()
        models = (f"results/ldm/{ds}/model", f"results/radiounet/{ds}/model")
        samples = f"results/samples/{ds}"
        stages.append(
            Stage(
                f"sample_{ds}",
                "radiodiff.evaluate.sample_test",
                f"radiodiff sample {ds} {source} --ldm {models[0]} --radiounet {models[1]} --out {samples}",
                (*SAMPLE_KEYS, *data),
                (source.split()[1], *models),
                (Output(samples),),
                accelerator=True,
            )
        )
        scoring = tuple(
            k for k in data if k not in ("data.radiomapseer.condition", "data.radiomapseer.physics_exponent")
        )
        folder = f"results/evaluate/{ds}"
        stages.append(
            Stage(
                f"evaluate_{ds}",
                "radiodiff.evaluate.score_test",
                f"radiodiff evaluate {ds} {source} --samples {samples} --out {folder}",
                (*scoring, "evaluate"),
                (source.split()[1], samples),
                (
                    Output(f"{folder}/summary.json", metric=True),
                    Output(
                        f"{folder}/per_sample.csv",
                        plot={"x": "name", "y": "rmse" if ds == "radiomapseer" else "rmse_db"},
                    ),
                ),
            )
        )
    models = ("results/ldm/icassp/model", "results/radiounet/icassp/model")
    stages.append(
        Stage(
            "sample_icassp_full",
            "radiodiff.evaluate.sample_whole",
            f"radiodiff sample icassp_full --arranged {ARRANGED} --ldm {models[0]} --radiounet {models[1]} "
            f"--out {FULL_SAMPLES}",
            ("sample.steps", "sample.seed", "sample.use_ema", "sample.precision", "sample.window"),
            (ARRANGED, *models),
            (Output(FULL_SAMPLES),),
            accelerator=True,
        )
    )
    stages.append(
        Stage(
            "evaluate_icassp_full",
            "radiodiff.evaluate.score_whole",
            f"radiodiff evaluate icassp_full --arranged {ARRANGED} --samples {FULL_SAMPLES} --out {FULL_EVALUATE}",
            (),
            (ARRANGED, FULL_SAMPLES),
            (
                Output(f"{FULL_EVALUATE}/summary.json", metric=True),
                Output(f"{FULL_EVALUATE}/per_sample.csv", plot={"x": "name", "y": "rmse_db"}),
            ),
        )
    )
    models = tuple(f"results/{kind}/{ds}/model" for kind in MODEL_KINDS for ds in DATASETS)
    stages.append(
        Stage(
            "benchmark",
            "radiodiff.benchmark",
            f"radiodiff benchmark --models {' '.join(models)} --out results/benchmark.json",
            ("benchmark", "sample.window", "sample.precision"),
            models,
            (Output("results/benchmark.json", metric=True),),
            accelerator=True,
        )
    )
    trained = [f"results/vae/{n}" for n in VAE_NAMES] + [f"results/{k}/{d}" for k in MODEL_KINDS for d in DATASETS]
    stages.append(
        Stage(
            "report",
            "radiodiff.report.build",
            f"radiodiff report --results results --radiomapseer {RMS_ROOT} --icassp-crops {CROPS} "
            f"--icassp-arranged {ARRANGED} --validation data/validation --out results/report",
            # the report prints every section (the params used), so it declares them all; an edit
            # anywhere re-runs some stage upstream of it anyway, and a `report.*` edit re-runs it alone
            ALL_SECTIONS,
            (
                RMS_ROOT,
                CROPS,
                ARRANGED,
                RMS_VALIDATION,
                ICASSP_VALIDATION,
                "results/eda",
                *(f"{t}/{f}" for t in trained for f in ("metrics.json", "train_log.csv")),
                *(f"results/ldm/{d}/previews" for d in DATASETS),
                *(f"results/samples/{d}" for d in (*DATASETS, "icassp_full")),
                *(
                    f"results/evaluate/{d}/{f}"
                    for d in (*DATASETS, "icassp_full")
                    for f in ("summary.json", "per_sample.csv")
                ),
                "results/benchmark.json",
            ),
            (Output("results/report"),),
        )
    )
    return stages


STAGES: dict[str, Stage] = {s.name: s for s in _table()}

_PLACEHOLDER = re.compile(r"\$\{([\w.]+)\}")


def resolve(text: str, params: dict) -> str:
    """``text`` with every ``${dotted.key}`` replaced by its value in ``params``."""

    def value(m: re.Match) -> str:
        node = params
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)

    return _PLACEHOLDER.sub(value, text)


def init_deps(stage: str, params: dict) -> list[str]:
    """The model folder a training stage starts from (its ``train.init_from``), when one is set:
    an input of the stage under both engines (Snakemake reads its config, ``dvc.yaml`` is written
    from ``params.yaml``)."""
    train = (params.get(stage) or {}).get("train") or {}
    if not (stage.startswith("train_") and train.get("init_from")):
        return []
    folder = str(train["init_from"]).rstrip("/")
    for out in STAGES[stage].outs:
        if folder == out.path or folder.startswith(out.path + "/"):
            raise ParamsError(
                f"{stage}.train.init_from: {folder} is this stage's own output (a cycle, and deleted before "
                "the stage runs); copy the model folder elsewhere (e.g. models/) and point init_from there"
            )
    return [folder]


WEIGHT_FILES = ("lpips_backbone_path", "fid_weights")  # the `evaluate` section's network files


def evaluate_deps(stage: str, params: dict) -> list[str]:
    """The network weight files a test-split evaluate stage reads (``evaluate.lpips_backbone_path``
    when ``evaluate.lpips`` is on, ``evaluate.fid_weights`` when set): inputs of the stage under
    both engines, as :func:`init_deps`."""
    if stage not in ("evaluate_radiomapseer", "evaluate_icassp"):
        return []
    section = params.get("evaluate") or {}
    files = [section.get("lpips_backbone_path") if section.get("lpips") else None, section.get("fid_weights")]
    return [str(f) for f in files if f]


def param_deps(stage: str, params: dict) -> list[str]:
    """The inputs of a stage that a params value names (:func:`init_deps`, :func:`evaluate_deps`)."""
    return [*init_deps(stage, params), *evaluate_deps(stage, params)]


def edges(params: dict) -> list[tuple[str, str]]:
    """The DAG's edges (producer, consumer) with the dataset roots of ``params`` (a real root has
    no producer, so the synthesize stages then feed nothing)."""
    producers = {o.path: s.name for s in STAGES.values() for o in s.outs}
    found = set()
    for s in STAGES.values():
        for dep in (*s.deps, *param_deps(s.name, params)):
            path = resolve(dep, params).rstrip("/")
            if path in producers:
                found.add((producers[path], s.name))
    return sorted(found)
