"""``featuremap preview``: one PNG with the first conv layer's filters and a mosaic of feature maps.

Each filter tile is scaled symmetrically (mid-grey = 0, so sign is visible); each feature map
is stretched between its own 1st and 99th percentile and labelled with its feature label (in
DejaVu Sans where the system has it; Pillow's own font, which has no Greek, spells ``σ`` as
``sigma``). Only the shown features of one image are
read, at most ``tile`` pixels a side (strided), so previews of large stores stay cheap. A 3-D
stack's store is shown by its middle ``z`` plane (and its filters by their middle ``z`` slice).
"""

from __future__ import annotations

import functools
import textwrap
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featuremap.engine.geometry import ceil_div
from featuremap.errors import InputError, error_line, option

__all__ = ["render_preview"]

PAD = 4
LABEL_HEIGHT = 14
#: Lines of a feature tile's label, and their height in pixels (a 10-pixel font).
TILE_LABEL_LINES = 2
TILE_LINE_HEIGHT = 12
FILTER_TILE = 48
BACKGROUND = 32
TEXT = 230


def _to_uint8(values: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return (np.clip(np.nan_to_num(scaled, nan=0.0), 0, 1) * 255).astype(np.uint8)


def _filter_tiles(weight: np.ndarray, count: int) -> list[np.ndarray]:
    tiles = []
    for kernel in weight[:count, 0]:
        if kernel.ndim == 3:  # a 3-D filter: its middle z slice
            kernel = kernel[kernel.shape[0] // 2]
        limit = float(np.abs(kernel).max()) or 1.0
        image = _to_uint8(kernel, -limit, limit)
        scale = max(1, FILTER_TILE // max(image.shape))
        tiles.append(np.kron(image, np.ones((scale, scale), dtype=np.uint8)))
    return tiles


def _feature_tiles(maps: np.ndarray, tile: int) -> list[np.ndarray]:
    # Small maps are enlarged by an integer factor (nearest) so that pixels stay pixels.
    scale = max(1, tile // max(maps.shape[-2:]))
    tiles = []
    for feature in maps.astype(np.float64):
        finite = feature[np.isfinite(feature)]
        low, high = np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0)
        tiles.append(
            np.kron(_to_uint8(feature, low, high), np.ones((scale, scale), dtype=np.uint8))
        )
    return tiles


@functools.cache
def _font() -> Any:
    """A small font with Greek letters (DejaVu Sans) where the system has one, else Pillow's."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", 10)
    except OSError:
        return ImageFont.load_default(size=10)


def _drawable(label: str, font: Any) -> str:
    """``label`` with each letter ``font`` cannot draw spelled out (``σ`` -> ``sigma``)."""
    if "DejaVu" in str(font.getname()[0]):
        return label
    return "".join(
        char if ord(char) < 256 else unicodedata.name(char, "?").split()[-1].lower()
        for char in label
    )


def _fit(text: str, width: int, font: Any) -> list[str]:
    """``text`` wrapped into at most :data:`TILE_LABEL_LINES` lines of ``width`` pixels, the
    last cut short with an ellipsis when it does not fit."""
    chars = max(1, int(width // max(font.getlength("n"), 1.0)))
    lines = textwrap.wrap(text, chars) or [""]
    kept = lines[:TILE_LABEL_LINES]
    if len(lines) > TILE_LABEL_LINES or font.getlength(kept[-1]) > width:
        last = kept[-1] + (" " + lines[TILE_LABEL_LINES] if len(lines) > TILE_LABEL_LINES else "")
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        kept[-1] = last + "…"
    return kept


def _labelled(tiles: list[np.ndarray], labels: Sequence[str]) -> list[np.ndarray]:
    """Each tile with its label written in a strip below it."""
    from PIL import Image, ImageDraw

    font = _font()
    labelled = []
    for tile, label in zip(tiles, labels[: len(tiles)], strict=True):
        strip = Image.new("L", (tile.shape[1], TILE_LABEL_LINES * TILE_LINE_HEIGHT), BACKGROUND)
        draw = ImageDraw.Draw(strip)
        for line, text in enumerate(_fit(_drawable(label, font), tile.shape[1], font)):
            draw.text((0, line * TILE_LINE_HEIGHT), text, fill=TEXT, font=font)
        labelled.append(np.concatenate([tile, np.asarray(strip)]))
    return labelled


def _mosaic(tiles: list[np.ndarray], columns: int) -> np.ndarray:
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    rows = ceil_div(len(tiles), columns)
    canvas = np.full(
        (rows * (height + PAD) + PAD, columns * (width + PAD) + PAD), BACKGROUND, np.uint8
    )
    for index, tile in enumerate(tiles):
        top = PAD + (index // columns) * (height + PAD)
        left = PAD + (index % columns) * (width + PAD)
        canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return canvas


def render_preview(
    store: Any,
    path: str | Path,
    *,
    image: int = 0,
    max_features: int = 32,
    tile: int = 128,
    columns: int = 8,
) -> Path:
    """Write the preview PNG of an opened feature store (:func:`featuremap.open`) to ``path``.

    Parameters
    ----------
    store : FeatureStore
    path : path
        Output file; must end in ``.png``.
    image : int
        Which image of the batch (flat index over the batch axes).
    max_features, tile, columns : int
        Features shown, their largest side in pixels, tiles per row.
    """
    from PIL import Image, ImageDraw

    path = Path(path)
    if path.is_dir():
        raise InputError(f"preview output {str(path)!r} is a folder; give a .png file path")
    if path.suffix.lower() != ".png":
        raise InputError(f"preview output {str(path)!r} must be a .png file")
    if not path.parent.is_dir():
        raise InputError(f"preview output folder {str(path.parent)!r} does not exist")
    data = _features_last(store)
    batch_shape = data.shape[:-3]
    n_images = int(np.prod(batch_shape)) if batch_shape else 1
    if not 0 <= image < n_images:
        raise InputError(
            f"{option('image', str(image))} is out of range; the store holds {n_images} image(s)"
        )
    index = np.unravel_index(image, batch_shape) if batch_shape else ()
    step = max(1, ceil_div(max(data.shape[-2:]), tile))
    try:
        maps = np.asarray(
            data[tuple(int(i) for i in index)][:max_features, ::step, ::step].compute()
        )
    except (ValueError, OSError) as error:  # a chunk that fails its checksum, a truncated file
        raise InputError(
            f"feature store {store.path!r} has a damaged chunk ({error_line(error)}); check it "
            "with 'featuremap verify' and repair it with 'featuremap verify --repair'"
        ) from None

    sections = []
    convs = [i for i, layer in enumerate(store.layers) if layer.get("type") == "conv"]
    if convs:
        weight, _ = store.weights(convs[0])
        sections.append(
            (
                f"layer {convs[0]} filters (first of {weight.shape[0]}, channel 0; grey = 0)",
                _mosaic(_filter_tiles(weight, max_features), columns),
            )
        )
    sampling = f", one pixel in {step}" if step > 1 else ""
    if len(store.geometry.jump) == 3:
        sampling += ", middle z plane"
    sections.append(
        (
            f"features of image {image} (first {len(maps)} of {data.shape[-3]}{sampling})",
            _mosaic(_labelled(_feature_tiles(maps, tile), store.feature_labels), columns),
        )
    )

    width = max(section.shape[1] for _, section in sections)
    height = sum(section.shape[0] + LABEL_HEIGHT for _, section in sections)
    canvas = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    top = 0
    for label, section in sections:
        draw.text((PAD, top + 1), label, fill=TEXT)
        canvas.paste(Image.fromarray(section), (0, top + LABEL_HEIGHT))
        top += section.shape[0] + LABEL_HEIGHT
    try:
        canvas.save(path, format="PNG")
    except OSError as error:
        raise InputError(
            f"cannot write preview {str(path)!r} ({error.strerror or error}); choose a writable path"
        ) from None
    return path


def _features_last(store: Any) -> Any:
    """The features as a Dask array ``(*batch, feature, y, x)`` whatever their stored order (the
    middle ``z`` plane of a 3-D stack's ``(*batch, feature, z, y, x)``)."""
    import dask.array as da

    data = store.data
    ndim = len(store.geometry.jump)
    data = da.moveaxis(data, store.feature_axis, -ndim - 1)
    return data[..., data.shape[-3] // 2, :, :] if ndim == 3 else data
