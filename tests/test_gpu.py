"""The kernel conformance suite on CuPy arrays, the CUDA direct kernel, and GPU jobs end to end.

Every test needs a CUDA device and CuPy; without them all are skipped with "no CUDA device"
(``conftest.py``). The cases and oracles are those of ``tests/kernels/`` (``support.torch_reference``:
torch on the CPU and a float64 direct reference), so the GPU is held to the same standard as the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.torch_reference import (
    CONV_CASES,
    assert_close,
    case_arrays,
    gaussian_bank,
    reference64,
    torch_conv,
)

import featuremap
from featuremap.cluster.devices import (
    array_device,
    block_device,
    plan_devices,
    to_device,
    to_host,
)
from featuremap.engine.kernels import (
    activate,
    avg_pool_valid,
    conv2d_valid,
    max_pool_valid,
    pad,
)
from featuremap.engine.kernels.cuda import direct_conv2d, supports

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu
F = torch.nn.functional

DIRECT_CASES = [
    index
    for index, (_, _, _, kh, kw, stride, dilation, _, _, _) in enumerate(CONV_CASES)
    if supports((kh, kw), stride, dilation)
]


@pytest.fixture(scope="module")
def cp():
    import cupy

    return cupy


def _on_host(result, cp) -> np.ndarray:
    assert isinstance(result, cp.ndarray), type(result)
    return result.get()


@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_kernel_matches_torch(cp, case) -> None:
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = case_arrays(case, batch, channels, n_filters, kh, kw, groups, height, width)
    result = direct_conv2d(
        cp.asarray(x),
        cp.asarray(weight),
        cp.asarray(bias),
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    assert_close(
        _on_host(result, cp), torch_conv(x, weight, bias, stride, dilation, groups), x, weight
    )


@pytest.mark.parametrize("case", DIRECT_CASES)
def test_direct_kernel_matches_float64_reference(cp, case) -> None:
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, _ = case_arrays(
        200 + case, batch, channels, n_filters, kh, kw, groups, height, width
    )
    result = direct_conv2d(
        cp.asarray(x), cp.asarray(weight), stride=stride, dilation=dilation, groups=groups
    )
    assert_close(
        _on_host(result, cp), reference64(x, weight, None, stride, dilation, groups), x, weight
    )


def test_direct_kernel_on_a_large_grid(cp) -> None:
    """Many tiles, channel tiles and images: the grid-stride loop over blockIdx.z and 64-bit offsets."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 301, 517)).astype(np.float32)
    weight = rng.standard_normal((19, 5, 5, 5)).astype(np.float32)
    result = direct_conv2d(cp.asarray(x), cp.asarray(weight), stride=(2, 1))
    assert_close(_on_host(result, cp), torch_conv(x, weight, None, (2, 1), (1, 1), 1), x, weight)


@pytest.mark.parametrize("method", ["auto", "gemm", "fft"])
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_matches_torch_on_cupy(cp, case, method) -> None:
    batch, channels, n_filters, kh, kw, stride, dilation, groups, height, width = CONV_CASES[case]
    x, weight, bias = case_arrays(case, batch, channels, n_filters, kh, kw, groups, height, width)
    result = conv2d_valid(
        cp.asarray(x),
        cp.asarray(weight),
        cp.asarray(bias),
        stride=stride,
        dilation=dilation,
        groups=groups,
        method=method,
    )
    assert_close(
        _on_host(result, cp), torch_conv(x, weight, bias, stride, dilation, groups), x, weight
    )


@pytest.mark.parametrize("method", ["auto", "separable", "gemm", "fft"])
def test_separable_bank_on_cupy(cp, method) -> None:
    weight = gaussian_bank()
    x = np.random.default_rng(5).standard_normal((2, 1, 45, 52)).astype(np.float32)
    result = conv2d_valid(
        cp.asarray(x), cp.asarray(weight), stride=(2, 3), dilation=(1, 2), method=method
    )
    assert_close(_on_host(result, cp), torch_conv(x, weight, None, (2, 3), (1, 2), 1), x, weight)


@pytest.mark.parametrize("direct", [False, True], ids=["conv2d_valid", "direct"])
def test_nan_and_inf_propagate_like_torch_on_cupy(cp, direct) -> None:
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 30, 31)).astype(np.float32)
    x[0, 1, 4, 7] = np.nan
    x[1, 0, 20, 3] = np.inf
    weight = rng.standard_normal((5, 3, 7, 7)).astype(np.float32)
    expected = torch_conv(x, weight, None, (1, 1), (1, 1), 1)
    run = direct_conv2d if direct else conv2d_valid
    result = _on_host(run(cp.asarray(x), cp.asarray(weight)), cp)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(result), np.isposinf(expected))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_matches_torch_on_cupy(cp, mode) -> None:
    x = np.random.default_rng(11).standard_normal((2, 3, 9, 11)).astype(np.float32)
    expected = F.pad(torch.from_numpy(x), (2, 1, 3, 0), mode=mode).numpy()
    np.testing.assert_array_equal(
        _on_host(pad(cp.asarray(x), ((3, 0), (2, 1)), mode), cp), expected
    )


