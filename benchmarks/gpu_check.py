"""GPU check: radiodiff on one GPU of a bare machine, in under 5 minutes, from the source tree.

Not yet run on a GPU (none was lent while it was written): its timings and budget shares are estimates.

    bash benchmarks/gpu_check.sh                 # on the GPU machine (installs the carried wheels first)
    python benchmarks/gpu_check.py --cpu --tiny  # here: the same code path in seconds (the ci preset)

Writes ``$OUT/gpu_check.json`` (``--out``; default ``./gpu_check_out``), rewritten whole and
atomically after each step and each stage or configuration within one, so a run cut off by a
timeout leaves the finished parts. Its parts:

- ``environment``: Python, torch, CUDA, cuDNN, the device and its memory, bf16, radiodiff's commit
  and the version of every dependency pyproject.toml names (the evidence for its floors);
- ``tests``: ``pytest -m gpu`` on the test files holding the marker (counts, failures);
- ``stages``: the paper_smoke DAG (``--tiny``: the ci preset's first stages) in stage-table order,
  each stage's command from :data:`radiodiff.dag.stages.STAGES` run as ``python -m radiodiff.cli``
  in a scratch workspace: seconds, status, the stage's summary, the peak memory its metrics files
  report and, on failure, the log's last lines. A failed stage does not stop the check; the
  stages downstream of it are skipped;
- ``train``: the paper U-Net's training steps/s (``paper_unet_step.unet_step``: loss, backward,
  AdamW on cached encodings) in fp32 and under bf16 autocast at batches 1, 8, 32 and 64, a
  precision's series stopping at its first out-of-memory;
- ``sample``: 256² sampling, ms per map at 1 and 5 sampler steps, batches 1 and 32, fp32 and bf16;
- peak GPU memory of each train and sample configuration and each training stage
  (``peak_memory_mb``; on a CPU the process's peak RSS so far), and the largest per part.

The train and sample parts build RadioMapSeer's RadioDiff from the preset with random weights (speed
and memory depend on the shapes alone), so they need no stage to have run. Time: ``--budget-s``
(default 290); each step may use what is left after the seconds the steps after it are promised
(``SHARES_S``); what does not fit is recorded as skipped. Exit status 0 when nothing failed (an
out-of-memory is a measurement, not a failure), else 1.

Carrying what the GPU image lacks. It has Python 3.12, torch 2.11, torchvision 0.26, accelerate,
timm, torchmetrics, safetensors, opencv, pandas, matplotlib and tensorboard, but not jsonschema
(params validation), xxhash (checkpoint checksums) or pytest, and reaches no package index. Here,
once, from the repository root (the lock's versions; ``rpds-py``, jsonschema's, is compiled: the
binary wheel is what counts):

    python3 -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -c requirements.lock -d wheels/ jsonschema xxhash pytest
    du -sh wheels/            # 2.9 MB (12 wheels) when written: well inside the 64 MiB carried tree

``wheels/`` is git-ignored, so the device call names it in ``carry``. There ``gpu_check.sh``
installs the wheels whose package the image lacks (``pip install --no-index --no-deps --target
/tmp/radiodiff-gpu-site``) and puts that folder on ``PYTHONPATH`` behind the checkout; the image's
own packages are used as they are. Snakemake, DVC and LPIPS are not needed: the
stages run through radiodiff's own CLI, and paper_smoke trains without LPIPS.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from paper_unet_step import PRECISIONS, unet_step

from radiodiff.benchmark import has_bf16, peak_memory_mb, time_sampling
from radiodiff.core.io import write_json
from radiodiff.core.params import load_params
from radiodiff.dag.stages import STAGES, edges, resolve
from radiodiff.evaluate.sample_test import sampling_precision
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.cond_unet import CondUNet
from radiodiff.models.map_model import RadioDiffRecord
from radiodiff.models.radiodiff import RadioDiffPipeline
from radiodiff.train.ldm import unet_config

REPO = Path(__file__).resolve().parents[1]
STEPS = ("environment", "tests", "stages", "train", "sample")
# The seconds each step is promised: a step may use the budget left after the later steps' shares.
SHARES_S = {"environment": 5, "tests": 45, "stages": 120, "train": 60, "sample": 30}
TAIL_LINES = 15  # of a failed stage's log, into the JSON


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one mode measures."""

    preset: str  # params/<preset>.yaml: the stages' values and the models of train and sample
    stages: tuple[str, ...] | None  # None: every stage of the table
    train_batches: tuple[int, ...]
    train_steps: int  # timed steps per configuration, after one untimed (FLOP-counting) step
    sample_batches: tuple[int, ...]
    sample_steps: tuple[int, ...]  # sampler steps
    sample_repeats: int  # timed batches per configuration, after one untimed (FLOP-counting) batch
    threads: int | None  # CPU threads of torch here and in every child; None: torch's default


