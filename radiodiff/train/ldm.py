"""Train RadioDiff's conditional latent diffusion model on the shared engine.

``train_ldm_radiomapseer``: condition image [buildings, Tx, third] (third = buildings, cars or
the log-distance prior whose exponent is fitted on the training split) into the Swin encoder;
target = latent of the RadioMapSeer VAE. ``train_ldm_icassp``: the 3 arranged channels into the
Swin; the scaled posterior means of the building and antenna VAEs concatenated with z_t at the
stem; target = latent of the radio VAE. The VAEs are frozen and encode on the training device
(fp32, as the original does; every step draws a fresh sample of the posterior). Each training
item is encoded once, the first time a batch holds it, into a file-backed store under the run's
state folder (:class:`LatentCache`, memory-mapped: it costs disk, not memory, and a resumed run
finds the same values); the store is deleted when the run ends. ``scale_factor: auto`` and the
ICASSP condition latents' scales are measured in one streamed pass over the training items
before training.
Validation samples with the exported pipeline's own sampler (:class:`RadioDiffPipeline`).

Outputs: ``model/`` (a :class:`RadioDiffPipeline` folder: EMA U-Net + VAEs + radiodiff.json),
``metrics.json`` (validation split, sampled with ``diffusion.sampling_steps``) and ``train_log.csv``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import write_json
from radiodiff.core.params import schema_defaults
from radiodiff.data.items import map_splits
from radiodiff.diffusion import const_sde
from radiodiff.metrics import loader_means, zero_buildings
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.cond_unet import CondUNet, swin_parameters
from radiodiff.models.radiodiff import EXTRA_VAES, RadioDiffPipeline, condition_latents, icassp_extra_images
from radiodiff.models.unet_config import CondUNetConfig
from radiodiff.train.engine import PREVIEWS
from radiodiff.train.previews import copy_previews, preview_grid, preview_items
from radiodiff.train.runs import map_model_metrics, run_fields, run_state_dir, run_training

# Items per batch of the pass that measures latent scales (VAE attention: 4096² per item at 256²).
SCALE_BATCH = 16
SCALE_ITEMS = 1024  # at most this many training samples (evenly spaced, unflipped) measure them


def encode_posterior(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of ``images`` under a frozen VAE, in fp32 (outside any autocast),
    on the VAE's device."""
    device = next(vae.parameters()).device
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        post = vae.encode(images.to(device, torch.float32))
    return post.mean, post.std


class LatentCache:
    """The frozen VAEs' encodings of ``n`` training items (``width`` floats each: the target's
    posterior mean and std, then the ICASSP condition latents), filled as batches arrive.

    Two ``.npy`` memmaps in ``folder``: the values and a done flag per item (written after the
    values, each flushed, so a run killed between the two re-encodes that batch). Items are keyed
    by their index in the training set (the flip/rotation is part of it), so a resumed run reads
    the values the interrupted one wrote and encodes the rest in the batches the uninterrupted
    run would have: resume stays exact. Each process of a multi-process run keeps its own files.
    """

    def __init__(self, folder: Path, n: int, width: int):
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        folder.mkdir(parents=True, exist_ok=True)
        values, done = folder / f"values-{rank}.npy", folder / f"done-{rank}.npy"
        self.values, self.done = self._existing(values, (n, width), np.float32), self._existing(done, (n,), np.uint8)
        if self.values is None or self.done is None:  # none yet, another shape or a torn file: start again
            self.values, self.done = self._create(values, (n, width), np.float32), self._create(done, (n,), np.uint8)

    @staticmethod
    def _existing(path: Path, shape: tuple, dtype) -> np.memmap | None:
        try:
            mm = np.lib.format.open_memmap(path, mode="r+")
        except (OSError, ValueError):
            return None
        return mm if mm.shape == shape and mm.dtype == dtype else None

    @staticmethod
    def _create(path: Path, shape: tuple, dtype) -> np.memmap:
        tmp = path.with_suffix(".tmp.npy")
        np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
        tmp.replace(path)
        return np.lib.format.open_memmap(path, mode="r+")

    def get(self, index: torch.Tensor, encode) -> torch.Tensor:
        """The rows of ``index`` (N, width); ``encode(mask)`` gives the rows of the batch items
        selected by ``mask`` that are not stored yet."""
        idx = index.cpu().numpy()
        missing = self.done[idx] == 0
        if missing.any():
            rows = encode(torch.from_numpy(missing).to(index.device)).float().cpu().numpy()
            self.values[idx[missing]] = rows
            self.values.flush()
            self.done[idx[missing]] = 1
            self.done.flush()
        return torch.from_numpy(np.ascontiguousarray(self.values[idx])).to(index.device)


