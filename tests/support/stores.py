"""Sample stores: Zarr input arrays written to a folder, and small output layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from featuremap.engine.geometry import StackGeometry
from featuremap.io import OutputLayout


def write_input(
    path: Path | str, data: np.ndarray, chunks: Sequence[int] | None = None, **kwargs: Any
) -> str:
    """Write ``data`` as a Zarr array at ``path`` (Zarr's own chunks unless given); its path."""
    if chunks is not None:
        kwargs["chunks"] = tuple(chunks)
    zarr.create_array(str(path), data=data, **kwargs)
    return str(path)


def random_input(
    path: Path | str, shape: Sequence[int], chunks: Sequence[int], seed: int
) -> tuple[str, np.ndarray]:
    """A seeded uniform float32 input at ``path``: ``(path, data)``."""
    data = np.random.default_rng(seed).random(tuple(shape), dtype=np.float32)
    return write_input(path, data, chunks), data


def small_layout(batch: tuple[int, ...]) -> OutputLayout:
    """The layout of a ``(*batch, 2, 8, 8)`` output in 4 x 4 blocks (rf 3, jump 1, offset 1)."""
    return OutputLayout(
        batch_dims=tuple(f"dim_{i}" for i in range(len(batch))),
        shape=(*batch, 2, 8, 8),
        chunks=(*(1,) * len(batch), 2, 4, 4),
        stack=StackGeometry((3, 3), (1, 1), (1.0, 1.0)),
    )


def unmark(store: Path | str, blocks: Sequence[tuple[int, ...]]) -> None:
    """Clear the done-markers of ``blocks`` (as a job killed before flushing them leaves them)."""
    from featuremap.io import OutputStore
    from featuremap.io.markers import block_number

    output = OutputStore.open(str(store), "r+")
    writer = output.marker_writer(lambda: None)
    for block in blocks:
        writer.mark(block_number(block, output.grid_shape), done=False)
    writer.flush()


def marker_chunk(store: Path | str) -> Path:
    """The file of the first marker chunk of a local store."""
    return Path(store) / "_job" / "done" / "c" / "0"


def write_ome_image(
    path: Path | str,
    data: np.ndarray,
    axes: str,
    scale: dict[str, float] | None = None,
    units: dict[str, str] | None = None,
    version: str = "0.5",
    scale_factors: tuple[int, ...] = (2,),
    **kwargs: Any,
) -> str:
    """An OME-Zarr image written by ome-zarr-py (NGFF ``version`` 0.4 or 0.5, with a pyramid
    of ``scale_factors``); its path."""
    import warnings

    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.writer import write_image

    fmt = FormatV05() if version == "0.5" else FormatV04()
    store = parse_url(str(path), mode="w", fmt=fmt).store
    root = zarr.open_group(store, mode="w", zarr_format=3 if version == "0.5" else 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ome-zarr-py's own deprecations
        write_image(
            data,
            root,
            axes=axes,
            fmt=fmt,
            scale=scale,
            axes_units=units,
            scale_factors=scale_factors,
            **kwargs,
        )
    return str(path)
