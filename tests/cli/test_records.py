"""Store records are checked against the data they describe before anything uses them (README
"Safety", issue 23 part B: D8, D17), and ``status`` costs what the markers that exist cost.

A record that parses but is wrong -- a block grid of 10^12 over four blocks, a grid of the wrong
rank or of strings, a ``blocks_total`` that is not the grid's, an owner pid of 10^30, the
``features`` geometry attributes dropped -- is one line naming the document and the fix, exit 2,
in ``status``, ``inspect`` and ``verify`` alike. Each case is bounded by a timeout: on a store
that trusts its grid, ``status`` iterated 10^12 marker positions.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.cli import run_cli
from support.stores import random_input, small_layout

from featuremap.io.create import create_output
from featuremap.jobs import state

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"
Document = dict[str, Any]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A complete store of four blocks (``done.zarr``), made by a real run."""
    root = tmp_path_factory.mktemp("records")
    random_input(root / "in.zarr", (64, 64), (32, 32), seed=4)
    (root / "p.yaml").write_text(PIPELINE)
    result = run_cli(
        "run", "p.yaml", "--input", "in.zarr", "--output", "done.zarr", "--workers", "1", cwd=root
    )
    assert result.returncode == 0, result.stderr
    return root / "done.zarr"


def _job(update: Callable[[Document], None]) -> tuple[str, Callable[[Document], None]]:
    return "_job/zarr.json", lambda document: update(document["attributes"])


def _root(update: Callable[[Document], None]) -> tuple[str, Callable[[Document], None]]:
    return "zarr.json", lambda document: update(document["attributes"]["featuremap"])


def _owner(**fields: Any) -> Callable[[Document], None]:
    return lambda attributes: attributes["owner"].update(fields)


#: name -> (document, edit, what the one line says)
WRONG_RECORDS = {
    "grid-of-10^12": (*_job(lambda a: a.update(grid=[10**6, 10**6])), "block grid [1000000,"),
    "grid-too-small": (*_job(lambda a: a.update(grid=[1, 1])), "block grid [1, 1], but features"),
    "grid-of-one-axis": (*_job(lambda a: a.update(grid=[4])), "block grid [4], but features"),
    "grid-of-strings": (*_job(lambda a: a.update(grid=["a", 2])), "not positive integers"),
    "blocks-total": (*_root(lambda a: a.update(blocks_total=10**12)), "blocks_total 1000000000000"),
    "blocks-done": (*_root(lambda a: a.update(blocks_done="all")), "blocks_done 'all'"),
    "pid-of-10^30": (*_job(_owner(pid=10**30)), "owner pid 1000000000000000000000000000000"),
    "pid-string": (*_job(_owner(pid="abc")), "owner pid 'abc', not a process id"),
    "geometry-dropped": (
        "features/zarr.json",
        lambda document: document.update(attributes={}),
        "features/zarr.json has no usable geometry attributes",
    ),
}


@pytest.mark.timeout(120, method="signal")
@pytest.mark.parametrize(
    ("document", "edit", "expected"), WRONG_RECORDS.values(), ids=WRONG_RECORDS
)
def test_wrong_records_are_one_line_in_status_inspect_and_verify(
    done, tmp_path, document, edit, expected
):
    store = tmp_path / "wrong.zarr"
    shutil.copytree(done, store)
    path = store / document
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    for command in ("status", "inspect", "verify"):
        result = run_cli(command, str(store), cwd=tmp_path)
        assert result.returncode == 2, (command, result.returncode, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith("featuremap: error: output store"), lines[0]
        assert "is damaged" in lines[0], lines[0]
        assert expected in lines[0], (command, lines[0])
        assert "--overwrite" in lines[0], lines[0]
        assert "internal error" not in lines[0]


@pytest.mark.timeout(120, method="signal")
def test_a_forged_store_of_10_to_the_12_blocks_is_refused(done, tmp_path):
    """D8 with records that agree: ``features`` and the grid both say 10^12 blocks, more than
    any job writes (10^9): refused before anything counts them."""
    store = tmp_path / "forged.zarr"
    shutil.copytree(done, store)
    for document, edit in (
        ("features/zarr.json", lambda d: d.update(shape=[1, 32 * 10**6, 32 * 10**6])),
        ("_job/zarr.json", lambda d: d["attributes"].update(grid=[10**6, 10**6])),
    ):
        content = json.loads((store / document).read_text())
        edit(content)
        (store / document).write_text(json.dumps(content))
    for command in ("status", "inspect", "verify"):
        result = run_cli(command, str(store), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert "describes 1,000,000,000,000 blocks" in result.stderr, result.stderr


@pytest.mark.timeout(120, method="signal")
def test_status_costs_the_markers_that_exist_not_the_grid(tmp_path):
    """D8: a store of 10^9 blocks (the most a job may have) with two blocks done. ``status`` lists
    the marker chunks on disk and reads those two: 0.08 s where reading all 15 259 marker
    positions took 15 s (2-core machine under load)."""
    layout = small_layout((250_000_000,))
    assert layout.blocks_total == 10**9
    store = create_output(
        str(tmp_path / "huge.zarr"),
        layout=layout,
        geometry_attrs=layout.stack.to_dict(),
        weights=[],
        root_attrs={},
        job_attrs={},
    )
    owner = state.new_owner()
    state.start_job(store, owner=owner, fingerprint="f" * 64, blocks_total=layout.blocks_total)
    writer = store.marker_writer(lambda: None)
    writer.mark(5)
    writer.mark(layout.blocks_total - 1)
    writer.flush()
    state.finish_job(store, "interrupted", blocks_done=2, owner=owner)

    started = time.monotonic()
    result = run_cli("status", "huge.zarr", "--json", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["blocks_done"] == 2
    assert report["blocks_total"] == 10**9
    assert elapsed < 5, elapsed
