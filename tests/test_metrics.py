"""Evaluation metrics against hand-computed values on tiny maps (REFERENCE §4)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from radiodiff.core.encodings import ICASSP_DB_PER_UNIT, RADIOMAPSEER_DB_PER_UNIT
from radiodiff.metrics import (
    MetricAccumulator,
    brightest_point,
    building_pixels,
    error_sums,
    inception_distances,
    laplacian,
    masked_ssim,
    peak_distance_px,
    per_image_metrics,
    relative_error,
    sharpness_ratio,
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
    # no rmse_db without db_per_unit, no peak_distance_m without metres_per_pixel
    assert set(m) == {"nmse", "rmse", "mae", "psnr", "ssim", "relative_error", "peak_distance_px", "peak_hit"} | {
        "sharpness_ratio"
    }
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
    # 2×2 maps are too small for SSIM; every truth here is constant: no sharpness ratio
    assert s["n_undefined"] == {"nmse": 1, "ssim": 3, "sharpness_ratio": 3}
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
    assert s["n_undefined"] == {"nmse": 1, "ssim": 1, "sharpness_ratio": 1}
    assert not math.isnan(s["rmse"])


# --------------------------------------------------------------------------------------------
# Structure scores (the Enhanced suite's compare_images.py)
# --------------------------------------------------------------------------------------------


def test_relative_error_by_hand():
    # on [-1, 1]: truth 1, 0.5, 0; prediction 0.75, 0.5, 0.25
    target, pred = img([1.0, 0.75, 0.5]), img([0.875, 0.75, 0.625])
    # sqrt(0.25 / 1) = 0.5; 0; sqrt(0.25 / 1e-8) clipped to 1
    assert relative_error(pred, target).item() == approx(0.5, rel=1e-7)
    assert relative_error(pred, target, torch.tensor([[[[True, True, False]]]])).item() == approx(0.25, rel=1e-7)
    assert relative_error(target, target).item() == 0.0
    assert per_image_metrics(pred, target)["relative_error"].item() == approx(0.5, rel=1e-7)


def test_brightest_point_distance_ties_and_metres():
    target = img([0.9, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1])  # peak (0, 0)
    pred = img([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.8, 0.2, 0.8])  # a tie: (2, 0) and (2, 2), centroid (2, 1)
    assert brightest_point(pred).tolist() == [[2.0, 1.0]]
    m = per_image_metrics(pred, target, metres_per_pixel=4.0)
    assert m["peak_distance_px"].item() == approx(math.sqrt(5))
    assert m["peak_distance_m"].item() == approx(4 * math.sqrt(5))
    assert m["peak_hit"].item() == 0.0
    mask = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    mask[0, 0, 2, 2] = False  # the masked pixel does not count: the peak is (2, 0)
    assert peak_distance_px(pred, target, mask).item() == approx(2.0)
    assert per_image_metrics(target, target)["peak_hit"].item() == 1.0
    empty = per_image_metrics(pred, target, torch.zeros(1, 1, 3, 3, dtype=torch.bool))
    assert math.isnan(empty["peak_distance_px"].item()) and math.isnan(empty["peak_hit"].item())
    acc = MetricAccumulator(metres_per_pixel=1.0)
    acc.add(torch.cat([pred, target]), torch.cat([target, target]))
    assert acc.summary()["peak_hit"] == 0.5  # the share of maps at distance 0


def test_sharpness_ratio_by_hand_and_against_opencv():
    import cv2

    spike = img([0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0])
    # reflected borders: L = [[0, 2, 0], [2, -4, 2], [0, 2, 0]]
    assert laplacian(spike)[0, 0].tolist() == [[0, 2, 0], [2, -4, 2], [0, 2, 0]]
    var = 32 / 9 - (4 / 9) ** 2  # population variance of L
    half = sharpness_ratio(0.5 * spike, spike).item()
    assert half == approx(0.25)  # var(L(p)) = 0.25 var(L(t))
    assert sharpness_ratio(spike, 0.5 * spike).item() == approx(var / (0.25 * var))
    flat = torch.full_like(spike, 0.3)
    assert sharpness_ratio(flat, spike).item() == 0.0  # a constant prediction has no detail
    assert math.isnan(sharpness_ratio(spike, flat).item())  # a constant truth: undefined
    torch.manual_seed(0)
    x = torch.rand(2, 1, 7, 9, dtype=torch.float64)
    ref = torch.from_numpy(np.stack([cv2.Laplacian(x[i, 0].numpy(), cv2.CV_64F, ksize=1) for i in range(2)]))
    torch.testing.assert_close(laplacian(x)[:, 0], ref)
    acc = MetricAccumulator()
    acc.add(torch.cat([0.5 * spike, spike]), torch.cat([spike, flat]))
    s = acc.summary()
    assert s["sharpness_ratio"] == approx(0.25) and s["n_undefined"]["sharpness_ratio"] == 1  # left out


def test_accumulator_extra_scores():
    acc = MetricAccumulator(extra_metrics=("lpips",))
    acc.add(PRED, TARGET, scores={"lpips": torch.tensor([0.5])}, names=["a"])
    acc.add(PRED, TARGET, scores={"lpips": torch.tensor([0.25])}, names=["b"])
    assert [r["lpips"] for r in acc.to_rows()] == [0.5, 0.25] and acc.summary()["lpips"] == 0.375
    with pytest.raises(ValueError, match="expected"):
        acc.add(PRED, TARGET)


def test_inception_distances_by_hand():
    """FID of Gaussians with equal covariance is the squared distance of the means; KID is the
    unbiased MMD² of the cubic kernel, checked against its formula."""
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(40, 3)))
    shifted = real + torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
    d = inception_distances(real, shifted)
    assert d["fid"] == approx(5.0, rel=1e-6) and d["n"] == 40
    assert inception_distances(real, real)["fid"] == approx(0.0, abs=1e-9)
    x, y = real.numpy(), shifted.numpy()
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3  # noqa: E731
    m = len(x)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    mmd = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / m**2
    assert d["kid"] == approx(mmd, rel=1e-9)
    assert inception_distances(real[:1], shifted[:1]) == {"fid": None, "kid": None, "n": 1}


def test_fid_and_kid_per_method_from_a_local_inception_file(random_inception, tmp_path, monkeypatch):
    """``evaluate.fid_weights``: torch-fidelity's Inception-v3 loaded from the file (random weights
    here), the truth's and each method's features over the split, FID and KID in the method's
    summary with n; a missing or foreign file is a ParamsError naming the key. The distances'
    arithmetic is test_inception_distances_by_hand's: here each call is recorded (a 2048-d FID is a
    15-s matrix square root on this CPU), so the test checks which features reach it and that its
    result is the summary's."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.evaluate import score_test
    from radiodiff.evaluate.perceptual import InceptionFeatures
    from radiodiff.evaluate.score_test import Scorer, perceptual_scorers

    calls = []

    def recorded(real, fake):
        calls.append((real, fake))
        return {"fid": float(len(calls)), "kid": -float(len(calls)), "n": len(real)}

    monkeypatch.setattr(score_test, "inception_distances", recorded)

    lpips, inception = perceptual_scorers({"lpips": False, "fid_weights": str(random_inception)})
    assert lpips is None and isinstance(inception, InceptionFeatures)
    assert perceptual_scorers({}) == (None, None)
    torch.manual_seed(0)
    target = torch.rand(3, 1, 16, 16) * 2 - 1
    batch = {"target": target, "buildings": torch.zeros(3, 1, 16, 16), "name": ["a", "b", "c"]}
    truth = (target + 1) / 2
    scorer = Scorer("radiomapseer", ["copy", "noisy"], RADIOMAPSEER_DB_PER_UNIT, inception=inception)
    scorer.add(batch, {"copy": truth.clone(), "noisy": (truth + 0.3 * torch.rand_like(truth)).clamp(0, 1)})
    summary, _ = scorer.result()
    feats = {k: torch.cat(v) for k, v in scorer.features.items()}
    assert feats["truth"].shape == (3, 2048) and torch.equal(feats["truth"], feats["copy"])
    assert not torch.equal(feats["truth"], feats["noisy"])
    assert len(calls) == 2 and all(torch.equal(real, feats["truth"]) for real, _ in calls)
    assert [torch.equal(fake, feats[m]) for (_, fake), m in zip(calls, ("copy", "noisy"), strict=True)] == [True, True]
    assert [(summary[m]["fid"], summary[m]["kid"], summary[m]["n_fid"]) for m in ("copy", "noisy")] == [
        (1.0, -1.0, 3),
        (2.0, -2.0, 3),
    ]
    with pytest.raises(ParamsError, match="evaluate.fid_weights: .*missing.pth not found"):
        InceptionFeatures(tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ParamsError, match="evaluate.fid_weights: .*other.pth is not torch-fidelity's Inception"):
        InceptionFeatures(tmp_path / "other.pth")


