"""The evaluate stages: score every method's predictions against the ground truth.

Protocol (SPEC Contracts, REFERENCE.md §4): on the [0, 1] scale at the model's resolution,
per image, then averaged over images: NMSE, RMSE, MAE, SSIM (Gaussian 11, σ 1.5, data range
1), PSNR (data range 1); the whole-set RMSE (RadioUNet's pooled protocol); RMSE in dB.
RadioMapSeer outputs have the known building pixels set to 0 first; ICASSP outputs are scored
as they are. Two scopes:

- RadioMapSeer: ``all`` pixels, known building pixels set to 0 first (RadioDiff scored its raw
  float prediction, buildings included, so this is not its protocol: zeroing can only lower the
  error), and ``outdoor`` pixels only (not fully covered by a building at the model
  resolution); dB per unit 99.16 (×(1 − threshold) when RadioUNet's noise-floor threshold is on).
- ICASSP: the crops' ``valid`` (not padded) pixels, the challenge's scope, and ``open`` pixels
  (valid and not on a wall). The [0, 1] scale is (160 − PL)/147, so RMSE in dB = 147·RMSE;
  RMSE in dB is the challenge metric. Per-building and per-band breakdowns.

Writes ``summary.json`` (keyed by method, DVC metrics) and ``per_sample.csv``. Both datasets
take the same path; :func:`radiodiff.data.items.dataset_source` adapts each. The test split and the
predictions are read and scored batch by batch (:class:`Scorer`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch

from radiodiff.core.encodings import ICASSP_PIXEL_SIZE_M, RADIOMAPSEER_PIXEL_SIZE_M
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import read_json, write_json
from radiodiff.data.icassp import parse_name
from radiodiff.data.items import StackedItems, full_size, item_batches, stage_source
from radiodiff.data.splits import describe_split
from radiodiff.evaluate.maps import (
    ENSEMBLE_METHOD,
    METHODS,
    OPTIONAL_METHODS,
    SEEDS_FOLDER,
    UNCERTAINTY_FOLDER,
    VAE_METHOD,
    read_maps,
    read_std,
)
from radiodiff.evaluate.uncertainty import Calibration
from radiodiff.metrics import (
    MetricAccumulator,
    building_pixels,
    inception_distances,
    ratio_interval,
    scope_masks,
    write_rows,
    zero_buildings,
)

HEADLINE = ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db")
# the structure scores of every scope (radiodiff.metrics), LPIPS on the top-level scope when asked for
STRUCTURE = ("relative_error", "peak_distance_px", "peak_distance_m", "peak_hit", "sharpness_ratio", "lpips")
RATIO_PAIRS = (
    ("radiodiff", "radiounet"),
    ("radiodiff", "physics"),
    ("radiounet", "physics"),
    (ENSEMBLE_METHOD, "radiounet"),
    (ENSEMBLE_METHOD, "physics"),
    (VAE_METHOD, "radiounet"),  # what the LDM's first stage costs a good map
)
RATIO_METRICS = ("nmse", "rmse_db")
RATIO_RESAMPLES = 2000
NOT_METHODS = ("protocol", "ratios", "error_profile", "uncertainty")  # the summary's other keys
CALIBRATION_SCOPE = {"radiomapseer": "outdoor", "icassp": "valid"}  # pixels whose prediction is not known
DISTANCE_EDGES_M = (0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, math.inf)  # RadioMapSeer error-profile bins


class ErrorProfile:
    """Where RadioMapSeer's error is: every method's RMSE in dB pooled over the outdoor pixels (a
    building pixel is zeroed, hence exact, in every method) by distance from the Tx and by line
    of sight (the straight segment from the Tx misses every building) versus not, on the model
    grid of the scored maps."""

    def __init__(self, methods, db_per_unit: float, metres_per_pixel: float):
        self.methods, self.db, self.mpp = tuple(methods), db_per_unit, metres_per_pixel
        n = len(DISTANCE_EDGES_M) - 1
        self.pixels = {"distance": torch.zeros(n, dtype=torch.float64), "sight": torch.zeros(2, dtype=torch.float64)}
        self.sse = {(m, k): torch.zeros_like(v) for m in self.methods for k, v in self.pixels.items()}

    def add(self, target: torch.Tensor, preds: dict[str, torch.Tensor], buildings: torch.Tensor, tx: torch.Tensor):
        from radiodiff.physics.propagation import line_of_sight

        blocked = building_pixels(buildings)[:, 0]  # (B, S, S)
        b, h, w = blocked.shape
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        tx = tx.view(b, 2).double()
        dist = self.mpp * torch.hypot(rows[None] - tx[:, 0, None, None], cols[None] - tx[:, 1, None, None])
        edges = torch.tensor(DISTANCE_EDGES_M[1:-1], dtype=torch.float64)
        bins = {"distance": torch.bucketize(dist, edges, right=True)}
        los = [line_of_sight(blocked[i].numpy(), tuple(int(v) for v in tx[i].tolist())) for i in range(b)]
        bins["sight"] = torch.from_numpy(~np.stack(los)).long()  # 0 = line of sight, 1 = not
        outdoor = ~blocked
        for key, index in bins.items():
            index = index[outdoor]
            n = len(self.pixels[key])
            self.pixels[key] += torch.bincount(index, minlength=n).double()
            for m in self.methods:
                err = ((preds[m][:, 0].double() - target[:, 0].double()) * self.db)[outdoor]
                self.sse[m, key] += torch.bincount(index, weights=err * err, minlength=n)

    def result(self) -> dict:
        def rmse(m, key):
            n = self.pixels[key]
            values = (self.sse[m, key] / n.clamp(min=1)).sqrt()
            return [float(v) if c > 0 else None for v, c in zip(values, n, strict=True)]

        edges = [e if math.isfinite(e) else None for e in DISTANCE_EDGES_M]
        return {
            "scope": "outdoor pixels, pooled over the test images; RMSE in dB",
            "distance_m": {
                "edges": edges,
                "pixels": [int(v) for v in self.pixels["distance"]],
                "rmse_db": {m: rmse(m, "distance") for m in self.methods},
            },
            "line_of_sight": {
                "pixels": dict(zip(("los", "nlos"), (int(v) for v in self.pixels["sight"]), strict=True)),
                "rmse_db": {m: dict(zip(("los", "nlos"), rmse(m, "sight"), strict=True)) for m in self.methods},
            },
        }


SCORE_BATCH = 64  # test items read and scored at a time


def _headline(s: dict) -> dict:
    out = {k: s[k] for k in (*HEADLINE, *STRUCTURE) if k in s}
    out["rmse_whole_set"] = s["whole_set_rmse"]
    if "whole_set_rmse_db" in s:
        out["rmse_db_whole_set"] = s["whole_set_rmse_db"]
    out["n_images"] = s["n_images"]
    return out


class Scorer:
    """Every method's per-image metrics, added batch by batch (:meth:`add`), then the summary
    (keyed by method) and the per-sample rows (:meth:`result`, by method, then scope)."""

    def __init__(
        self,
        dataset: str,
        methods,
        db_per_unit: float,
        paper: bool = False,
        metres_per_pixel: float | None = None,
        lpips=None,
        inception=None,
        calibration=None,
    ):
        """``lpips`` (:class:`~radiodiff.evaluate.perceptual.LPIPSScore`), ``inception``
        (:class:`~radiodiff.evaluate.perceptual.InceptionFeatures`) and ``calibration``
        (:class:`~radiodiff.evaluate.uncertainty.Calibration`, fed the ``std`` of :meth:`add`)
        are optional."""
        self.dataset, self.methods = dataset, tuple(methods)
        self.profile = (
            ErrorProfile(self.methods, db_per_unit, metres_per_pixel)
            if dataset == "radiomapseer" and metres_per_pixel
            else None
        )
        self.scopes = ("all", "outdoor") if dataset == "radiomapseer" else ("valid", "open")
        if paper:
            if dataset != "radiomapseer":
                raise RadiodiffError("the paper scope is RadioDiff's RadioMapSeer protocol")
            self.scopes += ("paper",)
        self.lpips, self.inception, self.calibration = lpips, inception, calibration
        self.accs = {
            (m, sc): MetricAccumulator(
                db_per_unit, metres_per_pixel, ("lpips",) if lpips is not None and sc == self.scopes[0] else ()
            )
            for m in self.methods
            for sc in self.scopes
        }
        self.features: dict[str, list[torch.Tensor]] = {}  # Inception features of the truth and each method

    def add(
        self,
        batch: dict,
        preds: dict[str, torch.Tensor],
        raw: dict[str, torch.Tensor] | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        """Score one batch of items (``target`` and ``buildings`` or ``valid`` and ``condition``,
        ``name``) against every method's predictions on [0, 1] (B, 1, S, S); with the ``paper``
        scope, ``raw`` holds each method's float maps, scored on every pixel as they are; with a
        calibration, ``std`` is the per-pixel spread of the ensemble's samples."""
        target = ((batch["target"] + 1) / 2).clamp(0, 1).float()
        names = list(batch["name"])
        masks = scope_masks(self.dataset, batch)
        extra_cols: dict = {}
        if self.dataset == "icassp":
            ids = [parse_name(n) for n in names]
            extra_cols = {
                "building": [f"B{i.building}" for i in ids],
                "band": [f"f{i.band}" for i in ids],
                "antenna": [f"Ant{i.antenna}" for i in ids],
            }
        # the networks see the top-level scope's maps: ICASSP's padding 0 in both
        shown = (lambda x: x) if self.dataset == "radiomapseer" else (lambda x: torch.where(batch["valid"], x, 0.0))
        if self.inception is not None:
            self.features.setdefault("truth", []).append(self.inception(shown(target)))
        for method in self.methods:
            pred = preds[method]
            if pred.shape != target.shape:
                raise DataError(f"{method}: predictions of shape {tuple(pred.shape)} for targets {tuple(target.shape)}")
            if self.dataset == "radiomapseer":
                pred = zero_buildings(pred, batch["buildings"])
                preds = {**preds, method: pred}
            scores = {"lpips": self.lpips(shown(pred), shown(target))} if self.lpips is not None else None
            for scope, mask in masks.items():
                acc = self.accs[method, scope]
                top = scores if scope == self.scopes[0] else None
                acc.add(pred, target, mask=mask, names=names, scores=top, method=method, scope=scope, **extra_cols)
            if self.inception is not None:
                self.features.setdefault(method, []).append(self.inception(shown(pred)))
            if "paper" in self.scopes:
                if raw is None or raw[method].shape != target.shape:
                    raise DataError(f"{method}: float predictions missing or of another shape for the paper scope")
                self.accs[method, "paper"].add(raw[method], target, names=names, method=method, scope="paper")
        if self.profile is not None:
            self.profile.add(target, preds, batch["buildings"], batch["tx"])
        if self.calibration is not None:
            mean = preds[self.calibration.method]
            self.calibration.add(target, mean, std, masks[self.calibration.scope])

    def result(self, timing=None) -> tuple[dict, list[dict]]:
        summary, rows = {}, []
        for method in self.methods:
            entry: dict = {}
            for scope in self.scopes:
                acc = self.accs[method, scope]
                s = _headline(acc.summary())
                if self.dataset == "icassp":
                    s["per_building"] = {k: _headline(v) for k, v in acc.summary("building").items()}
                    s["per_band"] = {k: _headline(v) for k, v in acc.summary("band").items()}
                if not entry:
                    entry = s
                else:
                    entry[scope] = s
                rows.extend(acc.to_rows())
            if self.inception is not None:
                entry.update(inception_distances(torch.cat(self.features["truth"]), torch.cat(self.features[method])))
                entry["n_fid"] = entry.pop("n")
            if timing and method in timing:
                entry["ms_per_map"] = timing[method]["ms_per_map"]
            summary[method] = entry
        if len(self.methods) > 1:
            summary["ratios"] = self.ratios()
        if self.profile is not None:
            summary["error_profile"] = self.profile.result()
        if self.calibration is not None:
            summary["uncertainty"] = self.calibration.result()
        return summary, rows

    def ratios(self) -> dict:
        """Each pair of methods' ratio of mean NMSE and of mean RMSE (dB) on the top-level scope,
        with a paired bootstrap 95 % interval over the test images (:func:`ratio_interval`)."""
        scope = self.scopes[0]
        per_method = {m: {r["name"]: r for r in self.accs[m, scope].to_rows()} for m in self.methods}
        out = {"scope": scope, "resamples": RATIO_RESAMPLES}
        for a, b in RATIO_PAIRS:
            if a not in per_method or b not in per_method:
                continue
            names = [n for n in per_method[a] if n in per_method[b]]
            out[f"{a}/{b}"] = {
                k: ratio_interval(
                    [per_method[a][n][k] for n in names], [per_method[b][n][k] for n in names], RATIO_RESAMPLES
                )
                for k in RATIO_METRICS
            }
        return out


