"""``radiodiff import radiodiff-checkpoint``: the original RadioDiff code's checkpoints as a
radiodiff model folder.

Inputs (the layouts of the RadioDiff code's trainers, facts only; none of its code is used):

* the first-stage checkpoint: a torch file whose ``model`` (or ``state_dict``, or the file
  itself) is the KL autoencoder's state; an ``ema`` entry (``ema_model.`` prefixed) is used
  first, as the original's loader does. ``loss.*`` (LPIPS, discriminator) is dropped.
* the LDM ``model-N.pt``: ``model`` is the latent diffusion's state (the U-Net under ``model.``,
  a copy of the first stage under ``first_stage_model.``, the ``scale_factor`` buffer); ``ema``
  when present holds its EMA under ``ema_model.``.

Output: the folder training writes (:class:`~radiodiff.models.radiodiff.RadioDiffPipeline`):
``unet/`` (the EMA weights, else the raw ones), ``unet_raw/`` (the raw ones), ``vae/`` and
``radiodiff.json``, so ``predict``, ``sample`` and ``evaluate --model`` use it unchanged. The
U-Net is :class:`~radiodiff.models.cond_unet.CondUNet` with ``block_style: original``; its
config is read off the tensors' shapes, except what the weights do not hold: the relation
pooling windows (``cross_windows``, the paper's 8/4/2/1), the code version (AFT on in Jul-2025,
its weights unused in Dec-2024) and the image size.

Conventions: the original U-Net applies the skip mixing C = (1−t)z + t/√(t²+1)·F_C,
ε = √t·z + √(1−t)/√(t²+1)·F_ε inside its forward; radiodiff's returns (F_C, F_ε) and applies the
same mixing in :func:`radiodiff.diffusion.const_sde.skip_parameterization` (``skip: true``), so
the weights map one to one. BatchNorm running statistics are imported with the weights; the
pipeline samples in eval mode.

Every tensor's shape is checked; the first missing, extra or mis-shaped tensor is a
:class:`RadiodiffError` naming the file and the tensor, and nothing is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import atomic_dir
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.cond_unet import CondUNet
from radiodiff.models.map_model import RadioDiffRecord
from radiodiff.models.persistence import check_state, load_strict
from radiodiff.models.radiodiff import RadioDiffPipeline
from radiodiff.models.unet_config import CondUNetConfig

__all__ = ["VERSIONS", "import_checkpoint", "map_unet_state", "map_vae_state", "unet_config", "vae_config"]

# Code version -> (AFT used, loss weighting radiodiff trains it with).
VERSIONS = {"jul2025": (True, "jul2025"), "dec2024": (False, "dec2024")}

# Original tensors that no forward pass uses: the Swin's final norm and ImageNet head, the
# Jul-2025 ``init_conv_carK`` (only with ``carsDPM``).
_UNUSED = ("init_conv_mask.norm.", "init_conv_mask.head.", "init_conv_carK.")

_RESBLOCK = (
    (r"mlp\.1\.", "time.1."),
    (r"block1\.proj\.", "conv1."),
    (r"block1\.norm\.", "norm1."),
    (r"block2\.proj\.", "conv2."),
    (r"block2\.norm\.", "norm2."),
    (r"res_conv\.", "skip."),
)
_RELATION = (
    (r"input_conv1\.", "cond_in."),
    (r"input_conv2\.", "feat_in."),
    (r"attentions\.0\.q_lin\.", "to_q."),
    (r"attentions\.0\.k_lin\.", "to_k."),
    (r"attentions\.0\.v_lin\.", "to_v."),
    (r"attentions\.0\.mlp\.fc1\.", "mlp.0."),
    (r"attentions\.0\.mlp\.fc2\.", "mlp.3."),
    (r"attentions\.0\.concat_conv\.", "fuse."),
    (r"attentions\.0\.gn\.", "norm."),
    (r"attentions\.0\.out_conv\.", "to_out."),
)
_PRENORM_ATTN = (
    (r"fn\.norm\.g$", "norm.g"),
    (r"fn\.fn\.to_qkv\.", "to_qkv."),
    (r"fn\.fn\.to_out\.", "to_out."),
)


def _sub(rest: str, rules) -> str | None:
    for pattern, repl in rules:
        m = re.match(pattern, rest)
        if m:
            return repl + rest[m.end() :]
    return None


def _unet_name(name: str, aft: bool) -> str | None:
    """radiodiff's name for the original U-Net tensor ``name`` ('' = unused, dropped; None = unknown)."""
    if name.startswith(_UNUSED) or (not aft and name.startswith("decouple")):
        return ""
    m = re.match(r"init_conv_mask\.first_coonv\.(.*)", name)
    if m:
        return f"cond_encoder.swin.features.0.{m[1]}"
    m = re.match(r"init_conv_mask\.features\.(\d+)\.(.*)", name)
    if m:
        return f"cond_encoder.swin.features.{int(m[1]) + 1}.{m[2]}"
    m = re.match(r"init_conv\.(\d)\.(.*)", name)
    if m:
        return f"stem.{m[1]}.{m[2]}"
    m = re.match(r"projects\.(\d+)\.(.*)", name)
    if m:
        return f"cond_encoder.proj.{m[1]}.{m[2]}"
    fixed = {"time_mlp.0.W": "time_embed.freqs"}
    if name in fixed:
        return fixed[name]
    m = re.match(r"time_mlp\.([13])\.(.*)", name)
    if m:
        return f"time_embed.mlp.{int(m[1]) - 1}.{m[2]}"
    m = re.match(r"decouple([12])\.(\d)\.(.*)", name)
    if m:
        part = {"0": "norm.", "1": "conv.", "2": ""}[m[2]]
        rest = "weight" if m[3] == "complex_weight" else m[3]
        return f"{('decoder_c', 'decoder_eps')[int(m[1]) - 1]}.aft.{part}{rest}"
    m = re.match(r"(mid_block[12])\.(.*)", name)
    if m:
        rest = _sub(m[2], _RESBLOCK)
        return None if rest is None else f"{m[1]}.{rest}"
    m = re.match(r"mid_attn\.(.*)", name)
    if m:
        rest = _sub(m[1], _PRENORM_ATTN)
        return None if rest is None else f"mid_attn.{rest}"
    m = re.match(r"(downs|ups2?)\.(\d+)\.(\d)\.(.*)", name)
    if m:
        where = {"downs": "down", "ups": "decoder_c.levels", "ups2": "decoder_eps.levels"}[m[1]]
        part, rest = int(m[3]), m[4]
        if part in (0, 1):
            rest = _sub(rest, _RESBLOCK)
            return None if rest is None else f"{where}.{m[2]}.blocks.{part}.{rest}"
        if part == 2:
            rest = _sub(rest, _PRENORM_ATTN)
            return None if rest is None else f"{where}.{m[2]}.attn.{rest}"
        if m[1] == "downs" or rest.startswith(("weight", "bias")):
            return f"{where}.{m[2]}.resample.{rest}"
        m2 = re.match(r"1\.(.*)", rest)  # Upsample = (nearest, conv)
        return None if m2 is None else f"{where}.{m[2]}.resample.conv.{m2[1]}"
    m = re.match(r"relation_layers_(down|up|up2)\.(\d+)\.(.*)", name)
    if m:
        where = {"down": "down", "up": "decoder_c.levels", "up2": "decoder_eps.levels"}[m[1]]
        rest = _sub(m[3], _RELATION)
        return None if rest is None else f"{where}.{m[2]}.cross.{rest}"
    m = re.match(r"final_(res_block|conv)(2?)\.(.*)", name)
    if m:
        decoder = "decoder_eps" if m[2] else "decoder_c"
        if m[1] == "conv":
            return f"{decoder}.final_conv.{m[3]}"
        rest = _sub(m[3], _RESBLOCK)
        return None if rest is None else f"{decoder}.final_block.{rest}"
    return None


