"""The float32 -> float16 cast (``featuremap.engine.cast``): bit-identical to NumPy's ``astype``
on every class of float32 value, through numba when it is installed and NumPy when it is not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featuremap.engine import cast

F16_MAX = float(np.finfo(np.float16).max)  # 65504
F16_TINY = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24


def _every_class() -> np.ndarray:
    """Values of every float32 class, each with its sign flipped too, tiled past the size from
    which the compiled cast runs."""
    f32 = np.finfo(np.float32)
    special = [
        0.0,
        np.inf,
        np.nan,
        1.0,
        np.pi,
        1e-3,
        123.456,
        # float16 normals' bounds, and what rounds to float16's max or overflows to inf
        float(np.finfo(np.float16).smallest_normal),
        F16_MAX,
        65519.99,  # rounds down to 65504
        65520.0,  # the tie above 65504 rounds to even: inf
        65536.0,
        1e6,
        float(f32.max),
        # float16 subnormals, and values below half the smallest (-> 0) and at it (tie -> 0)
        F16_TINY,
        3 * F16_TINY,
        F16_TINY / 2,
        F16_TINY * 0.51,
        F16_TINY / 4,
        # float32 subnormals (all flush to float16 zero)
        float(f32.smallest_subnormal),
        float(f32.smallest_normal) / 3,
        # round-half-to-even ties: 1 + 2**-11 is halfway between 1 and 1 + 2**-10 (-> 1), and
        # 1 + 3 * 2**-11 between 1 + 2**-10 and 1 + 2**-9 (-> 1 + 2**-9)
        1 + 2.0**-11,
        1 + 3 * 2.0**-11,
        2048 + 1.0,
        2048 + 3.0,
    ]
    values = np.array(special, dtype=np.float32)
    values = np.concatenate([values, -values])
    rng = np.random.default_rng(0)
    # random bit patterns cover every class (NaNs with payloads, subnormals, huge values)
    bits = rng.integers(0, 2**32, size=1 << 16, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([np.tile(values, 100), bits.view(np.float32)])


def _assert_same_as_numpy(result: np.ndarray, values: np.ndarray) -> None:
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    assert result.dtype == np.float16
    assert result.shape == values.shape
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(result), nan)  # NaN stays NaN (payload may differ)
    np.testing.assert_array_equal(result.view(np.uint16)[~nan], expected.view(np.uint16)[~nan])


@pytest.mark.skipif(not cast.fast_float16_available(), reason="numba not installed")
def test_compiled_cast_equals_numpy_on_every_float32_class():
    values = _every_class()
    assert values.size >= cast._MIN_FAST_VALUES  # the compiled path runs
    result = cast.to_float16(values)
    _assert_same_as_numpy(result, values)
    # the classes the cases above are meant to reach are reached
    assert np.isposinf(result).any()
    assert np.isneginf(result).any()
    assert (np.abs(result) == F16_MAX).any()
    assert ((result != 0) & (np.abs(result) < np.finfo(np.float16).smallest_normal)).any()
    assert (np.signbit(result) & (result == 0)).any()


@pytest.mark.skipif(not cast.fast_float16_available(), reason="numba not installed")
def test_compiled_cast_keeps_shape_and_takes_strided_blocks():
    values = _every_class()[: 6 * 64 * 64].reshape(6, 64, 64)
    strided = values[:, ::2, 1::2]  # not contiguous
    _assert_same_as_numpy(cast.to_float16(values), values)
    _assert_same_as_numpy(cast.to_float16(strided), strided)


def test_cast_to_keeps_float32_and_converts_to_float16():
    values = _every_class()
    assert cast.cast_to(values, "float32") is values
    _assert_same_as_numpy(cast.cast_to(values, "float16"), values)
    small = values[:10]  # below the compiled cast's size: NumPy's
    _assert_same_as_numpy(cast.cast_to(small, np.float16), small)


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


_PROBE = (
    "import numpy as np; from featuremap.engine import cast; "
    "v = np.linspace(-7e4, 7e4, 10000, dtype=np.float32); "
    "assert np.array_equal(cast.to_float16(v).view('u2'), v.astype('f2').view('u2')); "
    "print(cast.fast_float16_available())"
)


@pytest.mark.slow
def test_numpy_fallback_without_numba(tmp_path):
    """With numba unimportable the cast still runs, through NumPy."""
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text("raise ImportError('no numba here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = _python(_PROBE, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.skipif(not cast.fast_float16_available(), reason="numba not installed")
def test_compiled_cast_without_a_writable_cache(tmp_path):
    """A worker whose install and cache directories cannot be written still compiles the cast
    (numba refuses ``cache=True`` then). Directories under a regular file cannot be created,
    even by root, for whom permissions would not stop a write."""
    install = tmp_path / "install"
    install.mkdir()
    compiled = Path(cast.__file__).with_name("_float16_numba.py")
    (install / "fm_float16.py").write_text(compiled.read_text())
    (install / "__pycache__").write_text("")  # numba's in-tree cache cannot be made
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "XDG_CACHE_HOME": str(blocker / "cache"),
        "HOME": str(blocker),
        "PYTHONPATH": os.pathsep.join([str(install), *sys.path]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    probe = (
        "import numpy as np; from fm_float16 import half_bits_into; "
        "v = np.linspace(-7e4, 7e4, 10000, dtype=np.float32); o = np.empty(v.size, 'u2'); "
        "half_bits_into(v, o); assert np.array_equal(o, v.astype('f2').view('u2')); "
        "print(half_bits_into.stats.cache_path)"
    )
    done = _python(probe, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"  # compiled, not cached


def test_widening_float16_to_float32_is_exact():
    """Every float16 bit pattern widens as NumPy widens it (NaN to a NaN)."""
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    result = cast.to_float32(halves)
    expected = halves.astype(np.float32)
    assert result.dtype == np.float32
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(result), nan)
    np.testing.assert_array_equal(result.view(np.uint32)[~nan], expected.view(np.uint32)[~nan])
    values = np.ones(8, dtype=np.float32)
    assert cast.to_float32(values) is values  # float32 stays as it is


@pytest.mark.skipif(not cast.fast_float16_available(), reason="numba not installed")
@pytest.mark.parametrize("length", [4096, 4099, 70_001])  # whole lanes, a tail, many lanes
def test_compiled_float16_row_sums_equal_a_float64_reference(length):
    """One compiled pass over float16 rows (every finite bit pattern among them, subnormals
    and the largest values too): float64 sums about each row's shift, minimum, maximum; a row
    with inf or NaN has sums that are not finite."""
    rng = np.random.default_rng(length)
    finite = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = finite[np.isfinite(finite)]
    rows = rng.choice(finite, size=(5, length))
    rows[3, length // 2] = np.inf
    rows[4, 7] = np.nan
    shift = rows[:, 0].astype(np.float64)
    sums = cast.float16_row_sums(rows, shift)
    assert sums is not None
    assert sums.shape == (4, 5)
    wide = rows[:3].astype(np.float64) - shift[:3, None]
    np.testing.assert_allclose(sums[0, :3], wide.sum(axis=1), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(sums[1, :3], (wide * wide).sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(sums[2, :3], rows[:3].min(axis=1).astype(np.float64))
    np.testing.assert_array_equal(sums[3, :3], rows[:3].max(axis=1).astype(np.float64))
    assert not np.isfinite(sums[:2, 3:]).all(axis=0).any()  # each of rows 3 and 4 flagged


def test_float16_row_sums_leave_small_blocks_to_numpy():
    rows = np.ones((2, 8), dtype=np.float16)
    assert cast.float16_row_sums(rows, np.ones(2)) is None
