"""The command line as a user runs it: real stores, real local clusters.

The commands run in process (:func:`support.cli.run_cli`, the same ``main`` as the console script);
one run and the usage errors run as real processes (:func:`support.procs.featuremap`), for the
exit status and output of the program itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from support import REPO
from support.cli import Result, run_cli
from support.procs import featuremap

from featuremap.apps.demo import IMAGES, make_images, write_images
from featuremap.engine.stack import apply_stack, resolve_stack
from featuremap.pipeline.pipeline import load_pipeline

PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
COMMANDS = ("run", "submit", "status", "inspect", "explain", "banks", "preview", "demo")


def ok(*args: object, cwd: Path | None = None) -> Result:
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Two 96 x 96 demo images, stored in 48 x 48 chunks."""
    folder = tmp_path_factory.mktemp("demo")
    data, layout = make_images(n_images=2, size=96, seed=3)
    store = write_images(folder / "images.zarr", data, layout)
    return Path(store), data


TWO_LAYER = """\
name: two-layer
input: {{store: {images}, array: images}}
layers:
  - conv:
      bank: {{type: random, n: 4, size: 3, seed: 1}}
      stride: 2
      dilation: 2
      padding: same
      activation: relu
  - pool: {{type: max, kernel_size: 3, stride: 2, padding: 1}}
  - conv:
      bank: {{type: file, path: w.npz}}
      padding: [1, 0]
"""


@pytest.fixture(scope="module")
def two_layer(images, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two-layer")
    rng = np.random.default_rng(11)
    np.savez(
        folder / "w.npz",
        weight=rng.normal(size=(3, 4, 3, 3)).astype(np.float32),
        bias=rng.normal(size=3).astype(np.float32),
    )
    path = folder / "two-layer.yaml"
    path.write_text(TWO_LAYER.format(images=images[0]))
    return path


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
    report = json.loads(ok("inspect", out, "--json").stdout)
    assert report["shape"] == [2, *shapes[-1]]
    assert report["dims"] == ["image", "feature", "y", "x"]
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

    status = json.loads(ok("status", out, "--json").stdout)
    assert (status["status"], status["blocks_done"]) == ("complete", summary["blocks_total"])
    assert "complete" in ok("status", out).stdout
    assert "receptive field" in ok("inspect", out).stdout

    # A second run is refused (exit 2) and leaves the store as it was; --resume has nothing to do.
    again = run_cli("run", two_layer, "--output", out)
    assert again.returncode == 2
    assert "--overwrite" in again.stderr
    resumed = json.loads(ok("run", two_layer, "--output", out, "--resume", "--json").stdout)
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
        ok("run", path, "--input", images[0], "--output", out, "--workers", "2", "--json").stdout
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


def test_explain_numbers_match_geometry(two_layer):
    layers = load_pipeline(two_layer).build_layers(1)
    _stack = resolve_stack(layers, (50, 70), 1)
    geometries, stacks, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    report = json.loads(ok("explain", two_layer, "--input-shape", "50,70", "--json").stdout)
    assert report["input"] == {"batch_shape": [], "channels": 1, "shape": [50, 70]}
    for row, geometry, stack, shape in zip(
        report["layers"], geometries, stacks, shapes, strict=True
    ):
        assert row["kernel_size"] == list(geometry.kernel_size)
        assert row["stride"] == list(geometry.stride)
        assert row["dilation"] == list(geometry.dilation)
        assert row["padding"] == [list(p) for p in geometry.padding]
        assert row["output_shape"] == list(shape)
        assert (row["receptive_field"], row["jump"], row["offset"]) == (
            list(stack.receptive_field),
            list(stack.jump),
            list(stack.offset),
        )
    table = ok("explain", two_layer, "--input-shape", "50x70").stdout
    last = table.splitlines()[-2]
    assert f"{shapes[-1][0]}×{shapes[-1][1]}×{shapes[-1][2]}" in last
    assert str(stacks[-1].receptive_field[0]) in last
    assert f"{stacks[-1].jump[0]}" in last


def test_explain_reads_the_input_store(two_layer, images):
    report = json.loads(
        ok("explain", two_layer, "--input", images[0], "--array", IMAGES, "--json").stdout
    )
    assert report["input"] == {"batch_shape": [2], "channels": 1, "shape": [96, 96]}


def test_explain_refuses_an_impossible_shape(two_layer):
    result = run_cli("explain", two_layer, "--input-shape", "2,2")
    assert result.returncode == 2
    assert result.stderr.startswith("featuremap: error: layer")


def test_banks_lists_and_describes():
    from featuremap import banks

    listing = ok("banks").stdout
    assert all(name in listing for name in banks.names())
    described = json.loads(ok("banks", "gabor", "--json").stdout)
    assert described["name"] == "gabor"
    assert {p["name"] for p in described["parameters"]} >= {
        "size",
        "frequencies",
    }
    assert run_cli("banks", "gabr").returncode == 2


@pytest.mark.cluster
@pytest.mark.slow
def test_preview_writes_a_png(tmp_path, two_layer):
    from PIL import Image

    out = tmp_path / "out.zarr"
    ok("run", two_layer, "--output", out, "--workers", "1")
    ok("preview", out, "-o", tmp_path / "p.png", "--image", "1")
    with Image.open(tmp_path / "p.png") as picture:
        assert picture.format == "PNG"
        assert min(picture.size) > 50
    assert run_cli("preview", out, "-o", tmp_path / "p.png", "--image", "5").returncode == 2
    assert run_cli("preview", tmp_path / "nothing.zarr", "-o", tmp_path / "q.png").returncode == 2


@pytest.mark.cluster
@pytest.mark.slow
def test_demo_result_opens_with_xarray(tmp_path):
    import xarray as xr

    result = ok(
        "demo", "--output", tmp_path / "demo", "--workers", "2", "--size", "128", "--images", "2"
    )
    assert "xarray.open_zarr" in result.stdout
    dataset = xr.open_zarr(tmp_path / "demo" / "features.zarr")
    features = dataset["features"]
    layers = load_pipeline(REPO / "pipelines" / "default.yaml").build_layers(1)
    _stack = resolve_stack(layers, (128, 128), 1)
    stacks, shapes = _stack.stacks, _stack.shapes
    assert features.shape == (2, *shapes[-1])
    offset, jump = stacks[-1].offset, stacks[-1].jump
    np.testing.assert_allclose(dataset["y"].values, offset[0] + jump[0] * np.arange(shapes[-1][1]))
    np.testing.assert_allclose(dataset["x"].values, offset[1] + jump[1] * np.arange(shapes[-1][2]))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command):
    assert "Example" in ok(command, "--help").stdout


def test_usage_errors_are_one_line():
    for args in (("frobnicate",), ("status",), ("submit", "p.yaml")):
        result = featuremap(*args)  # a process: the exit status of the program itself
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("featuremap: error: ")
