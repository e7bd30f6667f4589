"""The options commands share, and how they become the library's arguments.

Nothing here imports Dask, Zarr or the runner at module level: ``featuremap --help`` must stay
fast, so every command imports its heavy machinery inside its own function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from featuremap._vocabulary import DEVICES
from featuremap.cli._format import safe
from featuremap.errors import InputError

__all__ = [
    "cluster_options",
    "job_options",
    "join_repeated",
    "make_security",
    "prepare_job",
    "refuse_together",
    "scheduler_address",
    "selection_options",
    "store_options",
    "tls_options",
]

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


def join_repeated(_context: Any, _parameter: Any, values: tuple[str, ...]) -> str | None:
    """A ``--region`` given twice, joined with commas: click would keep only the last, so that
    ``--region y=0:4 --region y=5:9`` read ``y=5:9`` silently; joined, an axis given twice is
    refused (:func:`featuremap.pipeline.schema.parse_region`)."""
    return ",".join(values) or None


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
        multiple=True,
        callback=join_repeated,
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
    click.option(
        "--priority",
        type=int,
        default=0,
        show_default=True,
        help="Dask priority of the job's tasks on a shared cluster (higher first).",
    ),
    tls_options,
)


def scheduler_address(scheduler: str | None) -> str | None:
    """``--scheduler``, else the address in Dask's configuration (``DASK_SCHEDULER_ADDRESS``)."""
    from featuremap.cluster.client import configured_scheduler

    return scheduler or configured_scheduler()


#: ``--scheduler`` (default: Dask's configuration) and the TLS flags, for the commands that talk
#: to a running cluster.
cluster_options = _stack(
    click.option(
        "--scheduler",
        metavar="ADDR",
        help="Dask scheduler address (tcp:// or tls://); default: DASK_SCHEDULER_ADDRESS or "
        "Dask's configuration.",
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
    """A ``distributed.security.Security`` for the TLS flags; without flags, Dask's own TLS
    configuration for a ``tls://`` scheduler; else ``None``.

    Raises
    ------
    InputError
        Only some of the three files given, or a ``tls://`` / ``wss://`` address without them.
    """
    from featuremap.cluster.client import ENCRYPTED_SCHEMES, configured_security, scheme_of

    files = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(files.values()):
        configured = configured_security()
        if scheduler is not None and scheme_of(scheduler) in ENCRYPTED_SCHEMES:
            if configured is not None:
                return configured
            raise InputError(
                f"scheduler {safe(scheduler)} uses TLS: give --tls-ca-file, --tls-cert and "
                "--tls-key (or set them in Dask's configuration, distributed.comm.tls)"
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
    priority: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """What ``run`` and ``submit`` share: the pipeline with the command line's overrides, and the
    keyword arguments both pass on (scheduler, security, device, overwrite, resume, priority)."""
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
        "priority": priority,
    }
