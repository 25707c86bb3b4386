"""The published RadioDiff recipes as presets: one table per recipe, and the rule that writes them.

Each table row is one recipe item: the params it sets (a dotted path; ``*`` stands for every
stage of that kind, e.g. ``train_vae_*`` for the four VAEs), the value radiodiff uses, and the
source file and value in UNIC-Lab/RadioDiff it reproduces. The rows are the whole difference
between the recipes; everything else (data sizes, the RadioUNet baseline, bookkeeping) is shared.

- ``paper_jul2025`` (**primary**, written by hand in ``params/paper_jul2025.yaml``): the Jul-2025
  code (exponential loss weights, AFT on), trained with ``configs_old/BSDS_train_DPM.yaml``. It
  is primary because it is the authors' current code, its U-Net matches the paper's (AFT on),
  its split tests on RadioDiff's 100 test maps, and its batch (32 × 1) fits one GPU.
- ``paper_dec2024``: the Dec-2024 release (``configs/radio_train.yaml``: 66 × 8, the
  ``(t+1)/√t`` weights, AFT off, its split).
- ``enhanced``: ``paper_jul2025`` plus the Enhanced suite's fixes (learned logvar, edge-aware
  RadioMapSeer VAE, clipping before the step, bf16).
- ``paper_smoke``: not a recipe but a smoke run of one: ``paper_jul2025`` with the rows of
  :data:`SMOKE_ROWS` (the rule is in its comment), so the whole paper-architecture DAG runs on a CPU.

``params/paper.yaml`` is ``paper_jul2025`` under the name ``paper``. ``radiodiff recipes``
writes ``paper.yaml``, ``paper_dec2024.yaml``, ``enhanced.yaml`` and ``paper_smoke.yaml`` from the
primary file and the tables (``--check``: fail when one is stale); a test checks every table
against its preset.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from radiodiff.core.errors import ParamsError

PRIMARY = "paper_jul2025"
SMOKE = "paper_smoke"
GENERATED = {"paper": PRIMARY, "paper_dec2024": PRIMARY, "enhanced": PRIMARY, SMOKE: PRIMARY}  # preset: generated from

DEC = "RadioDiff Dec-2024"
JUL = "RadioDiff Jul-2025"


@dataclass(frozen=True)
class Row:
    item: str
    params: dict[str, Any]  # dotted path (``*`` = every stage of that kind) -> radiodiff value
    source: str  # file and value in UNIC-Lab/RadioDiff (or the Enhanced suite)


LDM_JUL = "configs_old/BSDS_train_DPM.yaml"
LDM_DEC = "configs/radio_train.yaml"
TRAINER = "train_cond_ldm.py"
VAE_CFG = "configs/first_radio.yaml"
VAE_TRAINER = "train_vae.py"

_COMMON = (
    Row("LDM training steps", {"train_ldm_*.train.max_steps": 50000}, "`trainer.train_num_steps: 50000`"),
    Row("LDM learning rate (AdamW)", {"train_ldm_*.train.lr": 5.0e-5}, "`trainer.lr: 5e-5`"),
    Row(
        "LR multiplier floor (the original floors the multiplier)",
        {"train_ldm_*.train.min_lr": 5.0e-6},
        f"`trainer.min_lr: 5e-6`, used in {TRAINER}: `max((1 - iter/steps) ** 0.96, min_lr)`",
    ),
    Row("LR decay power", {"train_ldm_*.train.lr_power": 0.96}, f"{TRAINER}: `** 0.96`"),
    Row("LDM weight decay", {"train_ldm_*.train.weight_decay": 1.0e-4}, f"{TRAINER}: `weight_decay` default 1e-4"),
    Row(
        "LDM EMA: decay, start, every",
        {"train_ldm_*.train.ema_decay": 0.999, "train_ldm_*.train.ema_start": 10000, "train_ldm_*.train.ema_every": 10},
        f"{TRAINER}: `EMA(beta=0.999)`; `ema_update_after_step: 10000`, `ema_update_every: 10`",
    ),
    Row(
        "LDM gradient clipping, before the step",
        {"train_ldm_*.train.clip_grad_norm": 1.0},
        f"{TRAINER}: `clip_grad_norm_(…, 1.0)` before `opt.step()`",
    ),
    Row("LDM precision", {"train_ldm_*.train.mixed_precision": "no"}, "`trainer.amp: False`, `fp16: False` (fp32)"),
    Row("Latent scale factor (fixed)", {"train_ldm_*.diffusion.scale_factor": 0.3}, "`model.scale_factor: 0.3`"),
    Row("Time epsilon", {"train_ldm_*.diffusion.t_eps": 1.0e-4}, "`model.eps: 1e-4`"),
    Row("L1 term beside the MSE", {"train_ldm_*.diffusion.l1": True}, "`use_l1` default True (ddm_const_sde.py)"),
    Row("Skip parameterization", {"train_ldm_*.diffusion.skip": True}, "ddm_const_sde.py `pred_KC` with skip"),
    Row(
        "U-Net blocks (relation block, stem, downsampling, AFT conv, attention norms, torchvision Swin)",
        {"train_ldm_*.model.block_style": "original"},
        "mask_cond_unet.py `Unet` block for block (137,101,190 parameters outside Swin-B with AFT)",
    ),
    Row(
        "Swin-B drop-path",
        {"train_ldm_*.model.swin_drop_path": 0.5},
        "mask_cond_unet.py: Swin-B `drop_path_rate 0.5` (REFERENCE §3.2)",
    ),
    Row("Sampler steps", {"sample.steps": 5}, "configs/radio_sample.yaml `sampling_timesteps: 5`"),
    Row("Weights sampled and scored", {"sample.use_ema": False}, "configs/radio_sample.yaml `sampler.use_ema: False`"),
    Row(
        "VAE batch; one AE step then one discriminator step",
        {"train_vae_*.train.batch_size": 2, "train_vae_*.train.grad_accum": 1},
        f"{VAE_CFG} `batch_size: 2`; `gradient_accumulate_every: 2` is {VAE_TRAINER}'s two passes (AE, disc)",
    ),
    Row("VAE steps", {"train_vae_*.train.max_steps": 150000}, f"{VAE_CFG} `train_num_steps: 150000`"),
    Row(
        "VAE learning rates (AE and discriminator)",
        {"train_vae_*.train.lr": 5.0e-6, "train_vae_*.loss.disc_lr": 5.0e-6},
        f"{VAE_CFG} `lr: 5e-6`; {VAE_TRAINER}: `opt_disc` at `train_lr`",
    ),
    Row(
        "VAE LR multiplier floor and power",
        {"train_vae_*.train.min_lr": 5.0e-7, "train_vae_*.train.lr_power": 0.95},
        f"{VAE_CFG} `min_lr: 5e-7`; {VAE_TRAINER}: `** 0.95`",
    ),
    Row("VAE weight decay", {"train_vae_*.train.weight_decay": 0.01}, f"{VAE_TRAINER}: AdamW default (0.01)"),
    Row(
        "VAE gradient clipping",
        {"train_vae_*.train.clip_grad_norm": None},
        f"{VAE_TRAINER}: `clip_grad_norm_` after both steps, so none takes effect",
    ),
    Row(
        "VAE EMA: decay, every",
        {"train_vae_*.train.ema_decay": 0.995, "train_vae_*.train.ema_every": 10, "train_vae_*.train.ema_start": 0},
        f"{VAE_TRAINER}: `EMA(beta=ema_decay, update_every=…)` (REFERENCE §3.1: 0.995 every 10)",
    ),
    Row("VAE precision", {"train_vae_*.train.mixed_precision": "no"}, f"{VAE_CFG} `amp: False`, `fp16: False`"),
    Row(
        "VAE loss: KL weight, GAN start and weight",
        {
            "train_vae_*.loss.kl_weight": 1.0e-6,
            "train_vae_*.loss.disc_start": 50001,
            "train_vae_*.loss.disc_weight": 0.5,
        },
        f"{VAE_CFG} `kl_weight: 1e-6`, `disc_start: 50001`, `disc_weight: 0.5`",
    ),
    Row(
        "VAE loss: LPIPS and discriminator",
        {
            "train_vae_*.loss.perceptual_weight": 1.0,
            "train_vae_*.loss.disc_num_layers": 3,
            "train_vae_*.loss.disc_ndf": 64,
        },
        "loss.py `LPIPSWithDiscriminator` defaults: `perceptual_weight 1.0`, 3 layers, ndf 64",
    ),
    Row(
        "VAE output log-variance not trained",
        {"train_vae_*.loss.learn_logvar": False, "train_vae_*.loss.logvar_init": 0.0},
        f"{VAE_TRAINER}: `opt_ae` holds the encoder, decoder and quant convs only (logvar stays at 0)",
    ),
    Row("No edge weighting", {"train_vae_*.loss.edge_weight": 0.0}, "none in the original loss (the Enhanced suite's)"),
)

RECIPES: dict[str, tuple[Row, ...]] = {
    "paper_jul2025": (
        Row(
            "LDM batch × accumulation (the original's batch is global; radiodiff's is per process)",
            {"train_ldm_*.train.batch_size": 32, "train_ldm_*.train.grad_accum": 1},
            f"{LDM_JUL} `data.batch_size: 32`, `trainer.gradient_accumulate_every: 1`",
        ),
        Row(
            "Loss weights w_C, w_ε",
            {"train_ldm_*.diffusion.weighting": "jul2025"},
            f"{JUL} ddm_const_sde.py: 2·e^(1−t), e^(√t)",
        ),
        Row("Adaptive FFT module", {"train_ldm_*.model.aft": True}, f"{JUL} mask_cond_unet.py: AFT on"),
        Row(
            "RadioMapSeer split",
            {"data.radiomapseer.split": "radiodiff_jul2025"},
            f"{JUL} lib/loaders.py map lists (docs/radiomapseer_published_splits.json)",
        ),
        *_COMMON,
    ),
    "paper_dec2024": (
        Row(
            "LDM batch × accumulation (the original's batch is global; radiodiff's is per process)",
            {"train_ldm_*.train.batch_size": 66, "train_ldm_*.train.grad_accum": 8},
            f"{LDM_DEC} `data.batch_size: 66`, `trainer.gradient_accumulate_every: 8`",
        ),
        Row(
            "Loss weights w_C, w_ε",
            {"train_ldm_*.diffusion.weighting": "dec2024"},
            f"{DEC} ddm_const_sde.py: (t+1)/√t, √(2−t)/√(1−t+1e-4)",
        ),
        Row("Adaptive FFT module", {"train_ldm_*.model.aft": False}, f"{DEC} mask_cond_unet.py: AFT off"),
        Row(
            "RadioMapSeer split",
            {"data.radiomapseer.split": "radiodiff_dec2024"},
            f"{DEC} lib/loaders.py map lists (docs/radiomapseer_published_splits.json)",
        ),
        *_COMMON,
    ),
}
ENHANCED_FIXES = (
    Row(
        "VAE output log-variance trained",
        {"train_vae_*.loss.learn_logvar": True},
        "Enhanced suite: logvar in the AE optimizer (lowers the effective KL weight by about exp(logvar))",
    ),
    Row(
        "Edge-aware RadioMapSeer VAE",
        {"train_vae_radiomapseer.loss.edge_weight": 1.0},
        "Enhanced suite: extra reconstruction weight on edge pixels",
    ),
    Row("VAE gradient clipping before the step", {"train_vae_*.train.clip_grad_norm": 1.0}, "Enhanced suite"),
    Row(
        "bf16 training",
        {"train_vae_*.train.mixed_precision": "bf16", "train_ldm_*.train.mixed_precision": "bf16"},
        "Enhanced suite",
    ),
)
# enhanced = the primary recipe, then its fixes (a later row overrides an earlier one)
RECIPES["enhanced"] = (*RECIPES[PRIMARY], *ENHANCED_FIXES)

# paper_smoke = the primary recipe, then these rows. The rule: every network, resolution and crop
# of paper_jul2025 is kept (no row may set a `model` section, an image size or the crop size:
# ``SMOKE_FIXED``, checked when the preset is written); the rows shrink only how much data there
# is, how long each model trains (2 steps at batch 1, no accumulation, every save/eval/log within
# them), how many sampler steps and maps are timed and sampled, and switch LPIPS off (its ImageNet
# VGG weights cannot be downloaded here). The third column says why.
SMOKE_FIXED = ("data.radiomapseer.image_size", "crop_icassp.size_px", "synthesize_radiomapseer.size_px")
SMOKE_ROWS = (
    Row(
        "RadioMapSeer: 3 maps of 1 Tx, the ratio split (1 item each to train, validate, test)",
        {
            "synthesize_radiomapseer.maps": 3,
            "synthesize_radiomapseer.tx_per_map": 1,
            "data.radiomapseer.split": {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 42},
        },
        "the published split lists maps 1-700; the ratio split of 3 maps gives each split one map",
    ),
    Row(
        "ICASSP: 3 one-window buildings, Task 1 (Ant1, f1), 1 Tx position (1 item each to train, validate, test)",
        {
            "synthesize_icassp.buildings": 3,
            "synthesize_icassp.width_px": [256, 256],
            "synthesize_icassp.height_px": [256, 256],
            "synthesize_icassp.positions_per_antenna": 1,
            "data.icassp.task": "Task_1_ICASSP",
        },
        "the fewest the synthesizer writes (it always draws 5 antennas x 3 bands; Task 1 reads one of them) "
        "and the ratio split cuts (1 building each); a 256-px building is one crop and one whole-building window",
    ),
    Row(
        "Every model trains 2 steps at batch 1, no accumulation",
        {"train_*.train.max_steps": 2, "train_*.train.batch_size": 1, "train_*.train.grad_accum": 1},
        "a smoke run: each training stage builds, steps, saves, validates and exports its paper network",
    ),
    Row(
        "Saves, validation and logs within the 2 steps; no milestone exports",
        {
            "train_*.train.save_every": 2,
            "train_*.train.eval_every": 2,
            "train_*.train.log_every": 1,
            "train_*.train.export_every": None,
        },
        "so the 2 steps exercise resumable states, validation and the logs",
    ),
    Row(
        "LPIPS off",
        {"train_vae_*.loss.perceptual_weight": 0.0},
        "LPIPS needs torchvision's ImageNet VGG-16 weights, which cannot be downloaded here; "
        "at weight 0 they are never loaded",
    ),
    Row(
        "One sampler step (validation, test split, whole buildings), one map per batch",
        {
            "train_ldm_*.diffusion.sampling_steps": 1,
            "sample.steps": 1,
            "sample.batch_size": 1,
            "sample.window.batch_size": 1,
        },
        "each RadioDiff map costs N + 1 U-Net calls and a VAE decoding",
    ),
    Row(
        "Benchmark: 1 timed step at batch 1, no warm-up, 1 sampling repeat at 1 step",
        {
            "benchmark.train_steps": 1,
            "benchmark.warmup_steps": 0,
            "benchmark.train_batch_size": 1,
            "benchmark.sample_batch_size": 1,
            "benchmark.sample_repeats": 1,
            "benchmark.radiodiff_steps": [1],
        },
        "it times the paper networks once; whole maps stay 256 x 256 (one window)",
    ),
    Row(
        "Training data loaded in the training process",
        {"runtime.num_workers": 0},
        "runtime (re-runs nothing): 8 loader workers would only cost memory on a 2-core CPU",
    ),
)
RECIPES[SMOKE] = (*RECIPES[PRIMARY], *SMOKE_ROWS)


def _paths(params: dict, dotted: str) -> list[list[str]]:
    """The concrete key paths of ``dotted`` in ``params`` (``*`` in the first part matches stages)."""
    head, *rest = dotted.split(".")
    if "*" in head:
        prefix = head.split("*")[0]
        heads = [k for k in params if k.startswith(prefix)]
        if not heads:
            raise ParamsError(f"recipe: {dotted} matches no section")
    else:
        heads = [head]
    return [[h, *rest] for h in heads]


def get(params: dict, path: list[str]) -> Any:
    node = params
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ParamsError(f"recipe: no key {'.'.join(path)}")
        node = node[key]
    return node


def apply(params: dict, rows) -> dict:
    """``params`` with every row's values set."""
    out = copy.deepcopy(params)
    for row in rows:
        for dotted, value in row.params.items():
            for path in _paths(out, dotted):
                get(out, path)  # a ParamsError naming the key when the preset lacks it
                get(out, path[:-1])[path[-1]] = copy.deepcopy(value)
    return out


