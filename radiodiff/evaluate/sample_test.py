"""The sample stages: predictions for the whole test split, for RadioDiff and each baseline.

``results/samples/{dataset}/{method}/{name}.png`` in the dataset's own encoding, at the model's
resolution: RadioMapSeer gray gain (round(255·gain), buildings 0, named ``{map}_{tx}``);
ICASSP path loss in dB (round(PL), padded pixels 0, named ``B{b}_Ant{a}_f{f}_S{s}``).
``sampling.json`` beside them records, per method, the wall time per map on the device used,
the sampler steps and seed. With ``sample.seeds`` > 1, RadioDiff also samples the split under
the next seeds into ``radiodiff_seeds/seed-S/`` (the evaluation reports the spread of its
metrics; ``radiodiff/`` stays the first seed's, the headline). RadioMapSeer also keeps every
method's raw float maps, buildings included, in ``float/{method}.npy`` (N, 1, S, S, the test
split's order) for the paper's scope. The physics baselines are computed here (they need no training).
Both datasets take the same path; :func:`radiodiff.data.items.dataset_source` adapts each. The test
split is read, predicted and written batch by batch, so memory does not grow with its size.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import atomic_dir, write_json
from radiodiff.data.items import item_batches, stage_source
from radiodiff.evaluate.maps import SEEDS_FOLDER, write_maps
from radiodiff.metrics import zero_buildings
from radiodiff.models.pipelines import load_pipeline


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


PRECISIONS = ("fp32", "bf16")


@contextlib.contextmanager
def sampling_precision(device: torch.device, precision: str) -> Iterator[None]:
    """The networks' precision while sampling (``sample.precision``): fp32, or bf16 autocast
    (matrix products and convolutions in bfloat16; on CUDA GPUs that have it and on CPUs)."""
    if precision not in PRECISIONS:
        raise ParamsError(f"sample.precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        yield
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ParamsError("sample.precision: bf16 is not supported by this GPU; use fp32")
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


class Clock:
    """Seconds spent in the timed blocks (CUDA synchronized around each)."""

    def __init__(self, device: torch.device):
        self.device, self.seconds = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - self.t0


@torch.no_grad()
def predict_batches(
    pipe,
    items: Dataset,
    steps: int | None,
    seed: int,
    batch_size: int,
    device,
    clock: Clock | None = None,
    precision: str = "fp32",
) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """(batch, maps on [0, 1] with building pixels 0 for RadioMapSeer, the raw maps as the model
    gave them) for the items in order.

    One generator seeded with ``seed`` drives the whole run in a fixed batch order, so the
    samples are deterministic for a seed on a given device. ``steps``: RadioDiff's sampler steps
    (None = the model's own default). ``clock`` adds the model's time (reading excluded);
    ``precision``: :func:`sampling_precision`.
    """
    pipe = pipe.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    clock = clock or Clock(device)
    for batch in item_batches(items, batch_size):
        with clock, sampling_precision(device, precision):
            raw = pipe(batch["condition"].to(device), steps=steps, generator=generator).float().cpu()
        yield batch, (zero_buildings(raw, batch["buildings"]) if "buildings" in batch else raw), raw


def predict_items(pipe, items: Dataset, steps: int | None, seed: int, batch_size: int, device):
    """Every item's map on [0, 1] (N, 1, S, S; building pixels 0 for RadioMapSeer) and the model's
    seconds: :func:`predict_batches` gathered (a single input, another root's samples)."""
    clock = Clock(device)
    preds = [pred for _, pred, _ in predict_batches(pipe, items, steps, seed, batch_size, device, clock)]
    return torch.cat(preds), clock.seconds


class FloatMaps:
    """The raw float predictions of one method, ``float/{method}.npy`` (N, 1, S, S) in a sample
    folder, written batch by batch into a memory-mapped file (RadioMapSeer: the paper's scope
    scores them, buildings included, without PNG quantization)."""

    def __init__(self, folder, method: str, n: int, side: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.array = np.lib.format.open_memmap(folder / f"{method}.npy", "w+", np.float32, (n, 1, side, side))
        self.filled = 0

    def add(self, maps: torch.Tensor) -> None:
        self.array[self.filled : self.filled + len(maps)] = maps.numpy()
        self.filled += len(maps)

    def close(self) -> None:
        if self.filled != len(self.array):
            raise RadiodiffError(f"float predictions: {self.filled} maps written for {len(self.array)} items")
        self.array.flush()
        del self.array


def check_model(pipe, dataset: str, image_size: int | None, where) -> None:
    """A trained model folder fits the data: same dataset and (unless ``image_size`` is None)
    same resolution."""
    if pipe.dataset != dataset:
        article = "an" if dataset == "icassp" else "a"
        raise RadiodiffError(f"{where}: a {pipe.dataset} model, not {article} {dataset} one")
    if image_size is not None and pipe.grid_px != int(image_size):
        raise RadiodiffError(
            f"{where}: trained at {pipe.grid_px} px, the data is at {image_size} px "
            "(data.radiomapseer.image_size / crop_icassp.size_px)"
        )


def timing(seconds: float, n: int, device, steps, seed, model) -> dict:
    return {
        "ms_per_map": 1000.0 * seconds / max(n, 1),
        "maps": n,
        "device": str(device),
        "steps": steps,
        "seed": seed,
        "model": model,
    }


def run(params: dict, dataset: str, ldm, radiounet, out, root=None, crops=None, device=None) -> dict:
    """The ``sample_{dataset}`` stage: every method's test-split predictions and
    ``sampling.json`` into ``out`` (atomically). RadioMapSeer reads ``root``, ICASSP ``crops``."""
    source = stage_source(f"sample {dataset}", dataset, params, root, crops)
    sample = params["sample"]
    device = torch.device(device) if device else default_device()
    methods: dict = {}
    keep_float = dataset == "radiomapseer"  # the paper's scope (raw floats, buildings included)
    with atomic_dir(out) as tmp:
        for method, model_dir in (("radiodiff", ldm), ("radiounet", radiounet)):
            pipe = load_pipeline(model_dir, ema=sample["use_ema"])
            check_model(pipe, dataset, source.image_size, model_dir)
            items = source.items("test", pipe.condition, pipe.physics_exponent)
            steps = pipe.steps_for(sample["steps"])
            clock = Clock(device)
            floats = FloatMaps(tmp / "float", method, len(items), source.image_size) if keep_float else None
            batches = predict_batches(
                pipe, items, steps, sample["seed"], sample["batch_size"], device, clock, sample["precision"]
            )
            for batch, pred, raw in batches:
                write_maps(tmp / method, batch["name"], pred, dataset, batch.get("valid"))
                if floats:
                    floats.add(raw)
            if floats:
                floats.close()
            seeds = [sample["seed"]]
            if pipe.is_latent:  # the other seeds' samples: the spread of RadioDiff's metrics
                for seed in range(sample["seed"] + 1, sample["seed"] + sample["seeds"]):
                    again = predict_batches(
                        pipe, items, steps, seed, sample["batch_size"], device, None, sample["precision"]
                    )
                    for batch, pred, _ in again:
                        write_maps(
                            tmp / SEEDS_FOLDER / f"seed-{seed}", batch["name"], pred, dataset, batch.get("valid")
                        )
                    seeds.append(seed)
            methods[method] = timing(clock.seconds, len(items), device, steps, sample["seed"], str(model_dir))
            if pipe.is_latent:
                methods[method]["seeds"] = seeds
            methods[method]["weights"] = "ema" if sample["use_ema"] else "raw"
            methods[method]["precision"] = sample["precision"]
        items = source.items("test")
        exponent = source.physics_exponent() if dataset == "radiomapseer" else None
        clock = Clock(torch.device("cpu"))
        floats = FloatMaps(tmp / "float", "physics", len(items), source.image_size) if keep_float else None
        for batch in item_batches(items, sample["batch_size"]):
            with clock:
                pred = source.physics(batch, exponent)
            write_maps(tmp / "physics", batch["name"], pred, dataset, batch.get("valid"))
            if floats:
                floats.add(pred)
        if floats:
            floats.close()
        methods["physics"] = timing(clock.seconds, len(items), torch.device("cpu"), None, None, None)
        if exponent is not None:
            methods["physics"]["exponent"] = exponent
        write_json(tmp / "sampling.json", {"dataset": dataset, "split": "test", "methods": methods})
    return {"stage": f"sample_{dataset}", "maps": len(items), "methods": methods}
