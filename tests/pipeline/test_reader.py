"""The pipeline file reader (``featuremap.pipeline.reader``): legitimate aliases and nesting load;
nesting past the limit is refused before Python's recursion limit. (Hostile files through the
command line, under a memory limit: ``jobs/test_limits.py``.)"""

from __future__ import annotations

import pytest

from featuremap.errors import InputError
from featuremap.pipeline.pipeline import load_pipeline
from featuremap.pipeline.reader import MAX_YAML_DEPTH


def test_legitimate_aliases_and_nesting_load(tmp_path):
    path = tmp_path / "aliased.yaml"
    path.write_text(
        "name: aliased\n"
        "layers:\n"
        "  - conv: &c {bank: &b {type: box, size: 3}, bias: &z [0.5], stride: &s [1, 1]}\n"
        + "  - conv: {bank: *b, bias: *z, stride: *s}\n" * 50
        + "  - conv: *c\n"
    )
    pipeline = load_pipeline(path)
    assert len(pipeline.layers) == 52
    assert pipeline.to_dict()["layers"][51]["conv"]["bias"] == [0.5]
    assert len(pipeline.fingerprint()) == 64
    # nesting just inside the limit parses (and is refused for what it is, not for its depth)
    deep = tmp_path / "deep.yaml"
    deep.write_text("layers: " + "[" * (MAX_YAML_DEPTH - 2) + "]" * (MAX_YAML_DEPTH - 2) + "\n")
    with pytest.raises(InputError, match=r"layers\[0\]: must have exactly one key") as caught:
        load_pipeline(deep)
    assert "deeper" not in str(caught.value)


def test_nesting_past_the_limit_is_refused_before_the_recursion_limit(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("layers:\n" + "".join("  " * i + "- \n" for i in range(1, 400)))
    with pytest.raises(InputError, match=rf"deeper than {MAX_YAML_DEPTH} levels"):
        load_pipeline(path)
