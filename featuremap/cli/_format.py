"""How commands print: terminal-safe text, plurals, JSON, compact per-axis numbers, and the
per-layer geometry table of ``explain`` and ``inspect``."""

from __future__ import annotations

import json
import math
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

import click

from featuremap.errors import printable

__all__ = [
    "describe_layer",
    "echo",
    "echo_json",
    "format_pair",
    "format_quantities",
    "inert_warnings",
    "layer_summary",
    "layer_table",
    "overflow_warning",
    "physical_line",
    "plural",
    "print_rich",
    "safe",
]


#: :func:`featuremap.errors.printable`, the one escaping function, under its older name here.
safe = printable


def echo(message: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of ``message`` with every line made :func:`printable`: what any command
    prints reaches the terminal with its control characters shown, never obeyed (only the line
    breaks between its lines are kept)."""
    click.echo(_printable_lines(str(message)), err=err, nl=nl)


def _printable_lines(text: str) -> str:
    return "\n".join(printable(line) for line in text.split("\n"))


@contextmanager
def inert_warnings() -> Iterator[None]:
    """Show Python warnings (whose messages may quote data: a CRS, a name) in their usual form,
    every line :func:`printable`; the previous ``warnings.showwarning`` afterwards."""
    shown = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        (file or sys.stderr).write(_printable_lines(text.rstrip("\n")) + "\n")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def plural(count: int, noun: str) -> str:
    """``1 block``, ``2 blocks``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def overflow_warning(count: int) -> str:
    """The warning for values a store's dtype made infinite (``status``, ``inspect``, ``run``)."""
    return (
        f"warning: {plural(count, 'value')} finite as computed became +-inf in the stored dtype "
        "(float16 ends at +-65504); store float32 (output: {dtype: float32}) to keep them"
    )


def echo_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def format_pair(values: Sequence[Any]) -> str:
    """``(3, 3)`` -> ``"3"``, ``(3, 5)`` -> ``"3×5"``: per-axis values, y first, compact when equal."""
    return _compact([_number(v) for v in values])


def _compact(items: Sequence[str]) -> str:
    return items[0] if len(set(items)) == 1 else "×".join(items)


def format_quantities(values: Sequence[float], steps: Sequence[float]) -> str:
    """Per-axis physical values, each to the precision its axis's ``steps`` (the output pixel
    spacing) needs, compact when equal: a northing of 4 999 975 m on a 20 m grid is
    ``4999975``, not ``5e+06``; 2.125 µm on a 0.2 µm grid is ``2.125``."""
    return _compact([_quantity(v, s) for v, s in zip(values, steps, strict=True)])


def _quantity(value: float, step: float) -> str:
    """``value`` with three decimals beyond ``step``'s first significant digit, trailing zeros
    dropped: offsets sit on half input pixels, up to a few hundred times finer than the output
    spacing of a strided stack, and must not be rounded away."""
    if not (math.isfinite(value) and math.isfinite(step)) or step == 0:
        return _number(value)
    decimals = max(0, 3 - math.floor(math.log10(abs(step))))
    text = f"{value:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def _number(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_number(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_layer(layer: dict[str, Any]) -> str:
    """One short phrase for a layer's metadata dict: ``conv gabor (abs)``, ``max pool``, ``reduce max``."""
    kind = layer.get("type")
    if kind == "conv":
        activation = layer.get("activation", "none")
        name = f"conv {layer.get('bank', {}).get('name', '?')}"
        return name if activation == "none" else f"{name} ({activation})"
    if kind == "pool":
        return f"{layer.get('op')} pool"
    op = layer.get("op")
    return f"{kind} {op}" if op else str(kind)


def format_padding(padding: Any) -> str:
    """``[[t, b], [l, r]]`` (one pair per axis) compactly: ``1``, ``1×2`` (symmetric per axis)
    or ``0,1×0,1``."""
    if isinstance(padding, str):
        return padding
    if all(lo == hi for lo, hi in padding):
        return format_pair([lo for lo, _ in padding])
    return "×".join(f"{lo},{hi}" for lo, hi in padding)


def layer_table(
    title: str, input_shape: Sequence[int] | None, layers: Sequence[dict[str, Any]]
) -> Any:
    """A rich table: one row per layer (metadata as :meth:`featuremap.engine.stack.ResolvedStack.describe`),
    after an ``input`` row when ``input_shape`` ``(C, H, W)`` is known."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(safe(title)), title_justify="left")
    volume = bool(layers) and len(layers[0]["jump"]) == 3
    for column in (
        "#",
        "layer",
        "kernel",
        "stride",
        "padding",
        "dilation",
        "output (C×D×H×W)" if volume else "output (C×H×W)",
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
        console.print(_inert(renderable))


def _inert(renderable: Any) -> Any:
    """A rich renderable with every string :func:`printable` (rich keeps ESC as it is): a
    table's title and cells, a text, a string."""
    from rich.table import Table
    from rich.text import Text

    if isinstance(renderable, str):
        return printable(renderable)
    if isinstance(renderable, Text):
        return Text(printable(renderable.plain), style=renderable.style)
    if isinstance(renderable, Table):
        renderable.title = _inert(renderable.title) if renderable.title else renderable.title
        for column in renderable.columns:
            column.header = _inert(column.header)
            # rich keeps a column's cells here (Table.add_row appends to it)
            column._cells = [_inert(cell) for cell in column._cells]
    return renderable


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
    steps = [abs(jump) for jump in physical["jump"]]

    def quantities(key: str) -> str:
        return format_quantities(physical[key], steps)

    return (
        f"in {_compact(physical['units'])}: receptive field {quantities('receptive_field')}, "
        f"jump {quantities('jump')}, first output centre {quantities('offset')}"
    )
