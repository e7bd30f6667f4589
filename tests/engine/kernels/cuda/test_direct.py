"""The CUDA sources compile (nvcc, NVRTC) and the direct kernel computes conv2d exactly.

No GPU is needed: besides compiling to PTX, the direct kernel's ``.cu`` source is compiled for
the host with an emulated CUDA block -- one OS thread per CUDA thread, ``__syncthreads`` as a
``std::barrier`` -- under AddressSanitizer (out-of-bounds global or shared-memory accesses abort)
and run with the launch that :func:`featuremap.engine.kernels.cuda.plan_launch` plans. Its outputs are
compared with ``torch.nn.functional.conv2d`` in float64.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.gpu import cuda_device_available

from featuremap.engine.kernels.cuda import cuda_sources, plan_launch, supports
from featuremap.engine.kernels.cuda.direct import KERNEL_NAME, SOURCE
from featuremap.errors import InputError

NVCC = shutil.which("nvcc")
GXX = shutil.which("g++")

# The emulated launch: every CUDA thread of a block is an OS thread; all of them walk the grid's
# blocks in the same order and meet at a barrier after each block, as a real block ends.
EMULATOR = r"""
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

struct Dim3 { unsigned x, y, z; };
static thread_local Dim3 threadIdx, blockIdx;
static Dim3 blockDim, gridDim;
static std::barrier<>* block_barrier;
static float* emulated_shared;

#define __global__
#define __syncthreads() block_barrier->arrive_and_wait()
#define DYNAMIC_SHARED_FLOATS(name) float* name = emulated_shared

#include "SOURCE_PATH"

static std::vector<float> read_floats(const char* dir, const char* name, size_t count) {
    std::vector<float> data(count);
    std::string path = std::string(dir) + "/" + name;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f || std::fread(data.data(), sizeof(float), count, f) != count) { std::perror(name); std::exit(3); }
    std::fclose(f);
    return data;
}

int main(int argc, char** argv) {
    if (argc != 22) { std::fprintf(stderr, "usage: emulator DIR 20 ints\n"); return 2; }
    int a[20];
    for (int i = 0; i < 20; ++i) a[i] = std::atoi(argv[i + 2]);
    const int N = a[0], C = a[1], H = a[2], W = a[3], J = a[4], KH = a[5], KW = a[6], HO = a[7], WO = a[8];
    const int SY = a[9], SX = a[10], DY = a[11], DX = a[12], groups = a[13];
    gridDim = {unsigned(a[14]), unsigned(a[15]), unsigned(a[16])};
    blockDim = {unsigned(a[17]), unsigned(a[18]), 1};
    const int shared_bytes = a[19];

    std::vector<float> x = read_floats(argv[1], "x.bin", size_t(N) * C * H * W);
    std::vector<float> w = read_floats(argv[1], "w.bin", size_t(J) * (C / groups) * KH * KW);
    std::vector<float> b = read_floats(argv[1], "b.bin", size_t(J));
    std::vector<float> out(size_t(N) * J * HO * WO, std::nanf("0x7e57"));  // unwritten outputs stay NaN
    std::vector<float> shared(shared_bytes / sizeof(float));  // exact size: ASan catches overruns
    emulated_shared = shared.data();
    std::barrier<> barrier(blockDim.x * blockDim.y);
    block_barrier = &barrier;

    std::vector<std::thread> threads;
    for (unsigned ty = 0; ty < blockDim.y; ++ty) {
        for (unsigned tx = 0; tx < blockDim.x; ++tx) {
            threads.emplace_back([&, tx, ty] {
                threadIdx = {tx, ty, 0};
                for (unsigned bz = 0; bz < gridDim.z; ++bz)
                    for (unsigned by = 0; by < gridDim.y; ++by)
                        for (unsigned bx = 0; bx < gridDim.x; ++bx) {
                            blockIdx = {bx, by, bz};
                            KERNEL_NAME(x.data(), w.data(), b.data(), out.data(), N, C, H, W, J, KH, KW,
                                        HO, WO, SY, SX, DY, DX, groups);
                            block_barrier->arrive_and_wait();
                        }
            });
        }
    }
    for (auto& t : threads) t.join();
    std::string path = std::string(argv[1]) + "/out.bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(out.data(), sizeof(float), out.size(), f);
    std::fclose(f);
    return 0;
}
"""


def _check_output(command: list, timeout: float = 120) -> str:
    """Run ``command``; on failure, fail the test with its stderr (a compiler's diagnostics)."""
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{command[0]} exited {result.returncode}:\n{result.stderr[-4000:]}"
    )
    return result.stderr


@pytest.mark.parametrize("source", cuda_sources(), ids=lambda p: p.name)
def test_source_compiles_to_ptx(source: Path, tmp_path: Path) -> None:
    if NVCC is None:
        pytest.skip("nvcc not found on PATH")
    ptx = tmp_path / "kernel.ptx"
    _check_output([NVCC, "--ptx", "-Werror", "all-warnings", "-o", ptx, source])
    assert ".visible .entry" in ptx.read_text()


def test_direct_kernel_keeps_accumulators_in_registers(tmp_path: Path) -> None:
    """A spill to local memory (e.g. ``acc[]`` indexed at run time) would cost a large factor."""
    if NVCC is None:
        pytest.skip("nvcc not found on PATH")
    report = _check_output(
        [NVCC, "--cubin", "-arch=sm_80", "-Xptxas", "-v", "-o", tmp_path / "kernel.cubin", SOURCE]
    )
    assert "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" in report, report


