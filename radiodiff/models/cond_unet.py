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

radiodiff's own choices where the summary leaves room (all documented at the blocks): stage
outputs get a LayerNorm before their 1×1 projection; downsampling is 2×2 space-to-depth + 1×1
conv; the relation block's queries are the U-Net tokens, with learned position embeddings, a
token MLP and a dense 1×1 path from the condition; the middle block has a relation block too
(fed by the deepest stage), so a Swin with one stage more than the U-Net has levels is fully used.

``block_style: original`` swaps these for the original code's blocks, shape for shape (see
:class:`CondUNetConfig`; the paper presets use them).

Everything here is written for radiodiff from the facts in REFERENCE §3.2 and, for the original
blocks, of the RadioDiff code's shapes and operations; no code was copied.
The network is built from a :class:`CondUNetConfig` that round-trips to ``config.json`` beside
the weights (``save_pretrained`` / ``from_pretrained``), like :mod:`radiodiff.models.autoencoder`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.models.persistence import ConfigMixin, PretrainedMixin

__all__ = [
    "BLOCK_STYLES",
    "PAPER_SWIN_B",
    "CondUNet",
    "CondUNetConfig",
    "load_swin_checkpoint",
    "swin_parameters",
]

# The paper's condition encoder, Swin-B (REFERENCE §3.2): patch 4, embed 128, depths (2, 2, 18, 2),
# window 7. timm pads a stage whose side is not a multiple of the window and shrinks the window
# (without shift) when a stage is no larger than it, so window 7 runs at 256 px (stages 64/32/16/8).
PAPER_SWIN_B: dict[str, Any] = dict(
    swin_embed_dim=128, swin_depths=(2, 2, 18, 2), swin_num_heads=(4, 8, 16, 32), swin_window_size=7
)

# "light": radiodiff's own lighter blocks (see the module docstring); "original": the blocks of
# the RadioDiff code (mask_cond_unet.py), shape for shape, so its checkpoints import
# (radiodiff.models.import_radiodiff). A config.json without the key is a light model.
BLOCK_STYLES = ("light", "original")

