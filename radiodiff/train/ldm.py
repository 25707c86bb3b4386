"""Train RadioDiff's conditional latent diffusion model on the shared engine.

``train_ldm_radiomapseer``: condition image [buildings, Tx, third] (third = buildings, cars or
the log-distance prior whose exponent is fitted on the training split) into the Swin encoder;
target = latent of the RadioMapSeer VAE. ``train_ldm_icassp``: the 3 arranged channels into the
Swin; the scaled posterior means of the building and antenna VAEs concatenated with z_t at the
stem; target = latent of the radio VAE. The VAEs are frozen, so their posteriors are computed
once up front (mean and std per item; every step draws a fresh posterior sample, as the
original does). With augmentation the posteriors are computed for all 8 flips/rotations.
Validation samples with the exported pipeline's own sampler (:class:`RadioDiffPipeline`).

Outputs: ``model/`` (a :class:`RadioDiffPipeline` folder: EMA U-Net + VAEs + radiodiff.json),
``metrics.json`` (validation split, sampled with ``diffusion.sampling_steps``) and ``train_log.csv``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.core.io import write_json
from radiodiff.core.params import schema_defaults
from radiodiff.data.items import map_splits
from radiodiff.diffusion import const_sde
from radiodiff.metrics import loader_means, zero_buildings
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.cond_unet import CondUNet, CondUNetConfig, swin_parameters
from radiodiff.models.radiodiff import EXTRA_VAES, RadioDiffPipeline, icassp_extra_images
from radiodiff.train.runs import map_model_metrics, run_fields, run_training

ENCODE_BATCH = 256


@torch.no_grad()
def encode_posteriors(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of ``images`` (N, C, S, S) under a frozen VAE, in chunks."""
    means, stds = [], []
    for chunk in images.split(ENCODE_BATCH):
        post = vae.encode(chunk)
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def latent_scale(mean: torch.Tensor, std: torch.Tensor | None = None, seed: int = 0) -> float:
    """1 / std of posterior samples (Stable Diffusion's recipe for its 0.18215), so z0 has unit variance."""
    z = mean
    if std is not None:
        z = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
    return float(1.0 / z.float().std().clamp_min(1e-6))


def _resolve_scale(value, mean, std, key: str) -> float:
    if value == "auto":
        return latent_scale(mean, std)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise ParamsError(f"{key}: expected 'auto' or a positive number, got {value!r}")


class LDMTask:
    """The latent diffusion model as the engine sees it: one optimizer (the U-Net, Swin included).

    ``meta`` is what the exported folder records (``radiodiff.json``): dataset, condition, latent
    scale factors and the diffusion settings (weighting, l1, skip, t_eps, sampling_steps).
    """

    def __init__(self, unet: CondUNet, vae: AutoencoderKL, meta: dict, extra_vaes=None):
        self.model = unet
        self.vae = vae.eval().requires_grad_(False)
        self.extra_vaes = extra_vaes or {}  # ICASSP: exported with the model, latents precomputed
        self.meta = meta
        self.scale = meta["scale_factor"]

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

    def loss(self, batch, step: int, opt_index: int):
        mean, std = batch["latent_mean"], batch["latent_std"]
        z0 = self.scale * (mean + std * torch.randn_like(std))
        t = const_sde.sample_time(z0.shape[0], self.meta["t_eps"], device=z0.device)
        noise = torch.randn_like(z0)
        z_t = const_sde.forward_process(z0, t, noise)
        f_c, f_e = self.model(z_t, t, batch["condition"], batch.get("extra"))
        c, e = const_sde.skip_parameterization(z_t, t, f_c, f_e) if self.meta["skip"] else (f_c, f_e)
        return const_sde.diffusion_loss(c, e, z0, noise, t, self.meta["weighting"], self.meta["l1"])

    def pipeline(self, model) -> RadioDiffPipeline:
        return RadioDiffPipeline(model, self.vae, self.meta, self.extra_vaes)

    @staticmethod
    @torch.no_grad()
    def predict(pipe: RadioDiffPipeline, batch, steps: int | None = None, generator=None) -> torch.Tensor:
        """Maps on [0, 1] for a batch (the batch's precomputed condition latents), known building
        pixels 0 (RadioMapSeer): the exported pipeline's sampler, as ``sample_*`` and ``predict``."""
        pred = pipe(batch["condition"], steps, generator, extra=batch.get("extra"))
        return zero_buildings(pred, batch["buildings"]) if "buildings" in batch else pred

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        pipe = self.pipeline(model)
        return loader_means(lambda batch: self.predict(pipe, batch), loader)

    def export(self, model, out_dir: Path) -> None:
        self.pipeline(model).save_pretrained(out_dir)


