"""Pipeline files: a validated, declarative description of a feature-extraction job.

A pipeline names its input and output stores and a stack of layers (DESIGN section 5)::

    name: gabor-texture
    input:  {store: data/images.zarr, array: images, channel_axis: -3}
    output: {store: out/gabor.zarr, chunks: [512, 512]}
    layers:
      - conv:
          bank: {type: gabor, size: 15, orientations: 8, frequencies: [0.1, 0.2]}
          stride: 2
          padding: same
          activation: abs
      - pool: {type: max, kernel_size: 2, stride: 2}
      - reduce: {op: max, groups: 8}
      - conv:
          bank: {type: file, path: weights/layer2.npz}

Each layer kind's keys and defaults are in its module of :mod:`featuremap.pipeline.layers`
(``conv``, ``pool``, ``reduce``).

Every refused value raises one :class:`~featuremap.errors.InputError` line naming its place, e.g.
``layers[1].conv.stride: must be an integer >= 1 or a list [y, x] of them, got -1 (x.yaml)``
(layers are counted from 0, like the YAML list; the schema is :mod:`.spec`). Paths resolve against the pipeline file's folder
(``load_pipeline(dict)``: the current directory or ``base_dir``); URLs such as ``s3://...`` are
kept as they are.

A pipeline file is read with a safe loader and bounded before anything is built from it
(:mod:`.reader`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from featuremap._files import open_regular
from featuremap._validation import parse_text
from featuremap.engine.geometry import Sizes
from featuremap.engine.layers import Layer
from featuremap.engine.stack import ResolvedStack, resolve_stack, stack_ndim
from featuremap.errors import InputError, describe, spoken
from featuremap.io.axes import parse_axes_spec
from featuremap.pipeline.layers import (
    LayerSpec,
    build_layers,
    layers_to_dicts,
    parse_layers,
)
from featuremap.pipeline.reader import parse_yaml, read_yaml_text
from featuremap.pipeline.schema import (
    InputSpec,
    OutputSpec,
    field_value,
    mapping,
    parse_channels,
    parse_level,
    parse_region,
    resolve_path,
)

__all__ = ["InputSpec", "OutputSpec", "Pipeline", "load_pipeline"]

PIPELINE_KEYS = ("name", "input", "output", "layers")


def _override_name(key: str) -> str:
    """An override's name as the caller gave it: ``--input`` or ``input``."""
    return spoken(f"--{key}", key)


def _override_text(key: str, value: Any) -> str:
    """A store or array override (``--input`` / ``input=``): a non-empty string."""
    name = _override_name(key)
    return field_value("", name, lambda v: parse_text(name, v), value)


