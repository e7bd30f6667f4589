"""Multiscale levels written by the job (``output.pyramid``, :mod:`featuremap.io.pyramid`), on
real stores: each level is the trimmed ``2^l`` block mean (or max) of level 0, computed here
independently with ``dask.array.coarsen(trim_excess=True)``; the NGFF metadata follows
ngff-zarr's convention and validates; level 0 is never read back; ``--resume`` rebuilds them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr
import zarr.storage
from support.cli import run_cli
from support.stores import unmark

from featuremap.io import OutputStore
from featuremap.io._guarded_store import GuardedLocalStore
from featuremap.io.pyramid import level_path
from featuremap.jobs.run import run
from featuremap.jobs.verify import verify_store

CONV = {"conv": {"bank": {"type": "gabor", "orientations": 2}, "padding": "same"}}
#: 301 x 555: odd at every level; 128-pixel blocks: level 1 from the blocks, 2..4 in the tail.
SHAPE = (1, 301, 555)


def _pipeline(output: dict[str, Any] | None = None, **pyramid: Any) -> dict[str, Any]:
    return {
        "layers": [CONV],
        "output": {"chunks": [128, 128], "pyramid": pyramid, **(output or {})},
    }


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("pyramid")
    data = np.random.default_rng(3).random(SHAPE, dtype=np.float32)
    zarr.create_array(str(folder / "in.zarr"), data=data, chunks=(1, 64, 64))
    return str(folder / "in.zarr")


def _level(store: Path, level: int) -> np.ndarray:
    path = "features" if level == 0 else level_path(level)
    return np.asarray(zarr.open_group(str(store), mode="r")[path][...])


def _reference(level0: np.ndarray, level: int, method: str) -> np.ndarray:
    """The trimmed 2^level block reduction of level 0, in float64."""
    factor = 1 << level
    reduce = np.mean if method == "mean" else np.max
    values = da.from_array(level0.astype(np.float64), chunks=-1)
    axes = {values.ndim - 2: factor, values.ndim - 1: factor}
    return np.asarray(da.coarsen(reduce, values, axes, trim_excess=True).compute(scheduler="sync"))


@pytest.mark.parametrize("method", ["mean", "max"])
def test_levels_are_the_trimmed_block_reduction_of_level_0(image, tmp_path, client, method):
    store = tmp_path / f"{method}.zarr"
    run(_pipeline(levels=4, method=method), input=image, output=str(store), client=client)
    level0 = _level(store, 0)
    recorded = OutputStore.open(str(store)).root["output"]["pyramid"]
    assert (recorded["levels"], recorded["block_levels"]) == (4, 1)  # the tail pass ran too
    for level in range(1, 5):
        expected = _reference(level0, level, method)
        got = _level(store, level)
        assert got.shape == (*level0.shape[:-2], *(n >> level for n in level0.shape[-2:]))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert verify_store(str(store)).clean


def test_ngff_metadata_follows_ngff_zarrs_convention_and_validates(image, tmp_path, client):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v05.image import Image

    store = tmp_path / "ngff.zarr"
    run(_pipeline(levels=3), input=image, output=str(store), client=client)
    group = zarr.open_group(str(store), mode="r")
    Image.from_zarr(group)
    [multiscale] = group.attrs["ome"]["multiscales"]
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == ["features", *(level_path(n) for n in (1, 2, 3))]
    base_scale, base_translation = (t for t in datasets[0]["coordinateTransformations"])
    for level, dataset in enumerate(datasets):
        scale, translation = (t for t in dataset["coordinateTransformations"])
        factor = [1, 1 << level, 1 << level]  # (feature, y, x): the spatial axes only
        assert scale["scale"] == [s * f for s, f in zip(base_scale["scale"], factor, strict=True)]
        assert translation["translation"] == [
            t + (f - 1) / 2 * s
            for t, s, f in zip(
                base_translation["translation"], base_scale["scale"], factor, strict=True
            )
        ]
    [node] = list(Reader(parse_url(str(store)))())
    features = group["features"].shape[0]
    assert [array.shape for array in node.data] == [
        (features, 301 >> level, 555 >> level) for level in range(4)
    ]
    _same_as_ngff_zarr(store, datasets)


def _same_as_ngff_zarr(store: Path, datasets: list[dict[str, Any]]) -> None:
    """ngff-zarr's ``to_multiscales`` gives the same shapes, scales and translations."""
    import ngff_zarr

    scale, translation = (t for t in datasets[0]["coordinateTransformations"])
    image = ngff_zarr.to_ngff_image(
        _level(store, 0),
        dims=["c", "y", "x"],
        scale=dict(zip("yx", scale["scale"][-2:], strict=True)),
        translation=dict(zip("yx", translation["translation"][-2:], strict=True)),
    )
    multiscales = ngff_zarr.to_multiscales(
        image, scale_factors=[2, 4, 8], method=ngff_zarr.Methods.ITKWASM_BIN_SHRINK
    )
    for level, theirs in enumerate(multiscales.images):
        ours_scale, ours_translation = (t for t in datasets[level]["coordinateTransformations"])
        assert theirs.data.shape == _level(store, level).shape
        assert [theirs.scale[a] for a in "yx"] == ours_scale["scale"][-2:]
        assert [theirs.translation[a] for a in "yx"] == ours_translation["translation"][-2:]


