"""Evaluation metrics against hand-computed values on tiny maps (REFERENCE §4)."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from radiodiff.core.encodings import ICASSP_DB_PER_UNIT, RADIOMAPSEER_DB_PER_UNIT
from radiodiff.metrics import (
    MetricAccumulator,
    building_pixels,
    error_sums,
    masked_ssim,
    per_image_metrics,
    whole_set_rmse,
    zero_buildings,
)


def img(*rows) -> torch.Tensor:
    """A (1, 1, H, W) float64 map from nested lists."""
    return torch.tensor(rows, dtype=torch.float64)[None, None]


# pred − target = [[0, −0.25], [0.25, −0.25]]
PRED = img([0.5, 0.25], [1.0, 0.0])
TARGET = img([0.5, 0.5], [0.75, 0.25])


def approx(x, rel=1e-9, abs=1e-12):
    return pytest.approx(x, rel=rel, abs=abs)


# --------------------------------------------------------------------------------------------
# Per-image values
# --------------------------------------------------------------------------------------------


def test_metrics_match_hand_values():
    m = per_image_metrics(PRED, TARGET)
    sse = 0.0**2 + 0.25**2 + 0.25**2 + 0.25**2  # 0.1875
    mse = sse / 4
    assert m["nmse"].item() == approx(sse / (0.5**2 + 0.5**2 + 0.75**2 + 0.25**2))  # 0.1875 / 1.125 = 1/6
    assert m["nmse"].item() == approx(1 / 6)
    assert m["rmse"].item() == approx(math.sqrt(mse))
    assert m["mae"].item() == approx((0 + 0.25 + 0.25 + 0.25) / 4)
    assert m["psnr"].item() == approx(10 * math.log10(1 / mse))
    assert set(m) == {"nmse", "rmse", "mae", "psnr", "ssim"}  # no rmse_db without db_per_unit
    assert all(v.shape == (1,) and v.dtype == torch.float64 for v in m.values())
    assert math.isnan(m["ssim"].item())  # 2×2 is below the SSIM window's minimum size (6×6)


def test_masked_metrics_score_only_the_mask():
    mask = torch.tensor([[True, False], [True, True]])[None, None]
    m = per_image_metrics(PRED, TARGET, mask)
    # scored pixels: errors 0, 0.25, −0.25; targets 0.5, 0.75, 0.25
    sse = 0.25**2 + 0.25**2
    assert m["nmse"].item() == approx(sse / (0.5**2 + 0.75**2 + 0.25**2))  # 1/7
    assert m["rmse"].item() == approx(math.sqrt(sse / 3))
    assert m["mae"].item() == approx(0.5 / 3)
    assert m["psnr"].item() == approx(10 * math.log10(3 / sse))


def test_pixels_outside_the_mask_are_ignored_even_if_nan():
    pred = PRED.clone()
    pred[0, 0, 0, 1] = float("nan")
    mask = torch.tensor([[True, False], [True, True]])[None, None]
    m = per_image_metrics(pred, TARGET, mask)
    assert m["rmse"].item() == approx(math.sqrt((0.25**2 + 0.25**2) / 3))


def test_batch_rows_are_independent_and_mask_broadcasts_over_channels():
    pred = torch.cat([PRED, torch.full_like(PRED, 0.5)])
    target = torch.cat([TARGET, torch.full_like(TARGET, 0.25)])
    m = per_image_metrics(pred, target)
    assert m["rmse"].tolist() == [approx(math.sqrt(0.1875 / 4)), approx(0.25)]
    assert m["nmse"][1].item() == approx(4 * 0.25**2 / (4 * 0.25**2))  # = 1
    # Two channels, one (B, 1, H, W) mask: the scored set is the mask on both channels.
    two = torch.cat([PRED, PRED], dim=1)
    mask = torch.tensor([[True, False], [True, True]])[None, None]
    sums = error_sums(two, torch.cat([TARGET, TARGET], dim=1), mask)
    assert sums["n"].item() == 6 and sums["sse"].item() == approx(2 * 0.125)


def test_rmse_db_scales_rmse():
    rms = per_image_metrics(PRED, TARGET, db_per_unit=RADIOMAPSEER_DB_PER_UNIT)
    ica = per_image_metrics(PRED, TARGET, db_per_unit=ICASSP_DB_PER_UNIT)
    rmse = math.sqrt(0.1875 / 4)
    assert RADIOMAPSEER_DB_PER_UNIT == 99.16 and ICASSP_DB_PER_UNIT == 147.0
    assert rms["rmse_db"].item() == approx(99.16 * rmse)
    assert ica["rmse_db"].item() == approx(147.0 * rmse)
    with pytest.raises(ValueError, match="db_per_unit"):
        per_image_metrics(PRED, TARGET, db_per_unit=-1)


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


def test_zero_target_gives_nan_nmse():
    zero = torch.zeros_like(TARGET)
    m = per_image_metrics(PRED, zero)
    assert math.isnan(m["nmse"].item())
    assert m["rmse"].item() == approx(math.sqrt((0.25 + 0.0625 + 1.0 + 0.0) / 4))
    assert math.isnan(per_image_metrics(zero, zero)["nmse"].item())  # 0/0 too: undefined, not 0


def test_empty_mask_gives_nan_everywhere():
    pred, target = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    m = per_image_metrics(pred, target, torch.zeros(1, 1, 8, 8, dtype=torch.bool), db_per_unit=99.16)
    assert all(math.isnan(v.item()) for v in m.values()), m


def test_perfect_prediction_gives_infinite_psnr():
    x = torch.rand(2, 1, 8, 8)
    m = per_image_metrics(x, x.clone())
    assert torch.isinf(m["psnr"]).all() and (m["psnr"] > 0).all()
    assert (m["rmse"] == 0).all() and (m["mae"] == 0).all() and (m["nmse"] == 0).all()


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 2\).*\(1, 1, 2, 3\)"):
        per_image_metrics(PRED, torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="B, C, H, W"):
        per_image_metrics(PRED[0], TARGET[0])
    with pytest.raises(ValueError, match="mask shape"):
        per_image_metrics(PRED, TARGET, torch.ones(1, 1, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        per_image_metrics(PRED, TARGET, torch.ones(1, 1, 2, 2))


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert per_image_metrics(x, x.clone())["ssim"].tolist() == [approx(1.0, rel=1e-6)] * 3


def test_ssim_matches_torchmetrics_directly():
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 16, 16, generator=g)
    pred = (target + 0.1 * torch.randn(2, 1, 16, 16, generator=g)).clamp(0, 1)
    expected = structural_similarity_index_measure(
        pred,
        target,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        k1=0.01,
        k2=0.03,
        data_range=1.0,
        reduction="none",
    )
    got = per_image_metrics(pred, target)["ssim"]
    assert torch.allclose(got, expected.double(), atol=1e-7)
    assert 0.0 < got.min() < got.max() < 1.0


def test_masked_ssim_averages_the_full_map_over_the_mask():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 1, 12, 12, generator=g)
    pred = (target + 0.2 * torch.randn(2, 1, 12, 12, generator=g)).clamp(0, 1)
    _, full = structural_similarity_index_measure(
        pred, target, sigma=1.5, k1=0.01, k2=0.03, data_range=1.0, reduction="none", return_full_image=True
    )
    mask = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    mask[0, :, :6, :] = True  # top half of image 0
    mask[1, :, 3, 4] = True  # one pixel of image 1
    got = masked_ssim(pred, target, mask)
    assert got[0].item() == approx(full[0, :, :6, :].double().mean().item(), rel=1e-6)
    assert got[1].item() == approx(full[1, 0, 3, 4].item(), rel=1e-6)
    # An all-True mask reproduces the unmasked value.
    everything = masked_ssim(pred, target, torch.ones_like(mask))
    assert torch.allclose(everything, masked_ssim(pred, target), atol=1e-6)


# --------------------------------------------------------------------------------------------
# Buildings
# --------------------------------------------------------------------------------------------


def test_zero_buildings_bool_and_fractional_masks():
    pred = img([0.9, 0.8], [0.7, 0.6])
    bool_mask = torch.tensor([[True, False], [False, True]])[None, None]
    assert zero_buildings(pred, bool_mask).tolist() == [[[[0.0, 0.8], [0.7, 0.0]]]]
    assert pred.tolist() == [[[[0.9, 0.8], [0.7, 0.6]]]]  # a copy: the input is untouched
    frac = img([1.0, 0.5], [0.9999999, 0.0]).float()
    # Default: only fully covered pixels (up to rounding) are known buildings.
    assert zero_buildings(pred, frac).tolist() == [[[[0.0, 0.8], [0.0, 0.6]]]]
    assert zero_buildings(pred, frac, min_fraction=0.5).tolist() == [[[[0.0, 0.0], [0.0, 0.6]]]]
    assert building_pixels(frac).tolist() == [[[[True, False], [True, False]]]]
    # (B, 1, H, W) buildings broadcast over channels.
    two = torch.ones(1, 2, 2, 2)
    assert zero_buildings(two, bool_mask).sum().item() == 4
    with pytest.raises(ValueError, match=r"\(1, 1, 3, 3\).*\(1, 1, 2, 2\)"):
        zero_buildings(pred, torch.ones(1, 1, 3, 3, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# Whole-set RMSE and the accumulator
# --------------------------------------------------------------------------------------------


def two_images():
    """Image a: 4 scored pixels, error 0.1 each; image b: 1 scored pixel, error 0.5."""
    target = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    pred = target.clone()
    pred[0] += 0.1
    pred[1, 0, 0, 0] += 0.5
    mask = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    mask[0] = True
    mask[1, 0, 0, 0] = True
    return pred, target, mask


def test_whole_set_rmse_differs_from_mean_of_per_image_rmse():
    pred, target, mask = two_images()
    m = per_image_metrics(pred, target, mask)
    assert m["rmse"].tolist() == [approx(0.1), approx(0.5)]
    mean_rmse = (0.1 + 0.5) / 2  # 0.3
    whole = math.sqrt((4 * 0.1**2 + 0.5**2) / (4 + 1))  # √0.058 ≈ 0.2408
    sums = error_sums(pred, target, mask)
    assert whole_set_rmse(sums["sse"], sums["n"]) == approx(whole)
    assert whole_set_rmse([0.04, 0.25], [4, 1]) == approx(whole)
    assert whole_set_rmse(0.0, 0) != whole_set_rmse(0.0, 0)  # nan with no pixels
    assert abs(whole - mean_rmse) > 0.05
    acc = MetricAccumulator()
    acc.add(pred, target, mask)
    s = acc.summary()
    assert s["rmse"] == approx(mean_rmse)
    assert s["whole_set_rmse"] == approx(whole)
    assert s["n_images"] == 2 and s["n_scored_pixels"] == 5


def test_accumulator_rows_means_groups_and_csv(tmp_path):
    acc = MetricAccumulator(db_per_unit=ICASSP_DB_PER_UNIT)
    pred, target, mask = two_images()
    acc.add(pred, target, mask, names=["a", "b"], building="B1", band=torch.tensor([1, 2]))
    # A third image with an all-zero target: its NMSE is nan and is left out of the NMSE mean.
    acc.add(torch.full((1, 1, 2, 2), 0.2), torch.zeros(1, 1, 2, 2), names=["c"], building="B2", band=1)
    rows = acc.to_rows()
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    assert [r["building"] for r in rows] == ["B1", "B1", "B2"]
    assert [r["band"] for r in rows] == [1, 2, 1]
    assert [r["n_pixels"] for r in rows] == [4, 1, 4]
    assert rows[2]["rmse_db"] == approx(0.2 * 147.0, rel=1e-6)
    assert math.isnan(rows[2]["nmse"])
    s = acc.summary()
    assert s["nmse"] == approx((0.04 / 1.0 + 0.25 / 0.25) / 2)  # images a and b only
    assert s["n_undefined"] == {"nmse": 1, "ssim": 3}  # 2×2 maps are too small for SSIM
    assert s["rmse"] == approx((0.1 + 0.5 + 0.2) / 3, rel=1e-6)
    whole = math.sqrt((0.04 + 0.25 + 4 * 0.2**2) / 9)
    assert s["whole_set_rmse"] == approx(whole, rel=1e-6)
    assert s["whole_set_rmse_db"] == approx(whole * 147.0, rel=1e-6)
    by_band = acc.summary(group_by="band")
    assert set(by_band) == {"1", "2"} and by_band["1"]["n_images"] == 2
    assert by_band["2"]["rmse"] == approx(0.5)
    with pytest.raises(KeyError, match="nope"):
        acc.summary(group_by="nope")
    path = acc.write_csv(tmp_path / "per_sample.csv")
    with open(path, newline="") as f:
        read = list(csv.DictReader(f))
    assert [r["name"] for r in read] == ["a", "b", "c"]
    assert list(read[0])[:3] == ["name", "building", "band"]
    assert float(read[1]["rmse"]) == approx(0.5)
    with pytest.raises(ValueError, match="reserved"):
        acc.add(pred, target, rmse=1.0)
    with pytest.raises(ValueError, match="3 values"):
        acc.add(pred, target, band=[1, 2, 3])


def test_nanmean_of_all_nan_column_is_nan():
    acc = MetricAccumulator()
    acc.add(torch.rand(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    s = acc.summary()
    assert math.isnan(s["nmse"]) and math.isnan(s["ssim"])
    assert s["n_undefined"] == {"nmse": 1, "ssim": 1}
    assert not math.isnan(s["rmse"])


def test_ratio_interval_of_paired_images():
    """The ratio of means with a paired bootstrap interval: exact for proportional methods, the
    interval holding the ratio and narrowing with more images, nan pairs dropped."""
    import numpy as np

    from radiodiff.metrics import ratio_interval

    b = [0.01, 0.02, 0.05, 0.03]
    exact = ratio_interval([2 * v for v in b], b)
    assert exact["ratio"] == pytest.approx(2.0) and exact["ci95"] == pytest.approx([2.0, 2.0])
    rng = np.random.default_rng(1)
    small_b, big_b = rng.uniform(0.01, 0.05, 20), rng.uniform(0.01, 0.05, 2000)
    small = ratio_interval(small_b * rng.uniform(0.5, 1.5, 20), small_b)
    big = ratio_interval(big_b * rng.uniform(0.5, 1.5, 2000), big_b)
    for r in (small, big):
        assert r["ci95"][0] < r["ratio"] < r["ci95"][1]
    assert big["ci95"][1] - big["ci95"][0] < (small["ci95"][1] - small["ci95"][0]) / 3
    assert 0.95 < big["ratio"] < 1.05 and big["n_images"] == 2000
    assert ratio_interval([1.0, math.nan, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0])["n_images"] == 3
    assert math.isnan(ratio_interval([1.0], [2.0])["ratio"])
    assert ratio_interval(b, b, seed=3) == ratio_interval(b, b, seed=3)
    with pytest.raises(ValueError, match="paired"):
        ratio_interval([1.0, 2.0], [1.0])


def test_error_profile_by_distance_and_line_of_sight():
    """RadioMapSeer's error profile: RMSE in dB pooled over outdoor pixels, by line of sight
    behind a wall and by distance bin from the Tx (1 m pixels here)."""
    from radiodiff.evaluate.score_test import DISTANCE_EDGES_M, ErrorProfile

    db = RADIOMAPSEER_DB_PER_UNIT
    buildings = torch.zeros(1, 1, 24, 24)
    buildings[0, 0, :, 12] = 1.0  # a wall across the map: columns 13.. are out of sight of the Tx
    tx = torch.tensor([[12, 1]])
    target = torch.full((1, 1, 24, 24), 0.5, dtype=torch.float64)
    truth_error = torch.where(torch.arange(24) > 12, 3.0, 1.0).expand(1, 1, 24, 24)  # dB
    near = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    near[0, 0, 12, 2] = 2.0 / db  # one pixel 1 m from the Tx
    profile = ErrorProfile(["a", "b"], db, metres_per_pixel=1.0)
    profile.add(target, {"a": target + truth_error / db, "b": target + near}, buildings, tx)
    out = profile.result()
    sight = out["line_of_sight"]
    assert sight["pixels"] == {"los": 24 * 12, "nlos": 24 * 11}  # the wall column is not scored
    assert sight["rmse_db"]["a"]["los"] == pytest.approx(1.0) and sight["rmse_db"]["a"]["nlos"] == pytest.approx(3.0)
    dist = out["distance_m"]
    assert len(dist["pixels"]) == len(DISTANCE_EDGES_M) - 1 and sum(dist["pixels"]) == 24 * 23
    assert dist["pixels"][-1] == 0 and dist["rmse_db"]["a"][-1] is None  # nothing beyond 320 m
    first = dist["pixels"][0]  # pixels within 10 m of the Tx (all in sight)
    assert dist["rmse_db"]["b"][0] == pytest.approx(math.sqrt(4.0 / first))
    assert dist["rmse_db"]["b"][1] == pytest.approx(0.0) and dist["rmse_db"]["a"][0] == pytest.approx(1.0)
