"""The second-stage conditional U-Net (two decoders, Swin condition encoder) on tiny configs."""

from __future__ import annotations

import json
import time

import pytest
import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.models.cond_unet import CondUNet, swin_parameters
from radiodiff.models.persistence import count_parameters
from radiodiff.models.swin import PAPER_SWIN_B
from radiodiff.models.unet_config import CondUNetConfig

# Condition 32×32 -> latent 8×8; levels at 8/4, Swin stages at 8/4/2 (the last one feeds the middle).
TINY = dict(
    image_size=32,
    dim=16,
    dim_mults=(1, 2),
    resnet_groups=4,
    time_dim=32,
    attn_heads=2,
    attn_dim_head=8,
    cross_windows=(2, 1),
    swin_embed_dim=16,
    swin_depths=(1, 1, 1),
    swin_num_heads=(1, 2, 2),
    swin_window_size=4,
)

# REFERENCE §3.2: dims [128, 128, 256, 512, 512] at levels 64/32/16/8, Swin-B, 3×64×64 latent.
PAPER = dict(image_size=256, dim=128, dim_mults=(1, 2, 4, 4), cross_windows=(8, 4, 2, 1), time_dim=512, **PAPER_SWIN_B)


def tiny_config(**kw) -> CondUNetConfig:
    return CondUNetConfig(**{**TINY, **kw})


def tiny_model(seed: int = 0, **kw) -> CondUNet:
    torch.manual_seed(seed)
    return CondUNet(tiny_config(**kw))


