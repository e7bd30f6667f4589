"""The ``file`` bank: weights (and an optional bias) read from a ``.npy``, ``.npz`` or ``.safetensors``.

* ``.npy``: the weight only. Read with ``allow_pickle=False``: object (pickled) arrays are refused.
* ``.npz``: arrays ``tensor`` (default ``weight``) and, optionally, ``bias_tensor`` (default:
  the ``tensor``'s PyTorch sibling when present -- ``conv1.bias`` beside ``conv1.weight`` -- else
  ``bias`` when present, as DESIGN.md's ``weight`` / optional ``bias`` convention reads).
* ``.safetensors``: tensors ``tensor`` and ``bias_tensor`` the same way (needs ``safetensors``).

The weight is ``(J, C, kh, kw)`` or ``(J, kh, kw)`` (then ``C = 1``) for 2-D filters, or
``(J, C, kz, ky, kx)`` for 3-D filters (a ``conv3d`` weight), real or integer, finite; it becomes
float32. The bias is ``(J,)``. Every failure is a one-line :class:`InputError` naming the file.

Nothing is read before it is checked: the path must be a regular file (not a FIFO, a device such
as ``/dev/zero`` or a directory) of the declared format (``.npy`` magic, zip signature); the
``.npy`` headers (of the file or of each ``.npz`` member read), the ``.npz`` zip directory (member
count, declared sizes unpacked) and the ``.safetensors`` JSON header (dtype, shape, offsets) must
declare numeric arrays within :data:`MAX_FILE_BYTES` (1 GiB) and the bank limits
(:mod:`featuremap.banks._params`: at most 65536 filters and 2**24 weights).
"""

from __future__ import annotations

import json
import math
import os
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from featuremap._files import file_kind
from featuremap.banks._params import MAX_FILTERS, check_weight_shape, optional, text
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.errors import InputError, describe

__all__ = ["MAX_FILE_BYTES", "load_weights", "resolve_path"]

DEFAULT_BIAS_NAME = "bias"
#: The weight shapes a file may hold, for messages.
WEIGHT_SHAPES = "(J, C, kh, kw), (J, kh, kw) or, for 3-D filters, (J, C, kz, ky, kx)"
EXTENSIONS = (".npy", ".npz", ".safetensors")

#: The most bytes featuremap reads from a weight file: what one array declares, and what all the
#: members of a ``.npz`` unpack to. Checked from the headers and the zip directory, before reading.
MAX_FILE_BYTES = 1 << 30
#: The most members of a ``.npz`` (from its end-of-directory record, before the directory is read).
MAX_NPZ_MEMBERS = 4096
#: The largest zip central directory of a ``.npz``, in bytes.
MAX_ZIP_DIRECTORY_BYTES = 16 << 20
#: The largest JSON header of a ``.safetensors`` file, in bytes.
MAX_SAFETENSORS_HEADER_BYTES = 16 << 20

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_END = b"PK\x05\x06"
_ZIP_END_SIZE = 22
#: Bytes per element of the ``.safetensors`` dtypes.
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip

#: One array a weight file holds: ``"weight"`` (the filters) or ``"bias"``.
Role = Literal["weight", "bias"]
Arrays = tuple[np.ndarray, np.ndarray | None]


def _parse_path(value: Any, where: str) -> str:
    if value is None:
        raise InputError(f"{where} is required: the weight file (.npy, .npz or .safetensors)")
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise InputError(f"{where} must be a file path (string), got {describe(value)}")
    return os.fspath(value)


def resolve_path(path: str, base_dir: str | None) -> Path:
    """``path`` if absolute, else relative to ``base_dir`` (or the working directory)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or base_dir is None:
        return candidate
    return Path(base_dir).expanduser() / candidate


# -- checks made before anything is read: file kind, headers, zip directory -------------------


def _check_regular_file(path: Path) -> int:
    """The file's size; a missing file, a directory, a FIFO or a device (``/dev/zero``) refused."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(
            f"weight file {path} does not exist (paths are relative to the pipeline file)"
        ) from None
    except OSError as error:
        raise InputError(f"weight file {path} cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            f"weight file {path} is not a regular file ({file_kind(info.st_mode)}); give a "
            ".npy, .npz or .safetensors file"
        )
    return info.st_size


