"""Options and output helpers shared by the commands.

Nothing here imports Dask, Zarr or the runner: ``featuremap --help`` must stay fast, so every
command imports its heavy machinery inside its own function.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from featuremap._vocabulary import DEVICES
from featuremap.errors import InputError

__all__ = [
    "echo_json",
    "format_pair",
    "job_options",
    "make_security",
    "physical_line",
    "plural",
    "prepare_job",
    "progress_reporter",
    "refuse_together",
    "safe",
    "selection_options",
    "store_options",
    "tls_options",
]

#: A non-terminal gets a progress line at least every this many seconds ...
PLAIN_PROGRESS_SECONDS = 2.0
#: ... or whenever this fraction of the blocks has finished since the last line.
PLAIN_PROGRESS_FRACTION = 0.1

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _stack(*decorators: Decorator) -> Decorator:
    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


#: ``--input``, ``--array``, ``--output``: override the pipeline's stores (relative to the cwd).
store_options = _stack(
    click.option(
        "--input",
        "input_store",
        metavar="STORE",
        help="Input Zarr store (overrides the pipeline's input.store).",
    ),
    click.option(
        "--array", metavar="NAME", help="Array inside the input group (overrides input.array)."
    ),
    click.option(
        "--output",
        "output_store",
        metavar="STORE",
        help="Output Zarr store (overrides output.store).",
    ),
)

#: ``--axes``, ``--level``, ``--region``, ``--channels``: which part of the input, read how.
selection_options = _stack(
    click.option(
        "--axes",
        metavar="AXES",
        help="What each input axis is: letters (tczyx, nyxc), names (time,band,lat,lon) or "
        "name=kind pairs (lat=y,lon=x,band=c). Overrides input.axes.",
    ),
    click.option(
        "--level",
        metavar="LEVEL",
        help="OME-Zarr resolution level: index (0 = full resolution) or dataset path.",
    ),
    click.option(
        "--region",
        metavar="REGION",
        help="Part of the input, per axis name or kind: z=10:20,y=0:4096,x=0:4096 (stop excluded).",
    ),
    click.option(
        "--channels",
        metavar="CHANNELS",
        help="Channels to read: indices (0,2) or labels (DAPI,GFP). Overrides input.channels.",
    ),
)

#: TLS for ``tls://`` scheduler addresses, with Dask's own option names.
tls_options = _stack(
    click.option(
        "--tls-ca-file",
        type=click.Path(exists=True, dir_okay=False),
        help="CA certificate (PEM) for a tls:// scheduler.",
    ),
    click.option(
        "--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Client certificate (PEM)."
    ),
    click.option(
        "--tls-key", type=click.Path(exists=True, dir_okay=False), help="Client private key (PEM)."
    ),
)

#: What ``run`` and ``submit`` share besides the scheduler: device, overwrite/resume, TLS.
job_options = _stack(
    click.option(
        "--device",
        type=click.Choice(DEVICES),
        default="auto",
        show_default=True,
        help="Where blocks are computed: a GPU when a worker has one (auto), or forced.",
    ),
    click.option("--overwrite", is_flag=True, help="Replace an existing output store."),
    click.option(
        "--allow-large",
        is_flag=True,
        help="Run outputs over 1 TiB or 10 million blocks (refused otherwise, as likely mistakes).",
    ),
    click.option(
        "--resume", is_flag=True, help="Finish an interrupted job: compute only missing blocks."
    ),
    tls_options,
)


def refuse_together(**flags: Any) -> None:
    """Raise a usage error when more than one of ``flags`` is set (``--a`` and ``--b`` conflict)."""
    given = [name for name, value in flags.items() if value not in (None, False)]
    if len(given) > 1:
        names = " and ".join(f"--{name.replace('_', '-')}" for name in given)
        raise click.UsageError(f"{names} cannot be used together; choose one")


def make_security(
    scheduler: str | None, ca_file: str | None, cert: str | None, key: str | None
) -> Any:
    """A ``distributed.security.Security`` for the TLS flags, or ``None`` when none is given.

    Raises
    ------
    InputError
        Only some of the three files given, or a ``tls://`` / ``wss://`` address without them.
    """
    from featuremap.cluster.client import ENCRYPTED_SCHEMES, scheme_of

    files = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(files.values()):
        if scheduler is not None and scheme_of(scheduler) in ENCRYPTED_SCHEMES:
            raise InputError(
                f"scheduler {safe(scheduler)} uses TLS: give --tls-ca-file, --tls-cert and --tls-key"
            )
        return None
    missing = [name for name, value in files.items() if not value]
    if missing:
        raise InputError(
            f"TLS needs all of --tls-ca-file, --tls-cert and --tls-key; missing {', '.join(missing)}"
        )
    from distributed.security import Security

    return Security(
        tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True
    )


def prepare_job(
    pipeline: str,
    scheduler: str | None,
    *,
    input_store: str | None,
    array: str | None,
    output_store: str | None,
    device: str,
    overwrite: bool,
    resume: bool,
    allow_large: bool,
    tls_ca_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    axes: str | None = None,
    level: str | None = None,
    region: str | None = None,
    channels: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """What ``run`` and ``submit`` share: the pipeline with the command line's overrides, and the
    keyword arguments both pass on (scheduler, security, device, overwrite, resume)."""
    from featuremap.pipeline.pipeline import load_pipeline

    refuse_together(overwrite=overwrite, resume=resume)
    spec = load_pipeline(pipeline).with_overrides(
        input=input_store,
        array=array,
        output=output_store,
        axes=axes,
        level=level,
        region=region,
        channels=channels,
    )
    security = make_security(scheduler, tls_ca_file, tls_cert, tls_key)
    return spec, {
        "scheduler": scheduler,
        "security": security,
        "device": device,
        "overwrite": overwrite,
        "resume": resume,
        "allow_large": allow_large,
    }


def safe(text: Any) -> str:
    """``text`` with control characters (ESC, OSC and other C0/C1 codes, DEL) escaped, so that
    a string from a pipeline, a store or a path can never drive the terminal it is printed to."""
    return "".join(
        char
        if char.isprintable() or char in "\t"
        else char.encode("unicode_escape").decode("ascii")
        for char in str(text)
    )


def plural(count: int, noun: str) -> str:
    """``1 block``, ``2 blocks``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def echo_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def format_pair(values: Sequence[Any]) -> str:
    """``(3, 3)`` -> ``"3"``, ``(3, 5)`` -> ``"3×5"``: per-axis values, y first, compact when equal."""
    items = [_number(v) for v in values]
    return items[0] if len(set(items)) == 1 else "×".join(items)


