"""What each first-stage VAE reconstructs, held in memory (the maps are small at training size).

- ``radiomapseer``: the gain map (1 channel), with its edge map from the ``edges`` stage
  area-averaged to the same size as the weight of the edge-aware loss;
- ``building``: reflectance + transmittance of the Tx-aware ICASSP crops (2 channels);
- ``antenna``: FSPL with the radiation pattern (1 channel);
- ``radio``: path loss (1 channel).
Items: ``image`` C×S×S in [−1, 1], optional ``edges`` 1×S×S in [0, 1], ``name``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.io import read_png
from radiodiff.data.icassp import ICASSPCropDataset, random_dihedral
from radiodiff.data.radiomapseer import RadioMapSeerDataset, area_resize

VAE_NAMES = ("radiomapseer", "building", "antenna", "radio")
VAE_CHANNELS = {"radiomapseer": 1, "building": 2, "antenna": 1, "radio": 1}


class InMemoryImages(Dataset):
    """Stacked images (+ optional edge weights); ``augment`` draws one of the 8 flips/rotations."""

    def __init__(self, images: torch.Tensor, names: list[str], edges: torch.Tensor | None = None, augment=False):
        self.images, self.names, self.edges, self.augment = images, names, edges, augment

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        x = self.images[i]
        e = self.edges[i] if self.edges is not None else torch.zeros_like(x[:1])
        if self.augment:
            x, e, _, _ = random_dihedral(x, e, e, (0, 0))
        return {"image": x, "edges": e, "name": self.names[i]}


def radiomapseer_images(root, edges_dir, split: str, data: dict) -> InMemoryImages:
    """Gain maps of a split at ``data['image_size']`` plus their edge weights."""
    base = RadioMapSeerDataset(
        root,
        split,
        simulation=data["simulation"],
        image_size=data["image_size"],
        split_cfg=data["split"],
        gain_threshold=data["gain_threshold"],
    )
    images, edges, names = [], [], []
    for s in base.samples:
        g = base.gain(s)
        images.append(area_resize(g, base.size)[None] * 2.0 - 1.0)
        e = read_png(Path(edges_dir) / f"{s.name}.png", "L").astype(np.float32) / 255.0
        edges.append(area_resize(e, base.size)[None])
        names.append(s.name)
    return InMemoryImages(torch.from_numpy(np.stack(images)), names, torch.from_numpy(np.stack(edges)))


def icassp_images(crops_dir, split: str, kind: str, augment: bool = False) -> InMemoryImages:
    """Building (R, G), antenna (B) or radio (target) channels of the Tx-aware crops of a split."""
    base = ICASSPCropDataset(crops_dir, split)
    pick = {
        "building": lambda it: it["input"][:2],
        "antenna": lambda it: it["input"][2:3],
        "radio": lambda it: it["target"],
    }
    items = [base[i] for i in range(len(base))]
    images = torch.stack([pick[kind](it) for it in items])
    return InMemoryImages(images, [it["name"] for it in items], augment=augment)
