"""OME-NGFF (OME-Zarr) metadata of an output store, so image viewers place the feature maps."""

from __future__ import annotations

from typing import Any

from featuremap.io.layout import FEATURES, OutputLayout

__all__ = ["ome_multiscales"]


def ome_multiscales(layout: OutputLayout) -> dict[str, Any] | None:
    """OME-NGFF 0.5 metadata: at most one batch axis (as time), features as channels."""
    batch = len(layout.batch_dims)
    if batch > 1:
        return None
    axes = [{"name": name, "type": "time"} for name in layout.batch_dims]
    axes += [
        {"name": "feature", "type": "channel"},
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    scale = [1.0] * (batch + 1) + [float(j) for j in layout.stack.jump]
    translation = [0.0] * (batch + 1) + [float(o) for o in layout.stack.offset]
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": FEATURES,
                "axes": axes,
                "datasets": [
                    {
                        "path": FEATURES,
                        "coordinateTransformations": [
                            {"type": "scale", "scale": scale},
                            {"type": "translation", "translation": translation},
                        ],
                    }
                ],
            }
        ],
    }
