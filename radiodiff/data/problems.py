"""The outcome of a dataset validation, shared by both datasets' ``validate`` stages: warnings on
stderr, every problem listed in one :class:`DataError`, the JSON report written only when the
folder is valid."""

from __future__ import annotations

import sys

from radiodiff.core.errors import DataError
from radiodiff.core.io import write_json

SHOWN = 50  # problems listed in the error (the count says how many more)


def conclude(report: dict, root, out=None) -> dict:
    """Raise a :class:`DataError` listing the report's problems, or write it to ``out``; returns
    the stage's summary."""
    for w in report.get("warnings", [])[:10]:
        print(f"warning: {w}", file=sys.stderr)
    if not report["ok"]:
        problems = report["problems"]
        listing = "\n".join(f"  - {p}" for p in problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise DataError(f"{root}: {len(problems)} problem(s) found:\n{listing}{more}")
    if out:
        write_json(out, report)
    return {"stage": f"validate_{report['dataset']}", "ok": True, "counts": report.get("counts")}
