"""How well RadioDiff's spread over its K samples predicts its error (``sample.ensemble``).

The sample stage writes, per test item, the per-pixel standard deviation s (ddof 1) of the K
samples (``uncertainty/{name}.npy``, :mod:`radiodiff.evaluate.maps`); the prediction scored is
their mean x̄. If the truth y were one more draw from the distribution the samples come from,
(y − x̄) / (s·√(1 + 1/K)) would follow Student's t with K − 1 degrees of freedom: so the expected
squared error at a pixel is (1 + 1/K)·s², and x̄ ± t(0.975, K − 1)·s·√(1 + 1/K) is a 95 %
prediction interval. :class:`Calibration` pools, over the scored pixels of the test split:

- a reliability curve: pixels binned by s (in dB), each bin's RMS predicted s, the RMSE the t
  model expects (√(1 + 1/K) × that) and the observed RMSE of x̄;
- the share of truth pixels inside x̄ ± 2s and inside the t interval (nominal 0.95);
- Spearman's rank correlation, over the test images, of each image's RMS s and its RMSE.

RadioUNet and the physics formula give one map per input, so they have no such spread.
"""

from __future__ import annotations

import math

import numpy as np
import torch

STD_EDGES_DB = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)  # reliability bins of the predicted std
LEVEL = 0.95  # the t interval's nominal coverage
NO_SPREAD = {
    "radiounet": "none: a deterministic network, one map per input",
    "physics": "none: a formula, one map per input",
}


def t_quantile(k: int, level: float = LEVEL) -> float:
    """Two-sided ``level`` quantile of Student's t with K − 1 degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, k - 1))


def ensemble_std(sum_: np.ndarray, sum_sq: np.ndarray, k: int) -> np.ndarray:
    """Per-pixel standard deviation (ddof 1) of K draws from their sum and sum of squares."""
    mean = sum_ / k
    return np.sqrt(np.maximum(sum_sq - k * mean * mean, 0.0) / (k - 1))


class Calibration:
    """Pools the calibration of the K-sample spread over batches (:meth:`add`), then
    :meth:`result` (the ``uncertainty`` entry of ``summary.json``)."""

    def __init__(self, k: int, db_per_unit: float, scope: str, method: str):
        if k < 2:
            raise ValueError(f"Calibration: the spread of K = {k} sample needs K >= 2")
        self.k, self.db, self.scope, self.method = k, db_per_unit, scope, method
        self.t = t_quantile(k)
        self.inflate = math.sqrt(1 + 1 / k)  # the mean's own error beside the truth's spread
        n = len(STD_EDGES_DB) - 1
        self.pixels = torch.zeros(n, dtype=torch.float64)
        self.sum_var = torch.zeros(n, dtype=torch.float64)
        self.sse = torch.zeros(n, dtype=torch.float64)
        self.inside_2sigma = 0
        self.inside_t = 0
        self.image_std: list[float] = []
        self.image_rmse: list[float] = []

    def add(self, target: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, mask: torch.Tensor | None) -> None:
        """One batch on [0, 1] (B, 1, S, S): the truth, the scored mean of the K samples, their
        std; ``mask`` (bool) the scored pixels (None: all)."""
        err = (mean.double() - target.double()) * self.db
        s = std.double() * self.db
        m = torch.ones_like(err, dtype=torch.bool) if mask is None else mask.expand_as(err)
        edges = torch.tensor(STD_EDGES_DB[1:-1], dtype=torch.float64)
        e, sv = err[m], s[m]
        index = torch.bucketize(sv, edges, right=True)
        n = len(self.pixels)
        self.pixels += torch.bincount(index, minlength=n).double()
        self.sum_var += torch.bincount(index, weights=sv * sv, minlength=n)
        self.sse += torch.bincount(index, weights=e * e, minlength=n)
        self.inside_2sigma += int((e.abs() <= 2 * sv).sum())
        self.inside_t += int((e.abs() <= self.t * self.inflate * sv).sum())
        zero = torch.zeros((), dtype=torch.float64)
        count = m.sum(dim=(1, 2, 3)).double()
        for i in range(len(err)):
            if count[i] > 0:
                self.image_std.append(float((torch.where(m[i], s[i] ** 2, zero).sum() / count[i]).sqrt()))
                self.image_rmse.append(float((torch.where(m[i], err[i] ** 2, zero).sum() / count[i]).sqrt()))

    def rank_correlation(self) -> dict:
        from scipy.stats import spearmanr

        n = len(self.image_std)
        rho = p = None
        if n >= 3 and np.ptp(self.image_std) > 0 and np.ptp(self.image_rmse) > 0:
            res = spearmanr(self.image_std, self.image_rmse)
            rho, p = float(res.statistic), float(res.pvalue)
        return {
            "spearman": rho,
            "p_value": p,
            "n_images": n,
            "what": "each image's RMS predicted std against its RMSE (null for under 3 images or a constant column)",
        }

    def result(self) -> dict:
        total = float(self.pixels.sum())
        rms_std = (self.sum_var / self.pixels.clamp(min=1)).sqrt()
        observed = (self.sse / self.pixels.clamp(min=1)).sqrt()

        def per_bin(values):
            return [float(v) if c > 0 else None for v, c in zip(values, self.pixels, strict=True)]

        return {
            "method": self.method,
            "k": self.k,
            "scope": self.scope,
            "pixels": int(total),
            "what": (
                f"per-pixel std (ddof 1) of the {self.k} samples against the error of their mean, in dB; if the truth "
                f"were one more draw, (truth - mean) / (std sqrt(1 + 1/K)) would follow Student's t with K - 1 = "
                f"{self.k - 1} degrees of freedom"
            ),
            "reliability": {
                "edges_db": [e if math.isfinite(e) else None for e in STD_EDGES_DB],
                "pixels": [int(v) for v in self.pixels],
                "predicted_std_db": per_bin(rms_std),
                "expected_rmse_db": per_bin(rms_std * self.inflate),
                "observed_rmse_db": per_bin(observed),
            },
            "coverage": {
                "within_2sigma": self.inside_2sigma / total if total else None,
                "t_interval": {
                    "level": LEVEL,
                    "t": self.t,
                    "half_width": f"t(0.975, {self.k - 1}) x std x sqrt(1 + 1/{self.k})",
                    "share": self.inside_t / total if total else None,
                },
            },
            "rank_correlation": self.rank_correlation(),
            "none": dict(NO_SPREAD),
        }
