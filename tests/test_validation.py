"""The shared ``parse_*`` validators (``featuremap._validation``): what each accepts, in which plain
form it returns it, and that everything else is one :class:`InputError` line
``<name> must be <allowed>, got <value>``. Property tests (hypothesis) draw the values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featuremap._validation import (
    parse_bool,
    parse_choice,
    parse_int,
    parse_pair,
    parse_real,
    parse_real_list,
    parse_text,
)
from featuremap.errors import InputError

#: Values that are never integers: bools, floats (even whole ones), strings, None, containers.
not_integers = st.one_of(
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
#: Python and NumPy integers.
integers = st.one_of(
    st.integers(-1000, 1000),
    st.integers(-1000, 1000).map(np.int64),
    st.integers(0, 255).map(np.uint8),
)


def refused(call, name: str) -> str:
    """The message of the one-line InputError ``call`` raises about ``name``."""
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{name} must be ")
    assert ", got " in message
    assert "\n" not in message
    return message


# --- parse_int ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    integers,
    st.one_of(st.none(), st.integers(-50, 50)),
    st.one_of(st.none(), st.integers(-50, 50)),
    st.booleans(),
)
def test_parse_int_accepts_exactly_the_integers_in_range(value, minimum, maximum, odd):
    number = int(value)
    allowed = (
        (minimum is None or number >= minimum)
        and (maximum is None or number <= maximum)
        and (not odd or number % 2 == 1)
    )
    call = lambda: parse_int("size", value, minimum=minimum, maximum=maximum, odd=odd)  # noqa: E731
    if allowed:
        result = call()
        assert result == number
        assert type(result) is int
    else:
        message = refused(call, "size")
        assert ("an odd integer" if odd else "an integer") in message
        if minimum is not None:
            assert f">= {minimum}" in message


@settings(max_examples=100, deadline=None)
@given(not_integers)
def test_parse_int_refuses_what_is_not_an_integer(value):
    refused(lambda: parse_int("n", value, minimum=0), "n")


# --- parse_pair --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(integers, st.integers(0, 3))
def test_parse_pair_repeats_an_integer(value, minimum):
    if int(value) >= minimum:
        assert parse_pair("stride", value, minimum=minimum) == (int(value), int(value))
        assert all(type(v) is int for v in parse_pair("stride", value, minimum=minimum))
    else:
        assert f">= {minimum}" in refused(
            lambda: parse_pair("stride", value, minimum=minimum), "stride"
        )


@settings(max_examples=200, deadline=None)
@given(integers, integers, st.sampled_from([list, tuple]), st.integers(0, 3))
def test_parse_pair_takes_y_then_x(y, x, container, minimum):
    value = container([y, x])
    if min(int(y), int(x)) >= minimum:
        assert parse_pair("kernel_size", value, minimum=minimum) == (int(y), int(x))
    else:
        refused(lambda: parse_pair("kernel_size", value, minimum=minimum), "kernel_size")


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        not_integers.filter(lambda v: not isinstance(v, list) or len(v) not in (1, 2)),
        st.lists(st.integers(1, 9), min_size=3, max_size=4),  # too long
        st.lists(st.integers(1, 9), max_size=0),  # too short
        st.tuples(st.integers(1, 9), not_integers),  # one element not an integer
        st.tuples(not_integers, st.integers(1, 9)).map(list),
    )
)
def test_parse_pair_refuses_everything_else(value):
    refused(lambda: parse_pair("dilation", value), "dilation")


@pytest.mark.parametrize("container", [list, tuple])
def test_parse_pair_takes_a_one_element_sequence_like_torch(container):
    """``stride=(2,)`` is ``stride=2`` for ``torch.nn.functional.max_pool2d`` / ``conv2d``."""
    import numpy as np

    torch = pytest.importorskip("torch")

    assert parse_pair("stride", container([2])) == (2, 2)
    x = np.random.default_rng(0).random((1, 2, 9, 9), dtype=np.float32)
    import featuremap

    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x), (3,), (2,)).numpy()
    np.testing.assert_array_equal(
        featuremap.max_pool2d(x, container([3]), container([2])), expected
    )


# --- parse_real, parse_real_list ---------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100)),
    st.one_of(st.none(), st.floats(-10, 10)),
    st.booleans(),
)
def test_parse_real_accepts_finite_numbers_in_range(value, minimum, open_minimum):
    finite = math.isfinite(value)
    above = minimum is None or (value > minimum if open_minimum else value >= minimum)
    call = lambda: parse_real("sigma", value, minimum=minimum, open_minimum=open_minimum)  # noqa: E731
    if finite and above:
        result = call()
        assert result == value
        assert type(result) is float
    else:
        refused(call, "sigma")


def test_parse_real_refuses_bools_and_strings():
    for value in (True, False, "1.0", None, [1.0]):
        refused(lambda value=value: parse_real("k", value), "k")


def test_parse_real_list():
    def positive(name, value):
        return parse_real(name, value, minimum=0, open_minimum=True)

    assert parse_real_list("sigmas", 2, positive, "numbers > 0") == [2.0]
    assert parse_real_list("sigmas", (1, np.float32(0.5)), positive, "numbers > 0") == [1.0, 0.5]
    for value in ([], "1", [1, "2"], [True], None):
        message = refused(
            lambda value=value: parse_real_list("sigmas", value, positive, "numbers > 0"), "sigmas"
        )
        assert "a non-empty list of numbers > 0" in message
    refused(
        lambda: parse_real_list("sigmas", [1.0, -2.0], positive, "numbers > 0"),
        "sigmas (each element)",
    )


# --- parse_bool, parse_text, parse_choice ------------------------------------------------------


def test_parse_real_list_bounds_its_length_before_checking_elements():
    def positive(name, value):
        return parse_real(name, value, minimum=0.0, open_minimum=True)

    assert parse_real_list("sigmas", [1.0] * 4, positive, "numbers > 0", max_length=4) == [1.0] * 4
    with pytest.raises(InputError) as caught:
        parse_real_list("sigmas", [1.0] * 5, positive, "numbers > 0", max_length=4)
    assert str(caught.value) == (
        "sigmas must be a non-empty list of numbers > 0, at most 4 of them, "
        "got [1.0, 1.0, 1.0, 1.0, 1.0] (5 of them)"
    )
    with pytest.raises(InputError, match=r"at most 4 of them, got \['x', 'x', .*\.\.\.\] \(9"):
        parse_real_list("sigmas", ["x"] * 9, positive, "numbers > 0", max_length=4)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.booleans(), st.integers(-2, 2), st.text(max_size=4), st.none()))
def test_parse_bool_only_takes_true_and_false(value):
    if isinstance(value, bool):
        assert parse_bool("flip", value) is value
    else:
        assert "true or false" in refused(lambda: parse_bool("flip", value), "flip")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=5), st.integers(), st.none(), st.booleans()))
def test_parse_text_takes_non_empty_strings(value):
    if isinstance(value, str) and value:
        assert parse_text("name", value) == value
    else:
        refused(lambda: parse_text("name", value), "name")


OPTIONS = ("zeros", "reflect", "replicate", "circular")


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.sampled_from(OPTIONS), st.text(max_size=9), st.integers(0, 2), st.booleans()))
def test_parse_choice_returns_the_option_or_lists_them(value):
    if value in OPTIONS and not isinstance(value, bool):
        assert parse_choice("padding_mode", value, OPTIONS) == value
    else:
        message = refused(lambda: parse_choice("padding_mode", value, OPTIONS), "padding_mode")
        assert "one of zeros, reflect, replicate, circular" in message


def test_parse_choice_suggests_a_close_option_and_quotes_when_asked():
    message = refused(
        lambda: parse_choice("variant", "lms", ("LML", "LMS"), quoted=True), "variant"
    )
    assert "one of 'LML', 'LMS', got 'lms'" in message
    assert "(did you mean 'reflect'?)" in refused(
        lambda: parse_choice("padding_mode", "reflct", OPTIONS), "padding_mode"
    )
    refused(lambda: parse_choice("groups", True, (1, 2)), "groups")  # True == 1, but a bool
