"""MR8 as the reference computes it (VGG's MR8fast.m): the largest *absolute* edge response over
the 6 orientations, the signed bar maximum, the Gaussian and LoG passed through."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from featuremap import banks
from featuremap.engine.stack import apply_stack
from featuremap.pipeline.pipeline import load_pipeline

PIPELINE = "pipelines/mr8.yaml"


def reference_mr8(image: np.ndarray) -> np.ndarray:
    """MR8fast.m in NumPy: 'valid' correlation with the 38 RFS filters, then the reduction."""
    weight = banks.get("mr8").weight.astype(np.float64)[:, 0]
    responses = np.stack([correlate(image, kernel, mode="valid") for kernel in weight])
    edges = [np.abs(responses[6 * g : 6 * g + 6]).max(0) for g in range(3)]
    bars = [responses[6 * g : 6 * g + 6].max(0) for g in range(3, 6)]
    return np.stack([*edges, *bars, responses[36], responses[37]])


def _featuremap_mr8(image: np.ndarray) -> np.ndarray:
    layers = load_pipeline(
        {"layers": [{"conv": {"bank": {"type": "mr8"}}}, {"reduce": {}}]}
    ).build_layers(1)
    return apply_stack(layers, image[None].astype(np.float32))


def test_step_and_its_mirror_give_the_same_edge_response():
    step = np.zeros((69, 69))
    step[:, :34] = 1
    ours = _featuremap_mr8(step)[:, 10, 10]
    np.testing.assert_allclose(
        ours, [0.5, 0.5, 0.5, 0.25, 0.107585, 0.052067, -0.012259, 0.014289], atol=1e-6
    )
    mirrored = _featuremap_mr8(1 - step)[:, 10, 10]
    np.testing.assert_allclose(mirrored[:3], [0.5, 0.5, 0.5], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_the_reference_on_random_texture(seed):
    image = np.random.default_rng(seed).random((60, 58))
    np.testing.assert_allclose(_featuremap_mr8(image), reference_mr8(image), atol=2e-6)


def test_rotation_by_90_degrees_rotates_the_responses():
    image = np.random.default_rng(2).random((61, 61))
    np.testing.assert_allclose(
        _featuremap_mr8(np.rot90(image)), np.rot90(_featuremap_mr8(image), axes=(1, 2)), atol=2e-6
    )


def test_the_shipped_pipeline_uses_the_reference_reduction():
    layers = load_pipeline(PIPELINE).build_layers(1)
    assert layers[1].ops == ("max_abs",) * 3 + ("max",) * 5
    assert layers[1].groups == (6, 6, 6, 6, 6, 6, 1, 1)
