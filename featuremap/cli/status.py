"""``featuremap status``: how far a job got, from its output store alone."""

from __future__ import annotations

import click

from featuremap.cli._format import echo, echo_json, overflow_warning, plural, safe

__all__ = ["status"]

EPILOG = """\b
Examples:
  featuremap status out/gabor.zarr
  featuremap status out/gabor.zarr --json    # {"status": ..., "blocks_done": ..., "blocks_total": ...}

'interrupted' means running with a heartbeat that stopped changing (its scheduler, driver or CLI
was lost); a job on another host is judged by its heartbeat changing, never by that host's clock;
finish it, or a 'cancelled' one, with 'featuremap run ... --resume'.
"""


@click.command(epilog=EPILOG)
@click.argument("store", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print the status as a JSON object.")
def status(store: str, as_json: bool) -> None:
    """Print the job status of output STORE: running, interrupted, complete, failed or cancelled,
    with the blocks done of the total, and where the job's log is."""
    from featuremap.jobs.state import read_status

    info = read_status(store)
    if as_json:
        echo_json(info)
        return
    done, total = info["blocks_done"], info["blocks_total"]
    percent = f" ({100 * done // total}%)" if total else ""
    name = f" ({safe(info['name'])})" if info.get("name") else ""
    echo(f"{safe(store)}{name}: {info['status']}, {done} of {plural(total, 'block')} done{percent}")
    if info["status"] == "complete" and done < total:
        echo(
            f"warning: no readable done-marker for {plural(total - done, 'block')} of a complete "
            f"store; check it with 'featuremap verify {safe(store)}'"
        )
    if info.get("overflowed"):
        echo(overflow_warning(info["overflowed"]))
    if info.get("error"):
        echo(f"error: {safe(info['error'])}")
    if info["status"] in ("interrupted", "cancelled", "failed"):
        echo(
            f"finish it with: featuremap run PIPELINE --output {safe(store)} --resume"
            + ("" if info["status"] != "interrupted" else " (its scheduler or driver was lost)")
        )
    if info.get("log"):
        echo(f"log: {safe(info['log'])} (featuremap logs {safe(store)})")