@pytest.mark.parametrize("source", cuda_sources(), ids=lambda p: p.name)
def test_source_compiles_with_nvrtc(source: Path) -> None:
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    if not cuda_device_available():
        pytest.skip("no CUDA device (NVRTC compiles for the current device)")
    module = cupy.RawModule(code=source.read_text(), options=("--std=c++14",))
    module.compile()
    assert module.get_function(KERNEL_NAME) is not None


def test_plan_launch_covers_the_output_with_tiles() -> None:
    plan = plan_launch((3, 4, 70, 41), (18, 2, 5, 3), stride=(2, 1), dilation=(1, 2), groups=2)
    assert plan.out_shape == (3, 18, 33, 37)
    # 16 x 16 tiles over 37 x 33 outputs; z = images x groups x ceil(9 filters / 8)
    assert plan.grid == (3, 3, 3 * 2 * 2)
    assert plan.block == (16, 16, 1)
    assert plan.shared_bytes == ((15 * 2 + 5) * (15 * 1 + 2 * 2 + 1) + 8 * 15) * 4


@pytest.mark.parametrize(
    ("x_shape", "weight_shape", "groups", "message"),
    [
        ((1, 3, 20, 20), (4, 2, 3, 3), 1, r"does not fit an input of 3 channels"),
        ((1, 4, 20, 20), (3, 2, 3, 3), 2, r"J divisible by groups"),
        ((1, 1, 4, 20), (2, 1, 5, 5), 1, r"input 4x20 is smaller than the dilated kernel 5x5"),
    ],
)
def test_plan_launch_refuses_impossible_shapes(x_shape, weight_shape, groups, message) -> None:
    with pytest.raises(InputError, match=message):
        plan_launch(x_shape, weight_shape, stride=(1, 1), dilation=(1, 1), groups=groups)


def test_supports_small_kernels_whose_tile_fits_shared_memory() -> None:
    assert supports((3, 3), (1, 1), (1, 1))
    assert supports((7, 7), (2, 2), (2, 2))
    assert not supports((9, 9), (1, 1), (1, 1))  # GEMM/FFT territory
    assert not supports((7, 7), (8, 8), (8, 8))  # (15*8 + 6*8 + 1)^2 floats > 48 KiB
    with pytest.raises(InputError, match=r"needs \d+ bytes of shared memory"):
        plan_launch((1, 1, 400, 400), (1, 1, 7, 7), stride=(8, 8), dilation=(8, 8), groups=1)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if GXX is None:
        pytest.skip("g++ not found on PATH")
    folder = tmp_path_factory.mktemp("emulator")
    harness = folder / "emulator.cpp"
    harness.write_text(
        EMULATOR.replace("SOURCE_PATH", str(SOURCE)).replace("KERNEL_NAME", KERNEL_NAME)
    )
    binary = folder / "emulator"
    _check_output(
        [
            GXX,
            "-std=c++20",
            "-O1",
            "-g",
            "-pthread",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wno-unknown-pragmas",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-o",
            binary,
            harness,
        ]
    )
    return binary


def _emulate(
    binary: Path, folder: Path, x, weight, bias, stride, dilation, groups, grid_z=None
) -> np.ndarray:
    plan = plan_launch(x.shape, weight.shape, stride=stride, dilation=dilation, groups=groups)
    for name, array in (("x", x), ("w", weight), ("b", bias)):
        np.ascontiguousarray(array, dtype=np.float32).tofile(folder / f"{name}.bin")
    grid = (*plan.grid[:2], grid_z or plan.grid[2])
    extents = (
        *x.shape,
        weight.shape[0],
        *weight.shape[2:],
        *plan.out_shape[2:],
        *stride,
        *dilation,
        groups,
    )
    arguments = (*extents, *grid, *plan.block[:2], plan.shared_bytes)
    _check_output([binary, folder, *arguments])
    return np.fromfile(folder / "out.bin", dtype=np.float32).reshape(plan.out_shape)


# (N, C, H, W, J, (kh, kw), stride, dilation, groups, grid_z override)
CASES = {
    "3x3": (1, 1, 20, 21, 3, (3, 3), (1, 1), (1, 1), 1, None),
    "5x5-stride2-J10": (2, 3, 37, 35, 10, (5, 5), (2, 2), (1, 1), 1, None),
    "3x3-dilation2-groups2": (1, 4, 30, 33, 6, (3, 3), (1, 1), (2, 2), 2, None),
    "7x3-anisotropic": (1, 2, 19, 40, 9, (7, 3), (1, 3), (1, 2), 1, None),
    "7x7-depthwise": (2, 4, 22, 18, 8, (7, 7), (1, 1), (1, 1), 4, None),
    "grid-stride-z": (3, 2, 17, 17, 12, (3, 3), (1, 1), (1, 1), 1, 2),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_emulated_direct_kernel_matches_torch(emulator: Path, tmp_path: Path, case) -> None:
    torch = pytest.importorskip("torch")
    n, c, h, w, j, kernel, stride, dilation, groups, grid_z = case
    rng = np.random.default_rng(sum(map(ord, str(case))))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((j, c // groups, *kernel)).astype(np.float32)
    bias = rng.standard_normal(j).astype(np.float32)
    got = _emulate(emulator, tmp_path, x, weight, bias, stride, dilation, groups, grid_z)
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(),
        torch.from_numpy(weight).double(),
        torch.from_numpy(bias).double(),
        stride=stride,
        dilation=dilation,
        groups=groups,
    ).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_emulated_direct_kernel_propagates_nan(emulator: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 24, 24)).astype(np.float32)
    x[0, 1, 5, 17] = np.nan
    weight = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    bias = np.zeros(3, np.float32)
    got = _emulate(emulator, tmp_path, x, weight, bias, (1, 1), (1, 1), 1)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight)).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).sum() == 3 * 9
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
