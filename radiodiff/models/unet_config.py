"""The conditional U-Net's architecture: :class:`CondUNetConfig`, saved as ``config.json`` beside
the weights (``save_pretrained`` / ``from_pretrained``), like :mod:`radiodiff.models.autoencoder`."""

from __future__ import annotations

import os
from dataclasses import dataclass

from radiodiff.core.errors import ParamsError
from radiodiff.models.persistence import ConfigMixin

__all__ = ["BLOCK_STYLES", "CondUNetConfig"]

# "light": radiodiff's own lighter blocks (radiodiff.models.unet_light); "original": the blocks of
# the RadioDiff code (mask_cond_unet.py), shape for shape, so its checkpoints import
# (radiodiff.models.import_radiodiff). A config.json without the key is a light model.
BLOCK_STYLES = ("light", "original")


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
    antenna VAE latents, 3 each; 3 for RadioMapSeer's physics prior through the target VAE); 0
    for none. ``cond_stem`` also concatenates the raw condition at the stem, pixel-unshuffled to
    the latent grid (``cond_channels · 4²`` channels: every condition pixel, the Tx's included,
    reaches the network unsummarized; radiodiff's option, off in the paper presets).

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

    ``block_style``: "light" (default; :mod:`radiodiff.models.unet_light`, a timm Swin)
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
    cond_stem: bool = False

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
        if not isinstance(self.cond_stem, bool):
            raise ParamsError(f"cond_unet config: cond_stem must be true or false, got {self.cond_stem!r}")
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
    def stem_cond_channels(self) -> int:
        """Channels the raw condition adds at the stem (``cond_stem``), unshuffled to the latent grid."""
        return self.cond_channels * (self.image_size // self.latent_size) ** 2 if self.cond_stem else 0

    @property
    def latent_size(self) -> int:
        """Side of z_t: the VAE downsamples by 4, like the Swin patch embedding."""
        return self.image_size // 4

    @property
    def swin_stage_channels(self) -> list[int]:
        return [self.swin_embed_dim * 2**i for i in range(len(self.swin_depths))]
