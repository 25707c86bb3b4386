"""Validation of an ICASSP 2025 dataset folder (real or synthetic) into JSON-able findings (the validation report).

Data problems never raise: each is collected as a line naming the file at fault. ``ok`` is
True when there are none. Path-loss values outside 13–160 dB (0 aside) are warnings, not
problems, because ray tracers leave such pixels in otherwise sound maps.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from radiodiff.core.encodings import PL_MAX_DB, PL_MIN_DB
from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data.icassp import (
    SampleId,
    details_path,
    parse_name,
    pattern_path,
    positions_path,
    read_details,
    read_positions,
)
from radiodiff.data.problems import conclude
from radiodiff.physics.antenna import read_pattern

# The real challenge patterns peak between −2.5 and 0 dB (REFERENCE.md §5); further is suspicious.
PATTERN_PEAK_TOLERANCE_DB = 3.0


def validate(root: str | os.PathLike, task: str) -> dict:
    """Check ``root`` for the ``task`` folder pair; returns the findings (see module docstring)."""
    root = Path(root)
    problems: list[str] = []
    warnings: list[str] = []
    in_dir, out_dir = root / "Inputs" / task, root / "Outputs" / task
    names = {}
    for kind, folder in (("input", in_dir), ("output", out_dir)):
        if not folder.is_dir():
            problems.append(f"{folder}: {kind} folder not found")
            names[kind] = set()
            continue
        names[kind] = {p.name for p in folder.glob("*.png")}
        if not names[kind]:
            problems.append(f"{folder}: no PNG {kind}s")
    for n in sorted(names["input"] - names["output"]):
        problems.append(f"{in_dir / n}: no matching output {out_dir / n}")
    for n in sorted(names["output"] - names["input"]):
        problems.append(f"{out_dir / n}: no matching input {in_dir / n}")

    ids: list[SampleId] = []
    for n in sorted(names["input"] | names["output"]):
        try:
            sid = parse_name(n)
        except DataError:
            folder = in_dir if n in names["input"] else out_dir
            problems.append(f"{folder / n}: not an ICASSP sample name (B{{b}}_Ant{{a}}_f{{f}}_S{{s}}.png)")
            continue
        if n in names["input"] and n in names["output"]:
            ids.append(sid)
    ids.sort()

    patterns_ok = _check_patterns(root, ids, in_dir, problems, warnings)
    details = _read_details(root, ids, problems)
    positions: dict[Path, np.ndarray | None] = {}
    sizes: dict[int, Counter] = defaultdict(Counter)
    out_of_range = 0
    for sid in ids:
        in_path, out_path = in_dir / f"{sid.name}.png", out_dir / f"{sid.name}.png"
        try:
            rgb = read_png(in_path, mode="RGB")
        except DataError as e:
            problems.append(str(e))
            rgb = None
        try:
            pl = read_png(out_path, mode="L")
        except DataError as e:
            problems.append(str(e))
            pl = None
        if rgb is not None and pl is not None and rgb.shape[:2] != pl.shape:
            problems.append(
                f"{out_path}: size {pl.shape[1]}×{pl.shape[0]} (W×H) differs from its input's "
                f"{rgb.shape[1]}×{rgb.shape[0]} ({in_path})"
            )
        shape = pl.shape if pl is not None else (rgb.shape[:2] if rgb is not None else None)
        if shape is None:
            continue
        height, width = shape
        sizes[sid.building][(height, width)] += 1
        wh = details.get(sid.building)
        if wh is not None and wh != (width, height):
            problems.append(
                f"{in_path}: size {width}×{height} (W×H) differs from "
                f"{details_path(root, sid.building)} ({wh[0]}×{wh[1]})"
            )
        if pl is not None:
            bad = int(np.count_nonzero((pl != 0) & ((pl < PL_MIN_DB) | (pl > PL_MAX_DB))))
            if bad:
                out_of_range += bad
                warnings.append(f"{out_path}: {bad} pixels outside {PL_MIN_DB:g}..{PL_MAX_DB:g} dB")
        _check_tx(root, sid, (height, width), positions, problems)

    all_sizes = sorted({hw for c in sizes.values() for hw in c})
    findings = {
        "dataset": "icassp",
        "root": str(root),
        "task": task,
        "ok": not problems,
        "problems": problems,
        "warnings": warnings,
        "counts": {
            "samples": len(ids),
            "buildings": len({s.building for s in ids}),
            "antennas": len({s.antenna for s in ids}),
            "bands": len({s.band for s in ids}),
            "samples_per_antenna": {f"Ant{a}": n for a, n in sorted(Counter(s.antenna for s in ids).items())},
            "samples_per_band": {f"f{f}": n for f, n in sorted(Counter(s.band for s in ids).items())},
            "pixels_out_of_range": out_of_range,
        },
        "image_sizes": {
            "distinct": len(all_sizes),
            "min_hw": [min(h for h, _ in all_sizes), min(w for _, w in all_sizes)] if all_sizes else None,
            "max_hw": [max(h for h, _ in all_sizes), max(w for _, w in all_sizes)] if all_sizes else None,
            "by_building_hw": {f"B{b}": [list(hw) for hw in sorted(c)] for b, c in sorted(sizes.items())},
        },
        "patterns_ok": patterns_ok,
    }
    return findings


def _check_patterns(
    root: Path, ids: list[SampleId], in_dir: Path, problems: list[str], warnings: list[str]
) -> dict[str, bool]:
    """One check per antenna id in use: its pattern file exists and holds 360 numeric gains; a
    peak far from 0 dB is a warning (the real patterns are relative gains, peaks −2.5 to 0 dB)."""
    users = defaultdict(list)
    for sid in ids:
        users[sid.antenna].append(sid)
    status = {}
    for a, sids in sorted(users.items()):
        path = pattern_path(root, a)
        example = in_dir / f"{sids[0].name}.png"
        if not path.is_file():
            problems.append(
                f"{path}: unknown antenna id Ant{a} (no pattern file), used by {len(sids)} samples, e.g. {example}"
            )
            status[f"Ant{a}"] = False
            continue
        try:
            peak = float(read_pattern(path).max())
            status[f"Ant{a}"] = True
            if abs(peak) > PATTERN_PEAK_TOLERANCE_DB:
                warnings.append(
                    f"{path}: peak gain {peak:+.1f} dB, far from 0 dB (the challenge's patterns are relative "
                    "gains peaking at about 0 dB; a positive peak puts FSPL − G(θ) below free space)"
                )
        except DataError as e:
            problems.append(str(e))
            status[f"Ant{a}"] = False
    return status


def _read_details(root: Path, ids: list[SampleId], problems: list[str]) -> dict[int, tuple[int, int]]:
    details = {}
    for b in sorted({s.building for s in ids}):
        try:
            details[b] = read_details(details_path(root, b))
        except DataError as e:
            problems.append(str(e))
    return details


def _check_tx(root: Path, sid: SampleId, shape, positions: dict, problems: list[str]) -> None:
    path = positions_path(root, sid.building, sid.antenna, sid.band)
    if path not in positions:
        try:
            positions[path] = read_positions(path)
        except DataError as e:
            problems.append(str(e))
            positions[path] = None
    table = positions[path]
    if table is None:
        return
    if sid.sample >= len(table):
        problems.append(f"{path}: no row for sample {sid.name} ({len(table)} rows)")
        return
    x, y, _ = table[sid.sample]
    height, width = shape
    if not (0 <= round(x) < width and 0 <= round(y) < height):
        problems.append(f"{path}: Tx of {sid.name} at X={x:g}, Y={y:g} lies outside the {width}×{height} map")


def run(params: dict, root, out=None) -> dict:
    """The ``validate_icassp`` stage: fail listing every problem, else write the validation report to ``out``."""
    return conclude(validate(root, task=params["data"]["icassp"]["task"]), root, out)
