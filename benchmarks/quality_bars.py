"""Issue 28's quality bars, read off a finished workspace (not a test: it prints and measures).

    radiodiff scale quick && snakemake --cores all
    python benchmarks/quality_bars.py --workspace .            # a table; --json FILE writes it too

Each bar is a ratio of two numbers the DAG wrote, with its limit:

- RadioDiff / RadioUNet test NMSE: the headline (``protocol.headline``: the mean of K samples with
  ``sample.ensemble``, else the single sample) ≤ 1.3 on RadioMapSeer and ≤ 2.0 on ICASSP, and every
  RadioDiff variant the summary reports (the single sample included) ≤ 1.6 and ≤ 2.4;
- the target VAE's ceiling (test reconstruction from the posterior mean) ≤ ⅓ of RadioUNet's NMSE,
  its ceiling under latent noise of 0.2 σ ≤ 1.5 × the clean ceiling, and RadioUNet's maps through
  the VAE ≤ 1.3 × RadioUNet;
- whole ICASSP buildings in the preset's window mode: RadioDiff's weighted RMSE dB ≤ 1.5 × RadioUNet's.

A missing file leaves its bars out (named). ``--strict`` exits 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATASETS = {
    # dataset: (target VAE, headline limit, every-variant limit)
    "radiomapseer": ("radiomapseer", 1.3, 1.6),
    "icassp": ("radio", 2.0, 2.4),
}
CEILING_SHARE = 1 / 3
NOISE_LIMIT = 1.5
THROUGH_VAE_LIMIT = 1.3
WHOLE_LIMIT = 1.5


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"quality_bars: {path} is not JSON ({e})") from e


def _bar(name: str, value: float | None, reference: float | None, limit: float, what: str) -> dict:
    ratio = value / reference if value is not None and reference else None
    return {
        "bar": name,
        "value": value,
        "reference": reference,
        "ratio": ratio,
        "limit": limit,
        "met": ratio is not None and ratio <= limit,
        "what": what,
    }


def bars(ws: Path) -> tuple[list[dict], list[str]]:
    """Every bar computable from ``ws`` and the files that were missing."""
    out, missing = [], []
    for dataset, (vae, head_limit, any_limit) in DATASETS.items():
        path = ws / "results" / "evaluate" / dataset / "summary.json"
        summary = _read(path)
        if summary is None:
            missing.append(str(path))
            continue
        unet = summary["radiounet"]["nmse"]
        headline = (summary["protocol"].get("headline") or {}).get("radiodiff", "radiodiff")
        out.append(
            _bar(
                f"{dataset}: headline {headline} / radiounet",
                summary[headline]["nmse"],
                unet,
                head_limit,
                "test NMSE, top-level scope",
            )
        )
        for method in sorted(m for m in summary if m.startswith("radiodiff") and isinstance(summary[m], dict)):
            out.append(
                _bar(
                    f"{dataset}: {method} / radiounet",
                    summary[method]["nmse"],
                    unet,
                    any_limit,
                    "every RadioDiff variant",
                )
            )
        if "radiounet_vae" in summary:
            out.append(
                _bar(
                    f"{dataset}: radiounet_vae / radiounet",
                    summary["radiounet_vae"]["nmse"],
                    unet,
                    THROUGH_VAE_LIMIT,
                    "RadioUNet's maps through the LDM's VAE",
                )
            )
        vpath = ws / "results" / "vae" / vae / "metrics.json"
        metrics = _read(vpath)
        if metrics is None:
            missing.append(str(vpath))
            continue
        ceiling = metrics.get("ceiling_nmse")
        out.append(
            _bar(
                f"{dataset}: VAE {vae} ceiling / radiounet",
                ceiling,
                unet,
                CEILING_SHARE,
                "test reconstruction from the posterior mean",
            )
        )
        noisy = metrics.get("ceiling", {}).get("latent_noise", {}).get("0.2", {}).get("nmse")
        out.append(
            _bar(
                f"{dataset}: VAE {vae} ceiling at 0.2 sigma / clean",
                noisy,
                ceiling,
                NOISE_LIMIT,
                "latent noise of 0.2 x each channel's std",
            )
        )
    wpath = ws / "results" / "evaluate" / "icassp_full" / "summary.json"
    whole = _read(wpath)
    if whole is None:
        missing.append(str(wpath))
    else:
        out.append(
            _bar(
                "icassp whole buildings: radiodiff / radiounet weighted RMSE dB",
                whole["radiodiff"]["weighted_rmse_db"],
                whole["radiounet"]["weighted_rmse_db"],
                WHOLE_LIMIT,
                "the preset's window mode",
            )
        )
    return out, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=Path("."))
    ap.add_argument("--json", type=Path, help="also write the bars to this JSON file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a bar is missed")
    args = ap.parse_args(argv)
    rows, missing = bars(args.workspace)
    width = max((len(r["bar"]) for r in rows), default=10)
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}"
        value = "n/a" if r["value"] is None else f"{r['value']:.5g}"
        print(
            f"{r['bar']:<{width}}  {value:>9}  ratio {ratio:>6}  limit {r['limit']:.3g}  "
            f"{'met' if r['met'] else 'MISSED'}"
        )
    for m in missing:
        print(f"(no {m}: its bars left out)")
    if args.json:
        args.json.write_text(json.dumps({"bars": rows, "missing": missing}, indent=2) + "\n")
    return 1 if args.strict and not all(r["met"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
