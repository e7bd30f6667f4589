"""``featuremap.engine.kernels.activations`` against their torch equivalents."""

from __future__ import annotations

import numpy as np
import pytest
from support.torch_reference import TORCH_ACTIVATIONS

from featuremap._vocabulary import ACTIVATIONS
from featuremap.engine.kernels import activate
from featuremap.errors import InputError

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_match_torch(name):
    x = np.concatenate(
        [
            np.random.default_rng(14).standard_normal(50) * 10,
            [0, -100, 100, np.nan, np.inf, -np.inf],
        ]
    )
    x = x.astype(np.float32)
    expected = TORCH_ACTIVATIONS[name](torch.from_numpy(x.copy())).numpy()
    result = activate(name, x.copy())
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=2e-6, atol=1e-7)


def test_unknown_activation_is_an_input_error():
    with pytest.raises(InputError, match="activation must be one of none, relu"):
        activate("gelu", np.zeros(2, dtype=np.float32))