def _declared(
    path: Path, role: Role, shape: Sequence[int], itemsize: int, dtype: str, where: str
) -> int:
    """Check what a header declares for one array against the limits; its size in bytes."""
    elements = math.prod(shape)
    nbytes = elements * itemsize
    if nbytes > MAX_FILE_BYTES:
        raise InputError(
            f"weight file {path}{where} declares a {role} of shape {describe(tuple(shape))} "
            f"{dtype}, {nbytes} bytes; featuremap reads at most {MAX_FILE_BYTES} bytes (1 GiB) "
            "from a weight file"
        )
    if role == "bias":
        if elements > MAX_FILTERS:
            raise InputError(
                f"bias in {path}{where} must have at most {MAX_FILTERS} values, one per filter, "
                f"got shape {describe(tuple(shape))}"
            )
        return nbytes
    if len(shape) not in (3, 4, 5) or 0 in shape:
        raise InputError(f"weight in {path} must have shape {WEIGHT_SHAPES}, got {tuple(shape)}")
    full = tuple(shape) if len(shape) > 3 else (shape[0], 1, shape[1], shape[2])
    check_weight_shape("file", full, what=f" from {path}{where}")
    return nbytes


def _npy_header(stream: IO[bytes], path: Path, role: Role, where: str = "") -> int:
    """Read and check a ``.npy`` header from ``stream`` (at its start): the magic, the dtype
    (numeric, never objects) and the declared size. Returns the header's length in bytes."""
    magic = stream.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        if where:
            raise InputError(
                f"weight file {path}{where} is not a .npy array (bad magic {describe(magic)})"
            )
        raise InputError(
            f"weight file {path} is not a .npy file (bad magic {describe(magic)}, "
            f"expected {NPY_MAGIC!r})"
        )
    version = tuple(stream.read(2))
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(
            f"weight file {path}{where} has .npy format version {describe(version)}; a weight "
            "is a real or integer array, which numpy.save writes as version 1.0 or 2.0"
        )
    if dtype.hasobject:
        raise InputError(
            f"weight file {path} contains pickled objects; featuremap never unpickles, "
            "re-save it with numpy.save(..., allow_pickle=False) as a numeric array"
        )
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimension in shape {describe(shape)}")
    if role == "weight" and dtype.kind not in "fiu":
        raise InputError(
            f"weight in {path}{where} must be a real or integer array, got dtype "
            f"{describe(str(dtype))[1:-1]}"
        )
    nbytes = _declared(path, role, shape, dtype.itemsize, str(dtype), where)
    return int(stream.tell()) + nbytes


def _check_magic(path: Path, magics: Sequence[bytes], suffix: str, hint: str) -> None:
    with path.open("rb") as stream:
        head = stream.read(max(len(magic) for magic in magics))
    if not any(head.startswith(magic) for magic in magics):
        raise InputError(
            f"weight file {path} is not a {suffix} file (bad magic {describe(head)}; {hint})"
        )


def _check_zip_directory(path: Path, size: int) -> None:
    """Bound the member count and the central directory from the end-of-directory record, before
    :mod:`zipfile` reads the directory (a million tiny members would take gigabytes)."""
    tail_size = min(size, _ZIP_END_SIZE + 0xFFFF)  # the record, then a comment of up to 64 KiB
    with path.open("rb") as stream:
        stream.seek(size - tail_size)
        tail = stream.read(tail_size)
    at = tail.rfind(_ZIP_END)
    if at < 0 or len(tail) - at < _ZIP_END_SIZE:
        return  # not found: zipfile says what is wrong
    members, directory_bytes = struct.unpack("<10xHL6x", tail[at : at + _ZIP_END_SIZE])
    if members > MAX_NPZ_MEMBERS or directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
        raise InputError(
            f"weight file {path} has {members if members < 0xFFFF else 'at least 65535'} "
            f"members in a {directory_bytes}-byte zip directory; featuremap reads .npz files of "
            f"at most {MAX_NPZ_MEMBERS} members"
        )


