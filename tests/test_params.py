"""params.yaml: schema validation by radiodiff's loader and by Snakemake, presets, selection."""

from __future__ import annotations

import shutil

import pytest
import yaml

from radiodiff.core.errors import ParamsError
from radiodiff.core.params import load_params, select, write_scale
from radiodiff.dag.stages import STAGES
from tests.conftest import REPO, run


@pytest.mark.parametrize("scale", ["quick", "paper", "ci", "paper_jul2025", "paper_dec2024", "enhanced", "paper_smoke"])
def test_presets_are_complete_and_valid(scale):
    p = load_params(REPO / "params" / f"{scale}.yaml")
    assert p["scale"] == scale
    for stage in STAGES.values():
        select(p, list(stage.params))  # every declared key exists


def test_default_params_is_the_quick_preset():
    assert load_params(REPO / "params.yaml") == load_params(REPO / "params" / "quick.yaml")


def test_paper_scale_uses_published_resolution():
    p = load_params(REPO / "params" / "paper.yaml")
    assert p["data"]["radiomapseer"]["image_size"] == 256 and p["crop_icassp"]["size_px"] == 256
    assert p["data"]["radiomapseer"]["split"] == "radiodiff_jul2025"  # tests on RadioDiff's 100 maps


def _broken(tmp_path, key, value):
    params = yaml.safe_load((REPO / "params" / "quick.yaml").read_text())
    node = params
    *parents, last = key.split(".")
    for k in parents:
        node = node[k]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("edges.method", "roberts", "edges.method"),
        ("synthesize_radiomapseer.maps", 0, "synthesize_radiomapseer.maps"),
        ("synthesize_radiomapseer.maps", "many", "synthesize_radiomapseer.maps"),
        ("data.radiomapseer.simulation", "IRT9", "data.radiomapseer.simulation"),
        ("data.icassp.split.train", 0.9, "data.icassp.split"),
        ("data.radiomapseer.split", "radiodiff_2023", "data.radiomapseer.split"),
        ("data.icassp.split", "radiounet", "data.icassp.split"),
        ("data.radiomapseer.allow_missing_maps", KeyError, "data.radiomapseer.allow_missing_maps"),
        ("crop_icassp.margin_px", 40, "crop_icassp.margin_px"),
        ("crop_icassp.size_px", KeyError, "crop_icassp.size_px"),
        ("edges.colour", 3, "edges"),
    ],
)
def test_invalid_params_name_the_key(tmp_path, key, value, message):
    path = _broken(tmp_path, key, value)
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        load_params(path)


def test_snakemake_validates_against_the_same_schema(repo_copy):
    text = (repo_copy / "params.yaml").read_text().replace("method: canny", "method: roberts")
    (repo_copy / "params.yaml").write_text(text)
    p = run(["snakemake", "-n", "--cores", "1"], cwd=repo_copy, check=False)
    assert p.returncode != 0 and "roberts" in (p.stdout + p.stderr)


def test_select_hides_undeclared_keys():
    p = load_params(REPO / "params.yaml")
    s = select(p, ["edges", "data.radiomapseer.simulation"])
    assert s == {"edges": p["edges"], "data": {"radiomapseer": {"simulation": "DPM"}}}
    with pytest.raises(KeyError):
        s["data"]["radiomapseer"]["root"]


def test_scale_writes_preset(tmp_path):
    shutil.copytree(REPO / "params", tmp_path / "params")
    write_scale("ci", repo=tmp_path)
    assert load_params(tmp_path / "params.yaml") == load_params(REPO / "params/ci.yaml")
    with pytest.raises(ParamsError, match="nosuch"):
        write_scale("nosuch", repo=tmp_path)


def test_schema_defaults_are_a_complete_valid_params_tree():
    from radiodiff.core.params import schema_default_params

    defaults = schema_default_params()
    quick = load_params(REPO / "params" / "quick.yaml")
    assert set(defaults) == set(quick)
    # runtime: the quick preset's only departure is the item cache (its data fits; the default
    # keeps memory flat whatever the dataset's size)
    assert defaults["runtime"]["item_cache_mb"] == 0
    assert {**defaults["runtime"], "item_cache_mb": 512} == quick["runtime"]
    assert defaults["train_vae_building"]["train"]["betas"] == [0.9, 0.999]


def test_differing_keys_names_every_changed_leaf():
    from radiodiff.core.params import differing_keys

    a = {"x": {"y": 1, "z": [1, 2]}, "w": 0}
    assert differing_keys(a, a) == []
    assert differing_keys(a, {"x": {"y": 2, "z": [1, 2]}, "v": 0}) == ["v", "w", "x.y"]
