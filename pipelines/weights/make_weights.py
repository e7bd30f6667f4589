"""Regenerate ``layer2.npz``: the second conv layer of ``cnn-two-layer.yaml``.

8 filters of 3 x 3 over the 8 features of the first layer, drawn from a seeded normal
distribution (NumPy PCG64, seed 2024) with He scaling ``std = sqrt(2 / fan_in)``, and a small
bias. Stored as float32 arrays ``weight`` (8, 8, 3, 3) and ``bias`` (8,), no pickles::

    python pipelines/weights/make_weights.py
"""

from pathlib import Path

import numpy as np

SEED = 2024
OUT_CHANNELS, IN_CHANNELS, KERNEL = 8, 8, 3


def make_weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    fan_in = IN_CHANNELS * KERNEL * KERNEL
    weight = rng.normal(
        0.0, np.sqrt(2.0 / fan_in), size=(OUT_CHANNELS, IN_CHANNELS, KERNEL, KERNEL)
    )
    bias = rng.normal(0.0, 0.01, size=OUT_CHANNELS)
    return {"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}


if __name__ == "__main__":
    target = Path(__file__).with_name("layer2.npz")
    np.savez(target, **make_weights())
    print(f"wrote {target}")