def test_xarray_opens_the_root_and_each_level(image, tmp_path, client):
    store = tmp_path / "xr.zarr"
    run(_pipeline(levels=2), input=image, output=str(store), client=client)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        root = xr.open_zarr(str(store))
        level = xr.open_zarr(str(store), group="levels/2")
    assert root["features"].shape[-2:] == (301, 555)
    assert level["features"].shape[-2:] == (301 >> 2, 555 >> 2)
    # level-2 pixel i covers level-0 pixels 4i..4i+3: its centre is their mean
    np.testing.assert_allclose(
        level["x"].values, root["x"].values[: 4 * 138].reshape(-1, 4).mean(1)
    )
    assert list(level["c"].values) == list(root["c"].values)


class _CountingStore(GuardedLocalStore):
    """A local store that records every key it returns bytes of (a shard write first looks
    for the shard it replaces: a miss, not a read)."""

    reads: ClassVar[list[str]] = []

    async def get(self, key: str, *args: Any, **kwargs: Any) -> Any:
        value = await super().get(key, *args, **kwargs)
        if value is not None:
            _CountingStore.reads.append(key)
        return value

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        key_ranges = list(key_ranges)
        values = await super().get_partial_values(prototype, key_ranges)
        _CountingStore.reads.extend(
            key for (key, _), value in zip(key_ranges, values, strict=True) if value is not None
        )
        return values


def test_level_0_is_never_read_back(image, tmp_path, client, monkeypatch):
    # every store opened from a path in this process (the in-process cluster's workers too):
    # featuremap's own (io._guarded_store), and any Zarr makes from a path
    monkeypatch.setattr("featuremap.io._guarded_store.GuardedLocalStore", _CountingStore)
    monkeypatch.setattr("zarr.storage._common.LocalStore", _CountingStore)
    _CountingStore.reads = []
    store = tmp_path / "counted.zarr"
    run(_pipeline(levels=3), input=image, output=str(store), client=client)
    chunks_read = [key for key in _CountingStore.reads if "/c/" in key]
    assert not [key for key in chunks_read if key.startswith("features/")]
    assert [key for key in chunks_read if key.startswith("levels/1/features/")]  # the tail's


def test_resume_after_an_interruption_gives_the_same_levels(image, tmp_path, client):
    pipeline = _pipeline(levels=3)
    reference = tmp_path / "reference.zarr"
    run(pipeline, input=image, output=str(reference), client=client)
    store = tmp_path / "resumed.zarr"
    run(pipeline, input=image, output=str(store), client=client)
    # as a job killed after two blocks and before its tail: blocks unmarked, levels gone
    unmark(store, [(1, 2), (2, 4)])
    for level in (2, 3):
        for chunk in (store / level_path(level) / "c").rglob("*"):
            if chunk.is_file():
                chunk.unlink()
    OutputStore.open(str(store), "r+").update_root(status="interrupted")
    summary = run(pipeline, input=image, output=str(store), client=client, resume=True)
    assert summary.blocks_computed == 2
    for level in range(4):
        np.testing.assert_array_equal(_level(store, level), _level(reference, level))


@pytest.mark.parametrize(
    ("pyramid", "message"),
    [
        ("{levels: 0}", "output.pyramid: levels must be auto or an integer >= 1, got 0"),
        ("{method: median}", "output.pyramid: method must be one of"),
        ("{level: 2}", "output.pyramid: unknown key 'level' (did you mean 'levels'?)"),
        ("[2]", "output.pyramid: must be false, auto, a level count or a mapping"),
        ("{levels: 9}", "output.pyramid.levels: 9 levels would leave level 9 empty"),
    ],
)
def test_bad_pyramid_is_one_line_exit_2_nothing_written(image, tmp_path, pyramid, message):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"layers: [{{conv: {{bank: {{type: gabor, orientations: 2}}, padding: same}}}}]\n"
        f"output: {{chunks: [128, 128], pyramid: {pyramid}}}\n"
    )
    output = tmp_path / "out.zarr"
    result = run_cli("run", pipeline, "--input", image, "--output", output)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("featuremap: error: ")
    assert message in line
    assert not output.exists()


