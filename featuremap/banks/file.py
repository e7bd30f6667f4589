"""The ``file`` bank: weights (and an optional bias) read from a ``.npy``, ``.npz`` or ``.safetensors``.

* ``.npy``: the weight only. Read with ``allow_pickle=False``: object (pickled) arrays are refused.
* ``.npz``: arrays ``tensor`` (default ``weight``) and, optionally, ``bias_tensor`` (default: ``bias``
  when present).
* ``.safetensors``: tensors ``tensor`` and ``bias_tensor`` the same way (needs ``safetensors``).

The weight is ``(J, C, kh, kw)`` or ``(J, kh, kw)`` (then ``C = 1``), real or integer, finite; it
becomes float32. The bias is ``(J,)``. Every failure is a one-line :class:`InputError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from featuremap.banks._params import optional, text
from featuremap.banks._registry import Filters, Parameter, register
from featuremap.errors import InputError, describe

__all__ = ["load_weights", "resolve_path"]

DEFAULT_BIAS_NAME = "bias"
EXTENSIONS = (".npy", ".npz", ".safetensors")


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


def _load_npy(path: Path, tensor: str, bias_tensor: str | None) -> tuple[np.ndarray, None]:
    if bias_tensor is not None:
        raise InputError(
            f"weight file {path} is a .npy holding one array; bias_tensor needs a .npz or .safetensors"
        )
    return np.load(path, allow_pickle=False), None


Arrays = tuple[np.ndarray, np.ndarray | None]


def _load_npz(path: Path, tensor: str, bias_tensor: str | None) -> Arrays:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        return _pick(path, names, archive.__getitem__, tensor, bias_tensor)


def _load_safetensors(path: Path, tensor: str, bias_tensor: str | None) -> Arrays:
    try:
        from safetensors import safe_open
    except ImportError:
        raise InputError(
            f"weight file {path} is .safetensors but the safetensors package is not installed; "
            "pip install safetensors"
        ) from None
    with safe_open(path, framework="numpy") as archive:
        return _pick(path, list(archive.keys()), archive.get_tensor, tensor, bias_tensor)


def _pick(
    path: Path,
    names: list[str],
    read: Callable[[str], np.ndarray],
    tensor: str,
    bias_tensor: str | None,
) -> Arrays:
    if tensor not in names:
        raise InputError(
            f"weight file {path} has no array {tensor!r} (it holds: {', '.join(names) or 'nothing'}); "
            "set the bank's 'tensor' parameter to one of them"
        )
    if bias_tensor is not None and bias_tensor not in names:
        raise InputError(
            f"weight file {path} has no bias array {bias_tensor!r} (it holds: {', '.join(names)})"
        )
    bias_name = bias_tensor or (DEFAULT_BIAS_NAME if DEFAULT_BIAS_NAME in names else None)
    return read(tensor), None if bias_name is None else read(bias_name)


LOADERS = {".npy": _load_npy, ".npz": _load_npz, ".safetensors": _load_safetensors}


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _read(path: Path, tensor: str, bias_tensor: str | None) -> Arrays:
    suffix = path.suffix.lower()
    if suffix not in LOADERS:
        raise InputError(
            f"weight file {path} has unknown extension {path.suffix!r}; use one of {', '.join(EXTENSIONS)}"
        )
    if not path.is_file():
        raise InputError(
            f"weight file {path} does not exist (paths are relative to the pipeline file)"
        )
    try:
        return LOADERS[suffix](path, tensor, bias_tensor)
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
    except (OSError, EOFError, zipfile.BadZipFile, TypeError) as error:
        raise InputError(
            f"weight file {path} cannot be read as {suffix} ({_one_line(error)})"
        ) from None
    except Exception as error:  # safetensors raises its own SafetensorError (not importable lazily)
        if type(error).__name__ != "SafetensorError":
            raise
        raise InputError(f"weight file {path} is not a valid .safetensors file ({error})") from None


def _as_weight(path: Path, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "fiu":
        raise InputError(
            f"weight in {path} must be a real or integer array, got dtype {array.dtype}"
        )
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or 0 in array.shape:
        raise InputError(
            f"weight in {path} must have shape (J, C, kh, kw) or (J, kh, kw), got {array.shape}"
        )
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
    bias = array.astype(np.float32)
    if not np.isfinite(bias).all():
        raise InputError(f"bias in {path} contains NaN or infinite values")
    return bias


def load_weights(path: Path, tensor: str = "weight", bias_tensor: str | None = None) -> Arrays:
    """Read and check ``(weight, bias)`` from a weight file; see the module docstring."""
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
        "name of the bias array (default: 'bias' when the file has one)",
        optional(text()),
    ),
)
def _file(path: str, base_dir: str | None, tensor: str, bias_tensor: str | None) -> Filters:
    weight, bias = load_weights(resolve_path(path, base_dir), tensor, bias_tensor)
    descriptions = [{"name": "file", "index": j} for j in range(weight.shape[0])]
    return Filters(weight, descriptions, bias=bias)
