"""Whole maps of any size: the window tiling, stitching, whole-map conditions, and the challenge
score of the whole-building evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radiodiff.core.errors import DataError, ParamsError
from radiodiff.core.io import write_png
from radiodiff.data.icassp import parse_name, write_metadata
from radiodiff.data.radiomapseer import make_condition
from radiodiff.evaluate import score_whole
from radiodiff.evaluate.whole_maps import radiomapseer_whole
from radiodiff.evaluate.windows import Tiling, blend_weight, predict_windows, window_origins
from radiodiff.models.map_model import MapModel, MapModelRecord
from radiodiff.physics.baselines import log_distance_unit


@pytest.mark.parametrize("length, size, overlap, step", [(100, 32, 0.25, 1), (176, 64, 0.25, 4), (64, 64, 0.5, 4)])
def test_windows_cover_the_map_with_the_overlap_asked(length, size, overlap, step):
    origins = window_origins(length, size, overlap, step)
    assert origins[0] == 0 and origins[-1] == length - size
    assert all(o % step == 0 for o in origins)
    covered = np.zeros(length, bool)
    for o in origins:
        covered[o : o + size] = True
    assert covered.all()
    assert all(b - a <= size * (1 - overlap) for a, b in zip(origins, origins[1:], strict=False))


def test_a_map_smaller_than_a_window_is_padded_to_one_window():
    tiling = Tiling.of((20, 50), 32, 0.25, 4)
    assert tiling.padded == (32, 52) and tiling.origins == ((0, 0), (0, 20))
    with pytest.raises(ParamsError, match="overlap"):
        window_origins(100, 32, 1.0)


def test_blend_weight_is_positive_and_peaks_at_the_centre():
    w = blend_weight(16)
    assert float(w.min()) > 0 and float(w[7, 7]) == pytest.approx(float(w.max()))


class PhysicsEcho(MapModel):
    """A stand-in RadioMapSeer model whose map is its condition's physics channel: stitching it
    must give back the whole map's log-distance prior."""

    kind, is_latent = "echo", False

    def __init__(self, size=32, metres=2.0):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.record = MapModelRecord(
            dataset="radiomapseer", condition="physics", physics_exponent=2.5, image_size=size, metres_per_pixel=metres
        )

    def forward(self, condition, steps=None, generator=None):
        assert condition.shape[-2:] == (self.grid_px,) * 2
        return (condition[:, 2:3] + 1.0) / 2.0


def test_a_map_wider_than_two_and_a_half_windows_each_way_stitches_exactly():
    """176×208 px at 1 m/px for a 32-px model at 2 m/px: 88×104 model pixels, 2.75×3.25 windows.
    The output has the input's size, buildings 0, and its peak at a Tx near a corner."""
    rng = np.random.default_rng(0)
    buildings = np.zeros((176, 208), bool)
    for _ in range(12):
        r, c = rng.integers(20, 150), rng.integers(20, 180)
        buildings[r : r + 15, c : c + 20] = True
    tx = (3, 202)
    pipe = PhysicsEcho()
    gain, tiling = radiomapseer_whole(pipe, buildings, tx, pixel_size_m=1.0, window={"overlap": 0.25})
    assert gain.shape == buildings.shape and len(tiling.origins) >= 12
    assert (gain[buildings] == 0).all()
    cond, b_small, tx_small = make_condition(buildings, tx, (88, 104), "physics", 2.5, pixel_size_m=1.0)
    assert tx_small == (1, 101)
    stitched, _ = predict_windows(pipe, torch.from_numpy(cond))
    assert np.allclose(stitched[0].numpy(), (cond[2] + 1) / 2, atol=1e-5), "blending a constant field is exact"
    prior = log_distance_unit((88, 104), tx_small, 2.5, pixel_size_m=2.0)
    assert np.unravel_index(np.argmax(prior), prior.shape) == tx_small
    peak = np.unravel_index(np.argmax(gain), gain.shape)
    assert abs(peak[0] - tx[0]) <= 2 and abs(peak[1] - tx[1]) <= 2


