"""``featuremap.engine.geometry`` checked empirically against PyTorch.

Random conv / pool stacks (kernel, stride, dilation, int / pair / asymmetric / "same" padding, even
kernels) are run through ``torch.nn.functional`` in float64. We check that

* output shapes equal :meth:`LayerGeometry.output_shape` layer by layer;
* the input pixels that influence one output pixel (the non-zero gradient of that output with
  respect to the input, with all-positive weights so nothing cancels) lie inside the window
  ``offset + i * jump +- (rf - 1) / 2`` of the composed :class:`StackGeometry`, reach both of its
  ends when it lies inside the image, and for interior pixels equal exactly the Minkowski sum of
  the dilated taps of every layer (holes included);
* :func:`same_padding` reproduces ``padding="same"`` for stride 1, shape and values;
* the ``parse_*`` validators raise :class:`InputError` naming the parameter.

Property tests (hypothesis) check the same arithmetic against a brute-force walk through the taps,
without torch: :func:`compose` (receptive field, jump, offset) and :func:`input_window` against the
virtual input coordinates every output reads, :func:`same_padding` and :func:`output_length`
against their definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremap._validation import parse_pair
from featuremap.engine.geometry import (
    AxisLayer,
    LayerGeometry,
    StackGeometry,
    compose,
    input_window,
    output_centres,
    output_length,
    parse_padding,
    parse_padding_mode,
    resolve_layer,
    same_padding,
)
from featuremap.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(autouse=True, scope="module")
def _float64_torch():
    """torch's float64 default for this file's tests only (other files share the process)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


# --- random stacks ---------------------------------------------------------------------------


