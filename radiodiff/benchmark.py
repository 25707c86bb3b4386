"""The benchmark stage: speed and memory of every trained model on the current device.

Per model folder: a few timed training steps (the training task's own loss, the LDM's
frozen-VAE encoding of the batch included, backward, AdamW step on a copy of the model, random
batches of the model's own shapes; the first ``warmup`` steps are not timed), giving
steps/s, ms/step and peak memory; and sampling ms per map at the configured batch size
(RadioDiff at each of ``radiodiff_steps`` sampler steps; RadioUNet one forward pass), and
milliseconds per whole map of ``whole_map_px`` (W, H) per dataset by sliding windows
(``sample.window``; challenge entries report about 20 ms per map). The physics baselines are
timed too. Nothing is trained to convergence and no output is reused.
Peak memory: CUDA max allocated on a GPU; on a CPU the process's peak RSS so far (a bound,
not a per-model figure).

Where the time goes: the FLOPs of one training step (counted on one more, untimed step) and of
one sampled map (counted on the untimed first sampling batch, divided by the batch), the
achieved FLOP/s beside each timing, and its fraction of the device's measured peak (the best of
a few large square float32 matmuls, :func:`measured_peak`; bfloat16 too where the device has
it). FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which counts only
matrix products and convolutions (2 FLOPs per multiply-accumulate, backward included):
normalisation, activations, softmax, the sampler's arithmetic and the optimizer step count
nothing, so the achieved FLOP/s is the products' work per second, a lower bound of all the work.
"""

from __future__ import annotations

import copy
import platform
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, RADIOMAPSEER_PIXEL_SIZE_M
from radiodiff.core.io import write_json
from radiodiff.evaluate.sample_test import default_device, sampling_precision
from radiodiff.evaluate.windows import model_shape, predict_windows
from radiodiff.models.pipelines import load_pipeline
from radiodiff.physics.baselines import icassp_physics_unit, radiomapseer_physics
from radiodiff.train.ldm import LDMTask
from radiodiff.train.radiounet import RadioUNetTask


def sync(device) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it counts that work."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device) -> float:
    """CUDA's peak allocated memory since its last reset, or on a CPU the process's peak RSS so far (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def count_flops(fn: Callable[[], object]) -> int:
    """Matrix-product and convolution FLOPs (2 per multiply-accumulate) of one call of ``fn``,
    forward and any backward it runs (:class:`FlopCounterMode`; other ops count nothing)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def measured_peak(device, dtype=torch.float32, n: int | None = None, repeats: int = 3) -> dict:
    """The device's measured matmul throughput: the fastest of ``repeats`` n×n @ n×n products of
    ``dtype`` (2·n³ FLOPs each) after an untimed one; n 8192 on CUDA, 2048 (under a second) on a CPU."""
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, generator=g, device=device, dtype=dtype) for _ in range(2))
    best = float("inf")
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return {"dtype": str(dtype).removeprefix("torch."), "n": n, "flop_per_s": 2 * n**3 / best}


def has_bf16(device) -> bool:
    """Whether the device multiplies bfloat16 natively (a CUDA GPU that supports it, or a CPU
    with oneDNN's bfloat16 kernels: AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:  # a private oneDNN query: absent from some builds
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def throughput(flops: float, seconds: float, peak: float) -> dict:
    """Achieved FLOP/s of ``flops`` done in ``seconds``, and its fraction of ``peak`` FLOP/s."""
    return {"flop_per_s": flops / seconds, "fraction_of_peak": flops / seconds / peak}


def _condition(pipe, batch: int, device, generator) -> torch.Tensor:
    size = pipe.grid_px
    return (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device)


def _task_and_batch(pipe, batch: int, device, generator):
    """The model's training task on a copy of its network, and a random batch of its shapes."""
    cond = _condition(pipe, batch, device, generator)
    size = cond.shape[-1]
    data = {"condition": cond, "target": torch.rand(batch, 1, size, size, generator=generator).to(device) * 2 - 1}
    # the LDM's step includes its frozen VAEs' encoding of the batch, as in training
    task_class = LDMTask if pipe.is_latent else RadioUNetTask
    task = task_class(pipe.with_network(copy.deepcopy(pipe.network).to(device)))
    task.model.train()
    return task, data


def time_training(pipe, batch: int, steps: int, warmup: int, device) -> dict:
    """Timed training steps of the model's own task (its loss, backward, an AdamW step), after
    one untimed step whose FLOPs are counted (:func:`count_flops`) and ``warmup`` untimed ones."""
    task, data = _task_and_batch(pipe, batch, device, torch.Generator().manual_seed(0))
    net = task.model
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)

    def step(i: int) -> None:
        opt.zero_grad(set_to_none=True)
        task.loss(data, i, 0)[0].backward()
        opt.step()

    flops = count_flops(lambda: step(0))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        step(i)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    mean = float(np.mean(times))
    return {
        "batch_size": batch,
        "timed_steps": steps,
        "ms_per_step": 1000 * mean,
        "steps_per_s": 1 / mean,
        "peak_memory_mb": peak_memory_mb(device),
        "parameters": net.num_parameters(),
        "flops_per_step": flops,
    }


