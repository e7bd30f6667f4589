"""Finite in, finite out -- or said (README "Safety", issue 23 D3): input values float32 cannot
hold are refused, float16 overflow is counted per store and reported by ``run``, ``status`` and
``inspect``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.stores import write_input

from featuremap.io import OutputStore
from featuremap.io._display import FeatureStats
from featuremap.jobs import state

pytestmark = pytest.mark.cluster

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"


@pytest.mark.parametrize(
    ("codec", "refused_at_plan"),
    [("auto", True), ("lz4", False)],
    ids=["auto codec: found by the plan's sample", "explicit codec: found by its block"],
)
def test_float64_values_beyond_float32_are_refused_not_made_inf(tmp_path, codec, refused_at_plan):
    data = np.zeros((64, 64))
    data[40, 40] = 1e300  # float32 ends at 3.4e38
    write_input(tmp_path / "in.zarr", data, (32, 32))
    (tmp_path / "p.yaml").write_text(
        PIPELINE.replace("chunks: [32, 32]", f"chunks: [32, 32], codec: {codec}")
    )
    result = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--workers", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == (2 if refused_at_plan else 1), result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("featuremap: error:")]
    assert len(errors) == 1, result.stderr
    assert "1e+300" in errors[0]
    assert "beyond float32's range" in errors[0]
    assert "Traceback" not in result.stderr
    if refused_at_plan:  # nothing written
        assert not (tmp_path / "out.zarr").exists()
        return
    status = state.job_status(OutputStore.open(str(tmp_path / "out.zarr"), "r"))["status"]
    assert status == "failed"


@pytest.mark.slow
def test_float16_overflow_is_counted_and_reported(tmp_path):
    data = np.zeros((64, 64), np.float32)
    data[:20, :20] = 1e5  # float16 ends at 65504: the box's mean there overflows
    write_input(tmp_path / "in.zarr", data, (32, 32))
    (tmp_path / "p.yaml").write_text(
        "layers: [{conv: {bank: {type: box, size: 3}}}]\n"
        "output: {chunks: [32, 32], dtype: float16}\n"
    )
    result = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--workers", "1", "--json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")["features"][...]
    infinite = int(np.isinf(stored).sum())
    assert infinite > 0
    assert json.loads(result.stdout)["values_overflowed"] == infinite
    status = run_cli("status", "out.zarr", "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["overflowed"] == infinite
    assert (
        f"warning: {infinite} values finite as computed became +-inf"
        in run_cli("status", "out.zarr", cwd=tmp_path).stdout
    )
    assert (
        f"{infinite} values finite as computed"
        in run_cli("inspect", "out.zarr", cwd=tmp_path).stdout
    )


def test_float32_output_counts_no_overflow(tmp_path):
    """The count is of the conversion: a float32 store has none, and a store written before it
    was counted reads as none."""
    stats = FeatureStats.of(np.full((2, 4, 4), np.inf, np.float32), 0)
    assert stats.overflowed == 0
    saved = stats.to_dict()
    del saved["overflow"]
    assert FeatureStats.from_dict(saved, 2).overflowed == 0