def test_pools_and_activations_match_torch_on_cupy(cp) -> None:
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 3, 17, 20)).astype(np.float32)
    x.reshape(-1)[::37] = np.nan
    padded_max = pad(cp.asarray(x), ((1, 1), (1, 1)), "constant", value=-np.inf)
    padded_avg = pad(cp.asarray(x), ((1, 1), (1, 1)), "zeros")
    images = torch.from_numpy(x)
    np.testing.assert_allclose(
        _on_host(max_pool_valid(padded_max, (3, 2), (2, 3)), cp),
        F.max_pool2d(images, (3, 2), (2, 3), (1, 1)).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        _on_host(avg_pool_valid(padded_avg, (3, 2), (2, 3)), cp),
        F.avg_pool2d(images, (3, 2), (2, 3), (1, 1)).numpy(),
        rtol=1e-6,
        atol=1e-6,
    )
    for name, reference in (("relu", torch.relu), ("tanh", torch.tanh), ("sigmoid", torch.sigmoid)):
        np.testing.assert_allclose(
            _on_host(activate(name, cp.asarray(x)), cp),
            reference(images).numpy(),
            rtol=2e-6,
            atol=1e-7,
        )


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_public_conv2d_on_cupy_and_dask_of_cupy(cp, padding_mode) -> None:
    import dask.array as da

    rng = np.random.default_rng(21)
    x = rng.standard_normal((2, 3, 40, 36)).astype(np.float32)
    weight = rng.standard_normal((8, 3, 5, 5)).astype(np.float32)
    expected = F.conv2d(
        F.pad(
            torch.from_numpy(x),
            (2, 2, 2, 2),
            mode={"zeros": "constant"}.get(padding_mode, padding_mode),
        ),
        torch.from_numpy(weight),
    ).numpy()
    eager = featuremap.conv2d(cp.asarray(x), weight, padding=2, padding_mode=padding_mode)
    assert_close(_on_host(eager, cp), expected, x, weight)
    lazy = featuremap.conv2d(
        da.from_array(cp.asarray(x), chunks=(1, 3, 16, 13)),
        weight,
        padding=2,
        padding_mode=padding_mode,
    )
    assert_close(_on_host(lazy.compute(scheduler="threads"), cp), expected, x, weight)


# --- volumes: 3-D convolution and pooling on CuPy -----------------------------------------------


def _torch_conv3d(x, weight, stride=1, dilation=1, groups=1):
    return F.conv3d(
        torch.from_numpy(x), torch.from_numpy(weight), None, stride, 0, dilation, groups
    ).numpy()


def _close3d(result, expected, x, weight):
    scale = np.abs(weight).sum(axis=(1, 2, 3, 4))[:, None, None, None]
    assert np.all(np.abs(result - expected) <= 1e-4 * scale * max(np.abs(x).max(), 1.0))


@pytest.mark.parametrize("method", ["auto", "gemm", "fft"])
def test_conv3d_matches_torch_on_cupy(cp, method) -> None:
    from featuremap.engine.kernels import conv3d_valid

    rng = np.random.default_rng(31)
    x = rng.standard_normal((2, 4, 11, 19, 17)).astype(np.float32)
    weight = rng.standard_normal((6, 2, 3, 5, 4)).astype(np.float32)
    result = conv3d_valid(
        cp.asarray(x),
        cp.asarray(weight),
        stride=(2, 1, 2),
        dilation=(1, 2, 1),
        groups=2,
        method=method,
    )
    expected = _torch_conv3d(x, weight, (2, 1, 2), (1, 2, 1), 2)
    _close3d(_on_host(result, cp), expected, x, weight)


def test_separable_3d_bank_on_cupy(cp) -> None:
    from featuremap import banks
    from featuremap.engine.kernels import conv3d_valid

    weight = np.array(banks.get("gaussian", ndim=3, sigmas=[1.0, [0.7, 1.5, 1.5]]).weight)
    x = np.random.default_rng(32).standard_normal((1, 1, 20, 33, 31)).astype(np.float32)
    result = conv3d_valid(cp.asarray(x), cp.asarray(weight), method="separable")
    _close3d(_on_host(result, cp), _torch_conv3d(x, weight), x, weight)