def inputs(cfg: CondUNetConfig, batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = cfg.latent_size
    z = torch.randn(batch, cfg.latent_channels, s, s, generator=g)
    t = torch.rand(batch, generator=g).clamp_min(1e-4)
    cond = torch.rand(batch, cfg.cond_channels, cfg.image_size, cfg.image_size, generator=g) * 2 - 1
    extra = torch.randn(batch, cfg.extra_channels, s, s, generator=g) if cfg.extra_channels else None
    return z, t, cond, extra


# --------------------------------------------------------------------------------------------
# Shapes and gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra_channels", [0, 6])
@pytest.mark.parametrize("aft", [True, False])
def test_output_shapes(extra_channels, aft):
    model = tiny_model(extra_channels=extra_channels, aft=aft).eval()
    z, t, cond, extra = inputs(model.config, batch=3)
    with torch.no_grad():
        f_c, f_eps = model(z, t, cond, extra)
    assert f_c.shape == f_eps.shape == z.shape == (3, 3, 8, 8)
    assert torch.isfinite(f_c).all() and torch.isfinite(f_eps).all()
    # Two decoders with separate weights give different outputs.
    assert not torch.allclose(f_c, f_eps)
    assert hasattr(model.decoder_c.aft, "weight") == aft


def test_gradients_reach_both_decoders_and_the_swin():
    model = tiny_model(extra_channels=3)
    z, t, cond, extra = inputs(model.config)
    f_c, f_eps = model(z, t, cond, extra)
    (f_c.square().mean() + f_eps.square().mean()).backward()
    # Every parameter takes part (DistributedDataParallel needs no find_unused_parameters).
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []
    for name in ("decoder_c", "decoder_eps", "down", "cond_encoder"):
        grads = [p.grad.abs().sum() for n, p in model.named_parameters() if n.startswith(name)]
        assert sum(grads) > 0, name
    assert all(p.grad.abs().sum() > 0 for p in swin_parameters(model) if p.dim() > 1)


def test_decoders_have_separate_weights():
    model = tiny_model()
    z, t, cond, _ = inputs(model.config)
    f_c, _ = model(z, t, cond)
    f_c.square().mean().backward()
    assert all(p.grad is None for p in model.decoder_eps.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder_c.parameters())


def test_bfloat16_autocast_and_channels_last():
    model = tiny_model(extra_channels=2)
    z, t, cond, extra = inputs(model.config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f_c, f_eps = model(z, t, cond, extra)
    assert f_c.shape == z.shape and f_c.dtype == torch.bfloat16
    (f_c.float().square().mean() + f_eps.float().square().mean()).backward()
    assert torch.isfinite(model.decoder_c.aft.weight.grad).all()
    model.zero_grad()
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(z.contiguous(memory_format=torch.channels_last), t, cond, extra)
    assert out[0].shape == z.shape


def test_scalar_t_broadcasts():
    model = tiny_model().eval()
    z, _, cond, _ = inputs(model.config)
    with torch.no_grad():
        a = model(z, torch.tensor(0.5), cond)
        b = model(z, torch.full((2,), 0.5), cond)
    torch.testing.assert_close(a, b)


def test_paper_config_builds_and_runs():
    torch.manual_seed(0)
    start = time.perf_counter()
    model = CondUNet(CondUNetConfig(**PAPER)).eval()
    built = time.perf_counter() - start
    total = count_parameters(model)
    swin = sum(p.numel() for p in swin_parameters(model))
    cfg = model.config
    assert cfg.dims == [128, 128, 256, 512, 512] and cfg.latent_size == 64
    z, t, cond, _ = inputs(cfg, batch=1)
    start = time.perf_counter()
    with torch.no_grad():
        f_c, f_eps = model(z, t, cond)
    ran = time.perf_counter() - start
    print(
        f"\npaper CondUNet: {total:,} parameters, Swin-B {swin:,}, without the Swin {total - swin:,}; "
        f"build {built:.1f} s, batch-1 forward {ran:.1f} s"
    )
    assert f_c.shape == f_eps.shape == (1, 3, 64, 64)
    assert torch.isfinite(f_c).all() and torch.isfinite(f_eps).all()
    # timm's Swin-B is 86.7 M without its classifier; REFERENCE §3.2 quotes ~137 M for the U-Net.
    assert 80e6 < swin < 95e6
    assert 100e6 < total - swin < 180e6


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


def test_config_json_round_trip():
    cfg = tiny_config(extra_channels=6, aft=False, swin_checkpoint="weights/swin.safetensors")
    back = CondUNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert isinstance(back.dim_mults, tuple) and back.to_dict()["dim_mults"] == [1, 2]
    # Metadata keys are ignored, unknown keys are not.
    assert CondUNetConfig.from_dict({**cfg.to_dict(), "_class_name": "CondUNet"}) == cfg
    with pytest.raises(ParamsError, match="unknown key"):
        CondUNetConfig.from_dict({**cfg.to_dict(), "dims": [1]})
    assert CondUNetConfig().to_dict()["swin_depths"] == [2, 2, 18, 2]


@pytest.mark.parametrize(
    "key, value",
    [
        ("dim", 0),
        ("latent_channels", 2.5),
        ("extra_channels", -1),
        ("dim_mults", []),
        ("dim_mults", "12"),
        ("resnet_groups", 5),  # does not divide 16
        ("cross_windows", (2,)),  # one per level
        ("swin_num_heads", (1, 2)),  # one per stage
        ("swin_num_heads", (3, 2, 2)),  # 3 does not divide 16
        ("swin_depths", (1, 1, 1, 1)),  # more stages than levels + middle
        ("image_size", 24),  # not a multiple of 16
        ("fourier_scale", 0),
        ("dropout", 1.0),
        ("aft", "yes"),
        ("swin_checkpoint", 3),
    ],
)
def test_config_validation_names_the_field(key, value):
    with pytest.raises(ParamsError, match=key):
        tiny_config(**{key: value})


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tmp_path):
    model = tiny_model(extra_channels=2).eval()
    model.save_pretrained(tmp_path / "unet")
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "unet" / "config.json").read_text())["_class_name"] == "CondUNet"
    loaded = CondUNet.from_pretrained(tmp_path / "unet").eval()
    assert loaded.config == model.config
    z, t, cond, extra = inputs(model.config)
    with torch.no_grad():
        a, b = model(z, t, cond, extra), loaded(z, t, cond, extra)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # The fixed Fourier frequencies are saved with the weights.
    assert torch.equal(model.time_embed.freqs, loaded.time_embed.freqs)