def mismatches(params: dict, rows) -> list[str]:
    """The table entries a preset does not hold (empty when it follows its table). A later row
    that sets the same key wins, as in :func:`apply`."""
    expected: dict[tuple, Any] = {}
    for row in rows:
        for dotted, value in row.params.items():
            for path in _paths(params, dotted):
                expected[tuple(path)] = (value, row.item)
    return [
        f"{'.'.join(path)} = {get(params, list(path))!r}, the table says {value!r} ({item})"
        for path, (value, item) in expected.items()
        if get(params, list(path)) != value
    ]


DESCRIPTIONS = {
    "paper": "RadioDiff's published recipe: paper_jul2025 (the primary recipe) under the name paper",
    "paper_dec2024": "RadioDiff's Dec-2024 release (configs/radio_train.yaml: 66 x 8, Dec-2024 weights, AFT off)",
    "enhanced": "paper_jul2025 plus the Enhanced suite's fixes (learned logvar, edge-aware VAE, clipping, bf16)",
    SMOKE: "paper_jul2025's networks at 256 x 256, a few maps, 2 steps per model, LPIPS off: the paper DAG on a CPU",
}
HEADER = (
    "# {name}: {description}.\n"
    "# Written by `radiodiff recipes` from params/{primary}.yaml and the tables in radiodiff/recipes.py;\n"
    "# do not edit (edit those and run `radiodiff recipes`).\n"
)


