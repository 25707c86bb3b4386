"""The first-stage KL autoencoder and its VAE-GAN loss on tiny configs (CPU, seconds)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torchvision

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.models.autoencoder import AutoencoderKL, AutoencoderKLConfig, DiagonalGaussian
from radiodiff.models.losses import (
    BACKBONE_ENV,
    LPIPSLoss,
    NLayerDiscriminator,
    VAEGANLoss,
    adopt_weight,
    hinge_d_loss,
    vanilla_d_loss,
)
from radiodiff.models.persistence import count_parameters

# The paper's radio VAE: 1×256×256 -> 3×64×64 (REFERENCE §3.1).
PAPER = AutoencoderKLConfig(
    in_channels=1, out_channels=1, ch=128, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=3, embed_dim=3
)
PAPER_PARAMS = 55_307_453

# Tiny stand-ins for the project's four VAEs; all downsample by 4 like the paper's.
TINY = {
    "radiomapseer_radio": dict(in_channels=1, out_channels=1, ch=16, ch_mult=(1, 2, 4), z_channels=3, embed_dim=3),
    "icassp_building": dict(
        in_channels=2, out_channels=2, ch=8, ch_mult=(1, 2, 2), z_channels=4, embed_dim=4, attn_resolutions=(8,)
    ),
    "antenna": dict(
        in_channels=1, out_channels=1, ch=8, ch_mult=(1, 1, 2), num_res_blocks=1, z_channels=3, embed_dim=2
    ),
    "radio": dict(
        in_channels=1, out_channels=1, ch=16, ch_mult=(1, 2, 4), z_channels=3, embed_dim=3, attn_resolutions=(16,)
    ),
}


def tiny_config(name: str = "radiomapseer_radio") -> AutoencoderKLConfig:
    kw = dict(num_res_blocks=1, resolution=32)
    kw.update(TINY[name])
    return AutoencoderKLConfig(**kw)


def tiny_ae(seed: int = 0, name: str = "radiomapseer_radio") -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(tiny_config(name))


# --------------------------------------------------------------------------------------------
# Autoencoder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TINY))
def test_shapes_of_the_four_vaes(name):
    ae = tiny_ae(name=name).eval()
    cfg = ae.config
    x = torch.rand(2, cfg.in_channels, 32, 32) * 2 - 1
    with torch.no_grad():
        posterior = ae.encode(x)
        recon, post2 = ae(x, generator=torch.Generator().manual_seed(1))
    assert ae.downsample_factor == 4
    assert posterior.mean.shape == posterior.logvar.shape == (2, cfg.embed_dim, 8, 8)
    assert posterior.sample().shape == (2, cfg.embed_dim, 8, 8)
    assert recon.shape == (2, cfg.out_channels, 32, 32)
    assert post2.kl().shape == (2,)
    assert ae.last_layer is ae.decoder.conv_out.weight
    with pytest.raises(ValueError, match="divisible by 4"):
        ae.encode(torch.zeros(1, cfg.in_channels, 30, 32))


def test_attention_placement_follows_resolution():
    cfg = tiny_config("radio")  # attention at 16 px: encoder level 1, decoder level for 16 px
    ae = AutoencoderKL(cfg)
    n_attn = sum(type(m).__name__ == "SelfAttention" for m in ae.modules())
    # encoder level at 16 px: 1 block; decoder level at 16 px: 2 blocks; two mid blocks.
    assert n_attn == 1 + 2 + 2
    assert sum(type(m).__name__ == "SelfAttention" for m in AutoencoderKL(tiny_config()).modules()) == 2


def test_paper_config_on_meta_device():
    with torch.device("meta"):
        ae = AutoencoderKL(PAPER)
        recon, posterior = ae(torch.empty(1, 1, 256, 256))
    assert posterior.mean.shape == (1, 3, 64, 64)
    assert posterior.sample().shape == (1, 3, 64, 64)
    assert recon.shape == (1, 1, 256, 256)
    assert ae.downsample_factor == 4
    n = count_parameters(ae)
    print(f"paper-config AutoencoderKL parameters: {n:,}")
    assert n == PAPER_PARAMS  # REFERENCE §3.1: ~55 M


def test_config_dict_roundtrip_and_unknown_key():
    cfg = tiny_config("icassp_building")
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["ch_mult"] == [1, 2, 2] and d["logvar_clamp"] == [-30.0, 20.0]
    assert AutoencoderKLConfig.from_dict(d) == cfg
    assert AutoencoderKLConfig.from_dict({**d, "_class_name": "AutoencoderKL"}) == cfg
    with pytest.raises(ParamsError, match="chanels"):
        AutoencoderKLConfig.from_dict({**d, "chanels": 3})
    with pytest.raises(ParamsError, match="ch_mult"):
        AutoencoderKLConfig(ch_mult=())


@pytest.mark.parametrize("safe", [True, False])
def test_save_and_load_pretrained_give_identical_outputs(tmp_path, safe):
    ae = tiny_ae(3, "icassp_building").eval()
    with torch.no_grad():
        for p in ae.parameters():  # move off the default init so a missed load would show
            p.add_(0.01 * torch.randn_like(p))
    out = ae.save_pretrained(tmp_path / "vae", safe_serialization=safe)
    weights = "model.safetensors" if safe else "model.pt"
    assert sorted(p.name for p in out.iterdir()) == sorted(["config.json", weights])
    assert json.loads((out / "config.json").read_text())["_class_name"] == "AutoencoderKL"
    loaded = AutoencoderKL.from_pretrained(out).eval()
    assert loaded.config == ae.config
    x = torch.rand(2, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        a, pa = ae(x, sample_posterior=False)
        b, pb = loaded(x, sample_posterior=False)
    assert torch.equal(a, b) and torch.equal(pa.logvar, pb.logvar)


def test_from_pretrained_errors_name_the_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(RadiodiffError, match="nope"):
        AutoencoderKL.from_pretrained(missing)
    d = tiny_ae().save_pretrained(tmp_path / "vae")
    (d / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(RadiodiffError, match="vae.*unreadable"):
        AutoencoderKL.from_pretrained(d)
    (d / "model.safetensors").unlink()
    with pytest.raises(RadiodiffError, match="no model.safetensors"):
        AutoencoderKL.from_pretrained(d)
    (d / "config.json").write_text("{broken")
    with pytest.raises(RadiodiffError, match="config"):
        AutoencoderKL.from_pretrained(d)
    # weights that do not fit the config
    d2 = tiny_ae().save_pretrained(tmp_path / "vae2")
    cfg = json.loads((d2 / "config.json").read_text())
    cfg["ch"] = 8
    (d2 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RadiodiffError, match="do not match"):
        AutoencoderKL.from_pretrained(d2)


def test_posterior_kl_against_closed_form():
    mean = torch.tensor([[[[1.0, -2.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    logvar = torch.tensor([[[[0.0, math.log(2.0)]], [[-1.0, 50.0]]]])  # 50 is clamped to 20
    post = DiagonalGaussian(torch.cat([mean, logvar], dim=1))
    lv = torch.tensor([0.0, math.log(2.0), -1.0, 20.0])
    mu = torch.tensor([1.0, -2.0, 0.5, 0.0])
    expected = 0.5 * sum(float(m**2 + math.exp(v) - 1 - v) for m, v in zip(mu, lv, strict=True))
    assert post.kl().shape == (1,)
    assert post.kl().item() == pytest.approx(expected, rel=1e-6)
    assert post.logvar.max().item() == 20.0
    assert torch.equal(post.mode(), mean)
    # two rows of a batch -> two KL values; N(0, 1) has KL 0
    two = DiagonalGaussian(
        torch.cat([torch.cat([mean, torch.zeros_like(mean)]), torch.cat([logvar, torch.zeros_like(logvar)])], 1)
    )
    assert two.kl()[1].item() == 0.0
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(post.sample(g1), post.sample(g2))


# --------------------------------------------------------------------------------------------
# Loss terms against hand-computed values
# --------------------------------------------------------------------------------------------


def _no_gan_loss(**kw) -> VAEGANLoss:
    torch.manual_seed(0)
    defaults = dict(disc_start=10**9, perceptual_weight=0.0, disc_ndf=8, disc_num_layers=1)
    defaults.update(kw)
    return VAEGANLoss(**defaults)


def _pair():
    x = torch.zeros(2, 1, 4, 4)
    d = torch.tensor([0.0, 0.5, -1.0, 2.0]).repeat(4).reshape(1, 1, 4, 4)
    x_hat = torch.cat([d, 2 * d])
    rec = (d.abs() + d**2, (2 * d).abs() + (2 * d) ** 2)  # per sample
    return x, x_hat, rec


def _posterior(mean_value: float, batch: int = 2) -> DiagonalGaussian:
    moments = torch.zeros(batch, 6, 2, 2)
    moments[:, :3] = mean_value
    return DiagonalGaussian(moments)  # KL = ½ · 12 · mean² per sample


def test_nll_equals_rec_at_logvar_zero():
    x, x_hat, (r0, r1) = _pair()
    loss_fn = _no_gan_loss(kl_weight=0.0)
    loss, log = loss_fn(x, x_hat, _posterior(0.0), 0, global_step=0, split="val")
    expected = (r0.sum() + r1.sum()).item() / 2
    assert loss.item() == pytest.approx(expected)
    assert log["val/nll_loss"] == pytest.approx(expected)
    assert log["val/rec_loss"] == pytest.approx((r0.mean() + r1.mean()).item() / 2)
    assert log["val/logvar"] == 0.0 and log["val/kl_loss"] == 0.0
    assert log["val/g_loss"] == 0.0 and log["val/d_weight"] == 0.0 and log["val/disc_factor"] == 0.0
    assert set(log) == {
        f"val/{k}"
        for k in ("total_loss", "logvar", "kl_loss", "nll_loss", "rec_loss", "g_loss", "d_weight", "disc_factor")
    }
    assert all(isinstance(v, float) for v in log.values())


def test_nll_with_logvar_log2_and_kl_weight():
    x, x_hat, (r0, r1) = _pair()
    loss_fn = _no_gan_loss(kl_weight=0.25, logvar_init=math.log(2.0))
    loss, log = loss_fn(x, x_hat, _posterior(1.0), 0, global_step=0)
    n_pix = 16
    nll = ((r0.sum() + r1.sum()).item() / 2 + 2 * n_pix * math.log(2.0)) / 2
    kl = 0.5 * 12 * 1.0
    assert log["train/nll_loss"] == pytest.approx(nll)
    assert log["train/kl_loss"] == pytest.approx(kl)
    assert loss.item() == pytest.approx(nll + 0.25 * kl)
    assert log["train/logvar"] == pytest.approx(math.log(2.0))


def test_edge_weighting_multiplies_error_on_edge_pixels():
    x, x_hat, (r0, r1) = _pair()
    edges = torch.zeros(2, 1, 4, 4)
    edges[:, :, 1, :] = 1.0  # row 1 is an edge
    edges[1, :, 2, 3] = 0.5  # soft edge value
    w = 3.0
    plain = _no_gan_loss(kl_weight=0.0)(x, x_hat, _posterior(0.0), 0, 0)[0].item()
    no_edges = _no_gan_loss(kl_weight=0.0, edge_weight=w)(x, x_hat, _posterior(0.0), 0, 0, edges=None)[0].item()
    weighted = _no_gan_loss(kl_weight=0.0, edge_weight=w)(x, x_hat, _posterior(0.0), 0, 0, edges=edges)[0].item()
    rec = torch.cat([r0, r1])
    expected = (rec * (1 + w * edges)).sum().item() / 2
    assert no_edges == pytest.approx(plain)
    assert weighted == pytest.approx(expected)
    extra = (w * r0[0, 0, 1].sum() + w * r1[0, 0, 1].sum() + w * 0.5 * r1[0, 0, 2, 3]).item() / 2
    assert weighted - plain == pytest.approx(extra)


def test_disc_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5])
    fake = torch.tensor([-2.0, 0.5])
    assert hinge_d_loss(real, fake).item() == pytest.approx((0.25 + 0.75) / 2)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert vanilla_d_loss(real, fake).item() == pytest.approx(((sp(-2) + sp(-0.5)) / 2 + (sp(-2) + sp(0.5)) / 2) / 2)
    assert adopt_weight(1.0, 4, threshold=5) == 0.0
    assert adopt_weight(1.0, 5, threshold=5) == 1.0
    assert adopt_weight(0.3, 10**6, threshold=5) == 0.3
    with pytest.raises(ParamsError, match="disc_loss"):
        _no_gan_loss(disc_loss="wasserstein")


def test_patchgan_discriminator_layout_and_init():
    torch.manual_seed(0)
    d = NLayerDiscriminator(in_channels=2, ndf=64, n_layers=3)
    assert d(torch.zeros(2, 2, 32, 32)).shape == (2, 1, 2, 2)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in d.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert len(bns) == 3
    w = torch.cat([c.weight.flatten() for c in convs])
    assert w.mean().abs().item() < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.cat([b.weight for b in bns]).mean().item() == pytest.approx(1.0, abs=0.01)


# --------------------------------------------------------------------------------------------
# Two phases and the adaptive GAN weight on a tiny autoencoder
# --------------------------------------------------------------------------------------------


def _gan_setup(disc_start=5, disc_weight=0.5):
    ae = tiny_ae(1)
    torch.manual_seed(2)
    loss_fn = VAEGANLoss(
        disc_start=disc_start, perceptual_weight=0.0, disc_ndf=8, disc_num_layers=2, disc_weight=disc_weight
    )
    torch.manual_seed(3)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    return ae, loss_fn, x


def test_two_phase_switch_at_disc_start():
    ae, loss_fn, x = _gan_setup(disc_start=5)
    recon, post = ae(x)
    _, before = loss_fn(x, recon, post, 0, global_step=4, last_layer=ae.last_layer)
    d_before, dlog_before = loss_fn(x, recon, post, 1, global_step=4)
    assert before["train/d_weight"] * before["train/disc_factor"] == 0.0
    assert d_before.item() == 0.0 and dlog_before["train/disc_loss"] == 0.0
    assert set(dlog_before) == {"train/disc_loss", "train/logits_real", "train/logits_fake"}

    loss, after = loss_fn(x, recon, post, 0, global_step=5, last_layer=ae.last_layer)
    d_after, _ = loss_fn(x, recon, post, 1, global_step=5)
    assert after["train/disc_factor"] == 1.0
    assert after["train/d_weight"] * after["train/disc_factor"] > 0.0
    assert d_after.item() > 0.0
    expected = after["train/nll_loss"] + 1e-6 * after["train/kl_loss"] + after["train/d_weight"] * after["train/g_loss"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # without a graph (evaluation) the adaptive weight falls back to 0
    with torch.no_grad():
        r2, p2 = ae(x)
        _, ev = loss_fn(x, r2, p2, 0, global_step=5, last_layer=ae.last_layer, split="val")
    assert ev["val/d_weight"] == 0.0 and ev["val/g_loss"] != 0.0
    with pytest.raises(ValueError, match="optimizer_idx"):
        loss_fn(x, recon, post, 2, global_step=5)


@pytest.mark.parametrize("disc_weight", [0.5, 0.7])
def test_adaptive_weight_is_the_clamped_ratio_of_gradient_norms(disc_weight):
    ae, loss_fn, x = _gan_setup(disc_start=0, disc_weight=disc_weight)
    recon, post = ae(x, generator=torch.Generator().manual_seed(0))
    _, log = loss_fn(x, recon, post, 0, global_step=10, last_layer=ae.last_layer)

    # by hand: logvar 0 and no LPIPS -> nll = Σ(|x − x̂| + (x − x̂)²) / B; g = −mean D(x̂)
    diff = x - recon
    nll = (diff.abs() + diff**2).sum() / x.shape[0]
    g = -loss_fn.discriminator(recon).mean()
    g_nll = torch.autograd.grad(nll, ae.last_layer, retain_graph=True)[0]
    g_g = torch.autograd.grad(g, ae.last_layer, retain_graph=True)[0]
    expected = disc_weight * min(max((g_nll.norm() / (g_g.norm() + 1e-4)).item(), 0.0), 1e4)
    assert log["train/nll_loss"] == pytest.approx(nll.item(), rel=1e-6)
    assert log["train/g_loss"] == pytest.approx(g.item(), rel=1e-5)
    assert log["train/d_weight"] == pytest.approx(expected, rel=1e-5)


def test_logvar_is_learned_with_the_autoencoder():
    ae = tiny_ae(4)
    loss_fn = _no_gan_loss()
    assert loss_fn.logvar.requires_grad and any(p is loss_fn.logvar for p in loss_fn.parameters())
    opt = torch.optim.Adam([*ae.parameters(), loss_fn.logvar], lr=1e-2)
    torch.manual_seed(5)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    start = loss_fn.logvar.item()
    for step in range(5):
        recon, post = ae(x)
        loss, _ = loss_fn(x, recon, post, 0, global_step=step, last_layer=ae.last_layer)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(loss_fn.logvar.item() - start) > 1e-3


# --------------------------------------------------------------------------------------------
# LPIPS: offline backbone weights
# --------------------------------------------------------------------------------------------


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.delenv(BACKBONE_ENV, raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_lpips_without_backbone_weights_raises(empty_hub, tmp_path, monkeypatch):
    with pytest.raises(ParamsError) as err:
        VAEGANLoss(disc_start=0, perceptual_weight=1.0)
    msg = str(err.value)
    assert "vgg16-397923af.pth" in msg and str(empty_hub / "checkpoints") in msg and BACKBONE_ENV in msg
    with pytest.raises(ParamsError, match="alexnet-owt-7be5be79.pth"):
        LPIPSLoss("alex")
    with pytest.raises(ParamsError, match="missing.pth"):
        LPIPSLoss("vgg", backbone_path=tmp_path / "missing.pth")
    monkeypatch.setenv(BACKBONE_ENV, str(tmp_path / "also_missing.pth"))
    with pytest.raises(ParamsError, match=f"{BACKBONE_ENV}.*also_missing.pth"):
        LPIPSLoss("vgg")


def test_perceptual_weight_zero_builds_no_lpips(empty_hub):
    loss_fn = VAEGANLoss(disc_start=0, perceptual_weight=0.0)
    assert loss_fn.perceptual_loss is None
    assert not any(isinstance(m, LPIPSLoss) for m in loss_fn.modules())


def test_lpips_loads_a_local_backbone_and_maps_channels(empty_hub, tmp_path, monkeypatch):
    # A stand-in for torchvision's AlexNet checkpoint (random, features only: ~10 MB).
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None)
    ckpt = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({k: v for k, v in alex.state_dict().items() if k.startswith("features.")}, ckpt)
    monkeypatch.setenv(BACKBONE_ENV, str(ckpt))
    lp = LPIPSLoss("alex")
    assert torch.equal(lp.model.net.slice1[0].weight, alex.features[0].weight)
    assert not any(p.requires_grad for p in lp.parameters())
    lp.train()
    assert not lp.model.training  # frozen, dropout off, even when the parent trains

    torch.manual_seed(1)
    a, b = torch.rand(2, 2, 64, 64) * 2 - 1, torch.rand(2, 2, 64, 64) * 2 - 1
    one = lp(a[:, :1], b[:, :1])
    assert one.shape == (2, 1, 1, 1) and (one > 0).all()
    assert torch.allclose(one, lp(a[:, :1].repeat(1, 3, 1, 1), b[:, :1].repeat(1, 3, 1, 1)))
    two = lp(a, b)
    rgb = lambda t: torch.cat([t, (t[:, :1] + t[:, 1:]) / 2], 1)  # noqa: E731
    assert torch.allclose(two, lp(rgb(a), rgb(b)))
    assert torch.allclose(lp(a, a), torch.zeros(2, 1, 1, 1))

    # wired into the loss: rec = |d| + d² + w_p · LPIPS per pixel
    loss_fn = VAEGANLoss(disc_start=10**9, perceptual_weight=0.5, lpips_net="alex", disc_num_layers=1, disc_ndf=8)
    _, log = loss_fn(a[:, :1], b[:, :1], _posterior(0.0), 0, global_step=0)
    d = a[:, :1] - b[:, :1]
    expected = ((d.abs() + d**2).mean() + 0.5 * one.mean()).item()
    assert log["train/rec_loss"] == pytest.approx(expected, rel=1e-5)

    # a checkpoint of the wrong network is refused with its name
    monkeypatch.setenv(BACKBONE_ENV, str(ckpt))
    with pytest.raises(ParamsError, match="alexnet-owt-7be5be79.pth.*not a torchvision vgg"):
        LPIPSLoss("vgg")


@pytest.mark.parametrize("learn", [True, False])
def test_logvar_is_optimized_only_when_learned(learn):
    """loss.learn_logvar: radiodiff's (Enhanced) VAE optimizes the output log-variance; the
    original's never put it in the optimizer, so it stays at logvar_init."""
    from radiodiff.train.vae import VAETask

    cfg = AutoencoderKLConfig(in_channels=1, out_channels=1, resolution=16, ch=8, ch_mult=(1, 2), z_channels=3)
    loss = dict(disc_start=10, perceptual_weight=0.0, disc_num_layers=1, disc_ndf=8, logvar_init=0.5)
    loss["learn_logvar"] = learn
    task = VAETask(cfg, loss, disc_lr=1e-4, use_edges=False)
    ae = task.param_groups()[0][1]
    assert any(p is task.loss_fn.logvar for p in ae) == learn
    opt = torch.optim.AdamW([p for p in ae], lr=0.1)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    task.loss({"image": x, "edges": torch.zeros(2, 1, 16, 16)}, 0, 0)[0].backward()
    opt.step()
    assert (task.loss_fn.logvar.item() != 0.5) == learn


