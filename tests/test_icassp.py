"""ICASSP 2025 layout: antenna patterns, synthetic data, readers, arrangement, Tx-aware crops,
validation and the torch datasets, on tiny synthetic folders built in tmp_path."""

from __future__ import annotations

import csv
import filecmp
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from radiodiff.core.encodings import pl_db_to_unit, unit_to_pl_db
from radiodiff.core.errors import DataError, ParamsError
from radiodiff.core.io import read_png, write_png
from radiodiff.data.arrange_icassp import METADATA_COLUMNS, arrange
from radiodiff.data.icassp import (
    FREQUENCIES_HZ,
    ICASSPCropDataset,
    ICASSPDataset,
    SampleId,
    details_path,
    discover,
    input_path,
    parse_name,
    pattern_path,
    positions_path,
    read_details,
    read_metadata,
    read_positions,
    valid_mask,
)
from radiodiff.data.tx_crop import CROP_COLUMNS, crop, origin_range
from radiodiff.data.validate_icassp import validate
from radiodiff.physics.antenna import (
    ANTENNAS,
    make_patterns,
    pattern_gain_db,
    pattern_index,
    read_pattern,
    write_pattern,
)
from radiodiff.physics.propagation import fspl_db, pixel_geometry, wall_loss_db
from radiodiff.synthetic.icassp import MATERIALS, path_loss_db, synthesize

TASK3, TASK1 = "Task_3_ICASSP", "Task_1_ICASSP"
SPLIT = {"train": 0.8, "val": 0.1, "test": 0.1, "seed": 42}
N_BUILDINGS = 3


def _synth(out: Path, seed: int = 0) -> Path:
    synthesize(out, N_BUILDINGS, seed=seed, width_px=(48, 64), height_px=(48, 64), positions_per_antenna=1)
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return _synth(tmp_path_factory.mktemp("icassp") / "raw")


