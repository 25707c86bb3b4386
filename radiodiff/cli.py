"""``radiodiff``: one subcommand per pipeline stage (named like the stage's verb), plus tools.

Snakemake rules and DVC stages call these subcommands with identical arguments. A stage
subcommand only dispatches: it reads ``--params`` (default ``params.yaml``), hands the stage's
handler (:mod:`radiodiff.dag.stages`) exactly the keys the stage declares plus the
``runtime`` section, and prints the handler's summary as JSON. User mistakes print one line and
exit non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.params import (
    DEFAULT_PARAMS,
    load_params,
    schema_default_params,
    schema_path,
    select,
    write_scale,
)
from radiodiff.dag.stages import STAGES


def read_params(params_file: str, notice: bool = True) -> dict:
    """The values of ``params_file``; outside a checkout (no ``params.yaml`` here) the schema's
    defaults, saying so (``notice``: the stage commands do; predict and evaluate --model, made to
    run on a model folder anywhere, do not)."""
    if params_file == DEFAULT_PARAMS and not Path(params_file).is_file():
        if notice:
            print(
                f"radiodiff: no {DEFAULT_PARAMS} here; using the schema's defaults ({schema_path()})", file=sys.stderr
            )
        return schema_default_params()
    return load_params(params_file)


def stage_params(params_file: str | None, stage: str) -> dict:
    """The stage's declared keys of ``params_file`` (none without one) plus its ``runtime`` section."""
    if params_file is None:
        return {}
    params = read_params(params_file)
    return {**select(params, list(STAGES[stage].params)), "runtime": params["runtime"]}


def run_stage(stage: str, params: dict, kwargs: dict) -> dict:
    """Call the stage's handler ``run(params, **kwargs)``."""
    return importlib.import_module(STAGES[stage].handler).run(params, **kwargs)


# --------------------------------------------------------------------------- stage subcommands:
# each turns its arguments into (stage name, handler keyword arguments).


def _synthesize(args) -> tuple[str, dict]:
    if args.dataset == "radiomapseer":
        return "synthesize_radiomapseer", {
            "out": args.out, "maps": args.maps, "tx_per_map": args.tx_per_map, "seed": args.seed
        }  # fmt: skip
    return "synthesize_icassp", {"out": args.out, "buildings": args.buildings, "seed": args.seed}


def _validate(args) -> tuple[str, dict]:
    return f"validate_{args.dataset}", {"root": args.root, "out": args.out}


def _edges(args) -> tuple[str, dict]:
    return "edges", {"root": args.root, "out": args.out}


def _arrange(args) -> tuple[str, dict]:
    return "arrange_icassp", {"root": args.root, "out": args.out}


def _crop(args) -> tuple[str, dict]:
    return "crop_icassp", {"arranged": args.arranged, "out": args.out}


def _eda(args) -> tuple[str, dict]:
    return "eda", {"radiomapseer_root": args.radiomapseer, "icassp_root": args.icassp, "out": args.out}


def _train(args) -> tuple[str, dict]:
    stage = f"train_{args.model}_{args.name}"
    if stage not in STAGES:
        names = "radiomapseer, building, antenna or radio" if args.model == "vae" else "radiomapseer or icassp"
        raise RadiodiffError(
            f"train {args.model}: no {'VAE' if args.model == 'vae' else 'dataset'} {args.name!r} ({names})"
        )
    paths = {"out": args.out, "root": args.root, "crops": args.crops}
    if args.model == "vae":
        return stage, {"name": args.name, "edges": args.edges, **paths}
    paths["arranged"] = args.arranged
    if args.model == "ldm":
        vaes = {k: getattr(args, k) for k in ("vae", "vae_radio", "vae_building", "vae_antenna")}
        return stage, {"dataset": args.name, **paths, **vaes}
    return stage, {"dataset": args.name, **paths}


def _sample(args) -> tuple[str, dict]:
    if args.dataset == "icassp_full":
        if not args.arranged:
            raise RadiodiffError("sample icassp_full: give --arranged (the arrange_icassp output)")
        paths = {"arranged": args.arranged, "ldm": args.ldm, "radiounet": args.radiounet, "out": args.out}
        return "sample_icassp_full", paths
    paths = {"ldm": args.ldm, "radiounet": args.radiounet, "out": args.out, "root": args.root, "crops": args.crops}
    return f"sample_{args.dataset}", {"dataset": args.dataset, **paths}


