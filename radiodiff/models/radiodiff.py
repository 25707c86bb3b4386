"""RadioDiff as a self-contained folder that predicts radio maps (diffusers' pipeline idea).

A RadioDiff folder holds everything sampling needs, so ``radiodiff predict`` and
``radiodiff evaluate --model`` work from it alone::

    radiodiff.json     dataset, condition, physics exponent, latent scale factors, sampler settings
    unet/              the conditional U-Net (EMA weights)
    vae/               the target VAE (RadioMapSeer VAE, or the ICASSP radio VAE)
    vae_building/, vae_antenna/   ICASSP only: the VAEs whose latents condition the U-Net

A RadioUNet folder (:class:`~radiodiff.models.radiounet.RadioUNetPipeline`) holds
``radiounet.json`` and ``net/``. Both pipelines take the condition
image (B, 3, S, S) in [−1, 1] and return maps on the [0, 1] scale of the dataset (RadioMapSeer
gray gain; ICASSP (160 − PL)/147).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from radiodiff.diffusion import const_sde
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.cond_unet import CondUNet
from radiodiff.models.map_model import MapModel, RadioDiffRecord
from radiodiff.models.persistence import RAW_SUFFIX, weights_folder

RADIODIFF_JSON = RadioDiffRecord.config_label
EXTRA_VAES = ("building", "antenna")  # ICASSP: condition channels [R, G] and [B]


def encode_posterior(vae: AutoencoderKL, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of ``images`` under a frozen VAE, in fp32 (outside any autocast),
    on the VAE's device."""
    device = next(vae.parameters()).device
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        post = vae.encode(images.to(device, torch.float32))
    return post.mean, post.std


def icassp_extra_images(condition: torch.Tensor) -> dict[str, torch.Tensor]:
    """The images the ICASSP building and antenna VAEs encode: [reflectance, transmittance], [FSPL − G]."""
    return {"building": condition[:, :2], "antenna": condition[:, 2:3]}


@torch.no_grad()
def condition_latents(extra_vaes, scales: dict | None, condition: torch.Tensor) -> torch.Tensor | None:
    """ICASSP: the scaled posterior means of the building and antenna VAEs, concatenated (None
    without condition VAEs)."""
    if not len(extra_vaes):
        return None
    images = icassp_extra_images(condition)
    return torch.cat([extra_vaes[k].encode(images[k]).mode() * scales[k] for k in EXTRA_VAES], dim=1)


