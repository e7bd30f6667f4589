"""Hostile input is refused before anything large is allocated (issue #12, "Hostile world").

YAML alias bombs and deep nesting, oversized banks, weight files whose headers or zip directory
declare gigabytes or terabytes, special files (a FIFO, ``/dev/zero``), text posing as ``.npy``. Each
case runs the real command line in a process under a 1.5 GiB address-space limit (``RLIMIT_AS``)
and must exit 2 within seconds with exactly one ``featuremap: error:`` line, no traceback, and no
output store. The cases share one such process (:mod:`support.limited`, which pays the
interpreter's start-up once): a hang still fails the case and a bomb that escapes still shows as
a traceback, and either gets the next case a fresh process. An in-process test pins the pipeline-wide limits; the pieces
have their modules' tests: ``describe`` in ``test_errors.py``, the YAML budgets on legitimate
aliased files in ``pipeline/test_reader.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from support.limited import MEMORY_LIMIT, LimitedRunner, limited_runner
from support.stores import write_input

from featuremap.errors import InputError
from featuremap.pipeline.layers import MAX_LAYERS
from featuremap.pipeline.pipeline import load_pipeline
from featuremap.pipeline.reader import MAX_YAML_DEPTH, MAX_YAML_NODES

#: Generous for "within seconds" on a loaded two-core machine; a command still running then has
#: hung, and fails its case.
SECONDS = 30


@pytest.fixture(scope="module")
def limited() -> Iterator[LimitedRunner]:
    """One process under :data:`support.limited.MEMORY_LIMIT` (1.5 GiB of address space: the
    normal command fits well under it, about 150 MB resident for a small ``run``; the bombs of
    the issue need gigabytes to terabytes) that runs the module's commands in turn."""
    with limited_runner(MEMORY_LIMIT) as runner:
        yield runner


# -- hostile files -----------------------------------------------------------------------------


