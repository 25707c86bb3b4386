"""Exponential moving average of a model's weights: the copy that is evaluated and exported."""

from __future__ import annotations

import copy

import torch

from radiodiff.train.config import TrainConfig


class EMA:
    """A separate copy of ``model``, never trained, averaged after the global steps."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.cfg = cfg

    def decay(self, step: int) -> float:
        if not self.cfg.ema_warmup:
            return self.cfg.ema_decay
        k = max(step - self.cfg.ema_start - 1, 0)
        return min(self.cfg.ema_decay, 1.0 - (1.0 + k) ** (-2.0 / 3.0))

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Called after global step ``step``: copy before ema_start, average every ema_every steps after."""
        if step <= self.cfg.ema_start:
            decay = 0.0
        elif step % self.cfg.ema_every == 0:
            decay = self.decay(step)
        else:
            return
        for ema_t, t in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_t.dtype.is_floating_point and decay > 0.0:
                ema_t.lerp_(t.detach().to(ema_t.dtype), 1.0 - decay)
            else:
                ema_t.copy_(t.detach())
