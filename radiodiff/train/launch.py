"""Several processes from the DAG: a training stage whose ``runtime.num_processes`` is N > 1
runs its own command again under ``accelerate launch`` with N processes.

The stage's command is the same under Snakemake and DVC (``radiodiff train ... --params FILE``);
``runtime.num_processes`` is read when it starts, like every ``runtime`` key (editing it re-runs
nothing). Before launching, ``train.batch_size`` (the global batch, split over the processes)
must divide by N, and N must not exceed the devices (the CUDA GPUs; on a machine without one,
the CPU cores, each process then a gloo CPU worker). The launched processes see ``WORLD_SIZE``
and train; the launcher waits and passes on their exit status.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch

from radiodiff.core.errors import ParamsError, RadiodiffError
from radiodiff.train.engine import check_batch_split

LAUNCHED = "WORLD_SIZE"  # set by the launcher in every process it starts


def devices() -> tuple[int, str]:
    """How many processes this machine can give a device each, and what they are."""
    if torch.cuda.is_available():
        return torch.cuda.device_count(), "CUDA GPU(s)"
    return os.cpu_count() or 1, "CPU core(s) (no GPU: gloo CPU processes)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(argv: list[str], num_processes: int, port: int) -> list[str]:
    """``accelerate launch`` of ``python -m radiodiff.cli ARGV`` with ``num_processes`` processes
    on this machine (Accelerate's multi-GPU launcher, torch.distributed's; on a CPU-only machine
    each process becomes a gloo CPU worker, :func:`radiodiff.train.distributed.make_accelerator`)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_machines", "1", "--num_processes", str(num_processes),
        "--mixed_precision", "no",  # the engine's Accelerator sets the stage's own precision
        "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "radiodiff.cli", *argv,
    ]  # fmt: skip


def check_launch(stage: str, params: dict, num_processes: int) -> None:
    """Refuse, before launching, a global batch that does not split or more processes than devices."""
    check_batch_split(int(params[stage]["train"]["batch_size"]), num_processes, f"{stage}.train.batch_size")
    available, what = devices()
    if num_processes > available:
        raise ParamsError(f"runtime.num_processes {num_processes} exceeds the {available} {what} of this machine")


def relaunch(stage: str, params: dict, argv: list[str]) -> bool:
    """Run the stage's command under ``accelerate launch`` when ``runtime.num_processes`` > 1 and
    this process was not launched yet; True when it did (the launched processes did the work)."""
    n = int(params["runtime"].get("num_processes", 1))
    if n <= 1 or LAUNCHED in os.environ:
        return False
    check_launch(stage, params, n)
    cmd = launch_command(argv, n, free_port())
    print(f"radiodiff: {stage}: {n} processes: {' '.join(cmd)}", file=sys.stderr, flush=True)
    code = subprocess.run(cmd).returncode
    if code != 0:
        raise RadiodiffError(f"{stage}: the {n} launched processes failed (exit status {code}; see the log above)")
    return True
