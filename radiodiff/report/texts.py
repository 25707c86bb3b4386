"""The report's fixed texts, as data: what it calls each model and dataset, the published
numbers it shows for context, and where radiodiff departs from the paper and the original code."""

from __future__ import annotations

MODELS = (
    ("vae", "radiomapseer", "RadioMapSeer radio VAE"),
    ("vae", "building", "ICASSP building VAE"),
    ("vae", "antenna", "ICASSP antenna VAE"),
    ("vae", "radio", "ICASSP radio VAE"),
    ("ldm", "radiomapseer", "RadioDiff LDM, RadioMapSeer"),
    ("ldm", "icassp", "RadioDiff LDM, ICASSP"),
    ("radiounet", "radiomapseer", "RadioUNet baseline, RadioMapSeer"),
    ("radiounet", "icassp", "RadioUNet baseline, ICASSP"),
)
DATASETS = {"radiomapseer": "RadioMapSeer", "icassp": "ICASSP 2025 (indoor)"}

# Published RadioMapSeer numbers (REFERENCE §4): 256×256 real DPM maps; the protocols differ
# between papers, so they are context, not a like-for-like comparison.
PUBLISHED_RADIOMAPSEER = (
    {"method": "RadioUNet (published)", "nmse": 0.0074, "rmse": 0.0244, "ssim": 0.959, "psnr": 32.0},
    {"method": "RME-GAN (published)", "nmse": 0.0115, "rmse": 0.0303, "ssim": 0.932},
    {"method": "RadioDiff (published)", "nmse": 0.0049, "rmse": 0.0190, "ssim": 0.969, "psnr": 35.1},
)
PUBLISHED_ICASSP = (
    "Challenge winners, weighted RMSE over tasks 1–3 (real data): SIP2Net 9.41 dB, IPP-Net 9.50 dB, TerRaIn 10.32 dB."
)

# Where radiodiff departs from the paper and the original code, and why (the rows that do not
# depend on the run; :func:`departures` adds the network's rows for the run's block styles).
DEPARTURES = (
    (
        "Data",
        "RadioMapSeer (DPM/IRT ray tracing) and the ICASSP 2025 challenge data",
        "physics-based synthetic stand-ins in the same layouts; real roots are a param",
        "no network or dataset download at run time; `data.*.root` points at real data",
    ),
    (
        "Resolution (quick scale)",
        "256×256 maps, latent 3×64×64",
        "64×64 maps, latent 16×16 (paper preset: 256×256)",
        "the whole DAG must fit 30 min on a 2-core CPU",
    ),
    (
        "Training length (quick)",
        "VAE 150 k steps, LDM 50 k steps",
        "hundreds to a few thousand steps (paper preset: as published)",
        "CPU budget; curves show what is left on the table",
    ),
    (
        "Third condition channel",
        "[buildings, Tx, buildings] (static)",
        "static, dynamic (cars) or a log-distance physics prior; quick/ci use the prior, paper keeps static",
        "the prior helps a small, briefly trained model most",
    ),
    (
        "Training recipe",
        "Dec-2024 release (configs/radio_train.yaml): batch 66 × 8, (t+1)/√t weights, AFT off; "
        "Jul-2025 code (configs_old/BSDS_train_DPM.yaml): batch 32 × 1, exponential weights, AFT on; "
        "both 50 k steps at lr 5e-5, fp32, scale 0.3, Swin drop-path 0.5, raw weights scored",
        "presets `paper_jul2025` (= `paper`), `paper_dec2024` and `enhanced` (Jul-2025 plus learned logvar, "
        "edge-aware VAE, clipping before the step, bf16), each with its table in the README; quick/ci: "
        "radiodiff's own choices (EMA weights, scale `auto`, learned logvar)",
        "one complete preset per published recipe, so 'paper' means a recipe that was run",
    ),
    (
        "Latent scale factor",
        "fixed 0.3",
        "`auto` = 1 / std of the training posterior samples at the quick scale; 0.3 in the recipe presets",
        "the quick VAEs are new, so the right scale is measured, not assumed",
    ),
    (
        "Weights sampled and scored",
        "raw training weights (`use_ema: False`)",
        "`sample.use_ema`: EMA at the quick scale, raw in the recipe presets; model folders hold both",
        "the EMA of a short run is the better model; the recipes score as published",
    ),
    (
        "PSNR / SSIM",
        "torchmetrics without `data_range` (range inferred from each image)",
        "data range 1, stated in every summary",
        "current torchmetrics requires the range; the inferred range is at most 1 on [0, 1] maps, "
        "so data range 1 can only raise PSNR and SSIM against the published computation",
    ),
    (
        "Scoring",
        "full-resolution maps",
        "the model's resolution; RadioMapSeer: known building pixels set to 0 in every method's output "
        "before scoring (scope `all`), also `outdoor`; ICASSP: the crops' valid pixels, also `open` (nothing zeroed)",
        "buildings are an input, so they are not a prediction; zeroing them can only lower the error, "
        "so `all` is not the published protocol (which scored the raw float prediction)",
    ),
    (
        "RadioUNet baseline",
        "two cascaded U-Nets (RadioUNet's W-Net) trained in two phases",
        "one supervised U-Net, MSE, same inputs and split as RadioDiff",
        "a like-for-like supervised baseline within the same budget",
    ),
    (
        "Physics baselines",
        "(none in RadioDiff's tables)",
        "log-distance path gain with an exponent fitted on the training split; "
        "ICASSP FSPL minus the antenna gain, no walls",
        "a no-training floor every learned model must beat",
    ),
)

