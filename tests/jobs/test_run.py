"""``featuremap.jobs.run`` end to end on a ``LocalCluster`` of worker processes (the
``process_client`` fixture): Zarr in, Zarr out, equal to the in-memory oracle.

Each case is seeded-random weights on a chunking chosen to be awkward (halos wider than a chunk,
ragged last chunks, strides that do not divide the chunks, even kernels with "same", reflect and
circular borders, batch axes); the result must match :func:`featuremap.engine.stack.apply_stack` on the
whole array and, for single conv layers, ``torch.nn.functional.conv2d``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.stores import unmark, write_input

import featuremap
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import apply_stack
from featuremap.errors import InputError, JobError
from featuremap.io import FEATURES, open_features
from featuremap.io.sizing import OutputOptions
from featuremap.jobs.run import RunSummary, run_layers
from featuremap.jobs.state import read_status
from featuremap.pipeline.pipeline import load_pipeline

TOLERANCE = {"rtol": 2e-5, "atol": 2e-5}


def _conv(rng, j, c, k, **kwargs) -> ConvLayer:
    k = (k, k) if isinstance(k, int) else k
    return ConvLayer.create(rng.standard_normal((j, c, *k)), rng.standard_normal(j), **kwargs)


def _torch_conv(layer: ConvLayer, data: np.ndarray) -> np.ndarray:
    """The torch oracle of one conv layer (explicit pads so every padding mode is covered)."""
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(data.astype(np.float64)).reshape(
        -1, *data.shape[-3:]
    )  # torch: one batch axis
    (top, bottom), (left, right) = layer.geometry(data.shape[-2:]).padding
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    x = torch.nn.functional.pad(x, (left, right, top, bottom), mode=mode)
    out = torch.nn.functional.conv2d(
        x,
        torch.from_numpy(layer.weight.astype(np.float64)),
        torch.from_numpy(layer.bias.astype(np.float64)),
        stride=layer.stride,
        dilation=layer.dilation,
        groups=layer.groups,
    )
    return out.numpy().reshape(*data.shape[:-3], *out.shape[-3:])


# (input shape, storage chunks, out_chunks, layers) -- every case is a pitfall of chunked conv
CASES = {
    "halo wider than a chunk": (
        (2, 37, 41),
        (2, 5, 6),
        (8, 11),
        lambda r: [_conv(r, 3, 2, 9, padding="same")],
    ),
    "ragged chunks, stride 3 not dividing them": (
        (1, 50, 47),
        (1, 16, 10),
        (4, 5),
        lambda r: [_conv(r, 4, 1, 5, stride=3, padding=2)],
    ),
    "even kernel same, dilation, reflect": (
        (3, 33, 40),
        (3, 7, 9),
        (6, 7),
        lambda r: [_conv(r, 2, 3, (4, 6), padding="same", dilation=2, padding_mode="reflect")],
    ),
    "circular conv, padded max pool, replicate conv": (
        (2, 31, 29),
        (1, 8, 8),
        (5, 4),
        lambda r: [
            _conv(r, 4, 2, 5, padding=2, padding_mode="circular", activation="relu"),
            PoolLayer.create("max", 3, 2, 1),
            _conv(r, 3, 4, 3, padding=1, padding_mode="replicate", stride=2),
        ],
    ),
    "grouped conv, avg pool, reduce": (
        (4, 40, 36),
        (2, 12, 12),
        (7, 6),
        lambda r: [
            ConvLayer.create(
                r.standard_normal((6, 2, 3, 3)), groups=2, padding="same", activation="abs"
            ),
            PoolLayer.create("avg", 2),
            ReduceLayer.create("max", 3),
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_run_matches_oracle(tmp_path, process_client, case, input_store):
    shape, chunks, out_chunks, make_layers = CASES[case]
    rng = np.random.default_rng(abs(hash(case)) % 2**32)
    data = rng.standard_normal(shape).astype(np.float32)
    layers = make_layers(rng)
    summary = run_layers(
        layers,
        input=input_store(data, chunks),
        output=str(tmp_path / "out.zarr"),
        out_chunks=out_chunks,
        client=process_client,
    )
    expected = apply_stack(layers, data)
    got = open_features(str(tmp_path / "out.zarr")).data.compute()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, **TOLERANCE)
    if len(layers) == 1:
        np.testing.assert_allclose(got, _torch_conv(layers[0], data), rtol=1e-4, atol=1e-4)
    assert summary.status == "complete"
    assert summary.blocks_computed == summary.blocks_total > 1


def test_batch_axes_are_carried_through(tmp_path, process_client, input_store):
    rng = np.random.default_rng(7)
    data = rng.random((2, 3, 2, 30, 33), dtype=np.float32)  # two batch axes, channel at -3
    layer = _conv(rng, 5, 2, 3, padding=1)
    run_layers(
        [layer],
        input=input_store(data, (1, 2, 2, 16, 16)),
        output=str(tmp_path / "out.zarr"),
        out_chunks=(10, 11),
        client=process_client,
    )
    store = open_features(str(tmp_path / "out.zarr"))
    assert store.dims == ("dim_0", "dim_1", "c", "y", "x")
    # 10 x 11 blocks: every feature in the block's one chunk (a chunk per feature only from
    # 2^16 pixels a feature: tests/io/test_pyramid.py)
    assert store.array.chunks == (1, 2, 5, 10, 11)
    assert store.array.shards is None
    np.testing.assert_allclose(store.data.compute(), _torch_conv(layer, data), rtol=1e-4, atol=1e-4)


def test_uint8_input_and_default_chunks(tmp_path, process_client, input_store):
    rng = np.random.default_rng(8)
    data = rng.integers(0, 255, (70, 90), dtype=np.uint8)
    layer = _conv(rng, 3, 1, 5, padding="same")
    summary = run_layers(
        [layer],
        input=input_store(data, (32, 32)),
        output=str(tmp_path / "out.zarr"),
        client=process_client,
    )
    assert summary.blocks_total == 1  # default blocks hold >= 256 pixels per axis unless smaller
    expected = apply_stack([layer], data[None].astype(np.float32))
    np.testing.assert_allclose(
        open_features(str(tmp_path / "out.zarr")).data.compute(), expected, rtol=1e-4, atol=1e-3
    )


def _pipeline(tmp_path: Path, weight: np.ndarray, **conv) -> dict:
    np.savez(tmp_path / "w.npz", weight=weight, bias=np.arange(weight.shape[0], dtype=np.float32))
    return {
        "name": "test",
        "input": {"store": str(tmp_path / "in.zarr")},
        "output": {"store": str(tmp_path / "out.zarr"), "chunks": [9, 10]},
        "layers": [
            {"conv": {"bank": {"type": "file", "path": str(tmp_path / "w.npz")}, **conv}},
            {"pool": {"type": "max", "kernel_size": 2}},
        ],
    }


def test_run_pipeline_summary_progress_and_provenance(tmp_path, process_client, input_store):
    rng = np.random.default_rng(9)
    data = rng.random((2, 40, 44), dtype=np.float32)
    input_store(data, (2, 16, 16))
    pipeline = load_pipeline(_pipeline(tmp_path, rng.standard_normal((3, 2, 3, 3)), padding="same"))
    calls = []
    summary = featuremap.run(
        pipeline, client=process_client, progress=lambda done, total: calls.append((done, total))
    )
    assert isinstance(summary, RunSummary)
    assert set(summary.to_dict()) >= {
        "status",
        "store",
        "blocks_total",
        "blocks_computed",
        "blocks_skipped",
        "seconds",
    }
    # 20 x 22 in 9 x 10 blocks
    assert calls[0] == (0, 9)
    assert calls[-1] == (9, 9)
    assert len(calls) == 10
    store = open_features(summary.store)
    assert store.attrs["pipeline"] == pipeline.to_dict()
    assert store.attrs["pipeline_hash"] == pipeline.fingerprint()
    layers = pipeline.build_layers(2)
    np.testing.assert_allclose(store.data.compute(), apply_stack(layers, data), **TOLERANCE)


def _drop_blocks(store: Path, blocks: list[tuple[int, int]]) -> None:
    for iy, ix in blocks:
        (store / FEATURES / "c" / "0" / str(iy) / str(ix)).unlink()
    unmark(store, blocks)


def test_resume_recomputes_only_missing_blocks(tmp_path, process_client, input_store):
    rng = np.random.default_rng(10)
    data = rng.random((1, 45, 50), dtype=np.float32)
    source = input_store(data, (1, 15, 15))
    layers = [_conv(rng, 4, 1, 7, padding="same", padding_mode="reflect")]
    output = tmp_path / "out.zarr"
    first = run_layers(
        layers, input=source, output=str(output), out_chunks=(10, 12), client=process_client
    )
    before = open_features(str(output)).data.compute()
    _drop_blocks(output, [(0, 0), (4, 4), (2, 1)])
    (output / "features" / "c" / "0" / "1" / "1.1234.partial").write_bytes(b"x")  # a torn write
    assert read_status(str(output))["blocks_done"] == first.blocks_total - 3

    with pytest.raises(InputError, match=r"already exists; use overwrite=True .* or resume=True"):
        run_layers(layers, input=source, output=str(output), client=process_client)
    other = [_conv(rng, 4, 1, 7, padding="same")]
    with pytest.raises(InputError, match=r"cannot resume .* different pipeline"):
        run_layers(other, input=source, output=str(output), resume=True, client=process_client)

    summary = run_layers(
        layers, input=source, output=str(output), resume=True, client=process_client
    )
    assert (summary.blocks_computed, summary.blocks_skipped) == (3, first.blocks_total - 3)
    np.testing.assert_array_equal(open_features(str(output)).data.compute(), before)
    assert not list(output.rglob("*.partial"))
    assert read_status(str(output))["status"] == "complete"

    replaced = run_layers(
        other, input=source, output=str(output), overwrite=True, client=process_client
    )
    assert replaced.blocks_computed == replaced.blocks_total
    np.testing.assert_allclose(
        open_features(str(output)).data.compute(), apply_stack(other, data), **TOLERANCE
    )


def test_failing_block_marks_the_store_failed(tmp_path, process_client):
    rng = np.random.default_rng(14)
    source = tmp_path / "in.zarr"
    write_input(source, rng.random((40, 40), dtype=np.float32), (20, 20))
    chunk = source / "c" / "1" / "1"
    chunk.write_bytes(b"\x00garbage, not zstd")  # a real decode failure on the worker
    output = tmp_path / "out.zarr"
    with pytest.raises(JobError, match="failed after"):
        run_layers(
            [_conv(rng, 2, 1, 3, padding=1)],
            input=str(source),
            output=str(output),
            # an explicit codec: auto's sample would read the broken chunk while planning
            options=OutputOptions(chunks=(20, 20), codec="lz4"),
            client=process_client,
        )
    status = read_status(str(output))
    assert status["status"] == "failed"
    assert status["error"]
    assert status["blocks_done"] < status["blocks_total"] == 4


def _worker_pids(done: int, total: int, seen: list[set[int]]) -> None:
    """A progress callback: the process ids of the running local cluster's workers."""
    from distributed import default_client

    seen.append(set(default_client().run(os.getpid).values()))


