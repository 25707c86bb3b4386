"""What the models see: the splits of both datasets as items held in memory (maps are small at
model size), for the first-stage VAEs, the RadioDiff LDM and the RadioUNet baseline alike.

Map models (LDM, RadioUNet), :class:`StackedItems`:

- RadioMapSeer: ``condition`` 3×S×S ([buildings, Tx, third] in [−1, 1], third = buildings,
  cars or the fitted log-distance prior), ``target`` 1×S×S in [−1, 1], ``buildings`` 1×S×S
  (area fraction), ``tx`` (row, col) at S;
- ICASSP: the Tx-aware crops: ``condition`` = the 3 arranged channels, ``target`` the path
  loss, ``valid`` (False on padded pixels).

First-stage VAEs, :class:`ImageItems`: ``image`` C×S×S in [−1, 1] and ``edges`` 1×S×S in
[0, 1] (the RadioMapSeer gain map and its edge map; ICASSP building [R, G], antenna [B] or radio
channels of the crops).

Flip/rotation augmentation of the map models is deterministic: with ``variants=8`` a
:class:`StackedItems` holds every sample under each of the 8 flips/rotations (item ``8·i + v``),
so the engine's data order alone fixes what a step sees (exact resume), and tensors that cannot
be transformed on the fly (latents of frozen VAEs) are precomputed per variant. The VAEs draw
one flip/rotation per item instead (torch's global RNG, seeded per DataLoader worker).

:class:`RadioMapSeerSplits` and :class:`ICASSPSplits` are the per-dataset adapters the training,
sampling and scoring stages share: the training and validation sets of a map model, the items a
trained model expects, the physics baseline's predictions and the dB scale of the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from radiodiff.core.encodings import ICASSP_DB_PER_UNIT, gain_db_per_unit, gray_to_unit
from radiodiff.core.errors import DataError, ParamsError
from radiodiff.core.io import read_png
from radiodiff.data.icassp import ICASSPCropDataset, read_metadata
from radiodiff.data.radiomapseer import RadioMapSeerDataset, area_resize, discover_maps
from radiodiff.physics.baselines import fit_log_distance_exponent, icassp_physics_unit, radiomapseer_physics

N_DIHEDRAL = 8
VAE_CHANNELS = {"radiomapseer": 1, "building": 2, "antenna": 1, "radio": 1}


def dihedral(x: torch.Tensor, v: int) -> torch.Tensor:
    """Variant ``v`` (0–7) of the 8 flips/rotations of the last two dims; 0 is the identity."""
    if v >= 4:
        x = x.flip(-1)
    return torch.rot90(x, v % 4, dims=(-2, -1)) if v % 4 else x


def random_variant() -> int:
    """One of the 8 flips/rotations, drawn from torch's global RNG (rotation, then flip)."""
    k = int(torch.randint(4, (1,)))
    flip = bool(torch.randint(2, (1,)))
    return 4 * flip + k


# --------------------------------------------------------------------------------- containers


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


def concat_items(parts: list[StackedItems]) -> StackedItems:
    """Several splits' items as one (the same tensor keys, no variants)."""
    if not parts:
        raise DataError("no items to concatenate")
    keys = parts[0].tensors.keys()
    return StackedItems(
        {k: torch.cat([p.tensors[k] for p in parts]) for k in keys}, [n for p in parts for n in p.names]
    )


class ImageItems(Dataset):
    """Stacked images (+ optional edge weights) of a VAE; ``augment`` draws one of the 8
    flips/rotations per item (:func:`random_variant`)."""

    def __init__(self, images: torch.Tensor, names: list[str], edges: torch.Tensor | None = None, augment=False):
        self.images, self.names, self.edges, self.augment = images, names, edges, augment

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        x = self.images[i]
        e = self.edges[i] if self.edges is not None else torch.zeros_like(x[:1])
        if self.augment:
            v = random_variant()
            x, e = dihedral(x, v).contiguous(), dihedral(e, v).contiguous()
        return {"image": x, "edges": e, "name": self.names[i]}


# --------------------------------------------------------------------------------- RadioMapSeer