class RunningStd:
    """Standard deviation of every element of a stream of tensors (float64 sums)."""

    def __init__(self):
        self.n, self.sum, self.sumsq = 0, 0.0, 0.0

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.n += x.numel()
        self.sum += float(x.sum())
        self.sumsq += float((x * x).sum())

    def std(self) -> float:
        if self.n < 2:
            return 0.0
        return (max(self.sumsq - self.sum * self.sum / self.n, 0.0) / (self.n - 1)) ** 0.5


def latent_scales(train_set, vae, extra_vaes: dict, scale_value, workers: int, key: str, seed: int = 0):
    """The target latent scale (``scale_value``: a number, or ``auto`` = 1 / std of posterior
    samples, Stable Diffusion's recipe for its 0.18215) and the ICASSP condition VAEs' scales
    (1 / std of their posterior means), measured in one streamed pass over up to
    ``SCALE_ITEMS`` training samples (evenly spaced, without flips/rotations)."""
    auto = scale_value == "auto"
    if not auto and not (
        isinstance(scale_value, int | float) and not isinstance(scale_value, bool) and scale_value > 0
    ):
        raise ParamsError(f"{key}: expected 'auto' or a positive number, got {scale_value!r}")
    target, extra = RunningStd(), {k: RunningStd() for k in extra_vaes}
    if auto or extra_vaes:
        generator = torch.Generator().manual_seed(seed)
        n = len(train_set.names)
        chosen = np.unique(np.linspace(0, n - 1, min(n, SCALE_ITEMS)).round().astype(int))
        subset = torch.utils.data.Subset(train_set, [int(i) * train_set.variants for i in chosen])
        loader = torch.utils.data.DataLoader(subset, batch_size=SCALE_BATCH, num_workers=workers)
        for batch in loader:
            if auto:
                mean, std = encode_posterior(vae, batch["target"])
                target.add(mean + std * torch.randn(mean.shape, generator=generator).to(mean.device))
            images = icassp_extra_images(batch["condition"])
            for k, v in extra_vaes.items():
                extra[k].add(encode_posterior(v, images[k])[0])
    scale = 1.0 / max(target.std(), 1e-6) if auto else float(scale_value)
    return scale, {k: 1.0 / max(s.std(), 1e-6) for k, s in extra.items()}