def _add_extra_latents(train_set, val_set, extra_vaes: dict) -> dict[str, float]:
    """ICASSP: the building and antenna VAEs' scaled posterior means of every item (and variant),
    and their scale factors (measured on the training set)."""
    scales = {}
    for ds in (train_set, val_set):
        images = icassp_extra_images(ds.variant_tensor("condition"))
        means = {k: encode_posteriors(extra_vaes[k], images[k])[0] for k in EXTRA_VAES}
        if ds is train_set:
            scales = {k: latent_scale(means[k]) for k in EXTRA_VAES}
        ds.add_per_variant("extra", torch.cat([means[k] * scales[k] for k in EXTRA_VAES], dim=1))
    return scales


def run(params: dict, dataset: str, out, root=None, crops=None, **vaes) -> dict:
    """The ``train_ldm_{dataset}`` stage: RadioMapSeer (``root`` and ``vae``) or ICASSP (``crops``,
    ``vae_radio``, ``vae_building``, ``vae_antenna``); writes ``model/``, ``metrics.json`` and
    ``train_log.csv`` into ``out``."""
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
    splits = map_splits(dataset, source, data)
    train_set, val_set, meta = splits.training_sets(section["data"]["augment"], f"{stage}.data.augment")
    meta = {
        "dataset": dataset,
        **{k: diff[k] for k in ("sampling_steps", "t_eps", "skip", "weighting", "l1")},
        **meta,
    }
    vae = AutoencoderKL.from_pretrained(vaes[names[0]]).eval()
    extra_vaes = {}  # ICASSP: the condition VAEs, exported with the model
    if dataset == "icassp":
        extra_vaes = {k: AutoencoderKL.from_pretrained(vaes[f"vae_{k}"]).eval() for k in EXTRA_VAES}

    # Frozen VAEs: posteriors once, for every item (and every flip/rotation variant).
    mean, std = encode_posteriors(vae, train_set.variant_tensor("target"))
    meta["scale_factor"] = _resolve_scale(diff["scale_factor"], mean, std, f"{stage}.diffusion.scale_factor")
    train_set.add_per_variant("latent_mean", mean)
    train_set.add_per_variant("latent_std", std)
    if extra_vaes:
        meta["extra_scale_factors"] = _add_extra_latents(train_set, val_set, extra_vaes)

    cfg = CondUNetConfig.from_params(
        section["model"],
        latent_channels=int(mean.shape[1]),
        extra_channels=sum(int(v.config.embed_dim) for v in extra_vaes.values()),
        cond_channels=3,
        image_size=int(train_set.tensors["condition"].shape[-1]),
    )
    torch.manual_seed(int(section["train"]["seed"]))  # the U-Net's initial weights
    unet = CondUNet(cfg)
    task = LDMTask(unet, vae, meta, extra_vaes)
    key = {"params": section, "data": data}
    sources = [*splits.sources, *(Path(vaes[n]) for n in names)]
    summary = run_training(stage, task, train_set, val_set, section, params["runtime"], key, sources, Path(out))
    metrics = {
        **map_model_metrics(summary, section, dataset, meta, unet, len(train_set)),
        "sampling_steps": diff["sampling_steps"],
        "latent_shape": list(mean.shape[1:]),
        "scale_factor": meta["scale_factor"],
        "parameters_without_swin": unet.num_parameters() - sum(p.numel() for p in swin_parameters(unet)),
        **run_fields(summary, section),
    }
    write_json(Path(out) / "metrics.json", metrics)
    return {"stage": stage, **{k: metrics[k] for k in ("nmse", "rmse", "ssim", "psnr", "steps", "steps_per_s")}}
