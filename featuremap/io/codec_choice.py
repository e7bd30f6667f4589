"""``output.codec: auto`` -- each features array's codec chosen by how well a sample compresses.

Float features of noisy data barely compress: LZ4 with byte shuffle stores ~0.89 of the raw
bytes of a 4096^2 Gabor job's float32 features, while encoding them costs 1.2 core-s a GiB,
about two thirds of that job's physical floor (a write of the raw bytes costs ~0.1-0.2 core-s
a GiB). Masks, sparse or smooth responses and float16 of smooth data are another matter: they
store at 0.05-0.6 of raw. So ``auto`` compresses a sample of the job's first blocks, computed
before the store is created (a Zarr array's codecs are fixed when it is made), with each
candidate and keeps:

- no compression (the checksum stays) when the best candidate saves less than
  :data:`MIN_SAVING` of the bytes: below that the encoding costs more time than the bytes
  saved are worth on a local or network file system, and the storage saved is small beside the
  features' own size (the noisy-data case above saves 11 %; the data that compresses saves
  40-95 %, far from the threshold, so the choice does not hinge on its exact value);
- Zstandard when it stores at most :data:`ZSTD_OVER_LZ4` of LZ4's bytes and at least
  :data:`ZSTD_MIN_GAIN` of the raw bytes fewer (sparse data and masks, where its entropy stage
  wins by far: it encodes about half as fast as LZ4, and features that both store in a
  fraction of a percent -- all-zero blocks: 0.004 against 0.0002 of raw -- are not worth its
  time: 1.2 ms more per 256^2 block of 4 features, measured by ``benchmarks/scale.py``);
- LZ4 otherwise.

Each array decides for itself: ``features`` and each pyramid level (pooled from the sample as
the job pools the blocks; a smoothed level may compress where level 0 does not). An object
store (``s3://``, ``gs://``, ...) keeps compression without sampling (LZ4, the codec of
stores made before ``auto``): there every byte travels over the network and is paid for.
The choice and the sampled ratios are recorded in the store (``output.codec_choice`` in the
root attributes, shown by ``featuremap inspect``); ``--resume`` reuses it, never samples again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from featuremap._vocabulary import OutputCodec
from featuremap.engine.cast import cast_to
from featuremap.io.layout import CODEC_LEVELS, FEATURES

if TYPE_CHECKING:
    from featuremap.io.layout import OutputLayout

__all__ = [
    "MIN_SAVING",
    "OBJECT_STORE_CODEC",
    "ZSTD_MIN_GAIN",
    "ZSTD_OVER_LZ4",
    "CodecChoice",
    "CodecDecision",
    "apply_decision",
    "choose_codec",
    "decide_codecs",
    "recorded_decision",
    "stored_fractions",
]

#: Compression must save at least this share of the raw bytes to be used (see the module).
MIN_SAVING = 0.15
#: Zstandard is chosen over LZ4 when it stores at most this share of LZ4's bytes ...
ZSTD_OVER_LZ4 = 0.8
#: ... and at least this share of the raw bytes fewer.
ZSTD_MIN_GAIN = 0.05
#: The candidates sampled, each at its default level (:data:`featuremap.io.layout.CODEC_LEVELS`).
CANDIDATES: tuple[Literal["lz4", "zstd"], ...] = ("lz4", "zstd")
#: What an object store's features are compressed with under ``auto``.
OBJECT_STORE_CODEC: OutputCodec = "lz4"

Reason = Literal["sampled", "object store", "asked", "unsampled", "recorded"]


@dataclass(frozen=True)
class CodecChoice:
    """One array's codec and, when sampled, the share of the raw bytes each candidate stored."""

    codec: OutputCodec
    stored: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"codec": self.codec, "stored": {name: round(f, 4) for name, f in self.stored}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodecChoice:
        stored = data.get("stored") or {}
        return cls(data["codec"], tuple((str(k), float(v)) for k, v in stored.items()))


