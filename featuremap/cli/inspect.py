"""``featuremap inspect``: what an output store holds and how it was made."""

from __future__ import annotations

import json
from typing import Any

import click

from featuremap.cli._format import (
    echo,
    echo_json,
    format_pair,
    layer_summary,
    layer_table,
    overflow_warning,
    physical_line,
    plural,
    print_rich,
    safe,
)

__all__ = ["inspect"]

EPILOG = """\b
Examples:
  featuremap inspect demo-output/features.zarr
  featuremap inspect out/mr8.zarr --json | jq .geometry
"""

#: Root attributes shown as provenance lines (the rest is in --json).
PROVENANCE_KEYS = ("fingerprint", "input", "versions", "device", "started", "finished", "error")


def _report(store: Any, status: dict[str, Any]) -> dict[str, Any]:
    from featuremap.io.formats import StoreFormat

    data = store.data
    recorded = store.attrs.get("output")
    storage = StoreFormat.from_dict(recorded if isinstance(recorded, dict) else {})
    return {
        "store": store.path,
        "dims": list(store.dims),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "chunks": list(data.chunksize),
        "storage": {**storage.to_dict(), "zarr_format": storage.zarr_format},
        "codec": _codec(recorded if isinstance(recorded, dict) else {}),
        "geometry": store.geometry.to_dict(),
        "physical": store.geometry_attrs.get("physical"),
        "layers": [layer_summary(layer) for layer in store.layers],
        "status": status,
        "provenance": store.attrs,
    }


def _codec(recorded: dict[str, Any]) -> dict[str, Any]:
    """The features' codec and, under ``output.codec: auto``, each array's choice and the
    share of the raw bytes each candidate stored in the sample."""
    choice = recorded.get("codec_choice")
    return {"codec": recorded.get("codec"), **({"choice": choice} if choice else {})}


def _codec_line(codec: dict[str, Any]) -> str:
    """``none (auto: lz4 would store 89 %, zstd 87 % of the raw bytes)``, then each pyramid
    level's choice."""
    choice = codec.get("choice")
    if not choice:
        return str(codec["codec"])
    if choice.get("reason") not in ("sampled", "recorded"):
        return f"{codec['codec']} ({choice.get('asked')}: {choice.get('reason')})"
    parts = []
    for path, chosen in choice.get("arrays", {}).items():
        where = "" if path == "features" else f"{path}: "
        stored = list((chosen.get("stored") or {}).items())
        if not stored:
            parts.append(f"{where}{chosen['codec']}")
            continue
        (name, fraction), *rest = stored
        others = "".join(f", {other} {share:.0%}" for other, share in rest)
        parts.append(
            f"{where}{chosen['codec']} ({choice['asked']}: {name} would store {fraction:.0%}"
            f"{others} of raw)"
        )
    return "; ".join(parts)


def _line(value: Any) -> str:
    text = (
        value if isinstance(value, str) else json.dumps(value, default=str, separators=(", ", ": "))
    )
    return text if len(text) <= 150 else text[:147] + "..."


@click.command(epilog=EPILOG)
@click.argument("store", metavar="STORE")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def inspect(store: str, as_json: bool) -> None:
    """Show output STORE's features (shape, dims, chunks), every layer with its geometry, the
    effective receptive field, jump and offset, and the provenance (pipeline, input, versions)."""
    from featuremap.io import open_features
    from featuremap.jobs.state import read_status

    features = open_features(store)
    report = _report(features, read_status(store))
    if as_json:
        echo_json(report)
        return
    geometry, status = report["geometry"], report["status"]
    echo(safe(report["store"]))
    echo(
        f"  features  {' × '.join(f'{d}={n}' for d, n in zip(report['dims'], report['shape'], strict=False))}"
        f"  {report['dtype']}, chunks {report['chunks']}"
    )
    storage = report["storage"]
    echo(
        f"  storage   {storage['format']} (Zarr v{storage['zarr_format']}), "
        f"checksum {storage['checksum']}"
    )
    echo(f"  codec     {safe(_codec_line(report['codec']))}")
    echo(
        f"  geometry  receptive field {format_pair(geometry['receptive_field'])}, "
        f"jump {format_pair(geometry['jump'])}, offset {format_pair(geometry['offset'])} "
        "(output pixel i is centred on input pixel offset + i·jump)"
    )
    if report["physical"]:
        echo(f"  physical  {physical_line(report['physical'])}")
    echo(
        f"  status    {status['status']}, {status['blocks_done']} of "
        f"{plural(status['blocks_total'], 'block')}"
    )
    if status.get("overflowed"):
        echo(f"  {overflow_warning(status['overflowed'])}")
    pipeline = report["provenance"].get("pipeline") or {}
    echo(
        f"  pipeline  {safe(pipeline.get('name'))} ({plural(len(pipeline.get('layers', [])), 'layer')})"
    )
    for key in PROVENANCE_KEYS:
        if report["provenance"].get(key) is not None:
            echo(f"  {key:<9} {safe(_line(report['provenance'][key]))}")
    print_rich(layer_table("layers", None, features.layers))
