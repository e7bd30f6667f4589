"""Pipeline loader: normalisation, path resolution, fingerprints, building layers, every error path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from support import REPO

from featuremap import banks
from featuremap.engine.layers import ConvLayer, PoolLayer, ReduceLayer
from featuremap.engine.stack import apply_stack, resolve_stack
from featuremap.errors import InputError
from featuremap.pipeline.pipeline import Pipeline, load_pipeline

PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))


def conv(**overrides):
    return {"conv": {"bank": {"type": "box", "size": 3}, **overrides}}


def spec(*layers, **top):
    return {"layers": list(layers) or [conv()], **top}


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- normalisation and round trip ------------------------------------------------------------


def test_defaults_are_filled_in_and_round_trip():
    pipeline = load_pipeline(
        spec(
            conv(),
            {"pool": {"type": "avg", "kernel_size": 3}},
            {"reduce": {"op": "sum", "groups": 1}},
        )
    )
    conv_spec, pool_spec, reduce_spec = (
        next(iter(layer.values())) for layer in pipeline.to_dict()["layers"]
    )
    assert conv_spec == {
        "bank": {"type": "box", "size": 3},
        "stride": [1, 1],
        "padding": [[0, 0], [0, 0]],
        "dilation": [1, 1],
        "padding_mode": "zeros",
        "activation": "none",
        "channels": "per_channel",
        "flip": False,
        "bias": None,
    }
    assert pool_spec == {
        "type": "avg",
        "kernel_size": [3, 3],
        "stride": [3, 3],
        "padding": [[0, 0], [0, 0]],
    }
    assert reduce_spec == {"op": "sum", "groups": [1]}
    assert load_pipeline(pipeline.to_dict()).to_dict() == pipeline.to_dict()
    assert pipeline.name == "pipeline"


def test_paths_resolve_against_the_yaml_folder(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    path = write(
        folder,
        "input: {store: data/in.zarr, array: images}\noutput: {store: s3://bucket/out.zarr}\n"
        "layers: [{conv: {bank: {type: box}}}]\n",
    )
    pipeline = load_pipeline(path)
    assert pipeline.input.store == str(folder / "data" / "in.zarr")
    assert pipeline.output.store == "s3://bucket/out.zarr"  # URLs untouched
    assert pipeline.source == str(path)
    assert pipeline.base_dir == folder
    assert pipeline.name == "p"


def test_dict_paths_resolve_against_base_dir_and_overrides_against_cwd(tmp_path, monkeypatch):
    pipeline = load_pipeline(spec(input={"store": "in.zarr"}), base_dir=tmp_path)
    assert pipeline.input.store == str(tmp_path / "in.zarr")
    monkeypatch.chdir(tmp_path.parent)
    changed = pipeline.with_overrides(input="x.zarr", array="a", output="o.zarr")
    assert changed.input.store == os.path.join(os.getcwd(), "x.zarr")
    assert changed.input.array == "a"
    assert changed.output.store == os.path.join(os.getcwd(), "o.zarr")
    assert pipeline.input.array is None  # the original is unchanged (frozen)


def test_input_override_drops_the_files_array_name(tmp_path):
    """``input.array`` names a node of the file's store: ``--input`` (another store) drops it,
    ``--array`` names one in the new store."""
    pipeline = load_pipeline(spec(input={"store": "in.zarr", "array": "images"}), base_dir=tmp_path)
    assert pipeline.with_overrides(input="cells.ome.zarr").input.array is None
    assert pipeline.with_overrides(input="s2.zarr", array="b").input.array == "b"
    assert pipeline.with_overrides(array="b").input.array == "b"


def test_fingerprint_follows_layers_and_weight_bytes_not_output_path(tmp_path):
    weights = tmp_path / "w.npz"
    np.savez(weights, weight=np.ones((2, 1, 3, 3), np.float32))
    base = spec(conv(bank={"type": "file", "path": "w.npz"}), output={"store": "a.zarr"})
    first = load_pipeline(base, base_dir=tmp_path)
    assert (
        first.fingerprint()
        == load_pipeline(base, base_dir=tmp_path)
        .with_overrides(output="elsewhere.zarr")
        .fingerprint()
    )
    assert (
        first.fingerprint()
        != load_pipeline(
            spec(conv(bank={"type": "file", "path": "w.npz"}, stride=2)), base_dir=tmp_path
        ).fingerprint()
    )
    before = first.fingerprint()
    np.savez(weights, weight=np.full((2, 1, 3, 3), 2, np.float32))
    assert load_pipeline(base, base_dir=tmp_path).fingerprint() != before
    assert len(before) == 64


# -- building layers against an oracle ------------------------------------------------------------


def test_build_layers_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    weight2 = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)
    bias2 = rng.normal(size=4).astype(np.float32)
    np.savez(tmp_path / "l2.npz", weight=weight2, bias=bias2)
    pipeline = load_pipeline(
        spec(
            conv(bank={"type": "sobel"}, stride=2, dilation=2, padding=[2, 1], activation="relu"),
            {"pool": {"type": "max", "kernel_size": 2}},
            conv(bank={"type": "file", "path": "l2.npz"}, padding="same", activation="tanh"),
        ),
        base_dir=tmp_path,
    )
    layers = pipeline.build_layers(3)
    assert [type(layer) for layer in layers] == [ConvLayer, PoolLayer, ConvLayer]
    x = rng.normal(size=(2, 3, 21, 19)).astype(np.float32)

    sobel = banks.get("sobel").weight  # (2, 1, 3, 3), per_channel -> groups=3, channel-major
    t = torch.from_numpy(x)
    t = torch.relu(
        torch.nn.functional.conv2d(
            t,
            torch.from_numpy(np.tile(sobel, (3, 1, 1, 1))),
            stride=2,
            dilation=2,
            padding=(2, 1),
            groups=3,
        )
    )
    t = torch.nn.functional.max_pool2d(t, 2)
    t = torch.tanh(
        torch.nn.functional.conv2d(
            t, torch.from_numpy(weight2), torch.from_numpy(bias2), padding="same"
        )
    )
    np.testing.assert_allclose(apply_stack(layers, x), t.numpy(), rtol=1e-5, atol=1e-5)


def test_bias_override_flip_and_sum_channels():
    pipeline = load_pipeline(
        spec(conv(bank={"type": "sobel"}, channels="sum", bias=[1.0, -2.0], flip=True))
    )
    (layer,) = pipeline.build_layers(3)
    sobel = banks.get("sobel").weight
    np.testing.assert_array_equal(layer.weight, np.repeat(sobel, 3, axis=1)[..., ::-1, ::-1])
    np.testing.assert_array_equal(layer.bias, [1.0, -2.0])
    (scalar,) = load_pipeline(spec(conv(bias=0.5))).build_layers(1)
    np.testing.assert_array_equal(scalar.bias, [0.5])


def test_reduce_groups_default_to_the_bank_suggestion():
    layers = load_pipeline(
        spec(conv(bank={"type": "mr8", "size": 9}), {"reduce": {"op": "max"}})
    ).build_layers(2)
    assert isinstance(layers[1], ReduceLayer)
    assert layers[1].groups == (6, 6, 6, 6, 6, 6, 1, 1) * 2
    _stack = resolve_stack(layers, (20, 20), 2)
    _, _, shapes = _stack.geometries, _stack.stacks, _stack.shapes
    assert shapes[-1][0] == 16


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_shipped_pipelines_load_and_build(path):
    """Each reads what ``featuremap demo`` makes: its images, or (3-D layers) its volume."""
    pipeline = load_pipeline(path)
    if pipeline.ndim == 3:
        layers = pipeline.build_layers(1, spacing=(0.2, 0.05, 0.05))
        resolve_stack(layers, (24, 96, 96), 1)
        assert pipeline.input.store == str(REPO / "demo-output" / "volume.ome.zarr")
        return
    layers = pipeline.build_layers(1)
    resolve_stack(layers, (96, 96), 1)
    assert pipeline.input.store == str(REPO / "demo-output" / "images.zarr")


def test_packaged_default_pipeline_equals_the_shipped_one():
    from featuremap.apps.demo import default_pipeline_path

    assert (
        load_pipeline(default_pipeline_path()).layers
        == load_pipeline(REPO / "pipelines" / "default.yaml").layers
    )


# -- errors: one line, naming the place -------------------------------------------------------------

ERRORS = [
    ({"layers": []}, "layers: must be a non-empty list"),
    ({"layer": [conv()]}, "pipeline: unknown key 'layer' (did you mean 'layers'?)"),
    ({}, "layers: missing"),
    (spec(name=3), "name: must be a non-empty string"),
    (
        spec(input={"store": "a", "chanel_axis": -3}),
        "input: unknown key 'chanel_axis' (did you mean 'channel_axis'?)",
    ),
    (spec(input={"channel_axis": "c"}), "input.channel_axis: must be an integer"),
    (spec(output={"chunks": [0, 4]}), "output.chunks: must be an integer >= 1"),
    (spec(output=[1]), "output: must be a mapping"),
    (spec(output={"codec": "gzip"}), "output.codec: must be one of auto, lz4, zstd, none"),
    (
        spec(output={"codec": {"name": "zsd"}}),
        "output.codec.name: must be one of auto, lz4, zstd, none",
    ),
    (spec(output={"codec": "zstd", "level": 10}), "output.level: must be an integer >= 0 and <= 9"),
    (spec(output={"codec": {"name": "zstd", "level": 3}, "level": 4}), "output.level: given twice"),
    (spec(output={"codec": "none", "level": 3}), "output.level: codec none has no level"),
    (spec(output={"dtype": "float64"}), "output.dtype: must be one of float32, float16"),
    (spec(output={"shards": "yes"}), "output.shards: must be auto, false or a shard shape"),
    (
        spec(conv(), conv(stride=-1)),
        "layers[1].conv.stride: must be an integer >= 1 or a list [y, x] of them, got -1",
    ),
    (spec(conv(stride=True)), "layers[0].conv.stride: must be"),
    (spec(conv(padding="full")), "layers[0].conv.padding: must be 'same', 'valid'"),
    (spec(conv(dilation=[1, 2, 3])), "layers[0].conv.dilation: must be"),
    (
        spec(conv(padding_mode="symmetric")),
        "layers[0].conv.padding_mode: must be one of zeros, reflect, replicate, circular",
    ),
    (spec(conv(activation="gelu")), "layers[0].conv.activation: must be one of"),
    (spec(conv(channels="mean")), "layers[0].conv.channels: must be one of per_channel, sum"),
    (spec(conv(flip="yes")), "layers[0].conv.flip: must be true or false"),
    (spec(conv(bias=True)), "layers[0].conv.bias: must be false"),
    (spec(conv(strides=2)), "layers[0].conv: unknown key 'strides' (did you mean 'stride'?)"),
    (spec({"conv": {"stride": 2}}), "layers[0].conv.bank: missing"),
    (spec(conv(bank="gabor")), "layers[0].conv.bank: must be a mapping with a 'type'"),
    (
        spec(conv(bank={"type": "gabr"})),
        "layers[0].conv.bank.type: unknown filter bank 'gabr' (did you mean 'gabor'?)",
    ),
    (
        spec(conv(bank={"type": "gabor", "sise": 3})),
        "layers[0].conv.bank: bank 'gabor' has no parameter 'sise'",
    ),
    (spec(conv(bank={"type": "file", "path": "missing.npz"})), "layers[0].conv.bank: weight file"),
    (
        spec(conv(bank={"type": "file", "path": "w.npz", "base_dir": "/"})),
        "layers[0].conv.bank.base_dir: not allowed",
    ),
    (
        spec({"conv": {"bank": {"type": "box"}}, "pool": {"type": "max"}}),
        "layers[0]: must have exactly one key",
    ),
    (
        spec({"pol": {"type": "max"}}),
        "layers[0]: must have exactly one key, one of activation, conv, eigenvalues, features, pool, product, reduce, got ['pol'] (did you mean 'pool'?)",
    ),
    (
        spec({"pool": {"type": "min", "kernel_size": 2}}),
        "layers[0].pool.type: must be one of max, avg",
    ),
    (spec({"pool": {"type": "max"}}), "layers[0].pool.kernel_size: missing"),
    (
        spec({"pool": {"type": "max", "kernel_size": 2, "padding": 2}}),
        "layers[0].pool.padding: pool padding 2",
    ),
    (
        spec({"reduce": {"op": "median"}}),
        "layers[0].reduce.op: must be one of max, max_abs, mean, sum, magnitude",
    ),
    (
        spec({"reduce": {"op": "max", "groups": [0]}}),
        "layers[0].reduce.groups: reduce groups must be",
    ),
]


@pytest.mark.parametrize(("data", "message"), ERRORS, ids=[m for _, m in ERRORS])
def test_invalid_specs_name_the_place(data, message):
    with pytest.raises(InputError) as caught:
        load_pipeline(data)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


BUILD_ERRORS = [
    (
        spec(conv(bank={"type": "random", "in_channels": 2})),
        3,
        "layers[0].conv: bank 'random' takes 2 input channels",
    ),
    (
        spec(conv(bias=[1.0, 2.0])),
        1,
        "layers[0].conv: bias: has 2 values but the layer has 1 output features",
    ),
    (spec(conv(), {"reduce": {"op": "max"}}), 1, "layers[1].reduce: groups: missing"),
    (
        spec(conv(), {"reduce": {"op": "max", "groups": 2}}),
        3,
        "layers[1].reduce: reduce group size 2 does not divide the 3",
    ),
]


@pytest.mark.parametrize(
    ("data", "channels", "message"), BUILD_ERRORS, ids=[m for *_, m in BUILD_ERRORS]
)
def test_build_errors_name_the_layer(data, channels, message):
    pipeline = load_pipeline(data)
    with pytest.raises(InputError, match=None) as caught:
        pipeline.build_layers(channels)
    assert message in str(caught.value)


YAML_ERRORS = [
    ("layers: [{conv: {bank: {type: box}}\n", "invalid YAML at line"),
    ("!!python/object/apply:os.system ['echo hi']\n", "YAML tag at line 1 is not allowed"),
    (
        "layers: [{conv: {bank: {type: box}, stride: 1, stride: 2}}]\n",
        "duplicate key 'stride' at line 1",
    ),
    ("- 1\n- 2\n", "pipeline: must be a mapping"),
    (
        "layers: [{conv: {bank: {type: box}, stride: -1}}]\n",
        "layers[0].conv.stride: must be an integer >= 1 or a list [y, x] of them, got -1",
    ),
    # refused while composing or constructing, never an internal error (issue #12)
    ("layers: [{[1]: 2}]\n", "YAML mapping key at line 1 must be a string or a number, not a list"),
    ("layers: &a [*a]\n", "YAML alias at line 1 refers to a node that contains it"),
    ("name: 2020-02-31\nlayers: []\n", "invalid YAML value: day is out of range for month"),
    (
        "layers: [{conv: {bank: {type: box, size: 0x" + "f" * 200 + "}}}]\n",
        "YAML integer at line 1 has more than 100 characters, got '0xfff",
    ),
    ("layers: [{conv: {bank: {type: box, size: " + "1:" * 300 + "1}}}]\n", "more than 100 char"),
    ("layers: [" + "*" + "x" * 5000 + "]\n", "found undefined alias 'xxxx"),
    ("a: &x 1\nlayers: [" + "*x, " * 1001 + "]\n", "YAML document uses more than 1000 aliases"),
]


@pytest.mark.parametrize(("text", "message"), YAML_ERRORS, ids=[m for _, m in YAML_ERRORS])
def test_yaml_errors_name_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        load_pipeline(path)
    assert message in str(caught.value)
    assert str(caught.value).endswith(f"({path})")
    assert len(str(caught.value)) < 400 + len(str(path))


def test_geometry_errors_name_the_layer_as_the_pipeline_does():
    layers = load_pipeline(spec({"pool": {"type": "max", "kernel_size": 100_000}})).build_layers(1)
    with pytest.raises(InputError, match=r"^layers\[0\]\.pool: a kernel spanning 100000 pixels"):
        resolve_stack(layers, (64, 64), 1)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_pipeline(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="is a directory"):
        load_pipeline(tmp_path)
    with pytest.raises(InputError, match="YAML file path or a mapping"):
        load_pipeline(42)


def test_pipeline_passes_through():
    pipeline = load_pipeline(spec())
    assert load_pipeline(pipeline) is pipeline
    assert isinstance(pipeline, Pipeline)


@pytest.mark.parametrize(
    "output",
    [{"codec": "zstd", "level": 7}, {"codec": {"name": "zstd", "level": 7}}],
    ids=["level-beside", "codec-mapping"],
)
def test_codec_level_in_either_form(output):
    parsed = load_pipeline(spec(output=output)).output
    assert (parsed.codec, parsed.level) == ("zstd", 7)


# --- volumes: 3-D layers ---------------------------------------------------------------------


def test_a_3d_pipeline_has_rank_3_and_per_axis_keys_round_trip():
    pipeline = load_pipeline(
        {
            "output": {"chunks": [4, 16, 32, 32]},
            "layers": [
                {
                    "conv": {
                        "bank": {"type": "gaussian", "ndim": 3, "sigmas": [1.0]},
                        "stride": [1, 2, 2],
                        "padding": "same",
                        "padding_mode": {"z": "reflect", "x": "circular"},
                    }
                },
                {"pool": {"type": "max", "kernel_size": 2}},  # one number: the conv's rank
                {"reduce": {"op": "magnitude", "groups": 10}},
            ],
        }
    )
    assert pipeline.ndim == 3
    conv, pool, _ = pipeline.to_dict()["layers"]
    assert conv["conv"]["padding_mode"] == {"z": "reflect", "y": "zeros", "x": "circular"}
    assert pool["pool"]["kernel_size"] == [2, 2, 2]
    assert pipeline.output.feature_chunks == 4
    assert pipeline.output.chunks == (16, 32, 32)
    again = load_pipeline(pipeline.to_dict())
    assert again.to_dict() == pipeline.to_dict()
    layers = pipeline.build_layers(1)
    stack = resolve_stack(layers, (9, 20, 20), 1)
    assert stack.output_shape == (1, 4, 5, 5)


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            [
                {"conv": {"bank": {"type": "box", "ndim": 3}}},
                {"pool": {"type": "max", "kernel_size": [2, 2]}},
            ],
            r"layers\[1\].pool is a 2-D layer but layers\[0\].conv is a 3-D one",
        ),
        (
            [{"conv": {"bank": {"type": "box", "ndim": 3}, "stride": [1, 2]}}],
            r"layers\[0\].conv.stride: must be an integer >= 1 or a list \[z, y, x\]",
        ),
        (
            [{"conv": {"bank": {"type": "box"}, "padding_mode": {"z": "reflect"}}}],
            r"layers\[0\].conv.padding_mode: .*names axis 'z'; a 2-D layer has the axes y, x",
        ),
    ],
)
def test_3d_refusals_name_the_place(layers, message):
    with pytest.raises(InputError, match=message):
        load_pipeline({"layers": layers})


def test_feature_chunks_need_shards():
    with pytest.raises(InputError, match=r"output\.shards: chunks that name the feature axis need"):
        load_pipeline(
            {
                "output": {"chunks": [4, 64, 64], "shards": False},
                "layers": [{"conv": {"bank": {"type": "box"}}}],
            }
        )


def test_output_pyramid_round_trips_and_leaves_other_fingerprints_alone():
    from featuremap.io.pyramid import PyramidOptions

    pipeline = load_pipeline(spec(output={"pyramid": {"levels": 3, "method": "max"}}))
    assert pipeline.output.pyramid == PyramidOptions(3, "max")
    assert pipeline.output.options().pyramid == PyramidOptions(3, "max")
    assert pipeline.to_dict()["output"]["pyramid"] == {"levels": 3, "method": "max"}
    assert load_pipeline(pipeline.to_dict()).to_dict() == pipeline.to_dict()
    assert load_pipeline(spec(output={"pyramid": "auto"})).output.pyramid == PyramidOptions()
    plain = load_pipeline(spec())
    assert "pyramid" not in plain.to_dict()["output"]  # its fingerprint is what it was
    assert plain.fingerprint() != pipeline.fingerprint()
