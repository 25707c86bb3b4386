"""The first-stage KL autoencoder (LDM-style VAE) that maps radio maps to a small latent.

RadioDiff (arXiv 2408.08593, §IV-A) compresses a 1×256×256 map into a 3×64×64 latent with the
latent-diffusion KL autoencoder (Rombach et al. 2022, §3 and App. G): GroupNorm + SiLU ResBlocks,
stride-2 conv downsampling, nearest ×2 + conv upsampling, a mid block with one self-attention,
and a diagonal Gaussian posterior whose log-variance is clamped to [−30, 20].

The network is built from an :class:`AutoencoderKLConfig` that round-trips to ``config.json``
beside the weights (``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.core.errors import ParamsError
from radiodiff.models.persistence import ConfigMixin, PretrainedMixin

__all__ = [
    "AutoencoderKL",
    "AutoencoderKLConfig",
    "Decoder",
    "DiagonalGaussian",
    "Encoder",
]


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class AutoencoderKLConfig(ConfigMixin):
    """Architecture of :class:`AutoencoderKL`; every field is saved to ``config.json``.

    ``attn_resolutions`` lists feature-map sizes (relative to ``resolution``, the input size)
    at which the encoder and decoder levels get self-attention blocks; the mid block always has
    one. The paper's radio VAE is ``in 1, out 1, ch 128, ch_mult (1, 2, 4), num_res_blocks 2,
    z 3, embed 3, attn_resolutions ()`` at resolution 256. ``downsample_padding`` is where the
    stride-2 convs pad: "both" (radiodiff's default) or "end" (the original code's; set by
    ``radiodiff import radiodiff-checkpoint``).
    """

    config_label = "autoencoder config"

    in_channels: int = 1
    out_channels: int = 1
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 3
    embed_dim: int = 3
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    dropout: float = 0.0
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)
    downsample_padding: str = "both"

    def __post_init__(self) -> None:
        if self.downsample_padding not in ("both", "end"):
            raise ParamsError(
                f"autoencoder config: downsample_padding must be 'both' or 'end', got {self.downsample_padding!r}"
            )
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in self.attn_resolutions)
        self.logvar_clamp = tuple(float(v) for v in self.logvar_clamp)
        for key in ("in_channels", "out_channels", "ch", "num_res_blocks", "z_channels", "embed_dim", "resolution"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamsError(f"autoencoder config: {key} must be a positive integer, got {value!r}")
        if not self.ch_mult or any(m < 1 for m in self.ch_mult):
            raise ParamsError(f"autoencoder config: ch_mult must be non-empty positive ints, got {self.ch_mult}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ParamsError(f"autoencoder config: dropout must be in [0, 1), got {self.dropout}")
        if len(self.logvar_clamp) != 2 or self.logvar_clamp[0] >= self.logvar_clamp[1]:
            raise ParamsError(f"autoencoder config: logvar_clamp must be [low, high], got {self.logvar_clamp}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` not above 32, so tiny test configs still normalise."""
    g = min(max_groups, channels)
    while channels % g:
        g -= 1
    return g


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(_num_groups(channels), channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block without a time embedding: (norm, SiLU, conv) ×2 + skip."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # A 1×1 projection only where the channel count changes; identity otherwise.
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention over all H·W positions, with a residual connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        # (B, C, H, W) -> (B, 1 head, H·W, C); softmax(q kᵀ / √C) v (Vaswani et al. 2017, eq. 1).
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(2, 3) for t in (self.q(y), self.k(y), self.v(y)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W with a learned 3×3 stride-2 convolution.

    ``padding`` "both": one zero row/column on every side (radiodiff's); "end": one after the
    last row and column only, as the LDM/RadioDiff code pads (its imported VAEs use it).
    """

    def __init__(self, channels: int, padding: str = "both"):
        super().__init__()
        self.end = padding == "end"
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0 if self.end else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.end else x)


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour interpolation, then a 3×3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    """ResBlock, self-attention, ResBlock at the lowest resolution."""

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResBlock(channels, channels, dropout)
        self.attn_1 = SelfAttention(channels)
        self.block_2 = ResBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: ResBlocks (each optionally followed by attention) and a resampler."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.resample: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, attn in zip(self.blocks, self.attns, strict=True):
            x = attn(block(x))
        return self.resample(x)


# --------------------------------------------------------------------------------------------
# Encoder, decoder, posterior
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """x (in_channels, H, W) -> moments (2·z_channels, H/f, W/f), f = 2**(len(ch_mult) − 1)."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        c = config
        self.conv_in = nn.Conv2d(c.in_channels, c.ch, 3, padding=1)
        self.levels = nn.ModuleList()
        channels, res = c.ch, c.resolution
        for i, mult in enumerate(c.ch_mult):
            level = _Level()
            out = c.ch * mult
            for _ in range(c.num_res_blocks):
                level.blocks.append(ResBlock(channels, out, c.dropout))
                level.attns.append(SelfAttention(out) if res in c.attn_resolutions else nn.Identity())
                channels = out
            if i != len(c.ch_mult) - 1:
                level.resample = Downsample(channels, c.downsample_padding)
                res //= 2
            self.levels.append(level)
        self.mid = MidBlock(channels, c.dropout)
        self.norm_out = group_norm(channels)
        # Twice z_channels: mean and log-variance of the posterior.
        self.conv_out = nn.Conv2d(channels, 2 * c.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """z (z_channels, h, w) -> x̂ (out_channels, h·f, w·f); mirrors :class:`Encoder`."""

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        c = config
        channels = c.ch * c.ch_mult[-1]
        res = c.resolution // c.downsample_factor
        self.conv_in = nn.Conv2d(c.z_channels, channels, 3, padding=1)
        self.mid = MidBlock(channels, c.dropout)
        # Built from the lowest resolution up, so self.levels[0] is the first level applied.
        self.levels = nn.ModuleList()
        for i in reversed(range(len(c.ch_mult))):
            level = _Level()
            out = c.ch * c.ch_mult[i]
            # One ResBlock more than the encoder per level, as in LDM's decoder.
            for _ in range(c.num_res_blocks + 1):
                level.blocks.append(ResBlock(channels, out, c.dropout))
                level.attns.append(SelfAttention(out) if res in c.attn_resolutions else nn.Identity())
                channels = out
            if i != 0:
                level.resample = Upsample(channels)
                res *= 2
            self.levels.append(level)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in self.levels:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DiagonalGaussian:
    """Posterior q(z|x) = N(mean, diag(exp(logvar))) from moments split along channels.

    The log-variance is clamped (default [−30, 20]) so exp() stays finite in float32.
    """

    def __init__(self, moments: torch.Tensor, logvar_clamp: tuple[float, float] = (-30.0, 20.0)):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = torch.clamp(logvar, logvar_clamp[0], logvar_clamp[1])
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mean + std·ε, ε ~ N(0, I) (reparameterisation, Kingma & Welling 2014, eq. 10)."""
        device = generator.device if generator is not None else self.mean.device
        eps = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * eps.to(self.mean.device)

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²) over all non-batch dims; shape (B,)."""
        dims = tuple(range(1, self.mean.dim()))
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=dims)


# --------------------------------------------------------------------------------------------
# The autoencoder
# --------------------------------------------------------------------------------------------


class AutoencoderKL(PretrainedMixin, nn.Module):
    """KL-regularised autoencoder: ``encode`` -> :class:`DiagonalGaussian`, ``decode`` -> image."""

    config_class = AutoencoderKLConfig
    display_name = "autoencoder"

    def __init__(self, config: AutoencoderKLConfig):
        super().__init__()
        if not isinstance(config, AutoencoderKLConfig):
            raise TypeError(f"AutoencoderKL expects an AutoencoderKLConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output conv weight, where the VAE-GAN loss compares gradient norms."""
        return self.decoder.conv_out.weight

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        f = self.downsample_factor
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(
                f"AutoencoderKL.encode: expected (B, {self.config.in_channels}, H, W) with H and W divisible by {f}, "
                f"got {tuple(x.shape)}"
            )
        return DiagonalGaussian(self.quant_conv(self.encoder(x)), self.config.logvar_clamp)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(
        self, x: torch.Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior
