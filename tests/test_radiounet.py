"""The RadioUNet-style supervised baseline on tiny configs (CPU, seconds)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig
from radiodiff.models.persistence import count_parameters, load_network_weights
from radiodiff.models.radiounet import RadioUNet, RadioUNetConfig, RadioUNetPipeline

TINY = RadioUNetConfig(image_size=32, base_channels=4, channel_mults=(1, 2, 4), blocks_per_level=1)


@pytest.mark.parametrize("norm", ["batch", "group", "none"])
@pytest.mark.parametrize(("down", "up"), [("maxpool", "transpose"), ("conv", "nearest")])
def test_output_shape(norm, down, up):
    cfg = RadioUNetConfig(
        in_channels=3, out_channels=2, image_size=32, base_channels=4, channel_mults=(1, 2, 4, 8),
        blocks_per_level=2, norm=norm, downsample=down, upsample=up,
    )  # fmt: skip
    model = RadioUNet(cfg)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 2, 32, 32)
    # Fully convolutional: any size divisible by 8 works, including non-square.
    assert model(torch.randn(1, 3, 16, 24)).shape == (1, 2, 16, 24)


def test_parameter_count_of_a_small_config():
    # widths 4, 8: enc 3->4 (108 + BN 8), enc 4->8 (288 + 16), up 8->4 (2·2·8·4 + 4 = 132),
    # dec 8->4 (288 + 8), out 4->1 (5)
    cfg = RadioUNetConfig(image_size=8, base_channels=4, channel_mults=(1, 2), blocks_per_level=1)
    assert count_parameters(RadioUNet(cfg)) == 108 + 8 + 288 + 16 + 132 + 288 + 8 + 5


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"image_size": 60}, "image_size"),  # 60 is not divisible by 8 (four levels)
        ({"image_size": 0}, "image_size"),
        ({"base_channels": 2.5}, "base_channels"),
        ({"channel_mults": []}, "channel_mults"),
        ({"channel_mults": [1, 0]}, "channel_mults"),
        ({"norm": "layer"}, "norm"),
        ({"downsample": "avg"}, "downsample"),
        ({"upsample": "bilinear"}, "upsample"),
        ({"blocks_per_level": True}, "blocks_per_level"),
    ],
)
def test_invalid_config_raises_params_error_naming_the_field(kwargs, key):
    with pytest.raises(ParamsError, match=key):
        RadioUNetConfig(**kwargs)


def test_config_round_trip_and_unknown_key():
    cfg = RadioUNetConfig(image_size=64, base_channels=16, channel_mults=[1, 2, 4, 8], norm="group")
    d = cfg.to_dict()
    assert d["channel_mults"] == [1, 2, 4, 8]
    assert RadioUNetConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert RadioUNetConfig.from_dict({**d, "_class_name": "RadioUNet"}) == cfg
    with pytest.raises(ParamsError, match="unknown key"):
        RadioUNetConfig.from_dict({**d, "depth": 3})


def test_wrong_input_raises_radiodiff_error():
    model = RadioUNet(TINY)
    with pytest.raises(RadiodiffError, match=r"\(B, 3, H, W\)"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(RadiodiffError, match="divisible by 4"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(RadiodiffError):
        model(torch.randn(3, 32, 32))


def _fit(model: RadioUNet, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 3, 32, 32, generator=g)
    y = (x[:, :1] * 2 - 1) * 0.5 + 0.2  # a simple learnable map of the input on [−1, 1]
    return x, y


def test_a_few_steps_reduce_the_mse():
    torch.manual_seed(0)
    x, y = _batch()
    losses = _fit(RadioUNet(TINY), x, y, steps=30)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("safe", [True, False])
def test_save_load_round_trip_gives_identical_output(tmp_path, safe):
    torch.manual_seed(0)
    model = RadioUNet(TINY)
    x, y = _batch()
    _fit(model, x, y, steps=3)  # moves the BatchNorm running statistics off their defaults
    model.eval()
    with torch.no_grad():
        before = model(x)
    out = model.save_pretrained(tmp_path / "model", safe_serialization=safe)
    assert (out / "config.json").is_file()
    assert (out / ("model.safetensors" if safe else "model.pt")).is_file()
    assert not (out / ("model.pt" if safe else "model.safetensors")).exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["_class_name"] == "RadioUNet" and cfg["channel_mults"] == [1, 2, 4]
    loaded = RadioUNet.from_pretrained(out)
    assert not loaded.training and loaded.config == TINY
    with torch.no_grad():
        assert torch.equal(loaded(x), before)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(RadiodiffError, match="not found"):
        RadioUNet.from_pretrained(tmp_path / "missing")
    vae = AutoencoderKL(AutoencoderKLConfig(ch=8, ch_mult=(1,), num_res_blocks=1, resolution=8))
    vae.save_pretrained(tmp_path / "vae")
    with pytest.raises(RadiodiffError, match="AutoencoderKL, not a RadioUNet"):
        RadioUNet.from_pretrained(tmp_path / "vae")
    d = RadioUNet(TINY).save_pretrained(tmp_path / "unet")
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(RadiodiffError, match="unreadable"):
        RadioUNet.from_pretrained(d)
    RadioUNet(RadioUNetConfig(**{**TINY.to_dict(), "base_channels": 8})).save_pretrained(tmp_path / "other")
    (d / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(RadiodiffError, match="do not match"):
        RadioUNet.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(RadiodiffError, match="cannot read"):
        RadioUNet.from_pretrained(d)


def test_init_from_loads_the_network_of_the_model_class_or_names_the_mismatch(tmp_path):
    """``train.init_from``: the network of the model's class in a model folder (itself or a
    pipeline's sub-folder); another class or a tensor of another shape is a clear error."""
    torch.manual_seed(0)
    source = RadioUNet(TINY)
    record = {"dataset": "radiomapseer", "condition": "static", "image_size": 32}
    pipe_dir = RadioUNetPipeline(source, record).save_pretrained(tmp_path / "pipe")
    torch.manual_seed(1)
    target = RadioUNet(TINY)
    assert load_network_weights(target, pipe_dir) == pipe_dir / "net"
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    AutoencoderKL(AutoencoderKLConfig(ch=8, ch_mult=(1,), num_res_blocks=1, resolution=8)).save_pretrained(
        tmp_path / "vae"
    )
    with pytest.raises(RadiodiffError, match=r"no RadioUNet network to start from \(it holds: AutoencoderKL in \./\)"):
        load_network_weights(target, tmp_path / "vae")
    wider = RadioUNet(RadioUNetConfig(**{**TINY.to_dict(), "base_channels": 8}))
    first = next(iter(wider.state_dict()))
    with pytest.raises(RadiodiffError, match=rf"tensor '{re.escape(first)}' has shape \[4, .*the model's is \[8, "):
        load_network_weights(wider, pipe_dir)
    with pytest.raises(RadiodiffError, match="model folder not found"):
        load_network_weights(target, tmp_path / "missing")
