"""benchmarks/gpu_check.py in its --cpu --tiny mode: the GPU check's code path, on this CPU, in
seconds (the ci preset, a few stages, batches 1 and 2), so the check cannot rot between the runs
on a GPU machine."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import torch

from tests.conftest import REPO, env_with_venv

# One stage fails (no ICASSP data was synthesized), the stage after it still runs, and the one
# downstream of the failure is skipped.
STAGES = ("synthesize_radiomapseer", "validate_icassp", "edges", "arrange_icassp")


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def test_cpu_tiny_check_writes_every_part(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "benchmarks/gpu_check.py", "--cpu", "--tiny", "--out", str(out),
           "--workspace", str(tmp_path / "workspace"), "--stages", *STAGES]  # fmt: skip
    p = subprocess.run(cmd, cwd=REPO, env=env_with_venv(REPO), capture_output=True, text=True)
    assert p.returncode == 1, p.stderr[-3000:]  # the failed stage
    report = json.loads((out / "gpu_check.json").read_text())

    check = report["check"]
    assert check["finished"] and check["mode"] == "cpu-tiny" and check["preset"] == "ci"
    assert check["failed"] == ["stage validate_icassp"] and is_number(check["seconds"])

    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["python"]
    assert env["versions"]["jsonschema"] != "not installed" and "snakemake" in env["versions"]

    tests = report["tests"]  # the CUDA tests, skipped on this CPU
    assert "tests/test_train_engine.py" in tests["files"] and tests["returncode"] == 0
    assert tests["tests"] == tests["skipped"] >= 1 and tests["failures"] == tests["errors"] == 0

    stages = report["stages"]["stages"]
    assert list(stages) == list(STAGES), "stage-table order"
    assert [stages[s]["status"] for s in STAGES] == ["ok", "failed", "ok", "skipped"]
    assert stages["synthesize_radiomapseer"]["summary"]["stage"] == "synthesize_radiomapseer"
    assert all(is_number(stages[s]["seconds"]) for s in STAGES[:3])
    assert any("data/raw/icassp" in line for line in stages["validate_icassp"]["log_tail"])
    assert "validate_icassp" in stages["arrange_icassp"]["reason"]
    assert (tmp_path / "workspace/logs/edges.log").is_file()

    train = report["train"]
    assert [(r["precision"], r["batch_size"]) for r in train["runs"]] == [
        ("fp32", 1), ("fp32", 2), ("bf16", 1), ("bf16", 2),
    ]  # fmt: skip
    for run in train["runs"]:
        assert all(is_number(run[k]) and run[k] > 0 for k in ("steps_per_s", "flops_per_step", "peak_memory_mb"))
    assert train["parameters"] > 0 and train["image_size"] == 32

    sample = report["sample"]
    keys = [(r["precision"], r["steps"], r["batch_size"]) for r in sample["runs"]]
    assert keys == [(p, n, b) for p in ("fp32", "bf16") for n in (1, 2) for b in (1, 2)]
    for run in sample["runs"]:
        assert all(is_number(run[k]) and run[k] > 0 for k in ("ms_per_map", "flops_per_map", "peak_memory_mb"))
    assert is_number(sample["peak_memory_mb"]) and is_number(train["peak_memory_mb"])


def test_a_series_stops_at_its_first_out_of_memory_and_at_the_time_budget(monkeypatch):
    """The GPU-only branch: a batch that runs out of memory is recorded and ends its series (the
    larger batches are not tried); with no time left every batch is recorded as skipped."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    gpu_check = importlib.import_module("gpu_check")
    cpu = torch.device("cpu")

    def measure(batch):
        if batch >= 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"steps_per_s": 8.0 / batch}

    runs = []
    gpu_check.measure_series(runs, {"precision": "bf16"}, (1, 8, 32, 64), measure, cpu, lambda: 60.0)
    assert runs == [
        {"precision": "bf16", "batch_size": 1, "steps_per_s": 8.0},
        {"precision": "bf16", "batch_size": 8, "steps_per_s": 1.0},
        {"precision": "bf16", "batch_size": 32, "out_of_memory": True},
    ]
    runs = []
    gpu_check.measure_series(runs, {}, (1, 8), measure, cpu, lambda: 0.0)
    assert runs == [{"batch_size": 1, "skipped": "time budget"}, {"batch_size": 8, "skipped": "time budget"}]
