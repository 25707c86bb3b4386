"""The shared training engine on a toy two-optimizer task (an MLP "autoencoder" and a critic).

The toy loss draws noise with torch.randn, so exact resume also checks that the global RNG
state is restored.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils.data import TensorDataset

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.dag.stages import STAGES
from radiodiff.train import checkpoint, engine
from radiodiff.train.checkpoint import COMPLETE_MARKER, latest_checkpoint, list_checkpoints, state_key
from radiodiff.train.config import TrainConfig
from radiodiff.train.data_order import epoch_permutation
from radiodiff.train.engine import lr_multiplier, train

REPO = Path(__file__).resolve().parents[1]
DIM = 6


class ToyLoss(nn.Module):
    """Holds the critic and a learnable logvar, like the VAE-GAN loss module."""

    def __init__(self):
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(DIM, 8), nn.Tanh(), nn.Linear(8, 1))
        self.logvar = nn.Parameter(torch.zeros(()))


class ToyTask:
    """Optimizer 0: the model (+ logvar), optimizer 1: the critic (unless ``critic=False``)."""

    def __init__(self, seed: int = 0, critic: bool = True, noise: bool = True, loss_scale: float = 1.0):
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(DIM, 12), nn.Tanh(), nn.Linear(12, DIM))
        self.loss_fn = ToyLoss()
        self.critic, self.noise, self.loss_scale = critic, noise, loss_scale

    def param_groups(self):
        groups = [("ae", [*self.model.parameters(), self.loss_fn.logvar], {})]
        if self.critic:
            groups.append(("critic", list(self.loss_fn.critic.parameters()), {"lr": 5e-3}))
        return groups

    def modules(self):
        return {"model": self.model, "loss": self.loss_fn}

    def loss(self, batch, step, opt_index):
        (x,) = batch
        if opt_index == 0:
            noisy = x + 0.1 * torch.randn_like(x) if self.noise else x
            rec = self.model(noisy)
            mse = ((rec - x) ** 2).mean()
            nll = mse / torch.exp(self.loss_fn.logvar) + self.loss_fn.logvar
            g = -self.loss_fn.critic(rec).mean() if self.critic else torch.zeros(())
            loss = self.loss_scale * (nll + 0.1 * g)
            return loss, {"mse": mse.item(), "g": g.item()}
        rec = self.model(x).detach()
        d = 0.5 * (torch.relu(1 - self.loss_fn.critic(x)).mean() + torch.relu(1 + self.loss_fn.critic(rec)).mean())
        return d, {"d": d.item()}

    def evaluate(self, model, loader):
        assert not model.training and not torch.is_grad_enabled()
        se = n = 0
        for (x,) in loader:
            se += ((model(x) - x) ** 2).sum().item()
            n += x.numel()
        return {"mse": se / n}

    def export(self, model, out_dir, raw=None):
        torch.save(model.state_dict(), Path(out_dir) / "model.pt")


def toy_data(n: int = 32, seed: int = 1) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, DIM, generator=g))


def cfg(**kw) -> TrainConfig:
    """The schema's defaults, with the toy run's sizes (no LR floor, a slow EMA every 2 steps)."""
    base = dict(max_steps=12, batch_size=4, lr=1e-2, save_every=4, eval_every=6, log_every=1, ema_every=2)
    base |= dict(min_lr=0.0, ema_decay=0.999)
    return TrainConfig.with_defaults(**{**base, **kw})


def run_train(tmp: Path, task=None, data=None, val=None, **kw) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    return train(
        task or ToyTask(),
        data or toy_data(),
        val if val is not None else toy_data(8, seed=2),
        cfg(**kw),
        state_dir=tmp / "state",
        model_dir=tmp / "model",
        log_csv=tmp / "log.csv",
        progress=False,
    )


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def exported(tmp: Path) -> dict:
    return torch.load(tmp / "model" / "model.pt", weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k}: max |Δθ| = {(a[k] - b[k]).abs().max().item()}"


# --------------------------------------------------------------------------- pure helpers


def test_lr_multiplier_power_decay_and_floor():
    assert lr_multiplier(0, 100, 0.95, 0.0) == 1.0
    assert lr_multiplier(50, 100, 0.95, 0.0) == pytest.approx(0.5**0.95)
    assert lr_multiplier(99, 100, 0.96, 0.0) == pytest.approx(0.01**0.96)
    assert lr_multiplier(99, 100, 0.95, 0.1) == 0.1  # floor of the multiplier: effective LR = lr * min_lr
    assert lr_multiplier(100, 100, 0.95, 0.0) == 0.0
    assert lr_multiplier(150, 100, 0.95, 0.05) == 0.05


def test_state_key_canonical():
    a = state_key({"lr": 1e-4, "steps": 10, "dims": (1, 2)})
    assert a == state_key({"dims": [1, 2], "steps": 10, "lr": 1e-4})
    assert a != state_key({"lr": 1e-4, "steps": 11, "dims": (1, 2)})
    assert len(a) == 16


def test_epoch_permutation_reproducible():
    assert torch.equal(epoch_permutation(20, 0, 3), epoch_permutation(20, 0, 3))
    assert not torch.equal(epoch_permutation(20, 0, 3), epoch_permutation(20, 0, 4))
    assert sorted(epoch_permutation(20, 5, 0).tolist()) == list(range(20))


def test_config_validation(tmp_path):
    with pytest.raises(ParamsError, match="grad_accum"):
        cfg(grad_accum=0).validate()
    with pytest.raises(ParamsError, match="mixed_precision"):
        cfg(mixed_precision="fp8").validate()
    with pytest.raises(ParamsError, match="batch_size"):
        run_train(tmp_path, data=toy_data(3), batch_size=4)


# --------------------------------------------------------------------------- one run


def test_run_logs_lr_schedule_and_evaluates(tmp_path):
    summary = run_train(tmp_path, lr_power=0.95, min_lr=0.3)
    assert summary["steps"] == 12 and summary["resumed_from"] is None and summary["skipped_nonfinite"] == 0
    assert summary["val"]["mse"] > 0 and summary["peak_memory_mb"] > 0 and summary["steps_per_s"] > 0
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    for r in rows:  # step s ran with the LR of s - 1 completed steps; critic has its own base LR
        mult = lr_multiplier(int(r["step"]) - 1, 12, 0.95, 0.3)
        assert float(r["lr/ae"]) == pytest.approx(1e-2 * mult)
        assert float(r["lr/critic"]) == pytest.approx(5e-3 * mult)
    assert {"loss/ae", "loss/critic", "ae/mse", "ae/g", "critic/d", "grad_norm/ae", "epoch"} <= rows[0].keys()
    assert [r["step"] for r in rows if r.get("val/mse")] == ["6", "12"]
    assert [p.name for p in list_checkpoints(tmp_path / "state")] == ["checkpoint-00000008", "checkpoint-00000012"]
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.startswith(".")]
    assert (tmp_path / "model" / "model.pt").is_file()


def test_clipping_happens_before_the_step(tmp_path):
    seen = []

    def record(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(torch.nn.utils.get_total_norm(grads).item())

    handle = register_optimizer_step_pre_hook(record)
    try:
        run_train(tmp_path, task=ToyTask(critic=False, loss_scale=1e4), max_steps=3, clip_grad_norm=1.0)
    finally:
        handle.remove()
    rows = read_csv(tmp_path / "log.csv")
    assert len(seen) == 3
    assert all(float(r["grad_norm/ae"]) > 10 for r in rows)  # the logged norm is the one before clipping
    assert max(seen) <= 1.0 + 1e-5  # what the optimizer saw was clipped


def test_gradient_accumulation_steps_every_window(tmp_path):
    steps = []
    handle = register_optimizer_step_post_hook(lambda opt, a, k: steps.append(opt))
    try:
        run_train(tmp_path / "accum", task=ToyTask(critic=False, noise=False), max_steps=3, grad_accum=2)
    finally:
        handle.remove()
    assert len(steps) == 3  # 6 micro-batches, 3 optimizer steps
    rows = read_csv(tmp_path / "accum" / "log.csv")
    assert float(rows[-1]["lr/ae"]) == pytest.approx(1e-2 * lr_multiplier(2, 3, 0.95, 0.0))
    # batch 4 x 2 micro-batches sees the same samples as batch 8 (same epoch order): same weights
    run_train(tmp_path / "big", task=ToyTask(critic=False, noise=False), max_steps=3, batch_size=8)
    a, b = exported(tmp_path / "accum"), exported(tmp_path / "big")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- non-finite guard


def test_nan_batch_is_skipped_and_counted(tmp_path):
    data = toy_data(32)
    bad_row = epoch_permutation(32, 0, 0)[4 * 2].item()  # first sample of the batch of step 3 (8 per epoch)
    data.tensors[0][bad_row, 0] = float("nan")
    summary = run_train(tmp_path, data=data, max_steps=6)
    rows = read_csv(tmp_path / "log.csv")
    assert [int(r["skipped_nonfinite"]) for r in rows] == [0, 0, 1, 1, 1, 1]
    assert math.isnan(float(rows[2]["loss/ae"])) and math.isnan(float(rows[2]["grad_norm/ae"]))
    assert summary["skipped_nonfinite"] == 1 and summary["steps"] == 6
    assert all(torch.isfinite(t).all() for t in exported(tmp_path).values())


def test_all_nan_data_stops_cleanly(tmp_path):
    data = TensorDataset(torch.full((16, DIM), float("nan")))
    with pytest.raises(RadiodiffError, match=r"3 non-finite losses in a row at step 3; last good state kept in .*0002"):
        run_train(tmp_path, data=data, max_nonfinite=3, save_every=2)
    assert not (tmp_path / "model").exists()
    assert [p.name for p in list_checkpoints(tmp_path / "state")] == ["checkpoint-00000002"]


def test_refuses_to_save_nonfinite_weights(tmp_path):
    class Poisoned(ToyTask):
        def loss(self, batch, step, opt_index):
            if step == 1 and opt_index == 0:
                with torch.no_grad():
                    self.model[0].bias[0] = float("inf")
            return super().loss(batch, step, opt_index) if step < 1 else (self.model[0].weight.sum() * 0, {})

    with pytest.raises(RadiodiffError, match=r"refusing to save .* non-finite weights in model\.0\.bias"):
        run_train(tmp_path, task=Poisoned(), max_steps=4, save_every=2)
    assert latest_checkpoint(tmp_path / "state") is None and not (tmp_path / "model").exists()


# --------------------------------------------------------------------------- checkpoints and resume


def test_interrupted_save_keeps_previous_state(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    run_train(reference)

    original = checkpoint.Saver._write_engine_part

    def crash_at_8(self, folder, counters):
        if counters.step == 8:
            raise RuntimeError("disk full (injected)")
        original(self, folder, counters)

    monkeypatch.setattr(checkpoint.Saver, "_write_engine_part", crash_at_8)
    with pytest.raises(RuntimeError, match="injected"):
        run_train(tmp_path / "run")
    monkeypatch.setattr(checkpoint.Saver, "_write_engine_part", original)
    state = tmp_path / "run" / "state"
    assert [p.name for p in state.iterdir()] == ["checkpoint-00000004"]
    # leftovers of a save killed without cleanup never count as a state
    (state / ".checkpoint-00000008.tmp-dead").mkdir()
    (state / ".checkpoint-00000008.tmp-dead" / "model.safetensors").write_bytes(b"partial")
    (state / "checkpoint-00000009").mkdir()
    assert latest_checkpoint(state).name == "checkpoint-00000004"

    summary = run_train(tmp_path / "run")
    assert summary["resumed_from"] == 4 and summary["steps_run"] == 8
    assert not (state / ".checkpoint-00000008.tmp-dead").exists()
    assert_same_weights(exported(tmp_path / "run"), exported(reference))
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "log.csv")] == list(range(1, 13))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(tmp_path, capsys):
    """Disk damage to the newest checkpoint (its marker present): one warning names the file, the
    folder is renamed so saving and pruning never count it, the run resumes from the previous
    whole checkpoint and ends with the weights of an uninterrupted run."""
    run_train(tmp_path / "reference", save_every=4)
    run_train(tmp_path / "run", max_steps=8, lr_horizon=12, save_every=4)  # stopped at 8: states 4 and 8
    state = tmp_path / "run" / "state"
    marker = json.loads((state / "checkpoint-00000008" / COMPLETE_MARKER).read_text())
    assert {"model.safetensors", "engine_state.pt", "random_states_0.pkl"} <= set(marker["files"])
    assert all(set(r) == {"size", "xxh3_128"} for r in marker["files"].values())
    truncate(state / "checkpoint-00000008" / "model.safetensors")
    capsys.readouterr()

    summary = run_train(tmp_path / "run", max_steps=12, lr_horizon=12, save_every=4)
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "checkpoint-00000008/model.safetensors" in warning[0], warning
    assert summary["resumed_from"] == 4 and summary["steps_run"] == 8
    assert_same_weights(exported(tmp_path / "run"), exported(tmp_path / "reference"))
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "log.csv")] == list(range(1, 13))
    assert (state / "damaged-checkpoint-00000008").is_dir()  # kept for a look, never resumed or pruned
    assert [p.name for p in list_checkpoints(state)] == ["checkpoint-00000008", "checkpoint-00000012"]


def test_no_whole_checkpoint_left_is_one_clear_error(tmp_path):
    run_train(tmp_path, max_steps=8, lr_horizon=12, keep_states=1)
    (tmp_path / "state" / "checkpoint-00000008" / checkpoint.ENGINE_STATE).unlink()
    with pytest.raises(RadiodiffError, match=r"state: no whole checkpoint left .* delete this folder"):
        run_train(tmp_path, max_steps=12, lr_horizon=12, keep_states=1)
    assert list_checkpoints(tmp_path / "state") == []


def test_a_checkpoint_saved_without_checksums_is_resumed_when_it_loads(tmp_path):
    """States written before checkpoints recorded their files: accepted if they load, set aside
    (and the previous one resumed) if they do not."""
    run_train(tmp_path / "reference")
    run_train(tmp_path / "run", max_steps=8, lr_horizon=12)  # states 4 and 8
    state = tmp_path / "run" / "state"
    for ckpt in list_checkpoints(state):
        marker = ckpt / COMPLETE_MARKER
        marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "files"}))
    truncate(state / "checkpoint-00000008" / "model.safetensors")
    summary = run_train(tmp_path / "run", max_steps=12, lr_horizon=12)
    assert summary["resumed_from"] == 4 and (state / "damaged-checkpoint-00000008").is_dir()
    assert_same_weights(exported(tmp_path / "run"), exported(tmp_path / "reference"))


def test_resume_refuses_changed_config(tmp_path):
    run_train(tmp_path, max_steps=4)
    with pytest.raises(RadiodiffError, match=r"config changed \(lr: 0\.01 -> 0\.02\)"):
        run_train(tmp_path, max_steps=4, lr=2e-2)
    summary = run_train(tmp_path, max_steps=4, log_every=2)  # bookkeeping may change; already finished
    assert summary["resumed_from"] == 4 and summary["steps_run"] == 0 and (tmp_path / "model" / "model.pt").is_file()


def test_extending_a_run_continues_it_like_a_straight_run(tmp_path):
    """Stopped at 6 under a 12-step LR horizon, then raised to 12: the log goes on at step 7 and
    the weights equal a straight 12-step run's (max |Δθ| == 0)."""
    short = run_train(tmp_path / "run", max_steps=6, lr_horizon=12, save_every=4, log_every=1)
    assert short["steps"] == 6 and [int(r["step"]) for r in read_csv(tmp_path / "run" / "log.csv")] == list(range(1, 7))
    longer = run_train(tmp_path / "run", max_steps=12, lr_horizon=12, save_every=5, log_every=1)  # cadence may change
    assert longer["resumed_from"] == 6 and longer["steps_run"] == 6
    run_train(tmp_path / "ref", max_steps=12, save_every=4, log_every=1)  # lr_horizon null = max_steps
    assert_same_weights(exported(tmp_path / "run"), exported(tmp_path / "ref"))
    rows = read_csv(tmp_path / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    ref_rows = read_csv(tmp_path / "ref" / "log.csv")
    assert [r["lr/ae"] for r in rows] == [r["lr/ae"] for r in ref_rows]  # one LR schedule
    # without a fixed horizon, raising max_steps changes the schedule: not the same run
    with pytest.raises(RadiodiffError, match=r"config changed \(lr_horizon: 12 -> 16\)"):
        run_train(tmp_path / "run", max_steps=16)


def test_lowering_max_steps_stops_at_a_saved_step_or_says_why_not(tmp_path):
    run_train(tmp_path, max_steps=12, save_every=4, keep_states=2)  # keeps the states at 8 and 12
    again = run_train(tmp_path, max_steps=8, lr_horizon=12, save_every=4)
    assert again["resumed_from"] == 8 and again["steps_run"] == 0
    with pytest.raises(RadiodiffError, match=r"went on to step 12 and holds no state at max_steps 6"):
        run_train(tmp_path, max_steps=6, lr_horizon=12, save_every=4)


def test_milestone_exports_are_kept_under_the_state_folder(tmp_path):
    run_train(tmp_path, max_steps=12, save_every=4, export_every=5, keep_states=1)
    exports = tmp_path / "state" / checkpoint.EXPORTS
    assert sorted(p.name for p in exports.iterdir()) == ["step-00000005", "step-00000010"]
    assert [p.name for p in list_checkpoints(tmp_path / "state")] == ["checkpoint-00000012"]  # pruned, exports kept
    run_train(tmp_path / "five", max_steps=5, lr_horizon=12, save_every=4)
    milestone = torch.load(exports / "step-00000005" / "model.pt", weights_only=True)
    assert_same_weights(milestone, exported(tmp_path / "five"))


def test_init_from_starts_the_model_from_a_model_folder(tmp_path):
    source = ToyTask(seed=5).model
    folder = tmp_path / "init"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "Sequential"}))
    torch.save(source.state_dict(), folder / "model.pt")
    run_train(tmp_path / "run", max_steps=1, lr=1e-30, init_from=str(folder))
    for name, value in exported(tmp_path / "run").items():
        assert torch.allclose(value, source.state_dict()[name], atol=1e-6), name
    seeded = ToyTask(seed=0).model.state_dict()
    assert not torch.allclose(exported(tmp_path / "run")["0.weight"], seeded["0.weight"])
    wide = ToyTask(seed=0)
    wide.model = nn.Sequential(nn.Linear(DIM, 16), nn.Tanh(), nn.Linear(16, DIM))
    with pytest.raises(RadiodiffError, match=r"tensor '0\.weight' has shape \[12, 6\], the model's is \[16, 6\]"):
        run_train(tmp_path / "wide", task=wide, max_steps=1, init_from=str(folder))


