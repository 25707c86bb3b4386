"""``radiodiff import radiodiff-checkpoint``: the original RadioDiff code's checkpoints, built here
from a fixture of their tensor names, shapes and dtypes (facts; the fixture was written by a
scratch script that ran the original code at a small configuration), converted into a model
folder that the pipeline loads unchanged. The outputs were compared against the original code
itself outside the project (max abs differences in the issue 15 note)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from radiodiff.cli import main
from radiodiff.core.errors import RadiodiffError
from radiodiff.models.import_radiodiff import import_checkpoint
from radiodiff.models.radiodiff import RadioDiffPipeline

FIXTURE = Path(__file__).parent / "fixtures" / "radiodiff_original_small.json"
IMAGE = 64  # the fixture's map side (latent 16)
WINDOWS = (2, 2, 1, 1)  # its relation windows (not held by the weights)


def _tensors(facts: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, (shape, dtype) in facts.items():
        if dtype.startswith("int"):
            out[name] = torch.zeros(shape, dtype=getattr(torch, dtype))
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=gen) + 0.5
        elif name == "scale_factor":
            out[name] = torch.tensor(0.3)
        else:
            out[name] = torch.randn(shape, generator=gen) * 0.02
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The original layout: LDM ``{'model', 'ema'}`` (the EMA differs in one tensor; the rest
    shares storage, so the file stays small) and the first stage ``{'model'}``."""
    facts = json.loads(FIXTURE.read_text())
    gen = torch.Generator().manual_seed(0)
    model = _tensors(facts["ldm_model"], gen)
    ema = {f"ema_model.{k}": v for k, v in model.items()}
    ema["ema_model.model.final_conv.weight"] = model["model.final_conv.weight"] + 1.0
    ema.update(initted=torch.tensor([True]), step=torch.tensor([10]))
    folder = tmp_path_factory.mktemp("original")
    torch.save({"model": model, "ema": ema}, folder / "model-1.pt")
    vae = {k[len("first_stage_model.") :]: v for k, v in model.items() if k.startswith("first_stage_model.")}
    assert set(vae) == set(facts["vae_model"])
    torch.save({"model": vae}, folder / "vae.pt")
    return folder, model, vae


def _import(folder, out, **kw):
    return import_checkpoint(
        folder / "vae.pt", folder / "model-1.pt", out, image_size=IMAGE, cross_windows=WINDOWS, **kw
    )


def test_the_imported_folder_samples_with_the_pipeline(checkpoints, tmp_path, capsys):
    folder, model, _ = checkpoints
    out = tmp_path / "imported"
    rc = main(
        ["import", "radiodiff-checkpoint", "--vae", str(folder / "vae.pt"), "--ldm", str(folder / "model-1.pt")]
        + ["--out", str(out), "--image-size", str(IMAGE), "--cross-windows", ",".join(map(str, WINDOWS))]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["unet_weights"] == "ema" and summary["scale_factor"] == pytest.approx(0.3)
    meta = json.loads((out / "radiodiff.json").read_text())
    assert meta["dataset"] == "radiomapseer" and meta["image_size"] == IMAGE and meta["skip"] is True
    ema_pipe = RadioDiffPipeline.from_pretrained(out)
    raw_pipe = RadioDiffPipeline.from_pretrained(out, ema=False)
    cfg = ema_pipe.unet.config
    assert cfg.block_style == "original" and cfg.dims == [32, 32, 64, 128, 128] and cfg.aft
    assert cfg.cross_windows == WINDOWS and cfg.swin_depths == (2, 2, 18, 2)
    assert ema_pipe.vae.config.downsample_padding == "end"
    # tensor for tensor: the EMA file's final conv in unet/, the raw one in unet_raw/
    src = model["model.final_conv.weight"]
    assert torch.equal(raw_pipe.unet.decoder_c.final_conv.weight, src)
    assert torch.equal(ema_pipe.unet.decoder_c.final_conv.weight, src + 1.0)
    assert torch.equal(
        raw_pipe.unet.down[1].cross.cond_in[1].running_var,
        model["model.relation_layers_down.1.input_conv1.1.running_var"],
    )
    assert torch.equal(raw_pipe.unet.time_embed.freqs, model["model.time_mlp.0.W"])
    assert torch.equal(
        ema_pipe.vae.decoder.levels[0].resample.conv.weight,
        model["first_stage_model.decoder.up.2.upsample.conv.weight"],
    )
    cond = torch.rand(1, 3, IMAGE, IMAGE) * 2 - 1
    maps = ema_pipe(cond, steps=1, generator=torch.Generator().manual_seed(0))
    assert maps.shape == (1, 1, IMAGE, IMAGE) and torch.isfinite(maps).all()


def test_a_dec2024_checkpoint_leaves_the_aft_weights_out(checkpoints, tmp_path):
    folder, _, _ = checkpoints
    _import(folder, tmp_path / "dec", version="dec2024")
    pipe = RadioDiffPipeline.from_pretrained(tmp_path / "dec")
    assert pipe.unet.config.aft is False and pipe.record.weighting == "dec2024"


def test_a_truncated_checkpoint_is_one_clear_error_and_writes_nothing(checkpoints, tmp_path):
    folder, _, _ = checkpoints
    bad = tmp_path / "model-1.pt"
    bad.write_bytes((folder / "model-1.pt").read_bytes()[:4096])
    with pytest.raises(RadiodiffError, match=r"model-1\.pt: unreadable checkpoint"):
        import_checkpoint(folder / "vae.pt", bad, tmp_path / "out", image_size=IMAGE)
    assert not (tmp_path / "out").exists()


def test_another_architecture_names_the_file_and_tensor(checkpoints, tmp_path):
    folder, model, _ = checkpoints
    other = dict(model)
    other["model.relation_layers_down.0.attentions.0.q_lin.weight"] = torch.zeros(32, 16)
    torch.save({"model": other}, tmp_path / "other.pt")
    match = r"other\.pt \('model' state dict\): tensor 'model\.relation_layers_down\.0\.attentions\.0\.q_lin\.weight' "
    match += r"has shape \[32, 16\]"
    with pytest.raises(RadiodiffError, match=match):
        import_checkpoint(folder / "vae.pt", tmp_path / "other.pt", tmp_path / "out", image_size=IMAGE)
    light = {"model.stem.weight": torch.zeros(32, 35, 3, 3), "scale_factor": torch.tensor(0.3)}
    torch.save({"model": light}, tmp_path / "light.pt")
    with pytest.raises(
        RadiodiffError, match=r"light\.pt \('model' state dict\): no tensor 'model\.init_conv\.0\.weight'"
    ):
        import_checkpoint(folder / "vae.pt", tmp_path / "light.pt", tmp_path / "out", image_size=IMAGE)
    assert not (tmp_path / "out").exists()


def test_a_vae_of_other_latent_channels_is_refused(checkpoints, tmp_path):
    folder, _, vae = checkpoints
    four = dict(vae)
    four["quant_conv.weight"], four["quant_conv.bias"] = torch.zeros(8, 6, 1, 1), torch.zeros(8)
    four["post_quant_conv.weight"] = torch.zeros(3, 4, 1, 1)
    torch.save({"model": four}, tmp_path / "vae4.pt")
    with pytest.raises(RadiodiffError, match=r"vae4\.pt: tensor 'post_quant_conv\.weight' gives 4 latent channels"):
        import_checkpoint(tmp_path / "vae4.pt", folder / "model-1.pt", tmp_path / "out", image_size=IMAGE)
    assert not (tmp_path / "out").exists()