# -- the pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline. Build it with :func:`load_pipeline`.

    Attributes
    ----------
    name : str
    input, output : InputSpec, OutputSpec
        Store paths are absolute (or URLs); ``None`` where the command line must give them.
    layers : tuple of LayerSpec
        The typed layer specs (:mod:`featuremap.pipeline.layers`), every default filled in;
        ``to_dict()`` writes them back in the file's schema, and that loads back.
    source : str or None
        Absolute path of the YAML file, if the pipeline came from one.
    base_dir : pathlib.Path
        The folder relative paths were resolved against.
    """

    name: str
    input: InputSpec
    output: OutputSpec
    layers: tuple[LayerSpec, ...]
    source: str | None = None
    base_dir: Path = field(default_factory=Path.cwd)

    def with_overrides(
        self,
        *,
        input: str | None = None,
        array: str | None = None,
        output: str | None = None,
        axes: Any = None,
        level: Any = None,
        region: Any = None,
        channels: Any = None,
    ) -> Pipeline:
        """A copy with the input store, input array, output store or input selection replaced.

        These come from the command line (``--input``, ``--array``, ``--output``, ``--axes``,
        ``--level``, ``--region``, ``--channels``), so relative paths resolve against the current
        directory, not the pipeline's folder. ``--input`` drops the file's ``input.array`` (a
        name inside the file's store; ``--array`` names one in the new store).
        """
        cwd = Path.cwd()
        inputs, outputs = self.input, self.output
        if input is not None:
            # the file's input.array names a node of the file's store, not of this one
            store = resolve_path(_override_text("input", input), cwd)
            inputs = replace(inputs, store=store, array=None)
        if array is not None:
            inputs = replace(inputs, array=_override_text("array", array))
        if output is not None:
            outputs = replace(outputs, store=resolve_path(_override_text("output", output), cwd))
        selection: dict[str, Any] = {
            key: field_value("", _override_name(key), parse, value)
            for key, parse, value in (
                ("axes", parse_axes_spec, axes),
                ("level", parse_level, level),
                ("region", parse_region, region),
                ("channels", parse_channels, channels),
            )
            if value is not None
        }
        if selection:
            inputs = replace(inputs, **selection)
        return replace(self, input=inputs, output=outputs)

    def to_dict(self) -> dict[str, Any]:
        """The pipeline as run: normalised, JSON-serialisable, loadable by :func:`load_pipeline`."""
        return {
            "name": self.name,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "layers": layers_to_dicts(self.layers),
        }

    @property
    def ndim(self) -> int:
        """The stack's spatial rank: 3 where its layers are 3-D (then the input's ``z`` is
        filtered, not a batch axis), else 2."""
        return stack_ndim(self.layers)

    def weight_files(self) -> list[str]:
        """Local weight files the layers read, in layer order."""
        return [path for spec in self.layers for path in spec.weight_files()]

    def fingerprint(self) -> str:
        """sha256 (hex) of what determines the result: the pipeline and its weight files' bytes.

        The output store's path is left out, so a store that was moved still resumes.
        """
        data = self.to_dict()
        data["output"]["store"] = None
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
        for path in self.weight_files():
            try:
                digest.update(_file_digest(path))
            except OSError as error:
                raise self.located(f"cannot read weight file {path!r}: {error.strerror}") from None
        return digest.hexdigest()

    def build_layers(
        self, in_channels: int, spacing: tuple[float, ...] | None = None
    ) -> list[Layer]:
        """The engine's layers for an input with ``in_channels`` channels (banks adapted to
        the channels, every layer's channel count checked; ``spacing``: the input's pixel size
        per spatial axis, for sigmas in physical units); errors name the layer and the file.
        Geometry needs the image size and is checked by :meth:`resolve_stack`."""
        try:
            return build_layers(self.layers, in_channels, spacing)
        except InputError as error:
            raise self.located(str(error)) from None

    def located(self, message: str) -> InputError:
        """An :class:`InputError` whose message names the pipeline file it comes from."""
        return InputError(f"{message} ({self.source})" if self.source else message)

    def resolve_stack(self, layers: Sequence[Layer], shape: Sizes, channels: int) -> ResolvedStack:
        """:func:`featuremap.engine.stack.resolve_stack`, its errors naming the pipeline file."""
        try:
            return resolve_stack(layers, shape, channels)
        except InputError as error:
            raise self.located(str(error)) from None


def _file_digest(path: str) -> bytes:
    """sha256 of a file, read in pieces (weight files may be large)."""
    descriptor, _ = open_regular(path, "weight file", "give a .npy, .npz or .safetensors file")
    with os.fdopen(descriptor, "rb") as file:
        return hashlib.file_digest(file, "sha256").digest()


# -- loading -----------------------------------------------------------------------------------


def _parse_pipeline(data: Any, base_dir: Path, source: str | None, default_name: str) -> Pipeline:
    spec = mapping(data, "", PIPELINE_KEYS, required=("layers",))
    name = spec.get("name")
    layers = parse_layers(spec["layers"], base_dir)
    return Pipeline(
        name=default_name
        if name is None
        else field_value("", "name", lambda v: parse_text("name", v), name),
        input=InputSpec.from_dict(spec.get("input"), base_dir=base_dir),
        output=OutputSpec.from_dict(spec.get("output"), base_dir=base_dir, ndim=stack_ndim(layers)),
        layers=layers,
        source=source,
        base_dir=base_dir,
    )


def load_pipeline(
    path_or_dict: str | os.PathLike[str] | Mapping[str, Any] | Pipeline,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> Pipeline:
    """Read and validate a pipeline from a YAML file or a mapping.

    Parameters
    ----------
    path_or_dict : path, mapping or Pipeline
        A YAML file (read with a safe loader), or the same structure as a mapping. A
        :class:`Pipeline` is returned unchanged.
    base_dir : path, optional
        Folder relative paths resolve against: default the YAML file's folder, or the current
        directory for a mapping.

    Returns
    -------
    Pipeline

    Raises
    ------
    InputError
        One line naming the key and its place (and the file), and what is allowed.
    """
    if isinstance(path_or_dict, Pipeline):
        return path_or_dict
    if isinstance(path_or_dict, Mapping):
        folder = Path(base_dir) if base_dir is not None else Path.cwd()
        return _parse_pipeline(path_or_dict, folder.absolute(), None, "pipeline")
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise InputError(
            f"a pipeline must be a YAML file path or a mapping, got {describe(path_or_dict)}"
        )
    path = Path(path_or_dict)
    folder = Path(base_dir) if base_dir is not None else path.parent
    text = read_yaml_text(path)  # its errors name the file already
    try:
        data = parse_yaml(text)
        return _parse_pipeline(data, folder.absolute(), str(path.absolute()), path.stem)
    except InputError as error:
        raise InputError(f"{error} ({path})") from None
