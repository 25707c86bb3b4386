"""Atomic writes and checked image reads.

Every output is written to a temporary name in the destination's folder and renamed into
place, so a killed job never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from radiodiff.core.errors import DataError


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``dest``; on success it replaces ``dest``.

    On any exception the temporary folder is removed and ``dest`` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike, mode: str = "w") -> Iterator:
    """Open a temporary file beside ``dest`` for writing; rename it onto ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-", dir=dest.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(dest: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(dest) as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def read_json(path: str | os.PathLike):
    """Read a JSON file; a missing or corrupt file raises :class:`DataError` naming it."""
    path = Path(path)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def read_png(path: str | os.PathLike, mode: str | None = None) -> np.ndarray:
    """Read a PNG into a uint8 array; ``mode`` "L" demands gray, "RGB" demands 3 channels.

    A missing, unreadable or wrongly shaped file raises :class:`DataError` naming it.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if mode == "L" and im.mode not in ("L", "P", "1", "I;16", "I"):
                raise DataError(f"{path}: expected a gray image, found mode {im.mode}")
            if mode == "RGB" and im.mode not in ("RGB", "RGBA"):
                raise DataError(f"{path}: expected an RGB image, found mode {im.mode}")
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            arr = np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: unreadable image ({e})") from None
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def write_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a uint8 gray (H, W) or RGB (H, W, 3) array as PNG (callers write into a temp dir)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png({path}): expected uint8, got {arr.dtype}")
    Image.fromarray(arr).save(path, optimize=False, compress_level=1)
