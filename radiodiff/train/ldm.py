"""Train RadioDiff's conditional latent diffusion model on the shared engine.

``train_ldm_radiomapseer``: condition image [buildings, Tx, third] (third = buildings, cars or
the log-distance prior whose exponent is fitted on the training split) into the Swin encoder;
target = latent of the RadioMapSeer VAE. ``train_ldm_icassp``: the 3 arranged channels into the
Swin; the scaled posterior means of the building and antenna VAEs concatenated with z_t at the
stem; target = latent of the radio VAE. The VAEs are frozen, so their posteriors are computed
once up front (mean and std per item; every step draws a fresh posterior sample, as the
original does). With augmentation the posteriors are computed for all 8 flips/rotations.

Outputs: ``model/`` (a :class:`RadioDiffPipeline` folder: EMA U-Net + VAEs + radiodiff.json),
``metrics.json`` (validation split, sampled with the configured steps) and ``train_log.csv``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from radiodiff.core.errors import ParamsError
from radiodiff.core.io import write_json
from radiodiff.diffusion import const_sde
from radiodiff.evaluate.metrics import zero_buildings
from radiodiff.models.autoencoder import AutoencoderKL, count_parameters
from radiodiff.models.cond_unet import CondUNet, CondUNetConfig, swin_parameters
from radiodiff.models.pipelines import EXTRA_VAES, RadioDiffPipeline, icassp_extra_images
from radiodiff.train.inputs import StackedItems, icassp_items, physics_exponent, radiomapseer_items
from radiodiff.train.stage import map_metrics, run_report, run_stage

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
    """The latent diffusion model as the engine sees it: one optimizer (the U-Net, Swin included)."""

    def __init__(self, unet: CondUNet, vae: AutoencoderKL, meta: dict, diffusion: dict, extra_vaes=None):
        self.model = unet
        self.vae = vae.eval().requires_grad_(False)
        self.extra_vaes = extra_vaes or {}  # ICASSP: exported with the model, latents precomputed
        self.meta = meta
        self.scale = meta["scale_factor"]
        self.weighting, self.l1, self.skip = diffusion["weighting"], diffusion["l1"], diffusion["skip"]
        self.t_eps, self.eval_steps = diffusion["t_eps"], diffusion["sampling_steps"]

    def param_groups(self):
        return [("unet", list(self.model.parameters()), {})]

    def modules(self):
        return {"unet": self.model, "vae": self.vae}

    def loss(self, batch, step: int, opt_index: int):
        mean, std = batch["latent_mean"], batch["latent_std"]
        z0 = self.scale * (mean + std * torch.randn_like(std))
        t = const_sde.sample_time(z0.shape[0], self.t_eps, device=z0.device)
        noise = torch.randn_like(z0)
        z_t = const_sde.forward_process(z0, t, noise)
        f_c, f_e = self.model(z_t, t, batch["condition"], batch.get("extra"))
        c, e = const_sde.skip_parameterization(z_t, t, f_c, f_e) if self.skip else (f_c, f_e)
        return const_sde.diffusion_loss(c, e, z0, noise, t, self.weighting, self.l1)

    @torch.no_grad()
    def predict(self, model, batch, steps: int, generator=None) -> torch.Tensor:
        """Maps on [0, 1] for a batch, known building pixels 0 (RadioMapSeer)."""
        cond, extra = batch["condition"], batch.get("extra")

        def denoise(z, t):
            f_c, f_e = model(z, t, cond, extra)
            return const_sde.skip_parameterization(z, t, f_c, f_e) if self.skip else (f_c, f_e)

        side = cond.shape[-1] // self.vae.downsample_factor
        shape = (cond.shape[0], model.config.latent_channels, side, side)
        z0 = const_sde.sample(denoise, shape, steps, generator=generator, device=cond.device, eps=self.t_eps)
        pred = ((self.vae.decode(z0 / self.scale) + 1) / 2).clamp(0, 1)
        return zero_buildings(pred, batch["buildings"]) if "buildings" in batch else pred

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        return map_metrics(lambda batch: self.predict(model, batch, self.eval_steps), loader)

    def export(self, model, out_dir: Path) -> None:
        self.pipeline(model).save_pretrained(out_dir)

    def pipeline(self, model) -> RadioDiffPipeline:
        return RadioDiffPipeline(model, self.vae, self.meta, self.extra_vaes)


def _unet_config(m: dict, latent_channels: int, extra_channels: int, image_size: int) -> CondUNetConfig:
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in m.items()}
    try:
        return CondUNetConfig(
            latent_channels=latent_channels,
            extra_channels=extra_channels,
            cond_channels=3,
            image_size=image_size,
            **fields,
        )
    except TypeError as e:
        raise ParamsError(f"train_ldm model: {e}") from None


def train_ldm(dataset: str, section: dict, inputs: dict, out_dir: Path, state_root: Path = Path("state")) -> dict:
    """Train the LDM of ``dataset`` (radiomapseer | icassp) from its params ``section``
    ({model, diffusion, train}) and write the stage's outputs into ``out_dir``."""
    out_dir = Path(out_dir)
    diff, tr = dict(section["diffusion"]), dict(section["train"])
    augment = tr.pop("augment", False)
    const_sde.step_sizes(diff["sampling_steps"], diff["t_eps"])  # validate early
    stage = f"train_ldm_{dataset}"
    meta: dict = {
        "dataset": dataset,
        "sampling_steps": diff["sampling_steps"],
        "t_eps": diff["t_eps"],
        "skip": diff["skip"],
    }

    if dataset == "radiomapseer":
        data, condition = inputs["data"], inputs["data"]["condition"]
        exponent = physics_exponent(inputs["root"], data) if condition == "physics" else None
        train_set = radiomapseer_items(inputs["root"], "train", data, condition, exponent or 2.0)
        val_set = radiomapseer_items(inputs["root"], "val", data, condition, exponent or 2.0)
        vae = AutoencoderKL.from_pretrained(inputs["vae"]).eval()
        extra_vaes = {}
        meta |= {"condition": condition, "physics_exponent": exponent, "image_size": data["image_size"]}
        sources = [Path(inputs["root"]), Path(inputs["vae"])]
    elif dataset == "icassp":
        train_set = icassp_items(inputs["crops"], "train", augment=augment)
        val_set = icassp_items(inputs["crops"], "val")
        vae = AutoencoderKL.from_pretrained(inputs["vae_radio"]).eval()
        extra_vaes = {k: AutoencoderKL.from_pretrained(inputs[f"vae_{k}"]).eval() for k in EXTRA_VAES}
        meta |= {"condition": "arranged", "image_size": int(train_set.tensors["condition"].shape[-1])}
        sources = [Path(inputs["crops"])] + [Path(inputs[f"vae_{k}"]) for k in ("radio", *EXTRA_VAES)]
    else:
        raise ParamsError(f"train_ldm: unknown dataset {dataset!r}")

    # Frozen VAEs: posteriors once, for every item (and every flip/rotation variant).
    mean, std = encode_posteriors(vae, train_set.variant_tensor("target"))
    meta["scale_factor"] = _resolve_scale(diff["scale_factor"], mean, std, f"{stage}.diffusion.scale_factor")
    train_set.add_per_variant("latent_mean", mean)
    train_set.add_per_variant("latent_std", std)
    if extra_vaes:
        scales = {}
        for ds in (train_set, val_set):
            images = icassp_extra_images(ds.variant_tensor("condition"))
            means = {k: encode_posteriors(extra_vaes[k], images[k])[0] for k in EXTRA_VAES}
            if ds is train_set:
                scales = {k: latent_scale(means[k]) for k in EXTRA_VAES}
            ds.add_per_variant("extra", torch.cat([means[k] * scales[k] for k in EXTRA_VAES], dim=1))
        meta["extra_scale_factors"] = scales

    latent_channels = int(mean.shape[1])
    extra_channels = sum(int(v.config.embed_dim) for v in extra_vaes.values())
    image_size = int(train_set.tensors["condition"].shape[-1])
    cfg = _unet_config(section["model"], latent_channels, extra_channels, image_size)
    torch.manual_seed(int(tr.get("seed", 0)))  # the U-Net's initial weights
    unet = CondUNet(cfg)
    task = LDMTask(unet, vae, meta, diff, extra_vaes)

    key = {"params": section, "data": inputs.get("data")}
    summary = run_stage(stage, task, train_set, val_set, tr, key, sources, out_dir, state_root)
    metrics = {
        **{k: summary["val"].get(k) for k in ("nmse", "rmse", "ssim", "psnr")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1"
        + (", building pixels 0" if dataset == "radiomapseer" else ", valid pixels"),
        "sampling_steps": diff["sampling_steps"],
        "latent_shape": list(mean.shape[1:]),
        "scale_factor": meta["scale_factor"],
        "condition": meta["condition"],
        "physics_exponent": meta.get("physics_exponent"),
        "parameters": count_parameters(unet),
        "parameters_without_swin": count_parameters(unet) - sum(p.numel() for p in swin_parameters(unet)),
        "train_items": len(train_set),
        **run_report(summary, section),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


__all__ = ["LDMTask", "StackedItems", "encode_posteriors", "latent_scale", "train_ldm"]