def _evaluate(args) -> tuple[str, dict]:
    if not (args.dataset and args.samples and args.out):
        raise RadiodiffError("evaluate: give DATASET --samples DIR --out DIR (or --model DIR --root DIR)")
    if args.dataset == "icassp_full":
        if not args.arranged:
            raise RadiodiffError("evaluate icassp_full: give --arranged (the arrange_icassp output)")
        return "evaluate_icassp_full", {"arranged": args.arranged, "samples": args.samples, "out": args.out}
    paths = {"samples": args.samples, "out": args.out, "root": args.root, "crops": args.crops}
    return f"evaluate_{args.dataset}", {"dataset": args.dataset, **paths}


def _benchmark(args) -> tuple[str, dict]:
    return "benchmark", {"models": args.models, "out": args.out}


def _report(args) -> tuple[str, dict]:
    paths = {"results": args.results, "radiomapseer": args.radiomapseer, "icassp_crops": args.icassp_crops}
    paths["icassp_arranged"] = args.icassp_arranged
    return "report", {**paths, "validation": args.validation, "out": args.out}


def stage_call(argv: list[str]) -> tuple[str, dict]:
    """The stage and handler arguments a stage command line stands for (without running it)."""
    args = build_parser().parse_args(argv)
    if getattr(args, "stage_call", None) is None:
        raise RadiodiffError(f"{argv[0]}: not a stage subcommand")
    return args.stage_call(args)


def cmd_stage(args) -> None:
    t0 = time.time()
    stage, kwargs = args.stage_call(args)
    params = stage_params(args.params, stage)
    if stage.startswith("train_") and params:
        from radiodiff.train.launch import relaunch

        if relaunch(stage, params, args.argv):  # runtime.num_processes > 1: accelerate launch
            return
    summary = run_stage(stage, params, kwargs)
    print(json.dumps({**summary, "seconds": round(time.time() - t0, 2)}, default=str))


# --------------------------------------------------------------------------- tools


def cmd_evaluate(args) -> None:
    """``evaluate --model``: a trained model on another root; else the ``evaluate_*`` stage."""
    if not args.model:
        cmd_stage(args)
        return
    from radiodiff.evaluate.predict import score_model
    from radiodiff.evaluate.score_test import headline_table

    if not (args.root and args.out):
        raise RadiodiffError("evaluate --model: give --root (dataset folder; ICASSP: a crops folder) and --out")
    p = read_params(args.params, notice=False)  # the schema's defaults outside a checkout
    sample = p["sample"]
    summary = score_model(
        args.model, args.root, args.out, data=p["data"]["radiomapseer"], steps=args.steps,
        seed=sample["seed"] if args.seed is None else args.seed, batch_size=sample["batch_size"],
        ema=sample["use_ema"],
    )  # fmt: skip
    print(headline_table(summary), file=sys.stderr)


def cmd_predict(args) -> None:
    from radiodiff.evaluate.predict import predict

    tx = None
    if args.tx:
        try:
            tx = tuple(int(v) for v in args.tx.split(","))
            assert len(tx) == 2
        except (ValueError, AssertionError):
            raise RadiodiffError(f"--tx: expected ROW,COL (two integers), got {args.tx!r}") from None
    for path in (args.buildings, args.input, args.pattern, args.cars):
        if path and not Path(path).is_file():
            raise DataError(f"{path}: file not found")
    if args.input_dir and not Path(args.input_dir).is_dir():
        raise DataError(f"{args.input_dir}: folder not found")
    p = read_params(args.params, notice=False)  # the schema's defaults outside a checkout
    sample = p["sample"]
    paths = predict(
        args.model,
        args.out,
        buildings=args.buildings,
        tx=tx,
        cars=args.cars,
        input_png=args.input,
        pattern=args.pattern,
        band=args.band,
        azimuth=args.azimuth,
        input_dir=args.input_dir,
        data=p["data"]["radiomapseer"],
        steps=args.steps,
        seed=sample["seed"] if args.seed is None else args.seed,
        batch_size=sample["batch_size"],
        ema=sample["use_ema"],
        pixel_size_m=args.metres_per_pixel,
        window=sample["window"],
    )
    for path in paths:
        print(path)


def cmd_compare(args) -> None:
    from radiodiff.report.compare import run

    run(args.truth, args.pred, args.dataset, args.out, metres_per_pixel=args.metres_per_pixel)


