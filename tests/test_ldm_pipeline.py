"""The LDM and RadioUNet stages on a tiny dataset: train a few steps, export a model folder,
sample, predict, score it on another root and benchmark it; plus the physics baseline's exponent fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from radiodiff import benchmark
from radiodiff.cli import main
from radiodiff.core.errors import DataError, RadiodiffError
from radiodiff.core.io import read_png
from radiodiff.data.items import N_DIHEDRAL, LazyItems, RadioMapSeerSource, dihedral
from radiodiff.evaluate.sample_test import predict_batches, predict_items
from radiodiff.evaluate.windows import predict_windows
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.pipelines import load_pipeline
from radiodiff.models.radiodiff import RadioDiffPipeline
from radiodiff.models.radiounet import RadioUNetPipeline
from radiodiff.physics.baselines import fit_log_distance_exponent, icassp_physics_unit, log_distance_unit
from radiodiff.report.context import benchmark_section
from radiodiff.report.document import Doc
from radiodiff.report.figures import Style
from radiodiff.train.ldm import LDMTask

TRAIN = dict(
    max_steps=2, lr_horizon=None, batch_size=4, grad_accum=1, lr=1e-3, lr_power=0.95, min_lr=0.05, weight_decay=0.0,
    betas=[0.9, 0.999], clip_grad_norm=1.0, ema_decay=0.9, ema_every=1, ema_start=0, ema_warmup=True,
    mixed_precision="no", save_every=2, eval_every=2, log_every=1, export_every=None, init_from=None,
    max_nonfinite=10, seed=0,
)  # fmt: skip
UNET = dict(
    dim=8, dim_mults=[1, 2], num_res_blocks=1, resnet_groups=4, time_dim=16, fourier_scale=16.0, attn_heads=1,
    attn_dim_head=8, cross_windows=[1, 1], swin_embed_dim=8, swin_depths=[1, 1], swin_num_heads=[1, 1],
    swin_window_size=4, swin_drop_path=0.0, swin_checkpoint=None, aft=True, dropout=0.0, cond_stem=False,
    prior_latent=False,
)  # fmt: skip
DIFFUSION = dict(scale_factor="auto", weighting="jul2025", l1=True, skip=True, t_eps=1e-4, sampling_steps=2)
DATA = dict(
    simulation="DPM", condition="physics", image_size=32, gain_threshold=0.0, physics_exponent=None,
    split={"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42},
)  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_radiomapseer, tmp_path_factory):
    """A 2-step LDM (on an untrained tiny VAE) and a 2-step RadioUNet for the tiny RadioMapSeer set,
    trained by the stages' own handlers."""
    from radiodiff.train import ldm, radiounet

    tmp = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae_cfg = AutoencoderKLConfig(in_channels=1, out_channels=1, resolution=32, ch=8, ch_mult=(1, 1, 2), z_channels=3)
    AutoencoderKL(vae_cfg).save_pretrained(tmp / "vae")
    params = {
        "data": {"radiomapseer": DATA},
        "runtime": {
            "num_workers": 0,
            "pin_memory": True,
            "item_cache_mb": 512,
            "keep_states": 2,
            "state_dir": str(tmp / "state"),
        },
        "train_ldm_radiomapseer": {
            "model": UNET,
            "diffusion": DIFFUSION,
            "data": {"augment": False},
            "train": TRAIN,
            "previews": {"sample_every": 1, "samples": 2},
        },
        "train_radiounet_radiomapseer": {
            "model": dict(base_channels=4, channel_mults=[1, 2], blocks_per_level=1, norm="batch"),
            "data": {"augment": False},
            "train": TRAIN,
        },
    }
    root = str(tiny_radiomapseer)
    ldm.run(params, "radiomapseer", tmp / "ldm", root=root, vae=str(tmp / "vae"))
    radiounet.run(params, "radiomapseer", tmp / "radiounet", root=root)
    return {"dir": tmp, "params": params, "root": tiny_radiomapseer}


def test_training_writes_model_folders_and_metrics(trained):
    d = trained["dir"]
    for name in ("ldm", "radiounet"):
        metrics = json.loads((d / name / "metrics.json").read_text())
        assert metrics["steps"] == 2 and metrics["condition"] == "physics"
        assert 1.5 <= metrics["physics_exponent"] <= 6.0
        assert 0 <= metrics["rmse"] <= 1 and metrics["parameters"] > 0
        assert (d / name / "train_log.csv").read_text().startswith("step")
    assert isinstance(load_pipeline(d / "ldm/model"), RadioDiffPipeline)
    assert isinstance(load_pipeline(d / "radiounet/model"), RadioUNetPipeline)
    meta = json.loads((d / "ldm/model/radiodiff.json").read_text())
    assert meta["scale_factor"] > 0 and meta["sampling_steps"] == 2 and meta["image_size"] == 32
    assert meta["weighting"] == "jul2025" and meta["l1"] is True
    assert json.loads((d / "ldm/metrics.json").read_text())["latent_shape"] == [3, 8, 8]


