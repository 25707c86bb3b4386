"""Train one first-stage VAE (AutoencoderKL + two-phase VAE-GAN loss) on the shared engine.

Four stages use this: ``train_vae_radiomapseer`` (gain maps, edge-aware), ``train_vae_building``
(reflectance + transmittance), ``train_vae_antenna`` (FSPL with pattern) and ``train_vae_radio``
(path loss) on the Tx-aware ICASSP crops. Outputs: ``model/`` (EMA weights + config.json),
``metrics.json`` (validation split) and ``train_log.csv``.

The two path-loss VAEs (``radiomapseer``, ``radio``) also score their reconstruction of the test
split (the decode of the posterior mean) exactly as the evaluate stage scores the LDM they feed
(:class:`radiodiff.evaluate.score_test.Scorer`: same items, scope, buildings zeroed on RadioMapSeer):
``ceiling_nmse`` and ``ceiling_rmse_db`` in ``metrics.json``, the error no latent diffusion model
on these latents can go below (issue 17).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from radiodiff.core.errors import RadiodiffError
from radiodiff.core.io import write_json
from radiodiff.data.items import VAE_CHANNELS, dataset_source, icassp_images, item_batches, radiomapseer_images
from radiodiff.metrics import MetricAccumulator, RunningStd, reconstruction_metrics, scope_masks, zero_buildings
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.losses import VAEGANLoss
from radiodiff.train.runs import run_fields, run_training


class VAETask:
    """The VAE-GAN as the engine sees it: optimizer 0 = autoencoder (+ logvar when learned),
    optimizer 1 = discriminator, one step each per batch (as the original)."""

    def __init__(
        self,
        model_cfg: AutoencoderKLConfig,
        loss_kwargs: dict,
        disc_lr: float,
        use_edges: bool,
        decoder_noise: float = 0.0,
    ):
        self.model = AutoencoderKL(model_cfg)
        self.loss_fn = VAEGANLoss(disc_in_channels=model_cfg.in_channels, **loss_kwargs)
        self.disc_lr = disc_lr
        self.use_edges = use_edges
        # loss.decoder_noise: the decoder also learns from latents off the posterior (the LDM's error)
        self.decoder_noise = decoder_noise
        self._cache = None  # (batch id, reconstructions) shared by the two optimizer passes

    def param_groups(self):
        # loss.learn_logvar: radiodiff optimizes logvar (the Enhanced fix); the original never did
        ae = [*self.model.parameters(), *([self.loss_fn.logvar] if self.loss_fn.logvar.requires_grad else [])]
        return [("ae", ae, {}), ("disc", list(self.loss_fn.discriminator.parameters()), {"lr": self.disc_lr})]

    def modules(self):
        return {"vae": self.model, "loss": self.loss_fn}

    def loss(self, batch, step: int, opt_index: int):
        x = batch["image"]
        edges = batch["edges"] if self.use_edges else None
        if opt_index == 0:
            recon, posterior = self.model(x) if not self.decoder_noise else self._noisy_forward(x)
            self._cache = (id(batch), recon.detach(), posterior)
            return self.loss_fn(x, recon, posterior, 0, step, last_layer=self.model.last_layer, edges=edges)
        if self._cache is not None and self._cache[0] == id(batch):
            recon, posterior = self._cache[1], self._cache[2]
            self._cache = None  # release the AE graph held by the posterior
        else:
            with torch.no_grad():
                recon, posterior = self.model(x)
        return self.loss_fn(x, recon, posterior, 1, step, edges=edges)

    def _noisy_forward(self, x):
        """The autoencoder's forward with N(0, (decoder_noise · σ_c)²) added to the posterior
        sample, σ_c each latent channel's standard deviation over the batch (no gradient through σ)."""
        posterior = self.model.encode(x)
        z = posterior.sample()
        sigma = z.detach().float().std(dim=(0, 2, 3), keepdim=True).to(z.dtype)
        return self.model.decode(z + self.decoder_noise * sigma * torch.randn_like(z)), posterior

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

    def export(self, model, out_dir: Path, raw=None) -> None:
        model.save_pretrained(out_dir)  # the EMA weights: the frozen first stage of the LDM


CEILING_DATASETS = {"radiomapseer": "radiomapseer", "radio": "icassp"}  # VAE -> the LDM target it encodes
CEILING_BATCH = 64
CEILING_METRICS = ("nmse", "rmse", "rmse_db", "ssim", "psnr")


LATENT_NOISE = (0.1, 0.2)  # latent noise levels of the ceiling, in units of each channel's std
NOISE_SEED = 0