def alias_bomb(levels: int = 9) -> str:
    """A ~300-byte flow list whose last element expands to 9**9 (387 million) strings."""
    parts = ["&a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        previous, anchor = chr(96 + level), chr(97 + level)
        parts.append(f"&{anchor} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "[" + ", ".join(parts) + "]"


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A ``.npy`` version 1.0 header declaring ``shape`` (the data need not follow)."""
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return stream.getvalue()


#: 10**6 x 9539 x 9539 float32: 364 TB.
TERABYTES = (10**6, 1, 9539, 9539)


def write_zip_bomb(path: Path) -> int:
    """A ~4 MB ``.npz`` whose ``weight.npy`` unpacks to ~4 GiB: a .npy header declaring ~4 GiB of
    float32 zeros, deflated in independent (full-flush) 1 MiB pieces so that one piece is computed
    and repeated, then a hand-written zip directory. Returns the declared unpacked size."""
    pieces = 4095
    header = npy_header((pieces << 18,))  # float32: 4 bytes each, 1 MiB per piece
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    zeros = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    data = first + zeros * pieces + deflate.flush()
    size = len(header) + (pieces << 20)
    name = b"weight.npy"
    # CRC left 0: nothing may read that far.
    local = struct.pack(
        "<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, 0, len(data), size, len(name), 0
    )
    central = struct.pack(
        "<4s6H3L5H2L",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0x21,
        0,
        len(data),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory_at = len(local) + len(name) + len(data)
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(central) + len(name), directory_at, 0
    )
    path.write_bytes(local + name + data + central + name + end)
    return size


def _write_forged_npz(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weight.npy", npy_header(TERABYTES) + bytes(64))


def _write_forged_safetensors(path: Path) -> None:
    header = json.dumps(
        {"weight": {"dtype": "F32", "shape": list(TERABYTES), "data_offsets": [0, 16]}}
    ).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))


def _symlink(target: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        if not os.path.exists(target):
            pytest.skip(f"no {target} on this system")
        path.symlink_to(target)

    return write


def _conv(bank: str, **extra: str) -> str:
    keys = "".join(f"\n      {key}: {value}" for key, value in extra.items())
    return f"layers:\n  - conv:\n      bank: {bank}{keys}\n"


def _weights(name: str) -> str:
    return _conv(f"{{type: file, path: {name}}}")


BOMB = alias_bomb()

#: id -> (pipeline text, or a device to give as the pipeline; {weight file name: writer}; pattern
#: of the one error line)
CASES: dict[str, tuple[str, dict[str, Callable[[Path], object]], str]] = {
    # -- YAML ------------------------------------------------------------------------------------
    "alias-bomb-name": (
        f"name: {BOMB}\nlayers: [{{pool: {{type: max, kernel_size: 2}}}}]\n",
        {},
        rf"YAML document has more than {MAX_YAML_NODES} nodes, counting each alias .*\(p\.yaml\)$",
    ),
    "alias-bomb-frequencies": (
        _conv(f"{{type: gabor, frequencies: {BOMB}}}"),
        {},
        rf"more than {MAX_YAML_NODES} nodes",
    ),
    "alias-bomb-bias": (_conv("{type: box}", bias=BOMB), {}, rf"more than {MAX_YAML_NODES} nodes"),
    "alias-bomb-stride": (
        _conv("{type: box}", stride=BOMB),
        {},
        rf"more than {MAX_YAML_NODES} nodes",
    ),
    "deep-nesting": (
        "layers: " + "[" * 20000 + "]" * 20000 + "\n",
        {},
        rf"YAML nesting at line 1 is deeper than {MAX_YAML_DEPTH} levels.*\(p\.yaml\)$",
    ),
    "recursive-alias": ("layers: &a [*a]\n", {}, r"refers to a node that contains it"),
    "hex-integer": (
        _conv("{type: box, size: 0x" + "f" * 100_000 + "}"),
        {},
        r"YAML integer at line 3 has more than 100 characters",
    ),
    "two-megabytes": ("#" + "x" * (2 << 20) + "\n", {}, r"larger than 1048576 bytes"),
    # a device as the pipeline itself: read up to the limit, never to the end
    "dev-zero-pipeline": (
        "/dev/zero",
        {},
        r"pipeline file '/dev/zero' is not a regular file \(a character device\)",
    ),
    # -- banks -----------------------------------------------------------------------------------
    "gabor-size": (
        _conv("{type: gabor, size: 100001}"),
        {},
        (
            r"layers\[0\]\.conv\.bank: bank 'gabor' parameter 'size' must be an odd integer >= 1 "
            r"and <= 1025, got 100001 \(p\.yaml\)$"
        ),
    ),
    "gabor-size-4001": (_conv("{type: gabor, size: 4001}"), {}, r"'size' must be .* <= 1025"),
    "gabor-sigma": (
        _conv("{type: gabor, sigma: 1.0e+5}"),
        {},
        r"bank 'gabor' kernel size 2\*ceil\(n_stds\*sigma\)\+1 must be <= 1025, got 600001 ",
    ),
    "gabor-n-stds": (
        _conv("{type: gabor, n_stds: 1.0e+300}"),
        {},
        r"bank 'gabor' kernel size .* must be <= 1025, got about 1\.12e\+301 ",
    ),
    "gaussian-size": (
        _conv("{type: gaussian, size: 100001}"),
        {},
        r"bank 'gaussian' parameter 'size' must be an odd integer >= 1 and <= 1025",
    ),
    "random-n-size": (
        _conv("{type: random, n: 4096, size: 1025}"),
        {},
        (
            r"bank 'random' would hold 4096 x 1 x 1025 x 1025 = 4303360000 weights; "
            r"at most 16777216 \(64 MiB of float32\)"
        ),
    ),
    # -- weight files ----------------------------------------------------------------------------
    "passwd-as-npy": (
        _weights("passwd.npy"),
        {"passwd.npy": _symlink("/etc/passwd")},
        r"weight file \S+passwd\.npy is not a \.npy file \(bad magic b'",
    ),
    "dev-zero": (
        _weights("zero.npy"),
        {"zero.npy": _symlink("/dev/zero")},
        r"weight file \S+zero\.npy is not a regular file \(a character device\)",
    ),
    "fifo": (
        _weights("fifo.npy"),
        {"fifo.npy": os.mkfifo},
        r"weight file \S+fifo\.npy is not a regular file \(a FIFO\)",
    ),
    "huge-values": (
        _weights("big.npy"),
        {"big.npy": lambda p: np.save(p, np.full((1, 1, 3, 3), 1e300))},
        r"weight in \S+big\.npy contains NaN or infinite values \(or values beyond float32\)",
    ),
    "npy-364-terabytes": (
        _weights("huge.npy"),
        {"huge.npy": lambda p: p.write_bytes(npy_header(TERABYTES) + bytes(64))},
        (
            r"weight file \S+huge\.npy declares a weight of shape \(1000000, 1, 9539, 9539\) "
            r"float32, 363970084000000 bytes; featuremap reads at most 1073741824 bytes"
        ),
    ),
    "npy-7-gigabytes": (
        _weights("seven.npy"),
        {"seven.npy": lambda p: p.write_bytes(npy_header((1_750_000_000, 1, 1, 1)) + bytes(64))},
        r"declares a weight of shape \(1750000000, 1, 1, 1\) float32, 7000000000 bytes",
    ),
    "npz-member-header": (
        _weights("forged.npz"),
        {"forged.npz": _write_forged_npz},
        (
            r"weight file \S+forged\.npz \(member 'weight\.npy'\) declares a weight of shape "
            r"\(1000000, 1, 9539, 9539\)"
        ),
    ),
    "npz-zip-bomb": (
        _weights("bomb.npz"),
        {"bomb.npz": write_zip_bomb},
        (
            r"weight file \S+bomb\.npz unpacks to 4293918848 bytes \(1 member\); featuremap reads "
            r"at most 1073741824 bytes"
        ),
    ),
    "safetensors-header": (
        _weights("forged.safetensors"),
        {"forged.safetensors": _write_forged_safetensors},
        r"\(tensor 'weight'\) declares a weight of shape \(1000000, 1, 9539, 9539\) F32",
    ),
}


@pytest.fixture(scope="module")
def tiny_input(tmp_path_factory) -> str:
    """A 1 x 32 x 32 float32 Zarr array."""
    folder = tmp_path_factory.mktemp("tiny")
    data = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    return write_input(folder / "in.zarr", data)


@pytest.mark.slow
def test_the_normal_command_fits_under_the_memory_limit(limited, tmp_path, tiny_input):
    (tmp_path / "p.yaml").write_text(_conv("{type: gabor, size: 15}"))
    result = limited.run(
        "run", "p.yaml", "--input", tiny_input, "--output", "out.zarr", cwd=tmp_path
    )
    assert limited.ready["memory_limit"] == MEMORY_LIMIT
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.zarr").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_input_is_one_line_exit_2_within_seconds(limited, tmp_path, tiny_input, case):
    text, files, pattern = CASES[case]
    pipeline = text if text.startswith("/dev/") else "p.yaml"
    if pipeline == "p.yaml":
        (tmp_path / pipeline).write_text(text)
    elif not os.path.exists(pipeline):
        pytest.skip(f"no {pipeline} on this system")
    for name, write in files.items():
        write(tmp_path / name)
    result = limited.run(
        "run",
        pipeline,
        "--input",
        tiny_input,
        "--output",
        "out.zarr",
        cwd=tmp_path,
        timeout=SECONDS,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("featuremap: error: "), lines[0]
    assert "Traceback" not in result.stderr
    assert "internal error" not in lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert len(lines[0]) < 600, lines[0]
    assert result.seconds < SECONDS
    assert not (tmp_path / "out.zarr").exists()


# -- the pipeline as a whole, in process -------------------------------------------------------


def test_pipelines_are_bounded_as_a_whole(tmp_path):
    many = tmp_path / "many.yaml"
    many.write_text("layers:\n" + "  - pool: {type: max, kernel_size: 1}\n" * (MAX_LAYERS + 1))
    with pytest.raises(InputError, match=rf"at most {MAX_LAYERS} layers, got {MAX_LAYERS + 1}"):
        load_pipeline(many)
    heavy = tmp_path / "heavy.yaml"
    heavy.write_text("layers:\n" + "  - conv: {bank: {type: random, n: 1024, size: 127}}\n" * 5)
    with pytest.raises(
        InputError, match=r"layers\[4\]\.conv\.bank: the banks up to here hold \d+ weights"
    ):
        load_pipeline(heavy)
