"""Readable feature labels from the filter descriptions of a bank.

``{"name": "gabor", "orientation": 0.785, "frequency": 0.2, "phase": 0.0, ...}`` becomes
``gabor θ=45° f=0.2 σ=2.81 even``: orientations in degrees, Greek letters for the usual
parameters, the Gabor phase as ``even`` / ``odd``. A reduction over a group of features gets one
label for the group (``max|·| edge σ=3×1 (6 orientations)``). A feature computed from others
(:func:`derived`) is labelled as the call it is: ``sqrt(gaussian σ=1)``, ``product(a, b)``,
``eigenvalues(a, …, f) [0]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["derived", "filter_label", "group_label"]

#: Description keys shown, in order, and how: a prefix and whether the value is an angle.
_SHOWN: tuple[tuple[str, str], ...] = (
    ("orientation", "θ="),
    ("frequency", "f="),
    ("sigma", "σ="),
    ("tau", "τ="),
    ("k", "k="),
    ("size", "size="),
    ("neighbours", "n="),
    ("index", "#"),
    ("channel", "c="),
)
_REDUCTIONS = {"max": "max", "max_abs": "max|·|", "mean": "mean", "sum": "sum"}


def _number(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "×".join(_number(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _phase(value: Any) -> str:
    """A Gabor phase: ``even`` (cosine, 0), ``odd`` (sine, 90°), else the angle."""
    if not isinstance(value, (int, float)):
        return ""
    if math.isclose(value, 0.0, abs_tol=1e-9):
        return "even"
    if math.isclose(value, math.pi / 2, abs_tol=1e-9):
        return "odd"
    return f"φ={math.degrees(value):.3g}°"


def filter_label(description: Mapping[str, Any], *, orientation: bool = True) -> str:
    """One filter's label; ``orientation=False`` leaves the orientation out (for groups)."""
    parts = [str(description.get("name", "filter")) + _arguments(description.get("of"))]
    for key, prefix in _SHOWN:
        if key not in description or (key == "orientation" and not orientation):
            continue
        value = description[key]
        if key == "orientation" and isinstance(value, (int, float)):
            parts.append(f"{prefix}{math.degrees(value):.3g}°")
        else:
            parts.append(f"{prefix}{_number(value)}")
    if "phase" in description:
        parts.append(_phase(description["phase"]))
    if "component" in description:  # one of several channels of a feature (an eigenvalue)
        parts.append(f"[{description['component']}]")
    return " ".join(part for part in parts if part)


def derived(name: str, inputs: Sequence[Mapping[str, Any]], **details: Any) -> dict[str, Any]:
    """The description of a feature that ``name`` computes from features with ``inputs``
    descriptions: ``{"name": name, "of": [their labels], **details}``."""
    return {"name": name, "of": [filter_label(item) for item in inputs], **details}


def _arguments(labels: Any) -> str:
    """``(a)``, ``(a, b)``, ``(a, …, f)`` of a derived feature's input labels; ``""`` if none."""
    if not isinstance(labels, (list, tuple)) or not labels:
        return ""
    shown = labels if len(labels) <= 2 else [labels[0], "…", labels[-1]]
    return f"({', '.join(str(label) for label in shown)})"


def group_label(op: str, descriptions: Sequence[Mapping[str, Any]]) -> str:
    """The label of a reduction ``op`` over consecutive features with ``descriptions``."""
    if len(descriptions) == 1:
        return filter_label(descriptions[0])
    prefix = _REDUCTIONS.get(op, op)
    stripped = {filter_label(d, orientation=False) for d in descriptions}
    if len(stripped) == 1:
        orientations = {d.get("orientation") for d in descriptions}
        what = "orientations" if len(orientations) == len(descriptions) else "features"
        return f"{prefix} {stripped.pop()} ({len(descriptions)} {what})"
    return f"{prefix} of {filter_label(descriptions[0])} … {filter_label(descriptions[-1])}"
