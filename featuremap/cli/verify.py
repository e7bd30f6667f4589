"""``featuremap verify``: read every chunk of an output store and check it against its markers."""

from __future__ import annotations

import click

from featuremap.cli._format import echo, echo_json, plural, safe

__all__ = ["verify"]

EPILOG = """\b
Examples:
  featuremap verify out/gabor.zarr
  featuremap verify out/gabor.zarr --json
  featuremap verify out/gabor.zarr --repair   # then: featuremap run p.yaml --resume

Exit status: 0 when every block is intact, 1 when damage is found (also after --repair: the
damaged blocks still need 'featuremap run ... --resume'), 2 when STORE is not a feature store.
"""

#: Blocks listed by name in the plain report before it says "and N more".
SHOWN_BLOCKS = 20


def _blocks(blocks: list[list[int]]) -> str:
    shown = ", ".join("(" + ",".join(map(str, block)) + ")" for block in blocks[:SHOWN_BLOCKS])
    more = len(blocks) - SHOWN_BLOCKS
    return shown + (f" and {more} more" if more > 0 else "")


@click.command(epilog=EPILOG)
@click.argument("store", metavar="STORE")
@click.option(
    "--repair",
    is_flag=True,
    help="Delete damaged chunks and their done-markers so that 'run --resume' recomputes them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as a JSON object.")
def verify(store: str, repair: bool, as_json: bool) -> int:
    """Read everything STORE holds -- every metadata document, every chunk of every array (each
    carries a crc32c checksum) -- and check each block of features against its done-marker:
    report what is missing, corrupted or unreadable.

    Block indices are (batch blocks..., block_y, block_x).
    """
    from featuremap.jobs.verify import verify_store

    report = verify_store(store, repair=repair).to_dict()
    if as_json:
        echo_json(report)
    else:
        echo(
            f"{safe(store)}: {report['status']}, {report['blocks_done']} of "
            f"{plural(report['blocks_total'], 'block')} marked done, "
            f"{plural(report['chunks_read'], 'block')} read"
        )
        for kind, what in (
            ("corrupted", "corrupted chunks"),
            ("missing", "marked done but no chunk"),
            ("bad_marker", "unreadable done-markers"),
        ):
            if report[kind]:
                echo(f"{what}: {_blocks(report[kind])}")
        for name, chunks in report["arrays"].items():
            echo(f"damaged array {safe(name)}: {safe(', '.join(chunks[:3]))}")
        for name, error in report["documents"].items():
            echo(f"unreadable metadata {safe(name)}: {safe(error)}")
        if report["unrepairable"]:
            echo(
                "cannot be recomputed from the store: "
                f"{safe(', '.join(report['unrepairable']))}; replace it with "
                "'featuremap run PIPELINE --overwrite'"
            )
        if report["clean"]:
            echo("ok: no damage found")
        elif report["repaired"]:
            echo("repaired: damaged blocks cleared; finish with 'featuremap run PIPELINE --resume'")
        else:
            echo(
                "damage found: run 'featuremap verify --repair' then 'featuremap run PIPELINE --resume'"
            )
    return 0 if report["clean"] else 1
