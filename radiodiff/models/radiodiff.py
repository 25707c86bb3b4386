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

import os
from pathlib import Path

import torch

from radiodiff.core.io import read_json, write_json
from radiodiff.diffusion import const_sde
from radiodiff.models.autoencoder import AutoencoderKL
from radiodiff.models.cond_unet import CondUNet
from radiodiff.models.persistence import RAW_SUFFIX, weights_folder

RADIODIFF_JSON = "radiodiff.json"
EXTRA_VAES = ("building", "antenna")  # ICASSP: condition channels [R, G] and [B]


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


class RadioDiffPipeline(torch.nn.Module):
    """The conditional U-Net plus the VAEs around it; :meth:`forward` samples maps."""

    def __init__(self, unet: CondUNet, vae: AutoencoderKL, meta: dict, extra_vaes: dict | None = None):
        super().__init__()
        self.unet, self.vae, self.meta = unet, vae, dict(meta)
        self.extra_vaes = torch.nn.ModuleDict(extra_vaes or {})

    @property
    def dataset(self) -> str:
        return self.meta["dataset"]

    def extra_latents(self, condition: torch.Tensor) -> torch.Tensor | None:
        """ICASSP: the scaled posterior means of the building and antenna VAEs, concatenated."""
        return condition_latents(self.extra_vaes, self.meta.get("extra_scale_factors"), condition)

    def denoiser(self, condition: torch.Tensor, extra: torch.Tensor | None):
        skip = self.meta.get("skip", True)

        def denoise(z, t):
            f_c, f_e = self.unet(z, t, condition, extra)
            return const_sde.skip_parameterization(z, t, f_c, f_e) if skip else (f_c, f_e)

        return denoise

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
        steps = self.meta["sampling_steps"] if steps is None else steps
        if extra is None:
            extra = self.extra_latents(condition)
        side = condition.shape[-1] // self.vae.downsample_factor
        shape = (condition.shape[0], self.unet.config.latent_channels, side, side)
        z0 = const_sde.sample(
            self.denoiser(condition, extra),
            shape,
            steps,
            generator=generator,
            device=condition.device,
            eps=self.meta.get("t_eps", const_sde.T_EPS),
        )
        x = self.vae.decode(z0 / self.meta["scale_factor"])
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)

    def save_pretrained(self, directory: str | os.PathLike, raw_unet: CondUNet | None = None) -> Path:
        """The folder: ``unet/`` (this pipeline's U-Net: the EMA weights when written by training),
        ``unet_raw/`` (``raw_unet``, the training weights themselves, when given), the VAEs and
        ``radiodiff.json`` (which records the two)."""
        directory = Path(directory)
        self.unet.save_pretrained(directory / "unet")
        meta = dict(self.meta)
        if raw_unet is not None:
            raw_unet.save_pretrained(directory / f"unet{RAW_SUFFIX}")
            meta["weights"] = {"unet": "EMA of the training weights", f"unet{RAW_SUFFIX}": "training weights (raw)"}
        self.vae.save_pretrained(directory / "vae")
        for k, v in self.extra_vaes.items():
            v.save_pretrained(directory / f"vae_{k}")
        write_json(directory / RADIODIFF_JSON, meta)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device="cpu", ema: bool = True) -> RadioDiffPipeline:
        """A trained folder with its EMA U-Net (``ema``) or its raw training weights."""
        directory = Path(directory)
        meta = read_json(directory / RADIODIFF_JSON)
        extra = {k: AutoencoderKL.from_pretrained(directory / f"vae_{k}") for k in meta.get("extra_scale_factors", {})}
        unet = CondUNet.from_pretrained(weights_folder(directory, "unet", ema))
        pipe = cls(unet, AutoencoderKL.from_pretrained(directory / "vae"), meta, extra)
        return pipe.to(device).eval()
