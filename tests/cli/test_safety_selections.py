"""Contradictory selections and non-finite metadata are refused (README "Safety", issue 23 D4
and D5): one line, exit 2, nothing written -- never the last of two regions kept silently, never
``NaN`` or ``Infinity`` in an output's ``zarr.json`` (which JSON cannot hold)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import refusal_line, run_cli
from support.stores import write_ome_image

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\n"


@pytest.fixture(scope="module")
def geo(tmp_path_factory) -> Path:
    """A ``lat`` x ``lon`` input (``--axes lat=y,lon=x``) and a one-layer pipeline."""
    folder = tmp_path_factory.mktemp("regions")
    zarr.create_array(
        str(folder / "geo.zarr"), data=np.ones((48, 40), np.float32), dimension_names=["lat", "lon"]
    )
    (folder / "p.yaml").write_text(PIPELINE)
    return folder


@pytest.mark.parametrize(
    "region",
    [
        ["--region", "lat=0:10,y=5:40"],  # an axis by its name and by its kind
        ["--region", "y=0:10,y=5:40"],
        ["--region", "y=0:10", "--region", "y=5:40"],  # the option given twice
    ],
    ids=["name-and-kind", "twice-in-one", "option-twice"],
)
def test_a_region_given_twice_for_one_axis_is_refused(geo, region):
    line = refusal_line(
        run_cli(
            "explain", "p.yaml", "--input", "geo.zarr", "--axes", "lat=y,lon=x", *region, cwd=geo
        )
    )
    assert "give it once" in line or "given twice" in line


def test_a_pipeline_region_naming_one_axis_twice_is_refused(geo):
    (geo / "twice.yaml").write_text(
        PIPELINE + "input: {axes: {lat: y, lon: x}, region: {lat: [0, 10], y: [5, 40]}}\n"
    )
    line = refusal_line(run_cli("explain", "twice.yaml", "--input", "geo.zarr", cwd=geo))
    assert "region lat and region y select the same axis" in line


def test_the_option_given_twice_for_two_axes_reads_both(geo):
    result = run_cli(
        "explain", "p.yaml", "--input", "geo.zarr", "--axes", "lat=y,lon=x", "--json",
        "--region", "y=0:10", "--region", "x=0:8", cwd=geo,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "[10, 8]" in json.dumps(json.loads(result.stdout)).replace("\n", "")


def _ome_with(folder: Path, name: str, edit: object) -> Path:
    """A 64 x 64 OME-Zarr image whose level-0 transforms ``edit(multiscale)`` changes."""
    pytest.importorskip("ome_zarr")
    path = folder / name
    write_ome_image(path, np.ones((64, 64), np.float32), "yx", {"y": 0.5, "x": 0.5})
    document = path / "zarr.json"
    metadata = json.loads(document.read_text())
    edit(metadata["attributes"]["ome"]["multiscales"][0])  # type: ignore[operator]
    document.write_text(json.dumps(metadata))  # NaN and Infinity as Python writes them
    return path


def _set(kind: str, value: float, outer: float | None = None):
    def edit(multiscale: dict) -> None:
        transforms = multiscale["datasets"][0]["coordinateTransformations"]
        for transform in transforms:
            if transform["type"] == kind:
                transform[kind][-1] = value
                break
        else:
            transforms.append({"type": kind, kind: [0.0, value]})
        if outer is not None:
            multiscale["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, outer]}]

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("scale", float("nan")), "scale that is not a finite number"),
        (_set("translation", float("inf")), "translation that is not a finite number"),
        (_set("translation", 1e308, outer=10.0), "translation that is not a finite number"),
        (_set("scale", 1e307), "x coordinates overflow"),  # finite in, infinite out
    ],
    ids=["nan-scale", "inf-translation", "overflowing-translation", "overflowing-coordinates"],
)
def test_non_finite_placement_is_refused_and_nothing_written(tmp_path, edit, expected):
    source = _ome_with(tmp_path, "img.zarr", edit)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    out = tmp_path / "out.zarr"
    line = refusal_line(
        run_cli("run", "p.yaml", "--input", source, "--output", out, "--workers", "1", cwd=tmp_path)
    )
    assert expected in line
    assert not out.exists()
