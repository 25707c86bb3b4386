"""Disjoint train/val/test splits of discovered ids (SPEC Contracts: Splits)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SPLITS = ("train", "val", "test")


def split_ids(ids: Iterable, train: float, val: float, test: float, seed: int = 42) -> dict[str, list]:
    """Sort ``ids``, shuffle them with numpy's legacy seed (as RadioUNet/RadioDiff do with
    ``np.random.seed(42)``), and cut by the ratios into disjoint train/val/test lists.

    With at least 3 ids every split with a positive ratio gets at least one id.
    """
    ids = sorted(ids)
    order = np.arange(len(ids))
    np.random.RandomState(seed).shuffle(order)
    n = len(ids)
    n_train = int(round(train * n))
    n_val = int(round(val * n))
    if n >= 3:
        n_val = max(n_val, 1 if val > 0 else 0)
        n_test = n - n_train - n_val
        if test > 0 and n_test < 1:
            n_train -= 1 - n_test
        n_train = max(n_train, 1 if train > 0 else 0)
    n_val = min(n_val, n - n_train)
    cut = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {k: [ids[i] for i in sorted(v)] for k, v in cut.items()}