class PreviewTask(ToyTask):
    """The toy task with the engine's optional preview hook (drawing noise: it must not move the
    training's RNG)."""

    preview_every = 5

    def preview(self, model):
        assert not model.training and not torch.is_grad_enabled()
        value = int(torch.randint(0, 255, ()).item())
        return np.full((4, 6, 3), value, np.uint8), [float(value)]


def test_previews_are_written_and_change_no_weight(tmp_path):
    from radiodiff.train.previews import keep_until, read_index

    run_train(tmp_path / "plain", max_steps=12)
    run_train(tmp_path / "previews", task=PreviewTask(), max_steps=12)
    assert_same_weights(exported(tmp_path / "previews"), exported(tmp_path / "plain"))
    folder = tmp_path / "previews" / "state" / engine.PREVIEWS
    assert [e["step"] for e in read_index(folder)] == [5, 10, 12]  # every 5 steps and the last
    assert sorted(p.name for p in folder.glob("*.png")) == [f"step-{s:08d}.png" for s in (5, 10, 12)]
    keep_until(folder, 10)  # what a run resumed from step 10 does first
    assert [e["step"] for e in read_index(folder)] == [5, 10] and not (folder / "step-00000012.png").exists()


TRAINING_STAGES = [name for name in STAGES if name.startswith("train_")]
# keys of a training stage's own section that change no trained weight: the same state folder
BOOKKEEPING_KEYS = {f"train.{k}" for k in ("save_every", "eval_every", "log_every", "export_every", "max_nonfinite")}
BOOKKEEPING_KEYS |= {"train.max_steps", "previews.sample_every", "previews.samples"}  # max_steps: under a fixed horizon


