"""A RadioUNet-style supervised U-Net baseline: condition channels -> radio map in one pass.

After Levie et al., "RadioUNet" (IEEE TWC 2021): an encoder–decoder with skip connections that
maps the input channels (buildings, Tx one-hot and a third channel) straight to the gain map.
Written from scratch and kept small: per level, ``blocks_per_level`` (3×3 conv, norm, ReLU)
blocks; 2×2 max-pool (or a stride-2 conv) down; 2×2 transposed conv (or nearest ×2 + 3×3 conv)
up; the skip concatenated before the level's decoder blocks; a 1×1 output conv.

The output is unbounded (it is trained with MSE against targets on [−1, 1]); callers clamp.
The network is fully convolutional: any H and W divisible by 2**(len(channel_mults) − 1) work,
``image_size`` records the training size. It is built from a :class:`RadioUNetConfig` that
round-trips to ``config.json`` beside the weights (``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.models.autoencoder import group_norm
from radiodiff.models.map_model import MapModel, MapModelRecord
from radiodiff.models.persistence import RAW_SUFFIX, ConfigMixin, PretrainedMixin, weights_folder

__all__ = ["NORMS", "RadioUNet", "RadioUNetConfig", "RadioUNetPipeline"]

NORMS = ("batch", "group", "none")
DOWNSAMPLES = ("maxpool", "conv")
UPSAMPLES = ("transpose", "nearest")


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class RadioUNetConfig(ConfigMixin):
    """Architecture of :class:`RadioUNet`; every field is saved to ``config.json``.

    ``channel_mults`` gives each level's width as a multiple of ``base_channels``; its length is
    the number of levels (``len − 1`` halvings). ``base_channels`` 16 suits the quick scale,
    64 is paper-sized. ``norm``: "batch" (BatchNorm), "group" (GroupNorm, up to 32 groups) or
    "none" (conv bias instead).
    """

    config_label = "radiounet config"

    in_channels: int = 3
    out_channels: int = 1
    image_size: int = 256
    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    blocks_per_level: int = 2
    norm: str = "batch"
    downsample: str = "maxpool"
    upsample: str = "transpose"

    def __post_init__(self) -> None:
        for key in ("in_channels", "out_channels", "image_size", "base_channels", "blocks_per_level"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamsError(f"radiounet config: {key} must be a positive integer, got {value!r}")
        mults = self.channel_mults
        if isinstance(mults, str | bytes) or not isinstance(mults, list | tuple):
            raise ParamsError(f"radiounet config: channel_mults must be a list of positive integers, got {mults!r}")
        if not mults or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults):
            raise ParamsError(f"radiounet config: channel_mults must be non-empty positive integers, got {mults!r}")
        self.channel_mults = tuple(mults)
        for key, allowed in (("norm", NORMS), ("downsample", DOWNSAMPLES), ("upsample", UPSAMPLES)):
            if getattr(self, key) not in allowed:
                raise ParamsError(f"radiounet config: {key} must be one of {list(allowed)}, got {getattr(self, key)!r}")
        f = self.downsample_factor
        if self.image_size % f:
            raise ParamsError(
                f"radiounet config: image_size {self.image_size} must be divisible by {f} "
                f"(2**(len(channel_mults) − 1) for {len(self.channel_mults)} levels)"
            )

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels at each level, from full resolution down."""
        return tuple(self.base_channels * m for m in self.channel_mults)


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return group_norm(channels)
    return nn.Identity()


class ConvBlocks(nn.Sequential):
    """``n`` × (3×3 conv, norm, ReLU); the first conv maps ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, n: int, norm: str):
        layers: list[nn.Module] = []
        for i in range(n):
            cin = in_channels if i == 0 else out_channels
            # A norm right after the conv makes its bias redundant.
            layers.append(nn.Conv2d(cin, out_channels, 3, padding=1, bias=norm == "none"))
            layers.append(_norm(norm, out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _down(kind: str, channels: int) -> nn.Module:
    if kind == "maxpool":
        return nn.MaxPool2d(2)
    return nn.Conv2d(channels, channels, 3, stride=2, padding=1)


class _NearestUp(nn.Module):
    """Nearest ×2 then a 3×3 conv (no checkerboard artefacts, unlike a transposed conv)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _up(kind: str, in_channels: int, out_channels: int) -> nn.Module:
    if kind == "transpose":
        return nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
    return _NearestUp(in_channels, out_channels)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


