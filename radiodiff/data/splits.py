"""Splits of discovered ids (SPEC Contracts: Splits): radiodiff's disjoint ratio split of any
folder, and RadioMapSeer's published splits by name (REFERENCE §1).

The published splits follow the papers' loaders: the positions ``arange(700)`` are shuffled in
place with numpy's legacy RNG after ``np.random.seed(42)``; the map id at a position is the value
there + 1 (map 0 is never used); each split is a range of positions (inclusive). The Dec-2024
RadioDiff code validates on part of its test maps; the Jul-2025 code's training range shares
position 600 with its test range.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SPLITS = ("train", "val", "test")

PUBLISHED_MAPS = 700  # positions shuffled by the papers' loaders (map ids 1..700)
PUBLISHED_SEED = 42
PUBLISHED_SPLITS: dict[str, dict[str, tuple[int, int]]] = {
    "radiounet": {"train": (0, 500), "val": (501, 600), "test": (601, 699)},
    "radiodiff_dec2024": {"train": (0, 500), "val": (600, 650), "test": (600, 699)},
    "radiodiff_jul2025": {"train": (0, 600), "val": (600, 650), "test": (600, 699)},
}


def published_split(name: str) -> dict[str, list[int]]:
    """The map ids of a published RadioMapSeer split (sorted per split), by the papers' rule."""
    if name not in PUBLISHED_SPLITS:
        raise ValueError(f"unknown published split {name!r}; one of {sorted(PUBLISHED_SPLITS)}")
    positions = np.arange(PUBLISHED_MAPS)
    np.random.RandomState(PUBLISHED_SEED).shuffle(positions)  # = np.random.seed(42); np.random.shuffle
    return {k: sorted(int(v) + 1 for v in positions[a : b + 1]) for k, (a, b) in PUBLISHED_SPLITS[name].items()}


def describe_split(split_cfg) -> str:
    """One line naming a split setting (for summaries and the report)."""
    if isinstance(split_cfg, str):
        ranges = ", ".join(f"{k} positions {a}-{b}" for k, (a, b) in PUBLISHED_SPLITS[split_cfg].items())
        return f"{split_cfg} (published map lists: {ranges} of arange(700) shuffled with numpy seed 42, id = value + 1)"
    c = split_cfg
    ratios = f"train {c['train']:g} / val {c['val']:g} / test {c['test']:g}"
    return f"ratios {ratios} of the discovered ids, numpy seed {c['seed']}"


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