def score(dataset: str, items: StackedItems, preds: dict[str, torch.Tensor], db_per_unit: float, timing=None):
    """Summary (keyed by method) and per-sample rows for predictions on [0, 1] (N, 1, S, S) of
    items held in memory."""
    scorer = Scorer(dataset, preds, db_per_unit)
    scorer.add({**items.tensors, "name": items.names}, preds)
    return scorer.result(timing)


def protocol(dataset: str, items, db_per_unit: float, split: str, **extra) -> dict:
    """What ``summary.json`` was scored on; ``items``: the scored items (lazy or in memory)."""
    side = int(items.first()["target"].shape[-1])
    if dataset == "radiomapseer":
        scope = (
            "top-level metrics on all pixels; 'outdoor' on pixels not fully covered by a building; 'paper' on "
            "every pixel of the raw float predictions (no PNG rounding, nothing zeroed: RadioDiff's protocol)"
        )
        scale = "gray gain / 255 on [0, 1]"
        buildings = (
            "known building pixels set to 0 in every method's output before scoring (can only lower the error), "
            "except in 'paper': the raw float prediction on every pixel, buildings included, as RadioDiff scored"
        )
    else:
        scope = "top-level metrics on the crops' valid (not padded) pixels; 'open' also excludes walls"
        scale = "(160 - PL dB) / 147 on [0, 1]; rmse_db = 147 x rmse (the challenge metric)"
        buildings = "nothing zeroed: every valid pixel of each method's output is scored as predicted"
    return {
        "dataset": dataset,
        "split": split,
        "maps": len(items.names),
        "resolution": f"{side}x{side} (the model's resolution)",
        "scale": scale,
        "data_range": 1.0,
        "db_per_unit": db_per_unit,
        "scope": scope,
        "buildings": buildings,
        "ssim": "torchmetrics, Gaussian kernel 11, sigma 1.5, k1 0.01, k2 0.03, data range 1",
        "psnr": "data range 1 (the published RadioDiff numbers inferred the range from the data)",
        **extra,
    }


