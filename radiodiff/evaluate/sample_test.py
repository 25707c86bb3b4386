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
``truth/`` holds the test split's ground truth at the model's size in the same encoding (for
``radiodiff compare``); with ``sample.ensemble`` and K >= 2, ``uncertainty/{name}.npy`` the
per-pixel standard deviation of RadioDiff's K samples.
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
from radiodiff.evaluate.maps import (
    ENSEMBLE_METHOD,
    SEEDS_FOLDER,
    TRUTH_FOLDER,
    UNCERTAINTY_FOLDER,
    VAE_METHOD,
    write_maps,
    write_std,
)
from radiodiff.evaluate.uncertainty import ensemble_std
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


class MethodMaps:
    """One method's outputs in a sample folder, batch by batch: its PNGs (``{method}/``) and, for
    RadioMapSeer, its raw float maps (``float/{method}.npy``, :class:`FloatMaps`)."""

    def __init__(self, folder, method: str, dataset: str, n: int, side: int, floats: bool = True):
        self.folder, self.method, self.dataset = folder, method, dataset
        keep = floats and dataset == "radiomapseer"  # the paper's scope (raw floats, buildings included)
        self.floats = FloatMaps(folder / "float", method, n, side) if keep else None

    def add(self, batch: dict, raw: torch.Tensor) -> None:
        """A batch's raw maps on [0, 1] (the PNGs get RadioMapSeer's building pixels zeroed)."""
        pred = zero_buildings(raw, batch["buildings"]) if "buildings" in batch else raw
        write_maps(self.folder / self.method, batch["name"], pred, self.dataset, batch.get("valid"))
        if self.floats:
            self.floats.add(raw)

    def close(self) -> None:
        if self.floats:
            self.floats.close()


class EnsembleMean:
    """The per-item mean of RadioDiff's K samples (``sample.ensemble``): the raw maps of every
    seed summed, with their squares, in memory-mapped files beside the outputs, written as the
    method ``radiodiff_mean`` as the last seed's batches complete, and for K >= 2 the per-pixel
    standard deviation (ddof 1) of the K samples into ``uncertainty/`` (0 where the scored maps
    are known: RadioMapSeer's building pixels, ICASSP's padding)."""

    def __init__(self, folder, dataset: str, n: int, side: int, k: int):
        self.k, self.start, self.folder = k, 0, folder
        self.paths = (folder / ".ensemble_sum.npy", folder / ".ensemble_sum_sq.npy")
        self.sum, self.sum_sq = (np.lib.format.open_memmap(p, "w+", np.float64, (n, 1, side, side)) for p in self.paths)
        self.out = MethodMaps(folder, ENSEMBLE_METHOD, dataset, n, side)

    def add(self, batch: dict, raw: torch.Tensor, last_seed: bool) -> None:
        end = self.start + len(raw)
        x = raw.double().numpy()
        self.sum[self.start : end] += x
        self.sum_sq[self.start : end] += x * x
        if last_seed:
            total = self.sum[self.start : end]
            self.out.add(batch, torch.from_numpy(total / self.k).float())
            if self.k >= 2:
                std = torch.from_numpy(ensemble_std(total, self.sum_sq[self.start : end], self.k)).float()
                std = zero_buildings(std, batch["buildings"]) if "buildings" in batch else std * batch["valid"]
                write_std(self.folder / UNCERTAINTY_FOLDER, batch["name"], std)
        self.start = 0 if end == len(self.sum) else end

    def close(self) -> None:
        self.out.close()
        del self.sum, self.sum_sq
        for path in self.paths:
            path.unlink()


