"""The recipe presets: each follows its table, the generated ones are up to date, and the README
carries every table."""

from __future__ import annotations

import shutil

import pytest

from radiodiff.core.params import load_params
from radiodiff.recipes import (
    ENHANCED_FIXES,
    PRIMARY,
    RECIPES,
    SMOKE_FIXED,
    SMOKE_ROWS,
    apply,
    markdown_table,
    mismatches,
    write_presets,
)
from tests.conftest import REPO

PRESETS = REPO / "params"


@pytest.mark.parametrize("name", ["paper_jul2025", "paper_dec2024", "enhanced", "paper", "paper_smoke"])
def test_each_preset_follows_its_table(name):
    params = load_params(PRESETS / f"{name}.yaml")
    assert mismatches(params, RECIPES[PRIMARY if name == "paper" else name]) == []


def test_a_drift_from_the_table_is_caught():
    params = load_params(PRESETS / "paper_dec2024.yaml")
    params["train_ldm_icassp"]["train"]["grad_accum"] = 1
    params["sample"]["use_ema"] = True
    found = mismatches(params, RECIPES["paper_dec2024"])
    assert len(found) == 2 and any("train_ldm_icassp.train.grad_accum = 1, the table says 8" in m for m in found)


def test_generated_presets_are_up_to_date(tmp_path):
    assert write_presets(PRESETS, check=True) == []
    copy = tmp_path / "params"
    shutil.copytree(PRESETS, copy)
    (copy / "enhanced.yaml").write_text((copy / "enhanced.yaml").read_text().replace("bf16", "'no'"))
    assert write_presets(copy, check=True) == ["enhanced"]
    assert write_presets(copy) == ["enhanced"] and write_presets(copy, check=True) == []


def test_recipes_differ_where_the_papers_differ():
    jul, dec = load_params(PRESETS / "paper_jul2025.yaml"), load_params(PRESETS / "paper_dec2024.yaml")
    for ldm in ("train_ldm_radiomapseer", "train_ldm_icassp"):
        assert (jul[ldm]["train"]["batch_size"], jul[ldm]["train"]["grad_accum"]) == (32, 1)
        assert (dec[ldm]["train"]["batch_size"], dec[ldm]["train"]["grad_accum"]) == (66, 8)
        assert (jul[ldm]["model"]["aft"], dec[ldm]["model"]["aft"]) == (True, False)
        assert (jul[ldm]["diffusion"]["weighting"], dec[ldm]["diffusion"]["weighting"]) == ("jul2025", "dec2024")
    enhanced = load_params(PRESETS / "enhanced.yaml")
    assert enhanced["train_vae_radiomapseer"]["loss"]["learn_logvar"] is True
    assert jul["train_vae_radiomapseer"]["loss"]["learn_logvar"] is False
    # outside the rows, the recipes share everything
    assert apply(jul, RECIPES["paper_dec2024"]) == {**dec, "scale": jul["scale"]}
    assert apply(jul, ENHANCED_FIXES) == {**enhanced, "scale": jul["scale"]}


def test_readme_has_every_table():
    readme = (REPO / "README.md").read_text()
    for name in ("paper_jul2025", "paper_dec2024", "enhanced", "paper_smoke"):
        assert markdown_table(name) in readme, f"README: the {name} table is missing or stale (radiodiff recipes)"


def test_a_row_naming_a_missing_key_is_one_clear_error():
    from radiodiff.core.errors import ParamsError
    from radiodiff.recipes import Row

    params = load_params(PRESETS / "paper_jul2025.yaml")
    with pytest.raises(ParamsError, match=r"recipe: no key train_vae_\w+\.loss\.nosuch"):
        apply(params, [Row("bad", {"train_vae_*.loss.nosuch": 1}, "nowhere")])


def test_paper_smoke_keeps_the_paper_networks_and_shrinks_the_rest():
    jul, smoke = load_params(PRESETS / "paper_jul2025.yaml"), load_params(PRESETS / "paper_smoke.yaml")
    # the rule: the primary recipe, then the smoke rows, nothing else
    assert apply(jul, SMOKE_ROWS) == {**smoke, "scale": jul["scale"]}
    for stage, section in jul.items():
        if isinstance(section, dict) and "model" in section:
            assert smoke[stage]["model"] == section["model"], stage
    for dotted in SMOKE_FIXED:
        head, *rest = dotted.split(".")
        a, b = jul[head], smoke[head]
        for k in rest:
            a, b = a[k], b[k]
        assert a == b == 256, dotted
    trains = [s["train"] for k, s in smoke.items() if k.startswith("train_")]
    assert len(trains) == 8
    for t in trains:
        assert t["max_steps"] == 2 and t["batch_size"] in (1, 2) and t["grad_accum"] == 1
        assert max(t["save_every"], t["eval_every"], t["log_every"]) <= 2 and t["export_every"] is None
    assert all(smoke[f"train_vae_{n}"]["loss"]["perceptual_weight"] == 0 for n in ("radiomapseer", "building"))
    assert isinstance(smoke["data"]["radiomapseer"]["split"], dict)  # the ratio split
    assert smoke["synthesize_radiomapseer"]["tx_per_map"] <= 2
    assert smoke["benchmark"]["radiodiff_steps"] == [1] and smoke["benchmark"]["train_steps"] == 1


def test_paper_smoke_splits_hold_few_items():
    """The ratio split of the smoke data: at least one training item, at most 2 to validate and test."""
    from radiodiff.data.splits import split_ids

    smoke = load_params(PRESETS / "paper_smoke.yaml")
    rms, ica = smoke["synthesize_radiomapseer"], smoke["synthesize_icassp"]
    for n, per_id, split in (
        (rms["maps"], rms["tx_per_map"], smoke["data"]["radiomapseer"]["split"]),
        (ica["buildings"], ica["positions_per_antenna"], smoke["data"]["icassp"]["split"]),
    ):
        cut = split_ids(range(n), **split)
        assert len(cut["train"]) * per_id >= 1
        assert 1 <= len(cut["val"]) * per_id <= 2 and 1 <= len(cut["test"]) * per_id <= 2
    assert smoke["data"]["icassp"]["task"] == "Task_1_ICASSP"  # one antenna and band per position


def test_a_smoke_row_may_not_touch_an_architecture():
    from radiodiff.core.errors import ParamsError
    from radiodiff.recipes import Row, check_smoke_rows

    check_smoke_rows()
    for key in ("train_ldm_*.model.dim", "crop_icassp.size_px", "data.radiomapseer.image_size"):
        with pytest.raises(ParamsError, match="keeps"):
            check_smoke_rows([Row("bad", {key: 1}, "nowhere")])
