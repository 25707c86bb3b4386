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
from radiodiff.data.items import stage_source
from radiodiff.diffusion import const_sde
from radiodiff.metrics import RunningStd, loader_means, zero_buildings
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.cond_unet import CondUNet, swin_parameters
from radiodiff.models.map_model import RadioDiffRecord
from radiodiff.models.radiodiff import EXTRA_VAES, RadioDiffPipeline, encode_posterior, icassp_extra_images
from radiodiff.models.unet_config import CondUNetConfig
from radiodiff.train.engine import PREVIEWS
from radiodiff.train.previews import copy_previews, preview_grid, preview_items
from radiodiff.train.runs import map_model_metrics, run_fields, run_state_dir, run_training

# Items per batch of the pass that measures latent scales (VAE attention: 4096² per item at 256²).
SCALE_BATCH = 16
SCALE_ITEMS = 1024  # at most this many training samples (evenly spaced, unflipped) measure them


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

    ``pipe`` is the pipeline being trained: the U-Net, the frozen VAEs and the record the exported
    folder keeps (``radiodiff.json``: dataset, condition, latent scale factors and the diffusion
    settings: weighting, l1, skip, t_eps, sampling_steps).
    """

    def __init__(self, pipe: RadioDiffPipeline):
        self.pipe, self.model, self.record = pipe, pipe.network, pipe.record
        pipe.freeze_first_stage()  # the VAEs encode, never train (the ICASSP condition VAEs export with it)
        # The training items' encodings on disk (see LatentCache): folder and item count, set by
        # the stage; None encodes every batch anew (e.g. the benchmark's batches).
        self.cache_at: tuple[Path, int] | None = None
        self._cache: LatentCache | None = None
        # Sample previews (the engine's optional hook), set by the stage: every preview_every
        # steps, a grid of preview_batch (fixed validation items); none by default.
        self.preview_every, self.preview_batch, self.preview_seed = 0, None, 0
        self.preview_gain_threshold = 0.0  # RadioMapSeer: the gray encoding's floor, for dB

    def param_groups(self):
        return [("unet", list(self.model.parameters()), {})]

    def modules(self):
        return self.pipe.training_modules()

    def encodings(self, batch, mask=None):
        """The target's posterior mean and std and the ICASSP condition latents (or None) of the
        batch items selected by ``mask`` (all by default)."""
        target, cond = batch["target"], batch["condition"]
        if mask is not None:
            target, cond = target[mask], cond[mask]
        mean, std = self.pipe.target_posterior(target)
        return mean, std, self.pipe.extra_latents(cond)

    def _cached_encodings(self, batch):
        """:meth:`encodings` through the run's :class:`LatentCache` (items encoded once)."""
        if self._cache is None:
            folder, n = self.cache_at
            side = batch["target"].shape[-1] // self.pipe.latent_step
            extra_c = self.pipe.extra_latent_channels
            self._shapes = ((self.pipe.latent_channels, side, side), (extra_c, side, side) if extra_c else None)
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
        self.pipe.place_first_stage(cond.device)
        if self.cache_at is not None and "index" in batch:
            mean, std, extra = self._cached_encodings(batch)
        else:
            mean, std, extra = self.encodings(batch)
        r = self.record
        z0 = self.pipe.scale_factor * (mean + std * torch.randn_like(std))
        t = const_sde.sample_time(z0.shape[0], r.t_eps, device=z0.device)
        noise = torch.randn_like(z0)
        z_t = const_sde.forward_process(z0, t, noise)
        f_c, f_e = self.model(z_t, t, cond, extra)
        c, e = const_sde.skip_parameterization(z_t, t, f_c, f_e) if r.skip else (f_c, f_e)
        return const_sde.diffusion_loss(c, e, z0, noise, t, r.weighting, r.l1)

    def pipeline(self, model) -> RadioDiffPipeline:
        return self.pipe.with_network(model)

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
        self.pipe.place_first_stage(device)
        batch = send_to_device(self.preview_batch, device)
        gen = torch.Generator(device=device).manual_seed(self.preview_seed)
        pred = self.predict(self.pipeline(model), batch, generator=gen)
        return preview_grid(batch, pred, self.pipe.dataset, self.preview_gain_threshold)

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        self.pipe.place_first_stage(next(model.parameters()).device)
        pipe = self.pipeline(model)
        return loader_means(lambda batch: self.predict(pipe, batch), loader)

    def export(self, model, out_dir: Path, raw=None) -> None:
        self.pipeline(model).save_pretrained(out_dir, raw_unet=raw)