def test_torch_format_and_stale_file(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path / "u")
    model.save_pretrained(tmp_path / "u", safe_serialization=False)
    assert not (tmp_path / "u" / "model.safetensors").exists()
    loaded = CondUNet.from_pretrained(tmp_path / "u")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_load_errors(tmp_path):
    with pytest.raises(RadiodiffError, match="folder not found"):
        CondUNet.from_pretrained(tmp_path / "missing")
    model = tiny_model()
    model.save_pretrained(tmp_path / "u")
    (tmp_path / "u" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RadiodiffError, match="unreadable"):
        CondUNet.from_pretrained(tmp_path / "u")
    (tmp_path / "u" / "model.safetensors").unlink()
    with pytest.raises(RadiodiffError, match="no model.safetensors"):
        CondUNet.from_pretrained(tmp_path / "u")
    model.save_pretrained(tmp_path / "v")
    cfg = json.loads((tmp_path / "v" / "config.json").read_text())
    (tmp_path / "v" / "config.json").write_text(json.dumps({**cfg, "dim": 32}))
    with pytest.raises(RadiodiffError, match="do not match config.json"):
        CondUNet.from_pretrained(tmp_path / "v")
    (tmp_path / "v" / "config.json").write_text(json.dumps({**cfg, "_class_name": "AutoencoderKL"}))
    with pytest.raises(RadiodiffError, match="AutoencoderKL"):
        CondUNet.from_pretrained(tmp_path / "v")
    (tmp_path / "v" / "config.json").write_text("{")
    with pytest.raises(RadiodiffError, match="config"):
        CondUNet.from_pretrained(tmp_path / "v")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_swin_checkpoint_loads(tmp_path, suffix):
    donor = tiny_model(seed=3)
    state = {k: v.clone() for k, v in donor.cond_encoder.swin.state_dict().items()}
    # An ImageNet classifier in the file is fine: it is dropped on purpose.
    state["head.fc.weight"] = torch.zeros(10, 64)
    state["head.fc.bias"] = torch.zeros(10)
    path = tmp_path / f"swin{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)
    model = tiny_model(seed=4, swin_checkpoint=str(path))
    for (name, a), b in zip(donor.cond_encoder.swin.named_parameters(), swin_parameters(model), strict=True):
        assert torch.equal(a, b), name
    proj = model.cond_encoder.swin.patch_embed.proj.weight
    assert not torch.equal(tiny_model(seed=4).cond_encoder.swin.patch_embed.proj.weight, proj)

    # from_pretrained does not need the checkpoint file any more: the weights hold the Swin.
    model.save_pretrained(tmp_path / "u")
    path.unlink()
    loaded = CondUNet.from_pretrained(tmp_path / "u")
    assert loaded.config.swin_checkpoint == str(path)
    assert torch.equal(loaded.cond_encoder.swin.patch_embed.proj.weight, proj)


def test_swin_checkpoint_errors(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ParamsError, match=r"swin_checkpoint: .*nope\.safetensors: file not found"):
        tiny_model(swin_checkpoint=str(missing))
    corrupt = tmp_path / "bad.pt"
    corrupt.write_bytes(b"garbage")
    with pytest.raises(ParamsError, match="swin_checkpoint: .*unreadable"):
        tiny_model(swin_checkpoint=str(corrupt))
    other = tiny_model(swin_embed_dim=32, swin_num_heads=(2, 2, 4))  # same keys, other shapes
    torch.save(other.cond_encoder.swin.state_dict(), tmp_path / "wide.pt")
    with pytest.raises(ParamsError, match="swin_checkpoint: .*does not fit"):
        tiny_model(swin_checkpoint=str(tmp_path / "wide.pt"))
    partial = dict(list(tiny_model().cond_encoder.swin.state_dict().items())[:3])
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(ParamsError, match="swin_checkpoint: .*missing"):
        tiny_model(swin_checkpoint=str(tmp_path / "partial.pt"))


# --------------------------------------------------------------------------------------------
# Input checks and determinism
# --------------------------------------------------------------------------------------------


def test_shape_mismatch_errors():
    model = tiny_model(extra_channels=2)
    z, t, cond, extra = inputs(model.config)
    with pytest.raises(RadiodiffError, match=r"z_t must be \(B, 3, 8, 8\)"):
        model(torch.zeros(2, 4, 8, 8), t, cond, extra)
    with pytest.raises(RadiodiffError, match="image_size 32 // 4"):
        model(torch.zeros(2, 3, 16, 16), t, cond, extra)
    with pytest.raises(RadiodiffError, match="cond must be"):
        model(z, t, torch.zeros(2, 3, 64, 64), extra)
    with pytest.raises(RadiodiffError, match="cond must be"):
        model(z, t, torch.zeros(2, 1, 32, 32), extra)
    with pytest.raises(RadiodiffError, match="extra latents .* are required"):
        model(z, t, cond)
    with pytest.raises(RadiodiffError, match="extra must be"):
        model(z, t, cond, torch.zeros(2, 3, 8, 8))
    with pytest.raises(RadiodiffError, match="t must be"):
        model(z, torch.rand(3), cond, extra)
    plain = tiny_model()
    with pytest.raises(RadiodiffError, match="extra_channels is 0"):
        plain(z, t, cond, extra)