# -- loaders: check, then read ------------------------------------------------------------------


def _load_npy(path: Path, tensor: str, bias_tensor: str | None, size: int) -> Arrays:
    if bias_tensor is not None:
        raise InputError(
            f"weight file {path} is a .npy holding one array; bias_tensor needs a .npz or .safetensors"
        )
    with path.open("rb") as stream:
        end = _npy_header(stream, path, "weight")
        if end > size:
            raise ValueError(f"truncated: its header declares {end} bytes, the file has {size}")
        stream.seek(0)
        return np.lib.format.read_array(stream, allow_pickle=False), None


def _load_npz(path: Path, tensor: str, bias_tensor: str | None, size: int) -> Arrays:
    _check_magic(path, ZIP_MAGICS, ".npz", "a .npz is a zip archive of .npy files")
    _check_zip_directory(path, size)
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        total = sum(info.file_size for info in infos.values())
        if total > MAX_FILE_BYTES:
            raise InputError(
                f"weight file {path} unpacks to {total} bytes "
                f"({len(infos)} member{'s' if len(infos) != 1 else ''}); "
                f"featuremap reads at most {MAX_FILE_BYTES} bytes (1 GiB) from a weight file"
            )

        def read(name: str, role: Role) -> np.ndarray:
            info = infos[name if name in infos else name + ".npy"]
            where = f" (member {describe(info.filename)})"
            with archive.open(info) as stream:
                end = _npy_header(stream, path, role, where)
            if end > info.file_size:
                raise ValueError(
                    f"member {describe(info.filename)} is truncated: its header declares "
                    f"{end} bytes, the member has {info.file_size}"
                )
            with archive.open(info) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)

        # The array names numpy.load gives a .npz: members without their ".npy".
        names = [name[: -len(".npy")] if name.endswith(".npy") else name for name in infos]
        weight_name, bias_name = _choose(path, names, tensor, bias_tensor)
        weight = read(weight_name, "weight")
        return weight, None if bias_name is None else read(bias_name, "bias")


def _safetensors_header(path: Path, size: int) -> tuple[dict[str, Any], int]:
    """The JSON header of a ``.safetensors`` file (8 bytes little-endian length, then the JSON)
    and the size of the data that follows it."""

    def invalid(reason: str) -> InputError:
        return InputError(f"weight file {path} is not a valid .safetensors file ({reason})")

    with path.open("rb") as stream:
        head = stream.read(8)
        if len(head) < 8:
            raise invalid(f"{size} bytes, shorter than the 8-byte header length")
        length = int.from_bytes(head, "little")
        if length > MAX_SAFETENSORS_HEADER_BYTES or 8 + length > size:
            raise invalid(
                f"its first 8 bytes {describe(head)} declare a {length}-byte header; the file "
                f"has {size} bytes and featuremap reads headers of at most "
                f"{MAX_SAFETENSORS_HEADER_BYTES} bytes"
            )
        text = stream.read(length)
    try:
        header = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid("its header is not JSON") from None
    if not isinstance(header, dict):
        raise invalid("its header is not a JSON object")
    return header, size - 8 - length


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_safetensor(path: Path, name: str, info: Any, role: Role, data_bytes: int) -> None:
    """Check a tensor's header entry (dtype, shape, offsets) against the limits."""

    def invalid(reason: str) -> InputError:
        return InputError(
            f"weight file {path} is not a valid .safetensors file ({describe(name)}: {reason})"
        )

    if not isinstance(info, dict):
        raise invalid(f"header entry {describe(info)}")
    shape, offsets, dtype = info.get("shape"), info.get("data_offsets"), info.get("dtype")
    if not isinstance(shape, list) or len(shape) > 64 or not all(map(_is_count, shape)):
        raise invalid(f"shape {describe(shape)}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(map(_is_count, offsets))
        or not offsets[0] <= offsets[1] <= data_bytes
    ):
        raise invalid(f"data_offsets {describe(offsets)}, the data has {data_bytes} bytes")
    itemsize = SAFETENSORS_ITEMSIZE.get(dtype) if isinstance(dtype, str) else None
    if itemsize is None or dtype == "BOOL":
        raise InputError(
            f"{role} in {path} must be a real or integer array, got dtype {describe(dtype)}"
        )
    nbytes = _declared(path, role, shape, itemsize, str(dtype), f" (tensor {describe(name)})")
    if offsets[1] - offsets[0] != nbytes:
        raise invalid(
            f"{offsets[1] - offsets[0]} bytes of data for {nbytes} bytes of shape × dtype"
        )