def test_calibration_of_the_ensembles_spread_by_hand():
    """K = 2 samples: a std of 1 dB everywhere, errors of 1 and 3 dB: half the pixels inside
    ±2σ, all inside the t interval (t(0.975, 1)·√1.5 = 15.6σ); the reliability bin [1, 2) dB holds
    them, observed RMSE √5, expected √1.5; images ranked alike by std and RMSE."""
    from radiodiff.evaluate.uncertainty import Calibration, ensemble_std, t_quantile

    x = np.array([[1.0, 2.0], [3.0, 6.0]])  # two draws at two pixels
    assert ensemble_std(x.sum(0), (x * x).sum(0), 2).tolist() == pytest.approx([np.sqrt(2), np.sqrt(8)])
    assert t_quantile(2) == approx(12.706204736, rel=1e-8)
    db = RADIOMAPSEER_DB_PER_UNIT
    cal = Calibration(2, db, "outdoor", "radiodiff_mean")
    target = torch.full((2, 1, 2, 2), 0.5, dtype=torch.float64)
    err = torch.tensor([[1.0, 3.0], [-1.0, -3.0]], dtype=torch.float64) / db
    mean = target + torch.stack([err, 2 * err])[:, None]  # image 2: errors 2 and 6 dB
    std = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0)])[:, None].double() / db
    mask = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    mask[1, 0, 1] = False  # image 2 scores its first row only: errors 2 and 6 dB, std 2 dB
    cal.add(target, mean, std, mask)
    out = cal.result()
    assert out["pixels"] == 6 and out["k"] == 2 and out["scope"] == "outdoor"
    assert out["coverage"]["within_2sigma"] == approx(3 / 6)
    assert out["coverage"]["t_interval"]["share"] == 1.0
    rel = out["reliability"]
    assert rel["pixels"][2] == 4 and rel["pixels"][3] == 2  # bins [1, 2) and [2, 4) dB
    assert rel["observed_rmse_db"][2] == approx(np.sqrt(5)) and rel["observed_rmse_db"][3] == approx(np.sqrt(20))
    assert rel["predicted_std_db"][2] == approx(1.0) and rel["expected_rmse_db"][2] == approx(np.sqrt(1.5))
    assert rel["observed_rmse_db"][0] is None
    assert out["rank_correlation"]["n_images"] == 2 and out["rank_correlation"]["spearman"] is None  # < 3 images
    cal.add(target[:1], target[:1] + 5 * err[None, None], 3 * std[:1], None)  # a third image, larger both
    assert cal.rank_correlation()["spearman"] == approx(1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        Calibration(1, db, "outdoor", "radiodiff_mean")


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


def test_icassp_ensemble_spread_truth_and_scores_on_valid_pixels(tmp_path, random_alexnet):
    """ICASSP through the sample stage's ensemble (the std of K = 2 samples, 0 on the padding) and
    the scorer (LPIPS and the calibration on the valid pixels)."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.evaluate.maps import read_std
    from radiodiff.evaluate.perceptual import LPIPSScore
    from radiodiff.evaluate.sample_test import EnsembleMean
    from radiodiff.evaluate.score_test import Scorer
    from radiodiff.evaluate.uncertainty import Calibration

    torch.manual_seed(0)
    valid = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    valid[:, :, :, 24:] = False  # padded columns
    target = torch.where(valid, torch.rand(2, 1, 32, 32) * 2 - 1, -1.0)
    batch = {
        "target": target,
        "valid": valid,
        "condition": torch.full((2, 3, 32, 32), -1.0),
        "name": ["B1_Ant1_f1_S0", "B1_Ant1_f2_S1"],
    }
    draws = [torch.rand(2, 1, 32, 32) for _ in range(2)]
    ensemble = EnsembleMean(tmp_path, "icassp", 2, 32, 2)
    for i, raw in enumerate(draws):
        ensemble.add(batch, raw, last_seed=i == 1)
    ensemble.close()
    std = read_std(tmp_path / "uncertainty", batch["name"])
    expect = (draws[0] - draws[1]).abs() / math.sqrt(2) * valid
    torch.testing.assert_close(std, expect, rtol=0, atol=1e-6)
    assert not list(tmp_path.glob(".ensemble*"))  # the running sums are removed
    mean = (draws[0] + draws[1]) / 2
    cal = Calibration(2, ICASSP_DB_PER_UNIT, "valid", "radiodiff_mean")
    scorer = Scorer(
        "icassp", ["radiodiff_mean"], ICASSP_DB_PER_UNIT, metres_per_pixel=0.25,
        lpips=LPIPSScore("alex", random_alexnet), calibration=cal,
    )  # fmt: skip
    scorer.add(batch, {"radiodiff_mean": mean}, std=std)
    summary, rows = scorer.result()
    assert summary["uncertainty"]["pixels"] == int(valid.sum()) and summary["uncertainty"]["scope"] == "valid"
    assert summary["radiodiff_mean"]["lpips"] > 0 and "lpips" not in summary["radiodiff_mean"]["open"]
    peak = [r for r in rows if r["scope"] == "valid"][0]
    assert peak["peak_distance_m"] == approx(0.25 * peak["peak_distance_px"])
    with pytest.raises(ParamsError, match="LPIPS alex needs maps of at least 31 px"):
        LPIPSScore("alex", random_alexnet)(mean[..., :16, :16], mean[..., :16, :16])
