"""Drawing the report's figures, in worker processes where the machine has more than one core.

Drawing and saving the figures is most of the report's time (matplotlib's constrained layout and
tick labels, in Python), and the figures do not depend on each other, so a :class:`Renderer`
hands each to a pool of processes forked from this one while the document goes on. One process
or many, every figure is drawn by the same call under the same style, so the files are the same.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from pathlib import Path

from matplotlib import rc_context
from matplotlib.figure import Figure

from radiodiff.report.figures import Style

MAX_WORKERS = 8


def default_workers() -> int:
    """The cores this process may run on (at most :data:`MAX_WORKERS`); 1 where processes cannot
    be forked or this one may not have children (then every figure is drawn in this process)."""
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def draw_and_save(draw: Callable[[], Figure], path: Path, style: Style) -> None:
    """Make a figure with ``draw`` and write it to ``path`` as PNG, both under the style's rc.

    The layout engine runs here, at the saving dpi, and is then switched off: ``savefig`` would
    otherwise draw the whole figure once without output just to run it (the same layout, so the
    same pixels, one pass over the figure fewer)."""
    with rc_context(style.rc()):
        fig = draw()
        fig.set_dpi(style.dpi)
        engine = fig.get_layout_engine()
        if engine is not None:
            engine.execute(fig)
            fig.set_layout_engine("none")
        fig.savefig(path, dpi=style.dpi)


class Renderer:
    """Draws the report's figures: in this process with ``workers=1``, else in a pool of forked
    worker processes (started at the first figure), each figure a task; :meth:`wait` returns when
    every figure is on disk and raises the first error a figure met. As a context manager it
    waits on a clean exit and stops the workers on any exit."""

    def __init__(self, style: Style, workers: int = 1):
        self.style = style
        self.workers = workers
        self._pool = None
        self._tasks: list = []

    def submit(self, draw: Callable[[], Figure], path: Path) -> None:
        if self.workers <= 1:
            draw_and_save(draw, path, self.style)
            return
        if self._pool is None:
            self._pool = multiprocessing.get_context("fork").Pool(self.workers)
        self._tasks.append(self._pool.apply_async(draw_and_save, (draw, path, self.style)))

    def wait(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self.close()
