"""Planning a job: everything is validated and resolved once, before anything is written.

:func:`plan_job` opens the input (metadata only), builds the layers, resolves the stack's
geometry once (:func:`featuremap.engine.stack.resolve_stack`), sizes the output blocks and shards and
checks the output's size against the limits (:mod:`.sizing`), checks the output path and what is
there (:mod:`.target`), records the input's content identity, decides the features' codecs
(``output.codec: auto``: from two small windows of the first blocks computed here, the only
input data the plan reads, :mod:`.sample`; ``--resume``: as the store records them), and returns
one frozen, picklable :class:`JobPlan` that creating the store, block planning and the block
tasks all read without re-parsing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from featuremap._version import __version__
from featuremap.cluster.devices import parse_device
from featuremap.engine.geometry import Sizes
from featuremap.engine.layers import ConvLayer, Layer
from featuremap.engine.stack import ResolvedStack, resolve_stack
from featuremap.errors import InputError
from featuremap.io import (
    InputArray,
    InputSelection,
    LayerArrays,
    OutputLayout,
    check_url,
    is_url,
    normalize_store,
    open_input,
    storage_versions,
)
from featuremap.io.chunks import content_identity
from featuremap.io.codec_choice import apply_decision, decide_codecs, recorded_decision
from featuremap.io.placement import geometry_attrs
from featuremap.io.sizing import OutputOptions, check_limits, plan_layout
from featuremap.jobs import state
from featuremap.jobs.sample import sample_windows
from featuremap.jobs.target import check_output_path, plan_mode

__all__ = ["JobPlan", "plan_job"]


@dataclass(frozen=True)
class JobPlan:
    """A validated job: everything needed to create the store and compute it, picklable.

    ``mode`` is ``"new"``, ``"overwrite"`` or ``"resume"``.
    """

    store: str
    source: InputArray
    source_content: dict[str, Any]
    stack: ResolvedStack
    layout: OutputLayout
    root_attrs: dict[str, Any]
    fingerprint: str
    mode: str
    device: str

    @property
    def geometry_attrs(self) -> dict[str, Any]:
        """The ``featuremap`` attributes of ``features`` (:func:`~featuremap.io.placement.geometry_attrs`)."""
        return geometry_attrs(self.stack, self.source.placement)

    @property
    def weights(self) -> list[LayerArrays]:
        """The conv layers' weights and biases, to be stored beside the features."""
        return [
            LayerArrays(index, layer.weight, layer.bias)
            for index, layer in enumerate(self.stack.layers)
            if isinstance(layer, ConvLayer)
        ]


def _versions() -> dict[str, str]:
    # read from the installed metadata: a small job never imports distributed (0.15 s)
    from importlib.metadata import version

    return {
        "featuremap": __version__,
        "dask": version("dask"),
        "distributed": version("distributed"),
        **storage_versions(),
        "numpy": np.__version__,
    }


def _layers_hash(layers: Sequence[Layer]) -> str:
    """sha256 of the layers' metadata and weights (for jobs given layers instead of a pipeline)."""
    digest = hashlib.sha256(
        json.dumps([layer.to_dict() for layer in layers], sort_keys=True, default=str).encode()
    )
    for layer in layers:
        if isinstance(layer, ConvLayer):
            digest.update(layer.weight.tobytes())
            digest.update(b"" if layer.bias is None else layer.bias.tobytes())
    return digest.hexdigest()


def _choose_codecs(
    output: str, source: InputArray, stack: ResolvedStack, layout: OutputLayout
) -> OutputLayout:
    """``layout`` with each features array's codec decided (``output.codec: auto``: from a
    sample of the first blocks, computed here, unless the output is an object store)."""
    object_store = is_url(output)
    sample = layout.codec == "auto" and not object_store
    samples = sample_windows(source, stack, layout) if sample else None
    return apply_decision(layout, decide_codecs(layout, samples, object_store=object_store))