def check_smoke_rows(rows=SMOKE_ROWS) -> None:
    """:class:`ParamsError` when a smoke row would change an architecture: a key in a ``model``
    section, or one of :data:`SMOKE_FIXED` (image size, crop size, map size)."""
    for row in rows:
        for dotted in row.params:
            if "model" in dotted.split(".")[1:] or dotted in SMOKE_FIXED:
                raise ParamsError(f"recipe {SMOKE}: row {row.item!r} sets {dotted}, which the smoke run keeps")


def preset_text(name: str, presets_dir: Path) -> str:
    """The text of generated preset ``name`` from the primary file and the tables."""
    if name == SMOKE:
        check_smoke_rows()
    primary = presets_dir / f"{GENERATED[name]}.yaml"
    text = primary.read_text()
    if name == "paper":
        lines = text.splitlines(keepends=True)
        while lines and lines[0].startswith("#"):  # the primary file's own header
            lines.pop(0)
        body = "".join(lines).replace(f"scale: {PRIMARY}\n", "scale: paper\n", 1)
        return HEADER.format(name=name, primary=PRIMARY, description=DESCRIPTIONS[name]) + body
    params = apply(yaml.safe_load(text), RECIPES[name])
    params["scale"] = name
    return HEADER.format(name=name, primary=PRIMARY, description=DESCRIPTIONS[name]) + dump_params(params)


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists inline (as the hand-written presets)."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def dump_params(params: dict) -> str:
    """A params tree as YAML: nested sections in block style, lists inline, keys in order."""
    return yaml.dump(params, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def write_presets(presets_dir: Path, check: bool = False) -> list[str]:
    """Write (or, with ``check``, compare) every generated preset; returns the stale ones."""
    stale = []
    for name in GENERATED:
        path = presets_dir / f"{name}.yaml"
        text = preset_text(name, presets_dir)
        if not path.is_file() or path.read_text() != text:
            stale.append(name)
            if not check:
                path.write_text(text)
    return stale


def markdown_table(name: str) -> str:
    """The table of recipe ``name``: item, radiodiff params and values, source file and value
    (``enhanced``: its fixes over ``paper_jul2025``; ``paper_smoke``: its rows, and why)."""
    if name == SMOKE:
        lines, rows = ["| smoke item | radiodiff | why |", "|---|---|---|"], SMOKE_ROWS
    else:
        lines = ["| recipe item | radiodiff | source and value |", "|---|---|---|"]
        rows = ENHANCED_FIXES if name == "enhanced" else RECIPES[name]
    for row in rows:
        values = ", ".join(f"`{k}: {_yaml_value(v)}`" for k, v in row.params.items())
        lines.append(f"| {row.item} | {values} | {row.source} |")
    return "\n".join(lines)


def _yaml_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True, sort_keys=False).strip().removesuffix("...").strip()