class LDMTask:
    """The latent diffusion model as the engine sees it: one optimizer (the U-Net, Swin included).

    ``meta`` is what the exported folder records (``radiodiff.json``): dataset, condition, latent
    scale factors and the diffusion settings (weighting, l1, skip, t_eps, sampling_steps).
    """

    def __init__(self, unet: CondUNet, vae: AutoencoderKL, meta: dict, extra_vaes=None):
        self.model = unet
        self.vae = vae.eval().requires_grad_(False)
        # ICASSP: the condition VAEs, frozen, exported with the model
        self.extra_vaes = {k: v.eval().requires_grad_(False) for k, v in (extra_vaes or {}).items()}
        self.meta = meta
        self.scale = meta["scale_factor"]
        # The training items' encodings on disk (see LatentCache): folder and item count, set by
        # the stage; None encodes every batch anew (e.g. the benchmark's batches).
        self.cache_at: tuple[Path, int] | None = None
        self._cache: LatentCache | None = None
        # Sample previews (the engine's optional hook), set by the stage: every preview_every
        # steps, a grid of preview_batch (fixed validation items); none by default.
        self.preview_every, self.preview_batch, self.preview_seed = 0, None, 0

    def _place(self, device: torch.device) -> None:
        """The frozen VAEs on the training device (the engine prepares only ``modules()``)."""
        for v in (self.vae, *self.extra_vaes.values()):
            if next(v.parameters()).device != device:
                v.to(device)

    @classmethod
    def from_pipeline(cls, pipe: RadioDiffPipeline, unet: CondUNet | None = None) -> LDMTask:
        """The task of a trained model folder (e.g. to time its training steps), optionally with
        another U-Net (a copy to train). Folders written before ``radiodiff.json`` recorded the
        loss weighting and L1 term take the schema's defaults."""
        defaults = schema_defaults("$defs/ldm_stage/properties/diffusion")
        meta = {"weighting": defaults["weighting"], "l1": defaults["l1"], **pipe.meta}
        return cls(unet if unet is not None else pipe.unet, pipe.vae, meta, dict(pipe.extra_vaes))

    def param_groups(self):
        return [("unet", list(self.model.parameters()), {})]

    def modules(self):
        return {"unet": self.model, "vae": self.vae}

    def encodings(self, batch, mask=None):
        """The target's posterior mean and std and the ICASSP condition latents (or None) of the
        batch items selected by ``mask`` (all by default)."""
        target, cond = batch["target"], batch["condition"]
        if mask is not None:
            target, cond = target[mask], cond[mask]
        mean, std = encode_posterior(self.vae, target)
        return mean, std, condition_latents(self.extra_vaes, self.meta.get("extra_scale_factors"), cond)

    def _cached_encodings(self, batch):
        """:meth:`encodings` through the run's :class:`LatentCache` (items encoded once)."""
        if self._cache is None:
            folder, n = self.cache_at
            side = batch["target"].shape[-1] // self.vae.config.downsample_factor
            extra_c = sum(int(v.config.embed_dim) for v in self.extra_vaes.values())
            self._shapes = ((int(self.vae.config.embed_dim), side, side), (extra_c, side, side) if extra_c else None)
            width = 2 * int(np.prod(self._shapes[0])) + (extra_c * side * side)
            self._cache = LatentCache(folder, n, width)

        def encode(mask):
            mean, std, extra = self.encodings(batch, mask)
            parts = [mean.flatten(1), std.flatten(1)] + ([] if extra is None else [extra.flatten(1)])
            return torch.cat(parts, dim=1)

        rows = self._cache.get(batch["index"], encode)
        (latent, extra_shape), k = self._shapes, int(np.prod(self._shapes[0]))
        mean, std = rows[:, :k].view(-1, *latent), rows[:, k : 2 * k].view(-1, *latent)
        extra = None if extra_shape is None else rows[:, 2 * k :].view(-1, *extra_shape)
        return mean, std, extra

    def loss(self, batch, step: int, opt_index: int):
        cond = batch["condition"]
        self._place(cond.device)
        if self.cache_at is not None and "index" in batch:
            mean, std, extra = self._cached_encodings(batch)
        else:
            mean, std, extra = self.encodings(batch)
        z0 = self.scale * (mean + std * torch.randn_like(std))
        t = const_sde.sample_time(z0.shape[0], self.meta["t_eps"], device=z0.device)
        noise = torch.randn_like(z0)
        z_t = const_sde.forward_process(z0, t, noise)
        f_c, f_e = self.model(z_t, t, cond, extra)
        c, e = const_sde.skip_parameterization(z_t, t, f_c, f_e) if self.meta["skip"] else (f_c, f_e)
        return const_sde.diffusion_loss(c, e, z0, noise, t, self.meta["weighting"], self.meta["l1"])

    def pipeline(self, model) -> RadioDiffPipeline:
        return RadioDiffPipeline(model, self.vae, self.meta, self.extra_vaes)

    @staticmethod
    @torch.no_grad()
    def predict(pipe: RadioDiffPipeline, batch, steps: int | None = None, generator=None) -> torch.Tensor:
        """Maps on [0, 1] for a batch, known building pixels 0 (RadioMapSeer): the exported
        pipeline's sampler, as ``sample_*`` and ``predict``."""
        pred = pipe(batch["condition"], steps, generator)
        return zero_buildings(pred, batch["buildings"]) if "buildings" in batch else pred

    @torch.no_grad()
    def preview(self, model):
        """A grid of samples of the fixed preview items (:mod:`radiodiff.train.previews`) by
        ``model`` at the model's sampler steps, noise seeded by ``preview_seed``."""
        if self.preview_batch is None:
            return None
        from accelerate.utils import send_to_device

        device = next(model.parameters()).device
        self._place(device)
        batch = send_to_device(self.preview_batch, device)
        gen = torch.Generator(device=device).manual_seed(self.preview_seed)
        return preview_grid(batch, self.predict(self.pipeline(model), batch, generator=gen), self.meta)

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        self._place(next(model.parameters()).device)
        pipe = self.pipeline(model)
        return loader_means(lambda batch: self.predict(pipe, batch), loader)

    def export(self, model, out_dir: Path, raw=None) -> None:
        self.pipeline(model).save_pretrained(out_dir, raw_unet=raw)


