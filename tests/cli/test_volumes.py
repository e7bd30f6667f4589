"""Volumes from the command line: the shipped ``volume-gaussian`` pipeline on the demo's
OME-NGFF volume (sigmas in micrometres), 3-D LoG and gradient-magnitude pipelines, each against
``dask_image.ndfilters`` (SciPy's kernels) within 1e-5, and ``explain`` with a z column."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr
from support import REPO
from support.cli import run_cli, run_ok

from featuremap.apps.demo import VOLUME_SCALE, make_volume, write_volume

ndfilters = pytest.importorskip("dask_image.ndfilters")

#: The 10 derivative orders of the ``gaussian`` bank with ``ndim: 3``, in its order.
ORDERS = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0), (1, 1, 0), (1, 0, 1), (0, 2, 0)]
ORDERS += [(0, 1, 1), (0, 0, 2)]


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volume")
    data = make_volume((24, 80, 72), seed=2)
    return write_volume(folder / "volume.ome.zarr", data), data


def _features(store):
    return zarr.open_group(str(store), mode="r")["features"][...]


def _close(result, expected):
    """Within 1e-5 of the response's range (float32 sums over up to 65 x 65 x 17 taps)."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.cluster
def test_volume_gaussian_in_micrometres_equals_dask_image(volume, tmp_path):
    store, data = volume
    out = tmp_path / "gaussian.zarr"
    pipeline = REPO / "pipelines" / "volume-gaussian.yaml"
    run_ok("run", pipeline, "--input", store, "--output", out, "--workers", "2")
    features = _features(out)
    assert features.shape == (30, *data.shape)
    lazy = da.from_array(data.astype(np.float64), chunks=(8, 40, 36))
    for scale_index, sigma_um in enumerate((0.1, 0.2, 0.4)):
        sigma = tuple(sigma_um / voxel for voxel in VOLUME_SCALE)
        for order_index, order in enumerate(ORDERS):
            expected = ndfilters.gaussian_filter(lazy, sigma, order=order, mode="mirror")
            _close(features[scale_index * 10 + order_index], expected.compute())


@pytest.mark.cluster
def test_log_and_gradient_magnitude_with_per_axis_sigma_equal_dask_image(volume, tmp_path):
    store, data = volume
    sigma = [0.8, 2.0, 2.5]
    pipeline = tmp_path / "log-gradient.yaml"
    pipeline.write_text(
        f"""
name: log-gradient
layers:
  - conv:
      bank: {{type: gaussian, ndim: 3, sigmas: [{sigma}], orders: [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}}
      padding: same
      padding_mode: reflect
  - reduce: {{op: magnitude, groups: 3}}
"""
    )
    log = tmp_path / "log.yaml"
    log.write_text(
        f"layers: [{{conv: {{bank: {{type: log, ndim: 3, sigmas: [{sigma}]}}, padding: same, "
        "padding_mode: reflect}}]"
    )
    lazy = da.from_array(data.astype(np.float64), chunks=(7, 33, 40))
    for path, expected in (
        (pipeline, ndfilters.gaussian_gradient_magnitude(lazy, sigma, mode="mirror")),
        (log, ndfilters.gaussian_laplace(lazy, sigma, mode="mirror")),
    ):
        out = tmp_path / f"{path.stem}.zarr"
        run_ok("run", path, "--input", store, "--output", out, "--workers", "2")
        _close(_features(out)[0], expected.compute())


def test_explain_a_volume_shows_z(volume):
    pipeline = REPO / "pipelines" / "volume-gaussian.yaml"
    store, _ = volume
    report = json.loads(run_ok("explain", pipeline, "--input", store, "--json").stdout)
    assert report["input"]["shape"] == [24, 80, 72]
    (layer,) = report["layers"]
    # sigma 0.4 um is 2 voxels along z, 8 in-plane: SciPy's radius int(4 sigma + 0.5)
    assert layer["kernel_size"] == [17, 65, 65]
    assert report["physical"]["units"] == ["micrometer"] * 3
    text = run_ok("explain", pipeline, "--input", store).stdout
    assert "C×D×H×W" in text


def test_explain_refuses_a_2d_shape_for_a_3d_pipeline(tmp_path):
    pipeline = tmp_path / "box3d.yaml"
    pipeline.write_text("layers: [{conv: {bank: {type: box, ndim: 3, size: 3}}}]")
    refused = run_cli("explain", pipeline, "--input-shape", "512,512")
    assert refused.returncode == 2
    assert "D,H,W" in refused.stderr
    table = run_ok("explain", pipeline, "--input-shape", "64,512,512").stdout
    assert "1×62×510×510" in table