def cmd_scale(args) -> None:
    if not args.name:  # list the presets
        for preset in sorted((Path(args.repo) / "params").glob("*.yaml")):
            first = preset.read_text().splitlines()[:1]
            print(f"{preset.stem:<15} {first[0].lstrip('# ') if first and first[0].startswith('#') else ''}")
        return
    path = write_scale(args.name, repo=args.repo)
    print(f"wrote {path} from params/{args.name}.yaml")


def cmd_recipes(args) -> None:
    from radiodiff.recipes import write_presets

    stale = write_presets(Path(args.repo) / "params", check=args.check)
    if args.check and stale:
        raise RadiodiffError(f"stale preset(s) {', '.join(stale)}: run `radiodiff recipes`")
    print("presets: " + ("up to date" if not stale else f"wrote {', '.join(stale)}"))


def cmd_import(args) -> None:
    from radiodiff.models.import_radiodiff import import_checkpoint

    windows = None
    if args.cross_windows:
        try:
            windows = tuple(int(v) for v in args.cross_windows.split(","))
        except ValueError:
            bad = args.cross_windows
            raise RadiodiffError(f"--cross-windows: expected integers like 8,4,2,1, got {bad!r}") from None
    summary = import_checkpoint(
        args.vae, args.ldm, args.out, version=args.version, image_size=args.image_size,
        condition=args.condition, cross_windows=windows, sampling_steps=args.steps,
    )  # fmt: skip
    print(json.dumps(summary, indent=2))


def cmd_dvc_yaml(args) -> None:
    from radiodiff.dag import dvc_yaml

    if args.check:
        dvc_yaml.check(args.out)
        print(f"{args.out}: up to date")
    else:
        print(f"wrote {dvc_yaml.write(args.out)}")


