"""What the models see: the splits of both datasets as items, for the first-stage VAEs, the
RadioDiff LDM and the RadioUNet baseline alike.

Training, sampling and scoring read items when the loader asks for them (:class:`LazyItems`:
the PNGs are decoded in the DataLoader's workers), so their memory does not grow with the
dataset; a single input or another root's samples (``predict``, ``evaluate --model``) are held
in memory (:class:`StackedItems`).

Map models (LDM, RadioUNet), :class:`RadioMapSeerItems` and :class:`ICASSPItems`:

- RadioMapSeer: ``condition`` 3×S×S ([buildings, Tx, third] in [−1, 1], third = buildings,
  cars or the fitted log-distance prior), ``target`` 1×S×S in [−1, 1], ``buildings`` 1×S×S
  (area fraction), ``tx`` (row, col) at S;
- ICASSP: the Tx-aware crops: ``condition`` = the 3 arranged channels, ``target`` the path
  loss, ``valid`` (False on padded pixels).

First-stage VAEs, :class:`RadioMapSeerImages` and :class:`ICASSPImages`: ``image`` C×S×S in
[−1, 1] and ``edges`` 1×S×S in [0, 1] (the RadioMapSeer gain map and its edge map; ICASSP
building [R, G], antenna [B] or radio channels of the crops).

Flip/rotation augmentation is deterministic: with ``variants=8`` item ``8·i + v`` is sample
``i`` under flip/rotation ``v`` (drawn per item from its index, not from an RNG), so the engine's
data order, a pure function of (seed, epoch), alone fixes what a step sees (exact resume, with
or without workers). Every item also carries its ``index`` (the LDM's task caches its frozen VAEs'
encodings by it). A training run may give its sets one :class:`ItemCache` (``runtime.item_cache_mb``):
decoded samples are kept until the cache is full, so a small dataset is decoded once and a large
one costs at most the cap.

:class:`RadioMapSeerSource` and :class:`ICASSPSource` are the per-dataset adapters the training,
sampling and scoring stages share: the training and validation sets of a map model, the items a
trained model expects, the physics baseline's predictions and the dB scale of the metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from radiodiff.core.encodings import (
    ICASSP_DB_PER_UNIT,
    ICASSP_PIXEL_SIZE_M,
    RADIOMAPSEER_PIXEL_SIZE_M,
    channel_to_model,
    gain_db_per_unit,
    gray_to_unit,
    pl_db_to_unit,
)
from radiodiff.core.errors import DataError, ParamsError, RadiodiffError
from radiodiff.core.io import read_png
from radiodiff.data.icassp import ICASSPCropDataset, read_metadata
from radiodiff.data.radiomapseer import RadioMapSeerDataset, area_resize, discover_maps
from radiodiff.data.tx_crop import cut
from radiodiff.physics.baselines import fit_log_distance_exponent, icassp_physics_unit, radiomapseer_physics

N_DIHEDRAL = 8
VAE_CHANNELS = {"radiomapseer": 1, "building": 2, "antenna": 1, "radio": 1}


def dihedral(x: torch.Tensor, v: int) -> torch.Tensor:
    """Variant ``v`` (0–7) of the 8 flips/rotations of the last two dims; 0 is the identity."""
    if v >= 4:
        x = x.flip(-1)
    return torch.rot90(x, v % 4, dims=(-2, -1)) if v % 4 else x


def dihedral_point(rc: torch.Tensor, v: int, shape: tuple[int, int]) -> torch.Tensor:
    """The pixel (row, col) ``rc`` of a (rows, cols) map, where :func:`dihedral` ``v`` moves it."""
    r, c = int(rc[0]), int(rc[1])
    rows, cols = shape
    if v >= 4:
        c = cols - 1 - c
    for _ in range(v % 4):  # rot90 counter-clockwise: (r, c) -> (cols - 1 - c, r), sides swap
        r, c, rows, cols = cols - 1 - c, r, cols, rows
    return torch.tensor([r, c], dtype=rc.dtype)


# --------------------------------------------------------------------------------- containers


class StackedItems(Dataset):
    """Items from stacked tensors (first dim = sample): a split held in memory for sampling and
    scoring, or the items of one input."""

    def __init__(self, tensors: dict[str, torch.Tensor], names: list[str]):
        self.tensors, self.names = dict(tensors), list(names)
        for k, v in self.tensors.items():
            if len(v) != len(self.names):
                raise ValueError(f"StackedItems: {k!r} has {len(v)} rows for {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        return {**{k: t[i] for k, t in self.tensors.items()}, "name": self.names[i]}

    def first(self) -> dict:
        if not self.names:
            raise DataError("StackedItems: no items")
        return {k: t[0] for k, t in self.tensors.items()}


def item_batches(items: Dataset, batch_size: int) -> DataLoader:
    """The items in order, ``batch_size`` at a time (read when asked for, in this process)."""
    return DataLoader(items, batch_size=batch_size, shuffle=False, num_workers=0)


def concat_items(parts: list[StackedItems]) -> StackedItems:
    """Several splits' items as one (the same tensor keys, no variants)."""
    if not parts:
        raise DataError("no items to concatenate")
    keys = parts[0].tensors.keys()
    return StackedItems(
        {k: torch.cat([p.tensors[k] for p in parts]) for k in keys}, [n for p in parts for n in p.names]
    )