def unet_config(
    model: dict, latent_channels: int, extra_channels: int, image_size: int, cond_channels: int = 3
) -> CondUNetConfig:
    """The U-Net of a ``train_ldm_*.model`` section; ``prior_latent`` is the stage's choice of
    extra latents (counted in ``extra_channels``), not a field of the network."""
    fields = {k: v for k, v in model.items() if k != "prior_latent"}
    return CondUNetConfig.from_params(
        fields,
        latent_channels=latent_channels,
        extra_channels=extra_channels,
        cond_channels=cond_channels,
        image_size=image_size,
    )


def run(params: dict, dataset: str, out, root=None, crops=None, arranged=None, **vaes) -> dict:
    """The ``train_ldm_{dataset}`` stage: RadioMapSeer (``root`` and ``vae``) or ICASSP (``crops``,
    ``vae_radio``, ``vae_building``, ``vae_antenna``; ``arranged`` for random windows); writes
    ``model/``, ``metrics.json`` and ``train_log.csv`` into ``out``."""
    source = stage_source(f"train ldm {dataset}", dataset, params, root, crops, arranged)
    stage = f"train_ldm_{dataset}"
    names = ("vae",) if dataset == "radiomapseer" else ("vae_radio", "vae_building", "vae_antenna")
    for name in names:
        if not vaes.get(name):
            raise RadiodiffError(f"train ldm {dataset}: give --{name.replace('_', '-')} (a trained VAE model folder)")
    section = params[stage]
    diff = section["diffusion"]
    const_sde.step_sizes(diff["sampling_steps"], diff["t_eps"])  # validate early
    data = params["data"]["radiomapseer"] if dataset == "radiomapseer" else None
    train_set, val_set, recorded = source.training_sets(section["data"], f"{stage}.data", section["train"]["seed"])
    vae = AutoencoderKL.from_pretrained(vaes[names[0]]).eval()
    extra_vaes = {}  # ICASSP: the condition VAEs, exported with the model
    if dataset == "icassp":
        extra_vaes = {k: AutoencoderKL.from_pretrained(vaes[f"vae_{k}"]).eval() for k in EXTRA_VAES}

    # Latent scales: one streamed pass over the training items (every flip/rotation variant).
    scale, extra_scales = latent_scales(
        train_set, vae, extra_vaes, diff["scale_factor"], params["runtime"]["num_workers"],
        f"{stage}.diffusion.scale_factor",
    )  # fmt: skip
    prior_latent = section["model"]["prior_latent"]
    if prior_latent and recorded["condition"] != "physics":
        where = " (ICASSP: its antenna VAE latent is the prior already)" if data is None else ""
        raise ParamsError(
            f"{stage}.model.prior_latent: the physics prior is the condition's third channel only with "
            f"data.radiomapseer.condition physics{where}"
        )
    record = RadioDiffRecord(
        dataset=dataset,
        **{k: diff[k] for k in ("sampling_steps", "t_eps", "skip", "weighting", "l1")},
        **recorded,
        scale_factor=scale,
        extra_scale_factors=extra_scales if extra_vaes else {},
        prior_latent=prior_latent,
    )

    side = record.image_size // vae.config.downsample_factor
    latent_shape = [int(vae.config.embed_dim), side, side]
    extra_channels = sum(int(v.config.embed_dim) for v in extra_vaes.values()) + (
        latent_shape[0] if prior_latent else 0
    )
    cfg = unet_config(section["model"], latent_shape[0], extra_channels, record.image_size)
    torch.manual_seed(int(section["train"]["seed"]))  # the U-Net's initial weights
    unet = CondUNet(cfg)
    task = LDMTask(RadioDiffPipeline(unet, vae, record, extra_vaes))
    sources = [*source.sources, *(Path(vaes[n]) for n in names)]
    state_dir = run_state_dir(stage, __name__, params, sources)
    task.cache_at = (state_dir / "latents", len(train_set))
    task.preview_every = int(section["previews"]["sample_every"] or 0)
    task.preview_batch = preview_items(val_set, int(section["previews"]["samples"]))
    task.preview_seed = int(section["train"]["seed"])
    task.preview_gain_threshold = float(data["gain_threshold"]) if data else 0.0
    summary = run_training(stage, __name__, task, train_set, val_set, params, sources, Path(out))
    shutil.rmtree(state_dir / "latents", ignore_errors=True)  # the run is over: its encodings are not needed again
    copy_previews(state_dir / PREVIEWS, Path(out) / "previews")
    metrics = {
        **map_model_metrics(summary, section, record, unet, len(train_set)),
        "sampling_steps": diff["sampling_steps"],
        "latent_shape": latent_shape,
        "scale_factor": record.scale_factor,
        "parameters_without_swin": unet.num_parameters() - sum(p.numel() for p in swin_parameters(unet)),
        **run_fields(summary, section),
    }
    write_json(Path(out) / "metrics.json", metrics)
    return {"stage": stage, **{k: metrics[k] for k in ("nmse", "rmse", "ssim", "psnr", "steps", "steps_per_s")}}
