"""Planning a job (``featuremap.jobs.plan``): a request that cannot work -- channels, a kernel
larger than the padded input, reflect padding too wide, an output inside the input or under a
file -- is refused before anything is written."""

from __future__ import annotations

import numpy as np
import pytest

from featuremap.engine.layers import ConvLayer
from featuremap.errors import InputError
from featuremap.jobs.run import run_layers


def _conv(rng, j, c, k, **kwargs) -> ConvLayer:
    k = (k, k) if isinstance(k, int) else k
    return ConvLayer.create(rng.standard_normal((j, c, *k)), rng.standard_normal(j), **kwargs)


@pytest.mark.parametrize(
    ("layers", "output", "message"),
    [
        (lambda r: [_conv(r, 2, 3, 3)], "out.zarr", "expects 3 input channels .* has 1"),
        (lambda r: [_conv(r, 2, 1, 41)], "out.zarr", "does not fit the padded input"),
        (
            lambda r: [_conv(r, 2, 1, 5, padding=30, padding_mode="reflect")],
            "out.zarr",
            "reflect padding 30 along y must be smaller",
        ),
        (lambda r: [_conv(r, 2, 1, 3)], "in.zarr/inside.zarr", "lies inside the input store"),
        (lambda r: [_conv(r, 2, 1, 3)], "file.txt/out.zarr", "is not a writable folder"),
    ],
)
def test_bad_requests_write_nothing(tmp_path, process_client, layers, output, message, input_store):
    rng = np.random.default_rng(12)
    source = input_store(rng.random((30, 30), dtype=np.float32), (10, 10))
    (tmp_path / "file.txt").write_text("not a folder")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(InputError, match=message):
        run_layers(layers(rng), input=source, output=str(tmp_path / output), client=process_client)
    assert sorted(tmp_path.rglob("*")) == before
