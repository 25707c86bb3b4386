"""radiodiff's own "light" blocks of the conditional U-Net (``block_style: light``, the default).

radiodiff's own choices where the summary (REFERENCE §3.2) leaves room: stage outputs get a
LayerNorm before their 1×1 projection; downsampling is 2×2 space-to-depth + 1×1 conv; the relation
block's queries are the U-Net tokens, with learned position embeddings, a token MLP and a dense
1×1 path from the condition; the middle block has a relation block too (fed by the deepest stage),
so a Swin with one stage more than the U-Net has levels is fully used. The condition encoder is a
timm Swin (:mod:`radiodiff.models.swin`).

Written for radiodiff from the facts in REFERENCE §3.2; no code was copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.models.swin import build_swin, load_swin_checkpoint, swin_stages
from radiodiff.models.unet_blocks import AdaptiveFFT, LinearAttention, ResBlock, Upsample, split_heads
from radiodiff.models.unet_config import CondUNetConfig

__all__ = ["ConditionEncoder", "Decoder", "DecoderLevel", "Downsample", "EncoderLevel", "RelationCrossAttention"]


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
        q = split_heads(self.to_q(self._tokens(self.norm_x(x), self.pos_q)), self.heads)
        k, v = (split_heads(t, self.heads) for t in self.to_kv(self._tokens(cn, self.pos_k)).chunk(2, dim=-1))
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


class Downsample(nn.Module):
    """Halve H and W without losing pixels: 2×2 space-to-depth, then a 1×1 conv."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(4 * in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pixel_unshuffle(x, 2))


class ConditionEncoder(nn.Module):
    """Swin stages -> per-consumer LayerNorm + 1×1 projection (a Linear on channels-last).

    ``proj[i]`` feeds U-Net level ``i`` (width ``dims[i]``) from stage ``min(i, stages − 1)``;
    ``proj[-1]`` feeds the middle block (width ``dims[-1]``) from stage ``min(levels, stages − 1)``.
    Stage 0's projection is also what the stem concatenates with z_t.
    """

    def __init__(self, config: CondUNetConfig, load_checkpoint: bool = True):
        super().__init__()
        self.swin = build_swin(config)
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
        stages = swin_stages(self.swin, image)
        return [proj(stages[s]).permute(0, 3, 1, 2) for proj, s in zip(self.proj, self.sources, strict=True)]


def cross_grid(c: CondUNetConfig, level: int) -> int:
    """Token-grid side of level ``level``'s relation block: its side pooled by cross_windows[level]."""
    return max(1, c.latent_size // 2**level // c.cross_windows[level])


class EncoderLevel(nn.Module):
    """ResBlocks (a skip after each), relation block after the first, linear attention after the
    last, then downsampling (the last level keeps its side and only changes width)."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int, last: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(dim_in, dim_in, c.time_dim, c.resnet_groups, c.dropout) for _ in range(c.num_res_blocks)
        )
        self.cross = RelationCrossAttention(dim_in, dim_in, c.attn_heads, c.attn_dim_head, cross_grid(c, i))
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


class DecoderLevel(nn.Module):
    """ResBlocks each fed one encoder skip, relation block after the first (same condition stage
    as the encoder level), linear attention, upsampling."""

    def __init__(self, c: CondUNetConfig, i: int, dim_in: int, dim_out: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(dim_out + dim_in, dim_out, c.time_dim, c.resnet_groups, c.dropout) for _ in range(c.num_res_blocks)
        )
        self.cross = RelationCrossAttention(dim_out, dim_in, c.attn_heads, c.attn_dim_head, cross_grid(c, i))
        self.attn = LinearAttention(dim_out, c.attn_heads, c.attn_dim_head)
        self.resample = nn.Conv2d(dim_out, dim_in, 3, padding=1) if i == 0 else Upsample(dim_out, dim_in)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, cond: torch.Tensor, skips: list[torch.Tensor]):
        for j, block in enumerate(self.blocks):
            x = block(torch.cat([x, skips.pop()], dim=1), temb)
            if j == 0:
                x = self.cross(x, cond)
        return self.resample(self.attn(x))


class Decoder(nn.Module):
    """One of the two decoders: [AFT] -> levels from the bottom up -> ResBlock with the stem -> 1×1."""

    def __init__(self, c: CondUNetConfig):
        super().__init__()
        dims, levels = c.dims, len(c.dim_mults)
        mid_side = c.latent_size // 2 ** (levels - 1)
        self.aft = AdaptiveFFT(dims[-1], mid_side, c.resnet_groups) if c.aft else nn.Identity()
        # Built from the bottom up, so self.levels[0] is level levels−1, the first one applied.
        self.levels = nn.ModuleList(DecoderLevel(c, i, dims[i], dims[i + 1]) for i in reversed(range(levels)))
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