def test_verify_covers_every_level_and_repair_then_resume_restores_them(image, tmp_path, client):
    pipeline = _pipeline(levels=3)
    reference = tmp_path / "reference.zarr"
    run(pipeline, input=image, output=str(reference), client=client)
    store = tmp_path / "damaged.zarr"
    run(pipeline, input=image, output=str(store), client=client)
    part = store / level_path(1) / "c" / "0" / "1" / "2"  # block (1, 2)'s part of level 1
    raw = bytearray(part.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    part.write_bytes(bytes(raw))
    (store / level_path(1) / "c" / "0" / "0" / "0").unlink()  # block (0, 0)'s part: gone
    (store / level_path(3) / "c" / "0" / "0" / "0").unlink()  # the tail's only shard: gone

    report = verify_store(str(store))
    assert report.corrupted == ((1, 2),)
    assert report.missing == ((0, 0),)
    assert list(report.arrays) == [level_path(3)]
    repaired = verify_store(str(store), repair=True)
    assert repaired.unrepairable == ()
    summary = run(pipeline, input=image, output=str(store), client=client, resume=True)
    assert summary.blocks_computed == 2
    for level in range(4):
        np.testing.assert_array_equal(_level(store, level), _level(reference, level))
    assert verify_store(str(store)).clean


def test_a_3d_stack_pools_z_y_x_and_leaves_batch_axes(tmp_path, client):
    """A volume: the levels halve z, y and x (odd sizes trimmed), in the viewer's chunks."""
    from featuremap.engine.layers import ConvLayer
    from featuremap.io.pyramid import PyramidOptions
    from featuremap.io.sizing import OutputOptions
    from featuremap.jobs.run import run_layers

    rng = np.random.default_rng(4)
    data = rng.random((1, 37, 70, 90), dtype=np.float32)
    source = tmp_path / "in.zarr"
    zarr.create_array(
        str(source), data=data, chunks=(1, 16, 32, 32), dimension_names=["c", "z", "y", "x"]
    )
    weight = rng.standard_normal((3, 1, 3, 3, 3)).astype(np.float32)
    store = tmp_path / "out.zarr"
    run_layers(
        [ConvLayer.create(weight, padding="same")],
        input=str(source),
        output=str(store),
        client=client,
        options=OutputOptions(chunks=(16, 32, 32), pyramid=PyramidOptions(2)),
    )
    level0 = _level(store, 0)
    assert level0.shape == (3, 37, 70, 90)
    for level in (1, 2):
        factor = 1 << level
        values = da.from_array(level0.astype(np.float64), chunks=-1)
        expected = da.coarsen(np.mean, values, {1: factor, 2: factor, 3: factor}, trim_excess=True)
        got = _level(store, level)
        np.testing.assert_allclose(got, expected.compute(scheduler="sync"), rtol=1e-6, atol=1e-6)
    level1 = zarr.open_group(str(store), mode="r")[level_path(1)]
    assert level1.chunks == (3, 8, 16, 16)  # a small block: every feature in its one chunk
    assert verify_store(str(store)).clean


def test_batch_axes_are_carried_through_untouched(tmp_path, client):
    """A ``(z, c, y, x)`` input under a 2-D stack: z is a batch axis, stored after the features
    (NGFF's order), never pooled; the levels place z like level 0."""
    rng = np.random.default_rng(8)
    data = rng.random((3, 1, 150, 203), dtype=np.float32)
    source = tmp_path / "in.zarr"
    zarr.create_array(
        str(source), data=data, chunks=(1, 1, 64, 64), dimension_names=["z", "c", "y", "x"]
    )
    store = tmp_path / "out.zarr"
    run(_pipeline(levels=2, method="max"), input=str(source), output=str(store), client=client)
    level0 = _level(store, 0)
    assert zarr.open_group(str(store))[level_path(1)].metadata.dimension_names == (
        "c",
        "z",
        "y",
        "x",
    )
    for level in (1, 2):
        np.testing.assert_allclose(
            _level(store, level), _reference(level0, level, "max"), rtol=1e-6, atol=1e-6
        )
    from ome_zarr_models.v05.image import Image

    Image.from_zarr(zarr.open_group(str(store), mode="r"))


# -- the pyramid in each store format ------------------------------------------------------------


def test_ngff04_levels_are_plain_zarr_v2_arrays_that_validate_and_read(image, tmp_path, client):
    """``format: ngff-0.4``: every level a Zarr v2 array (no shards, ``/`` keys, no checksum,
    xarray's dimension names), NGFF 0.4 ``multiscales`` at the group's top listing them, read
    by ome-zarr-models 0.4, ome-zarr-py's Reader and xarray; the levels still the trimmed block
    means of level 0, checked by ``verify``."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader
    from ome_zarr_models.v04.image import Image

    store = tmp_path / "v2.zarr"
    run(_pipeline({"format": "ngff-0.4"}, levels=3), input=image, output=str(store), client=client)
    assert not list(store.rglob("zarr.json"))
    group = zarr.open_group(str(store), mode="r")
    Image.from_zarr(group)
    [multiscale] = group.attrs["multiscales"]
    assert multiscale["version"] == "0.4"
    assert [d["path"] for d in multiscale["datasets"]] == [
        "features",
        *(level_path(n) for n in (1, 2, 3)),
    ]
    level0 = _level(store, 0)
    features = level0.shape[0]
    for level in (1, 2, 3):
        document = json.loads((store / level_path(level) / ".zarray").read_text())
        assert document["zarr_format"] == 2
        assert document["dimension_separator"] == "/"
        assert "crc32c" not in json.dumps(document)
        # all features in a chunk: no shards to hold one-feature chunks
        assert document["chunks"][0] == features
        attrs = json.loads((store / level_path(level) / ".zattrs").read_text())
        assert attrs["_ARRAY_DIMENSIONS"] == ["c", "y", "x"]
        np.testing.assert_allclose(
            _level(store, level), _reference(level0, level, "mean"), rtol=1e-6, atol=1e-6
        )
    assert group[level_path(1)].chunks == (features, 64, 64)  # the block's part of level 1
    [node] = list(Reader(parse_url(str(store)))())
    assert [array.shape for array in node.data] == [
        (features, 301 >> level, 555 >> level) for level in range(4)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        level2 = xr.open_zarr(str(store), group="levels/2")
    assert list(level2["c"].values) == list(xr.open_zarr(str(store))["c"].values)
    # the display windows, at the top of the group in 0.4, span level 0's values
    windows = [channel["window"] for channel in group.attrs["omero"]["channels"]]
    np.testing.assert_allclose([w["min"] for w in windows], level0.min(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose([w["max"] for w in windows], level0.max(axis=(1, 2)), rtol=1e-6)
    assert verify_store(str(store)).clean


def test_levels_keep_level_0s_checksum_setting(image, tmp_path, client):
    store = tmp_path / "none.zarr"
    run(_pipeline({"checksum": "none"}, levels=3), input=image, output=str(store), client=client)
    for path in ("features", *(level_path(n) for n in (1, 2, 3))):
        document = (store / path / "zarr.json").read_text()
        assert "crc32c" not in document, path
    default = tmp_path / "crc32c.zarr"
    run(_pipeline(levels=1), input=image, output=str(default), client=client)
    assert "crc32c" in (default / level_path(1) / "zarr.json").read_text()


def test_ngff04_verify_finds_damaged_levels_and_resume_restores_them(image, tmp_path, client):
    """Without a checksum ``verify`` finds a missing or truncated object of a level."""
    pipeline = _pipeline({"format": "ngff-0.4"}, levels=3)
    reference = tmp_path / "reference.zarr"
    run(pipeline, input=image, output=str(reference), client=client)
    store = tmp_path / "damaged.zarr"
    run(pipeline, input=image, output=str(store), client=client)
    part = store / level_path(1) / "0" / "1" / "2"  # block (1, 2)'s part of level 1
    part.write_bytes(part.read_bytes()[:20])
    (store / level_path(1) / "0" / "0" / "0").unlink()  # block (0, 0)'s part: gone
    (store / level_path(3) / "0" / "0" / "0").unlink()  # the tail's only chunk: gone

    report = verify_store(str(store))
    assert report.corrupted == ((1, 2),)
    assert report.missing == ((0, 0),)
    assert list(report.arrays) == [level_path(3)]
    assert verify_store(str(store), repair=True).unrepairable == ()
    summary = run(pipeline, input=image, output=str(store), client=client, resume=True)
    assert summary.blocks_computed == 2
    for level in range(4):
        np.testing.assert_array_equal(_level(store, level), _level(reference, level))
    assert verify_store(str(store)).clean
