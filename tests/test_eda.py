"""EDA stage: every figure written and non-blank, eda.json counts and statistics match the data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data.radiomapseer import split_maps
from radiodiff.eda.analysis import run_eda
from radiodiff.eda.common import evenly_spaced, hist_percentiles
from radiodiff.synthetic.icassp import MATERIALS
from radiodiff.synthetic.icassp import synthesize as synthesize_icassp
from radiodiff.synthetic.radiomapseer import synthesize as synthesize_radiomapseer

MAPS, TX_PER_MAP = 6, 2
BUILDINGS, ANTENNAS, BANDS = 3, 5, 3
SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42}

FIGURES = {
    "radiomapseer_structure.png",
    "radiomapseer_tx_density.png",
    "radiomapseer_buildings.png",
    "radiomapseer_gray_histogram.png",
    "radiomapseer_gain_vs_distance.png",
    "radiomapseer_samples.png",
    "icassp_structure.png",
    "icassp_path_loss_histogram.png",
    "icassp_tx_density.png",
    "icassp_channels.png",
    "icassp_antenna_patterns.png",
    "icassp_image_sizes.png",
    "icassp_materials.png",
}


def eda_params(max_maps: int = 400, grid_samples: int = 3) -> dict:
    return {
        "eda": {"grid_samples": grid_samples, "dpi": 40, "max_maps": max_maps},
        "data": {
            "radiomapseer": {"simulation": "DPM", "split": dict(SPLIT), "allow_missing_maps": False},
            "icassp": {"task": "Task_3_ICASSP", "split": dict(SPLIT)},
        },
    }


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("eda_data")
    synthesize_radiomapseer(base / "rms", maps=MAPS, tx_per_map=TX_PER_MAP, seed=3, size_px=64)
    synthesize_icassp(
        base / "icassp", buildings=BUILDINGS, seed=3, width_px=(40, 56), height_px=(40, 56), positions_per_antenna=1
    )
    return base / "rms", base / "icassp"


@pytest.fixture(scope="module")
def eda_out(roots, tmp_path_factory):
    out = tmp_path_factory.mktemp("eda_run") / "eda"
    summary = run_eda(*roots, out, eda_params())
    return out, summary, json.loads((out / "eda.json").read_text())


def test_every_figure_is_a_nonblank_png(eda_out):
    out, summary, report = eda_out
    assert set(report["figures"]) == FIGURES
    assert summary["figures"] == report["figures"]
    assert {p.name for p in out.iterdir()} == FIGURES | {"eda.json"}  # nothing else left behind
    for name in FIGURES:
        with Image.open(out / name) as im:
            assert im.format == "PNG", name
            img = np.asarray(im.convert("L"), dtype=np.float64)
        assert img.shape[0] > 100 and img.shape[1] > 100, name
        assert img.std() > 5, f"{name} looks blank"
        # More than text on white: a real share of the image is drawn.
        assert (img < 240).mean() > 0.02, f"{name} is nearly empty"


def test_radiomapseer_counts_and_splits(eda_out, roots):
    rms = eda_out[2]["radiomapseer"]
    assert rms["maps"] == MAPS
    assert rms["samples"] == rms["transmitters"] == MAPS * TX_PER_MAP
    assert rms["gain_files"] == MAPS * TX_PER_MAP
    assert rms["image_size_px"] == [64, 64]
    expected = split_maps(roots[0], SPLIT)
    for s in ("train", "val", "test"):
        assert rms["split"][s]["map_ids"] == expected[s]
        assert rms["split"][s]["maps"] == len(expected[s])
        assert rms["split"][s]["samples"] == len(expected[s]) * TX_PER_MAP
    assert sum(rms["split"][s]["samples"] for s in ("train", "val", "test")) == rms["samples"]
    assert rms["files_read"] == {"building_masks": MAPS, "gain_maps": MAPS * TX_PER_MAP}


def test_radiomapseer_statistics_match_the_files(eda_out, roots):
    rms, root = eda_out[2]["radiomapseer"], roots[0]
    masks = {m: read_png(root / "png/buildings_complete" / f"{m}.png", "L") > 127 for m in range(MAPS)}
    fractions = [masks[m].mean() for m in range(MAPS)]
    assert rms["building_fraction"]["maps"] == MAPS
    assert rms["building_fraction"]["mean"] == pytest.approx(np.mean(fractions), abs=1e-4)
    assert rms["building_fraction"]["min"] == pytest.approx(min(fractions), abs=1e-4)
    assert 0.05 < rms["building_fraction"]["mean"] < 0.6
    outdoor = np.concatenate(
        [read_png(root / "gain/DPM" / f"{m}_{t}.png", "L")[~masks[m]] for m in range(MAPS) for t in range(TX_PER_MAP)]
    )
    pct = rms["gray_percentiles_outdoor"]
    assert rms["outdoor_pixels"] == outdoor.size
    for q in (1, 10, 50, 90, 99):
        assert pct[f"p{q}"] == int(np.percentile(outdoor, q, method="inverted_cdf"))
    values = list(pct.values())
    assert values == sorted(values) and 0 <= values[0] < values[-1] <= 255
    pg = rms["path_gain_db_percentiles_outdoor"]
    assert pg["p50"] == pytest.approx(pct["p50"] / 255 * 99.16 - 147, abs=0.01)
    assert -147 <= pg["p1"] < pg["p99"] <= -47.84


def test_icassp_counts_and_statistics(eda_out, roots):
    ica = eda_out[2]["icassp"]
    n = BUILDINGS * ANTENNAS * BANDS
    assert ica["samples"] == n and ica["buildings"] == BUILDINGS
    assert ica["antennas"] == [1, 2, 3, 4, 5] and ica["bands"] == [1, 2, 3]
    assert ica["per_building"] == {str(b): ANTENNAS * BANDS for b in range(1, BUILDINGS + 1)}
    assert ica["per_antenna"] == {str(a): BUILDINGS * BANDS for a in range(1, ANTENNAS + 1)}
    assert ica["per_band"] == {str(f): BUILDINGS * ANTENNAS for f in range(1, BANDS + 1)}
    split = ica["split"]
    ids = [b for s in ("train", "val", "test") for b in split[s]["building_ids"]]
    assert sorted(ids) == list(range(1, BUILDINGS + 1))  # disjoint, complete
    assert sum(split[s]["samples"] for s in split) == n
    assert ica["files_read"]["samples"] == n and ica["tx_positions"] == n
    pl = list(ica["path_loss_db_percentiles"].values())
    assert pl == sorted(pl) and 13 <= pl[0] < pl[-1] <= 160
    # Higher bands lose more (FSPL grows with frequency): median f1 < median f3.
    per_band = ica["path_loss_db_percentiles_per_band"]
    assert per_band["f1"]["p50"] < per_band["f3"]["p50"]
    pats = ica["antenna_patterns"]
    assert set(pats) == {f"Ant{a}" for a in range(1, 6)}
    assert pats["Ant1"]["gain_span_db"] == 0 and pats["Ant1"]["front_to_back_db"] == 0
    for a in range(2, 6):
        assert pats[f"Ant{a}"]["gain_span_db"] > 5 and pats[f"Ant{a}"]["front_to_back_db"] > 5
        assert pats[f"Ant{a}"]["max_gain_db"] == 0 and -25 < pats[f"Ant{a}"]["mean_gain_db"] < -5
    sizes = ica["image_size_px"]
    assert 40 <= sizes["width"][0] <= sizes["width"][1] <= 56
    assert 40 <= sizes["height"][0] <= sizes["height"][1] <= 56
    assert len(sizes["per_building"]) == BUILDINGS
    known = {str(m.transmittance_db) for m in MATERIALS}
    assert ica["transmittance_db_values"] and set(ica["transmittance_db_values"]) <= known


def test_report_records_roots_and_params(eda_out, roots):
    report = eda_out[2]
    assert report["roots"] == {"radiomapseer": str(roots[0]), "icassp": str(roots[1])}
    assert report["params"] == eda_params()
    assert eda_out[1]["radiomapseer_samples"] == MAPS * TX_PER_MAP


def test_max_maps_caps_reads_not_counts(roots, tmp_path):
    out = tmp_path / "eda"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    run_eda(*roots, out, eda_params(max_maps=3, grid_samples=2))
    report = json.loads((out / "eda.json").read_text())
    assert not (out / "stale.txt").exists()  # the folder is replaced as a whole
    assert report["radiomapseer"]["files_read"]["gain_maps"] == 3
    assert report["radiomapseer"]["building_fraction"]["maps"] == 3
    assert report["radiomapseer"]["files_read"]["building_masks"] <= 6  # plus the gain samples' maps
    assert report["icassp"]["files_read"]["samples"] == 3
    assert report["radiomapseer"]["samples"] == MAPS * TX_PER_MAP  # counts still cover everything
    assert report["icassp"]["samples"] == BUILDINGS * ANTENNAS * BANDS


@pytest.mark.parametrize("which", [0, 1])
def test_missing_or_empty_root_names_the_folder(roots, tmp_path, which):
    out = tmp_path / "eda"
    missing = tmp_path / "no_such_dataset"
    args = list(roots)
    args[which] = missing
    with pytest.raises(DataError, match="no_such_dataset"):
        run_eda(*args, out, eda_params())
    empty = tmp_path / "empty_dataset"
    empty.mkdir()
    args[which] = empty
    with pytest.raises(DataError, match="empty_dataset"):
        run_eda(*args, out, eda_params())
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".eda")] == []


def test_evenly_spaced_is_deterministic_and_spans_the_list():
    items = list(range(100))
    assert evenly_spaced(items, 5) == [0, 25, 50, 74, 99]
    assert evenly_spaced(items, 1) == [0]
    assert evenly_spaced(items[:3], 10) == [0, 1, 2]


def test_hist_percentiles_equal_numpy_inverted_cdf():
    values = np.random.default_rng(0).integers(0, 256, size=5000)
    pct = hist_percentiles(np.bincount(values, minlength=256))
    for q in (1, 10, 50, 90, 99):
        assert pct[f"p{q}"] == int(np.percentile(values, q, method="inverted_cdf"))
    assert hist_percentiles(np.zeros(256))["p50"] is None