def leaves(tree: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else k
        out += leaves(v, key) if isinstance(v, dict) and v else [key]
    return out


def another(value):
    """A different value of the same kind (what an edit of params.yaml would give)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[-1]] if value else [1]
    return "edited"  # None (e.g. init_from: a folder name)


def set_key(tree: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for k in parents:
        tree = tree[k]
    tree[last] = value


@pytest.mark.parametrize("stage", TRAINING_STAGES)
def test_state_folder_is_keyed_by_every_declared_value(stage, tmp_path):
    """Every key a training stage declares decides its state folder, except bookkeeping (the
    cadence of logs, saves and exports, previews, and max_steps under a fixed LR horizon); the
    runtime section never does; the inputs, init_from and the code do (issue 26: on main a split
    edit resumed the finished VAE and exported the old weights)."""
    import copy

    from radiodiff.cli import stage_params
    from radiodiff.train.runs import run_state_dir

    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO / "params" / "ci.yaml").read_text())
    handed = stage_params(str(params_file), stage)  # what the CLI hands the stage
    handed[stage]["train"]["lr_horizon"] = 2 * handed[stage]["train"]["max_steps"]
    handed["runtime"]["state_dir"] = str(tmp_path / "state")
    handler = STAGES[stage].handler

    def folder(p, sources=()):
        return run_state_dir(stage, handler, p, list(sources))

    same = folder(handed)
    assert same.parent == tmp_path / "state" / stage
    keys = leaves({k: v for k, v in handed.items() if k != "runtime"})
    assert len(keys) > 20 and any(k.startswith("data.") for k in keys) == (stage not in ICASSP_TRAINERS)
    for key in keys:
        edited = copy.deepcopy(handed)
        set_key(edited, key, another(copy.deepcopy(_get(handed, key))))
        if key.removeprefix(f"{stage}.") in BOOKKEEPING_KEYS:
            assert folder(edited) == same, f"{key} is bookkeeping: same run"
        else:
            assert folder(edited) != same, f"{key} decides the run: a new state folder"
    for key in leaves(handed["runtime"], "runtime"):
        edited = copy.deepcopy(handed)
        set_key(edited, key, another(_get(handed, key)))
        edited["runtime"]["state_dir"] = handed["runtime"]["state_dir"]
        assert folder(edited) == same, key
    # the horizon resolves to max_steps when null: the same run as a fixed horizon of that size
    unfixed = copy.deepcopy(handed)
    unfixed[stage]["train"] |= {"lr_horizon": None, "max_steps": handed[stage]["train"]["lr_horizon"]}
    assert folder(unfixed) == same
    (tmp_path / "data").mkdir()
    assert folder(handed, [tmp_path / "data"]) == same  # an empty input folder
    (tmp_path / "data" / "a.png").write_bytes(b"1")
    assert folder(handed, [tmp_path / "data"]) != same
    (tmp_path / "init").mkdir()
    started = copy.deepcopy(handed)
    started[stage]["train"]["init_from"] = str(tmp_path / "init")
    assert folder(started) != same


ICASSP_TRAINERS = {f"train_vae_{n}" for n in ("building", "antenna", "radio")} | {
    "train_ldm_icassp",
    "train_radiounet_icassp",
}


def _get(tree: dict, dotted: str):
    for k in dotted.split("."):
        tree = tree[k]
    return tree


def test_state_key_holds_the_stage_code(monkeypatch, tmp_path):
    """The key's code part is the sha256 of every file both engines declare for the stage; an edit
    to one of them (e.g. the VAE loss) gives a new folder, and the fresh run says what changed."""
    import hashlib

    from radiodiff.dag.code_deps import REPO_ROOT, code_deps
    from radiodiff.train import runs

    digests = runs.code_digests("radiodiff.train.vae")
    assert sorted(digests) == code_deps("radiodiff.train.vae") and "radiodiff/models/losses.py" in digests
    assert (
        digests["radiodiff/models/losses.py"]
        == hashlib.sha256((REPO_ROOT / "radiodiff/models/losses.py").read_bytes()).hexdigest()[:16]
    )

    params = {"train_vae_x": {"train": {"lr": 1.0}}, "data": {"split": {"seed": 42}}, "runtime": {"state_dir": "s"}}
    before = runs.run_state_dir("train_vae_x", "radiodiff.train.vae", params, [])
    monkeypatch.setattr(runs, "code_digests", lambda h: {**digests, "radiodiff/models/losses.py": "0" * 16})
    after = runs.run_state_dir("train_vae_x", "radiodiff.train.vae", params, [])
    assert after != before

    # key.json and what a fresh run says changed since the newest other run of the stage
    old = runs.state_key_parts("train_vae_x", "radiodiff.train.vae", params, [])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / runs.KEY_FILE).write_text(json.dumps({**old, "code": digests}))
    new = runs.state_key_parts("train_vae_x", "radiodiff.train.vae", {**params, "data": {"split": {"seed": 7}}}, [])
    assert runs.key_changes(json.loads((tmp_path / "old" / runs.KEY_FILE).read_text()), new) == [
        "params data.split.seed",
        "code radiodiff/models/losses.py",
    ]


def test_a_fresh_run_records_its_key_and_says_what_changed(tmp_path, capsys):
    from radiodiff.train import runs

    a = {"stage": "train_x", "params": {"data": {"split": {"seed": 42}}}, "inputs": "1", "code": {"f.py": "a"}}
    runs.announce_state(tmp_path / "train_x" / "aaaa", a)
    assert json.loads((tmp_path / "train_x" / "aaaa" / runs.KEY_FILE).read_text()) == a
    assert capsys.readouterr().err == ""  # the first run of the stage
    b = {**a, "params": {"data": {"split": {"seed": 7}}}, "code": {"f.py": "b"}}
    runs.announce_state(tmp_path / "train_x" / "bbbb", b)
    err = capsys.readouterr().err
    assert "a new run in" in err and "params data.split.seed, code f.py" in err and "aaaa" in err


DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, sys.argv[2])
    torch.set_num_threads(1)
    from tests.test_train_engine import ToyTask, cfg, toy_data
    from radiodiff.train.engine import train

    out = Path(sys.argv[1])
    train(ToyTask(), toy_data(), toy_data(8, seed=2), cfg(grad_accum=2, keep_states=2), out / "state",
          out / "model", out / "log.csv", tb_dir=out / "tb", progress=False)
    """
)