def radiomapseer_dataset(root, split: str, data: dict, condition: str = "static", exponent: float = 2.0, maps=None):
    """The reader of a split (or of the maps ``maps``) with the ``data.radiomapseer`` settings."""
    return RadioMapSeerDataset(
        root,
        split,
        simulation=data["simulation"],
        condition=condition,
        image_size=data["image_size"],
        split_cfg=data.get("split"),
        allow_missing=data.get("allow_missing_maps", False),
        gain_threshold=data["gain_threshold"],
        physics_exponent=exponent,
        maps=maps,
    )


def radiomapseer_items(root, split: str, data: dict, condition: str, exponent: float, maps=None) -> StackedItems:
    """All items of a split (or of the maps ``maps``) stacked in memory."""
    base = radiomapseer_dataset(root, split, data, condition, exponent, maps=maps)
    items = [base[i] for i in range(len(base))]
    if not items:
        raise DataError(f"{root}: no RadioMapSeer samples in the {split} split")
    return StackedItems(
        {
            "condition": torch.stack([it["condition"] for it in items]),
            "target": torch.stack([it["target"] for it in items]),
            "buildings": torch.stack([it["buildings"] for it in items]),
            "tx": torch.tensor([it["tx"] for it in items], dtype=torch.long),
        },
        [it["name"] for it in items],
    )


def radiomapseer_images(root, edges_dir, split: str, data: dict) -> ImageItems:
    """The VAE's gain maps of a split at ``data['image_size']``, with their edge weights."""
    base = radiomapseer_dataset(root, split, data)
    images, edges, names = [], [], []
    for s in base.samples:
        images.append(area_resize(base.gain(s), base.size)[None] * 2.0 - 1.0)
        edges.append(area_resize(gray_to_unit(read_png(Path(edges_dir) / f"{s.name}.png", "L")), base.size)[None])
        names.append(s.name)
    return ImageItems(torch.from_numpy(np.stack(images)), names, torch.from_numpy(np.stack(edges)))


def fit_radiomapseer_exponent(root, data: dict, max_items: int = 400) -> float:
    """The physics baseline's log-distance exponent, fitted on the training split."""
    base = radiomapseer_dataset(root, "train", data)
    idx = np.linspace(0, len(base) - 1, min(len(base), max_items)).astype(int)

    def samples():
        for i in idx:
            it = base[int(i)]
            yield ((it["target"][0].numpy() + 1) / 2, it["buildings"][0].numpy(), it["tx"])

    return fit_log_distance_exponent(samples(), full_size(root))


def full_size(root) -> int:
    """The side in pixels (= metres) of a RadioMapSeer folder's maps (its first building mask)."""
    first = next(iter(discover_maps(root)))
    return int(read_png(Path(root) / "png/buildings_complete" / f"{first}.png", "L").shape[0])


class RadioMapSeerSplits:
    """RadioMapSeer as the map models, the sample and the evaluate stages see it (``data`` is the
    ``data.radiomapseer`` section)."""

    dataset = "radiomapseer"

    def __init__(self, root, data: dict):
        self.root, self.data = Path(root), data
        self.sources = [self.root]
        self.db_per_unit = gain_db_per_unit(data.get("gain_threshold", 0.0))
        self.image_size = int(data["image_size"])

    def physics_exponent(self) -> float:
        """``physics_exponent`` when set, else fitted on the training split."""
        value = self.data.get("physics_exponent")
        return float(value) if value is not None else fit_radiomapseer_exponent(self.root, self.data)

    def training_sets(self, augment: bool, key: str) -> tuple[StackedItems, StackedItems, dict]:
        """Training and validation items of a map model, and what its folder records."""
        if augment:
            raise ParamsError(
                f"{key}: flip/rotation augmentation is for the ICASSP crops; set it false for RadioMapSeer"
            )
        condition = self.data["condition"]
        exponent = self.physics_exponent() if condition == "physics" else None
        train = radiomapseer_items(self.root, "train", self.data, condition, exponent or 2.0)
        val = radiomapseer_items(self.root, "val", self.data, condition, exponent or 2.0)
        meta = {"condition": condition, "physics_exponent": exponent, "image_size": self.data["image_size"]}
        return train, val, meta

    def items(self, split: str, meta: dict | None = None, maps=None) -> StackedItems:
        """A split's items with a trained model's own condition and exponent (``meta``), or with
        the static condition (for scoring: targets, buildings, Tx)."""
        if meta is None:
            return radiomapseer_items(self.root, split, self.data, "static", 2.0, maps=maps)
        exponent = meta.get("physics_exponent") or 2.0
        return radiomapseer_items(self.root, split, self.data, meta["condition"], exponent, maps=maps)

    def all_items(self, meta: dict | None = None) -> StackedItems:
        """Every map and Tx of the folder."""
        return self.items("all", meta, maps=list(discover_maps(self.root)))

    def physics(self, items: StackedItems, exponent: float) -> torch.Tensor:
        """The log-distance baseline's maps (N, 1, S, S) on the unit scale, buildings 0."""
        b, tx = items.tensors["buildings"].numpy(), items.tensors["tx"].numpy()
        size = full_size(self.root)
        maps = [radiomapseer_physics(b[i, 0], tuple(tx[i]), exponent, size) for i in range(len(items.names))]
        return torch.from_numpy(np.stack(maps))[:, None]

    def fit_exponent(self, items: StackedItems) -> float:
        """The log-distance exponent fitted on ``items`` themselves (when no model records one)."""
        target = ((items.tensors["target"] + 1) / 2).numpy()
        b, tx = items.tensors["buildings"].numpy(), items.tensors["tx"].numpy()
        samples = ((target[i, 0], b[i, 0], tuple(tx[i])) for i in range(len(items.names)))
        return fit_log_distance_exponent(samples, full_size(self.root))


