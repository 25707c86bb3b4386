"""Edge extraction: each OpenCV method finds the boundary of a bright square, and nothing on flat maps."""

from __future__ import annotations

import numpy as np
import pytest

from radiodiff.core.errors import DataError
from radiodiff.core.io import read_png
from radiodiff.data.edges import METHODS, edge_map, extract_edges


@pytest.mark.parametrize("method", METHODS)
def test_edges_on_a_square(method):
    img = np.full((48, 48), 40, np.uint8)
    img[16:32, 16:32] = 200
    e = edge_map(img, method=method)
    assert e.dtype == np.uint8 and set(np.unique(e)) <= {0, 255}
    ring = np.zeros_like(img, dtype=bool)
    ring[14:34, 14:34] = True
    ring[19:29, 19:29] = False
    assert (e > 0).sum() > 20
    assert not (e[~ring] > 0).any(), "edges only near the square's border"
    assert not edge_map(np.full((48, 48), 90, np.uint8), method=method).any()


def test_threshold_controls_sobel():
    img = np.tile(np.arange(48, dtype=np.uint8) * 2, (48, 1))  # gentle ramp, |grad| = 8 with ksize 3
    assert not edge_map(img, "sobel", threshold=40).any()
    assert edge_map(img, "sobel", threshold=4)[:, 2:-2].all()


def test_extract_edges_folder(tmp_path, tiny_radiomapseer):
    out = tmp_path / "edges"
    s = extract_edges(tiny_radiomapseer / "gain/DPM", out, method="canny")
    assert s["files"] == 10 and len(list(out.glob("*.png"))) == 10
    assert read_png(out / "0_0.png").shape == (64, 64)
    with pytest.raises(DataError, match="no gain maps"):
        extract_edges(tmp_path / "empty", tmp_path / "e2")
    assert not (tmp_path / "e2").exists()


def test_edges_match_real_canny_maps():
    """Canny(50, 150) on the real gain maps reproduces the edge maps shipped in ../shared/real exactly."""
    from tests.conftest import need_real

    real = need_real()
    for p in sorted((real / "gain_DPM").glob("*.png")):
        shipped = read_png(real / "edges" / p.name)
        assert np.array_equal(edge_map(read_png(p), "canny", 50, 150), shipped), p.name