def test_a_map_smaller_than_a_window_keeps_its_size():
    buildings = np.zeros((40, 24), bool)
    gain, tiling = radiomapseer_whole(PhysicsEcho(), buildings, (5, 5), pixel_size_m=1.0)
    assert gain.shape == (40, 24) and tiling.origins == ((0, 0),)


@pytest.mark.parametrize(
    "tx, message", [((0, 99), "outside the 50×40 map"), ((10, 10), "inside a building"), ((-1, 3), "outside")]
)
def test_a_bad_tx_is_one_clear_error(tx, message):
    buildings = np.zeros((40, 50), bool)
    buildings[5:15, 5:15] = True
    with pytest.raises(DataError, match=message):
        radiomapseer_whole(PhysicsEcho(), buildings, tx, where="b.png")


def _arranged(tmp_path, names, size=(20, 30)):
    rows = []
    (tmp_path / "arranged/inputs").mkdir(parents=True)
    (tmp_path / "arranged/targets").mkdir()
    for name in names:
        sid = parse_name(name)
        write_png(tmp_path / f"arranged/targets/{name}.png", np.full(size, 100, np.uint8))
        write_png(tmp_path / f"arranged/inputs/{name}.png", np.zeros((*size, 3), np.uint8))
        rows.append(
            {"name": name, "building": sid.building, "antenna": sid.antenna, "band": sid.band, "sample": sid.sample,
             "width": size[1], "height": size[0],
             "split": "test"}
        )  # fmt: skip
    write_metadata(tmp_path / "arranged/metadata.csv", rows, list(rows[0]))
    return tmp_path / "arranged"


def test_the_challenge_score_weights_tasks_by_their_samples(tmp_path):
    """Errors of 1, 2 and 3 dB on Ant1 f1, Ant1 f2 and Ant2 f1: T1 = 1, T2 = √(5/2), T3 = √(14/3)."""
    names = ["B1_Ant1_f1_S0", "B1_Ant1_f2_S0", "B1_Ant2_f1_S0"]
    arranged = _arranged(tmp_path, names)
    samples = tmp_path / "samples"
    (samples / "m").mkdir(parents=True)
    for name, err in zip(names, (1, 2, 3), strict=True):
        write_png(samples / "m" / f"{name}.png", np.full((20, 30), 100 + err, np.uint8))
    (samples / "sampling.json").write_text(json.dumps({"methods": {"m": {"ms_per_map": 1.0}}}))
    summary = score_whole.run({}, arranged, samples, tmp_path / "out")
    s = json.loads((tmp_path / "out/summary.json").read_text())["m"]
    t1, t2, t3 = 1.0, np.sqrt(5 / 2), np.sqrt(14 / 3)
    assert s["tasks"]["T1"]["rmse_db"] == pytest.approx(t1)
    assert s["tasks"]["T2"]["rmse_db"] == pytest.approx(t2)
    assert s["tasks"]["T3"]["rmse_db"] == pytest.approx(t3)
    assert s["weighted_rmse_db"] == pytest.approx(0.3 * t1 + 0.3 * t2 + 0.4 * t3) == summary["m"]
    assert s["per_band"]["1"]["rmse_db"] == pytest.approx(np.sqrt(5))
    assert s["per_band"]["1"]["mean_image_rmse_db"] == pytest.approx(2.0)
    rows = (tmp_path / "out/per_sample.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("name,method")


def test_a_prediction_of_the_wrong_size_names_its_file(tmp_path):
    arranged = _arranged(tmp_path, ["B1_Ant1_f1_S0"])
    (tmp_path / "samples/m").mkdir(parents=True)
    write_png(tmp_path / "samples/m/B1_Ant1_f1_S0.png", np.zeros((10, 10), np.uint8))
    (tmp_path / "samples/sampling.json").write_text(json.dumps({"methods": {"m": {"ms_per_map": 1.0}}}))
    with pytest.raises(DataError, match=r"m/B1_Ant1_f1_S0.png: 10×10 px, the building is 30×20"):
        score_whole.run({}, arranged, tmp_path / "samples", tmp_path / "out")
    assert not (tmp_path / "out").exists()