def test_ldm_writes_sample_previews_the_report_shows(trained, tmp_path):
    """Every ``previews.sample_every`` steps: a grid of 2 validation items (condition | truth |
    prediction | error), listed in previews.json with the items' RMSE in dB; the report draws
    the progression from it."""
    from radiodiff.report.training import previews_section
    from radiodiff.train.previews import read_index

    folder = trained["dir"] / "ldm" / "previews"
    index = read_index(folder)
    assert [e["step"] for e in index] == [1, 2]
    assert [e["file"] for e in index] == ["step-00000001.png", "step-00000002.png"]
    for e in index:
        assert len(e["rmse_db"]) == 2 and all(0 < r < 200 for r in e["rmse_db"])
        assert read_png(folder / e["file"], "RGB").shape == (2 * 32 + 2, 4 * 32 + 3 * 2, 3)
    doc = Doc(tmp_path, Style())
    previews_section(doc, trained["dir"] / "ldm", "RadioDiff LDM")
    assert len(doc.figure_names) == 1 and doc.figure_names[0].startswith("previews_")
    (folder / "step-00000002.png").unlink()
    with pytest.raises(DataError, match=r"step-00000002\.png: listed in previews\.json but missing"):
        previews_section(doc, trained["dir"] / "ldm", "RadioDiff LDM")


