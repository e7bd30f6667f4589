"""``featuremap run`` (``featuremap.cli.run``) as a user runs it, with ``inspect`` and ``status`` on
its store: real stores, real local clusters, every shipped pipeline, one-line refusals.

The commands run in process (:func:`support.cli.run_cli`, the same ``main`` as the console script);
one run is a real process (:func:`support.procs.featuremap`), for the exit status and output of the
program itself. The demo images and the two-layer pipeline are ``conftest.py``'s.
"""

from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
import zarr
from support import REPO
from support.cli import run_cli, run_ok
from support.procs import featuremap

from featuremap.apps.demo import IMAGES
from featuremap.engine.stack import apply_stack, resolve_stack
from featuremap.pipeline.pipeline import load_pipeline

#: The shipped pipelines of 2-D layers (the volume's is ``test_volumes.py``'s).
PIPELINES = sorted(
    path for path in (REPO / "pipelines").glob("*.yaml") if not path.name.startswith("volume")
)


@pytest.mark.cluster
@pytest.mark.slow
def test_run_inspect_status(two_layer, images, tmp_path):
    out = tmp_path / "out.zarr"
    ran = featuremap("run", two_layer, "--output", out, "--workers", "2", "--json")  # a process
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["status"] == "complete"
    assert summary["blocks_skipped"] == 0
    assert summary["blocks_computed"] == summary["blocks_total"] >= 2

    layers = load_pipeline(two_layer).build_layers(1)
    _stack = resolve_stack(layers, (96, 96), 1)
    geometries, stacks, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    report = json.loads(run_ok("inspect", out, "--json").stdout)
    assert report["shape"] == [2, *shapes[-1]]
    assert report["dims"] == ["t", "c", "y", "x"]
    assert report["geometry"] == stacks[-1].to_dict()
    assert [layer["receptive_field"] for layer in report["layers"]] == [
        list(s.receptive_field) for s in stacks
    ]
    assert [layer["padding"] for layer in report["layers"]] == [
        [list(p) for p in g.padding] for g in geometries
    ]
    assert report["provenance"]["pipeline"]["name"] == "two-layer"
    features = zarr.open_group(str(out), mode="r")["features"][...]
    np.testing.assert_allclose(features, apply_stack(layers, images[1]), rtol=1e-4, atol=1e-4)

    status = json.loads(run_ok("status", out, "--json").stdout)
    assert (status["status"], status["blocks_done"]) == ("complete", summary["blocks_total"])
    assert "complete" in run_ok("status", out).stdout
    assert "receptive field" in run_ok("inspect", out).stdout

    # A second run is refused (exit 2) and leaves the store as it was; --resume has nothing to do.
    again = run_cli("run", two_layer, "--output", out)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr
    # the store records the command that resumes it, options and all (absolute paths)
    hint = status["ticket"]["resume"]
    assert hint == f"featuremap run {two_layer} --workers 2 --output {out} --resume"
    resumed = json.loads(run_ok(*shlex.split(hint)[1:], "--json").stdout)
    assert resumed["blocks_skipped"] == summary["blocks_total"]
    assert resumed["blocks_computed"] == 0


BAD_PIPELINES = {
    "bad-stride.yaml": "layers: [{conv: {bank: {type: box}, stride: -1}}]",
    "unknown-key.yaml": "layers: [{conv: {bank: {type: box}, strides: 2}}]",
    "unknown-bank.yaml": "layers: [{conv: {bank: {type: gabr}}}]",
    "bad-bank-param.yaml": "layers: [{conv: {bank: {type: gabor, size: 4}}}]",
    "two-kinds.yaml": "layers: [{conv: {bank: {type: box}}, pool: {type: max, kernel_size: 2}}]",
    "no-layers.yaml": "name: x",
    "python-tag.yaml": "!!python/object/apply:os.system ['touch hacked']",
    "syntax.yaml": "layers: [",
    "missing-weights.yaml": "layers: [{conv: {bank: {type: file, path: nowhere.npz}}}]",
    "too-big-kernel.yaml": "layers: [{conv: {bank: {type: box, size: 200}}}]",
    "channels.yaml": "layers: [{conv: {bank: {type: random, in_channels: 3}}}]",
    "bad-padding-mode.yaml": "layers: [{conv: {bank: {type: box}, padding_mode: mirror}}]",
}

BAD_ARGUMENTS = [
    ("bad-stride.yaml", ()),
    ("unknown-key.yaml", ()),
    ("unknown-bank.yaml", ()),
    ("bad-bank-param.yaml", ()),
    ("two-kinds.yaml", ()),
    ("no-layers.yaml", ()),
    ("python-tag.yaml", ()),
    ("syntax.yaml", ()),
    ("missing-weights.yaml", ()),
    ("too-big-kernel.yaml", ()),
    ("channels.yaml", ()),
    ("bad-padding-mode.yaml", ()),
    ("missing.yaml", ()),
    ("good.yaml", ("--overwrite", "--resume")),
    ("good.yaml", ("--workers", "0")),
    ("good.yaml", ("--workers", "2", "--scheduler", "tcp://127.0.0.1:1")),
    ("good.yaml", ("--device", "tpu")),
    ("good.yaml", ("--input", "{tmp}/no-such-input.zarr")),
    ("good.yaml", ("--array", "nope")),
    ("good.yaml", ("--output", "{images}")),
    ("good.yaml", ("--scheduler", "tls://127.0.0.1:1")),
    ("good.yaml", ("--scheduler", "wss://127.0.0.1:1")),  # encrypted like tls: needs the files
    ("good.yaml", ("--bogus",)),
]


@pytest.mark.parametrize(
    ("name", "extra"), BAD_ARGUMENTS, ids=[f"{n}{' '.join(e)}" for n, e in BAD_ARGUMENTS]
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(images, tmp_path, name, extra):
    for file_name, text in BAD_PIPELINES.items():
        (tmp_path / file_name).write_text(text)
    (tmp_path / "good.yaml").write_text("layers: [{conv: {bank: {type: box}}}]")
    out = tmp_path / "out.zarr"
    arguments = [a.format(tmp=tmp_path, images=images[0]) for a in extra]
    if "--input" not in extra:
        arguments += (
            ["--input", str(images[0]), "--array", IMAGES]
            if "--array" not in extra
            else ["--input", str(images[0])]
        )
    if "--output" not in extra:
        arguments += ["--output", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("run", tmp_path / name, *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("featuremap: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert (
        sorted(p.name for p in tmp_path.iterdir()) == before
    )  # nothing written (no store, no 'hacked')


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_every_shipped_pipeline_runs_on_demo_data(images, tmp_path, path):
    out = tmp_path / f"{path.stem}.zarr"
    summary = json.loads(
        run_ok(
            "run", path, "--input", images[0], "--output", out, "--workers", "2", "--json"
        ).stdout
    )
    assert summary["status"] == "complete"
    layers = load_pipeline(path).build_layers(1)
    _stack = resolve_stack(layers, (96, 96), 1)
    shapes = _stack.shapes
    features = zarr.open_group(str(out), mode="r")["features"]
    assert features.shape == (2, *shapes[-1])
    # The first image through the in-memory oracle.
    np.testing.assert_allclose(
        features[0], apply_stack(layers, images[1][:1])[0], rtol=1e-3, atol=1e-4
    )