@torch.no_grad()
def reconstruction_ceiling(vae: AutoencoderKL, dataset: str, source, data: dict | None) -> dict:
    """The test split's reconstruction by ``vae`` (decode of the posterior mean, on [0, 1]),
    scored as the evaluate stage scores the LDM's samples (:func:`radiodiff.metrics.scope_masks`,
    RadioMapSeer's building pixels zeroed, per-image means): the headline scope's metrics keyed
    ``ceiling_*`` (RadioMapSeer ``all``, ICASSP ``valid``) and the second scope's under ``ceiling``.

    ``ceiling.latent_noise``: the same with Gaussian noise of 0.1 and 0.2 σ added to the posterior
    mean before decoding, σ each latent channel's standard deviation over the split (the same in
    the LDM's scaled space, whatever the scale): how much a latent error of that size costs, i.e.
    how fragile the decoder is to the error an LDM's samples carry."""
    vae.eval()
    data_source = dataset_source(dataset, source, data)
    items = data_source.items("test")
    channels = RunningStd(per_channel=True)
    for batch in item_batches(items, CEILING_BATCH):
        channels.add(vae.encode(batch["target"].float()).mode())
    sigma = torch.as_tensor(channels.std(), dtype=torch.float32)
    generator = torch.Generator().manual_seed(NOISE_SEED)
    levels = (0.0, *LATENT_NOISE)
    accs: dict = {}
    for batch in item_batches(items, CEILING_BATCH):
        target = ((batch["target"] + 1) / 2).clamp(0, 1).float()
        mean = vae.encode(batch["target"].float()).mode()
        masks = scope_masks(dataset, batch)
        first, second = masks  # the headline scope, then the other (the same names in every batch)
        for level in levels:
            z = mean + level * sigma.view(1, -1, 1, 1) * torch.randn(mean.shape, generator=generator) if level else mean
            pred = ((vae.decode(z) + 1) / 2).clamp(0, 1)
            if dataset == "radiomapseer":
                pred = zero_buildings(pred, batch["buildings"])
            for scope, mask in masks.items():
                acc = accs.setdefault((level, scope), MetricAccumulator(db_per_unit=data_source.db_per_unit))
                acc.add(pred, target, mask=mask)
    top, other = accs[0.0, first].summary(), accs[0.0, second].summary()
    noisy = {
        f"{level:g}": {k: _finite(accs[level, first].summary()[k]) for k in ("nmse", "rmse_db")}
        for level in LATENT_NOISE
    }
    return {
        **{f"ceiling_{k}": _finite(top[k]) for k in CEILING_METRICS},
        "ceiling": {
            "split": "test",
            "n_images": top["n_images"],
            "what": "decode of the posterior mean of each test target, scored as the evaluate stage scores "
            "the LDM (same scopes; RadioMapSeer buildings zeroed; no PNG rounding)",
            "scope": first,
            second: {k: _finite(other[k]) for k in ("nmse", "rmse", "rmse_db")},
            "latent_noise": {
                "what": "the same with N(0, (s * sigma_c)^2) added to the posterior mean, sigma_c each latent "
                f"channel's std over the split, s in {list(LATENT_NOISE)} (seed {NOISE_SEED}); scope {first}",
                "sigma": [float(v) for v in sigma],
                **noisy,
            },
        },
    }


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None  # JSON: an undefined metric is null


def run(params: dict, name: str, out, root=None, edges=None, crops=None) -> dict:
    """The ``train_vae_{name}`` stage: train VAE ``name`` from its params section ({model, loss,
    data, train}) on a RadioMapSeer ``root`` with its ``edges`` folder, or on the ICASSP ``crops``,
    and write ``model/``, ``metrics.json`` and ``train_log.csv`` into ``out``."""
    if name not in VAE_CHANNELS:
        raise RadiodiffError(f"train vae: no VAE {name!r} ({', '.join(VAE_CHANNELS)})")
    stage = f"train_vae_{name}"
    section = params[stage]
    out_dir = Path(out)
    m, lo = section["model"], dict(section["loss"])
    augment = section["data"]["augment"]
    if name == "radiomapseer":
        if not (root and edges):
            raise RadiodiffError("train vae radiomapseer: give --root and --edges")
        data = params["data"]["radiomapseer"]
        train_set = radiomapseer_images(root, edges, "train", data, augment=augment)  # edges flip with the map
        val_set = radiomapseer_images(root, edges, "val", data)
        sources = [Path(root), Path(edges)]
        ceiling_source, ceiling_data = root, data
    else:
        if not crops:
            raise RadiodiffError(f"train vae {name}: give --crops")
        train_set = icassp_images(crops, "train", name, augment=augment)
        val_set = icassp_images(crops, "val", name)
        sources = [Path(crops)]
        ceiling_source, ceiling_data = crops, None
    channels = VAE_CHANNELS[name]
    cfg = AutoencoderKLConfig.from_params(
        m, in_channels=channels, out_channels=channels, resolution=int(train_set.first()["image"].shape[-1])
    )
    disc_lr, decoder_noise = lo.pop("disc_lr"), float(lo.pop("decoder_noise"))
    # The initial weights of the autoencoder and the discriminator: seeded, as every model's
    # (torch's default generator starts from a random seed in each process).
    torch.manual_seed(int(section["train"]["seed"]))
    task = VAETask(cfg, lo, disc_lr=disc_lr, use_edges=lo.get("edge_weight", 0) > 0, decoder_noise=decoder_noise)
    summary = run_training(stage, __name__, task, train_set, val_set, params, sources, out_dir)
    down = cfg.downsample_factor
    metrics = {
        **{k: summary["val"][k] for k in ("rmse", "psnr", "ssim")},
        "split": "val",
        "scale": "[0, 1] maps, data range 1",
        "latent_shape": [cfg.embed_dim, cfg.resolution // down, cfg.resolution // down],
        "parameters": task.model.num_parameters(),
        **run_fields(summary, section),
    }
    if name in CEILING_DATASETS:
        vae = AutoencoderKL.from_pretrained(out_dir / "model")  # the exported EMA weights the LDM freezes
        metrics.update(reconstruction_ceiling(vae, CEILING_DATASETS[name], ceiling_source, ceiling_data))
    write_json(out_dir / "metrics.json", metrics)
    return {"stage": stage, **{k: metrics[k] for k in ("rmse", "psnr", "ssim", "steps", "steps_per_s")}}
