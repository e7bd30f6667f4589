"""The error family: bounded descriptions, and fixes given in the caller's own language."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from support.stores import write_input

from featuremap.errors import (
    InputError,
    command_line_names,
    describe,
    input_key,
    option,
    spoken,
)


def test_options_are_keywords_from_python_and_flags_on_the_command_line():
    assert option("overwrite") == "overwrite=True"
    assert option("allow_large") == "allow_large=True"
    assert option("output", "STORE") == "output=STORE"
    assert input_key("axes") == "input.axes in the pipeline"
    assert spoken("--x", "x=1") == "x=1"
    with command_line_names():
        assert option("overwrite") == "--overwrite"
        assert option("allow_large") == "--allow-large"
        assert input_key("axes") == "input.axes / --axes"
        assert spoken("--x", "x=1") == "--x"
    assert option("overwrite") == "overwrite=True"  # restored on the way out


def test_command_line_names_are_restored_after_an_error():
    with pytest.raises(InputError), command_line_names():
        raise InputError(option("resume"))
    assert option("resume") == "resume=True"


def test_describe_is_bounded():
    assert len(describe("x" * 10_000)) < 200
    assert describe(float("nan")) == "nan"
    assert "\n" not in describe(np.zeros((50, 50)))


def test_an_existing_store_is_refused_in_each_callers_language(tmp_path, client):
    """The same refusal: ``overwrite=True`` for ``featuremap.run``, ``--overwrite`` for the CLI."""
    from support.cli import run_cli

    import featuremap

    source = write_input(tmp_path / "in.zarr", np.ones((1, 16, 16), np.float32), (1, 16, 16))
    (tmp_path / "p.yaml").write_text("layers: [{conv: {bank: {type: box, size: 3}}}]\n")
    output = tmp_path / "out.zarr"
    featuremap.run(tmp_path / "p.yaml", input=source, output=str(output), client=client)

    with pytest.raises(InputError) as refused:
        featuremap.run(tmp_path / "p.yaml", input=source, output=str(output), client=client)
    assert "use overwrite=True to replace it or resume=True to finish it" in str(refused.value)
    assert "--" not in str(refused.value)

    result = run_cli("run", tmp_path / "p.yaml", "--input", source, "--output", output)
    assert result.returncode == 2
    assert "use --overwrite to replace it or --resume to finish it" in result.stderr
    assert "=True" not in result.stderr


def _shared_bomb(levels: int) -> list:
    """A list whose full repr has 9**levels leaves, sharing one list per level."""
    value: list = ["lol"] * 9
    for _ in range(levels - 1):
        value = [value] * 9
    return value


def test_describe_never_builds_the_full_repr():
    bomb = _shared_bomb(7)  # its repr would be 33 MB
    tracemalloc.start()
    try:
        text = describe(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert len(text) <= 80
    assert text.startswith("[[[")


def test_describe_is_one_short_line_for_anything():
    assert describe(0xF << 100_000) == "<integer of about 30105 digits>"  # repr() would refuse
    assert describe(-(10**200)).startswith("<negative integer of about 201 digits")
    assert describe("x" * 10**6).startswith("'xxx")
    assert len(describe("x" * 10**6)) <= 80
    assert describe(np.zeros((100, 100))).startswith("array([[0., 0.")
    assert "\n" not in describe(np.zeros((100, 100)))
    assert describe({"a": [1, 2.5, None]}) == "{'a': [1, 2.5, None]}"  # small values as repr

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert describe(Broken()) == "<Broken>"