def _number(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_number(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


class _PlainProgress:
    """Progress lines on stderr for logs: every ~10 % or ~2 s, and at the end."""

    def __init__(self) -> None:
        self.start = self.last_time = 0.0
        self.first_done: int | None = None
        self.last_done = -1

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.first_done is None:
            # The rate counts from the first report: cluster start-up and skipped blocks are not work.
            self.first_done, self.start, self.last_time = done, now, now
        due = (
            done == total
            or now - self.last_time >= PLAIN_PROGRESS_SECONDS
            or done - self.last_done >= PLAIN_PROGRESS_FRACTION * total
        )
        if not due or done == self.last_done:
            return
        self.last_time, self.last_done = now, done
        rate = (done - self.first_done) / max(now - self.start, 1e-9)
        eta = f", ETA {(total - done) / rate:.0f} s" if rate > 0 and done < total else ""
        percent = 100 * done // total if total else 100
        click.echo(
            f"featuremap: {done}/{plural(total, 'block')} ({percent}%), {rate:.1f} blocks/s{eta}",
            err=True,
        )


@contextmanager
def progress_reporter(enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback: a live rich bar on a terminal, plain lines otherwise."""
    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield _PlainProgress()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f} blocks/s" if task.speed else "- blocks/s")

    with Progress(
        TextColumn("blocks"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("run", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def describe_layer(layer: dict[str, Any]) -> str:
    """One short phrase for a layer's metadata dict: ``conv gabor (abs)``, ``max pool``, ``reduce max``."""
    kind = layer.get("type")
    if kind == "conv":
        activation = layer.get("activation", "none")
        name = f"conv {layer.get('bank', {}).get('name', '?')}"
        return name if activation == "none" else f"{name} ({activation})"
    if kind == "pool":
        return f"{layer.get('op')} pool"
    return f"reduce {layer.get('op')}"


def format_padding(padding: Any) -> str:
    """``[[t, b], [l, r]]`` compactly: ``1``, ``1×2`` (symmetric per axis) or ``0,1×0,1``."""
    if isinstance(padding, str):
        return padding
    (top, bottom), (left, right) = padding
    if top == bottom and left == right:
        return format_pair((top, left))
    return f"{top},{bottom}×{left},{right}"


def layer_table(
    title: str, input_shape: Sequence[int] | None, layers: Sequence[dict[str, Any]]
) -> Any:
    """A rich table: one row per layer (metadata as :meth:`featuremap.engine.stack.ResolvedStack.describe`),
    after an ``input`` row when ``input_shape`` ``(C, H, W)`` is known."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(safe(title)), title_justify="left")
    for column in (
        "#",
        "layer",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "output (C×H×W)",
        "receptive field",
        "jump",
        "offset",
    ):
        table.add_column(column, justify="left" if column == "layer" else "right")
    if input_shape is not None:
        table.add_row("", "input", "", "", "", "", "×".join(map(str, input_shape)), "1", "1", "0")
    for index, layer in enumerate(layers):
        table.add_row(
            str(index),
            escape(safe(describe_layer(layer))),
            format_pair(layer["kernel_size"]),
            format_pair(layer["stride"]),
            format_padding(layer["padding"]),
            format_pair(layer["dilation"]),
            "×".join(map(str, layer["output_shape"])),
            format_pair(layer["receptive_field"]),
            format_pair(layer["jump"]),
            format_pair(layer["offset"]),
        )
    return table


def print_rich(*renderables: Any) -> None:
    """Print to stdout with rich; wide enough on a pipe that tables are not squeezed."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160, soft_wrap=False)
    for renderable in renderables:
        console.print(renderable)


#: Metadata keys kept per layer in --json output (a bank's long filter list is left out).
LAYER_SUMMARY_KEYS = (
    "type",
    "op",
    "activation",
    "groups",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "in_channels",
    "out_channels",
    "output_shape",
    "receptive_field",
    "jump",
    "offset",
)


def layer_summary(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's metadata for JSON output: geometry and shapes, the bank by name and parameters."""
    summary = {key: layer[key] for key in LAYER_SUMMARY_KEYS if key in layer}
    if "bank" in layer:
        summary["bank"] = {"name": layer["bank"].get("name"), "params": layer["bank"].get("params")}
    return summary


def physical_line(physical: dict[str, Any]) -> str:
    """``in µm: receptive field 4.25×4.25, jump 1×1, first centre 2.13,2.13`` for a geometry in
    physical units (:func:`featuremap.io.placement.physical_geometry`)."""
    units = physical["units"]
    unit = units[0] if units[0] == units[1] else "×".join(units)
    return (
        f"in {unit}: receptive field {format_pair(physical['receptive_field'])}, jump "
        f"{format_pair(physical['jump'])}, first output centre {format_pair(physical['offset'])}"
    )
