"""Planning a job: everything is validated and resolved once, before anything is written.

:func:`plan_job` opens the input, builds the layers, resolves the stack's geometry once
(:func:`featuremap.stack.resolve_stack`), sizes the output blocks, checks the output path (not
inside the input, parent writable, an existing store only with ``overwrite`` or ``resume``, never
one whose job is alive) and returns one frozen, picklable :class:`JobPlan` that creating the
store, block planning and the block tasks all read without re-parsing anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from featuremap import _device
from featuremap._version import __version__
from featuremap.errors import InputError
from featuremap.geometry import Pair, StackGeometry, ceil_div
from featuremap.io import (
    InputArray,
    InputSelection,
    LayerArrays,
    OutputLayout,
    OutputStore,
    local_path,
    nearest_existing,
    open_input,
    storage_versions,
)
from featuremap.io.placement import Placement
from featuremap.jobs import state
from featuremap.layers import ConvLayer, Layer
from featuremap.stack import ResolvedStack, resolve_stack

__all__ = [
    "MAX_BLOCK_BYTES",
    "MIN_BLOCK",
    "JobPlan",
    "existing_store",
    "output_placement",
    "physical_geometry",
    "plan_job",
    "plan_mode",
]

#: Default output blocks hold at least this many output pixels per spatial axis (a distributed
#: task costs ~2.5 ms, PERFORMANCE.md) unless the image is smaller ...
MIN_BLOCK = 256
#: ... and at most this many bytes of features, so a block fits comfortably in a worker.
MAX_BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class JobPlan:
    """A validated job: everything needed to create the store and compute it, picklable.

    ``mode`` is ``"new"``, ``"overwrite"`` or ``"resume"``.
    """

    store: str
    source: InputArray
    read_chunks: Pair
    stack: ResolvedStack
    layout: OutputLayout
    root_attrs: dict[str, Any]
    fingerprint: str
    mode: str
    device: str

    @property
    def geometry_attrs(self) -> dict[str, Any]:
        """The ``featuremap`` attributes of ``features``: the stack's geometry and its layers (a
        single layer's own kernel size, stride, padding and dilation too, DESIGN section 6)."""
        layers = self.stack.describe()
        attrs: dict[str, Any] = {}
        if len(layers) == 1:
            attrs.update(
                {key: layers[0][key] for key in ("kernel_size", "stride", "padding", "dilation")}
            )
        attrs.update(self.stack.geometry.to_dict())
        attrs["physical"] = physical_geometry(self.stack.geometry, self.source.placement)
        attrs["layers"] = layers
        return attrs

    @property
    def weights(self) -> list[LayerArrays]:
        """The conv layers' weights and biases, to be stored beside the features."""
        return [
            LayerArrays(index, layer.weight, layer.bias)
            for index, layer in enumerate(self.stack.layers)
            if isinstance(layer, ConvLayer)
        ]


