"""The constant-SDE forward process, skip parameterization, loss weights and sampler against
the formulas of REFERENCE.md §3.2."""

import math

import pytest
import torch

from radiodiff.core.errors import ParamsError
from radiodiff.diffusion import const_sde as sde


def test_forward_process_matches_formula():
    z0 = torch.tensor([[[[0.5, -1.0]]], [[[2.0, 0.0]]]])
    noise = torch.tensor([[[[1.0, 2.0]]], [[[-1.0, 0.5]]]])
    t = torch.tensor([0.25, 1.0])
    zt = sde.forward_process(z0, t, noise)
    # sample 0: (1 - .25)*z0 + .5*noise; sample 1 at t = 1 is pure noise
    assert torch.allclose(zt[0], torch.tensor([[[0.375 + 0.5, -0.75 + 1.0]]]))
    assert torch.allclose(zt[1], noise[1])
    # the same as z0 + C t + sqrt(t) eps with C = -z0
    assert torch.allclose(zt, z0 + (-z0) * t.view(-1, 1, 1, 1) + t.sqrt().view(-1, 1, 1, 1) * noise)


def test_skip_parameterization_matches_formula():
    zt = torch.full((1, 1, 1, 1), 2.0)
    fc, fe = torch.full_like(zt, 3.0), torch.full_like(zt, -1.0)
    t = torch.tensor([0.36])
    c, e = sde.skip_parameterization(zt, t, fc, fe)
    norm = math.sqrt(0.36**2 + 1)
    assert c.item() == pytest.approx((1 - 0.36) * 2 + 0.36 / norm * 3)
    assert e.item() == pytest.approx(0.6 * 2 + math.sqrt(0.64) / norm * -1)
    # at t = 1 the noise estimate is z_1 itself, whatever the network says
    _, e1 = sde.skip_parameterization(zt, torch.tensor([1.0]), fc, fe)
    assert e1.item() == pytest.approx(2.0)


def test_predict_z0_inverts_the_forward_process():
    g = torch.Generator().manual_seed(0)
    z0, noise = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    zt = sde.forward_process(z0, t, noise)
    assert torch.allclose(sde.predict_z0(zt, t, -z0, noise), z0, atol=1e-6)


def test_loss_weights_three_choices():
    t = torch.tensor([0.25])
    wc, we = sde.loss_weights(t, "dec2024")
    assert wc.item() == pytest.approx(1.25 / 0.5) and we.item() == pytest.approx(
        math.sqrt(1.75) / math.sqrt(0.75 + 1e-4)
    )
    wc, we = sde.loss_weights(t, "jul2025")
    assert wc.item() == pytest.approx(2 * math.exp(0.75)) and we.item() == pytest.approx(math.exp(0.5))
    wc, we = sde.loss_weights(t, "none")
    assert wc.item() == we.item() == 1.0
    with pytest.raises(ParamsError, match="weighting"):
        sde.loss_weights(t, "paper")


def test_diffusion_loss_value():
    z0 = torch.ones(1, 1, 2, 2)
    noise = torch.zeros(1, 1, 2, 2)
    c_pred = torch.full_like(z0, -0.5)  # target -1: error 0.5 everywhere
    e_pred = torch.full_like(z0, 1.0)  # target 0: error 1
    t = torch.tensor([0.25])
    loss, terms = sde.diffusion_loss(c_pred, e_pred, z0, noise, t, weighting="none", l1=True)
    assert loss.item() == pytest.approx(((0.25 + 0.5) + (1 + 1)) / 2)
    loss, _ = sde.diffusion_loss(c_pred, e_pred, z0, noise, t, weighting="jul2025", l1=False)
    assert loss.item() == pytest.approx((2 * math.exp(0.75) * 0.25 + math.exp(0.5) * 1) / 2)
    assert terms["mse_c"].item() == pytest.approx(0.25)


@pytest.mark.parametrize("n", [1, 2, 5, 20])
def test_step_sizes(n):
    steps = sde.step_sizes(n)
    assert len(steps) == n + 1
    assert sum(steps) == pytest.approx(1.0)
    assert steps[-1] == sde.T_EPS
    assert steps[-2] == pytest.approx(1 / n - sde.T_EPS)


def test_step_sizes_rejects_bad_n():
    for bad in (0, -1, 2.5, 20000):
        with pytest.raises(ParamsError, match="sampling steps"):
            sde.step_sizes(bad)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_sampler_calls_and_oracle(n):
    """N + 1 calls at t = 1, 1 - 1/N, ...; an oracle denoiser (exact C and ε for a known z0)
    makes every step's ẑ0 exact, and the noise-free last step returns z0 itself."""
    z0 = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    times = []

    def oracle(z, t):
        times.append(float(t[0]))
        tb = t.view(-1, 1, 1, 1)
        return -z0, (z - (1 - tb) * z0) / tb.sqrt()

    out = sde.sample(oracle, z0.shape, n_steps=n, generator=torch.Generator().manual_seed(7))
    assert len(times) == n + 1
    assert times[0] == 1.0
    assert times[-1] == pytest.approx(sde.T_EPS, abs=1e-9)
    assert torch.allclose(out, z0, atol=1e-4)


def test_sampler_is_deterministic_for_a_seed():
    def net(z, t):
        return 0.3 * z, 0.9 * z + 0.1 * t.view(-1, 1, 1, 1)

    a = sde.sample(net, (2, 3, 4, 4), 5, generator=torch.Generator().manual_seed(3))
    b = sde.sample(net, (2, 3, 4, 4), 5, generator=torch.Generator().manual_seed(3))
    c = sde.sample(net, (2, 3, 4, 4), 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