# Swin checkpoint keys we drop on purpose: the ImageNet classifier and the final LayerNorm
# (stage outputs get their own LayerNorm in the projections here).
_SWIN_IGNORED_PREFIXES = ("head.", "norm.")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class CondUNetConfig(ConfigMixin):
    """Architecture of :class:`CondUNet`; every field is saved to ``config.json``.

    Widths and levels: the stem has ``dim`` channels; level ``i`` (``i = 0 .. len(dim_mults)−1``)
    runs at ``latent_side / 2**i`` with input width ``dims[i]`` and output width ``dims[i+1]``,
    where ``dims = [dim] + [dim·m for m in dim_mults]`` and ``latent_side = image_size // 4``.
    The middle block runs at the last level's side with ``dims[-1]`` channels. The paper's
    ``dims [128, 128, 256, 512, 512]`` at levels 64/32/16/8 is ``dim 128, dim_mults (1, 2, 4, 4)``
    (the defaults, with ``image_size 256``).

    Condition: ``cond_channels`` is the condition image's channel count; ``extra_channels``
    are further latents concatenated with z_t at the stem (e.g. 6 for ICASSP: building and
    antenna VAE latents, 3 each); 0 for none.

    Cross-attention: ``cross_windows[i]`` is the pooling window of level ``i`` (encoder and both
    decoders): queries (U-Net features) and keys/values (Swin features) are average-pooled to a
    grid of side ``max(1, level_side // window)``, so the paper's ``(8, 4, 2, 1)`` at sides
    64/32/16/8 gives 8×8 = 64 tokens at every level. The middle block uses the last window.

    Swin: ``swin_depths`` stages (at most ``len(dim_mults) + 1``): stage ``i`` feeds level ``i``
    (encoder and decoders); levels past the last stage use the last (nearest) stage; the middle
    block uses stage ``min(len(dim_mults), stages − 1)``. ``swin_window_size`` is timm's: a stage
    whose side is not a multiple is padded, a stage no larger than the window uses its own side
    as the window (no shift). ``swin_drop_path`` is timm's stochastic-depth rate (0 = off).
    ``swin_checkpoint`` is an optional local state dict (``.safetensors`` or a torch file) of a
    timm ``SwinTransformer`` with the same shape; None trains it from scratch (the paper
    fine-tunes ImageNet Swin-B, which cannot be downloaded here).

    ``time_dim`` is the time-embedding width (paper 512 = 4·dim); ``fourier_scale`` the std of
    the fixed Gaussian Fourier frequencies (paper 16); ``aft`` adds the AFT filter to each decoder.

    ``block_style``: "light" (default; the blocks described in the module docstring, a timm Swin)
    or "original": the RadioDiff code's blocks shape for shape (7×7 conv + GroupNorm stem on
    [z_t, raw Swin stage 0]; plain 1×1 stage projections; its relation block between the two
    ResBlocks of a level, condition tokens as queries; 4×4 stride-2 downsampling; no middle
    relation block; AFT with a 3×3 conv; attention pre-norms and the linear attention's output
    norm a per-pixel channel LayerNorm; torchvision's Swin, which pads before shifting), so the
    original's checkpoints import (:mod:`radiodiff.models.import_radiodiff`) and other condition
    sizes run as in the original. It needs one Swin stage per level, ``num_res_blocks`` 2 and
    widths that are multiples of 8; its ``swin_checkpoint`` is a torchvision Swin state dict.
    A ``config.json`` without the key (written before it existed) is "light".
    """

    config_label = "cond_unet config"

    latent_channels: int = 3
    extra_channels: int = 0
    cond_channels: int = 3
    image_size: int = 256
    dim: int = 128
    dim_mults: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    resnet_groups: int = 8
    time_dim: int = 512
    fourier_scale: float = 16.0
    attn_heads: int = 4
    attn_dim_head: int = 32
    cross_windows: tuple[int, ...] = (8, 4, 2, 1)
    swin_embed_dim: int = 128
    swin_depths: tuple[int, ...] = (2, 2, 18, 2)
    swin_num_heads: tuple[int, ...] = (4, 8, 16, 32)
    swin_window_size: int = 7
    swin_drop_path: float = 0.0
    swin_checkpoint: str | None = None
    aft: bool = True
    dropout: float = 0.0
    block_style: str = "light"

    def __post_init__(self) -> None:
        for key in ("dim_mults", "cross_windows", "swin_depths", "swin_num_heads"):
            value = getattr(self, key)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ParamsError(f"cond_unet config: {key} must be a list of positive integers, got {value!r}")
            value = tuple(value)
            if not value or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                raise ParamsError(f"cond_unet config: {key} must be a non-empty list of positive integers, got {value}")
            setattr(self, key, value)
        for key in (
            "latent_channels",
            "cond_channels",
            "image_size",
            "dim",
            "num_res_blocks",
            "resnet_groups",
            "time_dim",
            "attn_heads",
            "attn_dim_head",
            "swin_embed_dim",
            "swin_window_size",
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamsError(f"cond_unet config: {key} must be a positive integer, got {value!r}")
        if isinstance(self.extra_channels, bool) or not isinstance(self.extra_channels, int) or self.extra_channels < 0:
            raise ParamsError(f"cond_unet config: extra_channels must be an integer >= 0, got {self.extra_channels!r}")
        if self.block_style not in BLOCK_STYLES:
            raise ParamsError(
                f"cond_unet config: block_style must be one of {list(BLOCK_STYLES)}, got {self.block_style!r}"
            )
        if isinstance(self.aft, int) and not isinstance(self.aft, bool) and self.aft in (0, 1):
            self.aft = bool(self.aft)
        if not isinstance(self.aft, bool):
            raise ParamsError(f"cond_unet config: aft must be true or false, got {self.aft!r}")
        for key, low, high in (("dropout", 0.0, 1.0), ("swin_drop_path", 0.0, 1.0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ParamsError(f"cond_unet config: {key} must be in [{low}, {high}), got {value!r}")
        if isinstance(self.fourier_scale, bool) or not isinstance(self.fourier_scale, (int, float)):
            raise ParamsError(f"cond_unet config: fourier_scale must be a number, got {self.fourier_scale!r}")
        if not self.fourier_scale > 0:
            raise ParamsError(f"cond_unet config: fourier_scale must be > 0, got {self.fourier_scale}")
        self.fourier_scale = float(self.fourier_scale)
        if self.swin_checkpoint is not None:
            if not isinstance(self.swin_checkpoint, (str, os.PathLike)) or not str(self.swin_checkpoint):
                raise ParamsError(
                    f"cond_unet config: swin_checkpoint must be a path or null, got {self.swin_checkpoint!r}"
                )
            self.swin_checkpoint = str(self.swin_checkpoint)

        levels, stages = len(self.dim_mults), len(self.swin_depths)
        if self.dim < 2:
            raise ParamsError(
                f"cond_unet config: dim must be >= 2 (Fourier features come in sin/cos pairs), got {self.dim}"
            )
        for width in self.dims:
            if width % self.resnet_groups:
                raise ParamsError(
                    f"cond_unet config: resnet_groups {self.resnet_groups} must divide every U-Net width {self.dims}"
                )
        if len(self.cross_windows) != levels:
            raise ParamsError(
                f"cond_unet config: cross_windows needs one window per level ({levels}, like dim_mults), "
                f"got {list(self.cross_windows)}"
            )
        if len(self.swin_num_heads) != stages:
            raise ParamsError(
                f"cond_unet config: swin_num_heads must have one entry per Swin stage ({stages}, like swin_depths), "
                f"got {list(self.swin_num_heads)}"
            )
        if stages > levels + 1:
            raise ParamsError(
                f"cond_unet config: swin_depths has {stages} stages but the U-Net only {levels} levels and a middle "
                f"block to use them; give at most {levels + 1}"
            )
        for i, heads in enumerate(self.swin_num_heads):
            if (self.swin_embed_dim * 2**i) % heads:
                raise ParamsError(
                    f"cond_unet config: swin_num_heads[{i}] = {heads} must divide the stage width "
                    f"{self.swin_embed_dim * 2**i} (swin_embed_dim · 2**{i})"
                )
        # Patch 4 puts Swin stage i at image_size / 4 / 2**i, the U-Net's level i side; both
        # pyramids must halve exactly down to their last level/stage.
        if self.block_style == "original":
            self._check_original(levels, stages)
        need = 4 * 2 ** (max(levels, stages) - 1)
        if self.image_size % need:
            raise ParamsError(
                f"cond_unet config: image_size must be a multiple of {need} (patch 4 × 2**(levels or stages − 1)), "
                f"got {self.image_size}"
            )

    def _check_original(self, levels: int, stages: int) -> None:
        """The original's blocks fix a few shapes: one Swin stage per level (no middle-block
        stage), two ResBlocks per level (the relation block sits between them), and widths that
        its 8-head relation block, GroupNorm(8) and sine position encodings (C/2 even) divide."""
        where = "cond_unet config (block_style original)"
        if stages != levels:
            raise ParamsError(
                f"{where}: swin_depths needs one stage per level ({levels}, like dim_mults), "
                f"got {list(self.swin_depths)}"
            )
        if self.num_res_blocks != 2:
            raise ParamsError(f"{where}: num_res_blocks must be 2, got {self.num_res_blocks}")
        bad = [w for w in self.dims if w % 8]
        if bad:
            raise ParamsError(f"{where}: every U-Net width must be a multiple of 8, got {self.dims}")

    @property
    def dims(self) -> list[int]:
        """Stem width followed by each level's output width."""
        return [self.dim] + [self.dim * m for m in self.dim_mults]

    @property
    def latent_size(self) -> int:
        """Side of z_t: the VAE downsamples by 4, like the Swin patch embedding."""
        return self.image_size // 4

    @property
    def swin_stage_channels(self) -> list[int]:
        return [self.swin_embed_dim * 2**i for i in range(len(self.swin_depths))]


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardization (Qiao et al. 2019): each filter has zero mean, unit var.

    Paired with GroupNorm it trains well at small per-device batches, as in the paper's ResBlocks.
    (w − mean)/√(var + 1e-5) per output filter is exactly an affine-free layer norm over the
    flattened filter, which is several times faster on CPU than var_mean, backward included.
    The statistics are taken in float32 (float64 for a float64 model) whatever the autocast dtype;
    eps is 1e-5 for float32 weights and 1e-3 otherwise, as in the original.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if self.weight.dtype == torch.float32 else 1e-3
        w = self.weight.to(torch.promote_types(self.weight.dtype, torch.float32)).flatten(1)
        w = F.layer_norm(w, w.shape[1:], eps=eps).view_as(self.weight)
        return F.conv2d(x, w.to(self.weight.dtype), self.bias, self.stride, self.padding, self.dilation, self.groups)


class GaussianFourierTime(nn.Module):
    """t in (0, 1] -> log(t)/4 -> [sin 2πWx, cos 2πWx] -> MLP (Tancik et al. 2020 features).

    The frequencies W ~ N(0, scale²) are drawn once and kept fixed (a persistent buffer, so a saved
    model reproduces them); log(t)/4 spreads the small t that the sampler visits (REFERENCE §3.2).
    """

    def __init__(self, fourier_dim: int, time_dim: int, scale: float):
        super().__init__()
        self.register_buffer("freqs", torch.randn(fourier_dim // 2) * scale)
        self.mlp = nn.Sequential(nn.Linear(2 * (fourier_dim // 2), time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # t = 0 would give log 0 = −inf; the diffusion never asks for it (t >= ε), so clamp quietly.
        work = torch.promote_types(self.freqs.dtype, torch.float32)
        x = torch.log(t.to(work).clamp_min(1e-12)) / 4.0
        angles = (2.0 * math.pi) * x[:, None] * self.freqs[None, :].to(work)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1).to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    """(WSConv 3×3, GroupNorm, FiLM(t), SiLU) then (WSConv 3×3, GroupNorm, SiLU), plus a skip."""

    def __init__(self, in_channels: int, out_channels: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        # FiLM: the time embedding gives a per-channel scale and shift after the first norm.
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, 2 * out_channels))
        self.conv1 = WSConv2d(in_channels, out_channels, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = WSConv2d(out_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.time(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm1(self.conv1(x))
        h = F.silu(h * (1.0 + scale) + shift)
        h = F.silu(self.norm2(self.conv2(self.dropout(h))))
        return h + self.skip(x)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads·d) -> (B, heads, N, d)."""
    b, n, _ = x.shape
    return x.reshape(b, n, heads, -1).transpose(1, 2)


def _group_norm_1(channels: int) -> nn.Module:
    return nn.GroupNorm(1, channels)


class LinearAttention(nn.Module):
    """Efficient attention (Shen et al. 2021): softmax over features for q, over tokens for k.

    out = q · (kᵀ v) costs O(N·d²) instead of O(N²·d), so every level can afford it.
    Pre-norm and a norm after the output conv, residual connection. The light blocks use
    GroupNorm with one group; the original's blocks pass ``norm=ChannelLayerNorm`` and
    ``mean_values=True`` (v divided by the token count).
    """

    def __init__(self, channels: int, heads: int, dim_head: int, norm=_group_norm_1, mean_values: bool = False):
        super().__init__()
        self.heads, self.dim_head, self.mean_values = heads, dim_head, mean_values
        hidden = heads * dim_head
        self.norm = norm(channels)
        self.to_qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden, channels, 1), norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, self.dim_head, h * w).unbind(1)
        q = q.softmax(dim=-2) * self.dim_head**-0.5  # over the d features of each token
        k = k.softmax(dim=-1)  # over the N tokens
        if self.mean_values:
            v = v / (h * w)
        context = k @ v.transpose(-1, -2)  # (B, heads, d, d)
        out = context.transpose(-1, -2) @ q  # (B, heads, d, N)
        return x + self.to_out(out.reshape(b, -1, h, w))


class Attention(nn.Module):
    """Full multi-head softmax self-attention over all H·W positions (used in the middle block).

    Pre-norm (``norm``: GroupNorm with one group in the light blocks, the channel LayerNorm in the
    original's), residual connection.
    """

    def __init__(self, channels: int, heads: int, dim_head: int, norm=_group_norm_1):
        super().__init__()
        self.heads = heads
        hidden = heads * dim_head
        self.norm = norm(channels)
        self.to_qkv = nn.Conv2d(channels, 3 * hidden, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).flatten(2).transpose(1, 2)  # (B, N, 3·hidden)
        q, k, v = (_split_heads(t, self.heads) for t in qkv.chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ/√d) v (Vaswani et al. 2017)
        return x + self.to_out(out.transpose(1, 2).reshape(b, h * w, -1).transpose(1, 2).reshape(b, -1, h, w))


class RelationCrossAttention(nn.Module):
    """Relation block: U-Net features (queries) attend to condition features (keys/values), pooled.

    RadioDiff relates each U-Net level to the Swin stage of the same resolution, pooling both to
    windows (8/4/2/1 at sides 64/32/16/8) so every level attends over 8×8 = 64 tokens. Here:

    * both sides are adaptively average-pooled to a ``grid × grid`` token map, with learned
      position embeddings (attention can then tell where a token sits);
    * multi-head attention, then a token MLP (2× width), both cheap at grid² tokens;
    * the result is bilinearly upsampled back to the level's side and added residually;
    * a 1×1 conv of the condition is also added at full resolution, so fine detail (building
      edges) reaches every level, as the original block's shortcut does.

    ``cond_channels`` may differ from ``channels`` (the decoders reuse the encoder's projected
    stages); a condition map of another side is resized to the level's side for the dense path.
    """

    def __init__(self, channels: int, cond_channels: int, heads: int, dim_head: int, grid: int):
        super().__init__()
        self.heads, self.grid = heads, grid
        hidden = heads * dim_head
        self.norm_x = nn.GroupNorm(1, channels)
        self.norm_c = nn.GroupNorm(1, cond_channels)
        self.fuse = nn.Conv2d(cond_channels, channels, 1)
        self.pos_q = nn.Parameter(torch.randn(grid * grid, channels) * 0.02)
        self.pos_k = nn.Parameter(torch.randn(grid * grid, cond_channels) * 0.02)
        self.to_q = nn.Linear(channels, hidden, bias=False)
        self.to_kv = nn.Linear(cond_channels, 2 * hidden, bias=False)
        self.to_out = nn.Linear(hidden, channels)
        self.mlp = nn.Sequential(
            nn.LayerNorm(channels), nn.Linear(channels, 2 * channels), nn.GELU(), nn.Linear(2 * channels, channels)
        )

    def _tokens(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.grid, self.grid):
            x = F.adaptive_avg_pool2d(x, self.grid)
        return x.flatten(2).transpose(1, 2) + pos.to(x.dtype)  # (B, grid², C)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        cn = self.norm_c(cond)
        q = _split_heads(self.to_q(self._tokens(self.norm_x(x), self.pos_q)), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.to_kv(self._tokens(cn, self.pos_k)).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, self.grid * self.grid, -1)
        out = self.to_out(out)
        out = (out + self.mlp(out)).transpose(1, 2).reshape(b, c, self.grid, self.grid)
        if (h, w) != (self.grid, self.grid):
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
        dense = self.fuse(cn)
        if dense.shape[-2:] != (h, w):
            dense = (
                F.adaptive_avg_pool2d(dense, (h, w))
                if dense.shape[-1] > w
                else F.interpolate(dense, size=(h, w), mode="bilinear", align_corners=False)
            )
        return x + out + dense


class AdaptiveFFT(nn.Module):
    """AFT: x + irfft2(rfft2(Conv(GN(x))) ⊙ W), W a learnable complex filter per channel.

    The conv is 1×1 in the light blocks and 3×3 in the original's (``kernel_size``).

    A global filter over the whole middle feature map (GFNet-style, Rao et al. 2021), which the
    paper adds where the decoders split. W is stored as (C, H, W//2+1, 2) real pairs, initialised
    ~N(0, 0.02²) so the block starts close to the identity. The FFT runs in float32 (CPU FFTs do
    not take bfloat16), whatever the autocast dtype; a float64 model runs it in float64.
    """

    def __init__(self, channels: int, size: int, groups: int, kernel_size: int = 1):
        super().__init__()
        self.size = size
        self.norm = nn.GroupNorm(groups, channels)
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.weight = nn.Parameter(torch.randn(channels, size, size // 2 + 1, 2) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        work = torch.promote_types(self.weight.dtype, torch.float32)  # float64 stays float64
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self.conv(self.norm(x.to(work)))
            spec = torch.fft.rfft2(y, norm="ortho") * torch.view_as_complex(self.weight.to(work).contiguous())
            y = torch.fft.irfft2(spec, s=(self.size, self.size), norm="ortho")
        return x + y.to(x.dtype)


class Downsample(nn.Module):
    """Halve H and W without losing pixels: 2×2 space-to-depth, then a 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(4 * in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pixel_unshuffle(x, 2))


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour interpolation, then a 3×3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


# --------------------------------------------------------------------------------------------
# Condition encoder
# --------------------------------------------------------------------------------------------


def _build_swin(config: CondUNetConfig) -> nn.Module:
    """A timm SwinTransformer (never pretrained) returning its stages through :func:`_swin_stages`."""
    from timm.models.swin_transformer import SwinTransformer

    swin = SwinTransformer(
        img_size=config.image_size,
        patch_size=4,  # ×4 like the VAE, so stage 0 sits at the latent's side
        in_chans=config.cond_channels,
        num_classes=0,
        global_pool="",
        embed_dim=config.swin_embed_dim,
        depths=tuple(config.swin_depths),
        num_heads=tuple(config.swin_num_heads),
        window_size=config.swin_window_size,
        drop_path_rate=config.swin_drop_path,
    )
    # Only the stage outputs are used: drop the classifier and the final norm so every parameter
    # gets a gradient (DistributedDataParallel would otherwise need find_unused_parameters).
    swin.head = nn.Identity()
    swin.norm = nn.Identity()
    return swin


def _swin_stages(swin: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """All stage outputs of a timm Swin, channels-last (B, H, W, C) as timm keeps them."""
    x = swin.patch_embed(image)
    out = []
    for stage in swin.layers:
        x = stage(x)
        out.append(x)
    return out


def load_swin_checkpoint(swin: nn.Module, path: str | os.PathLike) -> None:
    """Load a local Swin state dict into ``swin`` (e.g. ImageNet Swin-B saved beforehand).

    Accepts ``.safetensors`` or a torch file, optionally wrapped in ``{"model": ...}`` or
    ``{"state_dict": ...}``; timm's own filter converts original Microsoft checkpoints and resizes
    relative-position tables to this window size. Only classifier-head and final-norm keys may be
    left over; anything else missing, extra or mis-shaped raises ParamsError naming
    ``swin_checkpoint`` and the file.
    """
    from timm.models.swin_transformer import checkpoint_filter_fn

    path = Path(path)
    where = f"swin_checkpoint: {path}"
    if not path.is_file():
        raise ParamsError(f"{where}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: any loader error is the file's fault
        raise ParamsError(f"{where}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ParamsError(f"{where}: expected a state dict, got {type(state).__name__}")
    try:
        state = checkpoint_filter_fn(state, swin)
        missing, unexpected = swin.load_state_dict(state, strict=False)
    except Exception as e:  # size mismatches and malformed entries
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ParamsError(f"{where}: does not fit the configured Swin ({first} ...)") from None
    unexpected = [k for k in unexpected if not k.startswith(_SWIN_IGNORED_PREFIXES)]
    if missing or unexpected:
        raise ParamsError(
            f"{where}: does not fit the configured Swin (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; {len(missing)} missing, {len(unexpected)} unexpected)"
        )


class ConditionEncoder(nn.Module):
    """Swin stages -> per-consumer LayerNorm + 1×1 projection (a Linear on channels-last).

    ``proj[i]`` feeds U-Net level ``i`` (width ``dims[i]``) from stage ``min(i, stages − 1)``;
    ``proj[-1]`` feeds the middle block (width ``dims[-1]``) from stage ``min(levels, stages − 1)``.
    Stage 0's projection is also what the stem concatenates with z_t.
    """

    def __init__(self, config: CondUNetConfig, load_checkpoint: bool = True):
        super().__init__()
        self.swin = _build_swin(config)
        if load_checkpoint and config.swin_checkpoint is not None:
            load_swin_checkpoint(self.swin, config.swin_checkpoint)
        levels, stages = len(config.dim_mults), len(config.swin_depths)
        chans = config.swin_stage_channels
        self.sources = [min(i, stages - 1) for i in range(levels)] + [min(levels, stages - 1)]
        widths = config.dims[:levels] + [config.dims[-1]]
        self.proj = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(chans[s]), nn.Linear(chans[s], w))
            for s, w in zip(self.sources, widths, strict=True)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        stages = _swin_stages(self.swin, image)
        return [proj(stages[s]).permute(0, 3, 1, 2) for proj, s in zip(self.proj, self.sources, strict=True)]


# --------------------------------------------------------------------------------------------
# The original's blocks (block_style "original")
# --------------------------------------------------------------------------------------------
# Written for radiodiff from the facts of the RadioDiff code (mask_cond_unet.py and its Swin):
# shapes, operation order and constants, so that its checkpoints import tensor for tensor.


class ChannelLayerNorm(nn.Module):
    """Per-pixel LayerNorm over the channels with a gain and no bias (eps 1e-5 in float32, 1e-3
    in lower precision), the original's pre-norm of its attention blocks."""

    def __init__(self, channels: int):
        super().__init__()
        self.g = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], eps=eps).permute(0, 3, 1, 2)
        return y * self.g.to(y.dtype)


_SINE_CACHE: dict[tuple, torch.Tensor] = {}


def sine_positions(h: int, w: int, channels: int, device: torch.device) -> torch.Tensor:
    """Fixed 2-D sine position encodings (h·w, channels), rows then columns (DETR-style, not
    normalised, temperature 10⁴): the first half encodes the row index 1..h, the second the
    column 1..w, each as interleaved sin/cos pairs of index / 10⁴^(2⌊k/2⌋/(channels/2))."""
    key = (h, w, channels, str(device))
    pos = _SINE_CACHE.get(key)
    if pos is None:
        half = channels // 2
        k = torch.arange(half, dtype=torch.float32, device=device)
        dim_t = 10000.0 ** (2 * torch.div(k, 2, rounding_mode="floor") / half)

        def encode(index: torch.Tensor) -> torch.Tensor:
            a = index[:, None] / dim_t
            return torch.stack((a[:, 0::2].sin(), a[:, 1::2].cos()), dim=2).flatten(1)

        rows = encode(torch.arange(1, h + 1, dtype=torch.float32, device=device))  # (h, half)
        cols = encode(torch.arange(1, w + 1, dtype=torch.float32, device=device))  # (w, half)
        pos = torch.cat([rows[:, None].expand(h, w, half), cols[None].expand(h, w, half)], dim=2).reshape(h * w, -1)
        _SINE_CACHE[key] = pos
    return pos


def _pad_to(x: torch.Tensor, window: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    pad_b, pad_r = (window - h % window) % window, (window - w % window) % window
    return F.pad(x, (0, pad_r, 0, pad_b)) if pad_b or pad_r else x


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, corners aligned (an exact copy when the size does not change)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class OriginalRelation(nn.Module):
    """The original relation block: condition tokens (queries) attend to U-Net tokens (keys/values).

    Both inputs get a 1×1 conv + BatchNorm (momentum 0.03, eps 1e-3). The condition c and the
    features f are zero-padded to a multiple of ``window`` and average-pooled by it; fixed sine
    positions are added; 8-head attention without the 1/√d scale (q, k, v linear with bias);
    the pooled condition plus the attention output, plus a ReLU MLP (2× width, dropout 0.1),
    is bilinearly resized to the features' side and, through a 1×1 conv, added to
    GN(f + Conv1×1([c resized, f])). The result replaces the features (no outer residual).
    """

    def __init__(self, cond_channels: int, channels: int, window: int, heads: int = 8, dropout: float = 0.1):
        super().__init__()
        self.window, self.heads = window, heads
        self.cond_in = nn.Sequential(
            nn.Conv2d(cond_channels, channels, 1), nn.BatchNorm2d(channels, momentum=0.03, eps=0.001)
        )
        self.feat_in = nn.Sequential(
            nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels, momentum=0.03, eps=0.001)
        )
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 1),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(2 * channels, channels, 1),
            nn.Dropout(dropout),
        )
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        self.norm = nn.GroupNorm(8, channels)
        self.to_out = nn.Conv2d(channels, channels, 1)

    def _tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.avg_pool2d(_pad_to(x, self.window), self.window) if self.window > 1 else x
        b, c, h, w = pooled.shape
        tokens = pooled.flatten(2).transpose(1, 2) + sine_positions(h, w, c, x.device).to(x.dtype)
        return pooled, tokens

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c, f = self.cond_in(cond), self.feat_in(x)
        b, ch, h, w = f.shape
        shortcut = self.norm(f + self.fuse(torch.cat([_resize(c, (h, w)), f], dim=1)))
        pooled, q_tokens = self._tokens(c)
        _, kv_tokens = self._tokens(f)
        q = _split_heads(self.to_q(q_tokens), self.heads)
        k = _split_heads(self.to_k(kv_tokens), self.heads)
        v = _split_heads(self.to_v(kv_tokens), self.heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # the original does not scale
        out = out.transpose(1, 2).reshape(b, -1, ch).transpose(1, 2).reshape(pooled.shape)
        y = pooled + out
        y = y + self.mlp(y)
        return shortcut + self.to_out(_resize(y, (h, w)))


def _build_original_swin(config: CondUNetConfig) -> nn.Module:
    """torchvision's SwinTransformer (the original's Swin-B code is torchvision's, with the
    patch embedding renamed): pads each window then shifts, so it is not timm's at 256 px.
    Never pretrained; head and final norm unused (Identity)."""
    from torchvision.models.swin_transformer import SwinTransformer

    swin = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=config.swin_embed_dim,
        depths=list(config.swin_depths),
        num_heads=list(config.swin_num_heads),
        window_size=[config.swin_window_size] * 2,
        stochastic_depth_prob=config.swin_drop_path,
    )
    if config.cond_channels != 3:
        swin.features[0][0] = nn.Conv2d(config.cond_channels, config.swin_embed_dim, 4, 4)
    swin.norm = nn.Identity()
    swin.head = nn.Identity()
    return swin


def _original_swin_stages(swin: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """The stage outputs (B, C, H, W) of a torchvision Swin: after features 1, 3, 5, ..."""
    x, out = image, []
    for i, layer in enumerate(swin.features):
        x = layer(x)
        if i % 2 == 1:
            out.append(x.permute(0, 3, 1, 2))
    return out


class OriginalConditionEncoder(nn.Module):
    """Swin stages, each projected by a plain 1×1 conv to its level's input width; the stem also
    takes the raw stage 0."""

    def __init__(self, config: CondUNetConfig, load_checkpoint: bool = True):
        super().__init__()
        self.swin = _build_original_swin(config)
        if load_checkpoint and config.swin_checkpoint is not None:
            _load_torchvision_swin(self.swin, config.swin_checkpoint)
        chans = config.swin_stage_channels
        self.proj = nn.ModuleList(nn.Conv2d(chans[i], config.dims[i], 1) for i in range(len(config.dim_mults)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = _original_swin_stages(self.swin, image)
        return stages[0], [proj(s) for proj, s in zip(self.proj, stages, strict=True)]


def _load_torchvision_swin(swin: nn.Module, path: str | os.PathLike) -> None:
    """A local torchvision Swin state dict (e.g. ``swin_b`` ImageNet weights saved beforehand);
    the classifier head and final norm are dropped; anything else must fit exactly."""
    path = Path(path)
    where = f"swin_checkpoint: {path}"
    if not path.is_file():
        raise ParamsError(f"{where}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise ParamsError(f"{where}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ParamsError(f"{where}: expected a state dict, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith(_SWIN_IGNORED_PREFIXES)}
    own = swin.state_dict()
    for name, tensor in own.items():
        if name not in state:
            raise ParamsError(f"{where}: no tensor {name!r} (the configured Swin has it, shape {list(tensor.shape)})")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ParamsError(
                f"{where}: tensor {name!r} has shape {list(state[name].shape)}, the configured Swin's is "
                f"{list(tensor.shape)}"
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise ParamsError(f"{where}: tensor {extra[0]!r} is not in the configured Swin")
    swin.load_state_dict(state, strict=True)


class _OriginalEncoderLevel(nn.Module):
    """ResBlock (skip) -> relation -> ResBlock -> linear attention (skip) -> 4×4 stride-2 conv
    (the last level: a 3×3 conv that only changes the width)."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int, last: bool):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(dim_in, dim_in, c.time_dim, c.resnet_groups, c.dropout) for _ in range(2))
        self.cross = OriginalRelation(dim_in, dim_in, c.cross_windows[i])
        self.attn = LinearAttention(dim_in, c.attn_heads, c.attn_dim_head, ChannelLayerNorm, mean_values=True)
        self.resample = (
            nn.Conv2d(dim_in, dim_out, 3, padding=1) if last else nn.Conv2d(dim_in, dim_out, 4, stride=2, padding=1)
        )

    def forward(self, x, temb, cond, skips):
        x = self.blocks[0](x, temb)
        skips.append(x)  # pushed before the relation block, as in the original
        x = self.attn(self.blocks[1](self.cross(x, cond), temb))
        skips.append(x)
        return self.resample(x)


class _OriginalDecoderLevel(nn.Module):
    """[x, skip] -> ResBlock -> relation -> [x, skip] -> ResBlock -> linear attention -> upsample."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(dim_out + dim_in, dim_out, c.time_dim, c.resnet_groups, c.dropout) for _ in range(2)
        )
        self.cross = OriginalRelation(dim_in, dim_out, c.cross_windows[i])
        self.attn = LinearAttention(dim_out, c.attn_heads, c.attn_dim_head, ChannelLayerNorm, mean_values=True)
        self.resample = nn.Conv2d(dim_out, dim_in, 3, padding=1) if i == 0 else Upsample(dim_out, dim_in)

    def forward(self, x, temb, cond, skips):
        x = self.cross(self.blocks[0](torch.cat([x, skips.pop()], dim=1), temb), cond)
        x = self.blocks[1](torch.cat([x, skips.pop()], dim=1), temb)
        return self.resample(self.attn(x))


class _OriginalDecoder(nn.Module):
    """[AFT with a 3×3 conv] -> levels from the bottom up -> ResBlock with the stem -> 1×1."""

    def __init__(self, c: CondUNetConfig):
        super().__init__()
        dims, levels = c.dims, len(c.dim_mults)
        mid_side = c.latent_size // 2 ** (levels - 1)
        groups = min(dims[-1] // 4, 8)
        self.aft = AdaptiveFFT(dims[-1], mid_side, groups, kernel_size=3) if c.aft else nn.Identity()
        self.levels = nn.ModuleList(_OriginalDecoderLevel(c, i, dims[i], dims[i + 1]) for i in reversed(range(levels)))
        self.final_block = ResBlock(2 * c.dim, c.dim, c.time_dim, c.resnet_groups, c.dropout)
        self.final_conv = nn.Conv2d(c.dim, c.latent_channels, 1)

    def forward(self, x, temb, conds, skips, stem):
        skips = list(skips)
        x = self.aft(x)
        for level, cond in zip(self.levels, reversed(conds), strict=True):
            x = level(x, temb, cond, skips)
        return self.final_conv(self.final_block(torch.cat([x, stem], dim=1), temb))


# --------------------------------------------------------------------------------------------
# U-Net
# --------------------------------------------------------------------------------------------


def _cross_grid(c: CondUNetConfig, level: int) -> int:
    """Token-grid side of level ``level``'s relation block: its side pooled by cross_windows[level]."""
    return max(1, c.latent_size // 2**level // c.cross_windows[level])


class _EncoderLevel(nn.Module):
    """ResBlocks (a skip after each), relation block after the first, linear attention after the
    last, then downsampling (the last level keeps its side and only changes width)."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int, last: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(dim_in, dim_in, c.time_dim, c.resnet_groups, c.dropout) for _ in range(c.num_res_blocks)
        )
        self.cross = RelationCrossAttention(dim_in, dim_in, c.attn_heads, c.attn_dim_head, _cross_grid(c, i))
        self.attn = LinearAttention(dim_in, c.attn_heads, c.attn_dim_head)
        self.resample = nn.Conv2d(dim_in, dim_out, 3, padding=1) if last else Downsample(dim_in, dim_out)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor, skips: list[torch.Tensor]):
        last = len(self.blocks) - 1
        for j, block in enumerate(self.blocks):
            x = block(x, temb)
            if j == 0:
                x = self.cross(x, cond)
            if j == last:
                x = self.attn(x)
            skips.append(x)
        return self.resample(x)


class _DecoderLevel(nn.Module):
    """ResBlocks each fed one encoder skip, relation block after the first (same condition stage
    as the encoder level), linear attention, upsampling."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(dim_out + dim_in, dim_out, c.time_dim, c.resnet_groups, c.dropout) for _ in range(c.num_res_blocks)
        )
        self.cross = RelationCrossAttention(dim_out, dim_in, c.attn_heads, c.attn_dim_head, _cross_grid(c, i))
        self.attn = LinearAttention(dim_out, c.attn_heads, c.attn_dim_head)
        self.resample = nn.Conv2d(dim_out, dim_in, 3, padding=1) if i == 0 else Upsample(dim_out, dim_in)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor, skips: list[torch.Tensor]):
        for j, block in enumerate(self.blocks):
            x = block(torch.cat([x, skips.pop()], dim=1), temb)
            if j == 0:
                x = self.cross(x, cond)
        return self.resample(self.attn(x))


class _Decoder(nn.Module):
    """One of the two decoders: [AFT] -> levels from the bottom up -> ResBlock with the stem -> 1×1."""

    def __init__(self, c: CondUNetConfig):
        super().__init__()
        dims, levels = c.dims, len(c.dim_mults)
        mid_side = c.latent_size // 2 ** (levels - 1)
        self.aft = AdaptiveFFT(dims[-1], mid_side, c.resnet_groups) if c.aft else nn.Identity()
        # Built from the bottom up, so self.levels[0] is level levels−1, the first one applied.
        self.levels = nn.ModuleList(_DecoderLevel(c, i, dims[i], dims[i + 1]) for i in reversed(range(levels)))
        self.final_block = ResBlock(2 * c.dim, c.dim, c.time_dim, c.resnet_groups, c.dropout)
        self.final_conv = nn.Conv2d(c.dim, c.latent_channels, 1)

    def forward(
        self,
        x: torch.Tensor,
        temb: torch.Tensor,
        conds: list[torch.Tensor],
        skips: list[torch.Tensor],
        stem: torch.Tensor,
    ) -> torch.Tensor:
        skips = list(skips)  # each decoder consumes its own copy of the shared encoder skips
        x = self.aft(x)
        for level, cond in zip(self.levels, reversed(conds), strict=True):
            x = level(x, temb, cond, skips)
        return self.final_conv(self.final_block(torch.cat([x, stem], dim=1), temb))


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
        # Stem: z_t, the extra latents and Swin stage 0 (same side thanks to patch 4) side by side.
        self.stem = nn.Conv2d(c.latent_channels + c.extra_channels + dims[0], dims[0], 3, padding=1)
        self.down = nn.ModuleList(
            _EncoderLevel(c, i, dims[i], dims[i + 1], last=i == levels - 1) for i in range(levels)
        )
        mid, mid_grid = dims[-1], max(1, c.latent_size // 2 ** (levels - 1) // c.cross_windows[-1])
        self.mid_block1 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.mid_cross = RelationCrossAttention(mid, mid, c.attn_heads, c.attn_dim_head, mid_grid)
        self.mid_attn = Attention(mid, c.attn_heads, c.attn_dim_head)
        self.mid_block2 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        # Two decoders with separate weights: F_C and F_ε ("pred_KC", REFERENCE §3.2).
        self.decoder_c = _Decoder(c)
        self.decoder_eps = _Decoder(c)

    def _build_original(self, c: CondUNetConfig, load_swin_checkpoint: bool) -> None:
        """The original's layout: a 7×7 conv + GroupNorm stem on [z_t, extra, raw Swin stage 0];
        per level the relation block between the two ResBlocks; middle ResBlock, full attention,
        ResBlock (no relation block); the decoders' AFT with a 3×3 conv."""
        dims, levels = c.dims, len(c.dim_mults)
        self.cond_encoder = OriginalConditionEncoder(c, load_checkpoint=load_swin_checkpoint)
        self.stem = nn.Sequential(
            nn.Conv2d(c.latent_channels + c.extra_channels + c.swin_embed_dim, dims[0], 7, padding=3),
            nn.GroupNorm(min(dims[0] // 4, 8), dims[0]),
        )
        self.down = nn.ModuleList(
            _OriginalEncoderLevel(c, i, dims[i], dims[i + 1], last=i == levels - 1) for i in range(levels)
        )
        mid = dims[-1]
        self.mid_block1 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.mid_attn = Attention(mid, c.attn_heads, c.attn_dim_head, ChannelLayerNorm)
        self.mid_block2 = ResBlock(mid, mid, c.time_dim, c.resnet_groups, c.dropout)
        self.decoder_c = _OriginalDecoder(c)
        self.decoder_eps = _OriginalDecoder(c)

    def _forward_original(self, z_t, temb, cond, extra):
        stage0, conds = self.cond_encoder(cond)
        stage0 = stage0.to(z_t.dtype)
        if stage0.shape[-2:] != z_t.shape[-2:]:  # another condition size: stage 0 resized to the latent
            stage0 = F.interpolate(stage0, size=z_t.shape[-2:], mode="bilinear", align_corners=False)
        x = self.stem(torch.cat([z_t, stage0] if extra is None else [z_t, extra, stage0], dim=1))
        stem = x
        skips: list[torch.Tensor] = []
        for level, cond_i in zip(self.down, conds, strict=True):
            x = level(x, temb, cond_i, skips)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        return self.decoder_c(x, temb, conds, skips, stem), self.decoder_eps(x, temb, conds, skips, stem)

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
        x = self.stem(torch.cat([*stem_in, conds[0].to(z_t.dtype)], dim=1))
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