@pytest.mark.parametrize(
    ("processes", "in_this_process"), [(False, True), (True, False)], ids=["threads", "processes"]
)
def test_local_cluster_started_and_closed(tmp_path, input_store, processes, in_this_process):
    """A local cluster told how to run runs its worker as threads of this process or as a
    process of its own; either computes the job and is closed after."""
    rng = np.random.default_rng(16)
    data = rng.random((1, 24, 24), dtype=np.float32)
    layer = _conv(rng, 2, 1, 3, padding=1)
    seen: list[set[int]] = []
    summary = run_layers(
        [layer],
        input=input_store(data, (1, 12, 12)),
        output=str(tmp_path / "out.zarr"),
        workers=1,
        out_chunks=(12, 12),
        processes=processes,
        progress=lambda done, total: _worker_pids(done, total, seen),
    )
    assert summary.blocks_computed == 4
    assert seen
    assert all(len(pids) == 1 for pids in seen)
    assert all((pids == {os.getpid()}) == in_this_process for pids in seen)
    np.testing.assert_allclose(
        open_features(str(tmp_path / "out.zarr")).data.compute(),
        _torch_conv(layer, data),
        rtol=1e-4,
        atol=1e-4,
    )


def test_processes_refused_with_a_client(tmp_path, input_store, client):
    data = np.zeros((1, 8, 8), dtype=np.float32)
    with pytest.raises(InputError, match="cannot be combined with a scheduler or client"):
        run_layers(
            [_conv(np.random.default_rng(1), 1, 1, 3)],
            input=input_store(data),
            output=str(tmp_path / "out.zarr"),
            client=client,
            processes=False,
        )
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.slow
def test_threaded_and_process_clusters_write_identical_features(tmp_path, input_store):
    """Blocks computed by concurrent threads of one process equal a worker process's bit for
    bit (BLAS single-threaded in both), so a job resumed on the other kind stays exact."""
    data = np.random.default_rng(6).random((1, 128, 128), dtype=np.float32)
    source = input_store(data, (1, 64, 64))
    pipeline = {
        "layers": [
            {
                "conv": {
                    "bank": {"type": "gabor", "orientations": 4, "frequencies": [0.1, 0.25]},
                    "padding": "same",
                }
            }
        ],
        "output": {"chunks": [1, 16, 16]},
    }
    written = {}
    for processes in (False, True):
        output = str(tmp_path / f"processes-{processes}.zarr")
        summary = featuremap.run(
            pipeline, input=source, output=output, workers=2, processes=processes
        )
        assert summary.blocks_computed == 64
        written[processes] = zarr.open_group(output, mode="r")["features"][...]  # not Dask
    np.testing.assert_array_equal(written[False], written[True])