GPU_PLAN = Plan("paper_smoke", None, (1, 8, 32, 64), 3, (1, 32), (1, 5), 3, None)
# The ci DAG takes minutes on a 2-core CPU; its first stages run the same code in seconds. One
# thread: tiny models gain nothing from two, and on a shared CPU whose cores are busy a 2-thread
# step of the ci U-Net took 4-9 s instead of 0.03-0.06 s (threads waiting on each other).
TINY_PLAN = Plan("ci", ("synthesize_radiomapseer", "validate_radiomapseer", "edges"), (1, 2), 1, (1, 2), (1, 2), 1, 1)


class Budget:
    """The check's time: each step's deadline leaves the later steps their shares (``SHARES_S``)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self, step: str) -> float:
        later = STEPS[STEPS.index(step) + 1 :]
        return self.end - sum(SHARES_S[s] for s in later) - time.monotonic()


class Report:
    """``gpu_check.json``, rewritten whole and atomically at every :meth:`put`."""

    def __init__(self, path: Path):
        self.path, self.data = path, {}

    def put(self, part: str, value: dict) -> None:
        self.data[part] = value
        write_json(self.path, self.data)


def child_env() -> dict:
    """This process's environment with the checkout first on ``PYTHONPATH`` (no build, no install)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("MPLBACKEND", "Agg")
    return env


# --------------------------------------------------------------------------- (a) environment