def _load_safetensors(path: Path, tensor: str, bias_tensor: str | None, size: int) -> Arrays:
    try:
        from safetensors import safe_open
    except ImportError:
        raise InputError(
            f"weight file {path} is .safetensors but the safetensors package is not installed; "
            "pip install safetensors"
        ) from None
    header, data_bytes = _safetensors_header(path, size)
    names = [name for name in header if name != "__metadata__"]
    weight_name, bias_name = _choose(path, names, tensor, bias_tensor)
    _check_safetensor(path, weight_name, header[weight_name], "weight", data_bytes)
    if bias_name is not None:
        _check_safetensor(path, bias_name, header[bias_name], "bias", data_bytes)
    with safe_open(path, framework="numpy") as archive:
        weight = archive.get_tensor(weight_name)
        return weight, None if bias_name is None else archive.get_tensor(bias_name)


def _listing(names: Sequence[str]) -> str:
    """The names a file holds, for a message: the first few, each shortened."""
    shown = ", ".join(name if len(name) <= 40 else name[:37] + "..." for name in names[:10])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 10 else "") or "nothing"


def _choose(
    path: Path, names: list[str], tensor: str, bias_tensor: str | None
) -> tuple[str, str | None]:
    """The names of the weight and bias arrays to read (``bias``, if present, by default)."""
    if tensor not in names:
        raise InputError(
            f"weight file {path} has no array {describe(tensor)} (it holds: {_listing(names)}); "
            "set the bank's 'tensor' parameter to one of them"
        )
    if bias_tensor is not None and bias_tensor not in names:
        raise InputError(
            f"weight file {path} has no bias array {describe(bias_tensor)} "
            f"(it holds: {_listing(names)})"
        )
    defaults = [name for name in default_bias_names(tensor) if name in names]
    return tensor, bias_tensor or (defaults[0] if defaults else None)


def default_bias_names(tensor: str) -> tuple[str, ...]:
    """The biases looked for beside ``tensor`` without ``bias_tensor``: PyTorch's sibling
    (``conv1.weight`` -> ``conv1.bias``; dropped silently, it changed every feature), then
    :data:`DEFAULT_BIAS_NAME`."""
    prefix, dot, last = tensor.rpartition(".")
    sibling = (f"{prefix}.{DEFAULT_BIAS_NAME}",) if dot and last == "weight" else ()
    return (*sibling, DEFAULT_BIAS_NAME)


