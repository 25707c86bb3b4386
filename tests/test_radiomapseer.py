"""Synthetic RadioMapSeer physics, realism against the real samples, reader and validation."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from radiodiff.core.encodings import gain_db_to_gray, gray_to_gain_db
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png, write_png
from radiodiff.data.radiomapseer import RadioMapSeerDataset, discover_maps, split_maps, tx_position
from radiodiff.data.validate_radiomapseer import validate
from radiodiff.physics.propagation import fspl_db, geodesic_distance, line_of_sight
from radiodiff.synthetic.radiomapseer import UrbanModel, city_layout, path_gain_db, synthesize
from tests.conftest import REPO, need_real

# ---------------------------------------------------------------- physics


@pytest.mark.parametrize("f_hz, expected", [(868e6, 31.2), (1.8e9, 37.6), (3.5e9, 43.3), (5.9e9, 47.86)])
def test_fspl_at_one_metre(f_hz, expected):
    assert fspl_db(1.0, f_hz) == pytest.approx(expected, abs=0.05)


def test_fspl_grows_20_db_per_decade():
    assert fspl_db(100.0, 5.9e9) - fspl_db(10.0, 5.9e9) == pytest.approx(20.0, abs=1e-9)


def test_gray_encoding_round_trips_and_matches_reference():
    # −47.84 dB is the brightest level, −147 dB and below are 0 (REFERENCE.md §1).
    assert gain_db_to_gray(np.array([-47.84, -147.0, -200.0])).tolist() == [255, 0, 0]
    g = np.arange(1, 256, dtype=np.uint8)
    assert np.array_equal(gain_db_to_gray(gray_to_gain_db(g)), g)


def test_los_gain_decays_with_distance_as_log_distance():
    free = np.zeros((128, 128), dtype=bool)
    model = UrbanModel()
    pg = path_gain_db(free, (64, 10), model)
    d1, d2 = 10.0, 100.0
    drop = pg[64, 10 + int(d1)] - pg[64, 10 + int(d2)]
    assert drop == pytest.approx(10 * model.los_exponent * math.log10(d2 / d1), abs=1e-6)
    assert pg[64, 11] == pytest.approx(-fspl_db(1.0, model.frequency_hz), abs=1e-6)


def test_shadow_behind_a_building():
    b = np.zeros((96, 96), dtype=bool)
    b[40:56, 40:50] = True  # a block east of the Tx
    tx = (48, 20)
    pg = path_gain_db(b, tx, UrbanModel())
    los = line_of_sight(b, tx)
    # (48, 70) is behind the block, (18, 60) is in sight; both are 50 m from the Tx.
    assert not los[48, 70] and los[18, 60]
    assert pg[48, 70] < pg[18, 60] - UrbanModel().nlos_step_db
    assert np.isneginf(pg[b]).all()


def test_geodesic_goes_around_the_wall():
    free = np.ones((40, 40), dtype=bool)
    free[5:40, 20] = False  # a wall with a gap at the top
    geo = geodesic_distance(free, (30, 10))
    assert geo[30, 30] > 40  # must climb to row 4 and back
    assert np.isinf(geo[30, 20])


def test_synthesize_is_deterministic_and_in_layout(tmp_path):
    a = synthesize(tmp_path / "a", maps=2, tx_per_map=2, seed=3, size_px=64)
    synthesize(tmp_path / "b", maps=2, tx_per_map=2, seed=3, size_px=64)
    synthesize(tmp_path / "c", maps=2, tx_per_map=2, seed=4, size_px=64)
    assert a["maps"] == 2
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(f) for f in files] == [
        "antenna/0.json",
        "antenna/1.json",
        "gain/DPM/0_0.png",
        "gain/DPM/0_1.png",
        "gain/DPM/1_0.png",
        "gain/DPM/1_1.png",
        "png/antennas/0_0.png",
        "png/antennas/0_1.png",
        "png/antennas/1_0.png",
        "png/antennas/1_1.png",
        "png/buildings_complete/0.png",
        "png/buildings_complete/1.png",
    ]
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a/gain/DPM/0_0.png").read_bytes() != (tmp_path / "c/gain/DPM/0_0.png").read_bytes()
    # building pixels are 0, the Tx pixel is the brightest, JSON agrees with the antenna PNG
    b = read_png(tmp_path / "a/png/buildings_complete/0.png") > 0
    g = read_png(tmp_path / "a/gain/DPM/0_0.png")
    assert (g[b] == 0).all()
    r, c = tx_position(tmp_path / "a/png/antennas/0_0.png")
    assert g[r, c] == g.max()
    assert json.loads((tmp_path / "a/antenna/0.json").read_text())[0] == [c, r]


def test_cars_variant(tiny_radiomapseer):
    assert (tiny_radiomapseer / "png/cars/0.png").is_file()
    dpm = read_png(tiny_radiomapseer / "gain/DPM/0_0.png").astype(int)
    cars = read_png(tiny_radiomapseer / "gain/carsDPM/0_0.png").astype(int)
    assert (cars <= dpm).all()  # cars only add loss


def test_synthetic_maps_resemble_real_ones():
    """Pooled non-building gray percentiles within 15 levels of the real maps; building fraction 0.15–0.35."""
    real = need_real()
    gains = [read_png(p) for p in sorted((real / "gain_DPM").glob("*.png"))]
    real_b = np.all(np.stack(gains) == 0, axis=0)
    real_vals = np.concatenate([g[~real_b] for g in gains])
    model, vals, fractions = UrbanModel(), [], []
    for m in range(12):
        rng = np.random.default_rng([7, m])
        b = city_layout(rng, 256)
        fractions.append(b.mean())
        rr, cc = np.nonzero(~b)
        for _ in range(3):
            i = rng.integers(len(rr))
            vals.append(gain_db_to_gray(path_gain_db(b, (rr[i], cc[i]), model))[~b])
    syn, ref = np.percentile(np.concatenate(vals), [10, 50, 90]), np.percentile(real_vals, [10, 50, 90])
    assert np.abs(syn - ref).max() <= 15, f"synthetic p10/p50/p90 {syn} vs real {ref}"
    assert 0.15 <= np.mean(fractions) <= 0.35


# ---------------------------------------------------------------- reader


def test_discovery_and_split_are_disjoint(tiny_radiomapseer):
    assert discover_maps(tiny_radiomapseer) == {m: 2 for m in range(5)}
    s = split_maps(tiny_radiomapseer, {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42})
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(5))
    assert len(s["train"]) == 3 and len(s["val"]) == 1 and len(s["test"]) == 1


def test_split_follows_numpy_seed_42():
    from radiodiff.data.splits import split_ids

    order = np.arange(10)
    np.random.seed(42)
    np.random.shuffle(order)
    s = split_ids(range(10), 0.6, 0.2, 0.2, seed=42)
    assert s["train"] == sorted(order[:6].tolist()) and s["test"] == sorted(order[8:].tolist())


PUBLISHED = REPO.parent / "shared" / "docs" / "radiomapseer_published_splits.json"


@pytest.mark.parametrize("name", ["radiounet", "radiodiff_dec2024", "radiodiff_jul2025"])
def test_published_splits_are_the_papers_lists(name):
    """Built by the papers' rule (not read from the JSON), compared with the lists read from
    their loaders."""
    from radiodiff.data.splits import published_split

    if not PUBLISHED.is_file():
        pytest.skip(f"{PUBLISHED} not found (only present beside the project checkout)")
    expected = json.loads(PUBLISHED.read_text())[name]
    assert published_split(name) == {k: sorted(expected[k]) for k in ("train", "val", "test")}


def test_published_split_rule_by_hand():
    """Position 0 of the papers' shuffle is map id value + 1; map 0 is never listed."""
    from radiodiff.data.splits import published_split

    order = np.arange(700)
    np.random.seed(42)
    np.random.shuffle(order)
    s = published_split("radiounet")
    assert s["test"] == sorted((order[601:700] + 1).tolist()) and len(s["train"]) == 501
    assert 0 not in {m for ids in s.values() for m in ids}
    jul = published_split("radiodiff_jul2025")
    assert set(jul["train"]) & set(jul["test"]) == {int(order[600]) + 1}  # as the Jul-2025 code
    assert jul["test"] == published_split("radiodiff_dec2024")["test"]


