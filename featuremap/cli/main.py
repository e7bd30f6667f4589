"""The ``featuremap`` command: a click group and :func:`main`, which owns exit statuses.

Exit status 0 on success, 2 for bad input (a pipeline, an argument, a store, a path), 1 for a job
that failed while running. A refusal is one line on stderr, ``featuremap: error: <message>``, with
no traceback unless the environment sets ``FEATUREMAP_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

import click

from featuremap._version import __version__
from featuremap.cli._format import echo, inert_warnings, safe
from featuremap.cli._signals import Interrupted, clear_pending, install_handlers
from featuremap.cli.banks import banks
from featuremap.cli.cancel import cancel
from featuremap.cli.cluster import cluster
from featuremap.cli.demo import demo
from featuremap.cli.explain import explain
from featuremap.cli.export import export
from featuremap.cli.inspect import inspect
from featuremap.cli.jobs import jobs
from featuremap.cli.logs import logs
from featuremap.cli.preview import preview
from featuremap.cli.run import run
from featuremap.cli.status import status
from featuremap.cli.submit import submit
from featuremap.cli.verify import verify
from featuremap.errors import InputError, JobError, command_line_names

__all__ = ["cli", "entry_point", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=(
        "Example:\n\n"
        "  featuremap demo --output demo-output\n\n"
        "  featuremap run pipelines/gabor-texture.yaml --workers 2\n\n"
        "Exit status: 0 success, 2 bad input (nothing written), 1 job failure."
    ),
)
@click.version_option(__version__, prog_name="featuremap")
def cli() -> None:
    """Banks of conv/pool filters over chunked Zarr images, with exact geometry."""


for _command in (
    run,
    submit,
    jobs,
    cancel,
    logs,
    status,
    verify,
    inspect,
    explain,
    export,
    banks,
    preview,
    demo,
    cluster,
):
    cli.add_command(_command)


EXIT_TERMINATED = 128 + signal.SIGTERM


def _one_line(text: str) -> str:
    return " ".join(safe(text).split())


def _fail(message: str, code: int) -> int:
    echo(f"featuremap: error: {_one_line(message)}", err=True)
    return code


def _quiet_workers() -> None:
    """Worker tracebacks go to the job's log file, not the terminal (one line is printed)."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    debug = os.environ.get("FEATUREMAP_DEBUG", "") not in ("", "0")
    if not debug:
        _quiet_workers()
    install_handlers()
    try:
        with command_line_names(), inert_warnings():
            result = cli.main(
                args=list(argv) if argv is not None else None,
                prog_name="featuremap",
                standalone_mode=False,
            )
    except click.exceptions.NoArgsIsHelpError as error:
        echo(error.ctx.get_help() if error.ctx else error.format_message(), err=True)
        return EXIT_BAD_INPUT
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        return _fail(error.format_message() + hint, EXIT_BAD_INPUT)
    except click.ClickException as error:
        return _fail(error.format_message(), error.exit_code)
    except click.Abort:
        echo("featuremap: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Interrupted as stop:
        clear_pending()
        echo(f"featuremap: interrupted ({stop}); finish with --resume", err=True)
        return EXIT_TERMINATED if stop.signum == signal.SIGTERM else EXIT_INTERRUPTED
    except InputError as error:
        if debug:
            raise
        return _fail(str(error), EXIT_BAD_INPUT)
    except JobError as error:
        if debug:
            raise
        log = f" (full log: {error.log})" if error.log else ""
        return _fail(f"{error}{log}", EXIT_FAILED)
    except Exception as error:  # a bug, reported as one line unless debugging
        if debug:
            raise
        return _fail(
            f"internal error: {type(error).__name__}: {error} (rerun with FEATUREMAP_DEBUG=1 for a "
            "traceback and report it)",
            EXIT_FAILED,
        )
    return result if isinstance(result, int) else EXIT_OK


#: Seconds a command runs before Python's cyclic garbage collector resumes (:func:`entry_point`).
COLLECTOR_PAUSE_S = 2.0


def _pause_collector(seconds: float) -> None:
    """No cyclic garbage collection for the first ``seconds``; then one full collection, all
    objects left frozen (never scanned again) and collection resumed.

    Start-up builds the ~1M long-lived objects of the modules Dask, Zarr and NumPy import, and
    the collections that scanned them found nothing to free (45 ms of a tiny job's 0.7 s: 51 ms
    in 245 collections). A command that runs longer frees the cycles of its first seconds in
    that one collection -- run by the timer's thread, so no finalizer it calls can swallow a
    signal meant for the main thread -- and collects as usual from then on.
    """

    def resume() -> None:
        gc.collect()
        gc.freeze()
        gc.enable()

    gc.disable()
    timer = threading.Timer(seconds, resume)
    timer.daemon = True
    timer.start()


def entry_point() -> NoReturn:
    """The ``featuremap`` console script: :func:`main`, then the process ends at once.

    Everything a command writes is closed before :func:`main` returns (stores, logs, the local
    cluster), so the interpreter's teardown -- freeing the objects of the ~1,000 modules Dask,
    Zarr and NumPy import, 0.15-0.35 CPU s, a third of a tiny job above the import floor -- is
    skipped: the output streams and logging are flushed and the process exits with ``os._exit``.
    An exception escaping :func:`main` (``FEATUREMAP_DEBUG``) ends the usual way, traceback shown.
    Garbage collection waits :data:`COLLECTOR_PAUSE_S` (:func:`_pause_collector`).
    """
    _pause_collector(COLLECTOR_PAUSE_S)
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
