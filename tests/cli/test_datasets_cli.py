"""The command line on real datasets: --axes, --level, --region, --channels, and physical units
in explain and inspect (in process, :func:`support.cli.run_cli`)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from support.cli import run_cli

PIPELINE = """\
name: box
layers:
  - conv: {bank: {type: box, size: 3}, stride: 2, padding: same}
"""


@pytest.fixture(scope="module")
def ome_volume(tmp_path_factory):
    pytest.importorskip("ome_zarr")
    from ome_zarr.format import FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    folder = tmp_path_factory.mktemp("cli-ome")
    data = np.random.default_rng(0).random((2, 5, 40, 32), dtype=np.float32)
    root = zarr.open_group(
        parse_url(str(folder / "img.zarr"), mode="w", fmt=FormatV05()).store, mode="w"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_image(
            data,
            root,
            axes="czyx",
            fmt=FormatV05(),
            scale={"z": 2.0, "y": 0.25, "x": 0.25},
            axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
            scale_factors=(2,),
        )
    (folder / "box.yaml").write_text(PIPELINE)
    return folder, data


@pytest.mark.cluster
@pytest.mark.slow
def test_run_with_level_region_channels(ome_volume):
    folder, data = ome_volume
    out = folder / "out.zarr"
    result = run_cli(
        "run",
        folder / "box.yaml",
        "--input",
        folder / "img.zarr",
        "--output",
        out,
        "--workers",
        "1",
        "--level",
        "0",
        "--region",
        "z=1:3,y=8:40",
        "--channels",
        "1",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    ds = xr.open_zarr(out)
    assert ds["features"].dims == ("c", "z", "y", "x")
    assert ds["features"].shape == (1, 2, 16, 16)
    np.testing.assert_allclose(ds["z"].values, [2.0, 4.0])
    # box 3x3 stride 2 'same' on 32 rows from row 8 (padding 0 before, 1 after): output row i
    # sees input rows 8 + 2i .. 8 + 2i + 2 and is centred on 8 + 1 + 2i
    np.testing.assert_allclose(ds["y"].values, 0.25 * (8 + 1 + 2 * np.arange(16)))
    assert float(ds["features"][0, 0, 1, 1]) == pytest.approx(
        data[1, 1, 10:13, 2:5].mean(), rel=1e-5
    )
    inspect = run_cli("inspect", out, "--json")
    physical = json.loads(inspect.stdout)["physical"]
    assert physical["units"] == ["micrometer", "micrometer"]
    assert physical["jump"] == [0.5, 0.5]


def test_explain_with_a_store_gives_physical_units(ome_volume):
    folder, _ = ome_volume
    result = run_cli("explain", folder / "box.yaml", "--input", folder / "img.zarr", "--level", "1")
    assert result.returncode == 0, result.stderr
    assert "in micrometer: receptive field 1.5" in result.stdout  # 3 px x 0.5 um at level 1


@pytest.mark.cluster
@pytest.mark.slow
def test_axes_flag_names_a_foreign_axis(tmp_path):
    source = tmp_path / "odd.zarr"
    zarr.create_array(
        str(source), data=np.ones((2, 12, 12), np.float32), dimension_names=["species", "y", "x"]
    )
    (tmp_path / "box.yaml").write_text(PIPELINE)
    refused = run_cli(
        "run", tmp_path / "box.yaml", "--input", source, "--output", tmp_path / "a.zarr"
    )
    assert refused.returncode == 2
    assert "'species'" in refused.stderr
    assert not (tmp_path / "a.zarr").exists()
    done = run_cli(
        "run",
        tmp_path / "box.yaml",
        "--input",
        source,
        "--output",
        tmp_path / "b.zarr",
        "--workers",
        "1",
        "--axes",
        "species=batch",
    )
    assert done.returncode == 0, done.stderr
    assert xr.open_zarr(tmp_path / "b.zarr")["features"].dims == ("t", "c", "y", "x")
