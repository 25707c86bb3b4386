"""Benchmark: the quality frontier with compute (issue 28 item 6).

Trains the RadioMapSeer LDM and RadioUNet of a finished quick workspace at several multiples of
the preset's training budget (``max_steps`` × k, with ``lr_horizon = max_steps`` so each run's
schedule decays over its own length), samples and scores each on the workspace's test split with
the stages' own commands, and plots test NMSE against training steps and training FLOPs (FLOPs
per step counted with :func:`radiodiff.benchmark.count_flops` at the stage's batch size; seconds
per step measured on this machine, with nothing else running, over a few timed steps).

    radiodiff scale quick && snakemake --cores all      # the workspace
    python benchmarks/frontier.py --workspace . --multiples 1 3 10 --out frontier

Writes ``frontier.json`` and ``frontier.png`` into ``--out`` (runs under ``--out/runs/``); a run
already finished there is reused, so the script can be stopped and started again. Each LDM run
uses the workspace's VAE (frozen) and each sample stage the other model of the workspace.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

STAGE = {"ldm": "train_ldm_radiomapseer", "radiounet": "train_radiounet_radiomapseer"}
METHOD = {"ldm": "radiodiff", "radiounet": "radiounet"}


def run(cmd: list[str], cwd: Path, log: Path) -> None:
    with open(log, "w") as f:
        p = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}); see {log}")


def params_for(base: dict, model: str, k: int, state_dir: Path) -> dict:
    """The workspace's params with the model's budget × ``k`` (schedule over its own length)."""
    p = yaml.safe_load(yaml.safe_dump(base))
    train = p[STAGE[model]]["train"]
    steps = int(train["max_steps"]) * k
    train.update(max_steps=steps, lr_horizon=steps, save_every=max(steps // 4, 1), eval_every=max(steps // 6, 1))
    if model == "ldm":
        p[STAGE[model]]["previews"]["sample_every"] = None
    p["runtime"]["state_dir"] = str(state_dir)
    return p


def train_sample_score(ws: Path, out: Path, model: str, k: int, base: dict) -> dict:
    """One run: train, sample, evaluate (each skipped when its output exists); its summary row."""
    folder = out / "runs" / f"{model}-x{k}"
    folder.mkdir(parents=True, exist_ok=True)
    params = folder / "params.yaml"
    params.write_text(yaml.safe_dump(params_for(base, model, k, folder / "state"), sort_keys=False))
    root = base["data"]["radiomapseer"]["root"]
    trained = folder / "model"
    if not (trained / "metrics.json").is_file():
        cmd = ["radiodiff", "train", model, "radiomapseer", "--root", root, "--out", str(trained)]
        cmd += ["--vae", "results/vae/radiomapseer/model"] if model == "ldm" else []
        t0 = time.perf_counter()
        run([*cmd, "--params", str(params)], ws, folder / "train.log")
        (folder / "train_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    ldm = trained / "model" if model == "ldm" else ws / "results/ldm/radiomapseer/model"
    unet = trained / "model" if model == "radiounet" else ws / "results/radiounet/radiomapseer/model"
    if not (folder / "eval/summary.json").is_file():
        cmd = ["radiodiff", "sample", "radiomapseer", "--root", root, "--ldm", str(ldm), "--radiounet", str(unet)]
        run([*cmd, "--out", str(folder / "samples"), "--params", str(params)], ws, folder / "sample.log")
        cmd = ["radiodiff", "evaluate", "radiomapseer", "--root", root, "--samples", str(folder / "samples")]
        run([*cmd, "--out", str(folder / "eval"), "--params", str(params)], ws, folder / "eval.log")
    summary = json.loads((folder / "eval/summary.json").read_text())
    metrics = json.loads((trained / "metrics.json").read_text())
    row = {
        "model": model,
        "multiple": k,
        "steps": metrics["steps"],
        "batch_size": metrics["params"]["train"]["batch_size"],
        "test_nmse": summary[METHOD[model]]["nmse"],
        "val_nmse": metrics["nmse"],
        "train_wall_s": float((folder / "train_wall_s.txt").read_text())
        if (folder / "train_wall_s.txt").is_file()
        else None,
    }
    if model == "ldm" and "radiodiff_mean" in summary:
        row["test_nmse_mean_of_k"] = summary["radiodiff_mean"]["nmse"]
        row["k"] = summary["radiodiff_mean"].get("k")
    return row


def step_cost(ws: Path, model: str, batch: int) -> dict:
    """FLOPs and seconds of one training step of the workspace's model at ``batch``."""
    import torch

    from radiodiff.benchmark import time_training
    from radiodiff.models.pipelines import load_pipeline

    folder = ws / ("results/ldm/radiomapseer/model" if model == "ldm" else "results/radiounet/radiomapseer/model")
    t = time_training(load_pipeline(folder), batch, steps=5, warmup=1, device=torch.device("cpu"))
    return {"flops_per_step": t["flops_per_step"], "s_per_step": t["ms_per_step"] / 1000}


