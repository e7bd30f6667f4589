"""``featuremap export``: a finished store's features as a GeoTIFF or Cloud-Optimized GeoTIFF."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from featuremap.cli._format import echo, safe

__all__ = ["export"]

EPILOG = """\b
Examples:
  featuremap export out/s2-gabor.zarr --to cog -o s2-gabor.tif
  featuremap export out/weather.zarr --to geotiff --index time=0
"""


@click.command(epilog=EPILOG)
@click.argument("store", metavar="STORE")
@click.option(
    "--to",
    "fmt",
    type=click.Choice(["geotiff", "cog"]),
    default="geotiff",
    show_default=True,
    help="GeoTIFF (tiled, deflate) or Cloud-Optimized GeoTIFF (with overviews).",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE.tif",
    help="File to write (default: STORE's name with .tif, .cog.tif for a COG); never overwritten.",
)
@click.option(
    "--index",
    metavar="AXIS=I",
    help="The plane to export from a store with batch axes: time=0,n=2 (sizes 1 need none).",
)
def export(store: str, fmt: str, output: str | None, index: str | None) -> None:
    """Write STORE's features as one raster: a band per feature named by its label, the
    store's CRS and pixel grid, and featuremap's provenance as a JSON tag."""
    from featuremap.apps.export import (
        ExportFormat,
        ExportTarget,
        default_target,
        export_store,
        parse_index,
    )
    from featuremap.io import open_features

    kind = cast("ExportFormat", fmt)  # click.Choice has checked it
    path = Path(output) if output is not None else default_target(store, kind)
    target = ExportTarget(path, kind, parse_index(index))
    echo(f"wrote {safe(export_store(open_features(store), target))}")