def json_safe(obj):
    """nan/inf (an undefined NMSE, a perfect image's PSNR) as null, so the summary stays standard
    JSON for DVC; the per-sample CSV keeps the raw values."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_outputs(out_dir: Path, summary: dict, rows: list[dict]) -> None:
    """``per_sample.csv`` (raw values) and ``summary.json`` (JSON-safe) into ``out_dir``."""
    out_dir = Path(out_dir)
    write_rows(out_dir / "per_sample.csv", rows)
    write_json(out_dir / "summary.json", json_safe(summary))


def sampled_methods(samples: Path) -> tuple[str, ...]:
    """The methods of a sample folder: RadioDiff, RadioUNet and physics, and the optional ones it
    holds (the mean of RadioDiff's samples, RadioUNet through the VAE)."""
    return METHODS + tuple(m for m in OPTIONAL_METHODS if (samples / m).is_dir())


def float_maps(samples: Path, n: int, methods=METHODS) -> dict[str, np.ndarray] | None:
    """Every method's raw float maps of a sample folder (``float/{method}.npy``, memory-mapped);
    None for a folder written before they were kept (the paper scope is then left out)."""
    paths = {m: samples / "float" / f"{m}.npy" for m in methods}
    if not any(p.is_file() for p in paths.values()):
        print(f"{samples}: no float/ predictions (an older sample stage); the paper scope is left out", file=sys.stderr)
        return None
    out = {}
    for m, p in paths.items():
        try:
            out[m] = np.load(p, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: unreadable float predictions ({e}); re-run the sample stage") from e
        if out[m].shape[0] != n:
            raise DataError(f"{p}: {out[m].shape[0]} maps for {n} test items; re-run the sample stage")
    return out


def run(params: dict, dataset: str, samples, out, root=None, crops=None) -> dict:
    """The ``evaluate_{dataset}`` stage: score every method's sampled test maps in ``samples``
    against RadioMapSeer ``root`` or the ICASSP ``crops``; writes ``summary.json`` and
    ``per_sample.csv`` into ``out``. The ``evaluate`` params section adds LPIPS and FID/KID
    (local weight files; absent or off: left out, and the protocol says so)."""
    source = stage_source(f"evaluate {dataset}", dataset, params, root, crops)
    samples = Path(samples)
    items = source.items("test")
    timing = read_json(samples / "sampling.json")["methods"]
    methods = sampled_methods(samples)
    floats = float_maps(samples, len(items), methods) if dataset == "radiomapseer" else None
    if dataset == "radiomapseer":
        mpp = full_size(source.root) * RADIOMAPSEER_PIXEL_SIZE_M / source.image_size
    else:
        mpp = ICASSP_PIXEL_SIZE_M  # the crops keep the data's pixels
    lpips, inception = perceptual_scorers(params.get("evaluate") or {})
    spread = samples / UNCERTAINTY_FOLDER
    k = timing.get(ENSEMBLE_METHOD, {}).get("k", 1)
    calibration = None
    if ENSEMBLE_METHOD in methods and k >= 2 and spread.is_dir():
        calibration = Calibration(k, source.db_per_unit, CALIBRATION_SCOPE[dataset], ENSEMBLE_METHOD)
    scorer = Scorer(
        dataset, methods, source.db_per_unit, floats is not None, mpp, lpips, inception, calibration
    )  # fmt: skip
    seeds = timing["radiodiff"].get("seeds", [])[1:]  # sample.seeds' other seeds (folders of older stages: none)
    by_seed = {s: Scorer(dataset, ["radiodiff"], source.db_per_unit) for s in seeds}
    start = 0
    for batch in item_batches(items, SCORE_BATCH):
        preds = {m: read_maps(samples / m, batch["name"], dataset) for m in methods}
        for seed, seed_scorer in by_seed.items():
            seed_maps = read_maps(samples / SEEDS_FOLDER / f"seed-{seed}", batch["name"], dataset)
            seed_scorer.add(batch, {"radiodiff": seed_maps})
        end = start + len(batch["name"])
        raw = {m: torch.from_numpy(np.array(a[start:end])) for m, a in floats.items()} if floats else None
        std = read_std(spread, batch["name"]) if calibration else None
        scorer.add(batch, preds, raw, std)
        start = end
    summary, rows = scorer.result(timing)
    if by_seed:
        first = timing["radiodiff"]["seed"]
        per_seed = {first: summary["radiodiff"], **{s: sc.result()[0]["radiodiff"] for s, sc in by_seed.items()}}
        summary["radiodiff"]["seed_spread"] = seed_spread(per_seed)
    extra = {}
    if dataset == "radiomapseer":
        extra = {
            "simulation": source.data["simulation"],
            "split_rule": describe_split(source.data["split"]),
            "physics_exponent": timing["physics"].get("exponent"),
        }
    if ENSEMBLE_METHOD in summary:
        summary[ENSEMBLE_METHOD]["k"] = timing[ENSEMBLE_METHOD]["k"]
    extra["headline"] = headline_note(summary)
    extra.update(structure_protocol(mpp, lpips, inception, len(items)))
    extra["uncertainty"] = (
        f"'uncertainty': the spread of {ENSEMBLE_METHOD}'s K = {k} samples against its error, on the "
        f"'{CALIBRATION_SCOPE[dataset]}' pixels"
        if calibration
        else "none: needs sample.ensemble with sample.seeds >= 2 (RadioUNet and physics give one map per input)"
    )
    summary["protocol"] = protocol(dataset, items, source.db_per_unit, "test", **extra)
    write_outputs(out, summary, rows)
    print(headline_table(summary), file=sys.stderr)
    return {"stage": f"evaluate_{dataset}", "out": str(out)}


def perceptual_scorers(section: dict):
    """LPIPS and the Inception network the ``evaluate`` params section asks for (None when not)."""
    from radiodiff.evaluate.perceptual import InceptionFeatures, LPIPSScore

    lpips = None
    if section.get("lpips"):
        lpips = LPIPSScore(section.get("lpips_net", "vgg"), section.get("lpips_backbone_path"))
    inception = InceptionFeatures(section["fid_weights"]) if section.get("fid_weights") else None
    return lpips, inception


def structure_protocol(mpp: float | None, lpips=None, inception=None, n: int = 0) -> dict:
    """How the structure and perceptual scores were taken, for the summary's protocol."""
    from radiodiff.metrics import RELATIVE_ERROR_EPS

    out = {
        "relative_error": (
            f"mean over the scored pixels of clip(sqrt(|p - t| / (|t| + {RELATIVE_ERROR_EPS:g})), 0, 1) on the maps "
            "taken to [-1, 1] (2 x unit - 1), as the Enhanced suite's compare_images.py"
        ),
        "peak_distance": (
            "distance between the brightest scored pixel of the prediction and of the truth (ties: the centroid of "
            "the maximal pixels), in pixels"
            + (f" and in metres at {mpp:g} m per pixel" if mpp else "")
            + "; peak_hit's mean is the share of maps at distance 0"
        ),
        "sharpness_ratio": (
            "var(L(p)) / var(L(t)) over the scored pixels, L the 4-neighbour Laplacian [[0,1,0],[1,-4,1],[0,1,0]] "
            "(OpenCV cv2.Laplacian ksize=1) with reflected borders; null for a constant truth, left out of the means"
        ),
        "lpips": lpips.describe() if lpips else "left out (evaluate.lpips: false)",
        "fid_kid": inception.describe(n) if inception else "left out (evaluate.fid_weights: null)",
    }
    return out


def headline_note(summary: dict) -> dict:
    """Which RadioDiff entry is the headline: the mean of its K samples when the sample stage
    drew it (``sample.ensemble``), else the single sample (RadioDiff's published protocol)."""
    if ENSEMBLE_METHOD in summary:
        k = summary[ENSEMBLE_METHOD]["k"]
        return {"radiodiff": ENSEMBLE_METHOD, "k": k, "what": f"the per-pixel mean of {k} samples per map"}
    return {"radiodiff": "radiodiff", "k": 1, "what": "a single sample per map (RadioDiff's published protocol)"}


def seed_spread(per_seed: dict[int, dict]) -> dict:
    """RadioDiff's headline metrics under each sampling seed, with their mean, standard deviation
    (ddof 1) and range."""
    out: dict = {"seeds": list(per_seed)}
    for k in ("nmse", "rmse", "rmse_db", "ssim", "psnr"):
        values = [s.get(k) for s in per_seed.values()]
        if any(v is None or not math.isfinite(v) for v in values):
            continue
        out[k] = {
            "values": values,
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
        }
    return out


def headline_table(summary: dict) -> str:
    """A plain-text table of the headline metrics (for logs and the CLI)."""
    lines = [f"{'method':<14} " + " ".join(f"{k:>10}" for k in (*HEADLINE, "ms_per_map"))]
    for m, s in summary.items():
        if m in NOT_METHODS:
            continue
        vals = [s.get(k, float("nan")) for k in (*HEADLINE, "ms_per_map")]
        lines.append(f"{m:<14} " + " ".join(f"{v:>10.4g}" for v in vals))
    return "\n".join(lines)
