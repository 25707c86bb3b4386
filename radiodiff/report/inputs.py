"""Reading the finished outputs the report shows: the CSV tables (training logs, per-sample
scores), each failure one :class:`DataError` that names the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from radiodiff.core.errors import DataError


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV; a missing, empty or corrupt file raises :class:`DataError` naming it."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None