def test_published_split_on_a_folder_missing_maps(tiny_radiomapseer):
    """Maps 0-4 hold none of the val maps: one error naming the folder, the split and the key."""
    with pytest.raises(
        DataError,
        match=r"antenna: 696 of the 700 maps of data.radiomapseer.split 'radiounet' are missing.*allow_missing_maps",
    ):
        split_maps(tiny_radiomapseer, "radiounet")
    with pytest.warns(UserWarning, match="696 of the 700"), pytest.raises(DataError, match="no map of the val split"):
        split_maps(tiny_radiomapseer, "radiounet", allow_missing=True)


def test_published_split_keeps_the_maps_found():
    from radiodiff.data.radiomapseer import maps_of_split
    from radiodiff.data.splits import published_split

    n_tx = {m: 80 for m in range(0, 351)}  # half a download
    with pytest.warns(UserWarning, match="using the"):
        s = maps_of_split(n_tx, "radiodiff_dec2024", allow_missing=True)
    full = published_split("radiodiff_dec2024")
    assert s == {k: [m for m in full[k] if m <= 350] for k in full}
    complete = {m: 80 for m in range(701)}
    assert maps_of_split(complete, "radiodiff_dec2024") == full


@pytest.mark.parametrize("condition", ["static", "dynamic", "physics"])
def test_reader_items(tiny_radiomapseer, condition):
    ds = RadioMapSeerDataset(
        tiny_radiomapseer,
        "train",
        condition=condition,
        image_size=32,
        split_cfg={"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42},
    )
    assert len(ds) == 3 * 2
    item = ds[0]
    assert item["condition"].shape == (3, 32, 32) and item["target"].shape == (1, 32, 32)
    assert item["condition"].min() >= -1 and item["condition"].max() <= 1
    # Tx channel: one-hot at the downsampled Tx pixel
    tx = item["condition"][1]
    assert (tx == 1).sum() == 1 and (tx == -1).sum() == 32 * 32 - 1
    r, c = item["tx"]
    assert tx[r, c] == 1
    # area averaging: the target is the mean of 2×2 blocks of gray/255
    m, t = item["name"].split("_")
    full = read_png(tiny_radiomapseer / f"gain/DPM/{m}_{t}.png").astype(np.float32) / 255
    expect = full.reshape(32, 2, 32, 2).mean(axis=(1, 3)) * 2 - 1
    assert np.allclose(item["target"][0].numpy(), expect, atol=1e-5)
    if condition == "static":
        assert np.allclose(item["condition"][0], item["condition"][2])


def test_reader_on_real_samples(real_root):
    """The reader takes a folder rebuilt from ../shared/real as it takes synthetic ones."""
    assert discover_maps(real_root) == {0: 4}
    ds = RadioMapSeerDataset(real_root, maps=[0], image_size=64)
    item = ds[0]
    building_fraction = float((item["buildings"] > 0.5).float().mean())
    assert 0.2 < building_fraction < 0.3
    gain = read_png(real_root / "gain/DPM/0_0.png")
    assert tx_position(real_root / "png/antennas/0_0.png") == np.unravel_index(gain.argmax(), gain.shape)
    assert validate(real_root)["ok"]


# ---------------------------------------------------------------- validation


def _copy(src, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(src, dst)
    return dst


def test_validate_clean(tiny_radiomapseer):
    r = validate(tiny_radiomapseer)
    assert r["ok"] and r["problems"] == [] and r["counts"]["samples"] == 10


def test_validate_missing_png(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    (ds / "png/antennas/3_1.png").unlink()
    r = validate(ds)
    assert not r["ok"] and any("antennas/3_1.png" in p and "not found" in p for p in r["problems"])


def test_absent_gain_maps_are_coverage(tiny_radiomapseer, tmp_path):
    """A Tx without a gain map is not simulated: validation reports coverage, the reader skips it."""
    ds = _copy(tiny_radiomapseer, tmp_path)
    (ds / "gain/DPM/3_1.png").unlink()
    r = validate(ds)
    assert r["ok"] and r["counts"]["samples"] == 9
    assert r["coverage"]["DPM"] == {"maps": 5, "samples": 9, "listed": 10, "fraction": 0.9}
    assert r["coverage"]["carsDPM"]["samples"] == 10
    assert any("gain maps for 9 of the 10 listed Tx" in w for w in r["warnings"])
    names = [s.name for s in RadioMapSeerDataset(ds, maps=[3, 4], image_size=32).samples]
    assert names == ["3_0", "4_0", "4_1"]


def test_gain_map_without_antenna_entry(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    shutil.copy(ds / "gain/DPM/2_1.png", ds / "gain/DPM/2_5.png")
    r = validate(ds)
    assert not r["ok"] and any("gain/DPM/2_5.png: no antenna entry" in p for p in r["problems"])
    with pytest.raises(
        DataError, match=r"gain/DPM/2_5.png: no antenna entry for this Tx \(antenna/2.json lists 2 Tx\)"
    ):
        RadioMapSeerDataset(ds, maps=[2])


def test_simulation_without_gain_folder(tiny_radiomapseer):
    r = validate(tiny_radiomapseer, simulation="IRT2")
    assert not r["ok"] and any("gain/IRT2: folder not found" in p for p in r["problems"])
    with pytest.raises(DataError, match=r"gain/IRT2: gain folder not found \(data.radiomapseer.simulation"):
        RadioMapSeerDataset(tiny_radiomapseer, simulation="IRT2")


def test_real_irt4_layout_reports_coverage(real_root):
    """Real map 0 with its four Tx (0, 1, 10, 11 of the dataset) listed and an IRT4 folder holding
    Tx 0-1 only, as the real IRT4: it validates, with coverage 2 of 4."""
    (real_root / "gain/IRT4").mkdir()
    for t in (0, 1):
        shutil.copy(real_root / f"gain/DPM/0_{t}.png", real_root / f"gain/IRT4/0_{t}.png")
    r = validate(real_root, simulation="IRT4")
    assert r["ok"], r["problems"]
    assert r["coverage"]["IRT4"] == {"maps": 1, "samples": 2, "listed": 4, "fraction": 0.5}
    assert r["coverage"]["DPM"]["samples"] == 4 and r["counts"]["samples"] == 2
    assert [s.name for s in RadioMapSeerDataset(real_root, simulation="IRT4", maps=[0]).samples] == ["0_0", "0_1"]


def test_validate_corrupt_png(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    (ds / "png/buildings_complete/2.png").write_bytes(b"not a png")
    r = validate(ds)
    assert not r["ok"] and any("buildings_complete/2.png" in p and "unreadable" in p for p in r["problems"])


def test_validate_size_mismatch(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    write_png(ds / "gain/DPM/1_0.png", np.zeros((32, 32), np.uint8))
    r = validate(ds)
    assert not r["ok"] and any("gain/DPM/1_0.png" in p and "size" in p for p in r["problems"])


def test_validate_tx_outside_map(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    (ds / "antenna/4.json").write_text(json.dumps([[5, 5], [400, 12]]))
    r = validate(ds)
    assert not r["ok"] and any("antenna/4.json" in p and "outside" in p for p in r["problems"])


def test_validate_missing_cars_for_dynamic(tiny_radiomapseer, tmp_path):
    ds = _copy(tiny_radiomapseer, tmp_path)
    (ds / "png/cars/0.png").unlink()
    assert validate(ds, condition="static")["ok"]
    r = validate(ds, condition="dynamic")
    assert not r["ok"] and any("png/cars/0.png" in p for p in r["problems"])


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="antenna"):
        discover_maps(tmp_path)


@pytest.mark.parametrize("simulation", ["IRT2", "carsDPM", "carsIRT2", "carsIRT4"])
def test_every_simulation_reads_with_its_own_tx(tiny_radiomapseer, tmp_path, simulation):
    """Each simulation folder is read with the Tx it holds (IRT4-like: Tx 0 only here), the cars
    simulations with the cars mask as the dynamic condition's third channel."""
    root = tmp_path / "rms"
    shutil.copytree(tiny_radiomapseer, root)
    source = root / ("gain/carsDPM" if simulation.startswith("cars") else "gain/DPM")
    if simulation == "carsDPM":  # synthesized with every Tx: keep Tx 0
        for p in source.glob("*_1.png"):
            p.unlink()
    else:
        (root / "gain" / simulation).mkdir()
        for p in source.glob("*_0.png"):
            shutil.copy(p, root / "gain" / simulation / p.name)
    r = validate(root, simulation=simulation, condition="dynamic")
    assert r["ok"] and r["coverage"][simulation] == {"maps": 5, "samples": 5, "listed": 10, "fraction": 0.5}
    ds = RadioMapSeerDataset(root, maps=[0, 1, 2, 3, 4], simulation=simulation, condition="dynamic", image_size=32)
    assert [s.name for s in ds.samples] == [f"{m}_0" for m in range(5)]
    item = ds[1]
    cars = read_png(root / "png/cars/1.png").astype(np.float32) / 255
    assert np.allclose(item["condition"][2].numpy(), cars.reshape(32, 2, 32, 2).mean(axis=(1, 3)) * 2 - 1, atol=1e-5)
    gain = read_png(source / "1_0.png").astype(np.float32) / 255
    assert np.allclose(item["target"][0].numpy(), gain.reshape(32, 2, 32, 2).mean(axis=(1, 3)) * 2 - 1, atol=1e-5)
