"""Replace atomically or not at all (README "Safety"): ``--overwrite``, ``--resume`` and
``verify --repair`` of a store this user may not change are refused with one line, exit 2, the
store byte-identical.

The tests run as root, which ignores permission bits, so the permission failure is made real in
two ways: a folder made immutable (``chattr +i``, which stops root too), in process; and the
command run as an unprivileged user (``setpriv``, uid 65534) on a store a "colleague" (root)
owns, in a process of its own (one for the module, :mod:`support.limited`: the interpreter's
start-up paid once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import refusal_line, run_cli
from support.limited import LimitedResult, LimitedRunner, limited_runner
from support.procs import ENV, tree_digest
from support.stores import random_input, unmark

from featuremap.io import OutputStore
from featuremap.jobs import state

pytestmark = pytest.mark.cluster

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"
#: The unprivileged user the commands run as (``nobody``).
NOBODY = 65534


@pytest.fixture(scope="module")
def world() -> Iterator[Path]:
    """A folder anyone may write, with an input, a pipeline and a complete store ``done.zarr``
    (pytest's own temporary folders are root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="featuremap-perm-"))
    try:
        root.chmod(0o777)  # the user's own project folder
        random_input(root / "in.zarr", (64, 64), (32, 32), seed=5)
        (root / "p.yaml").write_text(PIPELINE)
        done = run_cli(
            "run", "p.yaml", "--input", "in.zarr", "--output", "done.zarr", "--workers", "1",
            cwd=root,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store(world: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh copy of the complete store, removed afterwards whatever its flags."""
    path = world / f"copy-{request.node.name.replace('[', '-').replace(']', '')}.zarr"
    shutil.copytree(world / "done.zarr", path)
    yield path
    subprocess.run(["chattr", "-R", "-i", str(path)], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _immutable(path: Path) -> None:
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.strip()}")


def test_overwrite_refuses_a_store_it_cannot_remove_whole(world, store):
    """D1: the deletion used to stop at ``_job/``, the result gone and nothing in its place."""
    _immutable(store / "_job")
    before = tree_digest(store)
    result = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", store, "--overwrite", cwd=world
    )
    line = refusal_line(result)
    assert "cannot replace output store" in line
    assert "_job" in line
    assert "nothing was changed" in line
    assert tree_digest(store) == before


@pytest.fixture(scope="module")
def nobody(world: Path) -> Iterator[LimitedRunner]:
    """A process that runs commands as the unprivileged user (its home the world's folder)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    with limited_runner(prefix=prefix, env={**ENV, "HOME": str(world)}) as runner:
        yield runner


def _as_nobody(runner: LimitedRunner, *args: object, cwd: Path) -> LimitedResult:
    result = runner.run(*args, cwd=cwd)
    assert runner.ready["uid"] == NOBODY, runner.ready
    return result


def _colleagues(store: Path, *, theirs: str | None) -> None:
    """Make ``store`` ours (nobody's) except ``theirs`` (root's), or all root's when ``None``."""
    owner = NOBODY if theirs is not None else 0
    for path in [store, *store.rglob("*")]:
        os.chown(path, owner, owner, follow_symlinks=False)
    if theirs is not None:
        for path in [store / theirs, *(store / theirs).rglob("*")]:
            os.chown(path, 0, 0, follow_symlinks=False)


@pytest.mark.slow
def test_overwrite_of_a_colleagues_job_folder_as_another_user(nobody, world, store):
    """D1 as reported: the store is the user's, its ``_job/`` a colleague's."""
    _colleagues(store, theirs="_job")
    before = tree_digest(store)
    line = refusal_line(
        _as_nobody(
            nobody,
            "run",
            "p.yaml",
            "--input",
            "in.zarr",
            "--output",
            store.name,
            "--overwrite",
            cwd=world,
        )
    )
    assert "cannot replace output store" in line
    assert "_job" in line
    assert tree_digest(store) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [
        ("run", "p.yaml", "--input", "in.zarr", "--output", "{store}", "--overwrite"),
        ("run", "p.yaml", "--input", "in.zarr", "--output", "{store}", "--resume"),
        ("verify", "{store}", "--repair"),
    ],
    ids=["overwrite", "resume", "repair"],
)
def test_a_store_the_user_may_not_write_is_one_line(nobody, world, store, command):
    """D18: a colleague's whole store: nothing changed, one line, exit 2."""
    unmark(store, [(0, 1)])  # something to resume
    chunk = next(path for path in (store / "features" / "c").rglob("*") if path.is_file())
    chunk.write_bytes(b"torn")  # and damage for --repair to act on
    state.finish_job(OutputStore.open(str(store), "r+"), "interrupted", blocks_done=3, owner=None)
    _colleagues(store, theirs=None)
    before = tree_digest(store)
    line = refusal_line(
        _as_nobody(nobody, *(part.format(store=store.name) for part in command), cwd=world)
    )
    assert store.name in line
    assert "nothing was changed" in line
    assert tree_digest(store) == before