def test_reconstruction_ceiling_scores_the_test_split_like_the_ldm(tiny_radiomapseer):
    """The path-loss VAE's ceiling: the decode of the posterior mean of each test target, scored
    as the evaluate stage scores the LDM (buildings zeroed, per-image mean; 99.16 dB per unit)."""
    from radiodiff.core.encodings import RADIOMAPSEER_DB_PER_UNIT
    from radiodiff.data.items import dataset_source
    from radiodiff.metrics import per_image_metrics, zero_buildings
    from radiodiff.train.vae import reconstruction_ceiling

    data = dict(
        simulation="DPM", condition="static", image_size=32, gain_threshold=0.0, physics_exponent=None,
        split={"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42},
    )  # fmt: skip
    torch.manual_seed(0)
    cfg = AutoencoderKLConfig(in_channels=1, out_channels=1, resolution=32, ch=8, ch_mult=(1, 2), z_channels=3)
    vae = AutoencoderKL(cfg).eval()
    got = reconstruction_ceiling(vae, "radiomapseer", tiny_radiomapseer, data)

    items = dataset_source("radiomapseer", tiny_radiomapseer, data).items("test").stacked().tensors
    with torch.no_grad():
        recon = vae.decode(vae.encode(items["target"]).mode())
    pred = zero_buildings(((recon + 1) / 2).clamp(0, 1), items["buildings"])
    per_image = per_image_metrics(pred, (items["target"] + 1) / 2, db_per_unit=RADIOMAPSEER_DB_PER_UNIT)
    assert got["ceiling"]["n_images"] == len(items["target"]) == 2  # 1 test map x 2 Tx
    assert got["ceiling_nmse"] == pytest.approx(float(per_image["nmse"].mean()), rel=1e-5)
    assert got["ceiling_rmse_db"] == pytest.approx(float(per_image["rmse_db"].mean()), rel=1e-5)
    assert got["ceiling_nmse"] > 0 and got["ceiling"]["outdoor"]["nmse"] > 0
    # the evaluate stage's own scorer gives the same numbers for the same maps
    from radiodiff.evaluate.score_test import Scorer

    scorer = Scorer("radiomapseer", ["vae"], RADIOMAPSEER_DB_PER_UNIT)
    scorer.add({**items, "name": ["a", "b"]}, {"vae": ((recon + 1) / 2).clamp(0, 1)})
    scored = scorer.result()[0]["vae"]
    assert got["ceiling_nmse"] == pytest.approx(scored["nmse"]) and got["ceiling_ssim"] == pytest.approx(scored["ssim"])
    assert got["ceiling"]["outdoor"]["rmse_db"] == pytest.approx(scored["outdoor"]["rmse_db"])
    # the ceiling under latent noise: s·σ_c noise, σ_c each channel's std of the test latents
    with torch.no_grad():
        mean = vae.encode(items["target"]).mode()
    sigma = mean.transpose(0, 1).flatten(1).double().std(dim=1)
    noisy = got["ceiling"]["latent_noise"]
    assert noisy["sigma"] == pytest.approx(sigma.tolist(), rel=1e-5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = mean + 0.1 * sigma.float().view(1, -1, 1, 1) * torch.randn(mean.shape, generator=g)
        pred = zero_buildings(((vae.decode(z) + 1) / 2).clamp(0, 1), items["buildings"])
    per_image = per_image_metrics(pred, (items["target"] + 1) / 2, db_per_unit=RADIOMAPSEER_DB_PER_UNIT)
    assert noisy["0.1"]["nmse"] == pytest.approx(float(per_image["nmse"].mean()), rel=1e-5)
    assert noisy["0.2"]["nmse"] != noisy["0.1"]["nmse"]


def test_decoder_noise_trains_the_decoder_on_noisy_latents(monkeypatch):
    """loss.decoder_noise s: the decoder gets the posterior sample plus N(0, (s·σ_c)²), σ_c each
    latent channel's std over the batch; 0 leaves the forward as it was."""
    from radiodiff.train.vae import VAETask

    cfg = AutoencoderKLConfig(in_channels=1, out_channels=1, resolution=16, ch=8, ch_mult=(1, 2), z_channels=3)
    loss = dict(disc_start=10, perceptual_weight=0.0, disc_num_layers=1, disc_ndf=8)
    x = torch.rand(4, 1, 16, 16) * 2 - 1
    batch = {"image": x, "edges": torch.zeros(4, 1, 16, 16)}
    seen = []
    for noise in (0.0, 0.5):
        torch.manual_seed(0)
        task = VAETask(cfg, loss, disc_lr=1e-4, use_edges=False, decoder_noise=noise)
        decode = task.model.decode
        monkeypatch.setattr(task.model, "decode", lambda z, decode=decode: seen.append(z.detach()) or decode(z))
        torch.manual_seed(1)
        task.loss(batch, 0, 0)
    torch.manual_seed(0)
    model = VAETask(cfg, loss, disc_lr=1e-4, use_edges=False).model
    torch.manual_seed(1)
    z = model.encode(x).sample().detach()
    sigma = z.std(dim=(0, 2, 3), keepdim=True)
    assert torch.equal(seen[0], z)  # off: the posterior sample itself
    torch.testing.assert_close(seen[1], z + 0.5 * sigma * torch.randn_like(z))  # the next draws of the same RNG
