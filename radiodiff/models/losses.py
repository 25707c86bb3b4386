"""The first-stage VAE-GAN loss: L1 + L2 (+ LPIPS) reconstruction under a learned log-variance,
a KL term and an adaptively weighted PatchGAN term (LDM's contperceptual loss, Rombach et al.
2022, App. G; Esser et al. 2021, eq. 7 for the adaptive weight).

:class:`VAEGANLoss` owns its discriminator and its learnable scalar ``logvar``; the trainer puts
``loss.logvar`` into the autoencoder's optimizer (the original never optimised it) and
``loss.discriminator.parameters()`` into the discriminator's.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from radiodiff.core.errors import ParamsError

__all__ = [
    "BACKBONE_ENV",
    "LPIPSLoss",
    "NLayerDiscriminator",
    "VAEGANLoss",
    "adopt_weight",
    "hinge_d_loss",
    "vanilla_d_loss",
]

# Environment variable naming a torchvision ImageNet checkpoint for the LPIPS backbone.
BACKBONE_ENV = "RADIODIFF_LPIPS_BACKBONE"
# torchvision's own file names, as torch.hub caches them under <hub dir>/checkpoints/.
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


# --------------------------------------------------------------------------------------------
# Discriminator and its losses
# --------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, §3.2.2): one logit per overlapping patch."""

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        if n_layers < 1:
            raise ParamsError(f"disc_num_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False),  # BN supplies the bias
                nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


def _init_weights(m: nn.Module) -> None:
    # DCGAN initialisation (Radford et al. 2016, §4): convs N(0, 0.02), BN scale N(1, 0.02).
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """(mean relu(1 − D(x)) + mean relu(1 + D(x̂))) / 2 (Lim & Ye 2017)."""
    return 0.5 * (torch.mean(F.relu(1.0 - logits_real)) + torch.mean(F.relu(1.0 + logits_fake)))


def vanilla_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """(mean softplus(−D(x)) + mean softplus(D(x̂))) / 2: the original GAN's cross-entropy on logits."""
    return 0.5 * (torch.mean(F.softplus(-logits_real)) + torch.mean(F.softplus(logits_fake)))


def adopt_weight(weight: float, step: int, threshold: int, value: float = 0.0) -> float:
    """``value`` (0) before step ``threshold``, ``weight`` from it on: the two training phases."""
    return value if step < threshold else weight


# --------------------------------------------------------------------------------------------
# LPIPS on 1- and 2-channel maps, offline
# --------------------------------------------------------------------------------------------


def _resolve_backbone(net: str, backbone_path: str | os.PathLike | None) -> Path:
    """Find the ImageNet backbone checkpoint: explicit path, then $RADIODIFF_LPIPS_BACKBONE, then the hub cache."""
    fname = BACKBONE_FILES[net]
    if backbone_path is not None:
        p = Path(backbone_path).expanduser()
        if not p.is_file():
            raise ParamsError(f"LPIPS backbone: lpips_backbone_path={p} not found (expected torchvision's {fname})")
        return p
    env = os.environ.get(BACKBONE_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ParamsError(f"LPIPS backbone: ${BACKBONE_ENV}={p} not found (expected torchvision's {fname})")
        return p
    hub = Path(torch.hub.get_dir()) / "checkpoints" / fname
    if hub.is_file():
        return hub
    raise ParamsError(
        f"LPIPS ({net}) needs torchvision's ImageNet weights {fname}, which cannot be downloaded here: "
        f"put the file at {hub}, or set ${BACKBONE_ENV} (or lpips_backbone_path) to its path, "
        f"or set perceptual_weight: 0 to train without LPIPS"
    )


class LPIPSLoss(nn.Module):
    """Frozen LPIPS distance (Zhang et al. 2018) for 1-, 2- or 3-channel maps in [−1, 1].

    Channels are mapped to RGB explicitly: 1 -> (c, c, c); 2 -> (c0, c1, (c0 + c1) / 2).
    The backbone is built without weights (never downloaded) and loaded from a local torchvision
    checkpoint; the linear calibration layers ship inside the ``lpips`` package.
    Returns one distance per sample, shape (B, 1, 1, 1).
    """

    def __init__(self, net: str = "vgg", backbone_path: str | os.PathLike | None = None):
        super().__init__()
        if net not in BACKBONE_FILES:
            raise ParamsError(f"lpips_net must be one of {sorted(BACKBONE_FILES)}, got {net!r}")
        ckpt = _resolve_backbone(net, backbone_path)  # fail before building anything
        try:  # an extra (radiodiff[lpips], in radiodiff[pipeline]): the library runs without it
            import lpips
        except ImportError:
            raise ParamsError(
                "LPIPS (perceptual_weight > 0) needs the lpips package, which is not installed: "
                "pip install 'radiodiff[lpips]', or set perceptual_weight: 0"
            ) from None

        with warnings.catch_warnings():
            # pnet_rand=True makes lpips call torchvision with pretrained=False (= weights=None):
            # a randomly initialised trunk, no download. pretrained=False: we load the linear layers.
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, use_dropout=True, verbose=False)
        _load_backbone(model.net, ckpt, net)
        lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        try:
            lin_state = torch.load(lin_path, map_location="cpu", weights_only=True)
            # Loaded strictly, layer by layer: lpips itself uses strict=False, which would hide a mismatch.
            for i, lin in enumerate(model.lins):
                prefix = f"lin{i}."
                lin.load_state_dict({k[len(prefix) :]: v for k, v in lin_state.items() if k.startswith(prefix)})
        except (OSError, RuntimeError, pickle.UnpicklingError) as e:
            raise ParamsError(f"LPIPS: cannot load the linear layers from {lin_path} ({e})") from None
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.net_name = net
        self.backbone_path = str(ckpt)
        self.model = model

    def train(self, mode: bool = True) -> LPIPSLoss:
        # Always frozen: keep the lin layers' dropout off even when the parent loss trains.
        super().train(False)
        return self

    @staticmethod
    def to_rgb(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == 1:
            return x.repeat(1, 3, 1, 1)
        if c == 2:
            return torch.cat([x, x.mean(dim=1, keepdim=True)], dim=1)
        if c == 3:
            return x
        raise ValueError(f"LPIPSLoss: expected 1, 2 or 3 channels, got {c}")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.model(self.to_rgb(x), self.to_rgb(y))


def _load_backbone(trunk: nn.Module, ckpt: Path, net: str) -> None:
    """Copy torchvision's ``features.<i>.*`` tensors into lpips's ``slice<k>.<i>.*`` modules."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or non-checkpoint file
        raise ParamsError(f"LPIPS backbone {ckpt}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ParamsError(f"LPIPS backbone {ckpt}: expected a state dict, got {type(state).__name__}")
    wanted = {}
    for key in trunk.state_dict():
        _, idx, leaf = key.split(".", 2)  # slice<k>.<i>.<weight|bias>
        wanted[key] = f"features.{idx}.{leaf}"
    missing = sorted(src for src in wanted.values() if src not in state)
    if missing:
        raise ParamsError(
            f"LPIPS backbone {ckpt}: not a torchvision {net} checkpoint ({BACKBONE_FILES[net]}); missing {missing[:3]}"
        )
    try:
        trunk.load_state_dict({dst: state[src] for dst, src in wanted.items()}, strict=True)
    except RuntimeError as e:
        raise ParamsError(f"LPIPS backbone {ckpt}: shapes do not match torchvision {net} ({e})") from None


# --------------------------------------------------------------------------------------------
# The VAE-GAN loss
# --------------------------------------------------------------------------------------------


class VAEGANLoss(nn.Module):
    """LDM's ``LPIPSWithDiscriminator`` with a trainable ``logvar`` and an optional edge weighting.

    ``forward(..., optimizer_idx=0)`` gives the autoencoder loss, ``optimizer_idx=1`` the
    discriminator loss; both return ``(loss, log_dict)`` with keys prefixed ``f"{split}/"``.
    """

    def __init__(
        self,
        disc_start: int,
        kl_weight: float = 1e-6,
        pixel_weight: float = 1.0,
        perceptual_weight: float = 1.0,
        logvar_init: float = 0.0,
        disc_num_layers: int = 3,
        disc_in_channels: int = 1,
        disc_ndf: int = 64,
        disc_factor: float = 1.0,
        disc_weight: float = 0.5,
        disc_loss: str = "hinge",
        edge_weight: float = 0.0,
        lpips_net: str = "vgg",
        lpips_backbone_path: str | os.PathLike | None = None,
        learn_logvar: bool = True,
    ):
        super().__init__()
        if disc_loss not in ("hinge", "vanilla"):
            raise ParamsError(f"disc_loss must be 'hinge' or 'vanilla', got {disc_loss!r}")
        if perceptual_weight < 0 or kl_weight < 0 or pixel_weight < 0 or edge_weight < 0 or disc_weight < 0:
            raise ParamsError("VAEGANLoss: kl/pixel/perceptual/edge/disc weights must be >= 0")
        self.disc_start = int(disc_start)
        self.kl_weight = float(kl_weight)
        self.pixel_weight = float(pixel_weight)
        self.perceptual_weight = float(perceptual_weight)
        self.disc_factor = float(disc_factor)
        self.disc_weight = float(disc_weight)
        self.edge_weight = float(edge_weight)
        self.disc_loss_name = disc_loss
        self.disc_loss_fn = hinge_d_loss if disc_loss == "hinge" else vanilla_d_loss
        # Only built when used: it needs local ImageNet weights (see LPIPSLoss).
        self.perceptual_loss = LPIPSLoss(lpips_net, lpips_backbone_path) if self.perceptual_weight > 0 else None
        # Learned output log-variance: nll = rec / exp(logvar) + logvar (a Laplace/Gaussian scale).
        # ``learn_logvar`` False keeps it at ``logvar_init``, as the original (never optimized) did.
        self.logvar = nn.Parameter(torch.tensor(float(logvar_init)), requires_grad=bool(learn_logvar))
        self.discriminator = NLayerDiscriminator(disc_in_channels, disc_ndf, disc_num_layers)

    def adaptive_weight(self, nll_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
        """λ = w_d · clamp(‖∇nll‖ / (‖∇g‖ + 1e-4), 0, 1e4) at the decoder's last layer (Esser et al. 2021, eq. 7)."""
        nll_grads = torch.autograd.grad(nll_loss, last_layer, retain_graph=True)[0]
        g_grads = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        d_weight = torch.norm(nll_grads) / (torch.norm(g_grads) + 1e-4)
        return torch.clamp(d_weight, 0.0, 1e4).detach() * self.disc_weight

    def forward(
        self,
        inputs: torch.Tensor,
        reconstructions: torch.Tensor,
        posterior,
        optimizer_idx: int,
        global_step: int,
        last_layer: torch.Tensor | None = None,
        edges: torch.Tensor | None = None,
        split: str = "train",
    ) -> tuple[torch.Tensor, dict[str, float]]:
        f_disc = adopt_weight(self.disc_factor, global_step, threshold=self.disc_start)
        if optimizer_idx == 0:
            return self._autoencoder_loss(inputs, reconstructions, posterior, f_disc, last_layer, edges, split)
        if optimizer_idx == 1:
            return self._discriminator_loss(inputs, reconstructions, f_disc, split)
        raise ValueError(f"optimizer_idx must be 0 (autoencoder) or 1 (discriminator), got {optimizer_idx}")

    def _autoencoder_loss(self, x, x_hat, posterior, f_disc, last_layer, edges, split):
        diff = x.contiguous() - x_hat.contiguous()
        # rec = |x − x̂| + (x − x̂)² (+ w_p · LPIPS, one value per sample broadcast over pixels).
        rec = self.pixel_weight * (diff.abs() + diff.pow(2))
        if self.perceptual_loss is not None:
            rec = rec + self.perceptual_weight * self.perceptual_loss(x.contiguous(), x_hat.contiguous())
        if edges is not None and self.edge_weight > 0:
            # Edge-aware reconstruction (RadioDiff Enhanced): error on edge pixels counts (1 + w_e)×.
            rec = rec * (1.0 + self.edge_weight * edges.to(rec.dtype))
        # nll = rec / exp(logvar) + logvar, summed per sample and averaged over the batch.
        nll = rec / torch.exp(self.logvar) + self.logvar
        batch = nll.shape[0]
        nll_loss = torch.sum(nll) / batch
        kl_loss = torch.mean(posterior.kl())

        zero = torch.zeros((), device=x.device, dtype=nll_loss.dtype)
        if f_disc > 0:
            g_loss = -torch.mean(self.discriminator(x_hat.contiguous()))
            if torch.is_grad_enabled() and nll_loss.requires_grad and g_loss.requires_grad:
                if last_layer is None:
                    raise ValueError("VAEGANLoss: pass last_layer (the adaptive GAN weight needs it after disc_start)")
                d_weight = self.adaptive_weight(nll_loss, g_loss, last_layer)
            else:
                d_weight = zero  # evaluation: no graph to take gradients from
        else:
            # Phase 1 (VAE only): no discriminator pass and no gradient-norm computation.
            g_loss, d_weight = zero, zero

        loss = nll_loss + self.kl_weight * kl_loss + d_weight * f_disc * g_loss
        log = {
            "total_loss": loss,
            "logvar": self.logvar,
            "kl_loss": kl_loss,
            "nll_loss": nll_loss,
            "rec_loss": rec.mean(),
            "g_loss": g_loss,
            "d_weight": d_weight,
            "disc_factor": f_disc,
        }
        return loss, _prefixed(log, split)

    def _discriminator_loss(self, x, x_hat, f_disc, split):
        logits_real = self.discriminator(x.contiguous().detach())
        logits_fake = self.discriminator(x_hat.contiguous().detach())
        d_loss = f_disc * self.disc_loss_fn(logits_real, logits_fake)
        log = {"disc_loss": d_loss, "logits_real": logits_real.mean(), "logits_fake": logits_fake.mean()}
        return d_loss, _prefixed(log, split)


def _prefixed(log: dict, split: str) -> dict[str, float]:
    return {f"{split}/{k}": float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in log.items()}