class RadioDiffPipeline(MapModel):
    """The conditional U-Net plus the VAEs around it; :meth:`forward` samples maps."""

    kind = "radiodiff"
    is_latent = True

    def __init__(
        self, unet: CondUNet, vae: AutoencoderKL, record: RadioDiffRecord | dict, extra_vaes: dict | None = None
    ):
        super().__init__()
        self.unet, self.vae, self.record = unet, vae, RadioDiffRecord.of(record)
        self.extra_vaes = torch.nn.ModuleDict(extra_vaes or {})

    # ---- the face (MapModel) ----
    @property
    def network(self) -> CondUNet:
        return self.unet

    def with_network(self, network: CondUNet) -> RadioDiffPipeline:
        return RadioDiffPipeline(network, self.vae, self.record, dict(self.extra_vaes))

    @property
    def latent_step(self) -> int:
        return self.vae.downsample_factor

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.latent_channels)

    @property
    def scale_factor(self) -> float:
        return float(self.record.scale_factor)

    def steps_for(self, steps: int | None) -> int:
        """``steps``, or the model's own default (``radiodiff.json`` ``sampling_steps``) when None."""
        return self.record.sampling_steps if steps is None else steps

    # ---- the pieces of sampling and training ----
    def training_modules(self) -> dict[str, torch.nn.Module]:
        """What a training run places on its device and checkpoints: the U-Net it trains and the
        frozen target VAE that encodes every batch."""
        return {"unet": self.unet, "vae": self.vae}

    def freeze_first_stage(self) -> None:
        """The VAEs in eval mode without gradients: they encode and decode, never train."""
        for v in (self.vae, *self.extra_vaes.values()):
            v.eval().requires_grad_(False)

    def place_first_stage(self, device: torch.device) -> None:
        """The frozen VAEs on ``device`` (a training run prepares only :meth:`training_modules`)."""
        for v in (self.vae, *self.extra_vaes.values()):
            if next(v.parameters()).device != device:
                v.to(device)

    def target_posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the target VAE's posterior of ``images``, in fp32 (outside any autocast),
        on the VAE's device."""
        return encode_posterior(self.vae, images)

    @property
    def extra_latent_channels(self) -> int:
        """The channels of the condition latents: ICASSP's condition VAEs', RadioMapSeer's physics
        prior's (``prior_latent``); 0 for none."""
        own = int(self.vae.config.embed_dim) if self.record.prior_latent else 0
        return own + sum(int(v.config.embed_dim) for v in self.extra_vaes.values())

    def extra_latents(self, condition: torch.Tensor) -> torch.Tensor | None:
        """The condition latents concatenated with z_t at the stem: ICASSP's scaled posterior means
        of the building and antenna VAEs; with ``prior_latent``, RadioMapSeer's physics prior (the
        condition's third channel, on the target's scale) through the target VAE, scaled as the
        target; None for neither."""
        if self.record.prior_latent:
            return self.target_posterior(condition[:, 2:3])[0] * self.scale_factor
        return condition_latents(self.extra_vaes, self.record.extra_scale_factors, condition)

    def denoiser(self, condition: torch.Tensor, extra: torch.Tensor | None):
        """``denoise(z, t) -> (C, ε̂)``: the U-Net under the condition, with the skip
        parameterization when the model uses it (the sampler's network call)."""
        skip = self.record.skip

        def denoise(z, t):
            f_c, f_e = self.unet(z, t, condition, extra)
            return const_sde.skip_parameterization(z, t, f_c, f_e) if skip else (f_c, f_e)

        return denoise

    def sample_latent(self, denoise, shape, steps: int | None, generator=None, device=None) -> torch.Tensor:
        """z0 of shape ``shape`` by the const-SDE sampler with :meth:`steps_for` ``steps`` and the
        model's t_eps (:func:`radiodiff.diffusion.const_sde.sample`)."""
        return const_sde.sample(
            denoise, shape, self.steps_for(steps), generator=generator, device=device, eps=self.record.t_eps
        )

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Maps on [0, 1] of latents ``z0`` (scaled as the sampler gives them)."""
        x = self.vae.decode(z0 / self.scale_factor)
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps on [0, 1] through the first stage: encoded, the posterior mean decoded (fp32),
        the best any latent of this VAE can give them."""
        mean, _ = self.target_posterior(maps * 2.0 - 1.0)
        with torch.autocast(mean.device.type, enabled=False):
            return self.decode(mean * self.scale_factor)

    @torch.no_grad()
    def forward(
        self,
        condition: torch.Tensor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        extra: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample maps (B, C, S, S) on [0, 1] for condition images (B, 3, S, S) in [−1, 1].

        ``steps``: sampler steps N (N + 1 network calls); None = the model's own default
        (``radiodiff.json`` ``sampling_steps``); anything but an integer >= 1 is a ParamsError.
        ``extra``: the ICASSP condition latents when already computed (training's validation
        encodes them once per item), else they are encoded here.
        """
        if extra is None:
            extra = self.extra_latents(condition)
        side = condition.shape[-1] // self.latent_step
        shape = (condition.shape[0], self.latent_channels, side, side)
        z0 = self.sample_latent(self.denoiser(condition, extra), shape, steps, generator, condition.device)
        return self.decode(z0)

    def save_pretrained(self, directory: str | os.PathLike, raw_unet: CondUNet | None = None) -> Path:
        """The folder: ``unet/`` (this pipeline's U-Net: the EMA weights when written by training),
        ``unet_raw/`` (``raw_unet``, the training weights themselves, when given), the VAEs and
        ``radiodiff.json`` (which records the two)."""
        directory = Path(directory)
        self.unet.save_pretrained(directory / "unet")
        record = dataclasses.replace(self.record)
        if raw_unet is not None:
            raw_unet.save_pretrained(directory / f"unet{RAW_SUFFIX}")
            record.weights = {"unet": "EMA of the training weights", f"unet{RAW_SUFFIX}": "training weights (raw)"}
        self.vae.save_pretrained(directory / "vae")
        for k, v in self.extra_vaes.items():
            v.save_pretrained(directory / f"vae_{k}")
        record.write(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device="cpu", ema: bool = True) -> RadioDiffPipeline:
        """A trained folder with its EMA U-Net (``ema``) or its raw training weights."""
        directory = Path(directory)
        record = RadioDiffRecord.read(directory)
        extra = {k: AutoencoderKL.from_pretrained(directory / f"vae_{k}") for k in record.extra_scale_factors}
        unet = CondUNet.from_pretrained(weights_folder(directory, "unet", ema))
        pipe = cls(unet, AutoencoderKL.from_pretrained(directory / "vae"), record, extra)
        return pipe.to(device).eval()