# --------------------------------------------------------------------------------- ICASSP


def icassp_items(crops_dir, split: str, augment: bool = False) -> StackedItems:
    """All Tx-aware crops of a split stacked in memory (×8 flips/rotations when ``augment``)."""
    base = ICASSPCropDataset(crops_dir, split)
    items = [base[i] for i in range(len(base))]
    if not items:
        raise DataError(f"{crops_dir}: no crops in the {split} split")
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


def icassp_images(crops_dir, split: str, kind: str, augment: bool = False) -> ImageItems:
    """The building (R, G), antenna (B) or radio (target) channels of the Tx-aware crops of a split."""
    base = ICASSPCropDataset(crops_dir, split)
    pick = {
        "building": lambda it: it["input"][:2],
        "antenna": lambda it: it["input"][2:3],
        "radio": lambda it: it["target"],
    }
    items = [base[i] for i in range(len(base))]
    images = torch.stack([pick[kind](it) for it in items])
    return ImageItems(images, [it["name"] for it in items], augment=augment)


class ICASSPSplits:
    """The ICASSP Tx-aware crops (a ``crop_icassp`` folder) as the map models, the sample and the
    evaluate stages see them."""

    dataset = "icassp"
    db_per_unit = ICASSP_DB_PER_UNIT

    def __init__(self, crops_dir):
        self.root = Path(crops_dir)
        self.sources = [self.root]

    @property
    def image_size(self) -> int:
        """The crops' side (``crop_size`` of the metadata)."""
        rows = read_metadata(self.root / "metadata.csv")
        if not rows:
            raise DataError(f"{self.root / 'metadata.csv'}: no crops")
        return int(rows[0]["crop_size"])

    def training_sets(self, augment: bool, key: str) -> tuple[StackedItems, StackedItems, dict]:
        train = icassp_items(self.root, "train", augment=augment)
        val = icassp_items(self.root, "val")
        meta = {"condition": "arranged", "image_size": int(train.tensors["condition"].shape[-1])}
        return train, val, meta

    def items(self, split: str, meta: dict | None = None) -> StackedItems:
        return icassp_items(self.root, split)

    def all_items(self, meta: dict | None = None) -> StackedItems:
        splits = {r["split"] for r in read_metadata(self.root / "metadata.csv")}
        return concat_items([icassp_items(self.root, s) for s in ("train", "val", "test") if s in splits])

    def physics(self, items: StackedItems, exponent=None) -> torch.Tensor:
        """FSPL with the antenna pattern, no walls (the arranged B channel), on the unit scale."""
        return icassp_physics_unit(items.tensors["condition"])


def map_splits(dataset: str, root, data: dict | None = None) -> RadioMapSeerSplits | ICASSPSplits:
    """The adapter of ``dataset``: a RadioMapSeer folder with its ``data.radiomapseer`` settings,
    or a ``crop_icassp`` folder."""
    if dataset == "radiomapseer":
        return RadioMapSeerSplits(root, data)
    if dataset == "icassp":
        return ICASSPSplits(root)
    raise ParamsError(f"unknown dataset {dataset!r} (radiomapseer or icassp)")
