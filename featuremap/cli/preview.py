"""``featuremap preview``: a PNG of the filters and a mosaic of feature maps."""

from __future__ import annotations

import click

from featuremap.cli._format import echo

__all__ = ["preview"]

EPILOG = """\b
Examples:
  featuremap preview demo-output/features.zarr -o preview.png
  featuremap preview out/gabor.zarr -o img3.png --image 3 --max-features 16
"""


@click.command(epilog=EPILOG)
@click.argument("store", metavar="STORE")
@click.option(
    "-o", "--output", "output", required=True, metavar="FILE.png", help="PNG file to write."
)
@click.option(
    "--image",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Image of the batch to show.",
)
@click.option(
    "--max-features",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Features (and filters) shown.",
)
def preview(store: str, output: str, image: int, max_features: int) -> None:
    """Write a picture of STORE's first conv filters and a mosaic of its feature maps."""
    from featuremap.apps.preview import render_preview
    from featuremap.io import open_features

    path = render_preview(open_features(store), output, image=image, max_features=max_features)
    echo(f"wrote {path}")