@pytest.fixture(scope="module")
def arranged(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icassp_arranged") / "arranged"
    arrange(raw, out, TASK3, SPLIT)
    return out


@pytest.fixture
def raw_copy(raw, tmp_path) -> Path:
    return Path(shutil.copytree(raw, tmp_path / "raw"))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- physics ------------------------------------------------------------------------------------


def test_fspl_at_one_metre_per_band():
    for band, expected in {1: 31.2, 2: 37.6, 3: 43.3}.items():
        assert float(fspl_db(1.0, FREQUENCIES_HZ[band])) == pytest.approx(expected, abs=0.1)


def test_two_walls_add_their_transmittance_and_path_loss_adds_up():
    trans = np.zeros((40, 40), dtype=np.float32)
    trans[:, 15] = 6.0
    trans[:, 25:27] = 10.0  # a 2 px wall counts once
    tx = (20, 5)
    walls = wall_loss_db(trans, tx)
    assert walls[20, 10] == 0.0
    assert walls[20, 20] == pytest.approx(6.0)
    assert walls[20, 35] == pytest.approx(16.0)

    pattern = make_patterns(0)[3]
    freq, azimuth = FREQUENCIES_HZ[2], 30.0
    pl = path_loss_db(trans, tx, freq, pattern, azimuth)
    # Pixel (20, 35) lies 30 px = 7.5 m along +columns (θ = 0°): pattern index (0 − 30) mod 360 = 330.
    expected = float(fspl_db(7.5, freq)) - pattern[330] + 16.0
    assert pl[20, 35] == pytest.approx(expected)
    # At the Tx the distance is floored at 0.1 m.
    assert pl[tx] == pytest.approx(float(fspl_db(0.1, freq)) - pattern[330])


def test_pattern_index_convention():
    pattern = np.arange(360, dtype=np.float64)
    _, theta = pixel_geometry((5, 5), (2, 2))
    theta_deg = np.degrees(theta)
    assert theta_deg[3, 2] == pytest.approx(90.0)  # straight below the Tx
    assert theta_deg[2, 3] == pytest.approx(0.0)  # to the right
    assert pattern_gain_db(pattern, theta_deg[3, 2], 90.0) == 0.0
    assert pattern_gain_db(pattern, theta_deg[2, 1], 0.0) == 180.0  # left
    assert pattern_gain_db(pattern, theta_deg[1, 2], 0.0) == 270.0  # above: θ = −90°
    assert pattern_index(359.6, 0.0) == 0
    assert pattern_index(10.0, 350.0) == 20


def test_patterns_isotropic_and_directional(tmp_path):
    patterns = make_patterns(0)
    assert sorted(patterns) == list(ANTENNAS)
    assert np.all(patterns[1] == 0.0)
    spans = [float(np.ptp(patterns[a])) for a in ANTENNAS[1:]]
    assert spans == sorted(spans)
    assert 10.0 <= spans[0] <= 14.0 and 45.0 <= spans[-1] <= 52.0
    for a in ANTENNAS[1:]:
        assert int(np.argmax(patterns[a])) in (0, 1, 359)  # boresight at index 0
        assert patterns[a].max() == 0.0  # relative gains, as the real patterns (peak about 0 dB)
        assert -25.0 <= patterns[a].mean() <= -5.0  # the real directional patterns' mean gains
    assert not np.array_equal(make_patterns(1)[4], patterns[4])

    path = tmp_path / "Ant4_Pattern.csv"
    write_pattern(path, patterns[4])
    assert len(path.read_text().splitlines()) == 360
    np.testing.assert_allclose(read_pattern(path), patterns[4], atol=1e-4)
    path.write_text("gain_db\n" + path.read_text())  # a header row is skipped
    np.testing.assert_allclose(read_pattern(path), patterns[4], atol=1e-4)


@pytest.mark.parametrize(
    "text, message",
    [("1\n" * 359, "360"), ("1\n" * 359 + "x\n", "row 360"), ("1,2\n" * 360, "row 1")],
)
def test_read_pattern_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "Ant2_Pattern.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read_pattern(path)
    assert str(path) in str(e.value)
    with pytest.raises(DataError, match="not found"):
        read_pattern(tmp_path / "missing.csv")


# --- synthetic layout ---------------------------------------------------------------------------


def test_synthesize_writes_the_full_layout(raw):
    for b in range(1, N_BUILDINGS + 1):
        w, h = read_details(raw / "Building_Details" / f"B{b}_Details.csv")
        assert (raw / "Building_Details" / f"B{b}_Details.csv").read_text().splitlines()[0] == "W,H"
        assert 48 <= w <= 64 and 48 <= h <= 64
        for a in ANTENNAS:
            for f in FREQUENCIES_HZ:
                pos_file = raw / "Positions" / f"Positions_B{b}_Ant{a}_f{f}.csv"
                assert pos_file.read_text().splitlines()[0] == "X,Y,Azimuth"
                (x, y, az), *_ = read_positions(pos_file)
                name = f"B{b}_Ant{a}_f{f}_S0.png"
                rgb = read_png(raw / "Inputs" / TASK3 / name, mode="RGB")
                pl = read_png(raw / "Outputs" / TASK3 / name, mode="L")
                assert rgb.shape == (h, w, 3) and pl.shape == (h, w)
                assert pl.min() >= 13 and pl.max() <= 160
                assert rgb[int(y), int(x), 1] == 0  # Tx on a non-wall pixel
                assert az == 0 if a == 1 else 0 <= az < 360
                dist, _ = pixel_geometry((h, w), (y, x))
                np.testing.assert_array_equal(rgb[..., 2], np.clip(np.rint(dist * 0.25), 0, 255))
                assert set(np.unique(rgb[..., 1])) <= {0} | {m.transmittance_db for m in MATERIALS}
                assert ((rgb[..., 0] > 0) == (rgb[..., 1] > 0)).all()
                task1 = raw / "Inputs" / TASK1 / name
                assert task1.exists() == (a == 1 and f == 1)
                if task1.exists():
                    assert filecmp.cmp(task1, raw / "Inputs" / TASK3 / name, shallow=False)
                    assert filecmp.cmp(raw / "Outputs" / TASK1 / name, raw / "Outputs" / TASK3 / name, shallow=False)
    for a in ANTENNAS:
        text = (raw / "Radiation_Patterns" / f"Ant{a}_Pattern.csv").read_text().splitlines()
        assert len(text) == 360 and all(float(v) == float(v) for v in text)
    assert len(discover(raw, TASK3)) == N_BUILDINGS * 15
    assert len(discover(raw, TASK1)) == N_BUILDINGS


def test_synthetic_path_loss_is_fspl_minus_gain_plus_walls(raw):
    patterns = {a: read_pattern(raw / "Radiation_Patterns" / f"Ant{a}_Pattern.csv") for a in ANTENNAS}
    for name in ("B1_Ant1_f1_S0", "B2_Ant4_f3_S0"):
        sid = parse_name(name)
        rgb = read_png(raw / "Inputs" / TASK3 / f"{name}.png", mode="RGB")
        pl = read_png(raw / "Outputs" / TASK3 / f"{name}.png", mode="L").astype(np.float64)
        x, y, az = read_positions(raw / "Positions" / f"Positions_B{sid.building}_Ant{sid.antenna}_f{sid.band}.csv")[0]
        tx = (int(y), int(x))
        dist, theta = pixel_geometry(pl.shape, tx)
        expected = (
            fspl_db(np.maximum(dist * 0.25, 0.1), FREQUENCIES_HZ[sid.band])
            - pattern_gain_db(patterns[sid.antenna], np.degrees(theta), az)
            + wall_loss_db(rgb[..., 1].astype(np.float32), tx)
        )
        np.testing.assert_array_equal(pl, np.clip(np.rint(expected), 13, 160))
        assert (np.clip(np.rint(expected), 13, 160) > pl.min()).any()  # not a constant map


def test_synthesize_is_deterministic(raw, tmp_path):
    same = _files(_synth(tmp_path / "again", seed=0))
    assert same == _files(raw)
    other = _files(_synth(tmp_path / "other", seed=1))
    assert other.keys() == same.keys()
    assert other != same


def test_synthesize_is_atomic(tmp_path):
    def boom(done, total):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        synthesize(tmp_path / "raw", 2, width_px=(32, 32), height_px=(32, 32), positions_per_antenna=1, progress=boom)
    assert list(tmp_path.iterdir()) == []


# --- readers ------------------------------------------------------------------------------------


def test_parse_name():
    assert parse_name("B3_Ant2_f1_S7") == SampleId(building=3, antenna=2, band=1, sample=7)
    assert parse_name("B12_Ant5_f3_S79.png").name == "B12_Ant5_f3_S79"
    for bad in ("B3_Ant2_f1", "b3_Ant2_f1_S7", "B3_Ant2_f1_S7_extra", "B3-Ant2-f1-S7"):
        with pytest.raises(DataError, match=bad):
            parse_name(bad)


def test_read_positions_variants(tmp_path):
    p = tmp_path / "Positions_B1_Ant2_f1.csv"
    for text in ("X,Y,Azimuth\n3,4,90\n5,6,180\n", "3,4,90\n5,6,180\n", ",X,Y,Azimuth\n0,3,4,90\n1,5,6,180\n"):
        p.write_text(text)
        np.testing.assert_array_equal(read_positions(p), [[3, 4, 90], [5, 6, 180]])
    p.write_text("X,Y\n3,4\n")
    np.testing.assert_array_equal(read_positions(p), [[3, 4, 0]])
    p.write_text("X,Y,Azimuth\n3,four,90\n")
    with pytest.raises(DataError, match=str(p)):
        read_positions(p)
    with pytest.raises(DataError, match="not found"):
        read_positions(tmp_path / "none.csv")


def test_read_details_and_discover_errors(tmp_path):
    p = tmp_path / "B1_Details.csv"
    p.write_text("W,H\n120,80\n")
    assert read_details(p) == (120, 80)
    p.write_text("W,H\n0,80\n")
    with pytest.raises(DataError, match=str(p)):
        read_details(p)
    with pytest.raises(DataError, match="Inputs"):
        discover(tmp_path, TASK3)
    (tmp_path / "Inputs" / TASK3).mkdir(parents=True)
    with pytest.raises(DataError, match="no PNG"):
        discover(tmp_path, TASK3)


def test_path_loss_unit_scaling():
    np.testing.assert_allclose(pl_db_to_unit([13, 160, 86.5, 0, 200]), [1, 0, 0.5, 1, 0])
    pl = np.arange(13, 161)
    np.testing.assert_allclose(unit_to_pl_db(pl_db_to_unit(pl)), pl)


# --- arrangement --------------------------------------------------------------------------------


def test_arrange_fspl_channel_and_split(raw, arranged):
    rows = read_metadata(arranged / "metadata.csv")
    assert list(rows[0].keys()) == METADATA_COLUMNS
    assert len(rows) == N_BUILDINGS * 15
    splits = {}
    for row in rows:
        splits.setdefault(row["split"], set()).add(row["building"])
    assert set(splits) == {"train", "val", "test"}
    assert sum(len(v) for v in splits.values()) == N_BUILDINGS  # each building in exactly one split

    patterns = {a: read_pattern(raw / "Radiation_Patterns" / f"Ant{a}_Pattern.csv") for a in ANTENNAS}
    for row in rows[::7]:
        name = row["name"]
        raw_rgb = read_png(raw / "Inputs" / TASK3 / f"{name}.png", mode="RGB")
        out = read_png(arranged / "inputs" / f"{name}.png", mode="RGB")
        np.testing.assert_array_equal(out[..., :2], raw_rgb[..., :2])
        assert filecmp.cmp(arranged / "targets" / f"{name}.png", raw / "Outputs" / TASK3 / f"{name}.png", False)
        tx_r, tx_c = int(row["tx_row"]), int(row["tx_col"])
        az, freq = float(row["azimuth_deg"]), float(row["frequency_hz"])
        pattern = patterns[int(row["antenna"])]
        h, w = int(row["height"]), int(row["width"])
        for r, c in ((0, 0), (h - 1, w - 1), (tx_r, tx_c), (h // 2, w // 3)):
            d = max(math.hypot(r - tx_r, c - tx_c) * 0.25, 0.1)
            theta = math.degrees(math.atan2(r - tx_r, c - tx_c))
            g = pattern[int(np.rint(theta - az)) % 360]
            expected = min(max(20 * math.log10(4 * math.pi * d * freq / 299_792_458.0) - g, 0), 255)
            assert abs(int(out[r, c, 2]) - expected) <= 0.5 + 1e-6  # rounded to uint8


def _arrange_error(root: Path, tmp_path: Path, match: str, path_part: str):
    with pytest.raises(DataError, match=match) as e:
        arrange(root, tmp_path / "arranged", TASK3, SPLIT)
    assert path_part in str(e.value)
    assert not (tmp_path / "arranged").exists()


def test_arrange_errors_name_the_file(raw_copy, tmp_path):
    pos = raw_copy / "Positions" / "Positions_B2_Ant3_f2.csv"
    pos.write_text("X,Y,Azimuth\n500,3,10\n")
    _arrange_error(raw_copy, tmp_path, "outside", str(pos))
    pos.write_text("X,Y,Azimuth\n")
    _arrange_error(raw_copy, tmp_path, "no positions", str(pos))


def test_arrange_counts_a_tx_inside_a_wall(raw_copy, tmp_path):
    """The arrange stage reports a Tx on a wall pixel (a real dataset's positions are data);
    predict refuses one (test_predict_whole_icassp_bad_inputs_name_the_file)."""
    sid = discover(raw_copy, TASK3)[0]
    rgb = read_png(input_path(raw_copy, TASK3, sid), "RGB")
    wall_r, wall_c = np.argwhere(rgb[..., :2].any(axis=-1))[0]
    pos = positions_path(raw_copy, sid.building, sid.antenna, sid.band)
    table = read_positions(pos)
    table[sid.sample, :2] = wall_c, wall_r
    pos.write_text("X,Y,Azimuth\n" + "".join(f"{c:g},{r:g},{az:g}\n" for c, r, az in table))
    summary = arrange(raw_copy, tmp_path / "arranged", TASK3, SPLIT)
    assert summary["tx_in_wall"] == {"samples": 1, "names": [sid.name]}


def test_arrange_unknown_antenna_and_size_mismatch(raw_copy, tmp_path):
    out_file = raw_copy / "Outputs" / TASK3 / "B1_Ant2_f1_S0.png"
    write_png(out_file, np.full((10, 10), 90, np.uint8))
    _arrange_error(raw_copy, tmp_path, "differs", str(out_file))
    out_file.unlink()
    (raw_copy / "Inputs" / TASK3 / "B1_Ant2_f1_S0.png").unlink()
    for kind in ("Inputs", "Outputs"):
        (raw_copy / kind / TASK3 / "B1_Ant1_f1_S0.png").rename(raw_copy / kind / TASK3 / "B1_Ant9_f1_S0.png")
    shutil.copy(
        raw_copy / "Positions" / "Positions_B1_Ant1_f1.csv", raw_copy / "Positions" / "Positions_B1_Ant9_f1.csv"
    )
    _arrange_error(raw_copy, tmp_path, "unknown antenna id Ant9", "B1_Ant9_f1_S0.png")


# --- Tx-aware crops -----------------------------------------------------------------------------


def test_origin_range_rules():
    assert origin_range(tx=50, length=200, size=64, margin=10) == (0, 40)  # inside and margin
    assert origin_range(tx=3, length=200, size=64, margin=10) == (-7, -7)  # margin wins, nearest to inside
    assert origin_range(tx=196, length=200, size=64, margin=10) == (143, 143)
    assert origin_range(tx=30, length=48, size=96, margin=10) == (-48, 0)  # whole image inside the crop
    lo, hi = origin_range(tx=2, length=90, size=96, margin=10)
    assert lo == hi == -8  # cannot hold the whole image and the margin: margin wins


@pytest.mark.parametrize("size, placement", [(32, "random"), (40, "center"), (96, "random"), (96, "center")])
def test_crop_invariants(arranged, tmp_path, size, placement):
    margin = 10
    summary = crop(arranged, tmp_path / "crops", size, margin_px=margin, placement=placement, seed=3)
    rows = read_metadata(tmp_path / "crops" / "metadata.csv")
    assert summary["samples"] == len(rows) == N_BUILDINGS * 15
    assert list(rows[0].keys()) == METADATA_COLUMNS + CROP_COLUMNS
    arranged_rows = {r["name"]: r for r in read_metadata(arranged / "metadata.csv")}
    for row in rows:
        name = row["name"]
        assert row["split"] == arranged_rows[name]["split"]
        tr, tc = int(row["crop_tx_row"]), int(row["crop_tx_col"])
        assert margin <= tr <= size - 1 - margin and margin <= tc <= size - 1 - margin
        r0, c0 = int(row["row0"]), int(row["col0"])
        assert (r0 + tr, c0 + tc) == (int(row["tx_row"]), int(row["tx_col"]))
        h, w = int(row["height"]), int(row["width"])
        tgt = read_png(tmp_path / "crops" / "targets" / f"{name}.png", mode="L")
        inp = read_png(tmp_path / "crops" / "inputs" / f"{name}.png", mode="RGB")
        assert tgt.shape == (size, size) and inp.shape == (size, size, 3)
        mask = valid_mask(row)
        full_t = read_png(arranged / "targets" / f"{name}.png", mode="L")
        full_i = read_png(arranged / "inputs" / f"{name}.png", mode="RGB")
        ii, jj = np.nonzero(mask)
        np.testing.assert_array_equal(tgt[ii, jj], full_t[ii + r0, jj + c0])
        np.testing.assert_array_equal(inp[ii, jj], full_i[ii + r0, jj + c0])
        assert (tgt[~mask] == 0).all() and (inp[~mask] == 0).all()
        assert mask.sum() == int(row["valid_rows"]) * int(row["valid_cols"])
        if size > max(h, w):
            assert mask.sum() == h * w  # the whole (smaller) image sits inside the crop
        elif 0 <= int(row["tx_row"]) - margin and int(row["tx_row"]) + margin < h:
            assert 0 <= r0 <= h - size  # a fully inside origin keeps the margin, so it is used


def test_crop_is_deterministic_and_validates_params(arranged, tmp_path):
    crop(arranged, tmp_path / "a", 32, seed=5)
    crop(arranged, tmp_path / "b", 32, seed=5)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    crop(arranged, tmp_path / "c", 32, seed=6)
    assert _files(tmp_path / "c") != _files(tmp_path / "a")
    with pytest.raises(ParamsError, match="size_px"):
        crop(arranged, tmp_path / "d", 16, margin_px=10)
    with pytest.raises(ParamsError, match="placement"):
        crop(arranged, tmp_path / "d", 32, placement="corner")


# --- validation ---------------------------------------------------------------------------------


def test_validate_clean_folder(raw):
    report = validate(raw, TASK3)
    assert report["ok"] is True, report["problems"]
    assert report["problems"] == [] and report["warnings"] == []
    assert report["dataset"] == "icassp" and report["task"] == TASK3
    assert report["counts"]["samples"] == N_BUILDINGS * 15
    assert (report["counts"]["buildings"], report["counts"]["antennas"], report["counts"]["bands"]) == (3, 5, 3)
    assert report["image_sizes"]["distinct"] >= 1
    assert validate(raw, TASK1)["ok"] is True


def _problem_naming(report: dict, part: str) -> str:
    assert report["ok"] is False
    hits = [p for p in report["problems"] if part in p]
    assert hits, report["problems"]
    return hits[0]


def test_validate_missing_output(raw_copy):
    (raw_copy / "Outputs" / TASK3 / "B2_Ant3_f2_S0.png").unlink()
    problem = _problem_naming(validate(raw_copy, TASK3), "B2_Ant3_f2_S0.png")
    assert "no matching output" in problem


def test_validate_corrupt_png(raw_copy):
    bad = raw_copy / "Inputs" / TASK3 / "B1_Ant2_f3_S0.png"
    bad.write_bytes(b"\x89PNG garbage, not an image")
    assert "unreadable" in _problem_naming(validate(raw_copy, TASK3), str(bad))


def test_validate_size_mismatch(raw_copy):
    out_file = raw_copy / "Outputs" / TASK3 / "B3_Ant1_f1_S0.png"
    write_png(out_file, np.full((20, 30), 100, np.uint8))
    assert "differs" in _problem_naming(validate(raw_copy, TASK3), str(out_file))


def test_validate_tx_outside_map(raw_copy):
    pos = raw_copy / "Positions" / "Positions_B1_Ant4_f2.csv"
    pos.write_text("X,Y,Azimuth\n3,999,45\n")
    assert "outside" in _problem_naming(validate(raw_copy, TASK3), str(pos))


def test_validate_unknown_antenna(raw_copy):
    for kind in ("Inputs", "Outputs"):
        (raw_copy / kind / TASK3 / "B1_Ant2_f1_S0.png").rename(raw_copy / kind / TASK3 / "B1_Ant9_f1_S0.png")
    problem = _problem_naming(validate(raw_copy, TASK3), "B1_Ant9_f1_S0.png")
    assert "unknown antenna id Ant9" in problem


def test_validate_missing_details_bad_pattern_and_wrong_modes(raw_copy):
    (raw_copy / "Building_Details" / "B2_Details.csv").unlink()
    pattern = raw_copy / "Radiation_Patterns" / "Ant3_Pattern.csv"
    pattern.write_text("1\n" * 100)
    rgb_out = raw_copy / "Outputs" / TASK3 / "B1_Ant1_f2_S0.png"
    write_png(rgb_out, np.zeros((50, 50, 3), np.uint8))
    report = validate(raw_copy, TASK3)
    _problem_naming(report, "B2_Details.csv")
    _problem_naming(report, str(pattern))
    assert "gray" in _problem_naming(report, str(rgb_out))


def test_validate_out_of_range_is_a_warning(raw_copy):
    out_file = raw_copy / "Outputs" / TASK3 / "B1_Ant1_f1_S0.png"
    pl = read_png(out_file, mode="L").copy()
    pl[0, :3] = 5
    pl[1, 0] = 0  # 0 is allowed
    write_png(out_file, pl)
    report = validate(raw_copy, TASK3)
    assert report["ok"] is True
    assert any(str(out_file) in w and "3 pixels" in w for w in report["warnings"])


def test_validate_warns_on_a_pattern_peak_far_from_0_db(raw_copy):
    """Synthetic patterns are relative gains like the real ones; an absolute-gain file is flagged."""
    assert not any("peak gain" in w for w in validate(raw_copy, TASK3)["warnings"])
    pattern = raw_copy / "Radiation_Patterns" / "Ant4_Pattern.csv"
    write_pattern(pattern, read_pattern(pattern) + 11.0)
    report = validate(raw_copy, TASK3)
    assert report["ok"] is True
    assert any(w.startswith(f"{pattern}: peak gain +11.0 dB, far from 0 dB") for w in report["warnings"])


def test_validate_missing_folders(tmp_path):
    report = validate(tmp_path, TASK3)
    assert report["ok"] is False
    assert any("Inputs" in p for p in report["problems"]) and any("Outputs" in p for p in report["problems"])


# --- datasets -----------------------------------------------------------------------------------


def test_icassp_dataset_shapes_ranges_and_split(raw):
    seen = {}
    for split in ("train", "val", "test"):
        ds = ICASSPDataset(raw, TASK3, split, SPLIT)
        seen[split] = {s.building for s in ds.ids}
        item = ds[0]
        _, h, w = item["input"].shape
        assert item["input"].shape[0] == 3 and item["input"].dtype == torch.float32
        assert item["target"].shape == (1, h, w) and item["target"].dtype == torch.float32
        assert 0 <= item["input"].min() and item["input"].max() <= 1
        assert 0 <= item["target"].min() and item["target"].max() <= 1
        r, c = item["tx"].tolist()
        assert 0 <= r < h and 0 <= c < w
        assert item["input"][2, r, c] == 0  # distance channel is 0 at the Tx
        assert item["target"][0, r, c] == item["target"].max()  # the strongest signal at the Tx
    assert sum(len(v) for v in seen.values()) == N_BUILDINGS
    assert set().union(*seen.values()) == {1, 2, 3}


@pytest.fixture(scope="module")
def crops(arranged, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icassp_crops") / "crops"
    crop(arranged, out, 72, margin_px=10, seed=0)  # 72 > 64: every crop has padding
    return out


def test_icassp_crop_dataset_shapes_and_ranges(crops):
    ds = ICASSPCropDataset(crops, "train")
    assert len(ds) == sum(r["split"] == "train" for r in read_metadata(crops / "metadata.csv"))
    item = ds[0]
    assert item["input"].shape == (3, 72, 72) and item["target"].shape == (1, 72, 72)
    assert item["valid"].shape == (1, 72, 72) and item["valid"].dtype == torch.bool
    for key in ("input", "target"):
        assert item[key].dtype == torch.float32
        assert -1 <= item[key].min() and item[key].max() <= 1
        assert (item[key][:, ~item["valid"][0]] == -1).all()
    assert not item["valid"].all()
    r, c = item["tx"].tolist()
    assert item["valid"][0, r, c]
    assert item["target"][0, r, c] == item["target"].max()


def test_augmented_crops_keep_tx_on_its_pixel(crops):
    """The map models' augmentation: item 8·i + v is crop i under flip/rotation v, input, target and
    valid mask together, so the Tx pixel (strongest target, its own input values) moves with them."""
    from radiodiff.data.items import N_DIHEDRAL, dihedral, icassp_items

    ref = ICASSPCropDataset(crops, "train")[1]
    r0, c0 = ref["tx"].tolist()
    onehot = torch.zeros(1, 72, 72)
    onehot[0, r0, c0] = 1
    aug = icassp_items(crops, "train", augment=True)
    assert len(aug) == N_DIHEDRAL * len(ICASSPCropDataset(crops, "train"))
    seen = set()
    for v in range(N_DIHEDRAL):
        item = aug[N_DIHEDRAL * 1 + v]
        (r,), (c,) = torch.nonzero(dihedral(onehot, v)[0], as_tuple=True)
        assert item["target"][0, r, c] == ref["target"][0, r0, c0] == item["target"].max()
        assert item["condition"][:, r, c].tolist() == ref["input"][:, r0, c0].tolist()
        assert item["valid"][0, r, c] and item["valid"].sum() == ref["valid"].sum()
        seen.add(tuple(item["target"].flatten().tolist()))
    assert len(seen) == N_DIHEDRAL  # eight distinct variants


def test_crop_dataset_missing_metadata(tmp_path):
    with pytest.raises(DataError, match="metadata"):
        ICASSPCropDataset(tmp_path, "train")


def test_metadata_csv_is_plain_csv(arranged):
    with open(arranged / "metadata.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header == METADATA_COLUMNS


def test_mixed_crop_policy_adds_random_windows_of_the_arranged_maps(crops, arranged):
    """crop_policy mixed: the Tx-aware crops plus as many random windows (random_share 0.5) cut
    from the arranged training maps, each the same window on every read; validation stays on the
    crops; tx_aware gives the crops alone."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.data.items import ICASSPSource

    splits = ICASSPSource(crops, arranged)
    plain, val, meta = splits.training_sets({"augment": False, "crop_policy": "tx_aware"}, "s.data")
    mixed, val2, _ = splits.training_sets({"augment": False, "crop_policy": "mixed", "random_share": 0.5}, "s.data", 3)
    n = len(plain)
    assert len(mixed) == 2 * n and len(val2) == len(val) and meta["metres_per_pixel"] == 0.25
    assert torch.equal(mixed[0]["condition"], plain[0]["condition"])
    windows = [mixed[n + k] for k in range(n)]
    assert all(w["condition"].shape == (3, 72, 72) and w["valid"].shape == (1, 72, 72) for w in windows)
    assert torch.equal(mixed[n + 1]["target"], windows[1]["target"]), "a window is the same on every read"
    train_rows = [r for r in read_metadata(arranged / "metadata.csv") if r["split"] == "train"]
    assert windows[0]["name"].startswith(train_rows[0]["name"] + "_w")
    for w in windows:  # padding only where the window leaves the map, marked as in the crops
        assert (w["target"][:, ~w["valid"][0]] == -1).all() and w["valid"].any()
    other, _, _ = splits.training_sets({"augment": False, "crop_policy": "mixed", "random_share": 0.5}, "s.data", 4)
    assert any(not torch.equal(other[n + k]["target"], windows[k]["target"]) for k in range(n)), "seeded"
    augmented, _, _ = splits.training_sets({"augment": True, "crop_policy": "mixed", "random_share": 0.5}, "s.data")
    assert len(augmented) == 8 * 2 * n
    with pytest.raises(ParamsError, match="s.data.crop_policy: mixed cuts windows from the arranged maps"):
        ICASSPSource(crops).training_sets({"augment": False, "crop_policy": "mixed", "random_share": 0.5}, "s.data")
    with pytest.raises(ParamsError, match="s.data.random_share"):
        splits.training_sets({"augment": False, "crop_policy": "mixed", "random_share": 1.0}, "s.data")


@pytest.fixture(scope="module")
def icassp_model(tmp_path_factory) -> Path:
    """An (untrained) ICASSP RadioUNet model folder with a 24-px window: whole buildings of 48–64
    px need several windows."""
    from radiodiff.models.radiounet import RadioUNet, RadioUNetConfig, RadioUNetPipeline

    torch.manual_seed(0)
    cfg = RadioUNetConfig(image_size=24, base_channels=4, channel_mults=(1, 2), blocks_per_level=1)
    meta = {"dataset": "icassp", "condition": "arranged", "image_size": 24, "metres_per_pixel": 0.25}
    return RadioUNetPipeline(RadioUNet(cfg), meta).save_pretrained(tmp_path_factory.mktemp("model") / "model")


def test_predict_whole_icassp_inputs_in_the_challenge_layout(raw, icassp_model, tmp_path, capsys, monkeypatch):
    """A raw input gives the whole building's map at its size; a raw folder gives every input in
    the challenge's layout (``{task}/B{b}_Ant{a}_f{f}_S{s}.png``, path loss in dB)."""
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the schema's defaults
    from radiodiff.cli import main

    sid = discover(raw, TASK3)[0]
    inp = input_path(raw, TASK3, sid)
    args = ["predict", "--model", str(icassp_model)]
    assert main([*args, "--input", str(inp), "--pattern", str(pattern_path(raw, sid.antenna)), "--band",
                 str(sid.band), "--out", str(tmp_path / "one")]) == 0  # fmt: skip
    img = read_png(tmp_path / "one" / f"{sid.name}.png", "L")
    assert img.shape == read_png(inp, "RGB").shape[:2] and 13 <= img.min() and img.max() <= 160
    capsys.readouterr()
    assert main([*args, "--input-dir", str(raw), "--out", str(tmp_path / "all")]) == 0
    printed = capsys.readouterr().out.split()
    for task in (TASK3, TASK1):
        names = sorted(p.name for p in (raw / "Inputs" / task).glob("*.png"))
        assert sorted(p.name for p in (tmp_path / "all" / task).glob("*.png")) == names
        for name in names:
            size = read_png(raw / "Inputs" / task / name, "RGB").shape[:2]
            assert read_png(tmp_path / "all" / task / name, "L").shape == size
    assert len(printed) == sum(len(list((raw / "Inputs" / t).glob("*.png"))) for t in (TASK3, TASK1))


def test_predict_whole_icassp_bad_inputs_name_the_file(raw, raw_copy, icassp_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the schema's defaults
    from radiodiff.cli import main

    sid = discover(raw_copy, TASK3)[0]
    inp, pattern = input_path(raw_copy, TASK3, sid), pattern_path(raw_copy, sid.antenna)
    args = ["predict", "--model", str(icassp_model), "--out", str(tmp_path / "o")]

    def fails(extra, message):
        assert main([*args, *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert not (tmp_path / "o").exists(), "nothing written"

    fails(["--input", str(inp), "--pattern", str(pattern), "--band", "4"], "--band: expected one of [1, 2, 3]")
    pattern.write_text("\n".join(["0"] * 359) + "\n")
    fails(["--input", str(inp), "--pattern", str(pattern), "--band", "1"], f"{pattern}: expected 360 gains")
    fails(["--input-dir", str(raw_copy)], f"{pattern}: expected 360 gains")
    write_pattern(pattern, np.zeros(360))
    details_path(raw_copy, sid.building).write_text("W,H\n10,10\n")
    first = input_path(raw_copy, TASK1, sid)  # Task_1 comes first
    h, w = read_png(first, "RGB").shape[:2]
    fails(["--input-dir", str(raw_copy)], f"{first}: {w}×{h} px, but {details_path(raw_copy, sid.building)} says 10×10")
    shutil.copy(details_path(raw, sid.building), details_path(raw_copy, sid.building))
    rgb = read_png(inp, "RGB")[..., :3]
    wall_r, wall_c = np.argwhere(rgb[..., :2].any(axis=-1))[0]  # a wall pixel: nonzero R or G
    pos = positions_path(raw_copy, sid.building, sid.antenna, sid.band)
    table = read_positions(pos)
    for (x, y), where in (((w + 3, 1), "lies outside"), ((wall_c, wall_r), "lies inside a wall")):
        rows = [[x, y, az] if s == sid.sample else [c, r, az] for s, (c, r, az) in enumerate(table)]
        pos.write_text("X,Y,Azimuth\n" + "".join(f"{c:g},{r:g},{az:g}\n" for c, r, az in rows))
        fails(["--input-dir", str(raw_copy)], f"{pos}: Tx of S{sid.sample} at X={x:g}, Y={y:g} {where}")
    dist = np.full(rgb.shape[:2], 200, np.uint8)
    dist[wall_r, wall_c] = 0  # a single input's Tx is the distance channel's minimum
    write_png(inp, np.dstack([rgb[..., :2], dist]))
    fails(["--input", str(inp), "--pattern", str(pattern), "--band", "1"], f"{inp}: the Tx (the distance minimum")
