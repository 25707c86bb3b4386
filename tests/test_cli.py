"""The CLI as a user meets it: one-line errors naming the file or key, non-zero exit, no partial output."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run


@pytest.fixture
def workdir(tmp_path):
    """A folder with a params.yaml, as a user's checkout has."""
    shutil.copy(REPO / "params/ci.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_synthesize_with_flags_and_validate(tmp_path):
    run(["radiodiff", "synthesize", "radiomapseer", "rms", "--maps", "2", "--tx-per-map", "2", "--seed", "1"], tmp_path)
    assert len(list((tmp_path / "rms/gain/DPM").glob("*.png"))) == 4
    p = run(["radiodiff", "synthesize", "icassp", "ic", "--buildings", "2"], tmp_path)
    assert json.loads(p.stdout.strip().splitlines()[-1])["stage"] == "synthesize_icassp"


def test_validate_failure_lists_problems_and_writes_nothing(workdir, tiny_radiomapseer):
    ds = workdir / "ds"
    shutil.copytree(tiny_radiomapseer, ds)
    (ds / "gain/DPM/0_1.png").write_bytes(b"\x89PNG broken")
    (ds / "png/antennas/2_0.png").unlink()
    p = run(["radiodiff", "validate", "radiomapseer", "ds", "--out", "report.json"], workdir, check=False)
    assert p.returncode == 1
    assert "2 problem(s)" in p.stderr and "0_1.png" in p.stderr and "2_0.png" in p.stderr
    assert "Traceback" not in p.stderr
    assert not (workdir / "report.json").exists()


def test_invalid_param_names_the_key(workdir):
    text = (workdir / "params.yaml").read_text().replace("tx_per_map: 3", "tx_per_map: -1")
    (workdir / "params.yaml").write_text(text)
    p = run(["radiodiff", "synthesize", "radiomapseer", "out", "--params", "params.yaml"], workdir, check=False)
    assert p.returncode == 1
    assert "synthesize_radiomapseer.tx_per_map" in p.stderr and "Traceback" not in p.stderr
    assert not (workdir / "out").exists()


def test_missing_params_file(workdir):
    p = run(["radiodiff", "edges", "x", "y", "--params", "nope.yaml"], workdir, check=False)
    assert p.returncode == 1 and "nope.yaml: file not found" in p.stderr


def test_corrupt_input_leaves_no_partial_output(workdir):
    run(["radiodiff", "synthesize", "icassp", "ic", "--buildings", "3", "--seed", "2"], workdir)
    run(["radiodiff", "arrange", "ic", "arranged"], workdir)
    victim = sorted((workdir / "arranged/targets").glob("*.png"))[-1]
    victim.write_bytes(b"garbage")
    p = run(["radiodiff", "crop", "arranged", "crops"], workdir, check=False)
    assert p.returncode == 1 and victim.name in p.stderr and "Traceback" not in p.stderr
    assert not (workdir / "crops").exists()
    assert not list(workdir.glob(".crops.tmp-*")), "temporary folder removed"


def test_unknown_antenna_is_rejected_by_arrange(workdir):
    run(["radiodiff", "synthesize", "icassp", "ic", "--buildings", "2"], workdir)
    src = sorted((workdir / "ic/Inputs/Task_3_ICASSP").glob("B1_Ant2_*"))[0]
    for kind in ("Inputs", "Outputs"):
        f = workdir / "ic" / kind / "Task_3_ICASSP" / src.name
        f.rename(f.with_name(src.name.replace("Ant2", "Ant9")))
    p = run(["radiodiff", "arrange", "ic", "arranged"], workdir, check=False)
    assert p.returncode == 1 and "Ant9" in p.stderr
    assert not (workdir / "arranged").exists()


def test_outside_a_checkout_the_schema_defaults_are_used(tmp_path, tiny_radiomapseer):
    """No params.yaml in the folder: a stage runs with the schema's defaults and says so."""
    p = run(["radiodiff", "validate", "radiomapseer", str(tiny_radiomapseer), "--out", "v.json"], tmp_path)
    assert "using the schema's defaults" in p.stderr and "params.schema.yaml" in p.stderr
    assert json.loads((tmp_path / "v.json").read_text())["ok"]
    p = run(
        ["radiodiff", "validate", "radiomapseer", str(tiny_radiomapseer), "--params", "mine.yaml"],
        tmp_path,
        check=False,
    )
    assert p.returncode == 1 and "mine.yaml: file not found" in p.stderr, "a named file must exist"


def test_num_processes_launches_the_same_command_under_accelerate(tmp_path, tiny_radiomapseer, monkeypatch):
    """``runtime.num_processes: 2``: `radiodiff train ...` runs itself under `accelerate launch`
    with 2 processes (gloo on this CPU); the global batch is split, so the weights are those of
    one process (GroupNorm: BatchNorm statistics are per process). Bad settings fail before launching."""
    import torch
    import yaml
    from safetensors.torch import load_file

    from radiodiff.core.errors import ParamsError
    from radiodiff.train import launch
    from radiodiff.train.launch import check_launch, launch_command

    params = yaml.safe_load((REPO / "params/ci.yaml").read_text())
    section = params["train_radiounet_radiomapseer"]
    section["model"]["norm"] = "group"
    outs = {}
    for n in (1, 2):
        params["runtime"] |= {"num_processes": n, "state_dir": str(tmp_path / f"state{n}")}
        (tmp_path / f"p{n}.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        cmd = ["radiodiff", "train", "radiounet", "radiomapseer", "--root", str(tiny_radiomapseer)]
        p = run([*cmd, "--out", f"out{n}", "--params", f"p{n}.yaml"], tmp_path)
        assert ("accelerate.commands.launch" in p.stderr) == (n == 2)
        metrics = json.loads((tmp_path / f"out{n}" / "metrics.json").read_text())
        assert metrics["steps"] == section["train"]["max_steps"]
        outs[n] = load_file(str(tmp_path / f"out{n}" / "model" / "net" / "model.safetensors"))
    for k, v in outs[1].items():
        assert torch.allclose(v, outs[2][k], atol=1e-5), k
    assert launch_command(["train", "vae", "radio"], 4, 1234)[-5:] == ["-m", "radiodiff.cli", "train", "vae", "radio"]
    cmd = launch_command(["x"], 4, 1234)
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[cmd.index("--main_process_port") + 1] == "1234"
    with pytest.raises(ParamsError, match=r"train_radiounet_radiomapseer\.train\.batch_size 4 .* over 3 processes"):
        check_launch("train_radiounet_radiomapseer", params, 3)
    monkeypatch.setattr(launch, "devices", lambda: (1, "CUDA GPU(s)"))
    with pytest.raises(ParamsError, match=r"runtime\.num_processes 2 exceeds the 1 CUDA GPU\(s\) of this machine"):
        check_launch("train_radiounet_radiomapseer", params, 2)


@pytest.mark.parametrize("with_params", [False, True])
def test_model_commands_take_their_defaults_from_the_schema_or_the_params(tmp_path, monkeypatch, with_params):
    """`evaluate --model` and `predict` read sample.seed, batch_size and use_ema (and the window)
    from params.yaml, or without one from the schema: no default is restated in the CLI (issue 26:
    it read batch_size 16 where the schema says 32)."""
    import yaml

    from radiodiff import cli
    from radiodiff.core.params import schema_default_params
    from radiodiff.evaluate import predict

    expected = schema_default_params()["sample"]
    if with_params:
        params = yaml.safe_load((REPO / "params/ci.yaml").read_text())
        params["sample"] |= {"seed": 5, "batch_size": 3, "use_ema": False}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        expected = params["sample"]
    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(predict, "score_model", lambda *a, **kw: seen.setdefault("evaluate", kw) or {})
    monkeypatch.setattr(predict, "predict", lambda *a, **kw: seen.setdefault("predict", kw) and [])
    monkeypatch.setattr("radiodiff.evaluate.score_test.headline_table", lambda summary: "")
    assert cli.main(["evaluate", "--model", "m", "--root", "r", "--out", "o"]) == 0
    assert cli.main(["predict", "--model", "m", "--out", "o"]) == 0
    for command, kw in seen.items():
        assert (kw["seed"], kw["batch_size"], kw["ema"]) == (
            expected["seed"],
            expected["batch_size"],
            expected["use_ema"],
        ), command
    assert seen["predict"]["window"] == expected["window"]