@dataclass(frozen=True)
class CodecDecision:
    """Every features array's codec under ``output.codec`` ``asked``, and why (``reason``)."""

    asked: OutputCodec
    reason: Reason
    arrays: tuple[tuple[str, CodecChoice], ...]

    def codec_of(self, path: str) -> OutputCodec | None:
        """The codec chosen for the array at ``path``, ``None`` if it has none here."""
        return next((choice.codec for name, choice in self.arrays if name == path), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "reason": self.reason,
            "arrays": {path: choice.to_dict() for path, choice in self.arrays},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodecDecision:
        arrays = data.get("arrays") or {}
        return cls(
            data.get("asked", "auto"),
            "recorded",
            tuple((str(path), CodecChoice.from_dict(c)) for path, c in arrays.items()),
        )


def stored_fractions(
    sample: np.ndarray, feature_axis: int, level: int | None = None
) -> dict[str, float]:
    """The share of ``sample``'s raw bytes each candidate (Blosc with byte shuffle, as
    :class:`~featuremap.io.formats.StoreFormat` writes it) stores, one feature at a time (one
    feature per chunk is the store's own layout)."""
    import numcodecs

    planes = [np.ascontiguousarray(p) for p in np.moveaxis(sample, feature_axis, 0)]
    raw = sum(plane.nbytes for plane in planes)
    fractions: dict[str, float] = {}
    for name in CANDIDATES:
        codec = numcodecs.Blosc(
            cname=name,
            clevel=CODEC_LEVELS[name] if level is None else level,
            shuffle=numcodecs.Blosc.SHUFFLE,
        )
        fractions[name] = sum(len(codec.encode(plane)) for plane in planes) / max(raw, 1)
    return fractions


def choose_codec(stored: Mapping[str, float]) -> OutputCodec:
    """The codec the sampled shares ``stored`` (:func:`stored_fractions`) call for."""
    lz4, zstd = stored["lz4"], stored["zstd"]
    if min(lz4, zstd) > 1 - MIN_SAVING:
        return "none"
    pays = zstd <= ZSTD_OVER_LZ4 * lz4 and lz4 - zstd >= ZSTD_MIN_GAIN
    return "zstd" if pays else "lz4"


def _choice(samples: Sequence[np.ndarray], feature_axis: int, level: int | None) -> CodecChoice:
    """The choice for one array from its ``samples`` (bytes of all samples together)."""
    totals: dict[str, float] = dict.fromkeys(CANDIDATES, 0.0)
    raw = sum(sample.nbytes for sample in samples)
    for sample in samples:
        for name, fraction in stored_fractions(sample, feature_axis, level).items():
            totals[name] += fraction * sample.nbytes
    stored = {name: total / max(raw, 1) for name, total in totals.items()}
    return CodecChoice(choose_codec(stored), tuple(stored.items()))


def _pyramid_samples(
    layout: OutputLayout, samples: Sequence[np.ndarray]
) -> Iterable[tuple[str, list[np.ndarray]]]:
    """Each array's samples: ``features``' own, then each level's, pooled from the one below as
    the job pools them (from the stored values, in float32); a level whose pooled sample is
    empty takes the last non-empty one's."""
    from featuremap.io.pyramid import pool

    yield FEATURES, list(samples)
    if layout.pyramid is None:
        return
    current = [sample.astype(np.float32) for sample in samples]
    for level in layout.pyramid.levels:
        pooled = [pool(sample, layout.ndim, layout.pyramid.method) for sample in current]
        if all(p.size for p in pooled):
            current = pooled
        yield level.path, [cast_to(p, layout.dtype) for p in current]


def decide_codecs(
    layout: OutputLayout, samples: Sequence[np.ndarray] | None, *, object_store: bool
) -> CodecDecision:
    """The codec of every features array of ``layout`` (``features`` and the pyramid's levels).

    ``layout.codec`` other than ``auto`` is kept for every array; ``auto`` gives
    :data:`OBJECT_STORE_CODEC` on an object store and otherwise the choice of each array's part
    of ``samples`` (computed blocks, compute order ``(*batch, feature, *spatial)``, float32);
    without samples, :data:`OBJECT_STORE_CODEC` too.
    """
    paths = [
        FEATURES,
        *([] if layout.pyramid is None else [lv.path for lv in layout.pyramid.levels]),
    ]
    if layout.codec != "auto" or object_store or not samples:
        codec = layout.codec if layout.codec != "auto" else OBJECT_STORE_CODEC
        reason: Reason = (
            "asked" if layout.codec != "auto" else "object store" if object_store else "unsampled"
        )
        return CodecDecision(layout.codec, reason, tuple((p, CodecChoice(codec)) for p in paths))
    stored = [cast_to(sample, layout.dtype) for sample in samples]
    axis = -layout.ndim - 1
    arrays = tuple(
        (path, _choice(values, axis, layout.codec_level))
        for path, values in _pyramid_samples(layout, stored)
    )
    return CodecDecision("auto", "sampled", arrays)


def apply_decision(layout: OutputLayout, decision: CodecDecision) -> OutputLayout:
    """``layout`` with each array's codec as ``decision`` has it, and the decision recorded."""
    features = decision.codec_of(FEATURES) or layout.codec
    pyramid = layout.pyramid
    if pyramid is not None:
        levels = tuple(
            replace(lv, layout=replace(lv.layout, codec=decision.codec_of(lv.path) or features))
            for lv in pyramid.levels
        )
        pyramid = replace(pyramid, levels=levels)
    return replace(layout, codec=features, pyramid=pyramid, codec_decision=decision)


def recorded_decision(output_attrs: Any, layout: OutputLayout) -> CodecDecision:
    """The decision a store records (its root ``output`` attributes), for ``--resume``; a store
    from before ``auto`` records one ``codec`` for every array."""
    attrs = output_attrs if isinstance(output_attrs, Mapping) else {}
    choice = attrs.get("codec_choice")
    if isinstance(choice, Mapping):
        return CodecDecision.from_dict(choice)
    codec = attrs.get("codec", OBJECT_STORE_CODEC)
    paths = [
        FEATURES,
        *([] if layout.pyramid is None else [lv.path for lv in layout.pyramid.levels]),
    ]
    return CodecDecision(codec, "recorded", tuple((p, CodecChoice(codec)) for p in paths))