LOADERS: dict[str, Callable[[Path, str, str | None, int], Arrays]] = {
    ".npy": _load_npy,
    ".npz": _load_npz,
    ".safetensors": _load_safetensors,
}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _read(path: Path, tensor: str, bias_tensor: str | None) -> Arrays:
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise InputError(
            f"weight file {path} has unknown extension {describe(path.suffix)}; use one of "
            f"{', '.join(EXTENSIONS)}"
        )
    size = _check_regular_file(path)
    try:
        return LOADERS[suffix](path, tensor, bias_tensor, size)
    except InputError:
        raise
    except ValueError as error:
        # NumPy's refusal of an object array (in a .npy or inside a .npz) names allow_pickle.
        if "allow_pickle" not in str(error):
            raise InputError(
                f"weight file {path} cannot be read as {suffix} ({_one_line(error)})"
            ) from None
        raise InputError(
            f"weight file {path} contains pickled objects; featuremap never unpickles, "
            "re-save it with numpy.save(..., allow_pickle=False) as a numeric array"
        ) from None
    except (
        OSError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
        TypeError,
        NotImplementedError,  # a zip compression method Python lacks
        RuntimeError,  # an encrypted zip member
    ) as error:
        raise InputError(
            f"weight file {path} cannot be read as {suffix} ({_one_line(error)})"
        ) from None
    except Exception as error:  # safetensors raises its own SafetensorError (not importable lazily)
        if type(error).__name__ != "SafetensorError":
            raise
        raise InputError(
            f"weight file {path} is not a valid .safetensors file ({_one_line(error)})"
        ) from None


def _as_weight(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "fiu":
        raise InputError(
            f"weight in {path} must be a real or integer array, got dtype {array.dtype}"
        )
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim not in (4, 5) or 0 in array.shape:
        raise InputError(f"weight in {path} must have shape {WEIGHT_SHAPES}, got {array.shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # 1e300 -> inf, refused just below
        weight = array.astype(np.float32)
    if not np.isfinite(weight).all():
        raise InputError(
            f"weight in {path} contains NaN or infinite values (or values beyond float32)"
        )
    return weight


def _as_bias(path: Path, array: np.ndarray, n_filters: int) -> np.ndarray:
    if array.dtype.kind not in "fiu" or array.shape != (n_filters,):
        raise InputError(
            f"bias in {path} must be a real array of shape ({n_filters},) to match the weight's "
            f"{n_filters} filters, got {array.dtype} {array.shape}"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        bias = array.astype(np.float32)
    if not np.isfinite(bias).all():
        raise InputError(
            f"bias in {path} contains NaN or infinite values (or values beyond float32)"
        )
    return bias


def load_weights(path: Path, tensor: str = "weight", bias_tensor: str | None = None) -> Arrays:
    """Read and check ``(weight, bias)`` from a weight file; see the module docstring.

    Nothing is read before the file is known to be a regular file whose headers (and, for a
    ``.npz``, zip directory) declare arrays within :data:`MAX_FILE_BYTES` and the bank limits.
    """
    raw_weight, raw_bias = _read(path, tensor, bias_tensor)
    weight = _as_weight(path, np.asarray(raw_weight))
    bias = None if raw_bias is None else _as_bias(path, np.asarray(raw_bias), weight.shape[0])
    return weight, bias


@register(
    "file",
    "weights (and bias) from a .npy, .npz or .safetensors file; never unpickled",
    Parameter(
        "path", None, "weight file; relative paths are resolved against base_dir", _parse_path
    ),
    Parameter(
        "base_dir",
        None,
        "directory for a relative path (the pipeline file's directory)",
        optional(text()),
    ),
    Parameter("tensor", "weight", "name of the weight array in a .npz / .safetensors", text()),
    Parameter(
        "bias_tensor",
        None,
        "name of the bias array (default: X.bias beside tensor X.weight, else 'bias', when "
        "the file has one)",
        optional(text()),
    ),
)
def _file(path: str, base_dir: str | None, tensor: str, bias_tensor: str | None) -> Filters:
    weight, bias = load_weights(resolve_path(path, base_dir), tensor, bias_tensor)
    descriptions = [{"name": "file", "index": j} for j in range(weight.shape[0])]
    return Filters(weight, descriptions, bias=bias)
