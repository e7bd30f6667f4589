"""Sample data for ``featuremap demo``: synthetic textures and a volume, generated here, no
downloads.

Every image is a 2 x 2 mosaic of textures -- stripes at several orientations and frequencies, a
checkerboard, Gaussian blobs and smoothed noise -- so that oriented filter banks respond
differently in each quadrant. Images are float32, roughly in ``[0, 1]`` (plus a little noise),
one channel, seeded.

The volume (``volume.ome.zarr``, for ``pipelines/volume-gaussian.yaml``) is an OME-NGFF 0.5
``zyx`` image of round blobs in anisotropic voxels, 0.2 x 0.05 x 0.05 micrometres, like a
light-sheet stack: the blobs are round in micrometres, flattened in voxels.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from featuremap.errors import InputError

__all__ = [
    "DEFAULT_PIPELINE",
    "IMAGES",
    "default_pipeline_path",
    "make_images",
    "make_volume",
    "run_demo",
    "write_images",
    "write_volume",
]

#: Array name of the images inside ``DIR/images.zarr``.
IMAGES = "images"
#: The default pipeline, shipped inside the package (``pipelines/`` is not installed).
DEFAULT_PIPELINE = "data/default.yaml"
STORE_CHUNK = 128
#: The demo volume's voxel size (z, y, x) in micrometres, and its storage chunks.
VOLUME_SCALE = (0.2, 0.05, 0.05)
VOLUME_CHUNKS = (16, 64, 64)
#: The group attribute that marks sample images as made by the demo (so it may replace them).
DEMO_MARK = "featuremap_demo"

Texture = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _stripes(angle_deg: float, frequency: float) -> Texture:
    angle = np.deg2rad(angle_deg)
    return lambda y, x, rng: (
        0.5 + 0.5 * np.cos(2 * np.pi * frequency * (x * np.cos(angle) + y * np.sin(angle)))
    )


def _checkerboard(period: int) -> Texture:
    return lambda y, x, rng: ((y // period + x // period) % 2).astype(np.float64)


def _blobs(count: int, sigma: float) -> Texture:
    def texture(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        centres = rng.uniform(0, y.shape[0], size=(count, 2))
        image = sum(np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2)) for cy, cx in centres)
        return np.clip(image, 0, 1)

    return texture


def _smooth_noise(sigma: float) -> Texture:
    def texture(y: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.normal(size=y.shape)
        fy, fx = np.meshgrid(np.fft.fftfreq(y.shape[0]), np.fft.fftfreq(y.shape[1]), indexing="ij")
        lowpass = np.exp(-2 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
        smooth = np.fft.ifft2(np.fft.fft2(noise) * lowpass).real
        return (smooth - smooth.min()) / (np.ptp(smooth) or 1.0)

    return texture


#: Named textures; image ``i`` uses four consecutive ones starting at ``i`` (wrapping).
TEXTURES: dict[str, Texture] = {
    "stripes 0deg f=0.10": _stripes(0, 0.10),
    "stripes 45deg f=0.20": _stripes(45, 0.20),
    "stripes 90deg f=0.10": _stripes(90, 0.10),
    "checkerboard 8px": _checkerboard(8),
    "stripes 135deg f=0.25": _stripes(135, 0.25),
    "blobs sigma=4": _blobs(40, 4.0),
    "smooth noise sigma=2": _smooth_noise(2.0),
}


def make_images(
    n_images: int = 4, size: int = 256, seed: int = 0
) -> tuple[np.ndarray, list[list[str]]]:
    """``(n_images, 1, size, size)`` float32 texture mosaics and, per image, its quadrants' names
    (top-left, top-right, bottom-left, bottom-right)."""
    rng = np.random.default_rng(seed)
    half = size // 2
    y, x = np.mgrid[0:half, 0:half].astype(np.float64)
    names = list(TEXTURES)
    images = np.empty((n_images, 1, size, size), dtype=np.float32)
    layout = []
    for index in range(n_images):
        chosen = [names[(index + k) % len(names)] for k in range(4)]
        for k, name in enumerate(chosen):
            top, left = (k // 2) * half, (k % 2) * half
            tile = TEXTURES[name](y, x, rng) + 0.05 * rng.normal(size=y.shape)
            images[index, 0, top : top + half, left : left + half] = tile
        layout.append(chosen)
    return images, layout


def make_volume(shape: tuple[int, int, int] = (32, 128, 128), seed: int = 0) -> np.ndarray:
    """A ``(z, y, x)`` float32 volume of 24 blobs of radius ~0.3 um (round in micrometres at
    :data:`VOLUME_SCALE`) in ``[0, 1]`` plus a little noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64)
    volume = np.zeros(shape)
    for _ in range(24):
        centre = rng.uniform(0, shape)
        distance = sum(
            ((axis - c) * scale) ** 2
            for axis, c, scale in zip(grid, centre, VOLUME_SCALE, strict=True)
        )
        volume += np.exp(-distance / (2 * 0.3**2))
    noise = 0.05 * rng.normal(size=shape)
    return (np.clip(volume, 0, 1) + noise).astype(np.float32)


