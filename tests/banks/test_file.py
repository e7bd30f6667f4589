"""The ``file`` bank: real weight files written to ``tmp_path``, and every way they can be wrong."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

import featuremap.banks as banks
from featuremap.errors import InputError

RNG = np.random.default_rng(11)
WEIGHT = RNG.standard_normal((4, 2, 3, 3))
BIAS = RNG.standard_normal(4)


def test_npy_weight_only(tmp_path):
    np.save(tmp_path / "w.npy", WEIGHT)
    bank = banks.get("file", path=str(tmp_path / "w.npy"))
    assert bank.weight.dtype == np.float32
    assert bank.bias is None
    np.testing.assert_array_equal(bank.weight, WEIGHT.astype(np.float32))
    assert bank.in_channels == 2
    assert [f["index"] for f in bank.filters] == [0, 1, 2, 3]


def test_npz_with_bias_relative_to_base_dir(tmp_path):
    (tmp_path / "weights").mkdir()
    np.savez(tmp_path / "weights" / "layer.npz", weight=WEIGHT, bias=BIAS)
    bank = banks.get("file", path="weights/layer.npz", base_dir=str(tmp_path))
    np.testing.assert_array_equal(bank.weight, WEIGHT.astype(np.float32))
    np.testing.assert_array_equal(bank.bias, BIAS.astype(np.float32))
    assert bank.params == {
        "path": "weights/layer.npz",
        "base_dir": str(tmp_path),
        "tensor": "weight",
        "bias_tensor": None,
    }


def test_three_dimensional_integer_weight_is_single_channel(tmp_path):
    np.savez(tmp_path / "k.npz", weight=np.arange(18, dtype=np.int16).reshape(2, 3, 3))
    bank = banks.get("file", path=tmp_path / "k.npz")
    assert bank.weight.shape == (2, 1, 3, 3)
    assert bank.weight[1, 0, 2, 2] == 17.0


def test_safetensors_named_tensors(tmp_path):
    save_file(
        {"conv1.weight": WEIGHT.astype(np.float32), "conv1.bias": BIAS.astype(np.float32)},
        str(tmp_path / "m.safetensors"),
    )
    bank = banks.get(
        "file",
        path=str(tmp_path / "m.safetensors"),
        tensor="conv1.weight",
        bias_tensor="conv1.bias",
    )
    np.testing.assert_array_equal(bank.weight, WEIGHT.astype(np.float32))
    np.testing.assert_array_equal(bank.bias, BIAS.astype(np.float32))
    no_bias = banks.get("file", path=str(tmp_path / "m.safetensors"), tensor="conv1.weight")
    assert no_bias.bias is None


def _write_pickled_npy(path):
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _write_truncated_safetensors(path):
    save_file({"weight": WEIGHT.astype(np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-7])


def _write_truncated_npy(path):
    np.save(path, WEIGHT)
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize(
    ("filename", "write", "params", "pattern"),
    [
        ("absent.npy", None, {}, r"weight file .*absent.npy does not exist"),
        (
            "w.pt",
            lambda p: p.write_bytes(b"x"),
            {},
            r"unknown extension '.pt'; use one of .npy, .npz, .safetensors",
        ),
        (
            "obj.npy",
            _write_pickled_npy,
            {},
            r"contains pickled objects; featuremap never unpickles, re-save it with numpy.save\(..., allow_pickle=False\)",
        ),
        (
            "obj.npz",
            lambda p: np.savez(p, weight=np.array([{}], dtype=object)),
            {},
            r"obj.npz contains pickled objects; featuremap never unpickles",
        ),
        ("cut.npy", _write_truncated_npy, {}, r"weight file .*cut.npy cannot be read as .npy"),
        (
            "nw.npz",
            lambda p: np.savez(p, kernel=WEIGHT),
            {},
            r"has no array 'weight' \(it holds: kernel\); set the bank's 'tensor' parameter",
        ),
        (
            "zip.npz",
            lambda p: p.write_bytes(b"PK\x03\x04broken"),
            {},
            r"zip.npz cannot be read as .npz",
        ),
        (
            "cut.safetensors",
            _write_truncated_safetensors,
            {},
            r"cut.safetensors is not a valid .safetensors file",
        ),
        (
            "nb.safetensors",
            lambda p: save_file({"weight": WEIGHT.astype(np.float32)}, str(p)),
            {"bias_tensor": "b"},
            r"has no bias array 'b' \(it holds: weight\)",
        ),
        (
            "flat.npy",
            lambda p: np.save(p, np.ones((3, 3))),
            {},
            r"weight in .*flat.npy must have shape \(J, C, kh, kw\) or \(J, kh, kw\), got \(3, 3\)",
        ),
        (
            "cplx.npy",
            lambda p: np.save(p, np.ones((1, 1, 3, 3), complex)),
            {},
            r"must be a real or integer array, got dtype complex128",
        ),
        (
            "nan.npy",
            lambda p: np.save(p, np.full((1, 1, 3, 3), np.nan)),
            {},
            r"contains NaN or infinite values",
        ),
        (
            "bias.npz",
            lambda p: np.savez(p, weight=WEIGHT, bias=np.ones(3)),
            {},
            r"bias in .*bias.npz must be a real array of shape \(4,\) to match the weight's 4 filters, got float64 \(3,\)",
        ),
        (
            "one.npy",
            lambda p: np.save(p, WEIGHT),
            {"bias_tensor": "bias"},
            r"is a .npy holding one array; bias_tensor needs a .npz or .safetensors",
        ),
    ],
)
def test_bad_files_are_one_line_input_errors(tmp_path, filename, write, params, pattern):
    path = tmp_path / filename
    if write is not None:
        write(path)
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get("file", path=str(path), **params)
    assert "\n" not in str(caught.value)
