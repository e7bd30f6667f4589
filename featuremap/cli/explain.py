"""``featuremap explain``: the geometry of a pipeline, layer by layer; runs nothing."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from featuremap.cli._format import (
    echo,
    echo_json,
    layer_summary,
    layer_table,
    physical_line,
    print_rich,
)
from featuremap.cli._options import join_repeated, refuse_together
from featuremap.errors import InputError

if TYPE_CHECKING:
    from featuremap.pipeline import Pipeline

__all__ = ["explain"]

EPILOG = """\b
Examples:
  featuremap explain pipelines/cnn-two-layer.yaml --input-shape 512,512
  featuremap explain pipelines/mr8.yaml --input demo-output/images.zarr --array images
  featuremap explain pipelines/gabor-texture.yaml --input-shape 256x256 --channels 3 --json
  featuremap explain pipelines/volume-gaussian.yaml --input-shape 64,512,512

Output pixel i of a layer is centred on input coordinate offset + i * jump and sees a window
of 'receptive field' input pixels.
"""


def _input_shape(value: str | None, ndim: int) -> tuple[int, ...] | None:
    """``H,W`` (``D,H,W`` for a pipeline of 3-D layers) as integers."""
    if value is None:
        return None
    parts = re.split(r"\s*[,x×]\s*", value.strip())
    wanted = "D,H,W" if ndim == 3 else "H,W"
    example = "64,512,512" if ndim == 3 else "512,512"
    if len(parts) != ndim or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise click.BadParameter(
            f"must be {wanted} with positive integers for this pipeline's {ndim}-D layers, "
            f"e.g. {example}; got {value!r}",
            param_hint="--input-shape",
        )
    return tuple(int(p) for p in parts)


def _first_conv_channels(pipeline: Pipeline) -> int:
    """Input channels the pipeline's first conv bank takes as it stands (1 for most banks)."""
    from featuremap.pipeline.layers import ConvSpec

    for spec in pipeline.layers:
        if isinstance(spec, ConvSpec):
            return spec.built_bank.in_channels
    return 1


@click.command(epilog=EPILOG)
@click.argument("pipeline", metavar="PIPELINE")
@click.option(
    "--input-shape",
    "input_shape",
    metavar="H,W",
    help="Image size to explain for (D,H,W for a pipeline of 3-D layers).",
)
@click.option(
    "--input",
    "input_store",
    metavar="STORE",
    help="Take the size and channels from this Zarr store.",
)
@click.option("--array", metavar="NAME", help="Array inside the --input group.")
@click.option("--axes", metavar="AXES", help="What each input axis is (as for run).")
@click.option("--level", metavar="LEVEL", help="OME-Zarr resolution level (as for run).")
@click.option(
    "--region",
    metavar="REGION",
    multiple=True,
    callback=join_repeated,
    help="Part of the input (as for run).",
)
@click.option(
    "--channels",
    type=click.IntRange(min=1),
    help="Input channels with --input-shape (default: what the first conv bank takes).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the geometry as JSON.")
def explain(
    pipeline: str,
    input_shape: str | None,
    input_store: str | None,
    array: str | None,
    axes: str | None,
    level: str | None,
    region: str | None,
    channels: int | None,
    as_json: bool,
) -> None:
    """Print PIPELINE's per-layer kernel, stride, padding, dilation, output shape, receptive
    field, jump and offset for an input size. Needs no cluster and computes nothing.

    Without --input-shape or --input, the pipeline's own input.store is read (metadata only);
    with a store, the receptive field, jump and offset are also given in its physical units.
    """
    from featuremap.io import open_input
    from featuremap.io.placement import physical_geometry
    from featuremap.pipeline.pipeline import load_pipeline

    refuse_together(input_shape=input_shape, input=input_store)
    refuse_together(input_shape=input_shape, array=array)
    spec = load_pipeline(pipeline).with_overrides(
        input=input_store, array=array, axes=axes, level=level, region=region
    )
    batch: tuple[int, ...] = ()
    placement = None
    shape = _input_shape(input_shape, spec.ndim)
    if shape is None:
        if spec.input.store is None:
            raise InputError(
                "explain needs an image size: give --input-shape H,W (D,H,W) or --input STORE "
                f"(pipeline {pipeline} has no input.store)"
            )
        if channels is not None:
            raise click.UsageError(
                "--channels goes with --input-shape; with a store the channels are read from it"
            )
        source = open_input(
            spec.input.store,
            spec.input.array,
            spec.input.selection(),
            spatial_ndim=spec.ndim,
        )
        shape, channels, batch = source.spatial_shape, source.channel_count, source.batch_shape
        placement = source.placement
    channels = channels or _first_conv_channels(spec)
    layers = spec.build_layers(channels, None if placement is None else placement.physical_spacing)
    stack = spec.resolve_stack(layers, shape, channels)
    described = stack.describe()
    physical = None if placement is None else physical_geometry(stack.geometry, placement)
    if as_json:
        report = {
            "pipeline": spec.name,
            "input": {"batch_shape": list(batch), "channels": channels, "shape": list(shape)},
            "layers": [layer_summary(layer) for layer in described],
        }
        if physical is not None:
            report["physical"] = physical
        echo_json(report)
        return
    batch_text = f" × batch {'×'.join(map(str, batch))}" if batch else ""
    print_rich(
        layer_table(
            f"{spec.name}: input {'×'.join(map(str, (channels, *shape)))}{batch_text}",
            (channels, *shape),
            described,
        )
    )
    if physical is not None:
        echo(physical_line(physical))
