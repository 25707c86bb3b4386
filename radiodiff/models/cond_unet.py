"""The second-stage denoiser: a conditional U-Net with two decoders and a Swin condition encoder.

RadioDiff (arXiv 2408.08593, §IV-B/C) predicts, from a noisy latent z_t, the time t and a
condition image (buildings, transmitter, ...), the two quantities of its decoupled "constant SDE"
diffusion: F_C (the constant drift, C = −z0) and F_ε (the noise). The network, as summarised in
REFERENCE §3.2, is:

* a time embedding log(t)/4 -> Gaussian Fourier features (scale 16) -> MLP;
* weight-standardized ResBlocks with GroupNorm(8), SiLU and a FiLM scale/shift from the time;
* linear ("efficient") attention at every level, full softmax attention in the middle;
* a Swin transformer encoding the condition image; its stages (patch 4, so stage i sits at
  latent_side / 2**i) are projected to the U-Net widths; stage 0 is concatenated with z_t at
  the stem, and every level (encoder, middle block, and each decoder) gets a **relation
  cross-attention** with the stage of its side, pooled to a small token grid (the paper's
  windows 8/4/2/1 -> 8×8 = 64 tokens per level);
* one shared encoder and middle block, then **two decoders** with separate weights (F_C, F_ε),
  each optionally starting with an **adaptive FFT (AFT)** filter on the middle feature map.

The modules: the config (:mod:`radiodiff.models.unet_config`), the blocks both styles share
(:mod:`radiodiff.models.unet_blocks`), radiodiff's own "light" blocks
(:mod:`radiodiff.models.unet_light`, the default) and, for ``block_style: original``, the original
code's blocks shape for shape (:mod:`radiodiff.models.unet_original`; the paper presets use them),
the Swin encoders (:mod:`radiodiff.models.swin`); this one assembles the network.

Everything here is written for radiodiff from the facts in REFERENCE §3.2 and, for the original
blocks, of the RadioDiff code's shapes and operations; no code was copied.
The network is built from a :class:`CondUNetConfig` that round-trips to ``config.json`` beside
the weights (``save_pretrained`` / ``from_pretrained``), like :mod:`radiodiff.models.autoencoder`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.core.errors import RadiodiffError
from radiodiff.models.persistence import PretrainedMixin
from radiodiff.models.swin import PAPER_SWIN_B, load_swin_checkpoint
from radiodiff.models.unet_blocks import Attention, GaussianFourierTime, ResBlock
from radiodiff.models.unet_config import BLOCK_STYLES, CondUNetConfig
from radiodiff.models.unet_light import ConditionEncoder, Decoder, EncoderLevel, RelationCrossAttention
from radiodiff.models.unet_original import (
    ChannelLayerNorm,
    OriginalConditionEncoder,
    OriginalDecoder,
    OriginalEncoderLevel,
)

# CondUNetConfig, BLOCK_STYLES, PAPER_SWIN_B and load_swin_checkpoint live in the modules above;
# they are offered here too, beside the network.
__all__ = [
    "BLOCK_STYLES",
    "PAPER_SWIN_B",
    "CondUNet",
    "CondUNetConfig",
    "load_swin_checkpoint",
    "swin_parameters",
]


class CondUNet(PretrainedMixin, nn.Module):
    """RadioDiff's denoiser: ``forward(z_t, t, cond, extra) -> (F_C, F_eps)``.

    Shapes: z_t (B, latent_channels, s, s) with s = image_size // 4; t (B,) in (0, 1];
    cond (B, cond_channels, image_size, image_size); extra (B, extra_channels, s, s) or None.
    Both outputs are (B, latent_channels, s, s); the diffusion wraps them in its skip
    parameterization (REFERENCE §3.2).

    ``load_swin_checkpoint=False`` skips reading ``config.swin_checkpoint`` (from_pretrained
    overwrites those weights anyway, and the file need not exist any more).
    """

    config_class = CondUNetConfig
    display_name = "conditional U-Net"

    @classmethod
    def _from_config(cls, config: CondUNetConfig) -> CondUNet:
        # The saved weights already hold the (fine-tuned) Swin: swin_checkpoint is not read again.
        return cls(config, load_swin_checkpoint=False)

    def __init__(self, config: CondUNetConfig, load_swin_checkpoint: bool = True):
        super().__init__()
        if not isinstance(config, CondUNetConfig):
            raise TypeError(f"CondUNet expects a CondUNetConfig, got {type(config).__name__}")
        self.config = c = config
        dims, levels = c.dims, len(c.dim_mults)
        self.time_embed = GaussianFourierTime(c.dim, c.time_dim, c.fourier_scale)
        if c.block_style == "original":
            self._build_original(c, load_swin_checkpoint)
            return
        self.cond_encoder = ConditionEncoder(c, load_checkpoint=load_swin_checkpoint)
        # Stem: z_t, the extra latents, Swin stage 0 (same side thanks to patch 4) and, with
        # cond_stem, the raw condition unshuffled to the latent grid, side by side.
        stem_in = c.latent_channels + c.extra_channels + dims[0] + c.stem_cond_channels
        self.stem = nn.Conv2d(stem_in, dims[0], 3, padding=1)
        self.down = nn.ModuleList(EncoderLevel(c, i, dims[i], dims[i + 1], last=i == levels - 1) for i in range(levels))
        mid, mid_grid = dims[-1], max(1, c.latent_size // 2 ** (levels - 1) // c.cross_windows[-1])
        self.mid_block1 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.mid_cross = RelationCrossAttention(mid, mid, c.attn_heads, c.attn_dim_head, mid_grid)
        self.mid_attn = Attention(mid, c.attn_heads, c.attn_dim_head)
        self.mid_block2 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        # Two decoders with separate weights: F_C and F_ε ("pred_KC", REFERENCE §3.2).
        self.decoder_c = Decoder(c)
        self.decoder_eps = Decoder(c)

    def _build_original(self, c: CondUNetConfig, load_swin_checkpoint: bool) -> None:
        """The original's layout: a 7×7 conv + GroupNorm stem on [z_t, extra, raw Swin stage 0];
        per level the relation block between the two ResBlocks; middle ResBlock, full attention,
        ResBlock (no relation block); the decoders' AFT with a 3×3 conv."""
        dims, levels = c.dims, len(c.dim_mults)
        self.cond_encoder = OriginalConditionEncoder(c, load_checkpoint=load_swin_checkpoint)
        self.stem = nn.Sequential(
            nn.Conv2d(
                c.latent_channels + c.extra_channels + c.swin_embed_dim + c.stem_cond_channels, dims[0], 7, padding=3
            ),
            nn.GroupNorm(min(dims[0] // 4, 8), dims[0]),
        )
        self.down = nn.ModuleList(
            OriginalEncoderLevel(c, i, dims[i], dims[i + 1], last=i == levels - 1) for i in range(levels)
        )
        mid = dims[-1]
        self.mid_block1 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.mid_attn = Attention(mid, c.attn_heads, c.attn_dim_head, ChannelLayerNorm)
        self.mid_block2 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.decoder_c = OriginalDecoder(c)
        self.decoder_eps = OriginalDecoder(c)

    def _forward_original(self, z_t, temb, cond, extra):
        stage0, conds = self.cond_encoder(cond)
        stage0 = stage0.to(z_t.dtype)
        if stage0.shape[-2:] != z_t.shape[-2:]:  # another condition size: stage 0 resized to the latent
            stage0 = F.interpolate(stage0, size=z_t.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stem(torch.cat([z_t, *([] if extra is None else [extra]), stage0, *self._raw(cond, z_t)], dim=1))
        stem = x
        skips: list[torch.Tensor] = []
        for level, cond_i in zip(self.down, conds, strict=True):
            x = level(x, temb, cond_i, skips)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        return self.decoder_c(x, temb, conds, skips, stem), self.decoder_eps(x, temb, conds, skips, stem)

    def _raw(self, cond: torch.Tensor, z_t: torch.Tensor) -> list[torch.Tensor]:
        """``cond_stem``: the condition pixel-unshuffled to z_t's grid (one tensor), else nothing."""
        if not self.config.cond_stem:
            return []
        return [F.pixel_unshuffle(cond, cond.shape[-1] // z_t.shape[-1]).to(z_t.dtype)]

    def _check_inputs(self, z_t, t, cond, extra) -> torch.Tensor:
        c, s = self.config, self.config.latent_size
        if not isinstance(z_t, torch.Tensor) or z_t.dim() != 4 or z_t.shape[1:] != (c.latent_channels, s, s):
            got = tuple(z_t.shape) if isinstance(z_t, torch.Tensor) else type(z_t).__name__
            raise RadiodiffError(
                f"CondUNet: z_t must be (B, {c.latent_channels}, {s}, {s}) "
                f"(latent side = image_size {c.image_size} // 4), got {got}"
            )
        b = z_t.shape[0]
        want = (b, c.cond_channels, c.image_size, c.image_size)
        if c.block_style == "original" and isinstance(cond, torch.Tensor) and cond.dim() == 4:
            # The original takes other condition sizes (its Swin pads; stage 0 is resized).
            least = 4 * 2 ** (len(c.swin_depths) - 1)
            if cond.shape[:2] == (b, c.cond_channels) and min(cond.shape[-2:]) >= least:
                want = tuple(cond.shape)
        if not isinstance(cond, torch.Tensor) or tuple(cond.shape) != want:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise RadiodiffError(f"CondUNet: cond must be {want}, got {got}")
        if c.extra_channels:
            want = (b, c.extra_channels, s, s)
            if extra is None:
                raise RadiodiffError(
                    f"CondUNet: extra latents {want} are required (extra_channels = {c.extra_channels})"
                )
            if not isinstance(extra, torch.Tensor) or tuple(extra.shape) != want:
                got = tuple(extra.shape) if isinstance(extra, torch.Tensor) else type(extra).__name__
                raise RadiodiffError(f"CondUNet: extra must be {want}, got {got}")
        elif extra is not None:
            raise RadiodiffError(f"CondUNet: got extra latents {tuple(extra.shape)} but extra_channels is 0")
        t = torch.as_tensor(t, device=z_t.device)
        if t.dim() == 0:
            t = t.expand(b)
        if t.dim() != 1 or t.shape[0] != b:
            raise RadiodiffError(f"CondUNet: t must be a scalar or ({b},), got {tuple(t.shape)}")
        return t

    def forward(
        self, z_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self._check_inputs(z_t, t, cond, extra)
        temb = self.time_embed(t)
        if self.config.block_style == "original":
            return self._forward_original(z_t, temb, cond, extra)
        conds = self.cond_encoder(cond)
        stem_in = [z_t] if extra is None else [z_t, extra]
        x = self.stem(torch.cat([*stem_in, conds[0].to(z_t.dtype), *self._raw(cond, z_t)], dim=1))
        stem = x
        skips: list[torch.Tensor] = []
        for level, cond_i in zip(self.down, conds[:-1], strict=True):
            x = level(x, temb, cond_i, skips)
        x = self.mid_block1(x, temb)
        x = self.mid_attn(self.mid_cross(x, conds[-1]))
        x = self.mid_block2(x, temb)
        levels = conds[:-1]
        return self.decoder_c(x, temb, levels, skips, stem), self.decoder_eps(x, temb, levels, skips, stem)


def swin_parameters(model: CondUNet) -> list[nn.Parameter]:
    """The parameters of the Swin backbone inside ``model`` (for "U-Net without the backbone"
    counts, or a separate learning rate)."""
    return list(model.cond_encoder.swin.parameters())
