"""``featuremap banks``: the filter-bank library."""

from __future__ import annotations

import click

from featuremap.cli._format import echo_json, print_rich

__all__ = ["banks"]

EPILOG = """\b
Examples:
  featuremap banks
  featuremap banks gabor
  featuremap banks mr8 --json

In a pipeline: bank: {type: gabor, size: 15, orientations: 8}
"""


@click.command(epilog=EPILOG)
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def banks(name: str | None, as_json: bool) -> None:
    """List the filter banks, or show bank NAME's parameters and default filters."""
    from rich.table import Table

    from featuremap import banks as library

    if name is None:
        infos = [library.describe(bank) for bank in library.names()]
        if as_json:
            echo_json([{"name": info.name, "summary": info.summary} for info in infos])
            return
        table = Table(
            "bank",
            "summary",
            title="filter banks (featuremap banks NAME for parameters)",
            title_justify="left",
        )
        for info in infos:
            table.add_row(info.name, info.summary)
        print_rich(table)
        return
    info = library.describe(name)
    if as_json:
        echo_json(info.to_dict())
        return
    table = Table(
        "parameter",
        "default",
        "meaning",
        title=f"{info.name}: {info.summary}",
        title_justify="left",
    )
    for parameter, default, help_text in info.parameters:
        table.add_row(parameter, repr(default), help_text)
    print_rich(table)
