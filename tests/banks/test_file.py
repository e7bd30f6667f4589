"""The ``file`` bank: real weight files written to ``tmp_path``, and every way they can be wrong."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile

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
    # issue 23: tensor X.weight without bias_tensor used to drop X.bias silently
    sibling = banks.get("file", path=str(tmp_path / "m.safetensors"), tensor="conv1.weight")
    np.testing.assert_array_equal(sibling.bias, BIAS.astype(np.float32))


def test_the_bias_beside_a_named_weight_is_its_own(tmp_path):
    other = np.arange(4.0) + 10
    np.savez(
        tmp_path / "s.npz",
        **{"conv1.weight": WEIGHT, "conv1.bias": other, "conv2.weight": WEIGHT, "conv2.bias": BIAS},
    )
    bank = banks.get("file", path=tmp_path / "s.npz", tensor="conv2.weight")
    np.testing.assert_array_equal(bank.bias, BIAS.astype(np.float32))
    np.savez(tmp_path / "t.npz", filters=WEIGHT, bias=BIAS)  # no sibling: the file's 'bias'
    np.testing.assert_array_equal(
        banks.get("file", path=tmp_path / "t.npz", tensor="filters").bias, BIAS.astype(np.float32)
    )
    np.savez(tmp_path / "u.npz", **{"conv1.weight": WEIGHT})  # no bias at all: none
    assert banks.get("file", path=tmp_path / "u.npz", tensor="conv1.weight").bias is None


def test_five_dimensional_weights_are_3d_filters(tmp_path):
    volume_weight = RNG.standard_normal((3, 2, 1, 3, 5))
    np.save(tmp_path / "v.npy", volume_weight)
    np.savez(tmp_path / "v.npz", weight=volume_weight, bias=BIAS[:3])
    save_file({"weight": volume_weight.astype(np.float32)}, str(tmp_path / "v.safetensors"))
    for name in ("v.npy", "v.npz", "v.safetensors"):
        bank = banks.get("file", path=tmp_path / name)
        assert bank.ndim == 3
        assert bank.kernel_size == (1, 3, 5)
        assert bank.in_channels == 2
        np.testing.assert_array_equal(bank.weight, volume_weight.astype(np.float32))
    assert banks.get("file", path=tmp_path / "v.npz").bias.shape == (3,)
    assert banks.get("file", path=tmp_path / "v.npz").for_channels(2).weight.shape == (
        3,
        2,
        1,
        3,
        5,
    )
    np.save(tmp_path / "six.npy", np.ones((1, 1, 1, 1, 1, 1)))
    with pytest.raises(InputError, match=r"or, for 3-D filters, \(J, C, kz, ky, kx\), got \(1, 1"):
        banks.get("file", path=tmp_path / "six.npy")


def test_a_large_5d_weight_is_refused_from_its_header(tmp_path):
    header = tmp_path / "big.npy"
    with header.open("wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": "<f4", "fortran_order": False, "shape": (64, 1, 65, 65, 65)}
        )
    with pytest.raises(
        InputError, match=r"from .*big.npy would hold 64 x 1 x 65 x 65 x 65 = 17576000 weights"
    ):
        banks.get("file", path=header)


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
            (
                r"weight in .*flat.npy must have shape \(J, C, kh, kw\), \(J, kh, kw\) or, for "
                r"3-D filters, \(J, C, kz, ky, kx\), got \(3, 3\)"
            ),
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


# -- checked before reading: file kind, format, declared sizes (issue #12) ---------------------

PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def _npy_header(shape, descr="<f4"):
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return stream.getvalue()


def _safetensors(path, entries, data=b""):
    header = json.dumps(entries).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _many_members(count):
    def write(path):
        with zipfile.ZipFile(path, "w") as archive:
            for index in range(count):
                archive.writestr(f"a{index}.npy", b"")

    return write


@pytest.mark.parametrize(
    ("filename", "write", "params", "pattern"),
    [
        (
            "passwd.npy",
            lambda p: p.write_text(PASSWD),
            {},
            (
                r"weight file \S+passwd\.npy is not a \.npy file \(bad magic b'root:x', "
                r"expected b'\\x93NUMPY'\)$"
            ),
        ),
        (
            "passwd.npz",
            lambda p: p.write_text(PASSWD),
            {},
            r"passwd\.npz is not a \.npz file \(bad magic b'root'; a \.npz is a zip archive",
        ),
        (
            "passwd.safetensors",
            lambda p: p.write_text(PASSWD),
            {},
            (
                r"passwd\.safetensors is not a valid \.safetensors file \(its first 8 bytes "
                r"b'root:x:0' declare a \d+-byte header"
            ),
        ),
        ("fifo.npy", os.mkfifo, {}, r"fifo\.npy is not a regular file \(a FIFO\); give a \.npy"),
        ("dir.npz", lambda p: p.mkdir(), {}, r"dir\.npz is not a regular file \(a directory\)"),
        (
            "huge.npy",
            lambda p: p.write_bytes(_npy_header((10**6, 1, 9539, 9539)) + bytes(64)),
            {},
            (
                r"huge\.npy declares a weight of shape \(1000000, 1, 9539, 9539\) float32, "
                r"363970084000000 bytes; featuremap reads at most 1073741824 bytes \(1 GiB\)"
            ),
        ),
        (
            "many.npy",
            lambda p: p.write_bytes(_npy_header((70_000, 1, 1, 1)) + bytes(280_000)),
            {},
            r"bank 'file' from \S+many\.npy would have 70000 filters",
        ),
        (
            "long.npy",
            lambda p: p.write_bytes(_npy_header((4, 1, 3, 3)) + bytes(100)),
            {},
            (
                r"long\.npy cannot be read as \.npy \(truncated: its header declares 272 bytes, "
                r"the file has 228\)"
            ),
        ),
        (
            "raw.npz",
            lambda p: zipfile.ZipFile(p, "w").writestr("weight.npy", PASSWD),
            {},
            r"raw\.npz \(member 'weight\.npy'\) is not a \.npy array \(bad magic b'root:x'\)",
        ),
        (
            "huge.npz",
            lambda p: zipfile.ZipFile(p, "w").writestr(
                "weight.npy", _npy_header((10**6, 1, 9539, 9539))
            ),
            {},
            r"huge\.npz \(member 'weight\.npy'\) declares a weight of shape",
        ),
        (
            "bigbias.npz",
            lambda p: np.savez(p, weight=WEIGHT, bias=np.zeros(70_000)),
            {},
            r"bias in \S+bigbias\.npz \(member 'bias\.npy'\) must have at most 65536 values",
        ),
        ("members.npz", _many_members(4097), {}, r"has 4097 members in a \d+-byte zip directory"),
        (
            "names.npz",
            lambda p: np.savez(p, **{f"array{i}": np.zeros(1) for i in range(50)}),
            {},
            (
                r"has no array 'weight' \(it holds: array0, array1, .*, array9, \.\.\. \(50 in "
                r"all\)\); set the bank's 'tensor'"
            ),
        ),
        (
            "huge.safetensors",
            lambda p: _safetensors(
                p,
                {"weight": {"dtype": "F32", "shape": [10**6, 9539, 9539], "data_offsets": [0, 4]}},
                bytes(4),
            ),
            {},
            (
                r"huge\.safetensors \(tensor 'weight'\) declares a weight of shape "
                r"\(1000000, 9539, 9539\) F32, 363970084000000 bytes"
            ),
        ),
        (
            "offsets.safetensors",
            lambda p: _safetensors(
                p, {"weight": {"dtype": "F32", "shape": [1, 3, 3], "data_offsets": [0, 36]}}
            ),
            {},
            (
                r"is not a valid \.safetensors file \('weight': data_offsets \[0, 36\], the data "
                r"has 0 bytes\)"
            ),
        ),
        (
            "bool.safetensors",
            lambda p: _safetensors(
                p, {"weight": {"dtype": "BOOL", "shape": [1, 1, 1], "data_offsets": [0, 1]}}, b"1"
            ),
            {},
            r"weight in \S+ must be a real or integer array, got dtype 'BOOL'",
        ),
    ],
)
def test_files_are_checked_before_they_are_read(tmp_path, filename, write, params, pattern):
    path = tmp_path / filename
    write(path)
    with pytest.raises(InputError, match=pattern) as caught:
        banks.get("file", path=str(path), **params)
    assert "\n" not in str(caught.value)
    assert len(str(caught.value)) < 300 + len(str(path))


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_values_beyond_float32_are_refused_without_a_warning(tmp_path, name):
    arrays = {"weight": WEIGHT, "bias": BIAS}
    arrays[name] = np.full_like(arrays[name], 1e300)
    np.savez(tmp_path / "big.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=rf"{name} in \S+ contains NaN or infinite values"):
            banks.get("file", path=str(tmp_path / "big.npz"))
