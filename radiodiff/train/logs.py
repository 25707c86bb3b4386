"""The training logs: one CSV row per logged step (the stage's ``train_log.csv``), the same
scalars to TensorBoard, and the process's peak memory."""

from __future__ import annotations

import csv
import resource
import sys
from pathlib import Path

import torch

from radiodiff.core.io import atomic_file


class CsvLog:
    """The CSV log: one row per logged step; a new column rewrites the file with the wider header.

    A resumed run keeps the rows up to its step and drops later ones (and a torn last line)."""

    def __init__(self, path: Path, keep_until_step: int):
        self.path = path
        self.fields: list[str] = []
        rows = self._read_rows(keep_until_step) if keep_until_step > 0 else []
        for row in rows:
            self._add_fields(row)
        self._rewrite(rows)

    def _read_rows(self, max_step: int) -> list[dict]:
        if not self.path.is_file():
            return []
        kept = []
        with open(self.path, newline="") as f:
            for row in csv.DictReader(f):
                try:  # a run killed mid-write can leave a torn last line: drop it
                    step = int(row.get("step") or "")
                except ValueError:
                    continue
                if step <= max_step and None not in row:
                    kept.append({k: v for k, v in row.items() if v not in (None, "")})
        return kept

    def _add_fields(self, row: dict) -> bool:
        new = [k for k in row if k not in self.fields]
        self.fields.extend(new)
        return bool(new)

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_file(self.path, mode="w") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields, restval="")
            if self.fields:
                writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        if self._add_fields(row):
            rows = self._read_rows(sys.maxsize)
            self._rewrite([*rows, row])
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, restval="").writerow(row)


class RunLog:
    """CSV rows and TensorBoard scalars of the main process (other processes log nothing)."""

    def __init__(self, log_csv: Path, tb_dir: Path | None, step: int, main: bool):
        self.csv = CsvLog(log_csv, keep_until_step=step) if main else None
        self.tb = None
        if tb_dir is not None and main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(tb_dir), purge_step=step + 1 if step > 0 else None)

    def write(self, row: dict) -> None:
        if self.csv is not None:
            self.csv.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, row["step"])

    def image(self, tag: str, image, step: int) -> None:
        """An H×W×3 uint8 image to TensorBoard (e.g. the LDM's sample previews)."""
        if self.tb is not None:
            self.tb.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def accumulate_terms(terms: dict, name: str, loss: torch.Tensor, loss_terms: dict, n: int) -> None:
    """Log values of one micro-batch, averaged over the accumulation window."""
    values = {f"loss/{name}": loss.detach()} | {f"{name}/{k}": v for k, v in loss_terms.items()}
    for k, v in values.items():
        terms[k] = terms.get(k, 0.0) + float(v) / n


def peak_memory() -> dict:
    """Peak memory so far: the process's RSS and, on CUDA, the allocator's peak (MB)."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    out = {"peak_rss_mb": rss_kb / 1024.0}
    if torch.cuda.is_available():
        out["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["peak_memory_mb"] = out["peak_gpu_mem_mb"]
    else:
        out["peak_memory_mb"] = out["peak_rss_mb"]
    return out
