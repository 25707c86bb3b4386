"""benchmarks/quality_bars.py on a hand-made workspace: each bar is the ratio the issue names,
worked out by hand, and a missing file leaves its bars out by name."""

from __future__ import annotations

import json

from tests.conftest import REPO


def _load():
    import importlib.util

    spec = importlib.util.spec_from_file_location("quality_bars", REPO / "benchmarks" / "quality_bars.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def test_bars_by_hand_and_a_missing_file_named(tmp_path, capsys):
    _write(
        tmp_path / "results/evaluate/radiomapseer/summary.json",
        {
            "radiodiff": {"nmse": 0.03},
            "radiodiff_mean": {"nmse": 0.024},
            "radiounet": {"nmse": 0.02},
            "radiounet_vae": {"nmse": 0.03},
            "physics": {"nmse": 0.07},
            "protocol": {"headline": {"radiodiff": "radiodiff_mean", "k": 3}},
        },
    )
    _write(
        tmp_path / "results/vae/radiomapseer/metrics.json",
        {"ceiling_nmse": 0.006, "ceiling": {"latent_noise": {"0.2": {"nmse": 0.01}}}},
    )
    _write(
        tmp_path / "results/evaluate/icassp_full/summary.json",
        {"radiodiff": {"weighted_rmse_db": 14.0}, "radiounet": {"weighted_rmse_db": 10.0}},
    )
    qb = _load()
    rows, missing = qb.bars(tmp_path)
    got = {r["bar"]: (round(r["ratio"], 6), r["met"]) for r in rows}
    assert got == {
        "radiomapseer: headline radiodiff_mean / radiounet": (1.2, True),
        "radiomapseer: radiodiff / radiounet": (1.5, True),
        "radiomapseer: radiodiff_mean / radiounet": (1.2, True),
        "radiomapseer: radiounet_vae / radiounet": (1.5, False),
        "radiomapseer: VAE radiomapseer ceiling / radiounet": (0.3, True),
        "radiomapseer: VAE radiomapseer ceiling at 0.2 sigma / clean": (round(0.01 / 0.006, 6), False),
        "icassp whole buildings: radiodiff / radiounet weighted RMSE dB": (1.4, True),
    }
    assert missing == [str(tmp_path / "results/evaluate/icassp/summary.json")]
    assert qb.main(["--workspace", str(tmp_path), "--json", str(tmp_path / "bars.json")]) == 0
    assert qb.main(["--workspace", str(tmp_path), "--strict"]) == 1
    assert "MISSED" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "bars.json").read_text())["bars"]) == 7
