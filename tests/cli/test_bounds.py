"""Nothing blocks forever, nothing reads unbounded (README "Safety", issue 23 part B).

Every case runs the real command in a process under a time limit and an address-space limit: a
hang or an unbounded read fails the test instead of hanging the suite or the machine. The cases of
this module share one such process (:mod:`support.limited`: start-up paid once; a hang or a crash
gets the next case a fresh one).

* a FIFO or a device where ``zarr.json``, a chunk or the pipeline file should be (D6);
* a metadata document that is ``/dev/zero`` or a 1 GB file (D9);
* a scheduler address that accepts TCP and never speaks (D7).
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.limited import LimitedResult, LimitedRunner, limited_runner
from support.stores import random_input

pytestmark = pytest.mark.slow

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"
#: How long a refusal may take: seconds in practice; a hang is stopped (and failed) here.
TIME_LIMIT = 60
#: Dask's connect timeout for the silent scheduler: what featuremap must give up after.
SILENT_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def limited() -> Iterator[LimitedRunner]:
    """The process the commands run in, under :data:`support.limited.MEMORY_LIMIT` (1.5 GiB of
    address space: reading /dev/zero or a 1 GB document whole would pass it)."""
    with limited_runner() as runner:
        yield runner


def one_error_line(result: LimitedResult, code: int = 2) -> str:
    """The single ``featuremap: error:`` line of a refused command (no traceback, exit ``code``)."""
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("featuremap: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "internal error" not in errors[0]
    return errors[0]


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A 64 x 64 input in four 32 x 32 chunks and a one-layer pipeline."""
    random_input(tmp_path / "in.zarr", (64, 64), (32, 32), seed=3)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return tmp_path


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    path.unlink()
    make(path)


def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _gigabyte(path: Path) -> None:
    with path.open("wb") as file:  # sparse: a gigabyte of zeros that takes no disk
        file.truncate(1 << 30)


#: name -> (the file to replace, what replaces it, the command, the message it must give)
SPECIAL_FILES = {
    "fifo-zarr.json": (
        "in.zarr/zarr.json",
        os.mkfifo,
        ("explain", "p.yaml", "--input", "in.zarr"),
        r"zarr\.json' is not a regular file \(a FIFO\)",
    ),
    "fifo-chunk": (
        "in.zarr/c/0/1",
        os.mkfifo,
        ("run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--workers", "1"),
        r"input chunk '\S+c/0/1' is not a regular file \(a FIFO\)",
    ),
    "fifo-pipeline": (
        "p.yaml",
        os.mkfifo,
        ("explain", "p.yaml", "--input", "in.zarr"),
        r"pipeline file 'p\.yaml' is not a regular file \(a FIFO\)",
    ),
    "dev-zero-zarr.json": (
        "in.zarr/zarr.json",
        _dev_zero,
        ("explain", "p.yaml", "--input", "in.zarr"),
        r"zarr\.json' is not a regular file \(a character device\)",
    ),
    "dev-zero-chunk": (
        "in.zarr/c/1/1",
        _dev_zero,
        ("run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--workers", "1"),
        r"c/1/1' is not a regular file \(a character device\)",
    ),
    "gigabyte-zarr.json": (
        "in.zarr/zarr.json",
        _gigabyte,
        ("explain", "p.yaml", "--input", "in.zarr"),
        r"zarr\.json' is larger than 67108864 bytes",
    ),
}


@pytest.mark.parametrize(
    ("target", "make", "command", "expected"), SPECIAL_FILES.values(), ids=SPECIAL_FILES
)
def test_special_files_and_huge_documents_are_refused_in_one_line(
    limited, world, target, make, command, expected
):
    """D6, D9: a FIFO, a device or a 1 GB document where featuremap reads a file: one line,
    exit 2, within seconds and 1.5 GiB, nothing written."""
    _replace(world / target, make)
    result = limited.run(*command, cwd=world, timeout=TIME_LIMIT)
    line = one_error_line(result)
    assert result.seconds < 30
    assert re.search(expected, line), line
    assert not (world / "out.zarr").exists()


def test_a_store_record_that_is_a_fifo_is_refused(limited, world):
    """D6 on an output store: ``logs`` of a store whose job log is a FIFO, ``status`` of one
    whose ``_job/zarr.json`` is."""
    done = limited.run(
        "run", "p.yaml", "--input", "in.zarr", "--output", "out.zarr", "--workers", "1", cwd=world
    )
    assert done.returncode == 0, done.stderr
    _replace(world / "out.zarr" / "_job" / "log.txt", os.mkfifo)
    line = one_error_line(limited.run("logs", "out.zarr", cwd=world))
    assert "job log" in line, line
    assert "is not a regular file (a FIFO)" in line, line
    _replace(world / "out.zarr" / "_job" / "zarr.json", os.mkfifo)
    line = one_error_line(limited.run("status", "out.zarr", cwd=world))
    assert "is not a regular file (a FIFO)" in line
    _replace(world / "out.zarr" / "_job" / "zarr.json", _gigabyte)  # D9 on a job record
    line = one_error_line(limited.run("status", "out.zarr", cwd=world))
    assert "zarr.json' is larger than 67108864 bytes" in line, line


@pytest.fixture
def silent_scheduler() -> Iterator[str]:
    """An address on 127.0.0.1 that accepts TCP connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.mark.parametrize("command", ["run", "submit"])
def test_a_silent_scheduler_is_given_up_on_after_the_connect_timeout(
    limited, world, silent_scheduler, command
):
    """D7: Dask bounds the TCP connect but waits for the handshake forever; featuremap bounds
    both by Dask's connect timeout (:data:`SILENT_TIMEOUT` here: the bound is what is tested,
    not its length): one line naming the scheduler and the timeout, exit 1 (the exit status of
    an unreachable scheduler)."""
    args = ("p.yaml", "--input", "in.zarr", "--output", "out.zarr")
    result = limited.run(
        command, *args, "--scheduler", silent_scheduler, cwd=world,
        connect_timeout=f"{SILENT_TIMEOUT}s", timeout=45,
    )  # fmt: skip
    line = one_error_line(result, code=1)
    assert silent_scheduler in line, line
    assert f"no Dask handshake within {SILENT_TIMEOUT:g} s" in line, line
    assert result.seconds < 10, result.seconds


def test_an_input_chunk_that_decodes_to_gigabytes_is_refused_at_plan_time(limited, world):
    """D10: a 64 x 64 input whose one chunk is declared 32768 x 32768 (4 GiB of float32 when
    decoded, a few hundred bytes stored: zeros compress to nothing) would have every block decode
    all of it; refused before anything is created, within seconds and 1.5 GiB."""
    import zarr

    zarr.create_array(
        str(world / "bomb.zarr"), shape=(64, 64), chunks=(32768, 32768), dtype="float32"
    )
    args = ("--input", "bomb.zarr", "--output", "out.zarr", "--workers", "1")
    line = one_error_line(limited.run("run", "p.yaml", *args, cwd=world))
    assert "chunks of shape [32768, 32768]" in line, line
    assert "4.0 GiB" in line, line
    assert "rechunk the input" in line, line
    assert not (world / "out.zarr").exists()
