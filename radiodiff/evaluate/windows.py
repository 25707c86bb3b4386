"""Sliding windows: a map model's prediction for a map larger than its window.

A condition image at the model's metres per pixel, (3, H, W) of any size, is padded (with −1,
the encoding of an empty pixel, as the Tx-aware crops pad) up to at least one window and to a
multiple of the latent grid, covered by ``size``×``size`` windows that overlap by a share of the
window (the last window of each axis ends flush with the map), and the windows' maps are
stitched with a smooth blending weight: a separable sine bump that is largest at a window's
centre and small (never 0) at its border, so each pixel leans on the windows that see it
best and a pixel seen by one window takes that window's value.

RadioUNet and RadioDiff's ``independent`` mode predict each window on its own and blend the
maps. RadioDiff's ``joint`` mode is MultiDiffusion (Bar-Tal et al., 2023): one latent canvas
for the whole map; at every sampler step each window's denoiser outputs (C, ε̂) are averaged
into the canvas with the same weights, and the sampler steps the canvas, so overlapping windows
agree at every step and the stitched map has no seams. The sampler update is linear in (C, ε̂),
so this equals averaging the windows' next states with shared noise. The canvas is decoded
window by window (blended in pixel space), so the network's memory is bounded by ``batch_size``
windows whatever the map's size; the canvas itself holds the map's latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from radiodiff.core.errors import ParamsError
from radiodiff.core.params import schema_defaults

MODES = ("joint", "independent")
PAD_VALUE = -1.0  # the model encoding of 0: an empty pixel, as the crops pad


def window_origins(length: int, size: int, overlap: float, step: int = 1) -> list[int]:
    """Origins of windows of ``size`` covering ``length`` (≥ size) with at least ``overlap`` ×
    size shared by neighbours; multiples of ``step``, the last one flush with the end."""
    if not 0.0 <= overlap < 1.0:
        raise ParamsError(f"sample.window.overlap: expected a share in [0, 1), got {overlap!r}")
    if length <= size:
        return [0]
    stride = max(step, int(size * (1.0 - overlap)) // step * step)
    count = math.ceil((length - size) / stride) + 1
    last = length - size
    # spread the windows evenly between 0 and the last origin, on the step grid
    return sorted({int(round(i * last / (count - 1) / step)) * step for i in range(count)})


def model_shape(shape: tuple[int, int], pixel_size_m: float, model_m: float) -> tuple[int, int]:
    """(rows, cols) of a map of ``shape`` at ``pixel_size_m`` resampled to ``model_m`` metres per pixel."""
    return tuple(max(1, round(n * pixel_size_m / model_m)) for n in shape)


def blend_weight(size: int) -> torch.Tensor:
    """(size, size) separable sine bump: 1 at the centre, sin(π/(2·size)) > 0 at the border."""
    w = torch.sin(math.pi * (torch.arange(size, dtype=torch.float64) + 0.5) / size)
    return (w[:, None] * w[None, :]).float()


@dataclass(frozen=True)
class Tiling:
    """Windows over a map of ``shape`` (H, W), padded to ``padded``; origins in pixels."""

    shape: tuple[int, int]
    padded: tuple[int, int]
    size: int
    origins: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, shape: tuple[int, int], size: int, overlap: float, step: int = 1) -> Tiling:
        """The tiling of a (H, W) map by ``size`` windows whose origins are multiples of ``step``
        (the latent grid of a latent model)."""
        padded = tuple(max(size, math.ceil(n / step) * step) for n in shape)
        rows = window_origins(padded[0], size, overlap, step)
        cols = window_origins(padded[1], size, overlap, step)
        return cls(tuple(shape), padded, size, tuple((r, c) for r in rows for c in cols))

    def pad(self, image: torch.Tensor, value: float = PAD_VALUE) -> torch.Tensor:
        """(C, H, W) → (C, *padded), filled with ``value`` beyond the map."""
        out = torch.full((image.shape[0], *self.padded), value, dtype=image.dtype)
        out[:, : self.shape[0], : self.shape[1]] = image
        return out

    def cut(self, image: torch.Tensor, origins, scale: int = 1) -> torch.Tensor:
        """The windows at ``origins`` of a padded (C, H', W') image (``scale``: pixels per unit of
        ``image``, e.g. the latent's downsampling), stacked (N, C, s, s)."""
        s = self.size // scale
        return torch.stack([image[:, r // scale : r // scale + s, c // scale : c // scale + s] for r, c in origins])

    def border_mask(self, band: int) -> np.ndarray:
        """(H, W) bool: pixels within ``band`` of an edge of some window that lies inside the map
        (where windows meet); the evaluation's seam error compares them with the rest."""
        mask = np.zeros(self.padded, dtype=bool)
        for r, c in self.origins:
            for edge in (r, r + self.size):
                if 0 < edge < self.padded[0]:
                    mask[max(edge - band, 0) : edge + band, c : c + self.size] = True
            for edge in (c, c + self.size):
                if 0 < edge < self.padded[1]:
                    mask[r : r + self.size, max(edge - band, 0) : edge + band] = True
        return mask[: self.shape[0], : self.shape[1]]


class Canvas:
    """Weighted sums of window values over a padded map, and their average."""

    def __init__(self, channels: int, padded: tuple[int, int], size: int, scale: int = 1):
        self.scale, self.s = scale, size // scale
        self.sum = torch.zeros(channels, padded[0] // scale, padded[1] // scale)
        self.weight = torch.zeros(1, padded[0] // scale, padded[1] // scale)
        self.w = blend_weight(self.s)

    def add(self, values: torch.Tensor, origins) -> None:
        for v, (r, c) in zip(values.float().cpu(), origins, strict=True):
            r, c = r // self.scale, c // self.scale
            self.sum[:, r : r + self.s, c : c + self.s] += v * self.w
            self.weight[:, r : r + self.s, c : c + self.s] += self.w

    def mean(self) -> torch.Tensor:
        return self.sum / self.weight


def _batches(origins, batch_size: int):
    for i in range(0, len(origins), batch_size):
        yield origins[i : i + batch_size]


def window_settings(window: dict | None = None) -> dict:
    """``sample.window``'s overlap, batch_size and mode: those of ``window`` (any of its keys),
    the rest the schema's defaults (the one place they live)."""
    defaults = schema_defaults("properties/sample/properties/window")
    return {k: (window or {}).get(k, defaults[k]) for k in ("overlap", "batch_size", "mode")}


@torch.no_grad()
def predict_windows(
    pipe,
    condition: torch.Tensor,
    *,
    overlap: float | None = None,
    batch_size: int | None = None,
    mode: str | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, Tiling]:
    """The map (1, H, W) on [0, 1] of a model (RadioDiff or RadioUNet pipeline) for a condition
    (3, H, W) in [−1, 1] at its resolution, by sliding windows; and the tiling used.

    ``mode``: RadioDiff's ``joint`` (MultiDiffusion) or ``independent`` windows; RadioUNet always
    predicts windows independently. ``steps``: RadioDiff's sampler steps (None = its own).
    ``overlap``, ``batch_size`` and ``mode`` left None take ``sample.window``'s schema defaults."""
    given = {"overlap": overlap, "batch_size": batch_size, "mode": mode}
    overlap, batch_size, mode = window_settings({k: v for k, v in given.items() if v is not None}).values()
    if mode not in MODES:
        raise ParamsError(f"sample.window.mode: expected one of {MODES}, got {mode!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParamsError(f"sample.window.batch_size: expected an integer >= 1, got {batch_size!r}")
    size = pipe.grid_px
    device = next(pipe.parameters()).device
    step = pipe.latent_step
    tiling = Tiling.of(tuple(condition.shape[-2:]), size, overlap, step)
    padded = tiling.pad(condition.float().cpu())
    out = Canvas(1, tiling.padded, size)
    if pipe.is_latent and mode == "joint":
        z0 = _joint_latent(pipe, padded, tiling, batch_size, steps, generator, device)
        for group in _batches(tiling.origins, batch_size):
            out.add(pipe.decode(tiling.cut(z0, group, step).to(device)), group)
    else:
        for group in _batches(tiling.origins, batch_size):
            out.add(pipe(tiling.cut(padded, group).to(device), steps=steps, generator=generator), group)
    return out.mean()[:, : tiling.shape[0], : tiling.shape[1]].clamp(0.0, 1.0), tiling


def _joint_latent(pipe, padded, tiling: Tiling, batch_size, steps, generator, device) -> torch.Tensor:
    """MultiDiffusion: the whole map's latent z0 (C, h, w), the windows reconciled at every step."""
    f = pipe.latent_step
    groups = list(_batches(tiling.origins, batch_size))
    conditions = [tiling.cut(padded, g) for g in groups]
    extras = [pipe.extra_latents(c.to(device)) for c in conditions]  # ICASSP condition latents, once
    denoisers = [pipe.denoiser(c.to(device), e) for c, e in zip(conditions, extras, strict=True)]
    channels = pipe.latent_channels

    def denoise(z, t):  # z: (1, C, h, w) canvas
        acc_c, acc_e = Canvas(channels, tiling.padded, tiling.size, f), Canvas(channels, tiling.padded, tiling.size, f)
        for group, window_denoiser in zip(groups, denoisers, strict=True):
            c, e = window_denoiser(tiling.cut(z[0].cpu(), group, f).to(device), t[:1].expand(len(group)))
            acc_c.add(c, group)
            acc_e.add(e, group)
        return acc_c.mean()[None].to(z), acc_e.mean()[None].to(z)

    shape = (1, channels, tiling.padded[0] // f, tiling.padded[1] // f)
    return pipe.sample_latent(denoise, shape, steps, generator, device)[0].cpu()