def run(params: dict, dataset: str, out, root=None, crops=None, arranged=None, **vaes) -> dict:
    """The ``train_ldm_{dataset}`` stage: RadioMapSeer (``root`` and ``vae``) or ICASSP (``crops``,
    ``vae_radio``, ``vae_building``, ``vae_antenna``; ``arranged`` for random windows); writes
    ``model/``, ``metrics.json`` and ``train_log.csv`` into ``out``."""
    stage = f"train_ldm_{dataset}"
    if dataset == "radiomapseer":
        source, names, data = root, ("vae",), params["data"]["radiomapseer"]
    elif dataset == "icassp":
        source, names, data = crops, ("vae_radio", "vae_building", "vae_antenna"), None
    else:
        raise RadiodiffError(f"train ldm: no dataset {dataset!r} (radiomapseer or icassp)")
    if not source:
        raise RadiodiffError(f"train ldm {dataset}: give --{'root' if dataset == 'radiomapseer' else 'crops'}")
    for name in names:
        if not vaes.get(name):
            raise RadiodiffError(f"train ldm {dataset}: give --{name.replace('_', '-')} (a trained VAE model folder)")
    section = params[stage]
    diff = section["diffusion"]
    const_sde.step_sizes(diff["sampling_steps"], diff["t_eps"])  # validate early
    splits = map_splits(dataset, source, data, arranged)
    train_set, val_set, meta = splits.training_sets(section["data"], f"{stage}.data", section["train"]["seed"])
    meta = {
        "dataset": dataset,
        **{k: diff[k] for k in ("sampling_steps", "t_eps", "skip", "weighting", "l1")},
        **meta,
    }
    vae = AutoencoderKL.from_pretrained(vaes[names[0]]).eval()
    extra_vaes = {}  # ICASSP: the condition VAEs, exported with the model
    if dataset == "icassp":
        extra_vaes = {k: AutoencoderKL.from_pretrained(vaes[f"vae_{k}"]).eval() for k in EXTRA_VAES}

    # Latent scales: one streamed pass over the training items (every flip/rotation variant).
    scale, extra_scales = latent_scales(
        train_set, vae, extra_vaes, diff["scale_factor"], params["runtime"]["num_workers"],
        f"{stage}.diffusion.scale_factor",
    )  # fmt: skip
    meta["scale_factor"] = scale
    if extra_vaes:
        meta["extra_scale_factors"] = extra_scales

    image_size = int(meta["image_size"])
    latent_shape = [
        int(vae.config.embed_dim),
        image_size // vae.config.downsample_factor,
        image_size // vae.config.downsample_factor,
    ]
    cfg = CondUNetConfig.from_params(
        section["model"],
        latent_channels=latent_shape[0],
        extra_channels=sum(int(v.config.embed_dim) for v in extra_vaes.values()),
        cond_channels=3,
        image_size=image_size,
    )
    torch.manual_seed(int(section["train"]["seed"]))  # the U-Net's initial weights
    unet = CondUNet(cfg)
    task = LDMTask(unet, vae, meta, extra_vaes)
    sources = [*splits.sources, *(Path(vaes[n]) for n in names)]
    state_dir = run_state_dir(stage, __name__, params, sources)
    task.cache_at = (state_dir / "latents", len(train_set))
    task.preview_every = int(section["previews"]["sample_every"] or 0)
    task.preview_batch = preview_items(val_set, int(section["previews"]["samples"]))
    task.preview_seed = int(section["train"]["seed"])
    summary = run_training(stage, __name__, task, train_set, val_set, params, sources, Path(out))
    shutil.rmtree(state_dir / "latents", ignore_errors=True)  # the run is over: its encodings are not needed again
    copy_previews(state_dir / PREVIEWS, Path(out) / "previews")
    metrics = {
        **map_model_metrics(summary, section, dataset, meta, unet, len(train_set)),
        "sampling_steps": diff["sampling_steps"],
        "latent_shape": latent_shape,
        "scale_factor": meta["scale_factor"],
        "parameters_without_swin": unet.num_parameters() - sum(p.numel() for p in swin_parameters(unet)),
        **run_fields(summary, section),
    }
    write_json(Path(out) / "metrics.json", metrics)
    return {"stage": stage, **{k: metrics[k] for k in ("nmse", "rmse", "ssim", "psnr", "steps", "steps_per_s")}}