def test_exact_resume_after_kill(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)

    def start(out: Path, kill_at: int | None = None) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if k != engine.KILL_ENV}
        if kill_at is not None:
            env[engine.KILL_ENV] = str(kill_at)
        env["OMP_NUM_THREADS"] = "1"
        return subprocess.Popen(
            [sys.executable, str(driver), str(out), str(REPO)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def finish(p: subprocess.Popen) -> int:
        out, err = p.communicate(timeout=120)
        if p.returncode not in (0, -signal.SIGKILL):
            raise AssertionError(err.decode()[-3000:])
        return p.returncode

    # the uninterrupted reference and the run to be killed, side by side
    ref, killed = start(tmp_path / "ref"), start(tmp_path / "run", kill_at=6)
    assert finish(killed) == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "run" / "state").name == "checkpoint-00000004"
    assert not (tmp_path / "run" / "model").exists()
    assert [int(r["step"]) for r in read_csv(tmp_path / "run" / "log.csv")] == list(range(1, 7))
    assert finish(start(tmp_path / "run")) == 0
    assert finish(ref) == 0

    assert_same_weights(exported(tmp_path / "run"), exported(tmp_path / "ref"))  # max |Δθ| == 0
    run_rows, ref_rows = read_csv(tmp_path / "run" / "log.csv"), read_csv(tmp_path / "ref" / "log.csv")
    assert [int(r["step"]) for r in run_rows] == list(range(1, 13))  # no duplicated steps
    walls = [float(r["wall_s"]) for r in run_rows]  # the training clock goes on from the resumed state
    assert walls[0] > 0 and all(b > a for a, b in zip(walls, walls[1:], strict=False)), walls
    for a, b in zip(run_rows, ref_rows, strict=True):
        timing = ("step_time_s", "wall_s")  # the clock: the only cells that may differ
        assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert [p.name for p in list_checkpoints(tmp_path / "run" / "state")] == [
        "checkpoint-00000008",
        "checkpoint-00000012",
    ]
    ckpt = latest_checkpoint(tmp_path / "run" / "state")
    assert (ckpt / COMPLETE_MARKER).is_file() and (ckpt / "random_states_0.pkl").is_file()


# --------------------------------------------------------------------------- precision and devices


def test_fp16_on_cpu_is_refused(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 is allowed on CUDA")
    with pytest.raises(ParamsError, match="fp16 needs a CUDA GPU"):
        run_train(tmp_path, mixed_precision="fp16")


def test_bf16_runs(tmp_path):
    summary = run_train(tmp_path, mixed_precision="bf16", max_steps=2)
    assert summary["steps"] == 2 and summary["skipped_nonfinite"] == 0
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in exported(tmp_path).values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cuda(tmp_path, precision):
    summary = run_train(tmp_path, mixed_precision=precision, max_steps=4, save_every=2)
    assert summary["device"].startswith("cuda") and summary["steps"] == 4
    assert summary["peak_gpu_mem_mb"] > 0
    resumed = run_train(tmp_path, mixed_precision=precision, max_steps=4, save_every=2)
    assert resumed["resumed_from"] == 4


def test_data_workers_keep_the_order(tmp_path):
    run_train(tmp_path / "main", max_steps=4)
    run_train(tmp_path / "workers", max_steps=4, num_workers=2)
    assert_same_weights(exported(tmp_path / "workers"), exported(tmp_path / "main"))


# --------------------------------------------------------------------------- several processes

DDP_DRIVER = textwrap.dedent(
    """
    import os
    import sys
    from pathlib import Path

    import torch

    sys.path.insert(0, sys.argv[3])
    torch.set_num_threads(1)
    from tests.test_train_engine import ToyTask, cfg, toy_data
    from radiodiff.train.engine import train

    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    summary = train(ToyTask(noise=False), toy_data(), toy_data(8, seed=2), cfg(batch_size=batch), out / "state",
                    out / "model", out / "log.csv", progress=False)
    rank = os.environ.get("RANK", "0")
    (out / f"summary-{rank}.txt").write_text(f"{summary['processes']} {summary['main_process']}")
    """
)


def test_two_processes_split_the_global_batch_and_resume_exactly(tmp_path):
    """Two processes on CPU (torchrun, gloo; `accelerate launch --multi_gpu` does the same on GPUs):
    batch_size is the global batch, each process takes its half of every batch of the one global
    order and gradients are averaged, so 2 processes end where 1 process does; killed at step 6
    and resumed, the 2 processes end with the very weights of an uninterrupted 2-process run."""
    launcher = Path(sys.executable).parent / "torchrun"
    if not launcher.is_file():
        pytest.skip("torchrun is not installed")
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    env = {k: v for k, v in os.environ.items() if k != engine.KILL_ENV} | {"OMP_NUM_THREADS": "1"}

    def two_processes(out: str, port: int, kill_at: int | None = None) -> subprocess.CompletedProcess:
        cmd = [str(launcher), "--nproc_per_node", "2", "--master_port", str(port), str(driver), str(tmp_path / out)]
        run_env = env | ({engine.KILL_ENV: str(kill_at)} if kill_at else {})
        return subprocess.run([*cmd, "8", str(REPO)], env=run_env, capture_output=True, text=True, timeout=300)

    two = two_processes("two", 29533)
    assert two.returncode == 0, two.stderr[-3000:]
    ranks = {p.name: p.read_text() for p in (tmp_path / "two").glob("summary-*.txt")}
    assert ranks == {"summary-0.txt": "2 True", "summary-1.txt": "2 False"}
    one = subprocess.run(
        [sys.executable, str(driver), str(tmp_path / "one"), "8", str(REPO)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = exported(tmp_path / "two"), exported(tmp_path / "one")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), f"{k}: max |Δθ| = {(a[k] - b[k]).abs().max().item()}"
    rows = read_csv(tmp_path / "two" / "log.csv")  # written once, by the main process
    assert [int(r["step"]) for r in rows] == list(range(1, 13))
    ckpt = latest_checkpoint(tmp_path / "two" / "state")
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()
    assert json.loads((ckpt / COMPLETE_MARKER).read_text())["processes"] == 2

    killed = two_processes("resumed", 29534, kill_at=6)
    assert killed.returncode != 0 and latest_checkpoint(tmp_path / "resumed" / "state").name == "checkpoint-00000004"
    resumed = two_processes("resumed", 29535)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(exported(tmp_path / "resumed"), exported(tmp_path / "two"))  # max |Δθ| == 0
    assert [int(r["step"]) for r in read_csv(tmp_path / "resumed" / "log.csv")] == list(range(1, 13))


def test_a_global_batch_that_does_not_split_is_refused(tmp_path):
    with pytest.raises(ParamsError, match=r"batch_size 6 is the global batch and does not split over 4 processes"):
        engine.check_batch_split(6, 4)
