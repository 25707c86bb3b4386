"""The blocks both of the conditional U-Net's block styles are built from: weight-standardized
ResBlocks with a FiLM time input, the Gaussian Fourier time embedding, linear and full attention,
the adaptive FFT filter and upsampling (REFERENCE §3.2). Each style picks its norms and kernel
sizes through their arguments (:mod:`radiodiff.models.unet_light`,
:mod:`radiodiff.models.unet_original`).

Written for radiodiff from the facts in REFERENCE §3.2 and, for the original blocks, of the
RadioDiff code's shapes and operations; no code was copied.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AdaptiveFFT",
    "Attention",
    "GaussianFourierTime",
    "LinearAttention",
    "ResBlock",
    "Upsample",
    "WSConv2d",
    "split_heads",
]


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


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
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
        q, k, v = (split_heads(t, self.heads) for t in qkv.chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ/√d) v (Vaswani et al. 2017)
        return x + self.to_out(out.transpose(1, 2).reshape(b, h * w, -1).transpose(1, 2).reshape(b, -1, h, w))


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


class Upsample(nn.Module):
    """Double H and W by nearest-neighbour interpolation, then a 3×3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