def test_same_seed_same_model_same_output():
    a, b, c = tiny_model(seed=7).eval(), tiny_model(seed=7).eval(), tiny_model(seed=8).eval()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    z, t, cond, _ = inputs(a.config)
    with torch.no_grad():
        out_a, out_b, out_c = a(z, t, cond), b(z, t, cond), c(z, t, cond)
    assert torch.equal(out_a[0], out_b[0]) and torch.equal(out_a[1], out_b[1])
    assert not torch.allclose(out_a[0], out_c[0])


# --------------------------------------------------------------------------------------------
# The original's blocks (block_style original)
# --------------------------------------------------------------------------------------------

# One Swin stage per level, two ResBlocks per level, widths multiples of 8.
TINY_ORIGINAL = dict(
    TINY, block_style="original", dim=16, dim_mults=(1, 2), resnet_groups=8, swin_depths=(1, 1), swin_num_heads=(1, 2)
)

# The Jul-2025 U-Net (AFT on) counted group by group from the original code at the paper
# configuration (issue 15): trainable parameters in use outside the Swin; the 64 Gaussian Fourier
# frequencies (frozen there) are a buffer here.
ORIGINAL_GROUPS = {
    "stem": 822_016,
    "projections": 705_536,
    "encoder relation blocks": 4_341_760,
    "encoder downsampling + last-level conv": 5_244_288,
    "middle relation block": 0,
    "AFT, both decoders": 4_803_584,
    "decoder relation blocks": 14_266_368,
    "encoder linear attention": 527_360,
    "decoder linear attention": 1_450_240,
    "middle full self-attention": 263_168,
    "time embedding": 328_704,
}
# Counted from the Dec-2024 code (its forward does not call the AFT modules it builds) by
# recording which modules a forward pass at the paper configuration runs: 137,101,190 − 4,803,584.
DEC2024_TRAINABLE_IN_USE = 132_297_606


def original_groups(model: CondUNet) -> dict[str, int]:
    def n(*modules) -> int:
        return sum(count_parameters(m) for m in modules)

    decoders = (model.decoder_c, model.decoder_eps)
    return {
        "stem": n(model.stem),
        "projections": n(model.cond_encoder.proj),
        "encoder relation blocks": n(*(level.cross for level in model.down)),
        "encoder downsampling + last-level conv": n(*(level.resample for level in model.down)),
        "middle relation block": 0 if not hasattr(model, "mid_cross") else n(model.mid_cross),
        "AFT, both decoders": n(*(d.aft for d in decoders)),
        "decoder relation blocks": n(*(level.cross for d in decoders for level in d.levels)),
        "encoder linear attention": n(*(level.attn for level in model.down)),
        "decoder linear attention": n(*(level.attn for d in decoders for level in d.levels)),
        "middle full self-attention": n(model.mid_attn),
        "time embedding": n(model.time_embed),
    }


@pytest.mark.parametrize("aft", [True, False])
def test_original_blocks_have_the_original_parameter_counts(aft):
    with torch.device("meta"):
        model = CondUNet(CondUNetConfig(**PAPER, block_style="original", aft=aft))
    total = count_parameters(model) - sum(p.numel() for p in swin_parameters(model))
    groups = original_groups(model)
    if aft:
        assert groups == ORIGINAL_GROUPS
        assert total == 137_101_190
    else:
        assert groups == {**ORIGINAL_GROUPS, "AFT, both decoders": 0}
        assert total == DEC2024_TRAINABLE_IN_USE
    assert sum(p.numel() for p in swin_parameters(model)) == 86_741_176  # Swin-B without norm and head