# The network's rows per ``train_ldm_*.model.block_style``: (Swin row, U-Net row), each
# (radiodiff, why); the paper / original-code column is the same for both styles.
SWIN_PAPER = "Swin-B, ImageNet-pretrained"
UNET_PAPER = (
    "strided/heavy downsampling convs, 7×7 stem, 3×3 AFT conv, BatchNorm projections (~137 M without the backbone)"
)
NETWORK_ROWS = {
    "light": (
        (
            "timm Swin sized from params, trained from scratch unless a local checkpoint is configured",
            "no pretrained weights can be downloaded here; random weights are never passed off as pretrained",
        ),
        (
            "radiodiff's light blocks: space-to-depth + 1×1 downsampling, LayerNorm before the Swin projections "
            "(paper config: 123 M outside the Swin)",
            "fewer FLOPs for the CPU presets; written from the paper's description, not from its code",
        ),
    ),
    "original": (
        (
            "torchvision's Swin, as the original code builds it, sized from params, trained from scratch unless a "
            "local torchvision checkpoint is configured",
            "no pretrained weights can be downloaded here; random weights are never passed off as pretrained",
        ),
        (
            "the original's blocks shape for shape (`block_style: original`; paper config 137.1 M outside "
            "Swin-B with AFT)",
            "none: the same network (the original's checkpoints import, `radiodiff import radiodiff-checkpoint`)",
        ),
    ),
}


def departures(block_styles: dict[str, str], extra=()) -> list[tuple[str, str, str, str]]:
    """:data:`DEPARTURES` with the Swin and U-Net rows of the run's ``block_styles`` (dataset name
    -> ``train_ldm_{dataset}.model.block_style``), one pair per style the run used, and the
    ``extra`` rows of the run's own choices after the U-Net's."""
    swin_rows, unet_rows = [], []
    styles = sorted(set(block_styles.values()))
    for style in styles:
        which = [DATASETS.get(d, d) for d, s in block_styles.items() if s == style]
        where = f" ({', '.join(which)})" if len(styles) > 1 else ""
        (swin, swin_why), (unet, unet_why) = NETWORK_ROWS[style]
        swin_rows.append(("Swin condition encoder" + where, SWIN_PAPER, swin, swin_why))
        unet_rows.append(("U-Net details" + where, UNET_PAPER, unet, unet_why))
    return [*DEPARTURES[:3], *swin_rows, *DEPARTURES[3:-4], *unet_rows, *extra, *DEPARTURES[-4:]]