@torch.no_grad()
def time_sampling(pipe, batch: int, repeats: int, device, steps=None) -> tuple[float, float]:
    """Milliseconds per map (median over ``repeats`` batches) and FLOPs per map (counted on the
    untimed first batch, :func:`count_flops`, divided by ``batch``)."""
    g = torch.Generator().manual_seed(1)
    cond = _condition(pipe, batch, device, g)
    gen = torch.Generator(device=device).manual_seed(0)
    flops = count_flops(lambda: pipe(cond, steps=steps, generator=gen))
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        pipe(cond, steps=steps, generator=gen)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / batch, flops / batch


def _sampling_entry(pipe, batch: int, repeats: int, device, peak: float, steps=None) -> tuple[float, dict]:
    """:func:`time_sampling`'s ms per map, and its FLOPs per map with their :func:`throughput`."""
    ms, flops = time_sampling(pipe, batch, repeats, device, steps)
    return ms, {"flops_per_map": flops, **throughput(flops, ms / 1000, peak)}


@torch.no_grad()
def time_whole_map(pipe, size_px, window: dict, device, repeats: int) -> dict:
    """Milliseconds per whole map of ``size_px`` (W, H) at the dataset's pixel size (RadioMapSeer
    1 m, ICASSP 0.25 m), predicted by sliding windows (:func:`predict_windows`, median of
    ``repeats`` maps after an untimed one); RadioDiff at its own sampler steps."""
    pixel = RADIOMAPSEER_PIXEL_SIZE_M if pipe.dataset == "radiomapseer" else ICASSP_PIXEL_SIZE_M
    grid = model_shape((int(size_px[1]), int(size_px[0])), pixel, pipe.metres_per_pixel)
    cond = torch.rand(3, *grid, generator=torch.Generator().manual_seed(2)) * 2 - 1
    gen = torch.Generator(device=device).manual_seed(0)
    times = []
    for i in range(repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        _, tiling = predict_windows(pipe, cond, **window, generator=gen)
        sync(device)
        if i:
            times.append(time.perf_counter() - t0)
    return {
        "size_px": [int(v) for v in size_px],
        "model_grid": list(grid),
        "windows": len(tiling.origins),
        "mode": window["mode"] if pipe.is_latent else "independent",
        "ms_per_map": 1000 * float(np.median(times)),
    }


def time_physics(dataset: str, size: int, maps: int = 16) -> float:
    t0 = time.perf_counter()
    if dataset == "radiomapseer":
        b = np.zeros((size, size), np.float32)
        for i in range(maps):
            radiomapseer_physics(b, (i % size, (3 * i) % size), 3.0, 256)
    else:
        icassp_physics_unit(torch.zeros(maps, 3, size, size))
    return 1000 * (time.perf_counter() - t0) / maps


def run(params: dict, models: list, out) -> dict:
    """The ``benchmark`` stage: time every trained model folder of ``models`` into ``out`` (JSON)."""
    b = params["benchmark"]
    window = {k: params["sample"]["window"][k] for k in ("mode", "overlap", "batch_size")}
    precision = params["sample"]["precision"]
    device = default_device()
    result: dict = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": dict(b),
        "device_peak_flops": measured_peak(device),
    }
    if has_bf16(device):
        result["device_peak_flops_bfloat16"] = measured_peak(device, torch.bfloat16)
    result.update(models={}, physics={})
    peak = result["device_peak_flops"]["flop_per_s"]
    # sampling's fraction of peak: against the bf16 peak when it samples in bf16 (and one was measured)
    result["sample_precision"] = precision
    sample_peak = result.get("device_peak_flops_bfloat16", {}).get("flop_per_s", peak) if precision == "bf16" else peak
    for model_dir in models:
        pipe = load_pipeline(model_dir).to(device).eval()
        kind = pipe.kind
        key = f"{kind}/{pipe.dataset}"
        entry = {"model": str(model_dir), "image_size": pipe.grid_px}
        train = time_training(pipe, b["train_batch_size"], b["train_steps"], b["warmup_steps"], device)
        entry["train"] = {**train, **throughput(train["flops_per_step"], train["ms_per_step"] / 1000, peak)}
        sampling = (b["sample_batch_size"], b["sample_repeats"], device, sample_peak)
        with sampling_precision(device, precision):  # sample.precision, as the sample stages
            if pipe.is_latent:
                per_n = {str(n): _sampling_entry(pipe, *sampling, n) for n in b["radiodiff_steps"]}
                entry["sample_ms_per_map"] = {n: ms for n, (ms, _) in per_n.items()}
                entry["sample_flops"] = {n: flops for n, (_, flops) in per_n.items()}
            else:
                entry["sample_ms_per_map"], entry["sample_flops"] = _sampling_entry(pipe, *sampling)
            size = b["whole_map_px"][pipe.dataset]
            entry["whole_map"] = time_whole_map(pipe, size, window, device, b["sample_repeats"])
        result["models"][key] = entry
        result["physics"].setdefault(pipe.dataset, time_physics(pipe.dataset, pipe.grid_px))
    write_json(Path(out), result)
    return {"stage": "benchmark", "out": str(out), "models": list(result["models"])}