def dependency_versions() -> dict:
    """The installed version of every package pyproject.toml names (dependencies and extras)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    names = sorted({re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in requirements} - {project["name"]})
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The checkout's commit, or None where the tree travelled without its .git (or git is absent)."""
    try:
        p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def environment(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "device_memory_mb": torch.cuda.get_device_properties(device).total_memory / 2**20 if cuda else None,
        "bf16_native": has_bf16(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "radiodiff_commit": git_commit(),
        "versions": dependency_versions(),
    }


# --------------------------------------------------------------------------- (b) the GPU tests


def gpu_test_files() -> list[str]:
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def junit_counts(path: Path) -> dict:
    """Counts and failures of a pytest ``--junitxml`` file."""
    suites = ET.parse(path).getroot()
    suites = suites.findall("testsuite") if suites.tag == "testsuites" else [suites]
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = []
    for case in (c for s in suites for c in s.iter("testcase")):
        for problem in (*case.findall("failure"), *case.findall("error")):
            failed.append(f"{case.get('classname')}::{case.get('name')}: {(problem.get('message') or '')[:300]}")
    return {**counts, "failed": failed}


def gpu_tests(workspace: Path, timeout: float) -> dict:
    """``pytest -m gpu`` on the files holding the marker, the image's pytest plugins left out."""
    files = gpu_test_files()
    if importlib.util.find_spec("pytest") is None:
        return {"files": files, "error": "pytest is not installed: carry its wheels (benchmarks/gpu_check.py)"}
    junit = workspace / "pytest_gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *files]
    env = dict(child_env(), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        return {"files": files, "timed_out": True, "seconds": time.perf_counter() - t0}
    result = {"files": files, "returncode": p.returncode, "seconds": time.perf_counter() - t0}
    if junit.is_file():
        result.update(junit_counts(junit))
    if p.returncode != 0:
        result["output_tail"] = p.stdout.splitlines()[-TAIL_LINES:] + p.stderr.splitlines()[-TAIL_LINES:]
    return result


# --------------------------------------------------------------------------- (c) the stages


def stage_argv(name: str, params: dict) -> list[str]:
    """The stage's command, its placeholders resolved, run by this Python from the checkout."""
    argv = shlex.split(resolve(STAGES[name].command("params.yaml"), params))
    assert argv[0] == "radiodiff", argv  # every stage is a radiodiff subcommand
    return [sys.executable, "-m", "radiodiff.cli", *argv[1:]]


def last_json_line(text: str) -> dict | None:
    """The stage's summary: the last line of its output that is a JSON object."""
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def largest_peak(value) -> float | None:
    """The largest ``peak_memory_mb`` anywhere in a JSON value (a training stage's metrics.json,
    the benchmark's per model)."""
    if isinstance(value, dict):
        found = [value.get("peak_memory_mb"), *(largest_peak(v) for v in value.values())]
    elif isinstance(value, list):
        found = [largest_peak(v) for v in value]
    else:
        return None
    numbers = [v for v in found if isinstance(v, int | float)]
    return max(numbers) if numbers else None


def stage_peak(name: str, workspace: Path) -> float | None:
    """The peak memory the stage's metrics outputs report, when they report one."""
    peaks = []
    for out in STAGES[name].outs:
        path = workspace / out.path
        if out.metric and path.is_file():
            peaks.append(largest_peak(json.loads(path.read_text())))
    numbers = [p for p in peaks if p is not None]
    return max(numbers) if numbers else None


def run_stage(name: str, params: dict, workspace: Path, timeout: float) -> dict:
    """Run one stage in ``workspace`` (its output in ``logs/<stage>.log`` there)."""
    log = workspace / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            cmd = stage_argv(name, params)
            returncode = subprocess.run(
                cmd, cwd=workspace, env=child_env(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
            status = "ok" if returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            returncode, status = None, "timed_out"
    text = log.read_text(errors="replace")
    result = {"status": status, "seconds": time.perf_counter() - t0}
    if status == "ok":
        result.update(summary=last_json_line(text), peak_memory_mb=stage_peak(name, workspace))
    else:
        result.update(returncode=returncode, log_tail=text.splitlines()[-TAIL_LINES:])
    return result


def run_stages(plan: Plan, workspace: Path, budget: Budget, report: Report) -> dict:
    """The preset's stages in stage-table order; a stage whose producer did not finish is skipped."""
    shutil.copy(REPO / "params" / f"{plan.preset}.yaml", workspace / "params.yaml")
    params = load_params(workspace / "params.yaml")
    producers: dict[str, set] = {}
    for producer, consumer in edges(params):
        producers.setdefault(consumer, set()).add(producer)
    part = {"preset": plan.preset, "workspace": str(workspace), "stages": {}}
    for name in (n for n in STAGES if plan.stages is None or n in plan.stages):
        unfinished = sorted(
            p for p in producers.get(name, ()) if part["stages"].get(p, {}).get("status") not in (None, "ok")
        )
        timeout = budget.left("stages")
        if unfinished:
            part["stages"][name] = {"status": "skipped", "reason": f"upstream {', '.join(unfinished)} did not finish"}
        elif timeout <= 0:
            part["stages"][name] = {"status": "skipped", "reason": "time budget"}
        else:
            part["stages"][name] = run_stage(name, params, workspace, timeout)
        part["failed"] = [n for n, s in part["stages"].items() if s["status"] in ("failed", "timed_out")]
        part["peak_memory_mb"] = largest_peak(part["stages"])
        report.put("stages", part)
    return part


# --------------------------------------------------------------------------- (d, e) train and sample


def preset_pipeline(params: dict) -> RadioDiffPipeline:
    """RadioMapSeer's RadioDiff as the preset builds it (the VAE's and the LDM's model sections, the
    data's image size), with random weights, on the CPU."""
    data, section = params["data"]["radiomapseer"], params["train_ldm_radiomapseer"]
    size = int(data["image_size"])
    torch.manual_seed(0)
    vae_model = params["train_vae_radiomapseer"]["model"]
    vae = AutoencoderKL(AutoencoderKLConfig.from_params(vae_model, in_channels=1, out_channels=1, resolution=size))
    latent = int(vae.config.embed_dim)
    prior = bool(section["model"]["prior_latent"])  # the physics prior through the VAE: an extra latent
    unet = unet_config(section["model"], latent, latent if prior else 0, size)
    diffusion = section["diffusion"]
    record = RadioDiffRecord(
        dataset="radiomapseer",
        condition=data["condition"],
        image_size=size,
        scale_factor=1.0 if diffusion["scale_factor"] == "auto" else float(diffusion["scale_factor"]),
        prior_latent=prior,
        **{k: diffusion[k] for k in ("sampling_steps", "t_eps", "skip", "weighting", "l1")},
    )
    return RadioDiffPipeline(CondUNet(unet), vae, record).eval()


def is_out_of_memory(error: RuntimeError) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure_series(runs: list, label: dict, batches, measure, device, left) -> None:
    """``measure(batch)`` for each batch size, ascending, into ``runs`` (with ``label``); an
    out-of-memory or another error ends the series (larger batches would not fit either), and
    so does the step's time (``left()`` seconds)."""
    for batch in batches:
        entry = {**label, "batch_size": batch}
        runs.append(entry)
        if left() <= 0:
            entry["skipped"] = "time budget"
            continue
        try:
            entry.update(measure(batch))
            continue
        except RuntimeError as e:
            failure = {"out_of_memory": True} if is_out_of_memory(e) else {"error": f"{type(e).__name__}: {e}"[:500]}
        entry.update(failure)
        free_memory(device)  # after the except block, whose traceback held the step's tensors
        return


def train_speed(pipe, plan: Plan, device, budget: Budget, report: Report) -> dict:
    """(d) training steps/s of the U-Net per precision and batch size."""
    unet = pipe.network
    part = {"parameters": unet.num_parameters(), "image_size": pipe.grid_px, "block_style": unet.config.block_style}
    part["runs"] = runs = []
    for precision in PRECISIONS:

        def measure(batch, precision=precision):
            return unet_step(pipe, batch, plan.train_steps, 1, device, precision)

        measure_series(
            runs, {"precision": precision}, plan.train_batches, measure, device, lambda: budget.left("train")
        )
        part["peak_memory_mb"] = largest_peak(runs)
        report.put("train", part)
    free_memory(device)
    return part


def sample_speed(pipe, plan: Plan, device, budget: Budget, report: Report) -> dict:
    """(e) sampling ms per map per precision, sampler steps and batch size (the benchmark stage's
    :func:`~radiodiff.benchmark.time_sampling`, under the sample stages' precision)."""
    pipe.to(device)
    part = {"image_size": pipe.grid_px, "runs": []}
    for precision in PRECISIONS:
        for steps in plan.sample_steps:

            def measure(batch, precision=precision, steps=steps):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                with sampling_precision(device, precision):
                    ms, flops = time_sampling(pipe, batch, plan.sample_repeats, device, steps)
                return {"ms_per_map": ms, "flops_per_map": flops, "peak_memory_mb": peak_memory_mb(device)}

            label = {"precision": precision, "steps": steps}
            measure_series(part["runs"], label, plan.sample_batches, measure, device, lambda: budget.left("sample"))
            part["peak_memory_mb"] = largest_peak(part["runs"])
            report.put("sample", part)
    return part


# --------------------------------------------------------------------------- the check


def failures(report: dict) -> list[str]:
    """What failed: the tests, stages and configurations that did not run through."""
    out = []
    tests = report.get("tests", {})
    if tests.get("error") or tests.get("timed_out") or tests.get("returncode", 0) != 0:
        out.append("tests")
    out += [f"stage {n}" for n in report.get("stages", {}).get("failed", [])]
    for part in ("train", "sample"):
        for run in (r for r in report.get(part, {}).get("runs", []) if "error" in r):
            out.append(" ".join([part, *(f"{k}={run[k]}" for k in ("precision", "steps", "batch_size") if k in run)]))
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is (CUDA hidden)")
    ap.add_argument("--tiny", action="store_true", help="the ci preset, its first stages, batches 1 and 2: seconds")
    ap.add_argument("--out", help="output folder (default: $OUT, else ./gpu_check_out)")
    ap.add_argument("--workspace", help="scratch folder for the stages (default: a new temporary one, removed after)")
    ap.add_argument("--budget-s", type=float, default=290.0, help="seconds for the whole check (default 290)")
    ap.add_argument("--stages", nargs="+", help="these stages only (default: all; --tiny: its first stages)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.stages or ()) - set(STAGES))
    if unknown:
        ap.error(f"--stages: no stage {', '.join(unknown)} in radiodiff/dag/stages.py")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # here and in every child
    plan = TINY_PLAN if args.tiny else GPU_PLAN
    if args.stages:
        plan = dataclasses.replace(plan, stages=tuple(args.stages))
    if plan.threads:
        os.environ["OMP_NUM_THREADS"] = str(plan.threads)  # the children's
        torch.set_num_threads(plan.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out or os.environ.get("OUT") or "gpu_check_out")
    report = Report(out / "gpu_check.json")
    budget = Budget(args.budget_s)
    t0 = time.perf_counter()
    check = {"mode": f"{'cpu' if args.cpu else 'gpu'}{'-tiny' if args.tiny else ''}", "preset": plan.preset}
    report.put("check", {**check, "budget_s": args.budget_s, "finished": False})
    report.put("environment", environment(device))
    if device.type != "cuda" and not args.cpu:
        error = f"no CUDA device here (torch {torch.__version__}); --cpu runs on the CPU"
        report.put("check", {**check, "budget_s": args.budget_s, "finished": False, "error": error})
        print(f"gpu_check: {error}", file=sys.stderr)
        return 1
    workspace = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="radiodiff-gpu-check-"))
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        report.put("tests", gpu_tests(workspace, budget.left("tests")))
        run_stages(plan, workspace, budget, report)
        pipe = preset_pipeline(load_params(REPO / "params" / f"{plan.preset}.yaml"))
        train_speed(pipe, plan, device, budget, report)
        sample_speed(pipe, plan, device, budget, report)
    finally:
        if not args.workspace:
            shutil.rmtree(workspace, ignore_errors=True)
    failed = failures(report.data)
    seconds = time.perf_counter() - t0
    report.put("check", {**check, "budget_s": args.budget_s, "finished": True, "seconds": seconds, "failed": failed})
    print(f"gpu_check: {report.path} ({'failed: ' + ', '.join(failed) if failed else 'nothing failed'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
