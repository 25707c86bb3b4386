"""RadioDiff's "constant SDE" decoupled diffusion in latent space (REFERENCE.md §3.2).

The data term decays linearly to zero while the noise grows as √t:

    z_t = z0 + C·t + √t·ε = (1 − t)·z0 + √t·ε,   C = −z0,   ε ~ N(0, I),   t ∈ [ε_t, 1]

so z_1 is pure noise. The network predicts the drift C and the noise ε from two decoders
("pred_KC"); :func:`skip_parameterization` mixes its raw outputs (F_C, F_ε) with z_t as the
original does. :func:`sample` is RadioDiff's N-step sampler (N + 1 network calls, the last one
noise-free). Everything here is a pure function of tensors; the network is passed in as a
callable ``denoise(z_t, t) -> (C, ε)``, in the shape of k-diffusion's samplers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from radiodiff.core.errors import ParamsError

T_EPS = 1e-4  # smallest diffusion time (ε in the paper's notation for t ~ U(ε, 1))
WEIGHTINGS = ("dec2024", "jul2025", "none")


def _bcast(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t of shape (B,) viewed as (B, 1, 1, ...) to broadcast over ``like``."""
    return t.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def sample_time(batch: int, eps: float = T_EPS, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """One t per sample, uniform on [eps, 1)."""
    u = torch.rand(batch, generator=generator, device=device)
    return eps + (1.0 - eps) * u


def forward_process(z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z_t = (1 − t)·z0 + √t·ε."""
    tb = _bcast(t, z0)
    return (1.0 - tb) * z0 + tb.sqrt() * noise


def skip_parameterization(
    z_t: torch.Tensor, t: torch.Tensor, f_c: torch.Tensor, f_eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """RadioDiff's skip connection around the two decoders' raw outputs:

    C = (1 − t)·z_t + t/√(t² + 1)·F_C,   ε = √t·z_t + √(1 − t)/√(t² + 1)·F_ε

    At t = 1 the noise estimate is exactly z_1 (pure noise), so the first sampling step only has
    to predict C. (At small t the C skip term tends to +z_t ≈ z0 while the target is −z0; the
    error is multiplied by t wherever C is used, so it barely matters to sampling.)
    """
    tb = _bcast(t, z_t)
    norm = (tb * tb + 1.0).sqrt()
    c = (1.0 - tb) * z_t + tb / norm * f_c
    e = tb.sqrt() * z_t + (1.0 - tb).clamp_min(0.0).sqrt() / norm * f_eps
    return c, e


def predict_z0(z_t: torch.Tensor, t: torch.Tensor | float, c: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """ẑ0 = z_t − C·t − √t·ε (inverts the forward process given the two estimates); ``t`` is one
    time per sample (B,) or, as in :func:`sample`, one float for the whole batch."""
    if isinstance(t, float):
        return z_t - c * t - math.sqrt(t) * eps
    tb = _bcast(t, z_t)
    return z_t - c * tb - tb.sqrt() * eps


def loss_weights(t: torch.Tensor, weighting: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_C, w_ε) per sample for the three published choices (REFERENCE.md §3.2):

    - ``dec2024`` (Dec-2024 code): w_C = (t + 1)/√t, w_ε = √(2 − t)/√(1 − t + 1e-4)
    - ``jul2025`` (Jul-2025 code): w_C = 2·e^(1 − t), w_ε = e^(√t)
    - ``none`` (the paper): w_C = w_ε = 1
    """
    if weighting == "dec2024":
        return (t + 1.0) / t.sqrt(), (2.0 - t).sqrt() / (1.0 - t + 1e-4).sqrt()
    if weighting == "jul2025":
        return 2.0 * torch.exp(1.0 - t), torch.exp(t.sqrt())
    if weighting == "none":
        return torch.ones_like(t), torch.ones_like(t)
    raise ParamsError(f"diffusion.weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def diffusion_loss(
    c_pred: torch.Tensor,
    eps_pred: torch.Tensor,
    z0: torch.Tensor,
    noise: torch.Tensor,
    t: torch.Tensor,
    weighting: str = "jul2025",
    l1: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per sample [w_C·(MSE_C + L1_C) + w_ε·(MSE_ε + L1_ε)] / 2, averaged over the batch.

    Targets: C = −z0 and the noise ε. Returns the loss and its unweighted terms (batch means).
    """
    dims = tuple(range(1, z0.ndim))
    c_target = -z0
    mse_c = ((c_pred - c_target) ** 2).mean(dim=dims)
    mse_e = ((eps_pred - noise) ** 2).mean(dim=dims)
    per_c, per_e = mse_c, mse_e
    terms = {"mse_c": mse_c.mean().detach(), "mse_eps": mse_e.mean().detach()}
    if l1:
        l1_c = (c_pred - c_target).abs().mean(dim=dims)
        l1_e = (eps_pred - noise).abs().mean(dim=dims)
        per_c, per_e = per_c + l1_c, per_e + l1_e
        terms |= {"l1_c": l1_c.mean().detach(), "l1_eps": l1_e.mean().detach()}
    w_c, w_e = loss_weights(t.float(), weighting)
    loss = ((w_c * per_c.float() + w_e * per_e.float()) / 2.0).mean()
    return loss, terms


def step_sizes(n_steps: int, eps: float = T_EPS) -> list[float]:
    """RadioDiff's N-step schedule: [1/N]×(N−1), then 1/N − ε, then ε: N + 1 steps summing to 1."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ParamsError(f"sampling steps must be an integer >= 1, got {n_steps!r}")
    h = 1.0 / n_steps
    if h <= eps:
        raise ParamsError(f"sampling steps: 1/{n_steps} must exceed the smallest time {eps}")
    return [h] * (n_steps - 1) + [h - eps, eps]


Denoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def sample(
    denoise: Denoiser,
    shape: tuple[int, ...],
    n_steps: int = 5,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    eps: float = T_EPS,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """RadioDiff's sampler: from z ~ N(0, I) at t = 1, N + 1 steps of sizes :func:`step_sizes`.

    Each step of size s at time t: ẑ0 = z − C·t − √t·ε̂, then C ← −ẑ0 and
    z ← z − C·s − (s/√t)·ε̂ + √(s(t − s)/t)·n with fresh n ~ N(0, I); t ← t − s.
    The last step (size ε, ending at t = 0) adds no noise and returns ẑ0. ``denoise(z, t)``
    returns (C, ε̂) for a batch with t of shape (B,). Deterministic for a given ``generator``.
    """
    steps = step_sizes(n_steps, eps)
    z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    batch = shape[0]
    t = 1.0
    for i, s in enumerate(steps):
        tt = torch.full((batch,), t, device=z.device, dtype=z.dtype)
        c, e = denoise(z, tt)
        z0 = predict_z0(z, t, c, e)
        if i == len(steps) - 1:
            return z0
        c = -z0
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        z = z - c * s - (s / math.sqrt(t)) * e + math.sqrt(max(s * (t - s) / t, 0.0)) * noise
        t = t - s
    raise AssertionError("unreachable")
