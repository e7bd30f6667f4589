"""A table of bad inputs to the command line: each exits 2 (an unreachable scheduler: 1) with one
``featuremap: error:`` line, no traceback, and leaves every file byte for byte as it was. The
commands run in process (:func:`support.cli.run_cli`); an unreachable scheduler is given a 1 s
connect timeout.

``cli/test_run.py`` covers the bad pipelines and flags of its own table (negative stride, unknown key
or bank, Python YAML tag at the top level, missing weight file, kernel larger than the image,
output equal to the input, missing input, unknown array, --overwrite with --resume, unknown
device, TLS address without certificates, ...); these are the others.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import zarr
from support.cli import run_cli
from support.procs import free_port, tree_digest
from support.stores import random_input

from featuremap.io import OutputStore
from featuremap.jobs import state

pytestmark = pytest.mark.cluster  # the store of the `folder` fixture is a run on a local cluster

CONV = "layers: [{conv: {bank: {type: box, size: 3}}}]"


def _conv_file(path: str, **extra: str) -> str:
    options = "".join(f", {key}: {value}" for key, value in extra.items())
    return f"layers: [{{conv: {{bank: {{type: file, path: {path}{options}}}}}}}]"


PIPELINES = {
    "good.yaml": CONV,
    "zero-stride.yaml": "layers: [{conv: {bank: {type: box}, stride: 0}}]",
    "zero-dilation.yaml": "layers: [{conv: {bank: {type: box}, dilation: 0}}]",
    "negative-padding.yaml": "layers: [{conv: {bank: {type: box}, padding: -1}}]",
    "pool-too-big.yaml": "layers: [{pool: {type: max, kernel_size: 40}}]",
    "nested-python-tag.yaml": "layers: [{conv: {bank: !!python/object/apply:os.system ['touch hacked']}}]",
    "python-name-tag.yaml": "name: !!python/name:os.system\n" + CONV,
    "list.yaml": "- conv: {bank: {type: box}}",
    "bad-channel-axis.yaml": "input: {channel_axis: 5}\n" + CONV,
    "wrong-channels.yaml": _conv_file("w3.npy"),
    "pickled.yaml": _conv_file("pickled.npy"),
    "npz-without-weight.yaml": _conv_file("bias-only.npz"),
    "truncated-safetensors.yaml": _conv_file("truncated.safetensors"),
    "safetensors-no-tensor.yaml": _conv_file("ok.safetensors", tensor="kernel"),
    "weight-2d.yaml": _conv_file("w2d.npy"),
    "weight-nan.yaml": _conv_file("nan.npy"),
    "other-weights.yaml": "layers: [{conv: {bank: {type: box, size: 5}}}]",
    "ngff-03.yaml": "output: {format: ngff-0.3}\n" + CONV,
    "md5.yaml": "output: {checksum: md5}\n" + CONV,
    "v2-crc32c.yaml": "output: {format: ngff-0.4, checksum: crc32c}\n" + CONV,
    "v2-shards.yaml": "output: {format: ngff-0.4, shards: [64, 64]}\n" + CONV,
}


def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    """The safetensors format by its published definition: header length, JSON header, data."""
    header, data, offset = {}, b"", 0
    for name, array in tensors.items():
        raw = array.astype("<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        data, offset = data + raw, offset + len(raw)
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + data


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Inputs, weight files, pipelines, a complete store and a busy one (its job alive)."""
    root = tmp_path_factory.mktemp("bad")
    random_input(root / "in.zarr", (32, 32), (16, 16), seed=4)
    rng = np.random.default_rng(5)
    group = zarr.open_group(str(root / "group.zarr"), mode="w")
    for name in ("a", "b"):
        group.create_array(name, shape=(8, 8), dtype="float32")[...] = 1.0
    zarr.create_array(str(root / "line.zarr"), data=np.ones(10, dtype=np.float32))
    zarr.create_array(str(root / "empty.zarr"), shape=(0, 10), dtype="float32")
    zarr.create_array(str(root / "nan.zarr"), data=np.full((16, 16), np.nan, dtype=np.float32))
    (root / "not-zarr").mkdir()
    (root / "not-zarr" / "notes.txt").write_text("not a store")
    (root / "bad-meta.zarr").mkdir()
    (root / "bad-meta.zarr" / "zarr.json").write_text("{ this is not json")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "file.txt").write_text("a file, not a folder")
    (root / "existing-dir").mkdir()
    (root / "existing-dir" / "thesis.tex").write_text("keep me")

    np.save(root / "w3.npy", rng.standard_normal((2, 3, 3, 3)).astype(np.float32))
    np.save(root / "pickled.npy", np.array([{"weight": 1}, None], dtype=object), allow_pickle=True)
    np.savez(root / "bias-only.npz", bias=np.ones(2, dtype=np.float32))
    weights = rng.standard_normal((2, 1, 3, 3))
    (root / "truncated.safetensors").write_bytes(_safetensors({"weight": weights})[:-10])
    (root / "ok.safetensors").write_bytes(_safetensors({"weight": weights}))
    np.save(root / "w2d.npy", np.ones((3, 3), dtype=np.float32))
    np.save(root / "nan.npy", np.full((1, 1, 3, 3), np.nan, dtype=np.float32))
    for name, text in PIPELINES.items():
        (root / name).write_text(text)

    done = run_cli(
        "run",
        root / "good.yaml",
        "--input",
        root / "in.zarr",
        "--output",
        root / "done.zarr",
        "--workers",
        "1",
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    shutil.copytree(root / "done.zarr", root / "busy.zarr")
    # a job alive in this very process: its store must never be taken over
    state.start_job(
        OutputStore.open(str(root / "busy.zarr"), "r+"),
        owner=state.new_owner(),
        fingerprint="0" * 64,
        blocks_total=1,
    )
    return root


UNREACHABLE = f"tcp://127.0.0.1:{free_port()}"

# (id, arguments after `featuremap`, expected exit status); IN = --input in.zarr, OUT = --output new.zarr
CASES = [
    ("input is a plain file", ["run", "good.yaml", "--input", "image.png"], 2),
    ("input folder is not Zarr", ["run", "good.yaml", "--input", "not-zarr"], 2),
    ("input metadata is not JSON", ["run", "good.yaml", "--input", "bad-meta.zarr"], 2),
    ("input is a group without --array", ["run", "good.yaml", "--input", "group.zarr"], 2),
    ("--array on an array store", ["run", "good.yaml", "--input", "in.zarr", "--array", "a"], 2),
    ("1-D input", ["run", "good.yaml", "--input", "line.zarr"], 2),
    ("empty input", ["run", "good.yaml", "--input", "empty.zarr"], 2),
    ("channel_axis out of range", ["run", "bad-channel-axis.yaml", "IN"], 2),
    ("weight file for 3 channels", ["run", "wrong-channels.yaml", "IN"], 2),
    ("pickled .npy", ["run", "pickled.yaml", "IN"], 2),
    (".npz without weight", ["run", "npz-without-weight.yaml", "IN"], 2),
    ("truncated .safetensors", ["run", "truncated-safetensors.yaml", "IN"], 2),
    (".safetensors without the tensor", ["run", "safetensors-no-tensor.yaml", "IN"], 2),
    ("2-D weight", ["run", "weight-2d.yaml", "IN"], 2),
    ("NaN in the weights", ["run", "weight-nan.yaml", "IN"], 2),
    ("Python tag inside a layer", ["run", "nested-python-tag.yaml", "IN"], 2),
    ("python/name tag", ["run", "python-name-tag.yaml", "IN"], 2),
    ("pipeline is a list", ["run", "list.yaml", "IN"], 2),
    ("zero stride", ["run", "zero-stride.yaml", "IN"], 2),
    ("zero dilation", ["run", "zero-dilation.yaml", "IN"], 2),
    ("negative padding", ["run", "negative-padding.yaml", "IN"], 2),
    ("pool kernel bigger than the image", ["run", "pool-too-big.yaml", "IN"], 2),
    (
        "output inside the input store",
        ["run", "good.yaml", "IN", "--output", "in.zarr/features.zarr"],
        2,
    ),
    (
        "output contains the input store",
        ["run", "good.yaml", "--input", "done.zarr/features", "--output", "done.zarr/.."],
        2,
    ),
    ("output under a file", ["run", "good.yaml", "IN", "--output", "file.txt/out.zarr"], 2),
    ("output is a file", ["run", "good.yaml", "IN", "--output", "file.txt", "--overwrite"], 2),
    (
        "output is another folder",
        ["run", "good.yaml", "IN", "--output", "existing-dir", "--overwrite"],
        2,
    ),
    ("existing store without flags", ["run", "good.yaml", "IN", "--output", "done.zarr"], 2),
    (
        "resume with another pipeline",
        ["run", "other-weights.yaml", "IN", "--output", "done.zarr", "--resume"],
        2,
    ),
    (
        "resume with another input",
        ["run", "good.yaml", "--input", "nan.zarr", "--output", "done.zarr", "--resume"],
        2,
    ),
    (
        "overwrite a running job's store",
        ["run", "good.yaml", "IN", "--output", "busy.zarr", "--overwrite"],
        2,
    ),
    (
        "resume a running job's store",
        ["run", "good.yaml", "IN", "--output", "busy.zarr", "--resume"],
        2,
    ),
    (
        "some TLS files only",
        ["run", "good.yaml", "IN", "--scheduler", "tls://127.0.0.1:1", "--tls-ca-file", "file.txt"],
        2,
    ),
    (
        "submit without a reachable scheduler",
        ["submit", "good.yaml", "IN", "OUT", "--scheduler", UNREACHABLE],
        1,
    ),
    ("unreachable scheduler", ["run", "good.yaml", "IN", "OUT", "--scheduler", UNREACHABLE], 1),
    ("verify a folder that is no store", ["verify", "existing-dir"], 2),
    ("verify a missing store", ["verify", "nowhere.zarr"], 2),
    ("status of an input store", ["status", "in.zarr"], 2),
    ("output format ngff-0.3", ["run", "ngff-03.yaml", "IN"], 2),
    ("output checksum md5", ["run", "md5.yaml", "IN"], 2),
    ("crc32c in a Zarr v2 store", ["run", "v2-crc32c.yaml", "IN"], 2),
    ("shards in a Zarr v2 store", ["run", "v2-shards.yaml", "IN"], 2),
]


def _arguments(arguments: list[str]) -> list[str]:
    expanded = []
    for argument in arguments:
        expanded += {"IN": ["--input", "in.zarr"], "OUT": ["--output", "new.zarr"]}.get(
            argument, [argument]
        )
    if expanded[0] in ("run", "submit") and "--output" not in expanded:
        expanded += ["--output", "new.zarr"]
    return expanded


@pytest.mark.parametrize(("arguments", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_changed(folder, arguments, code):
    before = tree_digest(folder)
    result = run_cli(*_arguments(arguments), cwd=folder, connect_timeout="1s")
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("featuremap: error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert tree_digest(folder) == before  # every store and file byte for byte, nothing new


@pytest.mark.slow
def test_nan_only_data_is_not_bad_input(folder, tmp_path):
    out = tmp_path / "nan-features.zarr"
    result = run_cli(
        "run",
        folder / "good.yaml",
        "--input",
        folder / "nan.zarr",
        "--output",
        out,
        "--workers",
        "1",
        "--json",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "complete"
    assert np.isnan(zarr.open_group(str(out), mode="r")["features"][...]).all()  # NaN propagates