def _versions() -> dict[str, str]:
    import dask
    import distributed

    return {
        "featuremap": __version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
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


def _block_chunks(
    storage: Pair, jump: Pair, out_hw: Pair, features: int, requested: Pair | None
) -> tuple[Pair, Pair]:
    """``(out_chunks, read_chunks)`` per spatial axis.

    Reads are whole multiples of the storage chunks (each stored chunk is read by one task)
    covering about one output block; output blocks default to the read chunk divided by the jump,
    at least :data:`MIN_BLOCK` pixels and at most :data:`MAX_BLOCK_BYTES` of features.
    """
    out_chunks = []
    for axis in range(2):
        if requested is None:
            read = storage[axis] * ceil_div(MIN_BLOCK * jump[axis], storage[axis])
            out = max(ceil_div(read, jump[axis]), MIN_BLOCK)
        else:
            out = requested[axis]
        out_chunks.append(min(out, out_hw[axis]))
    while (
        requested is None
        and features * out_chunks[0] * out_chunks[1] * 4 > MAX_BLOCK_BYTES
        and max(out_chunks) > MIN_BLOCK
    ):
        widest = int(out_chunks[1] > out_chunks[0])
        out_chunks[widest] = max(out_chunks[widest] // 2, MIN_BLOCK)
    read_y, read_x = (
        storage[axis] * ceil_div(out_chunks[axis] * jump[axis], storage[axis]) for axis in range(2)
    )
    return (out_chunks[0], out_chunks[1]), (read_y, read_x)


def _check_output_path(store: str, input_store: str) -> None:
    """The output may not be or contain the input, nor lie inside it; its folder must be writable."""
    out_path, in_path = local_path(store), local_path(input_store)
    if out_path is None:
        return
    if in_path is not None and (out_path == in_path or in_path in out_path.parents):
        raise InputError(
            f"output store {store!r} lies inside the input store {input_store!r}; choose an output "
            "outside it"
        )
    if in_path is not None and out_path in in_path.parents:
        raise InputError(
            f"output store {store!r} contains the input store {input_store!r}; choose another output"
        )
    if out_path.exists() and not out_path.is_dir():
        raise InputError(f"output store {store!r} exists and is a file, not a Zarr store")
    ancestor = nearest_existing(out_path.parent)
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(
            f"cannot create output store {store!r}: {str(ancestor)!r} is not a writable folder"
        )


def existing_store(store: str) -> OutputStore | None:
    """The existing output store, ``None`` when nothing is there; refuses non-featuremap data."""
    path = local_path(store)
    if path is not None and (not path.exists() or not any(path.iterdir())):
        return None
    try:
        output: OutputStore | None = OutputStore.open(store, "r")
    except (FileNotFoundError, ValueError):
        if path is None:
            return None
        output = None
    if output is None or not output.is_featuremap:
        raise InputError(
            f"output path {store!r} exists and is not a featuremap store; it is never replaced, "
            "choose another output"
        )
    return output


def plan_mode(
    store: str, *, resume: bool, overwrite: bool, fingerprint: str
) -> tuple[str, OutputStore | None]:
    """``"new"``, ``"overwrite"`` or ``"resume"`` for ``store``, and the existing store if any."""
    if resume and overwrite:
        raise InputError("resume and overwrite exclude each other; choose one")
    existing = existing_store(store)
    if existing is None:
        return "new", None
    # first: a live job's store is busy, whatever the flags
    state.check_takeover(existing, fingerprint=fingerprint if resume else None)
    if not (resume or overwrite):
        raise InputError(
            f"output store {store!r} already exists; use --overwrite to replace it or --resume "
            "to finish it"
        )
    return ("resume" if resume else "overwrite"), existing


def physical_geometry(stack: StackGeometry, placement: Placement) -> dict[str, Any]:
    """The stack's receptive field, jump and first output centre in the input's physical units
    (per axis ``y, x``; pixels where the input has no units)."""
    spacings = (placement.y, placement.x)
    return {
        "units": [spacing.unit or "pixel" for spacing in spacings],
        "receptive_field": [
            abs(s.scale) * rf for s, rf in zip(spacings, stack.receptive_field, strict=True)
        ],
        "jump": [s.scale * jump for s, jump in zip(spacings, stack.jump, strict=True)],
        "offset": [
            s.translation + s.scale * o for s, o in zip(spacings, stack.offset, strict=True)
        ],
    }


def output_placement(stack: StackGeometry, placement: Placement) -> Placement:
    """Where the output's pixels are: ``translation + scale * (offset + i * jump)`` per axis,
    the batch coordinates as they are, and the CRS with the output grid's transform."""
    y = placement.y.compose(stack.offset[0], stack.jump[0])
    x = placement.x.compose(stack.offset[1], stack.jump[1])
    mapping = None if placement.grid_mapping is None else placement.grid_mapping.for_grid(y, x)
    return replace(placement, y=y, x=x, grid_mapping=mapping)


def plan_job(
    layers_for: Callable[[int], Sequence[Layer]],
    *,
    input: str,
    array: str | None,
    selection: InputSelection | None = None,
    output: str,
    out_chunks: Pair | None,
    pipeline: Mapping[str, Any] | None,
    pipeline_hash: str | None,
    resume: bool = False,
    overwrite: bool = False,
    device: str = "auto",
) -> JobPlan:
    """Validate a job completely without writing anything.

    ``layers_for(in_channels)`` builds the layers; ``pipeline`` / ``pipeline_hash`` are the
    provenance (``None``: derived from the layers).
    """
    device = _device.parse_device(device)
    source = open_input(input, array, selection)
    layers = tuple(layers_for(source.channel_count))
    if not layers:
        raise InputError("the pipeline has no layers; add at least one conv or pool layer")
    stack = resolve_stack(layers, source.spatial_shape, source.channel_count)
    output = os.fspath(output)
    _check_output_path(output, input)
    pipeline_hash = pipeline_hash or _layers_hash(layers)
    identity = source.identity()
    versions = _versions()
    fingerprint = state.fingerprint(pipeline_hash, identity, versions["featuremap"])
    mode, existing = plan_mode(output, resume=resume, overwrite=overwrite, fingerprint=fingerprint)

    features, out_h, out_w = stack.output_shape
    if existing is not None and mode == "resume":
        out_chunks = existing.out_chunks  # the grid of the existing store
    block_chunks, read_chunks = _block_chunks(
        source.spatial_chunks, stack.geometry.jump, (out_h, out_w), features, out_chunks
    )
    layout = OutputLayout(
        batch_dims=source.batch_dims,
        shape=(*source.batch_shape, features, out_h, out_w),
        chunks=(*source.batch_chunks, features, *block_chunks),
        stack=stack.geometry,
        batch_kinds=source.batch_kinds,
        placement=output_placement(stack.geometry, source.placement),
        feature_labels=stack.feature_labels(source.channel_labels),
    )
    root_attrs = {
        "pipeline": dict(pipeline) if pipeline is not None else {"layers": stack.describe()},
        "pipeline_hash": pipeline_hash,
        "fingerprint": fingerprint,
        "input": identity,
        "versions": versions,
        "device": device,
    }
    return JobPlan(
        store=output,
        source=source,
        read_chunks=read_chunks,
        stack=stack,
        layout=layout,
        root_attrs=root_attrs,
        fingerprint=fingerprint,
        mode=mode,
        device=device,
    )
