"""The LDM's and RadioUNet's data, held in memory (the maps are small at model size).

- RadioMapSeer: ``condition`` 3×S×S ([buildings, Tx, third] in [−1, 1], third = buildings,
  cars or the fitted log-distance prior), ``target`` 1×S×S in [−1, 1], ``buildings`` 1×S×S
  (area fraction);
- ICASSP: the Tx-aware crops: ``condition`` = the 3 arranged channels, ``target`` the path
  loss, ``valid`` (False on padded pixels).
Both carry ``name``. Flip/rotation augmentation is deterministic: with ``variants=8`` the
dataset holds every sample under each of the 8 flips/rotations (item ``8·i + v``), so the
engine's data order alone fixes what a step sees (exact resume), and tensors that cannot be
transformed on the fly (latents of frozen VAEs) are precomputed per variant.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.data.icassp import ICASSPCropDataset
from radiodiff.data.radiomapseer import RadioMapSeerDataset
from radiodiff.evaluate.baselines import fit_log_distance_exponent

N_DIHEDRAL = 8


def dihedral(x: torch.Tensor, v: int) -> torch.Tensor:
    """Variant ``v`` (0–7) of the 8 flips/rotations of the last two dims; 0 is the identity."""
    if v >= 4:
        x = x.flip(-1)
    return torch.rot90(x, v % 4, dims=(-2, -1)) if v % 4 else x


class StackedItems(Dataset):
    """Items from stacked tensors (first dim = sample). With ``variants=8``, item ``8·i + v`` is
    sample ``i`` with the tensors named in ``spatial`` under :func:`dihedral` ``v``, and the
    tensors named in ``per_variant`` (first dim 8·N) indexed directly."""

    def __init__(self, tensors: dict[str, torch.Tensor], names: list[str], variants: int = 1, spatial=()):
        if variants not in (1, N_DIHEDRAL):
            raise ValueError(f"StackedItems: variants must be 1 or {N_DIHEDRAL}, got {variants}")
        self.tensors, self.names, self.variants, self.spatial = dict(tensors), list(names), variants, tuple(spatial)
        self.per_variant: dict[str, torch.Tensor] = {}
        for k, v in self.tensors.items():
            if len(v) != len(self.names):
                raise ValueError(f"StackedItems: {k!r} has {len(v)} rows for {len(self.names)} names")

    def add_per_variant(self, key: str, tensor: torch.Tensor) -> None:
        if len(tensor) != len(self):
            raise ValueError(f"StackedItems: {key!r} has {len(tensor)} rows for {len(self)} items")
        self.per_variant[key] = tensor

    def __len__(self) -> int:
        return len(self.names) * self.variants

    def variant_tensor(self, key: str) -> torch.Tensor:
        """``tensors[key]`` expanded to every item (all variants), e.g. to encode them once."""
        x = self.tensors[key]
        if self.variants == 1:
            return x
        return torch.stack([dihedral(x, v) for v in range(self.variants)], dim=1).flatten(0, 1)

    def __getitem__(self, j: int) -> dict:
        i, v = divmod(j, self.variants)
        item = {
            k: (dihedral(t[i], v).contiguous() if v and k in self.spatial else t[i]) for k, t in self.tensors.items()
        }
        item |= {k: t[j] for k, t in self.per_variant.items()}
        return {**item, "name": self.names[i]}


def radiomapseer_dataset(root, split: str, data: dict, condition: str, exponent: float, maps=None):
    return RadioMapSeerDataset(
        root,
        split,
        simulation=data["simulation"],
        condition=condition,
        image_size=data["image_size"],
        split_cfg=data.get("split"),
        gain_threshold=data["gain_threshold"],
        physics_exponent=exponent,
        maps=maps,
    )


def fit_radiomapseer_exponent(root, data: dict, max_items: int = 400) -> float:
    """The physics baseline's log-distance exponent, fitted on the training split."""
    base = radiomapseer_dataset(root, "train", data, "static", 2.0)
    idx = np.linspace(0, len(base) - 1, min(len(base), max_items)).astype(int)

    def samples():
        for i in idx:
            it = base[int(i)]
            yield ((it["target"][0].numpy() + 1) / 2, it["buildings"][0].numpy(), it["tx"])

    full = int(base.buildings(base.samples[0].map_id).shape[0])
    return fit_log_distance_exponent(samples(), full)


def physics_exponent(root, data: dict) -> float:
    """``data.radiomapseer.physics_exponent`` when set, else fitted on the training split."""
    value = data.get("physics_exponent")
    return float(value) if value is not None else fit_radiomapseer_exponent(root, data)


def radiomapseer_items(root, split: str, data: dict, condition: str, exponent: float, maps=None) -> StackedItems:
    """All items of a split (or of the maps ``maps``) stacked in memory."""
    base = radiomapseer_dataset(root, split, data, condition, exponent, maps=maps)
    items = [base[i] for i in range(len(base))]
    if not items:
        raise ValueError(f"{root}: no RadioMapSeer samples in the {split} split")
    return StackedItems(
        {
            "condition": torch.stack([it["condition"] for it in items]),
            "target": torch.stack([it["target"] for it in items]),
            "buildings": torch.stack([it["buildings"] for it in items]),
            "tx": torch.tensor([it["tx"] for it in items], dtype=torch.long),
        },
        [it["name"] for it in items],
    )


def icassp_items(crops_dir, split: str, augment: bool = False) -> StackedItems:
    """All Tx-aware crops of a split stacked in memory (×8 flips/rotations when ``augment``)."""
    base = ICASSPCropDataset(crops_dir, split)
    items = [base[i] for i in range(len(base))]
    if not items:
        raise ValueError(f"{crops_dir}: no crops in the {split} split")
    return StackedItems(
        {
            "condition": torch.stack([it["input"] for it in items]),
            "target": torch.stack([it["target"] for it in items]),
            "valid": torch.stack([it["valid"] for it in items]),
        },
        [it["name"] for it in items],
        variants=N_DIHEDRAL if augment else 1,
        spatial=("condition", "target", "valid"),
    )