def test_bf16_sampling_is_an_option(trained):
    """``sample.precision: bf16``: the networks run under bf16 autocast (on this CPU too); the maps
    stay on [0, 1] and near the fp32 ones; an unknown precision is refused naming the key."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.evaluate.sample_test import predict_batches

    pipe = load_pipeline(trained["dir"] / "ldm/model")
    items = RadioMapSeerSource(trained["root"], DATA).items("test", pipe.condition, pipe.physics_exponent)
    cpu = torch.device("cpu")
    maps = {
        p: torch.cat([raw for _, _, raw in predict_batches(pipe, items, 2, 0, 4, cpu, precision=p)])
        for p in ("fp32", "bf16")
    }
    assert maps["bf16"].dtype == torch.float32 and 0 <= maps["bf16"].min() and maps["bf16"].max() <= 1
    diff = (maps["bf16"] - maps["fp32"]).abs()
    assert 0 < diff.max() and diff.mean() < 0.05, (diff.max(), diff.mean())
    with pytest.raises(ParamsError, match="sample.precision: expected one of fp32, bf16"):
        next(predict_batches(pipe, items, 2, 0, 4, cpu, precision="fp16"))


def test_validation_and_test_sampling_are_one_sampler(trained):
    """Training's validation samples with the exported pipeline's sampler: for the same weights and
    seed it gives the maps the sample stage gives, and metrics.json is reproduced from the folder."""
    from radiodiff.train.data_order import val_loader
    from radiodiff.train.engine import _isolated_rng

    pipe = load_pipeline(trained["dir"] / "ldm/model")
    task = LDMTask(pipe)
    items = RadioMapSeerSource(trained["root"], DATA).items("val", pipe.condition, pipe.physics_exponent).stacked()
    batch = {k: v for k, v in items.tensors.items()}
    a = task.predict(pipe, batch, 3, torch.Generator().manual_seed(4))
    b, _ = predict_items(pipe, items, 3, 4, batch_size=len(items), device=torch.device("cpu"))
    assert torch.equal(a, b)
    with _isolated_rng(TRAIN["seed"]):
        again = task.evaluate(pipe.unet, val_loader(items, TRAIN["batch_size"], 0, 0, torch.device("cpu")))
    recorded = json.loads((trained["dir"] / "ldm/metrics.json").read_text())
    assert again == pytest.approx({k: recorded[k] for k in again}, rel=1e-6)


def test_sampler_steps_zero_is_an_error(trained):
    from radiodiff.core.errors import ParamsError

    pipe = load_pipeline(trained["dir"] / "ldm/model")
    with pytest.raises(ParamsError, match="integer >= 1, got 0"):
        pipe(torch.zeros(1, 3, 32, 32), steps=0)


def test_pipeline_sampling_is_deterministic_for_a_seed(trained):
    pipe = load_pipeline(trained["dir"] / "ldm/model")
    cond = torch.rand(2, 3, 32, 32) * 2 - 1
    a = pipe(cond, steps=3, generator=torch.Generator().manual_seed(5))
    b = pipe(cond, steps=3, generator=torch.Generator().manual_seed(5))
    c = pipe(cond, steps=3, generator=torch.Generator().manual_seed(6))
    assert a.shape == (2, 1, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_predict_a_synthetic_map(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the schema's defaults
    root = trained["root"]
    buildings = root / "png/buildings_complete/0.png"
    b = read_png(buildings, "L") > 127
    free = np.argwhere(~b)[len(np.argwhere(~b)) // 2]
    out = tmp_path / "pred"
    for model in ("ldm", "radiounet"):
        code = main(["predict", "--model", str(trained["dir"] / model / "model"), "--buildings", str(buildings),
                     "--tx", f"{free[0]},{free[1]}", "--out", str(out / model)])  # fmt: skip
        assert code == 0
        printed = capsys.readouterr().out.strip().splitlines()
        assert len(printed) == 1 and printed[0].endswith(".png")
        img = read_png(printed[0], "L")
        assert img.shape == b.shape == (64, 64), "the whole map at the input's size"
        assert (img[b] == 0).all(), "building pixels are 0, as in the data"
        assert img[~b].min() >= 0 and img[~b].max() > 0
    # the folder form: every map and Tx of a RadioMapSeer root
    assert main(["predict", "--model", str(trained["dir"] / "ldm/model"), "--input-dir", str(root),
                 "--out", str(tmp_path / "all")]) == 0  # fmt: skip
    assert len(list((tmp_path / "all").glob("*.png"))) == 10


def test_windows_of_a_one_window_map_are_the_pipeline_itself(trained):
    """A map the size of the window: joint and independent windows both give the pipeline's own
    sample for the same seed (the canvas is the window)."""
    pipe = load_pipeline(trained["dir"] / "ldm/model")
    cond = torch.rand(1, 3, 32, 32) * 2 - 1
    direct = pipe(cond, steps=2, generator=torch.Generator().manual_seed(3))[0]
    for mode in ("joint", "independent"):
        got, tiling = predict_windows(pipe, cond[0], mode=mode, steps=2, generator=torch.Generator().manual_seed(3))
        assert tiling.origins == ((0, 0),) and torch.allclose(got, direct, atol=1e-6), mode


def test_joint_windows_sample_a_map_larger_than_a_window(trained):
    pipe = load_pipeline(trained["dir"] / "ldm/model")
    cond = torch.rand(3, 56, 72) * 2 - 1
    runs = [
        predict_windows(pipe, cond, mode="joint", steps=2, batch_size=2, generator=torch.Generator().manual_seed(1))
        for _ in range(2)
    ]
    (a, tiling), (b, _) = runs
    assert a.shape == (1, 56, 72) and len(tiling.origins) == 6 and torch.equal(a, b)
    assert all(r % 4 == 0 and c % 4 == 0 for r, c in tiling.origins), "origins on the latent grid"
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_a_folder_written_before_the_record_keys_existed_loads_with_their_defaults(trained, tmp_path):
    """Today's folders, stripped of the keys added to radiodiff.json / radiounet.json since they
    were first written, load through the typed record, which fills them in one place (the
    metres per pixel from the dataset's geometry, the loss weighting and L1 from the schema, skip
    and t_eps as RadioDiff's, no raw-weights note), and sample as before."""
    import shutil

    from radiodiff.core.params import schema_defaults
    from radiodiff.diffusion.const_sde import T_EPS

    added = ("metres_per_pixel", "weights", "weighting", "l1", "skip", "t_eps", "extra_scale_factors", "imported")
    for name, file in (("ldm", "radiodiff.json"), ("radiounet", "radiounet.json")):
        old = tmp_path / name
        shutil.copytree(trained["dir"] / name / "model", old)
        record = json.loads((old / file).read_text())
        assert {"metres_per_pixel", "weights"} <= set(record)
        (old / file).write_text(json.dumps({k: v for k, v in record.items() if k not in added}))
        pipe, today = load_pipeline(old), load_pipeline(trained["dir"] / name / "model")
        assert pipe.metres_per_pixel == 256 / 32 and today.metres_per_pixel == 2.0  # RadioMapSeer's 256 m
        assert (pipe.grid_px, pipe.condition, pipe.physics_exponent) == (32, "physics", record["physics_exponent"])
        assert pipe.record.weights is None and pipe.is_latent == (name == "ldm")
        if name == "ldm":
            defaults = schema_defaults("$defs/ldm_stage/properties/diffusion")
            assert (pipe.record.weighting, pipe.record.l1) == (defaults["weighting"], defaults["l1"])
            assert (pipe.record.skip, pipe.record.t_eps, pipe.record.extra_scale_factors) == (True, T_EPS, {})
            assert pipe.steps_for(None) == record["sampling_steps"] and pipe.steps_for(3) == 3
        cond = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        a = pipe(cond, generator=torch.Generator().manual_seed(1))
        b = today(cond, generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)  # the same networks and settings: the same maps
    (old / "radiounet.json").write_text(json.dumps({**record, "colour": "red"}))
    with pytest.raises(RadiodiffError, match=r"radiounet\.json: .*unknown key\(s\) \['colour'\]"):
        load_pipeline(old)


def test_model_folders_record_their_metres_per_pixel(trained):
    for name in ("ldm", "radiounet"):
        assert load_pipeline(trained["dir"] / name / "model").metres_per_pixel == 2.0  # 64 m over 32 px


@pytest.mark.parametrize(
    "args, message",
    [
        (["--buildings", "missing.png", "--tx", "3,3"], "missing.png: file not found"),
        (["--tx", "3,3"], "give --buildings"),
        (["--buildings", "{b}", "--tx", "400,3"], "outside the 64×64 map"),
        (["--buildings", "{b}", "--tx", "3"], "--tx: expected ROW,COL"),
    ],
)
def test_predict_bad_input_fails_clearly(trained, tmp_path, capsys, args, message):
    b = str(trained["root"] / "png/buildings_complete/0.png")
    args = [a.replace("{b}", b) for a in args]
    out = tmp_path / "out"
    code = main(["predict", "--model", str(trained["dir"] / "ldm/model"), "--out", str(out), *args])
    assert code == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists(), "nothing written"


def test_predict_rejects_a_folder_that_is_not_a_model(tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path), "--input-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "not a trained model folder" in capsys.readouterr().err


def test_evaluate_a_model_on_another_root(trained, real_root, tmp_path, capsys, monkeypatch):
    """`radiodiff evaluate --model --root` on the real samples (no retraining)."""
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the schema's defaults
    # the real maps are 256 px at 1 m/pixel; the model runs at 32 px as trained
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(trained["dir"] / "ldm/model"), "--root", str(real_root),
                 "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert {"radiodiff", "physics", "protocol"} <= set(summary)
    assert summary["protocol"]["maps"] == 4 and summary["radiodiff"]["n_images"] == 4
    assert (out / "per_sample.csv").read_text().count("\n") == 1 + 2 * 2 * 4


def test_flop_count_of_small_products_is_exact():
    """2 FLOPs per multiply-accumulate: a (3×5) @ (5×7) linear layer forward and backward (grads of
    input and weight: three products), and a 3×3 convolution forward."""
    m, k, n = 3, 5, 7
    lin = torch.nn.Linear(k, n)
    x = torch.randn(m, k, requires_grad=True)
    assert benchmark.count_flops(lambda: lin(x).sum().backward()) == 3 * 2 * m * k * n
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        got = benchmark.count_flops(lambda: conv(torch.randn(1, 2, 6, 5)))
    assert got == 2 * (4 * 6 * 5) * (2 * 3 * 3)  # output elements × multiply-accumulates each
    assert benchmark.count_flops(lambda: torch.relu(x)) == 0, "only products and convolutions count"


def test_benchmark_counts_flops_beside_its_timings(trained, tmp_path):
    """`benchmark.run` on the tiny model folders: FLOPs per training step and per sampled map, the
    achieved FLOP/s and their share of the measured matmul peak; the report renders it, and a
    benchmark.json written before FLOPs were counted still renders."""
    params = {
        "benchmark": {"train_steps": 1, "warmup_steps": 0, "train_batch_size": 2, "sample_batch_size": 2,
                      "sample_repeats": 1, "radiodiff_steps": [1, 2], "whole_map_px": {"radiomapseer": [32, 32]}},
        "sample": {"window": {"mode": "joint", "overlap": 0.25, "batch_size": 2}, "precision": "fp32"},
    }  # fmt: skip
    out = tmp_path / "benchmark.json"
    benchmark.run(params, [trained["dir"] / "ldm/model", trained["dir"] / "radiounet/model"], out)
    bench = json.loads(out.read_text())
    peak = bench["device_peak_flops"]
    assert peak["dtype"] == "float32" and peak["n"] == (8192 if torch.cuda.is_available() else 2048)
    assert 0 < peak["flop_per_s"] < math.inf
    ldm, unet = bench["models"]["radiodiff/radiomapseer"], bench["models"]["radiounet/radiomapseer"]
    counted = [ldm["train"], unet["train"], unet["sample_flops"], *ldm["sample_flops"].values()]
    for c in counted:
        values = [c.get("flops_per_step", c.get("flops_per_map")), c["flop_per_s"], c["fraction_of_peak"]]
        assert all(0 < v < math.inf for v in values), c
    assert set(ldm["sample_flops"]) == {"1", "2"}
    one, two = (ldm["sample_flops"][n]["flops_per_map"] for n in ("1", "2"))
    assert one < two < 2 * one, "a second sampler step adds one U-Net pass, not another VAE decoding"

    old = json.loads(out.read_text())
    del old["device_peak_flops"]
    old.pop("device_peak_flops_bfloat16", None)
    for entry in old["models"].values():
        del entry["sample_flops"]
        for key in ("flops_per_step", "flop_per_s", "fraction_of_peak"):
            del entry["train"][key]
    for b, tables in ((bench, 2), (old, 1)):
        doc = Doc(tmp_path, Style())
        benchmark_section(doc, b)
        md = doc.render_md("t")
        assert md.count("| model |") == tables and "GFLOP/step" in md
        assert ("Measured peak" in md) == (b is bench)


def test_exponent_fit_recovers_a_log_distance_map():
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(6):
        tx = tuple(int(v) for v in rng.integers(4, 28, 2))
        g = log_distance_unit((32, 32), tx, 3.3, pixel_size_m=8.0)
        samples.append((g, np.zeros((32, 32), np.float32), tx))
    assert fit_log_distance_exponent(samples, full_size=256) == pytest.approx(3.3, abs=0.006)


def test_icassp_physics_baseline_reads_fspl_channel():
    x = torch.full((1, 3, 2, 2), -1.0)
    x[0, 2] = torch.tensor([[60.0, 13.0], [200.0, 5.0]]) / 255 * 2 - 1  # FSPL − G in dB as gray
    unit = icassp_physics_unit(x)[0, 0]
    expected = (160 - torch.tensor([[60.0, 13.0], [160.0, 13.0]])) / 147
    assert torch.allclose(unit, expected, atol=1e-5)


def test_dihedral_variants():
    x = torch.arange(16.0).view(1, 4, 4)
    variants = [dihedral(x, v) for v in range(N_DIHEDRAL)]
    assert torch.equal(variants[0], x)
    assert len({tuple(v.flatten().tolist()) for v in variants}) == 8

    class Items(LazyItems):
        spatial = ("a",)

        def load(self, i):
            return {"a": x, "s": torch.tensor(7)}

    items = Items(["n"], variants=8)
    assert len(items) == 8
    assert torch.equal(items[5]["a"], variants[5]) and items[5]["s"] == 7 and items[5]["name"] == "n"


def test_radiomapseer_augmentation_moves_the_tx_with_the_map(trained):
    """``augment`` on a RadioMapSeer map stage: 8 variants per sample, the condition, target and
    buildings flipped/rotated together and the Tx pixel moved with them; the crop policy stays
    an ICASSP setting (refused, naming the key)."""
    from radiodiff.core.errors import ParamsError
    from radiodiff.data.items import dihedral, dihedral_point
    from radiodiff.train import radiounet

    for shape in ((5, 7), (6, 6)):  # a marked pixel lands where dihedral_point says, for every variant
        for v in range(8):
            x = torch.zeros(shape)
            x[1, 4] = 1
            moved = dihedral(x, v)
            assert moved[tuple(dihedral_point(torch.tensor([1, 4]), v, shape).tolist())] == 1, (shape, v)
    splits = RadioMapSeerSource(trained["root"], DATA)
    plain, _, _ = splits.training_sets({"augment": False}, "k")
    flipped, _, _ = splits.training_sets({"augment": True}, "k")
    assert len(flipped) == 8 * len(plain)
    for v in range(8):
        item, base = flipped[8 + v], plain[1]
        assert item["name"] == base["name"] and item["index"] == 8 + v
        assert torch.equal(item["target"], dihedral(base["target"], v))
        assert torch.equal(item["condition"], dihedral(base["condition"], v))
        r, c = item["tx"].tolist()
        assert item["condition"][1, r, c] == item["condition"][1].max() > 0  # the Tx channel peaks at the Tx
    params = {**trained["params"]}
    data = {"augment": False, "crop_policy": "mixed", "random_share": 0.5}
    params["train_radiounet_radiomapseer"] = {**params["train_radiounet_radiomapseer"], "data": data}
    with pytest.raises(ParamsError, match=r"train_radiounet_radiomapseer\.data\.crop_policy"):
        radiounet.run(params, "radiomapseer", trained["dir"] / "refused", root=str(trained["root"]))
    assert not (trained["dir"] / "refused").exists()


def test_item_cache_decodes_once_and_stops_at_its_cap():
    """A cached sample is decoded once; past the cap nothing more is kept (memory bounded
    whatever the dataset's size), and flips/rotations still apply to cached samples."""
    from radiodiff.data.items import ItemCache

    loads = []

    class Items(LazyItems):
        spatial = ("a",)

        def load(self, i):
            loads.append(i)
            return {"a": torch.full((1, 4, 4), float(i))}  # 64 bytes

    items = Items(["n0", "n1", "n2"], variants=8)
    items.cache = ItemCache(2 * 64)
    for _ in range(3):
        for j in range(len(items)):
            item = items[j]
            assert item["index"] == j and torch.equal(item["a"], dihedral(torch.full((1, 4, 4), float(j // 8)), j % 8))
    assert items.cache.bytes == 128 and sorted(k[1] for k in items.cache.entries) == [0, 1]
    assert loads.count(0) == 1 and loads.count(1) == 1 and loads.count(2) == 3 * 8


def test_latent_cache_encodes_each_item_once_and_survives_a_restart(trained, tmp_path, monkeypatch):
    """The LDM's training items are encoded once into the run's file-backed store; a new task on
    the same folder (a resumed run) reads the stored values; a store of another shape restarts."""
    from radiodiff.data.items import radiomapseer_items
    from radiodiff.models import radiodiff as pipeline_module

    pipe = RadioDiffPipeline.from_pretrained(trained["dir"] / "ldm" / "model")
    items = radiomapseer_items(trained["root"], "train", DATA, "physics", 2.0)
    batch = torch.utils.data.default_collate([items[j] for j in (0, 2, 3)])
    calls = []
    encode = pipeline_module.encode_posterior
    monkeypatch.setattr(pipeline_module, "encode_posterior", lambda vae, x: calls.append(len(x)) or encode(vae, x))

    def task():
        t = LDMTask(pipe)
        t.cache_at = (tmp_path / "latents", len(items))
        return t

    first = task()
    direct_mean, direct_std, _ = first.encodings(batch)
    mean, std, extra = first._cached_encodings(batch)
    assert torch.equal(mean, direct_mean) and torch.equal(std, direct_std) and extra is None
    partial = torch.utils.data.default_collate([items[j] for j in (3, 1)])
    first._cached_encodings(partial)
    assert calls == [3, 3, 1]  # direct, first fill, then only the item not stored yet
    again = task()._cached_encodings(batch)  # a fresh task on the same files: nothing encoded
    assert calls == [3, 3, 1] and torch.equal(again[0], direct_mean)
    loss = first.loss(batch, 0, 0)
    assert torch.isfinite(loss[0] if isinstance(loss, tuple) else loss)

    (tmp_path / "latents" / "values-0.npy").write_bytes(b"torn")  # a torn write: start again
    task()._cached_encodings(batch)
    assert calls[-1] == 3


def test_sample_and_evaluate_keep_the_papers_scope(trained, tmp_path, random_alexnet):
    """The sample stage keeps each method's raw float maps (buildings included); evaluate scores
    them on every pixel as the paper did, beside the zeroed PNG scopes, streaming the split. With
    sample.ensemble, the spread of the samples and its calibration; the ground truth for
    `radiodiff compare`; LPIPS from a local weight file."""
    import csv

    from radiodiff.core.encodings import unit_to_gray
    from radiodiff.core.errors import ParamsError
    from radiodiff.evaluate import sample_test, score_test
    from radiodiff.evaluate.maps import read_maps
    from radiodiff.evaluate.perceptual import LPIPSScore
    from radiodiff.metrics import MetricAccumulator, building_pixels, zero_buildings

    params = {
        **trained["params"],
        "sample": {
            "steps": 2,
            "seed": 0,
            "seeds": 3,
            "ensemble": True,
            "batch_size": 1,
            "use_ema": True,
            "precision": "fp32",
        },  # fmt: skip
    }
    d, root = trained["dir"], str(trained["root"])
    sample_test.run(params, "radiomapseer", d / "ldm/model", d / "radiounet/model", tmp_path / "samples", root=root)
    score_test.run(params, "radiomapseer", tmp_path / "samples", tmp_path / "eval", root=root)
    items = RadioMapSeerSource(trained["root"], DATA).items("test").stacked()
    target = (items.tensors["target"] + 1) / 2
    summary = json.loads((tmp_path / "eval/summary.json").read_text())
    for method in ("radiodiff", "radiounet", "physics"):
        raw = torch.from_numpy(np.load(tmp_path / "samples/float" / f"{method}.npy"))
        assert raw.shape == (len(items), 1, 32, 32)
        for i, name in enumerate(items.names):  # the PNGs are the zeroed, rounded float maps
            png = read_png(tmp_path / "samples" / method / f"{name}.png")
            assert np.array_equal(png, unit_to_gray(zero_buildings(raw, items.tensors["buildings"])[i, 0]))
        acc = MetricAccumulator(db_per_unit=99.16)
        acc.add(raw, target)
        expect = acc.summary()
        paper = summary[method]["paper"]
        assert paper["n_images"] == len(items)
        assert paper["rmse"] == pytest.approx(expect["rmse"]) and paper["nmse"] == pytest.approx(expect["nmse"])
    # zeroing the known buildings can only lower the error (up to the PNG rounding)
    assert summary["radiounet"]["paper"]["rmse"] >= summary["radiounet"]["rmse"] - 0.5 / 255
    with open(tmp_path / "eval/per_sample.csv") as f:
        scopes = {r["scope"] for r in csv.DictReader(f)}
    assert scopes == {"all", "outdoor", "paper"}
    assert "'paper'" in summary["protocol"]["scope"]
    # sample.seeds: RadioDiff's samples under seeds 1 and 2 too, and the spread of its metrics
    spread = summary["radiodiff"]["seed_spread"]
    assert spread["seeds"] == [0, 1, 2] and spread["nmse"]["values"][0] == summary["radiodiff"]["nmse"]
    seed1 = tmp_path / "samples/radiodiff_seeds/seed-1"
    assert sorted(p.stem for p in seed1.glob("*.png")) == sorted(items.names)
    maps1 = torch.stack([torch.from_numpy(read_png(seed1 / f"{n}.png") / 255.0) for n in items.names])[:, None]
    acc = MetricAccumulator(db_per_unit=99.16)
    acc.add(maps1, target)
    assert spread["nmse"]["values"][1] == pytest.approx(acc.summary()["nmse"])
    assert spread["nmse"]["values"][1] != spread["nmse"]["values"][0]  # other noise, other samples
    assert spread["nmse"]["min"] <= spread["nmse"]["mean"] <= spread["nmse"]["max"] and spread["nmse"]["std"] > 0

    # sample.ensemble: the mean of the 3 samples of each map, scored beside the single sample (the headline)
    pipe = load_pipeline(d / "ldm/model")
    cpu = torch.device("cpu")
    conditioned = RadioMapSeerSource(trained["root"], DATA).items("test", pipe.condition, pipe.physics_exponent)
    drawn = [torch.cat([raw for _, _, raw in predict_batches(pipe, conditioned, 2, s, 1, cpu)]) for s in (0, 1, 2)]
    mean = torch.from_numpy(np.load(tmp_path / "samples/float/radiodiff_mean.npy"))
    torch.testing.assert_close(mean, torch.stack(drawn).mean(0), rtol=0, atol=1e-6)
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "samples/float/radiodiff.npy")), drawn[0])
    assert summary["radiodiff_mean"]["k"] == 3 and summary["protocol"]["headline"]["radiodiff"] == "radiodiff_mean"
    timing = json.loads((tmp_path / "samples/sampling.json").read_text())["methods"]
    assert timing["radiodiff_mean"]["ms_per_map"] > timing["radiodiff"]["ms_per_map"]  # K samples' time
    ratio = summary["ratios"]["radiodiff_mean/radiounet"]["nmse"]["ratio"]
    assert ratio == pytest.approx(summary["radiodiff_mean"]["nmse"] / summary["radiounet"]["nmse"])
    # RadioUNet's maps through the LDM's first stage: the error the VAE adds to a good map
    unet = torch.from_numpy(np.load(tmp_path / "samples/float/radiounet.npy"))
    through = torch.from_numpy(np.load(tmp_path / "samples/float/radiounet_vae.npy"))
    per_item = torch.cat([pipe.reconstruct(unet[i : i + 1]) for i in range(len(unet))])  # the stage's batches of 1
    torch.testing.assert_close(through, per_item, rtol=0, atol=1e-6)
    assert "radiounet_vae/radiounet" in summary["ratios"] and summary["radiounet_vae"]["nmse"] > 0

    # the structure scores in every scope, and how they were taken
    for scope in (summary["radiodiff"], summary["radiodiff"]["outdoor"], summary["radiodiff"]["paper"]):
        assert {"relative_error", "peak_distance_px", "peak_distance_m", "peak_hit", "sharpness_ratio"} <= set(scope)
    assert summary["radiodiff"]["peak_distance_m"] == pytest.approx(
        summary["radiodiff"]["peak_distance_px"] * 2.0
    )  # 64 m maps at 32 px
    assert (
        "[-1, 1]" in summary["protocol"]["relative_error"] and "2 m per pixel" in summary["protocol"]["peak_distance"]
    )
    assert "left out" in summary["protocol"]["lpips"] and "left out" in summary["protocol"]["fid_kid"]

    # uncertainty: the per-pixel std (ddof 1) of the 3 samples, zero where the buildings are known
    std = torch.stack([torch.from_numpy(np.load(tmp_path / "samples/uncertainty" / f"{n}.npy")) for n in items.names])[
        :, None
    ]
    expect = zero_buildings(torch.stack(drawn).std(0), items.tensors["buildings"])
    torch.testing.assert_close(std, expect, rtol=0, atol=1e-5)
    calib = summary["uncertainty"]
    assert calib["k"] == 3 and calib["method"] == "radiodiff_mean" and calib["scope"] == "outdoor"
    outdoor = int((~building_pixels(items.tensors["buildings"])).sum())
    assert calib["pixels"] == sum(calib["reliability"]["pixels"]) == outdoor
    assert 0 <= calib["coverage"]["within_2sigma"] <= calib["coverage"]["t_interval"]["share"] <= 1
    assert calib["coverage"]["t_interval"]["t"] == pytest.approx(4.302653, rel=1e-6)  # t(0.975, 2)
    assert set(calib["none"]) == {"radiounet", "physics"}

    # the ground truth at the model's size, and `radiodiff compare` reproducing the `all` scope
    from radiodiff.evaluate.compare import compare

    for i, name in enumerate(items.names):
        assert np.array_equal(read_png(tmp_path / "samples/truth" / f"{name}.png"), unit_to_gray(target[i, 0]))
    c = compare(tmp_path / "samples/truth", tmp_path / "samples/radiodiff_mean", "radiomapseer")
    top = summary["radiodiff_mean"]
    assert c.summary["rmse"]["n"] == top["n_images"] == len(items)
    assert c.summary["rmse"]["mean"] == pytest.approx(top["rmse"], abs=0.5 / 255)  # the truth's PNG rounding
    assert c.summary["rmse_db"]["mean"] == pytest.approx(top["rmse_db"], abs=99.16 * 0.5 / 255)
    assert c.summary["whole_set_rmse"]["mean"] == pytest.approx(top["rmse_whole_set"], abs=0.5 / 255)

    # LPIPS from a local weight file (a random network here); FID/KID: test_metrics.py
    evaluate = {"lpips": True, "lpips_net": "alex", "lpips_backbone_path": None, "fid_weights": None}
    with pytest.raises(ParamsError, match="evaluate.lpips_backbone_path"):
        score_test.run(
            {**params, "evaluate": evaluate}, "radiomapseer", tmp_path / "samples", tmp_path / "eval2", root=root
        )
    assert not (tmp_path / "eval2").exists()
    evaluate["lpips_backbone_path"] = str(random_alexnet)
    score_test.run(
        {**params, "evaluate": evaluate}, "radiomapseer", tmp_path / "samples", tmp_path / "eval2", root=root
    )
    scored = json.loads((tmp_path / "eval2/summary.json").read_text())
    for method in ("radiodiff", "radiounet", "physics"):
        entry = scored[method]
        assert entry["lpips"] > 0 and "lpips" not in entry["outdoor"]  # the top-level scope only
        assert "fid" not in entry
    assert "alex" in scored["protocol"]["lpips"] and "left out" in scored["protocol"]["fid_kid"]
    with open(tmp_path / "eval2/per_sample.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["method"] == "radiodiff"]
    assert all(float(r["lpips"]) > 0 for r in rows if r["scope"] == "all")
    lp = LPIPSScore("alex", random_alexnet)
    first = items.names.index(rows[0]["name"])
    pred = read_maps(tmp_path / "samples/radiodiff", [rows[0]["name"]], "radiomapseer")
    assert float(rows[0]["lpips"]) == pytest.approx(lp(pred, target[first : first + 1].float()).item(), rel=1e-5)


def test_model_folders_hold_raw_and_ema_weights(trained, tmp_path):
    """Training exports the EMA weights (``unet/``, ``net/``) and the raw ones beside them
    (``unet_raw/``, ``net_raw/``, recorded in the folder's JSON); ``sample.use_ema`` chooses, and a
    folder without raw weights is a clear error."""
    import shutil

    from radiodiff.core.errors import RadiodiffError
    from radiodiff.evaluate import sample_test

    d = trained["dir"]
    for folder, net, meta in (("ldm", "unet", "radiodiff.json"), ("radiounet", "net", "radiounet.json")):
        model = d / folder / "model"
        assert (model / f"{net}_raw" / "model.safetensors").is_file()
        assert set(json.loads((model / meta).read_text())["weights"]) == {net, f"{net}_raw"}
        ema, raw = load_pipeline(model), load_pipeline(model, ema=False)
        ema_w, raw_w = getattr(ema, net).state_dict(), getattr(raw, net).state_dict()
        assert ema_w.keys() == raw_w.keys() and any(not torch.equal(ema_w[k], raw_w[k]) for k in ema_w)
    params = {
        **trained["params"],
        "sample": {
            "steps": 2,
            "seed": 0,
            "seeds": 1,
            "ensemble": False,
            "batch_size": 2,
            "use_ema": False,
            "precision": "fp32",
        },  # fmt: skip
    }
    root = str(trained["root"])
    sample_test.run(params, "radiomapseer", d / "ldm/model", d / "radiounet/model", tmp_path / "raw", root=root)
    methods = json.loads((tmp_path / "raw/sampling.json").read_text())["methods"]
    assert methods["radiodiff"]["weights"] == methods["radiounet"]["weights"] == "raw"
    old = tmp_path / "old"
    shutil.copytree(d / "radiounet/model", old)
    shutil.rmtree(old / "net_raw")
    with pytest.raises(RadiodiffError, match=r"no raw weights \(net_raw/"):
        load_pipeline(old, ema=False)
    assert load_pipeline(old).net is not None  # the EMA weights still load


def test_the_condition_at_full_resolution_and_the_prior_as_a_latent(trained, tmp_path):
    """``model.cond_stem`` (the raw condition at the stem) and ``model.prior_latent`` (the physics
    prior through the target VAE, an extra latent scaled as the target) train, export and sample;
    the folder records the prior latent; without the physics condition it is a clear error."""
    import copy

    from radiodiff.core.errors import ParamsError
    from radiodiff.train import ldm

    params = copy.deepcopy(trained["params"])
    params["runtime"]["state_dir"] = str(tmp_path / "state")
    params["train_ldm_radiomapseer"]["model"] |= {"cond_stem": True, "prior_latent": True}
    root, vae = str(trained["root"]), str(trained["dir"] / "vae")
    ldm.run(params, "radiomapseer", tmp_path / "ldm", root=root, vae=vae)
    pipe = load_pipeline(tmp_path / "ldm/model")
    assert pipe.record.prior_latent and pipe.extra_latent_channels == 3
    assert pipe.network.config.cond_stem and pipe.network.config.extra_channels == 3
    items = RadioMapSeerSource(trained["root"], DATA).items("test", pipe.condition, pipe.physics_exponent).stacked()
    cond = items.tensors["condition"]
    mean, _ = pipe.target_posterior(cond[:, 2:3])
    torch.testing.assert_close(pipe.extra_latents(cond), mean * pipe.scale_factor)
    maps = pipe(cond, generator=torch.Generator().manual_seed(0))
    assert maps.shape == (len(cond), 1, 32, 32) and torch.isfinite(maps).all()
    params["data"]["radiomapseer"] = {**DATA, "condition": "static"}
    with pytest.raises(ParamsError, match=r"train_ldm_radiomapseer\.model\.prior_latent: .*condition physics"):
        ldm.run(params, "radiomapseer", tmp_path / "static", root=root, vae=vae)
    assert not (tmp_path / "static").exists()


def test_the_radiomapseer_vae_trains_on_flipped_maps_with_their_edges(trained, tmp_path):
    """train_vae_radiomapseer.data.augment: the 8 flips/rotations of each gain map, its edge map
    turned with it (the edge-aware loss weights the same pixels)."""
    from radiodiff.data.edges import run as edges_stage
    from radiodiff.data.items import radiomapseer_images

    root, edges = trained["root"], tmp_path / "edges"
    settings = dict(method="canny", low_threshold=50, high_threshold=150, ksize=3, threshold=40)
    edges_stage({"edges": settings, "data": {"radiomapseer": {"simulation": "DPM"}}}, root, edges)
    plain = radiomapseer_images(root, edges, "train", DATA)
    flipped = radiomapseer_images(root, edges, "train", DATA, augment=True)
    assert len(flipped) == N_DIHEDRAL * len(plain)
    assert float(plain[0]["edges"].sum()) > 0
    for v in (0, 3, 5):
        item = flipped[v]  # variant v of the first image
        assert torch.equal(item["image"], dihedral(plain[0]["image"], v))
        assert torch.equal(item["edges"], dihedral(plain[0]["edges"], v))