class ItemCache:
    """Decoded samples kept in memory up to ``max_bytes`` (then no more are added; none is ever
    evicted), shared by the sets of one run. Each DataLoader worker holds its own copy, so a run
    holds at most ``max(1, num_workers)`` × the cap, whatever the dataset's size."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.entries = int(max_bytes), 0, {}

    def get(self, key, load):
        hit = self.entries.get(key)
        if hit is not None:
            return hit
        item = load()
        size = sum(t.numel() * t.element_size() for t in item.values())
        if self.bytes + size <= self.max_bytes:
            self.entries[key] = item
            self.bytes += size
        return item


class LazyItems(Dataset):
    """Items read when asked for (in the DataLoader's workers): ``load(i)`` gives sample ``i``'s
    tensors. With ``variants=8``, item ``8·i + v`` is sample ``i`` with the tensors named in
    ``spatial`` under :func:`dihedral` ``v``. With a :class:`ItemCache` (``cache``), a sample is
    decoded once while the cache has room."""

    spatial: tuple[str, ...] = ()
    points: tuple[str, ...] = ()  # (row, col) pixels of the spatial maps, moved with them

    def __init__(self, names: list[str], variants: int = 1):
        if variants not in (1, N_DIHEDRAL):
            raise ValueError(f"{type(self).__name__}: variants must be 1 or {N_DIHEDRAL}, got {variants}")
        self.names, self.variants = list(names), variants
        self.cache: ItemCache | None = None

    def __len__(self) -> int:
        return len(self.names) * self.variants

    def load(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, j: int) -> dict:
        i, v = divmod(j, self.variants)
        item = self.load(i) if self.cache is None else self.cache.get((id(self), i), lambda: self.load(i))
        if v:
            shape = tuple(item[self.spatial[0]].shape[-2:])
            item = {
                k: dihedral(t, v).contiguous()
                if k in self.spatial
                else dihedral_point(t, v, shape)
                if k in self.points
                else t
                for k, t in item.items()
            }
        return {**item, "name": self.names[i], "index": j}

    def first(self) -> dict:
        if not self.names:
            raise DataError(f"{type(self).__name__}: no items")
        return self.load(0)

    def stacked(self) -> StackedItems:
        """Every sample's tensors stacked in memory (no variants)."""
        items = [self.load(i) for i in range(len(self.names))]
        return StackedItems({k: torch.stack([it[k] for it in items]) for k in items[0]}, self.names)


class RadioMapSeerItems(LazyItems):
    """Map-model items of a :class:`RadioMapSeerDataset`: ``condition``, ``target``,
    ``buildings`` and ``tx`` (row, col) at the model's size."""

    spatial = ("condition", "target", "buildings")
    points = ("tx",)

    def __init__(self, base: RadioMapSeerDataset, variants: int = 1):
        super().__init__([s.name for s in base.samples], variants)
        self.base = base

    def load(self, i: int) -> dict[str, torch.Tensor]:
        it = self.base[i]
        tx = torch.tensor(it["tx"], dtype=torch.long)
        return {"condition": it["condition"], "target": it["target"], "buildings": it["buildings"], "tx": tx}


class RadioMapSeerImages(LazyItems):
    """The RadioMapSeer VAE's items: ``image`` (the gain map on [−1, 1]) and ``edges`` (its edge
    map on [0, 1]) at the model's size."""

    spatial = ("image", "edges")

    def __init__(self, base: RadioMapSeerDataset, edges_dir, variants: int = 1):
        super().__init__([s.name for s in base.samples], variants)
        self.base, self.edges_dir = base, Path(edges_dir)

    def load(self, i: int) -> dict[str, torch.Tensor]:
        s, size = self.base.samples[i], self.base.size
        image = area_resize(self.base.gain(s), size)[None] * 2.0 - 1.0
        edges = area_resize(gray_to_unit(read_png(self.edges_dir / f"{s.name}.png", "L")), size)[None]
        return {"image": torch.from_numpy(image), "edges": torch.from_numpy(edges)}


class ICASSPItems(LazyItems):
    """Map-model items of the ICASSP Tx-aware crops: ``condition`` (the 3 arranged channels),
    ``target`` (path loss) and ``valid`` (False on padded pixels)."""

    spatial = ("condition", "target", "valid")

    def __init__(self, base: ICASSPCropDataset, variants: int = 1):
        super().__init__([r["name"] for r in base.rows], variants)
        self.base = base

    def load(self, i: int) -> dict[str, torch.Tensor]:
        it = self.base[i]
        return {"condition": it["input"], "target": it["target"], "valid": it["valid"]}


class ICASSPWindows(LazyItems):
    """Windows of the model's size cut at random places of the arranged full-size maps (the Tx
    inside or not), as the LDM and RadioUNet see whole buildings at inference: item ``k`` is a
    window of sample ``rows[k mod len(rows)]`` whose origin is drawn from ``(seed, k)`` (so an item
    is the same window in every epoch and on resume). Same tensors as :class:`ICASSPItems`."""

    spatial = ("condition", "target", "valid")

    def __init__(self, arranged, rows: list[dict], count: int, size: int, seed: int):
        if not rows:
            raise DataError(f"{arranged}: no arranged samples to cut windows from")
        self.arranged, self.rows, self.size, self.seed = Path(arranged), rows, int(size), int(seed)
        super().__init__([f"{rows[k % len(rows)]['name']}_w{k}" for k in range(count)])

    def load(self, k: int) -> dict[str, torch.Tensor]:
        name = self.rows[k % len(self.rows)]["name"]
        inp = read_png(self.arranged / "inputs" / f"{name}.png", "RGB")[..., :3]
        pl = read_png(self.arranged / "targets" / f"{name}.png", "L")
        if pl.shape != inp.shape[:2]:
            raise DataError(f"{self.arranged / 'targets' / name}.png: size differs from its input")
        rng = np.random.default_rng([self.seed, k])
        row0, col0 = (int(rng.integers(min(0, n - self.size), max(0, n - self.size) + 1)) for n in pl.shape)
        valid = cut(np.ones(pl.shape, bool), row0, col0, self.size)
        target = pl_db_to_unit(cut(pl, row0, col0, self.size)) * 2.0 - 1.0
        target[~valid] = -1.0
        condition = channel_to_model(cut(inp, row0, col0, self.size).transpose(2, 0, 1))
        return {
            "condition": torch.from_numpy(condition),
            "target": torch.from_numpy(target[None].astype(np.float32)),
            "valid": torch.from_numpy(valid[None].copy()),
        }


class MixedItems(LazyItems):
    """Several item sets with the same tensors as one (``parts`` in order), with ``variants``
    flips/rotations over the whole."""

    def __init__(self, parts: list[LazyItems], variants: int = 1):
        self.parts, self.spatial = parts, parts[0].spatial
        super().__init__([n for p in parts for n in p.names], variants)

    def load(self, i: int) -> dict[str, torch.Tensor]:
        for part in self.parts:
            if i < len(part.names):
                return part.load(i)
            i -= len(part.names)
        raise IndexError(i)


class ICASSPImages(LazyItems):
    """A VAE's channels of the ICASSP crops: building (R, G), antenna (B) or radio (target)."""

    spatial = ("image", "edges")

    def __init__(self, base: ICASSPCropDataset, kind: str, variants: int = 1):
        if kind not in ("building", "antenna", "radio"):
            raise ValueError(f"ICASSP VAE kind must be building, antenna or radio, got {kind!r}")
        super().__init__([r["name"] for r in base.rows], variants)
        self.base, self.kind = base, kind

    def load(self, i: int) -> dict[str, torch.Tensor]:
        it = self.base[i]
        image = {"building": it["input"][:2], "antenna": it["input"][2:3], "radio": it["target"]}[self.kind]
        return {"image": image, "edges": torch.zeros_like(image[:1])}


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


def radiomapseer_items(
    root, split: str, data: dict, condition: str, exponent: float, maps=None, augment: bool = False
) -> RadioMapSeerItems:
    """The items of a split (or of the maps ``maps``), read when asked for (×8 flips/rotations
    when ``augment``: propagation has no preferred direction, so a flipped or rotated map with its
    Tx moved along is another valid sample)."""
    dataset = radiomapseer_dataset(root, split, data, condition, exponent, maps=maps)
    items = RadioMapSeerItems(dataset, variants=N_DIHEDRAL if augment else 1)
    if not len(items):
        raise DataError(f"{root}: no RadioMapSeer samples in the {split} split")
    return items


def radiomapseer_images(root, edges_dir, split: str, data: dict, augment: bool = False) -> RadioMapSeerImages:
    """The VAE's gain maps of a split at ``data['image_size']``, with their edge weights (×8
    flips/rotations when ``augment``, the edge map turned with its gain map)."""
    items = RadioMapSeerImages(radiomapseer_dataset(root, split, data), edges_dir, N_DIHEDRAL if augment else 1)
    if not len(items):
        raise DataError(f"{root}: no RadioMapSeer samples in the {split} split")
    return items


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


class RadioMapSeerSource:
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

    def training_sets(self, stage_data: dict, key: str, seed: int = 0) -> tuple[LazyItems, LazyItems, dict]:
        """Training and validation items of a map model (read when asked for), and what its
        folder records; ``stage_data`` is the stage's ``data`` section (named ``key``)."""
        if stage_data.get("crop_policy", "tx_aware") != "tx_aware":
            raise ParamsError(
                f"{key}.crop_policy: crop policies are for the ICASSP crops; use tx_aware for RadioMapSeer"
            )
        condition = self.data["condition"]
        exponent = self.physics_exponent() if condition == "physics" else None
        train = radiomapseer_items(
            self.root, "train", self.data, condition, exponent or 2.0, augment=stage_data["augment"]
        )
        val = radiomapseer_items(self.root, "val", self.data, condition, exponent or 2.0)
        size = int(self.data["image_size"])
        meta = {
            "condition": condition,
            "physics_exponent": exponent,
            "image_size": size,
            "metres_per_pixel": full_size(self.root) * RADIOMAPSEER_PIXEL_SIZE_M / size,
        }
        return train, val, meta

    def items(
        self, split: str, condition: str | None = None, exponent: float | None = None, maps=None
    ) -> RadioMapSeerItems:
        """A split's items (read when asked for) with a trained model's own ``condition`` and
        physics ``exponent`` (None: 2), or with the static condition (no ``condition``; for
        scoring: targets, buildings, Tx)."""
        return radiomapseer_items(self.root, split, self.data, condition or "static", exponent or 2.0, maps=maps)

    def all_items(self, condition: str | None = None, exponent: float | None = None) -> StackedItems:
        """Every map and Tx of the folder, in memory."""
        return self.items("all", condition, exponent, maps=list(discover_maps(self.root))).stacked()

    def physics(self, tensors: dict[str, torch.Tensor], exponent: float) -> torch.Tensor:
        """The log-distance baseline's maps (N, 1, S, S) on the unit scale, buildings 0, for a
        batch's (or stacked items') ``buildings`` and ``tx``."""
        b, tx = tensors["buildings"].numpy(), tensors["tx"].numpy()
        size = full_size(self.root)
        maps = [radiomapseer_physics(b[i, 0], tuple(tx[i]), exponent, size) for i in range(len(b))]
        return torch.from_numpy(np.stack(maps))[:, None]

    def fit_exponent(self, items: StackedItems) -> float:
        """The log-distance exponent fitted on ``items`` themselves (when no model records one)."""
        target = ((items.tensors["target"] + 1) / 2).numpy()
        b, tx = items.tensors["buildings"].numpy(), items.tensors["tx"].numpy()
        samples = ((target[i, 0], b[i, 0], tuple(tx[i])) for i in range(len(items.names)))
        return fit_log_distance_exponent(samples, full_size(self.root))


# --------------------------------------------------------------------------------- ICASSP


def icassp_items(crops_dir, split: str, augment: bool = False) -> ICASSPItems:
    """The Tx-aware crops of a split, read when asked for (×8 flips/rotations when ``augment``)."""
    items = ICASSPItems(ICASSPCropDataset(crops_dir, split), variants=N_DIHEDRAL if augment else 1)
    if not len(items):
        raise DataError(f"{crops_dir}: no crops in the {split} split")
    return items


def icassp_images(crops_dir, split: str, kind: str, augment: bool = False) -> ICASSPImages:
    """The building (R, G), antenna (B) or radio (target) channels of the Tx-aware crops of a split
    (×8 flips/rotations when ``augment``)."""
    items = ICASSPImages(ICASSPCropDataset(crops_dir, split), kind, variants=N_DIHEDRAL if augment else 1)
    if not len(items):
        raise DataError(f"{crops_dir}: no crops in the {split} split")
    return items


class ICASSPSource:
    """The ICASSP Tx-aware crops (a ``crop_icassp`` folder) as the map models, the sample and the
    evaluate stages see them."""

    dataset = "icassp"
    db_per_unit = ICASSP_DB_PER_UNIT

    def __init__(self, crops_dir, arranged=None):
        self.root = Path(crops_dir)
        self.arranged = Path(arranged) if arranged else None
        self.sources = [self.root] + ([self.arranged] if self.arranged else [])

    @property
    def image_size(self) -> int:
        """The crops' side (``crop_size`` of the metadata)."""
        rows = read_metadata(self.root / "metadata.csv")
        if not rows:
            raise DataError(f"{self.root / 'metadata.csv'}: no crops")
        return int(rows[0]["crop_size"])

    def training_sets(self, stage_data: dict, key: str, seed: int = 0) -> tuple[LazyItems, LazyItems, dict]:
        """Training and validation items of a map model and what its folder records. Training:
        the Tx-aware crops (``crop_policy: tx_aware``), or those plus random windows of the
        arranged full-size maps making up ``random_share`` of the items (``mixed``); ×8
        flips/rotations when ``augment``. Validation: the Tx-aware crops."""
        augment, policy = stage_data["augment"], stage_data.get("crop_policy", "tx_aware")
        train = icassp_items(self.root, "train", augment=augment)
        val = icassp_items(self.root, "val")
        size = int(train.first()["condition"].shape[-1])  # crops keep the arranged maps' pixels
        if policy == "mixed":
            share = float(stage_data["random_share"])
            if not 0.0 <= share < 1.0:
                raise ParamsError(f"{key}.random_share: expected a share in [0, 1), got {share}")
            if self.arranged is None:
                raise ParamsError(f"{key}.crop_policy: mixed cuts windows from the arranged maps; give --arranged")
            crops = icassp_items(self.root, "train")
            count = round(len(crops.names) * share / (1.0 - share))
            rows = [r for r in read_metadata(self.arranged / "metadata.csv") if r["split"] == "train"]
            windows = ICASSPWindows(self.arranged, rows, count, size, seed)
            train = MixedItems([crops, windows], variants=N_DIHEDRAL if augment else 1)
        elif policy != "tx_aware":
            raise ParamsError(f"{key}.crop_policy: expected tx_aware or mixed, got {policy!r}")
        meta = {"condition": "arranged", "image_size": size, "metres_per_pixel": ICASSP_PIXEL_SIZE_M}
        return train, val, meta

    def items(self, split: str, condition: str | None = None, exponent: float | None = None) -> ICASSPItems:
        """A split's crops, read when asked for (one condition: the arranged channels)."""
        return icassp_items(self.root, split)

    def all_items(self, condition: str | None = None, exponent: float | None = None) -> StackedItems:
        """Every crop of every split, in memory."""
        splits = {r["split"] for r in read_metadata(self.root / "metadata.csv")}
        return concat_items([self.items(s).stacked() for s in ("train", "val", "test") if s in splits])

    def physics(self, tensors: dict[str, torch.Tensor], exponent=None) -> torch.Tensor:
        """FSPL with the antenna pattern, no walls (the arranged B channel), on the unit scale, for
        a batch's (or stacked items') ``condition``."""
        return icassp_physics_unit(tensors["condition"])


def stage_source(command: str, dataset: str, params: dict, root=None, crops=None, arranged=None):
    """The dataset a map-model stage reads (:func:`dataset_source`): a RadioMapSeer ``root`` with the
    stage's ``data.radiomapseer`` values, or the ICASSP ``crops`` (with the ``arranged`` folder
    they were cut from, when given). An unknown dataset or a missing folder is one error naming
    the ``command``'s flag."""
    if dataset not in ("radiomapseer", "icassp"):
        raise RadiodiffError(f"{command}: no dataset {dataset!r} (radiomapseer or icassp)")
    flag, source = ("root", root) if dataset == "radiomapseer" else ("crops", crops)
    if not source:
        raise RadiodiffError(f"{command}: give --{flag}")
    data = params["data"]["radiomapseer"] if dataset == "radiomapseer" else None
    return dataset_source(dataset, source, data, arranged)


def dataset_source(dataset: str, root, data: dict | None = None, arranged=None) -> RadioMapSeerSource | ICASSPSource:
    """The adapter of ``dataset``: a RadioMapSeer folder with its ``data.radiomapseer`` settings,
    or a ``crop_icassp`` folder (with the ``arrange_icassp`` folder it was cut from, for random
    training windows)."""
    if dataset == "radiomapseer":
        return RadioMapSeerSource(root, data)
    if dataset == "icassp":
        return ICASSPSource(root, arranged)
    raise ParamsError(f"unknown dataset {dataset!r} (radiomapseer or icassp)")
