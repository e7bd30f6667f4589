"""Fixtures of the command-line tests: the demo images and a two-layer pipeline over them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featuremap.apps.demo import make_images, write_images


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Two 96 x 96 demo images, stored in 48 x 48 chunks."""
    folder = tmp_path_factory.mktemp("demo")
    data, layout = make_images(n_images=2, size=96, seed=3)
    store = write_images(folder / "images.zarr", data, layout)
    return Path(store), data


TWO_LAYER = """\
name: two-layer
input: {{store: {images}, array: images}}
layers:
  - conv:
      bank: {{type: random, n: 4, size: 3, seed: 1}}
      stride: 2
      dilation: 2
      padding: same
      activation: relu
  - pool: {{type: max, kernel_size: 3, stride: 2, padding: 1}}
  - conv:
      bank: {{type: file, path: w.npz}}
      padding: [1, 0]
"""


@pytest.fixture(scope="module")
def two_layer(images, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two-layer")
    rng = np.random.default_rng(11)
    np.savez(
        folder / "w.npz",
        weight=rng.normal(size=(3, 4, 3, 3)).astype(np.float32),
        bias=rng.normal(size=3).astype(np.float32),
    )
    path = folder / "two-layer.yaml"
    path.write_text(TWO_LAYER.format(images=images[0]))
    return path