def plot(rows: list[dict], costs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for model, colour in (("ldm", "tab:blue"), ("radiounet", "tab:orange")):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["steps"])
        if not mine:
            continue
        label = "RadioDiff (LDM)" if model == "ldm" else "RadioUNet"
        steps = [r["steps"] for r in mine]
        flops = [r["steps"] * costs[model]["flops_per_step"] for r in mine]
        nmse = [r["test_nmse"] for r in mine]
        for ax, x in zip(axes, (steps, flops), strict=True):
            ax.plot(x, nmse, "o-", color=colour, label=label)
            for r, xi in zip(mine, x, strict=True):
                ax.annotate(
                    f"×{r['multiple']}", (xi, r["test_nmse"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
            if model == "ldm" and all("test_nmse_mean_of_k" in r for r in mine):
                k = mine[0].get("k")
                ax.plot(x, [r["test_nmse_mean_of_k"] for r in mine], "s--", color=colour, alpha=0.6,
                        label=f"RadioDiff, mean of {k} samples")  # fmt: skip
    axes[0].set_xlabel("training steps")
    axes[1].set_xlabel("training FLOPs (matmuls and convolutions; the LDM's frozen VAE encoding included)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylabel("test NMSE (RadioMapSeer, buildings zeroed)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Quality against training compute (quick preset's data and VAE; schedule over each run's length)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=".", help="a finished quick-preset workspace (params.yaml, data/, results/)")
    ap.add_argument("--multiples", type=int, nargs="+", default=[1, 3, 10], help="budgets as multiples of the preset's")
    ap.add_argument("--models", nargs="+", default=["ldm", "radiounet"], choices=sorted(STAGE))
    ap.add_argument("--out", default="frontier", help="output folder (runs are kept and reused)")
    args = ap.parse_args(argv)

    ws, out = Path(args.workspace).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load((ws / "params.yaml").read_text())
    costs = {m: step_cost(ws, m, int(base[STAGE[m]]["train"]["batch_size"])) for m in args.models}
    rows = []
    for k in args.multiples:
        for model in args.models:
            rows.append(train_sample_score(ws, out, model, k, base))
            print(json.dumps(rows[-1]), flush=True)
    for r in rows:
        r["train_flops"] = r["steps"] * costs[r["model"]]["flops_per_step"]
        r["train_s_quiet"] = r["steps"] * costs[r["model"]]["s_per_step"]
    ratios = {}
    for k in args.multiples:
        by = {r["model"]: r for r in rows if r["multiple"] == k}
        if {"ldm", "radiounet"} <= set(by):
            ratios[f"x{k}"] = by["ldm"]["test_nmse"] / by["radiounet"]["test_nmse"]
    result = {"workspace": str(ws), "step_costs": costs, "runs": rows, "radiodiff_over_radiounet_nmse": ratios}
    (out / "frontier.json").write_text(json.dumps(result, indent=2))
    plot(rows, costs, out / "frontier.png")
    print(json.dumps(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
