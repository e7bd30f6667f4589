"""``featuremap jobs``: the jobs of a cluster, who submitted them and how far they got."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from featuremap.cli._connect import cluster_connection
from featuremap.cli._format import echo, echo_json, safe
from featuremap.cli._options import cluster_options

__all__ = ["jobs"]

EPILOG = """\b
Examples:
  featuremap jobs --scheduler tcp://scheduler:8786
  featuremap jobs --all --json       # finished jobs too (history), as JSON
  featuremap cancel 3f2a9c01b7d4     # stop one
  featuremap logs 3f2a9c01b7d4       # read its log

An 'interrupted' job (its scheduler or driver was lost) is finished with
'featuremap run PIPELINE --output STORE --resume'.

A scheduler started with '--preload featuremap.jobs.dashboard' shows the
same list live at http://SCHEDULER:8787/featuremap/jobs (named on stderr).
"""

#: The table's columns: heading and the record's field.
COLUMNS = (
    ("ID", "id"),
    ("STATE", "state"),
    ("BLOCKS", "blocks"),
    ("PRIO", "priority"),
    ("SUBMITTER", "submitter"),
    ("PIPELINE", "pipeline"),
    ("STARTED", "started"),
    ("STORE", "store"),
)


def _row(record: Any) -> list[str]:
    values = {
        **record.to_dict(),
        "id": record.id[:12],
        "blocks": f"{record.blocks_done}/{record.blocks_total}",
        "pipeline": record.pipeline or "-",
    }
    return [safe(values[field]) for _, field in COLUMNS]


def _table(rows: Sequence[list[str]]) -> str:
    lines = [[heading for heading, _ in COLUMNS], *rows]
    widths = [max(len(line[column]) for line in lines) for column in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


@click.command(epilog=EPILOG)
@cluster_options
@click.option("--all", "show_all", is_flag=True, help="Include finished jobs (history).")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as a JSON list.")
def jobs(scheduler: str | None, show_all: bool, as_json: bool, **tls: Any) -> None:
    """List the queued and running featuremap jobs of the cluster at --scheduler: id, state,
    blocks done of total, priority, submitter, pipeline, start time, store."""
    from featuremap.apps.jobs import job_documents
    from featuremap.apps.jobs import jobs as list_jobs
    from featuremap.jobs.dashboard_page import served_page

    with cluster_connection(scheduler, required=True, **tls) as client:
        records = list_jobs(client, finished=show_all)
        page = None if as_json else served_page(client)
    if as_json:
        echo_json(job_documents(records))
        return
    echo(_table([_row(record) for record in records]))
    if page is not None:
        echo(f"featuremap: jobs page at {page}", err=True)
    for record in records:
        if record.state == "interrupted":
            echo(
                f"{record.id[:12]}: interrupted; finish it with 'featuremap run PIPELINE "
                f"--output {safe(record.store)} --resume'"
            )
