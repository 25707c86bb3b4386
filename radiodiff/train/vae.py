"""Train one first-stage VAE (AutoencoderKL + two-phase VAE-GAN loss) on the shared engine.

Four stages use this: ``train_vae_radiomapseer`` (gain maps, edge-aware), ``train_vae_building``
(reflectance + transmittance), ``train_vae_antenna`` (FSPL with pattern) and ``train_vae_radio``
(path loss) on the Tx-aware ICASSP crops. Outputs: ``model/`` (EMA weights + config.json),
``metrics.json`` (validation split) and ``train_log.csv``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from radiodiff.core.io import write_json
from radiodiff.data.vae_inputs import VAE_CHANNELS, icassp_images, radiomapseer_images
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig, count_parameters
from radiodiff.models.losses import VAEGANLoss
from radiodiff.train.stage import run_report, run_stage


def reconstruction_metrics(x: torch.Tensor, recon: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image RMSE, PSNR and SSIM on [0, 1]-scaled maps (data range 1), all channels."""
    x01 = ((x + 1) / 2).clamp(0, 1).float()
    r01 = ((recon + 1) / 2).clamp(0, 1).float()
    dims = tuple(range(1, x.ndim))
    return {
        "rmse": ((r01 - x01) ** 2).mean(dim=dims).sqrt(),
        "psnr": peak_signal_noise_ratio(r01, x01, data_range=1.0, reduction="none", dim=dims),
        "ssim": structural_similarity_index_measure(r01, x01, data_range=1.0, reduction="none"),
    }


class VAETask:
    """The VAE-GAN as the engine sees it: optimizer 0 = autoencoder (+ learnable logvar),
    optimizer 1 = discriminator, one step each per batch (as the original)."""

    def __init__(self, model_cfg: AutoencoderKLConfig, loss_kwargs: dict, disc_lr: float, use_edges: bool):
        self.model = AutoencoderKL(model_cfg)
        self.loss_fn = VAEGANLoss(disc_in_channels=model_cfg.in_channels, **loss_kwargs)
        self.disc_lr = disc_lr
        self.use_edges = use_edges
        self._cache = None  # (batch id, reconstructions) shared by the two optimizer passes

    def param_groups(self):
        ae = [*self.model.parameters(), self.loss_fn.logvar]  # the original never optimized logvar
        return [("ae", ae, {}), ("disc", list(self.loss_fn.discriminator.parameters()), {"lr": self.disc_lr})]

    def modules(self):
        return {"vae": self.model, "loss": self.loss_fn}

    def loss(self, batch, step: int, opt_index: int):
        x = batch["image"]
        edges = batch["edges"] if self.use_edges else None
        if opt_index == 0:
            recon, posterior = self.model(x)
            self._cache = (id(batch), recon.detach(), posterior)
            return self.loss_fn(x, recon, posterior, 0, step, last_layer=self.model.last_layer, edges=edges)
        if self._cache is not None and self._cache[0] == id(batch):
            recon, posterior = self._cache[1], self._cache[2]
            self._cache = None  # release the AE graph held by the posterior
        else:
            with torch.no_grad():
                recon, posterior = self.model(x)
        return self.loss_fn(x, recon, posterior, 1, step, edges=edges)

    @torch.no_grad()
    def evaluate(self, model, loader) -> dict[str, float]:
        sums, n = {}, 0
        for batch in loader:
            x = batch["image"]
            recon = model.decode(model.encode(x).mode())
            for k, v in reconstruction_metrics(x, recon).items():
                sums[k] = sums.get(k, 0.0) + float(v.sum())
            n += x.shape[0]
        return {k: v / max(n, 1) for k, v in sums.items()}

    def export(self, model, out_dir: Path) -> None:
        model.save_pretrained(out_dir)


def train_vae(name: str, section: dict, inputs: dict, out_dir: Path, state_root: Path = Path("state")) -> dict:
    """Train VAE ``name`` from its params ``section`` ({model, loss, train}) on ``inputs``
    (radiomapseer: root, edges, data; ICASSP: crops) and write the stage's outputs."""
    out_dir = Path(out_dir)
    m, lo, tr = section["model"], dict(section["loss"]), dict(section["train"])
    augment = tr.pop("augment", False)  # a data option, not an engine one
    if name == "radiomapseer":
        train_set = radiomapseer_images(inputs["root"], inputs["edges"], "train", inputs["data"])
        val_set = radiomapseer_images(inputs["root"], inputs["edges"], "val", inputs["data"])
        sources = [Path(inputs["root"]), Path(inputs["edges"])]
    else:
        train_set = icassp_images(inputs["crops"], "train", name, augment=augment)
        val_set = icassp_images(inputs["crops"], "val", name)
        sources = [Path(inputs["crops"])]
    channels = VAE_CHANNELS[name]
    cfg = AutoencoderKLConfig(
        in_channels=channels,
        out_channels=channels,
        resolution=train_set.images.shape[-1],
        ch=m["ch"],
        ch_mult=tuple(m["ch_mult"]),
        num_res_blocks=m["num_res_blocks"],
        z_channels=m["z_channels"],
        embed_dim=m["embed_dim"],
        attn_resolutions=tuple(m["attn_resolutions"]),
        dropout=m["dropout"],
    )
    disc_lr = lo.pop("disc_lr")
    task = VAETask(cfg, lo, disc_lr=disc_lr, use_edges=lo.get("edge_weight", 0) > 0)
    stage = f"train_vae_{name}"
    summary = run_stage(stage, task, train_set, val_set, tr, {"params": section}, sources, out_dir, state_root)
    down = 2 ** (len(cfg.ch_mult) - 1)
    size = cfg.resolution
    metrics = {
        **{k: summary["val"][k] for k in ("rmse", "psnr", "ssim")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1",
        "latent_shape": [cfg.embed_dim, size // down, size // down],
        "parameters": count_parameters(task.model),
        **run_report(summary, section),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics
