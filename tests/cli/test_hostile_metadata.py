"""Hostile metadata (issue 23, D15/D16/D19/D20): what an input's OME metadata or a store's own
records say is never trusted to be well formed, to stay inside the store, or to be safe to
print.

* malformed OME-NGFF metadata (a dataset without ``path``, a string dataset, a scale ``"abc"``,
  non-mapping ``omero`` channels...) is one line, exit 2;
* ``..`` or a segment over 255 bytes in ``--array`` or an OME dataset path is one line, exit 2,
  and nothing outside the store is opened;
* every string from data or store metadata reaches the terminal with its control characters
  shown (``\\x1b``), never obeyed: OME axis units in ``explain`` and ``inspect``, a store's
  ``status``/``error`` records in ``status``, ``verify`` and ``inspect``.

Commands run in process (:func:`support.cli.run_cli`) on real stores.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from support.cli import Result, run_cli
from support.stores import write_ome_image

from featuremap.io import OutputStore

PIPELINE = "layers: [{conv: {bank: {type: box, size: 3}}}]\noutput: {chunks: [32, 32]}\n"
#: What must never reach a terminal raw: C0 controls but tab and newline, DEL, C1 controls.
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Clear the screen, set the window title, ring the bell, return the carriage.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\r\x9b"

Edit = Callable[[dict[str, Any], dict[str, Any]], None]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """An OME-Zarr image (NGFF 0.5, 64 x 64 in micrometres) and the pipeline ``p.yaml``."""
    root = tmp_path_factory.mktemp("hostile_metadata")
    image = np.random.default_rng(3).random((64, 64), dtype=np.float32)
    write_ome_image(
        root / "img.zarr", image, "yx", scale={"y": 0.5, "x": 0.5},
        units={"y": "micrometer", "x": "micrometer"}, scale_factors=(),
    )  # fmt: skip
    (root / "p.yaml").write_text(PIPELINE)
    return root


def _variant(world: Path, tmp_path: Path, edit: Edit) -> Path:
    """A copy of the world's image whose NGFF metadata ``edit(multiscale, ome)`` changed."""
    copy = tmp_path / "edited.zarr"
    shutil.copytree(world / "img.zarr", copy)
    document = json.loads((copy / "zarr.json").read_text())
    ome = document["attributes"]["ome"]
    edit(ome["multiscales"][0], ome)
    (copy / "zarr.json").write_text(json.dumps(document))
    return copy


def _one_error_line(result: Result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("featuremap: error:"), result.stderr
    assert "internal error" not in lines[0]
    return lines[0]


def _dataset(**changes: Any) -> Edit:
    return lambda multiscale, _: multiscale["datasets"][0].update(changes)


MALFORMED: dict[str, tuple[Edit, str]] = {
    "dataset without path": (lambda m, _: m["datasets"][0].pop("path"), 'with a "path"'),
    "string dataset": (lambda m, _: m.__setitem__("datasets", ["s0"]), 'with a "path"'),
    "datasets not a list": (lambda m, _: m.__setitem__("datasets", {"path": "s0"}), "a list"),
    "scale abc": (
        _dataset(coordinateTransformations=[{"type": "scale", "scale": ["abc", 1]}]),
        "must be numbers",
    ),
    "transforms not a list": (_dataset(coordinateTransformations=7), "a list"),
    "axis not a mapping": (lambda m, _: m["axes"].__setitem__(0, 7), '"name"'),
    "unit not a string": (lambda m, _: m["axes"][0].__setitem__("unit", [1]), "a string"),
    "omero channels not mappings": (
        lambda _, ome: ome.__setitem__("omero", {"channels": ["red"]}),
        "a list of mappings",
    ),
    "omero channels not a list": (
        lambda _, ome: ome.__setitem__("omero", {"channels": "red"}),
        "a list of mappings",
    ),
    # D16: a dataset path that leaves the store, or a segment no filesystem allows
    "dataset path ..": (_dataset(path="../img.zarr/s0"), "'..'"),
    "dataset path over 255 bytes": (_dataset(path="é" * 128), "256 bytes"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_ome_metadata_is_one_line(world, tmp_path, case):
    edit, expected = MALFORMED[case]
    image = _variant(world, tmp_path, edit)
    line = _one_error_line(run_cli("explain", "p.yaml", "--input", image, cwd=world))
    assert expected in line
    assert "fix" in line or "give" in line or "name" in line  # it says what to do


@pytest.mark.parametrize(
    ("array", "expected"), [("../img.zarr/s0", "'..'"), ("s0/./x", "'.'"), ("a" * 256, "256 bytes")]
)
def test_array_paths_stay_inside_the_store(world, tmp_path, array, expected):
    group = zarr.open_group(str(tmp_path / "group.zarr"), mode="w")
    group.create_array("images", shape=(32, 32), dtype="f4")
    line = _one_error_line(
        run_cli(
            "explain", "p.yaml", "--input", tmp_path / "group.zarr", "--array", array, cwd=world
        )
    )
    assert expected in line
    assert "--array" in line


def _assert_inert(result: Result, *shown: str) -> None:
    """Nothing in the output can drive a terminal; ``shown`` (escaped forms) are visible."""
    output = result.stdout + result.stderr
    assert not RAW_CONTROL.search(output), repr(output)
    for text in shown:
        assert text in output, output


@pytest.mark.cluster
@pytest.mark.slow
def test_ome_units_are_escaped_in_explain_and_inspect(world, tmp_path):
    image = _variant(
        world, tmp_path, lambda m, _: m["axes"][0].__setitem__("unit", f"micro{HOSTILE}meter")
    )
    explained = run_cli("explain", "p.yaml", "--input", image, cwd=world)
    assert explained.returncode == 0, explained.stderr
    _assert_inert(explained, "\\x1b[2J", "\\x07", "\\r")
    # a run keeps the unit of the input's axis in the output's coordinates: inspect shows it
    store = tmp_path / "out.zarr"
    ran = run_cli("run", "p.yaml", "--input", image, "--output", store, "--workers", "1", cwd=world)
    assert ran.returncode == 0, ran.stderr
    _assert_inert(ran)
    inspected = run_cli("inspect", store, cwd=world)
    assert inspected.returncode == 0, inspected.stderr
    _assert_inert(inspected)
    # D20: the store's own records, as another (hostile) writer may have left them
    records = OutputStore.open(str(store), "r+")
    records.update_root(status="failed", error=f"boom{HOSTILE}")
    for command in ("status", "verify", "inspect"):
        shown = run_cli(command, store, cwd=world)
        assert shown.returncode in (0, 1), (command, shown.stderr)
        _assert_inert(shown, *(["\\x1b]0;pwned\\x07"] if command == "status" else []))
    records.update_root(status=f"complete{HOSTILE}", error=None)
    for command in ("status", "verify", "inspect"):
        shown = run_cli(command, store, cwd=world)
        _assert_inert(shown, *(["\\x1b[2J"] if command == "status" else []))


def test_warnings_are_shown_inert(capsys):
    import warnings

    from featuremap.cli._format import inert_warnings

    with warnings.catch_warnings(), inert_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"the CRS of {HOSTILE} is lost", UserWarning, stacklevel=1)
    shown = capsys.readouterr().err
    assert "UserWarning: the CRS of \\x1b[2J" in shown
    assert not RAW_CONTROL.search(shown), repr(shown)
