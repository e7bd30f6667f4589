"""The shape checks of a convolution call, 2-D or 3-D: one :class:`InputError` line each."""

from __future__ import annotations

from featuremap.errors import InputError, describe

__all__ = ["check_shapes"]

_SPATIAL = {2: ("H, W", "kh, kw"), 3: ("D, H, W", "kz, ky, kx")}


def check_shapes(
    x_shape: tuple[int, ...], weight_shape: tuple[int, ...], groups: int, spatial: int = 3
) -> None:
    """Refuse inconsistent shapes of a ``spatial``-D convolution with an :class:`InputError`.

    ``x (..., C, *spatial axes)``, ``weight (J, C/groups, *kernel)``, ``groups`` dividing ``C``
    and ``J``; ``conv2d_valid`` checks with ``spatial=2``, ``conv3d_valid`` with 3.
    """
    axes, taps = _SPATIAL[spatial]
    name = f"conv{spatial}d"
    if len(x_shape) < spatial + 1:
        raise InputError(f"{name} input must have shape (..., C, {axes}), got shape {x_shape}")
    if len(weight_shape) != spatial + 2:
        raise InputError(
            f"{name} weight must have shape (J, C/groups, {taps}), got shape {weight_shape}"
        )
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise InputError(f"groups must be a positive integer, got {describe(groups)}")
    channels = x_shape[-spatial - 1]
    n_filters, group_channels = weight_shape[:2]
    if channels % groups or n_filters % groups:
        raise InputError(
            f"groups={groups} must divide the input channels ({channels}) and the filters ({n_filters})"
        )
    if group_channels != channels // groups:
        raise InputError(
            f"weight of shape {weight_shape} expects {group_channels * groups} input channels "
            f"with groups={groups}, but the input has {channels} (shape {x_shape})"
        )
    if min(weight_shape) < 1:
        raise InputError(f"{name} weight must not be empty, got shape {weight_shape}")