def test_public_3d_functions_on_cupy_and_dask_of_cupy(cp) -> None:
    import dask.array as da

    rng = np.random.default_rng(33)
    x = rng.standard_normal((1, 2, 12, 20, 18)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 3, 3, 3)).astype(np.float32)
    modes = {"z": "reflect", "y": "replicate", "x": "circular"}
    padded = torch.from_numpy(x)
    for axis, mode in enumerate(modes.values()):
        padded = F.pad(padded, [0, 0] * (2 - axis) + [1, 1] + [0, 0] * axis, mode=mode)
    expected = F.conv3d(padded, torch.from_numpy(weight)).numpy()
    eager = featuremap.conv3d(cp.asarray(x), weight, padding=1, padding_mode=modes)
    _close3d(_on_host(eager, cp), expected, x, weight)
    lazy = featuremap.conv3d(
        da.from_array(cp.asarray(x), chunks=(1, 2, 5, 7, 6)), weight, padding=1, padding_mode=modes
    )
    _close3d(_on_host(lazy.compute(scheduler="threads"), cp), expected, x, weight)
    pooled = featuremap.max_pool3d(cp.asarray(x), (2, 3, 2), 2, 1, ceil_mode=True)
    np.testing.assert_allclose(
        _on_host(pooled, cp),
        F.max_pool3d(torch.from_numpy(x), (2, 3, 2), 2, 1, ceil_mode=True).numpy(),
        rtol=1e-6,
    )
    averaged = featuremap.avg_pool3d(cp.asarray(x), 3, 2, 1, count_include_pad=False)
    np.testing.assert_allclose(
        _on_host(averaged, cp),
        F.avg_pool3d(torch.from_numpy(x), 3, 2, 1, count_include_pad=False).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize("ndim", [2, 3])
def test_pixel_features_on_cupy_equal_numpy(cp, ndim) -> None:
    """The features layer's stack (separable convs, pointwise program, eigenvalues) on CuPy."""
    rng = np.random.default_rng(41)
    shape = (60, 70) if ndim == 2 else (16, 30, 28)
    x = rng.random(shape, dtype=np.float32)
    sigmas = [0.7, 2.0] if ndim == 2 else [[0.5, 1.0, 1.0], 1.6]
    expected = featuremap.pixel_features(x, sigmas, ndim=ndim)
    result = _on_host(featuremap.pixel_features(cp.asarray(x), sigmas, ndim=ndim), cp)
    scale = np.abs(expected).max(axis=tuple(range(1, expected.ndim)), keepdims=True)
    assert np.all(np.abs(result - expected) <= 1e-5 * np.maximum(scale, 1e-12))


def test_blocks_move_to_the_gpu_and_back(cp) -> None:
    block = np.arange(12, dtype=np.float32).reshape(3, 4)
    on_gpu = to_device(block, "gpu")
    assert isinstance(on_gpu, cp.ndarray)
    assert array_device(on_gpu) == "gpu"
    np.testing.assert_array_equal(to_host(on_gpu), block)
    assert block_device("auto") == "gpu"
    assert block_device("gpu") == "gpu"
    assert block_device("cpu") == "cpu"


@pytest.mark.cluster
def test_gpu_job_matches_cpu_job_and_records_devices(tmp_path) -> None:
    """A pipeline run on a GPU worker equals the CPU run; provenance counts the GPU blocks."""
    import zarr
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(31)
    zarr.create_array(
        tmp_path / "in.zarr",
        data=rng.standard_normal((2, 3, 96, 80)).astype(np.float32),
        chunks=(1, 3, 32, 32),
    )
    np.save(tmp_path / "w.npy", rng.standard_normal((6, 3, 5, 5)).astype(np.float32))
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        assert plan_devices(client, "auto").gpu_workers == tuple(client.scheduler_info()["workers"])
        outputs = {}
        for device in ("cpu", "gpu"):
            pipeline = featuremap.load_pipeline(
                {
                    "name": "gpu-check",
                    "input": {"store": str(tmp_path / "in.zarr")},
                    "output": {"store": str(tmp_path / f"{device}.zarr")},
                    "layers": [
                        {
                            "conv": {
                                "bank": {"type": "file", "path": str(tmp_path / "w.npy")},
                                "padding": "same",
                                "padding_mode": "reflect",
                            }
                        },
                        {"pool": {"type": "max", "kernel_size": 2}},
                    ],
                }
            )
            summary = featuremap.run(pipeline, client=client, device=device)
            store = featuremap.open(summary.store)
            assert store.attrs["blocks_per_device"] == {device: summary.blocks_total}
            outputs[device] = store.data.compute()
    np.testing.assert_allclose(outputs["gpu"], outputs["cpu"], rtol=1e-5, atol=1e-4)
