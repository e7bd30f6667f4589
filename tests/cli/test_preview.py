"""``featuremap preview`` (``featuremap.cli.preview``): a PNG of a store's features; bad images and
stores are refused."""

from __future__ import annotations

import pytest
from support.cli import run_cli, run_ok


@pytest.mark.cluster
@pytest.mark.slow
def test_preview_writes_a_png(tmp_path, two_layer):
    from PIL import Image

    out = tmp_path / "out.zarr"
    run_ok("run", two_layer, "--output", out, "--workers", "1")
    run_ok("preview", out, "-o", tmp_path / "p.png", "--image", "1")
    with Image.open(tmp_path / "p.png") as picture:
        assert picture.format == "PNG"
        assert min(picture.size) > 50
    assert run_cli("preview", out, "-o", tmp_path / "p.png", "--image", "5").returncode == 2
    assert run_cli("preview", tmp_path / "nothing.zarr", "-o", tmp_path / "q.png").returncode == 2


def test_feature_tiles_are_labelled():
    import numpy as np

    from featuremap.apps.preview import BACKGROUND, TILE_LABEL_LINES, TILE_LINE_HEIGHT, _labelled

    tiles = [np.full((64, 128), BACKGROUND, np.uint8) for _ in range(3)]
    labels = ["gaussian σ=1", "gaussian_dxx σ=2", "gabor θ=45° f=0.25 σ=2.81 even, a long one"]
    labelled = _labelled(tiles, [*labels, "not shown"])
    assert [t.shape for t in labelled] == [(64 + TILE_LABEL_LINES * TILE_LINE_HEIGHT, 128)] * 3
    strips = [t[64:] for t in labelled]
    assert all((strip != BACKGROUND).any() for strip in strips)  # text drawn under each tile
    assert not np.array_equal(strips[0], strips[1])  # its own label
    assert (strips[2][TILE_LINE_HEIGHT:] != BACKGROUND).any()  # a long label wraps to 2 lines
