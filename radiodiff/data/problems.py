"""The outcome of a dataset validation, shared by both datasets' ``validate`` stages: warnings on
stderr, every problem listed in one :class:`DataError`, the JSON file written only when the
folder is valid."""

from __future__ import annotations

import sys

from radiodiff.core.errors import DataError
from radiodiff.core.io import write_json

SHOWN = 50  # problems listed in the error (the count says how many more)


def conclude(findings: dict, root, out=None) -> dict:
    """Raise a :class:`DataError` listing the problems found, or write it to ``out``; returns
    the stage's summary."""
    for w in findings.get("warnings", [])[:10]:
        print(f"warning: {w}", file=sys.stderr)
    if not findings["ok"]:
        problems = findings["problems"]
        listing = "\n".join(f"  - {p}" for p in problems[:SHOWN])
        more = f"\n  ... and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise DataError(f"{root}: {len(problems)} problem(s) found:\n{listing}{more}")
    if out:
        write_json(out, findings)
    return {"stage": f"validate_{findings['dataset']}", "ok": True, "counts": findings.get("counts")}
