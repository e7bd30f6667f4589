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
