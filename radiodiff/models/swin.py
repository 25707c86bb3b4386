"""The conditional U-Net's condition encoders: the Swin transformers of both block styles.

The paper encodes the condition image with a Swin transformer (REFERENCE §3.2) whose stages (patch
4, so stage i sits at latent_side / 2**i) feed the U-Net levels. ``block_style: light`` uses timm's
``SwinTransformer`` (:func:`build_swin`, :func:`swin_stages`, :func:`load_swin_checkpoint`);
``block_style: original`` torchvision's, as the RadioDiff code does (:func:`build_original_swin`,
:func:`original_swin_stages`, :func:`load_original_swin_checkpoint`). Both are built without
their classifier head and final norm; both checkpoint loaders read a local state dict
(``swin_checkpoint``) and check it tensor by tensor (:func:`radiodiff.models.persistence.load_strict`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radiodiff.core.errors import ParamsError
from radiodiff.models.persistence import load_strict
from radiodiff.models.unet_config import CondUNetConfig

__all__ = [
    "PAPER_SWIN_B",
    "build_original_swin",
    "build_swin",
    "load_original_swin_checkpoint",
    "load_swin_checkpoint",
    "original_swin_stages",
    "swin_stages",
]

# The paper's condition encoder, Swin-B (REFERENCE §3.2): patch 4, embed 128, depths (2, 2, 18, 2),
# window 7. timm pads a stage whose side is not a multiple of the window and shrinks the window
# (without shift) when a stage is no larger than it, so window 7 runs at 256 px (stages 64/32/16/8).
PAPER_SWIN_B: dict[str, Any] = dict(
    swin_embed_dim=128, swin_depths=(2, 2, 18, 2), swin_num_heads=(4, 8, 16, 32), swin_window_size=7
)

# Swin checkpoint keys we drop on purpose: the ImageNet classifier and the final LayerNorm (the
# light blocks' projections give the stage outputs their own LayerNorm).
_SWIN_IGNORED_PREFIXES = ("head.", "norm.")


def _read_state(path: Path, where: str) -> dict:
    """The state dict in a local ``.safetensors`` or torch file (a ``{"model": ...}`` wrapper
    unwrapped); a missing, unreadable or foreign file is a ParamsError naming ``where``."""
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
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ParamsError(f"{where}: expected a state dict, got {type(state).__name__}")
    return state


# --------------------------------------------------------------------------------------------
# timm's Swin (block_style "light")
# --------------------------------------------------------------------------------------------


def build_swin(config: CondUNetConfig) -> nn.Module:
    """A timm SwinTransformer (never pretrained) returning its stages through :func:`swin_stages`."""
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


def swin_stages(swin: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
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
    state = _read_state(path, where)
    try:
        state = checkpoint_filter_fn(state, swin)
    except Exception as e:  # malformed entries
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ParamsError(f"{where}: does not fit the configured Swin ({first} ...)") from None
    load_strict(swin, state, where, what="the configured Swin", skip_prefixes=_SWIN_IGNORED_PREFIXES, error=ParamsError)


# --------------------------------------------------------------------------------------------
# torchvision's Swin (block_style "original")
# --------------------------------------------------------------------------------------------


def build_original_swin(config: CondUNetConfig) -> nn.Module:
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


def original_swin_stages(swin: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """The stage outputs (B, C, H, W) of a torchvision Swin: after features 1, 3, 5, ..."""
    x, out = image, []
    for i, layer in enumerate(swin.features):
        x = layer(x)
        if i % 2 == 1:
            out.append(x.permute(0, 3, 1, 2))
    return out


def load_original_swin_checkpoint(swin: nn.Module, path: str | os.PathLike) -> None:
    """A local torchvision Swin state dict (e.g. ``swin_b`` ImageNet weights saved beforehand);
    the classifier head and final norm are dropped; anything else must fit exactly."""
    path = Path(path)
    where = f"swin_checkpoint: {path}"
    state = _read_state(path, where)
    load_strict(swin, state, where, what="the configured Swin", skip_prefixes=_SWIN_IGNORED_PREFIXES, error=ParamsError)
