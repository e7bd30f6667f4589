"""``featuremap demo``: sample textures, the default pipeline run on this machine, in one step."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from featuremap.cli._format import echo, plural, safe
from featuremap.cli._progress import progress_reporter

__all__ = ["demo"]

EPILOG = """\b
Examples:
  featuremap demo
  featuremap demo --output /tmp/fm-demo --workers 2
"""


@click.command(epilog=EPILOG)
@click.option(
    "--output",
    "output_dir",
    default="demo-output",
    show_default=True,
    metavar="DIR",
    help="Folder for images.zarr and features.zarr (both replaced).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Threads for a small job, else worker processes of the local cluster (default: cores).",
)
@click.option(
    "--size",
    type=click.IntRange(min=32, max=4096),
    default=256,
    show_default=True,
    help="Side of each sample image in pixels.",
)
@click.option(
    "--images",
    "n_images",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="Images in the sample batch.",
)
def demo(output_dir: str, workers: int | None, size: int, n_images: int) -> None:
    """Make a sample dataset (synthetic texture mosaics) in DIR/images.zarr, run the default
    pipeline (Gabor energy, pooled) on this machine (threads of this process for a small sample,
    else a local cluster) into DIR/features.zarr, and show how to open the result."""
    from featuremap.apps.demo import run_demo

    with progress_reporter() as progress:
        summary = run_demo(
            output_dir, n_images=n_images, size=size, workers=workers, progress=progress
        )
    features = shlex.quote(str(Path(summary.store)))
    echo(
        f"{summary.status}: {plural(summary.blocks_total, 'block')} in {summary.seconds:.1f} s "
        f"-> {safe(summary.store)}"
    )
    echo("open it with:")
    echo(
        f'  python -c "import featuremap; print(featuremap.open({str(summary.store)!r}).to_xarray())"'
    )
    echo(f'  python -c "import xarray; print(xarray.open_zarr({str(summary.store)!r}))"')
    echo(f"  featuremap inspect {features}")
    echo(f"  featuremap preview {features} -o preview.png")
