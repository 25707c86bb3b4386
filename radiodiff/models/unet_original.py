"""The original RadioDiff code's blocks (``block_style: original``), shape for shape.

Written for radiodiff from the facts of the RadioDiff code (mask_cond_unet.py and its Swin):
shapes, operation order and constants, so that its checkpoints import tensor for tensor
(:mod:`radiodiff.models.import_radiodiff`); no code was copied. The condition encoder is
torchvision's Swin (:mod:`radiodiff.models.swin`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.models.swin import build_original_swin, load_original_swin_checkpoint, original_swin_stages
from radiodiff.models.unet_blocks import AdaptiveFFT, LinearAttention, ResBlock, Upsample, split_heads
from radiodiff.models.unet_config import CondUNetConfig

__all__ = [
    "ChannelLayerNorm",
    "OriginalConditionEncoder",
    "OriginalDecoder",
    "OriginalDecoderLevel",
    "OriginalEncoderLevel",
    "OriginalRelation",
    "sine_positions",
]


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
        q = split_heads(self.to_q(q_tokens), self.heads)
        k = split_heads(self.to_k(kv_tokens), self.heads)
        v = split_heads(self.to_v(kv_tokens), self.heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=1.0)  # the original does not scale
        out = out.transpose(1, 2).reshape(b, -1, ch).transpose(1, 2).reshape(pooled.shape)
        y = pooled + out
        y = y + self.mlp(y)
        return shortcut + self.to_out(_resize(y, (h, w)))


class OriginalConditionEncoder(nn.Module):
    """Swin stages, each projected by a plain 1×1 conv to its level's input width; the stem also
    takes the raw stage 0."""

    def __init__(self, config: CondUNetConfig, load_checkpoint: bool = True):
        super().__init__()
        self.swin = build_original_swin(config)
        if load_checkpoint and config.swin_checkpoint is not None:
            load_original_swin_checkpoint(self.swin, config.swin_checkpoint)
        chans = config.swin_stage_channels
        self.proj = nn.ModuleList(nn.Conv2d(chans[i], config.dims[i], 1) for i in range(len(config.dim_mults)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = original_swin_stages(self.swin, image)
        return stages[0], [proj(s) for proj, s in zip(self.proj, stages, strict=True)]


class OriginalEncoderLevel(nn.Module):
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


class OriginalDecoderLevel(nn.Module):
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


class OriginalDecoder(nn.Module):
    """[AFT with a 3×3 conv] -> levels from the bottom up -> ResBlock with the stem -> 1×1."""

    def __init__(self, c: CondUNetConfig):
        super().__init__()
        dims, levels = c.dims, len(c.dim_mults)
        mid_side = c.latent_size // 2 ** (levels - 1)
        groups = min(dims[-1] // 4, 8)
        self.aft = AdaptiveFFT(dims[-1], mid_side, groups, kernel_size=3) if c.aft else nn.Identity()
        self.levels = nn.ModuleList(OriginalDecoderLevel(c, i, dims[i], dims[i + 1]) for i in reversed(range(levels)))
        self.final_block = ResBlock(2 * c.dim, c.dim, c.time_dim, c.resnet_groups, c.dropout)
        self.final_conv = nn.Conv2d(c.dim, c.latent_channels, 1)

    def forward(self, x, temb, conds, skips, stem):
        skips = list(skips)
        x = self.aft(x)
        for level, cond in zip(self.levels, reversed(conds), strict=True):
            x = level(x, temb, cond, skips)
        return self.final_conv(self.final_block(torch.cat([x, stem], dim=1), temb))
