"""Progress of a long stage on stderr (tqdm), as a ``callback(done, total)``."""

from __future__ import annotations

import sys


def progress_bar(desc: str):
    """A ``callback(done, total)`` that draws a tqdm bar on stderr, created at the first call."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, file=sys.stderr, mininterval=2.0)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update