def random_padding(rng: np.random.Generator, kernel: tuple[int, int]):
    """A padding spec of a random form: int, pair, asymmetric pairs or "same"."""
    form = rng.integers(4)
    if form == 0:
        return int(rng.integers(0, min(kernel) // 2 + 1))
    if form == 1:
        return [int(rng.integers(0, k // 2 + 1)) for k in kernel]
    if form == 2:
        return [[int(rng.integers(0, k // 2 + 1)) for _ in range(2)] for k in kernel]
    return "same"


def random_layer(rng: np.random.Generator) -> dict:
    """A conv or pool layer spec (pool: dilation 1, padding at most half the kernel)."""
    kind = ["conv", "max", "avg"][rng.integers(3)]
    kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (1, 1) if kind != "conv" else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = random_padding(rng, kernel)
    return {
        "kind": kind,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
    }


def torch_layer(spec: dict, geometry: LayerGeometry, x: torch.Tensor) -> torch.Tensor:
    """Run one layer in torch, padding explicitly with the resolved (lo, hi) pairs."""
    (top, bottom), (left, right) = geometry.padding
    if spec["kind"] == "max":
        padded = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(padded, spec["kernel"], spec["stride"])
    padded = F.pad(x, (left, right, top, bottom))
    if spec["kind"] == "avg":
        return F.avg_pool2d(padded, spec["kernel"], spec["stride"])
    weight = torch.ones((x.shape[1], x.shape[1], *spec["kernel"]))
    return F.conv2d(padded, weight, stride=spec["stride"], dilation=spec["dilation"])


def build_stack(rng: np.random.Generator, shape: tuple[int, int], depth: int):
    """Random layer specs with their resolved geometry; None if the image got too small."""
    specs, geometries, hw = [], [], shape
    for _ in range(depth):
        spec = random_layer(rng)
        try:
            geometry = resolve_layer(
                spec["kernel"], spec["stride"], spec["dilation"], parse_padding(spec["padding"]), hw
            )
        except InputError:
            return None
        specs.append(spec)
        geometries.append(geometry)
        hw = geometry.output_shape(hw)
    return specs, geometries


def random_stacks(seed: int, count: int, depth_max: int = 3):
    rng = np.random.default_rng(seed)
    stacks = []
    while len(stacks) < count:
        shape = (int(rng.integers(12, 40)), int(rng.integers(12, 40)))
        built = build_stack(rng, shape, int(rng.integers(1, depth_max + 1)))
        if built is not None:
            stacks.append((shape, *built))
    return stacks


# --- (a) output shapes -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_output_shapes_match_torch(seed):
    for shape, specs, geometries in random_stacks(seed, 25):
        x = torch.rand((1, 2, *shape))
        hw = shape
        for spec, geometry in zip(specs, geometries, strict=False):
            x = torch_layer(spec, geometry, x)
            if spec["padding"] == "same":
                assert tuple(x.shape[-2:]) == tuple(
                    -(-n // s) for n, s in zip(hw, spec["stride"], strict=False)
                )
            hw = geometry.output_shape(hw)
            assert tuple(x.shape[-2:]) == hw, (spec, geometry)
        # the stack's own output length agrees with chaining output_length per axis
        for axis in range(2):
            n = shape[axis]
            for geometry in geometries:
                n = geometry.axes[axis].output_length(n)
            assert n == hw[axis]


def test_same_padding_gives_ceil_for_any_stride():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n, k, s, d = (
            int(rng.integers(1, 50)),
            int(rng.integers(1, 8)),
            int(rng.integers(1, 5)),
            int(rng.integers(1, 4)),
        )
        lo, hi = same_padding(n, k, s, d)
        assert 0 <= lo <= hi <= lo + 1
        assert output_length(n, k, s, d, lo, hi) == -(-n // s)
        padded = F.pad(torch.rand((1, 1, 1, n)), (lo, hi))
        out = F.conv2d(padded, torch.ones((1, 1, 1, k)), stride=(1, s), dilation=(1, d))
        assert out.shape[-1] == -(-n // s)


# --- (b) receptive field, jump, offset ---------------------------------------------------------


def influence(specs, geometries, shape, out_index) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the input whose gradient for output pixel ``out_index`` is non-zero."""
    x = torch.ones((1, 1, *shape), requires_grad=True)
    y = x
    for spec, geometry in zip(specs, geometries, strict=False):
        y = torch_layer(spec, geometry, y)
    y[0, 0, out_index[0], out_index[1]].backward()
    mask = (x.grad[0, 0] != 0).numpy()
    return np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def tap_offsets(geometries, axis: int) -> set[int]:
    """All input offsets (relative to the window start) a stack's taps reach: a Minkowski sum."""
    offsets, jump = {0}, 1
    for geometry in geometries:
        layer = geometry.axes[axis]
        taps = {t * layer.dilation * jump for t in range(layer.kernel)}
        offsets = {o + t for o in offsets for t in taps}
        jump *= layer.stride
    return offsets


@pytest.mark.parametrize("seed", range(4))
def test_influence_window_matches_resolve_stack(seed):
    rng = np.random.default_rng(100 + seed)
    for shape, specs, geometries in random_stacks(100 + seed, 12):
        # max pooling routes the gradient to one pixel: use avg pooling for the influence test
        specs = [dict(s, kind="avg") if s["kind"] == "max" else s for s in specs]
        stack = compose(geometries)[-1]
        out_shape = shape
        for geometry in geometries:
            out_shape = geometry.output_shape(out_shape)
        centres = output_centres(stack, out_shape)
        for _ in range(4):
            out_index = tuple(int(rng.integers(0, n)) for n in out_shape)
            found = influence(specs, geometries, shape, out_index)
            for axis in range(2):
                rf, centre = stack.receptive_field[axis], centres[axis][out_index[axis]]
                lo, hi = centre - (rf - 1) / 2, centre + (rf - 1) / 2
                assert lo == int(lo), "a window edge is always on a pixel"
                window = input_window(
                    [g.axes[axis] for g in geometries], out_index[axis], out_index[axis] + 1
                )
                assert window == (lo, hi + 1)
                pixels = found[axis]
                assert len(pixels) <= rf
                assert pixels.size
                assert pixels.min() >= lo
                assert pixels.max() <= hi
                if lo >= 0 and hi <= shape[axis] - 1:
                    expected = sorted(int(lo) + o for o in tap_offsets(geometries, axis))
                    assert pixels.tolist() == expected


def test_max_pool_output_is_max_over_geometry_window():
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = (int(rng.integers(5, 30)), int(rng.integers(5, 30)))
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = [k // 2 for k in kernel]
        geometry = resolve_layer(kernel, stride, (1, 1), parse_padding(padding), shape)
        x = torch.rand((1, 1, *shape))
        out = F.max_pool2d(x, kernel, stride, padding)[0, 0].numpy()
        assert out.shape == geometry.output_shape(shape)
        y_axis, x_axis = geometry.axes
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                (y0, y1), (x0, x1) = (
                    y_axis.input_interval(i, i + 1),
                    x_axis.input_interval(j, j + 1),
                )
                window = x[0, 0, max(y0, 0) : y1, max(x0, 0) : x1]
                assert out[i, j] == window.max().item()


def test_compose_known_values():
    """Hand-checked: conv 3x3 s1 p1, max 2x2 s2, conv 5x5 d2 p4 (a VGG-like stem)."""
    layers = [
        LayerGeometry((3, 3), (1, 1), (1, 1), ((1, 1), (1, 1))),
        LayerGeometry((2, 2), (2, 2)),
        LayerGeometry((5, 5), (1, 1), (2, 2), ((4, 4), (4, 4))),
    ]
    stacks = compose(layers)
    assert [s.receptive_field[0] for s in stacks] == [3, 4, 4 + 2 * 4 * 2]
    assert [s.jump[0] for s in stacks] == [1, 2, 2]
    assert [s.offset[0] for s in stacks] == [0.0, 0.5, 0.5]


# --- (c) "same" padding equals torch's ---------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_same_padding_matches_torch_same():
    rng = np.random.default_rng(11)
    for _ in range(40):
        shape = (int(rng.integers(6, 25)), int(rng.integers(6, 25)))
        kernel = (int(rng.integers(1, 7)), int(rng.integers(1, 7)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        x, w = torch.rand((1, 2, *shape)), torch.rand((3, 2, *kernel))
        expected = F.conv2d(x, w, padding="same", dilation=dilation)
        geometry = resolve_layer(kernel, (1, 1), dilation, "same", shape)
        (top, bottom), (left, right) = geometry.padding
        assert geometry.padding == tuple(
            same_padding(shape[i], kernel[i], 1, dilation[i]) for i in range(2)
        )
        got = F.conv2d(F.pad(x, (left, right, top, bottom)), w, dilation=dilation)
        assert got.shape == expected.shape == (1, 3, *shape)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# --- (d) validators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "names"),
    [
        (lambda: parse_pair("stride", -1), ["stride", "-1"]),
        (lambda: parse_pair("stride", 0), ["stride", "0"]),
        (lambda: parse_pair("kernel_size", [3, 4, 5]), ["kernel_size", "[3, 4, 5]"]),
        (lambda: parse_pair("dilation", 1.5), ["dilation", "1.5"]),
        (lambda: parse_pair("stride", True), ["stride", "True"]),
        (lambda: parse_padding("full"), ["padding", "'full'", "same"]),
        (lambda: parse_padding(-2), ["padding", "-2"]),
        (lambda: parse_padding([[1, 2], [3, -1]]), ["padding", "x"]),
        (lambda: parse_padding_mode("symmetric"), ["padding_mode", "'symmetric'", "mirror"]),
        (lambda: parse_padding_mode("wrap"), ["padding_mode", "'wrap'", "circular"]),
        (lambda: output_length(4, 7, 1, 1, 0, 0, axis="x"), ["x", "kernel 7", "4"]),
        (lambda: AxisLayer(5, dilation=3).output_length(8), ["y", "13", "8"]),
        (lambda: resolve_layer((3, 3), (1, 1), (1, 1), ((0, 0), (0, 0)), (2, 9)), ["along y"]),
    ],
)
def test_validators_raise_input_error_naming_the_parameter(call, names):
    with pytest.raises(InputError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_parsers_normalise():
    assert parse_pair("stride", 2) == (2, 2)
    assert parse_pair("stride", (1, np.int64(3))) == (1, 3)
    assert parse_padding("valid") == ((0, 0), (0, 0))
    assert parse_padding([1, 2]) == ((1, 1), (2, 2))
    assert parse_padding([[0, 1], [2, 3]]) == ((0, 1), (2, 3))
    assert parse_padding("same") == "same"
    assert LayerGeometry.from_dict(
        LayerGeometry((3, 2), (2, 1), (1, 2), ((1, 0), (0, 1))).to_dict()
    ) == LayerGeometry((3, 2), (2, 1), (1, 2), ((1, 0), (0, 1)))


def test_3d_parsers_and_per_axis_modes():
    assert parse_padding(1, 3) == ((1, 1),) * 3
    assert parse_padding([1, 0, 2], 3) == ((1, 1), (0, 0), (2, 2))
    assert parse_padding([[0, 1], [2, 3], [4, 5]], 3) == ((0, 1), (2, 3), (4, 5))
    assert parse_padding_mode({"x": "circular"}) == ("zeros", "circular")
    assert parse_padding_mode(["reflect"] * 3, 3) == "reflect"
    assert parse_padding_mode({"z": "reflect", "y": "replicate", "x": "circular"}, 3) == (
        "reflect",
        "replicate",
        "circular",
    )
    geometry = LayerGeometry(
        (3, 1, 5), (2, 1, 1), (1, 1, 2), ((1, 1), (0, 0), (4, 4)), ("reflect", "zeros", "circular")
    )
    assert geometry.to_dict()["padding_mode"] == {"z": "reflect", "y": "zeros", "x": "circular"}
    assert LayerGeometry.from_dict(geometry.to_dict()) == geometry
    assert [axis.padding_mode for axis in geometry.axes] == ["reflect", "zeros", "circular"]
    with pytest.raises(
        InputError, match="padding_mode names axis 'z'; a 2-D layer has the axes y, x"
    ):
        parse_padding_mode({"z": "reflect"})
    with pytest.raises(InputError, match=r"\[pz, py, px\]"):
        parse_padding([1, 2], 3)


def test_3d_stack_geometry_is_per_axis():
    """receptive field, jump and offset per z, y, x, each axis by the 1-D formulas."""
    conv = LayerGeometry((3, 5, 5), (1, 2, 2), (2, 1, 1), ((2, 2), (2, 2), (2, 2)))
    pool = LayerGeometry((1, 2, 2), (1, 2, 2), (1, 1, 1), ((0, 0),) * 3)
    first, second = compose([conv, pool])
    assert (first.receptive_field, first.jump, first.offset) == (
        (5, 5, 5),
        (1, 2, 2),
        (0.0, 0.0, 0.0),
    )
    assert (second.receptive_field, second.jump, second.offset) == (
        (5, 7, 7),
        (1, 4, 4),
        (0.0, 1.0, 1.0),
    )
    assert conv.output_shape((9, 20, 21)) == (9, 10, 11)
    assert StackGeometry.from_dict(second.to_dict()) == second
    with pytest.raises(InputError, match="a 3-D layer needs an input with 3 spatial axes"):
        resolve_layer((3, 3, 3), (1, 1, 1), (1, 1, 1), "same", (9, 9))


# --- (e) properties against brute force (hypothesis) ----------------------------------------------

axis_layers = st.builds(
    AxisLayer,
    kernel=st.integers(1, 6),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 3),
    pad_lo=st.integers(0, 5),
    pad_hi=st.integers(0, 5),
)


def virtual_reads(axes, index: int) -> set[int]:
    """Input coordinates (of the unpadded input, so possibly in the padding) that output ``index``
    of a stack reads, by walking every tap of every layer from the last back to the first."""
    coordinates = {index}
    for axis in reversed(axes):
        coordinates = {
            c * axis.stride - axis.pad_lo + t * axis.dilation
            for c in coordinates
            for t in range(axis.kernel)
        }
    return coordinates


def as_layer(y_axis: AxisLayer, x_axis: AxisLayer) -> LayerGeometry:
    return LayerGeometry(
        (y_axis.kernel, x_axis.kernel),
        (y_axis.stride, x_axis.stride),
        (y_axis.dilation, x_axis.dilation),
        ((y_axis.pad_lo, y_axis.pad_hi), (x_axis.pad_lo, x_axis.pad_hi)),
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(axis_layers, axis_layers), min_size=1, max_size=4),
    st.integers(0, 6),
)
def test_compose_matches_the_taps_every_output_reads(stack, index):
    layers = [as_layer(y_axis, x_axis) for y_axis, x_axis in stack]
    history = compose(layers)
    assert len(history) == len(layers)
    for depth, geometry in enumerate(history, start=1):
        for axis in range(2):
            axes = [pair[axis] for pair in stack[:depth]]
            reads, following = virtual_reads(axes, index), virtual_reads(axes, index + 1)
            assert geometry.receptive_field[axis] == max(reads) - min(reads) + 1
            assert geometry.jump[axis] == min(following) - min(reads)
            assert (
                geometry.offset[axis] + index * geometry.jump[axis] == (min(reads) + max(reads)) / 2
            )
            assert StackGeometry.from_dict(geometry.to_dict()) == geometry


@settings(max_examples=150, deadline=None)
@given(st.lists(axis_layers, min_size=1, max_size=4), st.integers(0, 8), st.integers(1, 6))
def test_input_window_is_the_hull_of_what_the_outputs_read(axes, out_start, length):
    out_stop = out_start + length
    reads = set().union(*(virtual_reads(axes, i) for i in range(out_start, out_stop)))
    assert input_window(axes, out_start, out_stop) == (min(reads), max(reads) + 1)
    # one output's window is the stack's receptive field wide
    start, stop = input_window(axes, out_start, out_start + 1)
    rf = compose([as_layer(a, a) for a in axes])[-1].receptive_field[0]
    assert stop - start == rf


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 300), st.integers(1, 11), st.integers(1, 5), st.integers(1, 4))
def test_same_padding_gives_ceil_with_the_least_padding(n, kernel, stride, dilation):
    lo, hi = same_padding(n, kernel, stride, dilation)
    assert 0 <= lo <= hi <= lo + 1
    assert output_length(n, kernel, stride, dilation, lo, hi) == -(-n // stride)
    if lo + hi:  # one pixel less padding would lose the last output (or not fit at all)
        span, padded = dilation * (kernel - 1) + 1, n + lo + hi - 1
        assert padded < span or (padded - span) // stride + 1 < -(-n // stride)


@settings(max_examples=200, deadline=None)
@given(axis_layers, st.integers(1, 60))
def test_output_length_counts_the_windows_that_fit(axis, n):
    padded = n + axis.pad_lo + axis.pad_hi
    fitting = [i for i in range(padded) if i * axis.stride + axis.reach < padded]
    if not fitting:
        with pytest.raises(InputError):
            axis.output_length(n)
        return
    assert axis.output_length(n) == len(fitting)
    # the last output's window ends inside the padded input; one more would not
    start, stop = axis.input_interval(0, len(fitting))
    assert start == -axis.pad_lo
    assert stop <= n + axis.pad_hi < stop + axis.stride