def _check_finite_metadata(layout: OutputLayout, root_attrs: Mapping[str, Any]) -> None:
    """Refuse a placement whose output coordinates overflow (a huge scale times the output's
    length) and any record JSON cannot hold: the output's ``zarr.json`` never holds ``NaN`` or
    ``Infinity``, which are not JSON."""
    for name, spacing, length in zip(
        layout.dims[-layout.ndim :],
        layout.placement.spatial,
        layout.shape[-layout.ndim :],
        strict=True,
    ):
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is what is looked for
            ends = spacing.values(length)[[0, -1]] if length else np.zeros(0)
        if not np.isfinite(ends).all():
            raise InputError(
                f"the output's {name} coordinates overflow (scale {spacing.scale:g}, translation "
                f"{spacing.translation:g}, {length} pixels): the input's physical placement is "
                "out of range; fix its scale and translation"
            )
    try:
        json.dumps(root_attrs, allow_nan=False, default=str)
    except ValueError as error:
        raise InputError(
            f"the job's records hold a number JSON cannot store ({error}); check the input's "
            "metadata and the pipeline's values for NaN or infinity"
        ) from None


def plan_job(
    layers_for: Callable[[int, tuple[float, ...] | None], Sequence[Layer]],
    *,
    spatial_ndim: int = 2,
    input: str,
    array: str | None,
    selection: InputSelection | None = None,
    output: str,
    options: OutputOptions | None = None,
    pipeline: Mapping[str, Any] | None,
    pipeline_hash: str | None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    resolve: Callable[[Sequence[Layer], Sizes, int], ResolvedStack] = resolve_stack,
) -> JobPlan:
    """Validate a job completely without writing anything.

    ``layers_for(in_channels, spacing)`` builds the layers (``spacing``: the input's physical
    pixel size per spatial axis, ``None`` without units) and ``resolve`` checks their geometry on
    the input (a pipeline's own, whose errors name its file); ``spatial_ndim`` 3 (a stack of 3-D
    layers) reads the input's ``z`` as a spatial axis; ``pipeline`` / ``pipeline_hash`` are
    the provenance (``None``: derived from the layers); ``options`` say how the features are
    stored.
    """
    device = parse_device(device)
    options = options or OutputOptions()
    input, output = normalize_store(os.fspath(input)), normalize_store(os.fspath(output))
    check_url(input)
    source = open_input(input, array, selection, spatial_ndim=spatial_ndim)
    layers = tuple(layers_for(source.channel_count, source.physical_spacing))
    if not layers:
        raise InputError("the pipeline has no layers; add at least one conv or pool layer")
    stack = resolve(layers, source.spatial_shape, source.channel_count)
    check_output_path(output, input)
    layout = plan_layout(source, stack, options, existing_chunks=None)
    check_limits(layout.shape, layout.blocks_total, options)
    pipeline_hash = pipeline_hash or _layers_hash(layers)
    identity = source.identity()
    versions = _versions()
    fingerprint = state.fingerprint(pipeline_hash, identity, versions["featuremap"])
    content = content_identity(input, source.name)
    mode, existing = plan_mode(
        output, resume=resume, overwrite=overwrite, fingerprint=fingerprint, input_content=content
    )
    if existing is not None and mode == "resume":  # the grid and encoding of the existing store
        recorded = existing.store_format
        options = replace(options, format=recorded.format, checksum=recorded.checksum)
        layout = plan_layout(source, stack, options, existing_chunks=existing.out_chunks)
        # the codecs the store was made with (auto's choice is never made again)
        layout = apply_decision(layout, recorded_decision(existing.root.get("output"), layout))
    else:
        layout = _choose_codecs(output, source, stack, layout)
    root_attrs = {
        "pipeline": dict(pipeline) if pipeline is not None else {"layers": stack.describe()},
        "pipeline_hash": pipeline_hash,
        "fingerprint": fingerprint,
        "input": identity,
        "input_content": content,
        "output": layout.to_dict(),
        "versions": versions,
        "device": device,
    }
    _check_finite_metadata(layout, root_attrs)
    return JobPlan(
        store=output,
        source=source,
        source_content=content,
        stack=stack,
        layout=layout,
        root_attrs=root_attrs,
        fingerprint=fingerprint,
        mode=mode,
        device=device,
    )