@pytest.mark.parametrize("extra_channels", [0, 6])
def test_original_blocks_run_forward_and_backward(extra_channels):
    torch.manual_seed(0)
    model = CondUNet(tiny_config(**TINY_ORIGINAL, extra_channels=extra_channels))
    z, t, cond, extra = inputs(model.config)
    f_c, f_eps = model(z, t, cond, extra)
    assert f_c.shape == f_eps.shape == z.shape
    (f_c.square().mean() + f_eps.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    model.eval()
    with torch.no_grad():  # another condition size, as the original takes it (stage 0 resized)
        a = model(z, t, torch.rand(2, 3, 40, 40) * 2 - 1, extra)
    assert a[0].shape == z.shape and torch.isfinite(a[0]).all()


def test_original_blocks_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = CondUNet(tiny_config(**TINY_ORIGINAL)).eval()
    model.save_pretrained(tmp_path / "unet")
    loaded = CondUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config.block_style == "original"
    z, t, cond, _ = inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(model(z, t, cond), loaded(z, t, cond))


def test_a_config_without_block_style_loads_as_the_light_blocks(tmp_path):
    model = tiny_model().eval()
    model.save_pretrained(tmp_path / "unet")
    raw = json.loads((tmp_path / "unet" / "config.json").read_text())
    del raw["block_style"]
    (tmp_path / "unet" / "config.json").write_text(json.dumps(raw))
    loaded = CondUNet.from_pretrained(tmp_path / "unet")
    assert loaded.config.block_style == "light"


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(swin_depths=(1, 1, 1), swin_num_heads=(1, 2, 2)), "swin_depths"),
        (dict(num_res_blocks=1), "num_res_blocks"),
        (dict(dim=12, resnet_groups=4), "multiple of 8"),
        (dict(block_style="heavy"), "block_style"),
    ],
)
def test_original_block_config_errors(kw, field):
    with pytest.raises(ParamsError, match=field):
        tiny_config(**{**TINY_ORIGINAL, **kw})


def test_original_blocks_load_a_torchvision_swin_checkpoint(tmp_path):
    torch.manual_seed(3)
    donor = CondUNet(tiny_config(**TINY_ORIGINAL))
    state = dict(donor.cond_encoder.swin.state_dict())
    state["head.weight"] = torch.zeros(10, 32)  # an ImageNet head is dropped
    torch.save(state, tmp_path / "swin.pt")
    model = CondUNet(tiny_config(**TINY_ORIGINAL, swin_checkpoint=str(tmp_path / "swin.pt")))
    for (name, a), b in zip(donor.cond_encoder.swin.named_parameters(), swin_parameters(model), strict=True):
        assert torch.equal(a, b), name
    del state["features.0.0.weight"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ParamsError, match=r"partial\.pt: no tensor 'features\.0\.0\.weight'"):
        CondUNet(tiny_config(**TINY_ORIGINAL, swin_checkpoint=str(tmp_path / "partial.pt")))


@pytest.mark.parametrize("style", ["light", "original"])
def test_cond_stem_gives_the_stem_every_raw_condition_pixel(style):
    """``cond_stem``: the condition pixel-unshuffled to the latent grid joins z_t at the stem
    (cond_channels x 16 more input channels), so a change of one condition pixel (a Tx moved by
    one pixel, within a Swin patch) reaches the output through it; off, the stem is unchanged."""
    kw = TINY_ORIGINAL if style == "original" else {}
    plain, raw = tiny_model(**kw), tiny_model(cond_stem=True, **kw)
    stem = (lambda m: m.stem[0]) if style == "original" else (lambda m: m.stem)
    assert stem(raw).in_channels == stem(plain).in_channels + 3 * 16
    assert raw.config.stem_cond_channels == 48 and plain.config.stem_cond_channels == 0
    z, t, cond, extra = inputs(raw.config)
    moved = cond.clone()
    moved[:, 1, 5, 5], moved[:, 1, 5, 6] = cond[:, 1, 5, 6], cond[:, 1, 5, 5]  # two pixels of one 4x4 patch swapped
    with torch.no_grad():
        out, out_moved = raw.eval()(z, t, cond, extra), raw(z, t, moved, extra)
    assert not torch.allclose(out[0], out_moved[0])
    assert CondUNetConfig.from_dict(raw.config.to_dict()).cond_stem is True
    with pytest.raises(ParamsError, match="cond_stem must be true or false"):
        tiny_config(cond_stem="yes")
