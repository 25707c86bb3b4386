"""``radiodiff``: one subcommand per pipeline stage (named like the stage's verb), plus tools.

Snakemake rules and DVC stages call these subcommands with identical arguments. Each reads
``--params`` (default ``params.yaml``) and receives only the keys its stage declares
(:mod:`radiodiff.stages`). User mistakes print one line and exit non-zero; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.params import load_params, select, write_scale
from radiodiff.stages import STAGES


def stage_params(args, stage: str) -> dict:
    return select(load_params(args.params), list(STAGES[stage].params))


def _progress(desc: str):
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, mininterval=2.0)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


def _done(summary: dict, t0: float) -> None:
    summary = {**summary, "seconds": round(time.time() - t0, 2)}
    print(json.dumps(summary, default=str))


def cmd_synthesize(args) -> None:
    t0 = time.time()
    if args.dataset == "radiomapseer":
        from radiodiff.synthetic.radiomapseer import UrbanModel, synthesize

        p = stage_params(args, "synthesize_radiomapseer")["synthesize_radiomapseer"] if args.params else {}
        for flag in ("maps", "tx_per_map", "seed"):
            if getattr(args, flag) is not None:
                p[flag] = getattr(args, flag)
        missing = [k for k in ("maps", "tx_per_map") if k not in p]
        if missing:
            raise RadiodiffError(f"synthesize radiomapseer: give --{missing[0].replace('_', '-')} or --params")
        model = UrbanModel(**{k: p[k] for k in UrbanModel.__dataclass_fields__ if k in p})
        keys = ("seed", "size_px", "building_fraction", "cars", "cars_per_map")
        summary = synthesize(
            args.out,
            p["maps"],
            p["tx_per_map"],
            model=model,
            progress=_progress("synthesize radiomapseer"),
            **{k: p[k] for k in keys if k in p},
        )
    else:
        from radiodiff.synthetic.icassp import synthesize

        p = stage_params(args, "synthesize_icassp")["synthesize_icassp"] if args.params else {}
        for flag in ("buildings", "seed"):
            if getattr(args, flag) is not None:
                p[flag] = getattr(args, flag)
        if "buildings" not in p:
            raise RadiodiffError("synthesize icassp: give --buildings or --params")
        p = {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}
        summary = synthesize(args.out, progress=_progress("synthesize icassp"), **p)
    _done({"stage": f"synthesize_{args.dataset}", "out": args.out, **summary}, t0)


def cmd_validate(args) -> None:
    t0 = time.time()
    from radiodiff.core.io import write_json

    if args.dataset == "radiomapseer":
        from radiodiff.data.validate_radiomapseer import validate

        d = stage_params(args, "validate_radiomapseer")["data"]["radiomapseer"]
        report = validate(args.root, simulation=d["simulation"], condition=d["condition"])
    else:
        from radiodiff.data.validate_icassp import validate

        report = validate(args.root, task=stage_params(args, "validate_icassp")["data"]["icassp"]["task"])
    for w in report.get("warnings", [])[:10]:
        print(f"warning: {w}", file=sys.stderr)
    if not report["ok"]:
        problems = report["problems"]
        listing = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise DataError(f"{args.root}: {len(problems)} problem(s) found:\n{listing}{more}")
    if args.out:
        write_json(args.out, report)
    _done({"stage": f"validate_{args.dataset}", "ok": True, "counts": report.get("counts")}, t0)


def cmd_edges(args) -> None:
    t0 = time.time()
    from radiodiff.data.edges import extract_edges

    p = stage_params(args, "edges")
    sim = p["data"]["radiomapseer"]["simulation"]
    summary = extract_edges(Path(args.root) / "gain" / sim, args.out, **p["edges"])
    _done({"stage": "edges", **summary}, t0)


def cmd_arrange(args) -> None:
    t0 = time.time()
    from radiodiff.data.arrange_icassp import arrange

    p = stage_params(args, "arrange_icassp")
    d = p["data"]["icassp"]
    summary = arrange(args.root, args.out, task=d["task"], split_cfg=d["split"], **p["arrange_icassp"])
    _done({"stage": "arrange_icassp", **summary}, t0)


def cmd_crop(args) -> None:
    t0 = time.time()
    from radiodiff.data.tx_crop import crop

    summary = crop(args.arranged, args.out, **stage_params(args, "crop_icassp")["crop_icassp"])
    _done({"stage": "crop_icassp", **summary}, t0)


def cmd_eda(args) -> None:
    t0 = time.time()
    from radiodiff.eda.analysis import run_eda

    summary = run_eda(args.radiomapseer, args.icassp, args.out, stage_params(args, "eda"))
    _done({"stage": "eda", **summary}, t0)


def cmd_train(args) -> None:
    t0 = time.time()
    if args.model == "vae":
        _train_vae(args, t0)
        return
    stage = f"train_{args.model}_{args.name}"
    if stage not in STAGES:
        raise RadiodiffError(f"train {args.model}: no dataset {args.name!r} (radiomapseer or icassp)")
    p = stage_params(args, stage)
    if args.name == "radiomapseer":
        if not args.root:
            raise RadiodiffError(f"train {args.model} radiomapseer: give --root")
        inputs = {"root": args.root, "data": p["data"]["radiomapseer"]}
    else:
        if not args.crops:
            raise RadiodiffError(f"train {args.model} icassp: give --crops")
        inputs = {"crops": args.crops}
    if args.model == "ldm":
        from radiodiff.train.ldm import train_ldm

        names = ("vae",) if args.name == "radiomapseer" else ("vae_radio", "vae_building", "vae_antenna")
        for name in names:
            value = getattr(args, name)
            if not value:
                raise RadiodiffError(
                    f"train ldm {args.name}: give --{name.replace('_', '-')} (a trained VAE model folder)"
                )
            inputs[name] = value
        metrics = train_ldm(args.name, p[stage], inputs, Path(args.out))
    else:
        from radiodiff.train.radiounet import train_radiounet

        metrics = train_radiounet(args.name, p[stage], inputs, Path(args.out))
    _done({"stage": stage, **{k: metrics[k] for k in ("nmse", "rmse", "ssim", "psnr", "steps", "steps_per_s")}}, t0)


def _train_vae(args, t0: float) -> None:
    from radiodiff.train.vae import train_vae

    if args.name not in ("radiomapseer", "building", "antenna", "radio"):
        raise RadiodiffError(f"train vae: no VAE {args.name!r} (radiomapseer, building, antenna or radio)")
    stage = f"train_vae_{args.name}"
    p = stage_params(args, stage)
    if args.name == "radiomapseer":
        if not (args.root and args.edges):
            raise RadiodiffError("train vae radiomapseer: give --root and --edges")
        inputs = {"root": args.root, "edges": args.edges, "data": p["data"]["radiomapseer"]}
    else:
        if not args.crops:
            raise RadiodiffError(f"train vae {args.name}: give --crops")
        inputs = {"crops": args.crops}
    metrics = train_vae(args.name, p[stage], inputs, Path(args.out))
    _done({"stage": stage, **{k: metrics[k] for k in ("rmse", "psnr", "ssim", "steps", "steps_per_s")}}, t0)


def cmd_sample(args) -> None:
    t0 = time.time()
    from radiodiff.evaluate import sampling

    stage = f"sample_{args.dataset}"
    p = stage_params(args, stage)
    if args.dataset == "radiomapseer":
        if not args.root:
            raise RadiodiffError("sample radiomapseer: give --root")
        summary = sampling.sample_radiomapseer(
            args.root, p["data"]["radiomapseer"], args.ldm, args.radiounet, args.out, p["sample"]
        )
    else:
        if not args.crops:
            raise RadiodiffError("sample icassp: give --crops")
        summary = sampling.sample_icassp(args.crops, args.ldm, args.radiounet, args.out, p["sample"])
    _done({"stage": stage, **summary}, t0)


def cmd_evaluate(args) -> None:
    t0 = time.time()
    from radiodiff.evaluate import scoring

    if args.model:
        if not (args.root and args.out):
            raise RadiodiffError("evaluate --model: give --root (dataset folder; ICASSP: a crops folder) and --out")
        p = load_params(args.params) if Path(args.params).is_file() else {}
        data = p.get("data", {}).get("radiomapseer")
        s = p.get("sample", {"steps": None, "seed": 0, "batch_size": 16})
        summary = scoring.evaluate_model(
            args.model,
            args.root,
            args.out,
            data=data,
            steps=args.steps or s["steps"],
            seed=s["seed"],
            batch_size=s["batch_size"],
        )
    else:
        if not (args.dataset and args.samples and args.out):
            raise RadiodiffError("evaluate: give DATASET --samples DIR --out DIR (or --model DIR --root DIR)")
        stage = f"evaluate_{args.dataset}"
        p = stage_params(args, stage)
        if args.dataset == "radiomapseer":
            if not args.root:
                raise RadiodiffError("evaluate radiomapseer: give --root")
            summary = scoring.evaluate_radiomapseer(args.root, p["data"]["radiomapseer"], args.samples, args.out)
        else:
            if not args.crops:
                raise RadiodiffError("evaluate icassp: give --crops")
            summary = scoring.evaluate_icassp(args.crops, args.samples, args.out)
    print(scoring.headline_table(summary), file=sys.stderr)
    _done({"stage": "evaluate", "out": args.out}, t0)


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
    p = load_params(args.params) if args.params and Path(args.params).is_file() else {}
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
        data=p.get("data", {}).get("radiomapseer"),
        steps=args.steps,
        seed=args.seed,
    )
    for path in paths:
        print(path)


def cmd_benchmark(args) -> None:
    t0 = time.time()
    from radiodiff.evaluate.benchmark import run_benchmark

    p = stage_params(args, "benchmark")
    summary = run_benchmark(args.models, args.out, p)
    _done({"stage": "benchmark", "out": args.out, "models": list(summary["models"])}, t0)


def cmd_report(args) -> None:
    t0 = time.time()
    from radiodiff.report.build import build_report

    summary = build_report(
        args.results,
        args.radiomapseer,
        args.icassp_crops,
        args.validation,
        args.out,
        stage_params(args, "report"),
        snakefile=args.snakefile,
    )
    _done({"stage": "report", **summary}, t0)


def cmd_scale(args) -> None:
    path = write_scale(args.name, repo=args.repo)
    print(f"wrote {path} from params/{args.name}.yaml")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radiodiff", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def stage_cmd(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        p.set_defaults(func=func)
        return p

    p = stage_cmd("synthesize", "write a physics-based synthetic dataset in the real layout", cmd_synthesize)
    p.add_argument("dataset", choices=["radiomapseer", "icassp"])
    p.add_argument("out", help="output folder (replaced atomically)")
    p.add_argument("--maps", type=int, help="radiomapseer: number of maps")
    p.add_argument("--tx-per-map", type=int, help="radiomapseer: transmitters per map")
    p.add_argument("--buildings", type=int, help="icassp: number of buildings")
    p.add_argument("--seed", type=int, help="generator seed")
    p.set_defaults(params=None)
    p.epilog = "Values come from --params FILE when given, flags override them."

    p = stage_cmd("validate", "check a dataset folder; write a JSON report or list the problems", cmd_validate)
    p.add_argument("dataset", choices=["radiomapseer", "icassp"])
    p.add_argument("root", help="dataset folder")
    p.add_argument("--out", help="JSON report path (written only when the folder is valid)")

    p = stage_cmd("edges", "edge maps of the RadioMapSeer gain maps", cmd_edges)
    p.add_argument("root", help="RadioMapSeer folder")
    p.add_argument("out", help="output folder of edge PNGs")

    p = stage_cmd("arrange", "ICASSP 3-channel inputs (reflectance, transmittance, FSPL with pattern)", cmd_arrange)
    p.add_argument("root", help="ICASSP 2025 folder")
    p.add_argument("out", help="output folder")

    p = stage_cmd("crop", "Tx-aware fixed-size crops of the arranged ICASSP samples", cmd_crop)
    p.add_argument("arranged", help="arrange output folder")
    p.add_argument("out", help="output folder")

    p = stage_cmd("eda", "exploratory figures and eda.json for both datasets", cmd_eda)
    p.add_argument("--radiomapseer", required=True, help="RadioMapSeer folder")
    p.add_argument("--icassp", required=True, help="ICASSP 2025 folder")
    p.add_argument("--out", required=True, help="output folder (figures + eda.json)")

    p = stage_cmd("train", "train a model of the DAG (VAEs, the RadioDiff LDM, the RadioUNet baseline)", cmd_train)
    p.add_argument("model", choices=["vae", "ldm", "radiounet"])
    p.add_argument("name", help="vae: radiomapseer, building, antenna or radio; ldm/radiounet: radiomapseer or icassp")
    p.add_argument("--out", required=True, help="output folder (model/, metrics.json, train_log.csv)")
    p.add_argument("--root", help="RadioMapSeer dataset folder")
    p.add_argument("--edges", help="vae radiomapseer: edges stage output")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")
    p.add_argument("--vae", help="ldm radiomapseer: the RadioMapSeer VAE model folder")
    p.add_argument("--vae-radio", dest="vae_radio", help="ldm icassp: the radio VAE model folder")
    p.add_argument("--vae-building", dest="vae_building", help="ldm icassp: the building VAE model folder")
    p.add_argument("--vae-antenna", dest="vae_antenna", help="ldm icassp: the antenna VAE model folder")

    p = stage_cmd("sample", "test-split predictions of RadioDiff, RadioUNet and the physics baseline", cmd_sample)
    p.add_argument("dataset", choices=["radiomapseer", "icassp"])
    p.add_argument("--ldm", required=True, help="trained LDM model folder")
    p.add_argument("--radiounet", required=True, help="trained RadioUNet model folder")
    p.add_argument("--out", required=True, help="output folder (one subfolder of PNGs per method + sampling.json)")
    p.add_argument("--root", help="RadioMapSeer dataset folder")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")

    p = stage_cmd(
        "evaluate", "score the sampled maps (stage), or a trained model on another dataset root", cmd_evaluate
    )
    p.add_argument("dataset", nargs="?", choices=["radiomapseer", "icassp"])
    p.add_argument("--samples", help="sample stage output")
    p.add_argument("--out", help="output folder (summary.json, per_sample.csv)")
    p.add_argument("--root", help="RadioMapSeer dataset folder (with --model: ICASSP takes a crops folder)")
    p.add_argument("--crops", help="ICASSP: crop_icassp output")
    p.add_argument("--model", help="score this trained model folder on --root instead (no retraining)")
    p.add_argument("--steps", type=int, help="with --model: RadioDiff sampling steps (default: params sample.steps)")

    p = sub.add_parser("predict", help="radio maps from a trained model folder; prints the PNG paths")
    p.add_argument("--model", required=True, help="results/ldm/<dataset>/model or results/radiounet/<dataset>/model")
    p.add_argument("--out", required=True, help="output folder for the PNGs")
    p.add_argument("--buildings", help="RadioMapSeer: buildings PNG (255 = building)")
    p.add_argument("--tx", help="RadioMapSeer: Tx pixel as ROW,COL in the buildings PNG")
    p.add_argument("--cars", help="RadioMapSeer dynamic condition: cars PNG")
    p.add_argument("--input", help="ICASSP: raw input RGB PNG (reflectance, transmittance, distance)")
    p.add_argument("--pattern", help="ICASSP: the antenna's pattern CSV (360 gains in dB)")
    p.add_argument("--band", type=int, help="ICASSP: band 1, 2 or 3")
    p.add_argument("--azimuth", type=float, default=0.0, help="ICASSP: Tx azimuth in degrees (default 0)")
    p.add_argument("--input-dir", dest="input_dir", help="a RadioMapSeer folder or a crop_icassp folder: predict all")
    p.add_argument("--steps", type=int, help="RadioDiff sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--params", default="params.yaml", help="params file for data settings (optional)")
    p.set_defaults(func=cmd_predict)

    p = stage_cmd("benchmark", "timed training steps and sampling per trained model", cmd_benchmark)
    p.add_argument("--models", nargs="+", required=True, help="trained model folders (results/*/*/model)")
    p.add_argument("--out", required=True, help="output JSON (results/benchmark.json)")

    p = stage_cmd("report", "the HTML + Markdown report from the pipeline's outputs (trains nothing)", cmd_report)
    p.add_argument(
        "--results", default="results", help="results folder (training logs, samples, evaluation, EDA, benchmark)"
    )
    p.add_argument("--radiomapseer", required=True, help="RadioMapSeer folder (ground truth for the sample grids)")
    p.add_argument("--icassp-crops", dest="icassp_crops", required=True, help="crop_icassp output")
    p.add_argument("--validation", default="data/validation", help="folder of the validation reports")
    p.add_argument("--snakefile", help="draw the DAG from `snakemake --dag` of this Snakefile")
    p.add_argument("--out", required=True, help="output folder (index.html, report.md, figures/)")

    p = sub.add_parser("scale", help="write the preset params/NAME.yaml into params.yaml (quick, paper, ci)")
    p.add_argument("name")
    p.add_argument("--repo", default=".", help="repository root (default: .)")
    p.set_defaults(func=cmd_scale)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