def _sample_radiodiff(pipe, model_dir, items, sample: dict, folder, dataset: str, side: int, device) -> dict:
    """RadioDiff's test samples under each of ``sample.seeds`` seeds (the first is ``radiodiff/``,
    the others ``radiodiff_seeds/seed-S/``) and, with ``sample.ensemble``, their per-item mean
    (``radiodiff_mean/``); the timing entries of ``sampling.json``."""
    steps, seeds = pipe.steps_for(sample["steps"]), list(range(sample["seed"], sample["seed"] + sample["seeds"]))
    clock, n = Clock(device), len(items)
    mean = EnsembleMean(folder, dataset, n, side, len(seeds)) if sample["ensemble"] else None
    for seed in seeds:
        headline = seed == seeds[0]
        if headline:
            out = MethodMaps(folder, "radiodiff", dataset, n, side)
        else:
            out = MethodMaps(folder / SEEDS_FOLDER, f"seed-{seed}", dataset, n, side, floats=False)
        batches = predict_batches(pipe, items, steps, seed, sample["batch_size"], device, clock, sample["precision"])
        for batch, _, raw in batches:
            out.add(batch, raw)
            if mean:
                mean.add(batch, raw, last_seed=seed == seeds[-1])
        out.close()
        if headline:
            first_seconds = clock.seconds
    entry = {**timing(first_seconds, n, device, steps, sample["seed"], str(model_dir)), "seeds": seeds}
    methods = {"radiodiff": entry}
    if mean:
        mean.close()
        methods[ENSEMBLE_METHOD] = {**entry, **timing(clock.seconds, n, device, steps, None, entry["model"])}
        methods[ENSEMBLE_METHOD].update(k=len(seeds), what=f"per-pixel mean of the {len(seeds)} samples")
    return methods


def run(params: dict, dataset: str, ldm, radiounet, out, root=None, crops=None, device=None) -> dict:
    """The ``sample_{dataset}`` stage: every method's test-split predictions and
    ``sampling.json`` into ``out`` (atomically). RadioMapSeer reads ``root``, ICASSP ``crops``.
    Beside RadioDiff, RadioUNet and physics: RadioDiff's other seeds and (``sample.ensemble``)
    the mean of its samples, and RadioUNet's maps through the LDM's first stage
    (``radiounet_vae``: encoded, the posterior mean decoded), the error the VAE adds to a good map."""
    source = stage_source(f"sample {dataset}", dataset, params, root, crops)
    sample = params["sample"]
    device = torch.device(device) if device else default_device()
    side = source.image_size
    methods: dict = {}
    with atomic_dir(out) as tmp:
        ldm_pipe = load_pipeline(ldm, ema=sample["use_ema"])
        check_model(ldm_pipe, dataset, side, ldm)
        items = source.items("test", ldm_pipe.condition, ldm_pipe.physics_exponent)
        methods.update(_sample_radiodiff(ldm_pipe, ldm, items, sample, tmp, dataset, side, device))

        pipe = load_pipeline(radiounet, ema=sample["use_ema"])
        check_model(pipe, dataset, side, radiounet)
        items = source.items("test", pipe.condition, pipe.physics_exponent)
        clock, vae_clock = Clock(device), Clock(device)
        unet_out, vae_out = (MethodMaps(tmp, m, dataset, len(items), side) for m in ("radiounet", VAE_METHOD))
        batches = predict_batches(
            pipe, items, None, sample["seed"], sample["batch_size"], device, clock, sample["precision"]
        )
        for batch, _, raw in batches:
            unet_out.add(batch, raw)
            with vae_clock:  # fp32, as the VAE's own ceiling is scored
                vae_out.add(batch, ldm_pipe.reconstruct(raw.to(device)).float().cpu())
        unet_out.close()
        vae_out.close()
        methods["radiounet"] = timing(clock.seconds, len(items), device, None, sample["seed"], str(radiounet))
        methods[VAE_METHOD] = timing(
            clock.seconds + vae_clock.seconds, len(items), device, None, None, f"{radiounet} through {ldm}/vae"
        )
        for method in ("radiodiff", ENSEMBLE_METHOD, "radiounet", VAE_METHOD):
            if method in methods:
                methods[method]["weights"] = "ema" if sample["use_ema"] else "raw"
                methods[method]["precision"] = sample["precision"]

        items = source.items("test")
        exponent = source.physics_exponent() if dataset == "radiomapseer" else None
        clock = Clock(torch.device("cpu"))
        physics = MethodMaps(tmp, "physics", dataset, len(items), side)
        for batch in item_batches(items, sample["batch_size"]):
            with clock:
                pred = source.physics(batch, exponent)
            physics.add(batch, pred)
            truth = ((batch["target"] + 1) / 2).clamp(0, 1)  # for `radiodiff compare` (rounded as PNGs)
            write_maps(tmp / TRUTH_FOLDER, batch["name"], truth, dataset, batch.get("valid"))
        physics.close()
        methods["physics"] = timing(clock.seconds, len(items), torch.device("cpu"), None, None, None)
        if exponent is not None:
            methods["physics"]["exponent"] = exponent
        write_json(tmp / "sampling.json", {"dataset": dataset, "split": "test", "methods": methods})
    return {"stage": f"sample_{dataset}", "maps": len(items), "methods": methods}
