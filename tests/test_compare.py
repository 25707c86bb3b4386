"""`radiodiff compare`: two folders of maps paired by name and scored with the evaluate stages'
metrics; bad input is one line naming the file, with nothing written."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from radiodiff.cli import main
from radiodiff.core.encodings import ICASSP_DB_PER_UNIT, RADIOMAPSEER_DB_PER_UNIT
from radiodiff.evaluate.compare import compare, pair_files
from radiodiff.metrics import MetricAccumulator
from radiodiff.report.compare import OUTPUTS


def save(path, arr) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr)).save(path)


def maps(seed: int, n: int = 3, side: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side), dtype=np.uint8) for _ in range(n)]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_scores_pairs_by_name_and_writes_the_suites_files(tmp_path, capsys):
    truth, pred = maps(0), maps(1)
    names = ["0_1", "0_2", "10_0"]
    for name, t, p in zip(names, truth, pred, strict=True):
        save(tmp_path / "truth" / f"{name}.png", t)
        save(tmp_path / "pred" / f"{name}.png", p)
    rc = main(["compare", "--truth", str(tmp_path / "truth"), "--pred", str(tmp_path / "pred"),
               "--dataset", "radiomapseer", "--out", str(tmp_path / "out")])  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUTS)
    printed = capsys.readouterr().out
    assert "3 pairs" in printed and "relative_error" in printed
    rows = read_csv(tmp_path / "out/detailed_metrics.csv")
    assert [r["name"] for r in rows] == names  # natural order
    acc = MetricAccumulator(RADIOMAPSEER_DB_PER_UNIT, metres_per_pixel=256 / 16)
    unit = lambda a: torch.from_numpy(np.stack(a).astype(np.float32) / 255)[:, None]  # noqa: E731
    acc.add(unit(pred), unit(truth), names=names)
    for row, expect in zip(rows, acc.to_rows(), strict=True):
        for k in ("nmse", "rmse", "ssim", "psnr", "mae", "rmse_db", "relative_error", "peak_distance_m"):
            assert float(row[k]) == pytest.approx(expect[k], rel=1e-6), k
    stats = {r["metric"]: r for r in read_csv(tmp_path / "out/comparison_statistics.csv")}
    rmse = [float(r["rmse"]) for r in rows]
    assert float(stats["rmse"]["mean"]) == pytest.approx(np.mean(rmse))
    assert float(stats["rmse"]["std"]) == pytest.approx(np.std(rmse, ddof=1))
    assert float(stats["rmse"]["median"]) == pytest.approx(np.median(rmse))
    assert float(stats["rmse"]["min"]) == min(rmse) and int(stats["rmse"]["n"]) == 3
    assert float(stats["whole_set_rmse"]["mean"]) == pytest.approx(acc.summary()["whole_set_rmse"])
    # a folder holding anything but an earlier comparison is refused (it would be replaced)
    assert main(["compare", "--truth", str(tmp_path / "truth"), "--pred", str(tmp_path / "pred"),
                 "--dataset", "radiomapseer", "--out", str(tmp_path / "truth")]) == 1  # fmt: skip
    assert "holds other files" in capsys.readouterr().err


def test_the_original_samplers_names_and_icassp_padding(tmp_path):
    """gt-sample-N.png pairs with sample-N.png (one folder for both); ICASSP path loss is scored
    where the truth is not 0 (padding)."""
    truth = np.full((8, 8), 100, np.uint8)
    truth[:, 6:] = 0  # padded columns
    pred = truth.copy()
    pred[:, :6] = 110  # 10 dB off everywhere scored
    pred[:, 6:] = 50  # whatever is predicted on the padding is not scored
    for n in (2, 10):
        save(tmp_path / "run" / f"gt-sample-{n}.png", truth)
        save(tmp_path / "run" / f"sample-{n}.png", pred)
    pairs = pair_files(tmp_path / "run", tmp_path / "run")
    assert [(p.name, p.truth.name, p.pred.name) for p in pairs] == [
        ("2", "gt-sample-2.png", "sample-2.png"),
        ("10", "gt-sample-10.png", "sample-10.png"),
    ]
    c = compare(tmp_path / "run", tmp_path / "run", "icassp")
    assert c.rows[0]["n_pixels"] == 48
    assert c.summary["rmse_db"]["mean"] == pytest.approx(10.0, rel=1e-5)
    assert c.summary["rmse"]["mean"] == pytest.approx(10.0 / ICASSP_DB_PER_UNIT, rel=1e-5)
    assert c.rows[0]["peak_distance_m"] == pytest.approx(c.rows[0]["peak_distance_px"] * 0.25)
    assert c.relative_error_hist.sum() == 2 * 48


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_pair", r"no file pairs with"),
        ("unpaired", r"pred/b\.png: no partner in"),
        ("16bit", r"pred/a\.png: a 16-bit PNG \(mode I;16\); expected 8-bit gray"),
        ("rgb", r"truth/a\.png: a colour PNG \(mode RGB\)"),
        ("size", r"pred/a\.png: 8x9 pixels, its truth .*truth/a\.png 8x8"),
        ("empty", r"pred: no PNG files"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, capsys, case, message):
    gray = np.full((8, 8), 7, np.uint8)
    save(tmp_path / "truth/a.png", np.stack([gray] * 3, -1) if case == "rgb" else gray)
    if case == "no_pair":
        save(tmp_path / "pred/z.png", gray)
    elif case == "unpaired":
        save(tmp_path / "pred/a.png", gray)
        save(tmp_path / "pred/b.png", gray)
    elif case == "16bit":
        (tmp_path / "pred").mkdir()
        Image.fromarray(np.full((8, 8), 300, np.uint16)).save(tmp_path / "pred/a.png")
    elif case == "size":
        save(tmp_path / "pred/a.png", np.zeros((9, 8), np.uint8))
    elif case == "empty":
        (tmp_path / "pred").mkdir()
    elif case == "rgb":
        save(tmp_path / "pred/a.png", gray)
    rc = main(["compare", "--truth", str(tmp_path / "truth"), "--pred", str(tmp_path / "pred"),
               "--dataset", "radiomapseer", "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("radiodiff: error: ") and __import__("re").search(message, err), err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_compare_keeps_undefined_scores_out_of_the_statistics(tmp_path):
    """A constant truth has no sharpness ratio: left out of that metric's statistics, counted."""
    save(tmp_path / "t/a.png", np.full((8, 8), 9, np.uint8))
    save(tmp_path / "t/b.png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    save(tmp_path / "p/a.png", np.full((8, 8), 9, np.uint8))
    save(tmp_path / "p/b.png", np.arange(64, dtype=np.uint8).reshape(8, 8) * 2)
    c = compare(tmp_path / "t", tmp_path / "p", "radiomapseer")
    assert math.isnan(c.rows[0]["sharpness_ratio"]) and c.summary["sharpness_ratio"]["n"] == 1
    assert c.summary["psnr"]["max"] == math.inf  # a perfect map, kept