def write_volume(store: str | Path, volume: np.ndarray) -> str:
    """Write ``volume`` as an OME-NGFF 0.5 image group (one level, ``zyx`` in micrometres)."""
    from featuremap.io.ome import OmeAxis, ome_multiscales
    from featuremap.io.samples import write_image_group

    axes = [
        OmeAxis(name, "space", "micrometer", scale)
        for name, scale in zip("zyx", VOLUME_SCALE, strict=True)
    ]
    return write_image_group(
        str(store),
        "0",
        volume,
        chunks=VOLUME_CHUNKS,
        dimension_names=("z", "y", "x"),
        array_attrs={},
        group_attrs={
            **(ome_multiscales(axes, path="0", name="demo volume") or {}),
            "description": "featuremap demo: blobs in anisotropic voxels (z, y, x)",
            DEMO_MARK: True,
        },
    )


def write_images(store: str | Path, images: np.ndarray, layout: list[list[str]]) -> str:
    """Write ``images`` as array ``images`` of a new Zarr v3 group (replacing ``store``)."""
    from featuremap.io.samples import write_image_group

    return write_image_group(
        str(store),
        IMAGES,
        images,
        chunks=(1, 1, min(STORE_CHUNK, images.shape[-2]), min(STORE_CHUNK, images.shape[-1])),
        dimension_names=("image", "channel", "y", "x"),
        array_attrs={"textures": layout},
        group_attrs={
            "description": "featuremap demo: synthetic texture mosaics (2 x 2 per image)",
            DEMO_MARK: True,
        },
    )


def _check_replaceable(folder: Path) -> str:
    """Refuse, before anything is written, whatever in ``folder`` the demo did not make: its
    ``images.zarr`` must be a demo's own, its ``features.zarr`` a featuremap store whose job is
    not running. Returns the features store's path."""
    from featuremap.io.samples import group_attributes
    from featuremap.jobs import state
    from featuremap.jobs.target import existing_store

    for sample in (folder / "images.zarr", folder / "volume.ome.zarr"):
        if sample.exists() or sample.is_symlink():
            attrs = group_attributes(str(sample))
            if not attrs or not attrs.get(DEMO_MARK):
                raise InputError(
                    f"{str(sample)!r} exists and was not made by 'featuremap demo'; it is never "
                    "replaced: give another output folder"
                )
    features = str(folder / "features.zarr")
    existing = existing_store(features)  # refuses what featuremap did not make
    if existing is not None:
        state.check_takeover(existing, fingerprint=None)
    return features


def default_pipeline_path() -> Path:
    """The default pipeline file shipped in the package."""
    return Path(str(resources.files("featuremap").joinpath(DEFAULT_PIPELINE)))


def run_demo(
    output_dir: str | Path,
    *,
    n_images: int = 4,
    size: int = 256,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Make the sample images in ``output_dir/images.zarr`` (and the sample volume in
    ``output_dir/volume.ome.zarr``) and run the default pipeline on the images,
    locally, into ``output_dir/features.zarr``. Both are replaced only if an earlier demo made
    them; anything else there is refused before anything is written. Returns the run summary."""
    from featuremap.jobs.run import run
    from featuremap.pipeline.pipeline import load_pipeline

    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"demo output {str(folder)!r} is a file; give a folder")
    features = _check_replaceable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images_store = write_images(folder / "images.zarr", *make_images(n_images, size))
    write_volume(folder / "volume.ome.zarr", make_volume())
    pipeline = load_pipeline(default_pipeline_path()).with_overrides(
        input=images_store, array=IMAGES, output=features
    )
    return run(pipeline, overwrite=True, workers=workers, progress=progress)
