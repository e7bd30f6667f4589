"""The output of a job (``featuremap.jobs.target``): a folder featuremap did not make is never
replaced, and a store a live job owns is never taken over."""

from __future__ import annotations

import numpy as np
import pytest

import featuremap
from featuremap.engine.layers import ConvLayer
from featuremap.errors import InputError
from featuremap.io import OutputStore
from featuremap.jobs import state
from featuremap.jobs.run import run_layers


def _conv(rng, j, c, k, **kwargs) -> ConvLayer:
    k = (k, k) if isinstance(k, int) else k
    return ConvLayer.create(rng.standard_normal((j, c, *k)), rng.standard_normal(j), **kwargs)


def test_refuses_to_replace_what_is_not_a_feature_store(tmp_path, process_client, input_store):
    rng = np.random.default_rng(13)
    source = input_store(rng.random((20, 20), dtype=np.float32), (10, 10))
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    with pytest.raises(InputError, match="is not a featuremap store; it is never replaced"):
        run_layers(
            [_conv(rng, 1, 1, 3)],
            input=source,
            output=str(tmp_path / "precious"),
            overwrite=True,
            client=process_client,
        )
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "keep me"


def test_busy_store_is_never_taken_over(tmp_path, process_client, input_store):
    rng = np.random.default_rng(15)
    source = input_store(rng.random((20, 20), dtype=np.float32), (10, 10))
    layers = [_conv(rng, 1, 1, 3)]
    output = tmp_path / "out.zarr"
    run_layers(layers, input=source, output=str(output), client=process_client)
    state.start_job(
        OutputStore.open(str(output), "r+"),
        owner=state.new_owner(),
        fingerprint="0" * 64,
        blocks_total=1,
    )
    for flags in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(featuremap.errors.StoreBusyError, match="still running"):
            run_layers(layers, input=source, output=str(output), client=process_client, **flags)