def _steps(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"sampler steps must be an integer >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiodiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def stage_cmd(name: str, help: str, call, func=cmd_stage) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.set_defaults(func=func, stage_call=call)
        return p

    p = stage_cmd("synthesize", "write a physics-based synthetic dataset in the real layout", _synthesize)
    p.add_argument("dataset", choices=["radiomapseer", "icassp"])
    p.add_argument("out", help="output folder (replaced atomically)")
    p.add_argument("--maps", type=int, help="radiomapseer: number of maps")
    p.add_argument("--tx-per-map", type=int, help="radiomapseer: transmitters per map")
    p.add_argument("--buildings", type=int, help="icassp: number of buildings")
    p.add_argument("--seed", type=int, help="generator seed")
    p.set_defaults(params=None)
    p.epilog = "Values come from --params FILE when given, flags override them."

    p = stage_cmd("validate", "check a dataset folder; write a JSON report or list the problems", _validate)
    p.add_argument("dataset", choices=["radiomapseer", "icassp"])
    p.add_argument("root", help="dataset folder")
    p.add_argument("--out", help="JSON report path (written only when the folder is valid)")

    p = stage_cmd("edges", "edge maps of the RadioMapSeer gain maps", _edges)
    p.add_argument("root", help="RadioMapSeer folder")
    p.add_argument("out", help="output folder of edge PNGs")

    p = stage_cmd("arrange", "ICASSP 3-channel inputs (reflectance, transmittance, FSPL with pattern)", _arrange)
    p.add_argument("root", help="ICASSP 2025 folder")
    p.add_argument("out", help="output folder")

    p = stage_cmd("crop", "Tx-aware fixed-size crops of the arranged ICASSP samples", _crop)
    p.add_argument("arranged", help="arrange output folder")
    p.add_argument("out", help="output folder")

    p = stage_cmd("eda", "exploratory figures and eda.json for both datasets", _eda)
    p.add_argument("--radiomapseer", required=True, help="RadioMapSeer folder")
    p.add_argument("--icassp", required=True, help="ICASSP 2025 folder")
    p.add_argument("--out", required=True, help="output folder (figures + eda.json)")

    p = stage_cmd("train", "train a model of the DAG (VAEs, the RadioDiff LDM, the RadioUNet baseline)", _train)
    p.add_argument("model", choices=["vae", "ldm", "radiounet"])
    p.add_argument("name", help="vae: radiomapseer, building, antenna or radio; ldm/radiounet: radiomapseer or icassp")
    p.add_argument("--out", required=True, help="output folder (model/, metrics.json, train_log.csv)")
    p.add_argument("--root", help="RadioMapSeer dataset folder")
    p.add_argument("--edges", help="vae radiomapseer: edges stage output")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")
    p.add_argument("--arranged", help="ldm/radiounet icassp: arrange_icassp output (random windows, crop_policy mixed)")
    p.add_argument("--vae", help="ldm radiomapseer: the RadioMapSeer VAE model folder")
    p.add_argument("--vae-radio", dest="vae_radio", help="ldm icassp: the radio VAE model folder")
    p.add_argument("--vae-building", dest="vae_building", help="ldm icassp: the building VAE model folder")
    p.add_argument("--vae-antenna", dest="vae_antenna", help="ldm icassp: the antenna VAE model folder")

    p = stage_cmd("sample", "test-split predictions of RadioDiff, RadioUNet and the physics baseline", _sample)
    p.add_argument("dataset", choices=["radiomapseer", "icassp", "icassp_full"], help="icassp_full: whole buildings")
    p.add_argument("--ldm", required=True, help="trained LDM model folder")
    p.add_argument("--radiounet", required=True, help="trained RadioUNet model folder")
    p.add_argument("--out", required=True, help="output folder (one subfolder of PNGs per method + sampling.json)")
    p.add_argument("--root", help="RadioMapSeer dataset folder")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")
    p.add_argument("--arranged", help="icassp_full: arrange_icassp output (whole buildings)")

    p = stage_cmd(
        "evaluate",
        "score the sampled maps (stage), or a trained model on another dataset root",
        _evaluate,
        func=cmd_evaluate,
    )
    p.add_argument("dataset", nargs="?", choices=["radiomapseer", "icassp", "icassp_full"])
    p.add_argument("--samples", help="sample stage output")
    p.add_argument("--arranged", help="icassp_full: arrange_icassp output (whole buildings)")
    p.add_argument("--out", help="output folder (summary.json, per_sample.csv)")
    p.add_argument("--root", help="RadioMapSeer dataset folder (with --model: ICASSP takes a crops folder)")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")
    p.add_argument("--model", help="score this trained model folder on --root instead (no retraining)")
    p.add_argument("--steps", type=_steps, help="with --model: RadioDiff sampler steps (default: the model's own)")
    p.add_argument("--seed", type=int, help="with --model: sampling seed (default: params sample.seed)")

    p = sub.add_parser("predict", help="radio maps from a trained model folder; prints the PNG paths")
    p.add_argument("--model", required=True, help="results/ldm/<dataset>/model or results/radiounet/<dataset>/model")
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--buildings", help="RadioMapSeer: buildings PNG (255 = building)")
    p.add_argument("--tx", help="RadioMapSeer: Tx pixel as ROW,COL in the buildings PNG")
    p.add_argument("--cars", help="RadioMapSeer dynamic condition: cars PNG")
    p.add_argument(
        "--metres-per-pixel",
        dest="metres_per_pixel",
        type=float,
        default=1.0,
        help="RadioMapSeer: metres per pixel of --buildings (default 1, RadioMapSeer's own)",
    )
    p.add_argument("--input", help="ICASSP: raw input RGB PNG (reflectance, transmittance, distance)")
    p.add_argument("--pattern", help="ICASSP: the antenna's pattern CSV (360 gains in dB)")
    p.add_argument("--band", type=int, help="ICASSP: band 1, 2 or 3")
    p.add_argument("--azimuth", type=float, default=0.0, help="ICASSP: Tx azimuth in degrees (default 0)")
    p.add_argument("--input-dir", dest="input_dir", help="a RadioMapSeer folder or a crop_icassp folder: predict all")
    p.add_argument("--steps", type=_steps, help="RadioDiff sampler steps (default: the model's own)")
    p.add_argument("--seed", type=int, help="sampling seed (default: params sample.seed)")
    p.add_argument(
        "--params", default="params.yaml",
        help="params file for the data and sample settings (default params.yaml; without one, the schema's defaults)",
    )  # fmt: skip
    p.set_defaults(func=cmd_predict)

    p = stage_cmd("benchmark", "timed training steps and sampling per trained model", _benchmark)
    p.add_argument("--models", nargs="+", required=True, help="trained model folders (results/*/*/model)")
    p.add_argument("--out", required=True, help="output JSON (results/benchmark.json)")

    p = stage_cmd("report", "the HTML + Markdown report from the pipeline's outputs (trains nothing)", _report)
    p.add_argument(
        "--results", default="results", help="results folder (training logs, samples, evaluation, EDA, benchmark)"
    )
    p.add_argument("--radiomapseer", required=True, help="RadioMapSeer folder (ground truth for the sample grids)")
    p.add_argument("--icassp-crops", dest="icassp_crops", required=True, help="crop_icassp output")
    p.add_argument(
        "--icassp-arranged", dest="icassp_arranged", required=True, help="arrange_icassp output (whole buildings)"
    )
    p.add_argument("--validation", default="data/validation", help="folder of the validation reports")
    p.add_argument("--out", required=True, help="output folder (index.html, report.md, figures/)")

    p = sub.add_parser(
        "compare",
        help="score a folder of predicted maps against a folder of ground truths (statistics, CSVs, figures)",
        description="Pairs files by name (gt-sample-N.png with sample-N.png, else the same name), scores every "
        "pair with the evaluate stages' metrics and writes comparison_statistics.csv, detailed_metrics.csv and "
        "four figures. --truth results/samples/DS/truth --pred results/samples/DS/radiodiff reproduces the "
        "top-level scope of results/evaluate/DS/summary.json up to the ground truth's PNG rounding.",
    )
    p.add_argument("--truth", required=True, help="folder of ground-truth PNGs")
    p.add_argument("--pred", required=True, help="folder of predicted PNGs (may be --truth for gt-sample-N/sample-N)")
    p.add_argument(
        "--dataset", required=True, choices=["radiomapseer", "icassp"],
        help="the maps' encoding: RadioMapSeer gray gain or ICASSP path loss in dB (0 = padding, not scored)",
    )  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (new, or an earlier comparison; replaced atomically)")
    p.add_argument(
        "--metres-per-pixel", dest="metres_per_pixel", type=float,
        help="for the brightest-point distance in metres (default: RadioMapSeer 256 m per map side, ICASSP 0.25 m)",
    )  # fmt: skip
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("scale", help="write params/NAME.yaml into params.yaml; without NAME, list the presets")
    p.add_argument("name", nargs="?", help="quick, ci, paper, paper_jul2025, paper_dec2024, enhanced, paper_smoke")
    p.add_argument("--repo", default=".", help="repository root (default: .)")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser(
        "recipes", help="write the recipe presets (and paper_smoke) from params/paper_jul2025.yaml (--check: if stale)"
    )
    p.add_argument("--check", action="store_true", help="only check that the presets are up to date")
    p.add_argument("--repo", default=".", help="repository root (default: .)")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("import", help="convert another code's checkpoints into a radiodiff model folder")
    p.add_argument("kind", choices=["radiodiff-checkpoint"], help="radiodiff-checkpoint: the original RadioDiff code's")
    p.add_argument("--vae", required=True, help="the original's first-stage checkpoint (e.g. model-29.pt)")
    p.add_argument("--ldm", required=True, help="the original's LDM model-N.pt ('model'; 'ema' when present)")
    p.add_argument("--out", required=True, help="model folder to write (replaced atomically)")
    p.add_argument(
        "--version", choices=["jul2025", "dec2024"], default="jul2025",
        help="the code that trained it: jul2025 (AFT on, default) or dec2024 (AFT weights unused)",
    )  # fmt: skip
    p.add_argument("--image-size", dest="image_size", type=int, default=256, help="map side in pixels (default 256)")
    p.add_argument(
        "--condition", choices=["static", "dynamic"], default="static",
        help="RadioMapSeer condition it was trained on: static [buildings, Tx, buildings] or dynamic (cars)",
    )  # fmt: skip
    p.add_argument(
        "--cross-windows", dest="cross_windows",
        help="relation pooling windows per level, not held by the weights (default 8,4,2,1, the paper's)",
    )  # fmt: skip
    p.add_argument("--steps", type=_steps, default=5, help="the model's default sampler steps (default 5, the paper's)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml from the stage table (--check: fail if it is stale)")
    p.add_argument("--out", default="dvc.yaml", help="path (default: dvc.yaml)")
    p.add_argument("--check", action="store_true", help="only check that the file is up to date")
    p.set_defaults(func=cmd_dvc_yaml)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line itself (a training stage may relaunch it, radiodiff.train.launch)
    try:
        args.func(args)
    except RadiodiffError as e:
        print(f"radiodiff: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("radiodiff: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