class RadioUNet(PretrainedMixin, nn.Module):
    """x (B, in_channels, H, W) -> (B, out_channels, H, W), unbounded; H, W divisible by 2**(levels − 1)."""

    config_class = RadioUNetConfig
    display_name = "RadioUNet"

    def __init__(self, config: RadioUNetConfig):
        super().__init__()
        if not isinstance(config, RadioUNetConfig):
            raise TypeError(f"RadioUNet expects a RadioUNetConfig, got {type(config).__name__}")
        self.config = c = config
        widths = c.widths
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        channels = c.in_channels
        for i, w in enumerate(widths):
            self.encoders.append(ConvBlocks(channels, w, c.blocks_per_level, c.norm))
            channels = w
            if i != len(widths) - 1:
                self.downs.append(_down(c.downsample, w))
        # Built from the lowest resolution up: ups[0] / decoders[0] are applied first.
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):
            self.ups.append(_up(c.upsample, widths[i + 1], widths[i]))
            self.decoders.append(ConvBlocks(2 * widths[i], widths[i], c.blocks_per_level, c.norm))
        self.conv_out = nn.Conv2d(widths[0], c.out_channels, 1)

    @property
    def downsample_factor(self) -> int:
        return self.config.downsample_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.downsample_factor
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[-2] % f or x.shape[-1] % f:
            raise RadiodiffError(
                f"RadioUNet: expected input (B, {self.config.in_channels}, H, W) with H and W divisible by {f}, "
                f"got {tuple(x.shape)}"
            )
        skips = []
        h = x
        for i, enc in enumerate(self.encoders):
            h = enc(h)
            if i < len(self.downs):
                skips.append(h)
                h = self.downs[i](h)
        for up, dec in zip(self.ups, self.decoders, strict=True):
            h = dec(torch.cat([up(h), skips.pop()], dim=1))
        return self.conv_out(h)


RADIOUNET_JSON = MapModelRecord.config_label


class RadioUNetPipeline(MapModel):
    """The supervised baseline: one forward pass, output mapped from [−1, 1] to [0, 1]."""

    kind = "radiounet"
    is_latent = False

    def __init__(self, net: RadioUNet, record: MapModelRecord | dict):
        super().__init__()
        self.net, self.record = net, MapModelRecord.of(record)

    @property
    def network(self) -> RadioUNet:
        return self.net

    def with_network(self, network: RadioUNet) -> RadioUNetPipeline:
        return RadioUNetPipeline(network, self.record)

    @torch.no_grad()
    def forward(self, condition: torch.Tensor, steps=None, generator=None) -> torch.Tensor:
        return ((self.net(condition) + 1.0) / 2.0).clamp(0.0, 1.0)

    def save_pretrained(self, directory: str | os.PathLike, raw_net: RadioUNet | None = None) -> Path:
        """The folder: ``net/`` (the EMA weights when written by training), ``net_raw/`` (``raw_net``,
        the training weights themselves, when given) and ``radiounet.json``."""
        directory = Path(directory)
        self.net.save_pretrained(directory / "net")
        record = dataclasses.replace(self.record)
        if raw_net is not None:
            raw_net.save_pretrained(directory / f"net{RAW_SUFFIX}")
            record.weights = {"net": "EMA of the training weights", f"net{RAW_SUFFIX}": "training weights (raw)"}
        record.write(directory)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device="cpu", ema: bool = True) -> RadioUNetPipeline:
        """A trained folder with its EMA weights (``ema``) or its raw training weights."""
        directory = Path(directory)
        net = RadioUNet.from_pretrained(weights_folder(directory, "net", ema))
        return cls(net, MapModelRecord.read(directory)).to(device).eval()