def _vae_name(name: str, levels: int) -> str | None:
    if name.startswith("loss"):
        return ""
    m = re.match(r"(encoder)\.down\.(\d+)\.(block|attn|downsample)\.(.*)", name) or re.match(
        r"(decoder)\.up\.(\d+)\.(block|attn|upsample)\.(.*)", name
    )
    if m:
        level = int(m[2]) if m[1] == "encoder" else levels - 1 - int(m[2])
        kind, rest = m[3], m[4]
        if kind in ("downsample", "upsample"):
            return f"{m[1]}.levels.{level}.resample.{rest}"
        rest = rest.replace("nin_shortcut.", "skip.", 1) if kind == "block" else rest
        return f"{m[1]}.levels.{level}.{'blocks' if kind == 'block' else 'attns'}.{rest}"
    if re.match(r"(encoder|decoder)\.(conv_in|conv_out|norm_out|mid)\.|(post_)?quant_conv\.", name):
        return name
    return None


# The Swin's fixed relative-position index: radiodiff's modules compute their own, so the file's is not read.
_SWIN_INDEX = ("relative_position_index",)


def _map(state: dict, own: dict, rename, where: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """``state`` renamed to ``own``'s names with every shape checked (:func:`check_state`; the
    first problem raised); messages name the file's tensors with ``prefix`` (where they sit in
    the file)."""
    out: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    for name, tensor in state.items():
        new = rename(name)
        if new == "":
            continue  # unused
        if new is None:
            raise RadiodiffError(
                f"{where}: tensor {prefix + name!r} has no place in the radiodiff network (another architecture?)"
            )
        out[new], names[new] = tensor, prefix + name
    out = check_state(own, out, where, what="the radiodiff network", skip_suffixes=_SWIN_INDEX, names=names)
    return {k: v.to(own[k].dtype) for k, v in out.items()}


def _need(state: dict, name: str, where: str, prefix: str = "model.") -> torch.Tensor:
    if name not in state or not isinstance(state[name], torch.Tensor):
        raise RadiodiffError(f"{where}: no tensor {prefix + name!r} (not a RadioDiff checkpoint?)")
    return state[name]


def _count(state: dict, pattern: str) -> int:
    return len({m[1] for k in state if (m := re.match(pattern, k))})


def unet_config(state: dict, where: str, version: str, image_size: int, cross_windows) -> CondUNetConfig:
    """The :class:`CondUNetConfig` (block_style original) of an original U-Net state."""
    stem = _need(state, "init_conv.0.weight", where)
    patch = _need(state, "init_conv_mask.first_coonv.0.weight", where)
    dim, embed = stem.shape[0], patch.shape[0]
    levels = _count(state, r"downs\.(\d+)\.")
    stages = _count(state, r"init_conv_mask\.features\.(\d+)\.")
    dims = [dim] + [_need(state, f"downs.{i}.3.weight", where).shape[0] for i in range(levels)]
    if any(d % dim for d in dims):
        raise RadiodiffError(f"{where}: level widths {dims} are not multiples of the stem width {dim}")
    depths, heads = [], []
    for s in range(0, stages, 2):  # stage blocks at features 0, 2, 4, ...; patch merging between
        depths.append(_count(state, rf"init_conv_mask\.features\.{s}\.(\d+)\."))
        heads.append(_need(state, f"init_conv_mask.features.{s}.0.attn.relative_position_bias_table", where).shape[1])
    table = state["init_conv_mask.features.0.0.attn.relative_position_bias_table"].shape[0]
    window = (round(table**0.5) + 1) // 2
    qkv = _need(state, "downs.0.2.fn.fn.to_qkv.weight", where).shape[0] // 3
    aft, _ = VERSIONS[version]
    windows = tuple(cross_windows) if cross_windows else (8, 4, 2, 1)[:levels] + (1,) * max(0, levels - 4)
    try:
        return CondUNetConfig(
            block_style="original",
            latent_channels=_need(state, "final_conv.weight", where).shape[0],
            extra_channels=stem.shape[1] - embed - _need(state, "final_conv.weight", where).shape[0],
            cond_channels=patch.shape[1],
            image_size=image_size,
            dim=dim,
            dim_mults=tuple(d // dim for d in dims[1:]),
            num_res_blocks=2,
            resnet_groups=8,
            time_dim=_need(state, "time_mlp.1.weight", where).shape[0],
            fourier_scale=16.0,
            attn_heads=qkv // 32,
            attn_dim_head=32,
            cross_windows=windows,
            swin_embed_dim=embed,
            swin_depths=tuple(depths),
            swin_num_heads=tuple(heads),
            swin_window_size=window,
            swin_drop_path=0.5,
            aft=aft,
        )
    except RadiodiffError as e:
        raise RadiodiffError(f"{where}: {e}") from None


def vae_config(state: dict, where: str, image_size: int) -> AutoencoderKLConfig:
    """The :class:`AutoencoderKLConfig` (downsample_padding end) of an original first-stage state."""
    conv_in = _need(state, "encoder.conv_in.weight", where, "")
    ch, levels = conv_in.shape[0], _count(state, r"encoder\.down\.(\d+)\.")
    mult = [_need(state, f"encoder.down.{i}.block.0.conv2.weight", where, "").shape[0] // ch for i in range(levels)]
    attn = [image_size // 2**i for i in range(levels) if any(k.startswith(f"encoder.down.{i}.attn.") for k in state)]
    try:
        return AutoencoderKLConfig(
            in_channels=conv_in.shape[1],
            out_channels=_need(state, "decoder.conv_out.weight", where, "").shape[0],
            ch=ch,
            ch_mult=tuple(mult),
            num_res_blocks=_count(state, r"encoder\.down\.0\.block\.(\d+)\."),
            z_channels=_need(state, "decoder.conv_in.weight", where, "").shape[1],
            embed_dim=_need(state, "post_quant_conv.weight", where, "").shape[1],
            attn_resolutions=tuple(attn),
            resolution=image_size,
            downsample_padding="end",
        )
    except RadiodiffError as e:
        raise RadiodiffError(f"{where}: {e}") from None


def map_unet_state(state: dict, config: CondUNetConfig, where: str, prefix: str = "model.") -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        own = CondUNet(config, load_swin_checkpoint=False).state_dict()
    return _map(state, own, lambda n: _unet_name(n, config.aft), where, prefix)


def map_vae_state(state: dict, config: AutoencoderKLConfig, where: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        own = AutoencoderKL(config).state_dict()
    return _map(state, own, lambda n: _vae_name(n, len(config.ch_mult)), where)


def _load(path: Path) -> dict:
    if not path.is_file():
        raise RadiodiffError(f"{path}: file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file: any loader error is the file's fault
        first = (str(e).splitlines() or [""])[0][:200]
        raise RadiodiffError(f"{path}: unreadable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(data, dict):
        raise RadiodiffError(f"{path}: expected a checkpoint dict, got {type(data).__name__}")
    return data


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _vae_state(data: dict, path: Path) -> dict:
    """The original first-stage loader's choice: ``ema`` (``ema_model.``), else ``model``, else
    ``state_dict``, else the file itself."""
    if isinstance(data.get("ema"), dict):
        ema = _strip(data["ema"], "ema_model.")
        if ema:
            return ema
    for key in ("model", "state_dict"):
        if isinstance(data.get(key), dict):
            return data[key]
    return data


def import_checkpoint(
    vae: str | os.PathLike,
    ldm: str | os.PathLike,
    out: str | os.PathLike,
    version: str = "jul2025",
    image_size: int = 256,
    condition: str = "static",
    cross_windows=None,
    sampling_steps: int = 5,
) -> dict:
    """Convert; returns a summary (what was read and written). See the module docstring."""
    if version not in VERSIONS:
        raise RadiodiffError(f"--version: one of {sorted(VERSIONS)}, got {version!r}")
    vae_path, ldm_path, out = Path(vae), Path(ldm), Path(out)
    data = _load(ldm_path)
    if not isinstance(data.get("model"), dict):
        raise RadiodiffError(f"{ldm_path}: no 'model' state dict (not an LDM model-N.pt?)")
    raw = _strip(data["model"], "model.")
    if not raw:
        raise RadiodiffError(f"{ldm_path}: 'model' holds no U-Net tensors ('model.*'; not an LDM model-N.pt?)")
    ema = _strip(data["ema"], "ema_model.model.") if isinstance(data.get("ema"), dict) else {}
    where = f"{ldm_path} ('model' state dict)"
    config = unet_config(raw, where, version, image_size, cross_windows)
    raw_state = map_unet_state(raw, config, where)
    ema_state = map_unet_state(ema, config, f"{ldm_path} ('ema' state dict)", "ema_model.model.") if ema else None
    scale = data["model"].get("scale_factor")
    if not isinstance(scale, torch.Tensor) or scale.numel() != 1:
        raise RadiodiffError(f"{ldm_path}: no scalar tensor 'scale_factor' in 'model'")

    vae_state_raw = _vae_state(_load(vae_path), vae_path)
    vcfg = vae_config(vae_state_raw, str(vae_path), image_size)
    vae_state = map_vae_state(vae_state_raw, vcfg, str(vae_path))
    if vcfg.embed_dim != config.latent_channels:
        raise RadiodiffError(
            f"{vae_path}: tensor 'post_quant_conv.weight' gives {vcfg.embed_dim} latent channels, the LDM's U-Net "
            f"('final_conv.weight' in {ldm_path}) has {config.latent_channels}"
        )
    if image_size // vcfg.downsample_factor != config.latent_size:
        raise RadiodiffError(
            f"{vae_path}: the VAE downsamples by {vcfg.downsample_factor}, the U-Net's latent is image_size // 4"
        )

    unet = CondUNet(config, load_swin_checkpoint=False)
    load_strict(unet, ema_state or raw_state, str(ldm_path), what="the radiodiff network", skip_suffixes=_SWIN_INDEX)
    unet_raw = CondUNet(config, load_swin_checkpoint=False)
    load_strict(unet_raw, raw_state, str(ldm_path), what="the radiodiff network", skip_suffixes=_SWIN_INDEX)
    autoencoder = AutoencoderKL(vcfg)
    load_strict(autoencoder, vae_state, str(vae_path), what="the radiodiff network")
    _, weighting = VERSIONS[version]
    record = RadioDiffRecord(
        dataset="radiomapseer",
        sampling_steps=int(sampling_steps),
        t_eps=1e-4,
        skip=True,
        weighting=weighting,
        l1=True,
        condition=condition,
        physics_exponent=None,
        image_size=int(image_size),
        metres_per_pixel=1.0,
        scale_factor=float(scale),
        imported={"vae": str(vae_path), "ldm": str(ldm_path), "version": version, "ema": bool(ema)},
    )
    pipe = RadioDiffPipeline(unet.eval(), autoencoder.eval(), record)
    with atomic_dir(out) as tmp:
        pipe.save_pretrained(tmp, raw_unet=unet_raw.eval())
    return {
        "out": str(out),
        "version": version,
        "unet_weights": "ema" if ema else "model (no ema in the file)",
        "unet_parameters": unet.num_parameters(),
        "scale_factor": float(scale),
        "latent_channels": config.latent_channels,
    }
