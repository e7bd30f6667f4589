"""The output store as the job layer sees it (:class:`OutputStore`); created by
:mod:`featuremap.io.create`.

The job layer decides *what* to record (status, owner, heartbeat, provenance); this module
decides *where* it lives in the Zarr group (:mod:`featuremap.io.layout`) and how it is written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from featuremap.errors import BrokenStoreError, describe, error_line, spoken
from featuremap.io._display import FeatureStats
from featuremap.io._documents import ATTRIBUTES_DOCUMENT, attributes_in, update_consolidated_root
from featuremap.io._guarded_store import zarr_store
from featuremap.io._paths import local_path, write_atomically
from featuremap.io.chunks import stored_chunk_indices
from featuremap.io.formats import StoreFormat
from featuremap.io.input import dimension_names
from featuremap.io.layout import (
    DISPLAY,
    FEATURES,
    JOB_GROUP,
    MARKERS,
    ROOT_KEY,
    feature_axis_of,
)
from featuremap.io.markers import MarkerWriter, count_marked, done_numbers
from featuremap.io.ome import omero

__all__ = [
    "Block",
    "Mode",
    "OutputStore",
    "array_at",
    "attrs_dict",
    "consolidate",
    "damaged_root",
    "damaged_store",
    "feature_chunk",
    "made_by_featuremap",
    "read_job_token",
]

#: A block index ``(*batch_blocks, block_y, block_x)``.
Block = tuple[int, ...]


def feature_chunk(block: Block, feature_axis: int) -> tuple[int, ...]:
    """The chunk of ``features`` that holds ``block``: all features are one chunk, stored at
    ``feature_axis`` (after the batch axes that are not ``z``)."""
    return (*block[:feature_axis], 0, *block[feature_axis:])


#: How a store is opened: read, read/write, create (replacing) or create (new only).
Mode = Literal["r", "r+", "w", "w-"]


def open_group(
    store: str, mode: Mode, *, consolidated: bool = False, zarr_format: Literal[2, 3] | None = None
) -> zarr.Group:
    """Open (or create, in ``zarr_format``) an output group; an existing store is opened in the
    format it has (``output.format``: :mod:`featuremap.io.formats`)."""
    return zarr.open_group(
        store=zarr_store(store, read_only=mode == "r"),
        mode=mode,
        zarr_format=zarr_format,
        use_consolidated=consolidated,
    )


def array_at(group: zarr.Group, path: str) -> zarr.Array[Any]:
    """The array at ``path`` in ``group``; :class:`KeyError` when it is a group or missing."""
    node = group[path]
    if not isinstance(node, zarr.Array):
        raise KeyError(f"{path!r} is a group, not an array")
    return node


def attrs_dict(value: Any) -> dict[str, Any]:
    """An attribute that should hold a mapping, as a dict (``{}`` for anything else)."""
    return dict(value) if isinstance(value, Mapping) else {}


def replace_hint() -> str:
    """How to replace a damaged store, in the caller's language."""
    return "replace the store with " + spoken(
        "'featuremap run ... --overwrite'", "featuremap.run(..., overwrite=True)"
    )


def damaged_store(store: str, document: str, error: BaseException) -> BrokenStoreError:
    """The error for a featuremap store whose ``document`` cannot be read."""
    return BrokenStoreError(
        f"output store {store!r} is damaged: {document} cannot be read ({error_line(error)}); "
        f"check it with 'featuremap verify', or {replace_hint()}"
    )


def damaged_root(store: str, error: BaseException) -> BrokenStoreError:
    """:func:`damaged_store` for the root group's document: ``zarr.json``, or in a Zarr v2 store
    (``ngff-0.4``) its ``.zgroup`` / ``.zattrs``."""
    local = local_path(store)
    v2 = local is not None and (local / ".zgroup").exists()
    return damaged_store(store, ".zgroup or .zattrs" if v2 else "zarr.json", error)


@dataclass(frozen=True)
class OutputStore:
    """An output group opened for the job layer: attributes, job records and done-markers.

    Open it with :meth:`open`. The consolidated metadata (written for xarray when a job
    completes) is not used unless ``consolidated``: it is a snapshot, and the job bookkeeping in
    ``_job`` changes after it (a resumed job's heartbeat). Attributes are read afresh from their
    documents and rewritten atomically (:meth:`update_root`, :meth:`update_job`).

    Reading damaged bookkeeping (a missing ``_job``, an unreadable ``zarr.json``, root attributes
    that are not featuremap's) raises :class:`BrokenStoreError` naming the file and the fix.
    """

    path: str
    group: zarr.Group

    @classmethod
    def open(cls, path: str, mode: Mode = "r", *, consolidated: bool = False) -> OutputStore:
        """Open ``path`` (``mode`` ``"r"`` or ``"r+"``); Zarr's own errors propagate."""
        return cls(path, open_group(path, mode, consolidated=consolidated))

    # -- attributes ---------------------------------------------------------------------------

    @property
    def is_featuremap(self) -> bool:
        """Whether featuremap's root attributes are there (a mapping, as featuremap writes)."""
        return isinstance(self.group.attrs.get(ROOT_KEY), Mapping)

    @property
    def root(self) -> dict[str, Any]:
        """The root ``featuremap`` attributes (status, provenance), read afresh."""
        value = self._attributes("").get(ROOT_KEY)
        if value is not None and not isinstance(value, Mapping):
            raise BrokenStoreError(
                f"output store {self.path!r} is damaged: the root attribute {ROOT_KEY!r} is "
                f"{describe(value)}, not featuremap's record; {replace_hint()}"
            )
        return dict(value or {})

    def update_root(self, **fields: Any) -> None:
        """Merge ``fields`` into the root ``featuremap`` attributes."""
        self._update_attributes("", lambda attrs: {**attrs, ROOT_KEY: {**self.root, **fields}})

    def _job_group(self) -> zarr.Group:
        try:
            node = self.group[JOB_GROUP]
        except KeyError:
            raise BrokenStoreError(
                f"output store {self.path!r} is damaged: its job bookkeeping {JOB_GROUP}/ is "
                f"missing; {replace_hint()}"
            ) from None
        except Exception as error:  # noqa: BLE001 -- a torn zarr.json: any decode error
            raise damaged_store(self.path, f"{JOB_GROUP}/zarr.json", error) from None
        if not isinstance(node, zarr.Group):
            raise damaged_store(
                self.path, f"{JOB_GROUP}/zarr.json", TypeError("an array, not a group")
            )
        return node

    @property
    def job(self) -> dict[str, Any]:
        """The ``_job`` group's attributes (owner, heartbeat, fingerprint, marker layout)."""
        return self._attributes(JOB_GROUP)

    def update_job(self, fields: Mapping[str, Any]) -> None:
        """Merge ``fields`` into the ``_job`` group's attributes."""
        self._update_attributes(JOB_GROUP, lambda attrs: {**attrs, **fields})

    def _group_at(self, node: str) -> zarr.Group:
        """The group ``node`` (``""``: the root; else ``_job`` or a group inside it)."""
        if not node:
            return self.group
        job = self._job_group()
        inner = node.removeprefix(JOB_GROUP).strip("/")
        return job.require_group(inner) if inner else job

    def _document(self, node: str) -> Path | None:
        """The local document holding the attributes of the group ``node`` (``""``: the root):
        its ``zarr.json``, or ``.zattrs`` in a Zarr v2 store; ``None`` remotely."""
        local = local_path(self.path)
        name = ATTRIBUTES_DOCUMENT[self.group.metadata.zarr_format]
        return None if local is None else local / node / name

    def _attributes(self, node: str) -> dict[str, Any]:
        """The attributes of the group ``node``, read afresh from its document."""
        document = self._document(node)
        if document is None:
            return dict(self._group_at(node).attrs)
        if node and not document.parent.is_dir():
            self._job_group()  # raises the "missing" error
        try:
            return attributes_in(document)
        except (OSError, ValueError, AttributeError, TypeError) as error:
            raise damaged_store(self.path, f"{node}/{document.name}".lstrip("/"), error) from None

    def _update_attributes(
        self, node: str, update: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> None:
        """Rewrite the attributes of the group ``node``: on a local filesystem atomically (the
        whole document renamed over the old one: a crash or a full disk never leaves a torn
        ``zarr.json``), on an object store as one put, which is atomic there."""
        document = self._document(node)
        if document is None:
            group = self._group_at(node)
            attributes = update(dict(group.attrs))
            group.attrs.put(attributes)
        else:
            attributes = update(self._attributes(node))
            content: Any = attributes  # a .zattrs is the attributes, a zarr.json holds them
            if document.name == ATTRIBUTES_DOCUMENT[3]:
                content = {**json.loads(document.read_bytes()), "attributes": attributes}
            write_atomically(document, json.dumps(content, indent=2).encode())
        if not node and self.group.metadata.zarr_format == 2:
            update_consolidated_root(self.path, attributes)

    # -- display metadata -----------------------------------------------------------------------

    def display_stats(self, features: int) -> FeatureStats:
        """The display statistics saved with the done-markers so far (:mod:`featuremap.io._display`); empty
        for a new store, and for a store made before they were gathered."""
        document = self._document(DISPLAY)
        if document is not None and not document.exists():
            return FeatureStats.empty(features)
        saved = self._attributes(DISPLAY).get("stats")
        return FeatureStats.from_dict(saved, features) or FeatureStats.empty(features)

    def overflowed(self) -> int:
        """Values written as +-inf that were finite as computed (float16's range), over the
        blocks marked done (0 for a store made before they were counted)."""
        document = self._document(DISPLAY)
        if document is not None and not document.exists():
            return 0
        saved = attrs_dict(self._attributes(DISPLAY).get("stats")).get("overflow")
        if not isinstance(saved, list):
            return 0
        return int(sum(v for v in saved if isinstance(v, (int, float)) and math.isfinite(v)))

    def save_display_stats(self, stats: FeatureStats) -> None:
        """Save the statistics of the blocks marked done (before their markers are flushed)."""
        document = self._document(DISPLAY)
        if document is not None and not document.exists():
            self._group_at(DISPLAY)  # a store made before display statistics were gathered
        self._update_attributes(DISPLAY, lambda attrs: {**attrs, "stats": stats.to_dict()})

    def record_display(self, stats: FeatureStats) -> None:
        """Each NGFF ``omero`` channel's window from ``stats`` (a store without NGFF metadata,
        or without a channel list, is left as it is)."""

        def update(attrs: dict[str, Any]) -> dict[str, Any]:
            # NGFF 0.5 keeps omero under "ome", 0.4 at the top (ngff_attributes)
            nested = "ome" in attrs
            ome = attrs_dict(attrs.get("ome")) if nested else attrs
            channels = attrs_dict(ome.get("omero")).get("channels")
            if not isinstance(channels, list) or len(channels) != stats.features:
                return attrs
            labels = [str(attrs_dict(c).get("label", i)) for i, c in enumerate(channels)]
            display = omero(labels, stats)
            return (
                {**attrs, "ome": {**ome, "omero": display}}
                if nested
                else {**attrs, "omero": display}
            )

        self._update_attributes("", update)

    def job_token(self) -> str | None:
        """The id of the job that owns the store now, read afresh (the fencing token)."""
        return read_job_token(self.path)

    # -- blocks -------------------------------------------------------------------------------

    def _array(self, path: str) -> zarr.Array[Any]:
        try:
            return array_at(self.group, path)
        except KeyError:
            raise BrokenStoreError(
                f"output store {self.path!r} is damaged: {path} is missing; {replace_hint()}"
            ) from None
        except Exception as error:  # noqa: BLE001 -- a torn zarr.json
            raise damaged_store(self.path, f"{path}/zarr.json", error) from None

    @property
    def features(self) -> zarr.Array[Any]:
        return self._array(FEATURES)

    @property
    def store_format(self) -> StoreFormat:
        """The store's encoding as recorded (``output.format`` / ``checksum``); a store recorded
        before there was a choice is ``ngff-0.5`` with ``crc32c``."""
        return StoreFormat.from_dict(attrs_dict(self.root.get("output")))

    @property
    def feature_axis(self) -> int:
        """Where the features are in the stored array (NGFF order: after time-like batch axes)."""
        features = self.features
        return feature_axis_of(dimension_names(features), features.ndim, self.spatial_ndim)

    @property
    def block_shape(self) -> tuple[int, ...]:
        """The stored shape of one block: a shard when sharded, else a chunk."""
        features = self.features
        return tuple(features.shards or features.chunks)

    @property
    def spatial_ndim(self) -> int:
        """The stack's rank: 3 where the features' geometry is per ``(z, y, x)``, else 2."""
        geometry = attrs_dict(self.features.attrs.get(ROOT_KEY))
        jump = geometry.get("jump")
        return 3 if isinstance(jump, list) and len(jump) == 3 else 2

    @property
    def out_chunks(self) -> tuple[int, ...]:
        """The spatial size of one block, ``(y, x)`` or ``(z, y, x)``."""
        return tuple(self.block_shape[-self.spatial_ndim :])

    @property
    def markers(self) -> zarr.Array[Any]:
        return self._array(MARKERS)

    @functools.cached_property
    def grid_shape(self) -> tuple[int, ...]:
        """Blocks per axis, ``(*batch_blocks, blocks_y, blocks_x)`` (from the job's record).

        Read once per opened store: the grid is fixed when the store is created, and block
        numbers are turned into blocks millions of times (a file read each would dominate).
        """
        grid = self.job.get("grid")
        if isinstance(grid, list):
            return tuple(int(n) for n in grid)
        return _legacy_grid(self.markers)

    @property
    def blocks_total(self) -> int:
        return math.prod(self.grid_shape)

    def block_of(self, number: int) -> Block:
        return tuple(int(i) for i in np.unravel_index(number, self.grid_shape))

    def done_numbers(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first block number, done bits)`` per marker chunk, one chunk in memory at a time."""
        markers = self.markers
        if _legacy_grid(markers) != ():
            done = _legacy_done(markers).reshape(-1)
            yield 0, done
            return
        yield from done_numbers(markers, self.blocks_total)

    def undone_blocks(self) -> Iterator[Block]:
        """Every block whose done-marker is not set, in C order, lazily."""
        for first, bits in self.done_numbers():
            yield from self._blocks(first + np.flatnonzero(~bits))

    def done_blocks(self) -> set[Block]:
        """Block indices whose done-marker is set (for small stores and tests)."""
        return {
            block
            for first, bits in self.done_numbers()
            for block in self._blocks(first + np.flatnonzero(bits))
        }

    def _blocks(self, numbers: np.ndarray) -> Iterator[Block]:
        """The blocks of an array of block numbers (one marker chunk's worth), as int tuples."""
        axes = np.unravel_index(numbers, self.grid_shape)
        return zip(*(axis.tolist() for axis in axes), strict=True)

    def count_done(self) -> int:
        """Number of blocks whose done-marker is set, from the marker chunks on disk (one never
        written has no bit set): the cost follows the markers that exist, not the grid."""
        markers = self.markers
        if _legacy_grid(markers) != ():
            return int(np.count_nonzero(_legacy_done(markers)))
        chunks = (index for (index,) in stored_chunk_indices(self.path, markers))
        return count_marked(markers, chunks, self.blocks_total)

    def marker_writer(
        self, check: Callable[[], None], before_flush: Callable[[], None] | None = None
    ) -> MarkerWriter:
        """The job's one marker writer (``check``: its fencing check before every flush, then
        ``before_flush``)."""
        return MarkerWriter(self.markers, self.blocks_total, check, before_flush)

    def arrays(self) -> list[tuple[str, zarr.Array[Any]]]:
        """Every array of the store with its path (``features``, coordinates, weights, markers).

        Listed from the consolidated metadata in the root document where there is one, so that
        one torn array document does not hide the others.
        """
        try:
            group = open_group(self.path, "r", consolidated=True)
        except ValueError:  # no consolidated metadata: walk the hierarchy
            group = self.group
        return [
            (path, node)
            for path, node in group.members(max_depth=None)
            if isinstance(node, zarr.Array)
        ]

    def stored_blocks(self) -> set[Block]:
        """Blocks whose ``features`` chunk (or shard) is on disk (listed, not read): the cost
        follows the objects stored, not the grid."""
        axis, grid = self.feature_axis, self.grid_shape
        blocks = (
            (*chunk[:axis], *chunk[axis + 1 :])
            for chunk in stored_chunk_indices(self.path, self.features)
            if chunk[axis] == 0
        )
        return {b for b in blocks if all(i < n for i, n in zip(b, grid, strict=True))}


def made_by_featuremap(store: str) -> bool:
    """Whether featuremap can prove it made ``store``: its root record, or -- when the root
    document is damaged -- its job record (``_job`` with the owner and the block grid), which
    no other tool writes. Only such a store is ever replaced (``--overwrite``)."""
    return _has_root_record(store) or _has_job_record(store)


def _has_root_record(store: str) -> bool:
    try:
        return isinstance(open_group(store, "r").attrs.get(ROOT_KEY), Mapping)
    except Exception:  # noqa: BLE001 -- a torn root zarr.json: no root record
        return False


def _has_job_record(store: str) -> bool:
    try:
        job = zarr.open_group(store=zarr_store(store), path=JOB_GROUP, mode="r").attrs
    except Exception:  # noqa: BLE001 -- no readable job record
        return False
    return isinstance(job.get("owner"), Mapping) and isinstance(job.get("grid"), list)


def read_job_token(store: str) -> str | None:
    """The id of the job that owns ``store`` now, read afresh from ``_job/zarr.json`` (the
    fencing token); ``None`` when there is no readable one (the store is being replaced).

    Every block task calls it before writing, so a local store's document is read directly
    (a few microseconds) rather than through Zarr's group machinery.
    """
    local = local_path(store)
    try:
        if local is not None:
            try:
                attributes = attributes_in(local / JOB_GROUP / ATTRIBUTES_DOCUMENT[3])
            except FileNotFoundError:  # a Zarr v2 store (ngff-0.4)
                attributes = attributes_in(local / JOB_GROUP / ATTRIBUTES_DOCUMENT[2])
        else:
            attributes = dict(zarr.open_group(store=store, path=JOB_GROUP, mode="r").attrs)
        owner = attributes.get("owner")
    except Exception:  # noqa: BLE001 -- no readable _job: nobody's token
        return None
    token = owner.get("id") if isinstance(owner, Mapping) else None
    return token if isinstance(token, str) else None


def _legacy_grid(markers: zarr.Array[Any]) -> tuple[int, ...]:
    """The block grid of featuremap 0.1's markers (one ``uint8`` chunk per block), else ``()``."""
    names = dimension_names(markers) or ()
    return tuple(markers.shape) if names and names[0].startswith("block_") else ()


def _legacy_done(markers: zarr.Array[Any]) -> np.ndarray:
    """featuremap 0.1's done mask; an undecodable marker chunk counts as not done."""
    try:
        done: np.ndarray = np.asarray(markers[...]) == 1
        return done
    except Exception:  # noqa: BLE001 -- any decode error: read marker by marker
        marked = np.zeros(markers.shape, dtype=bool)
        for index in np.ndindex(*markers.shape):
            with contextlib.suppress(Exception):
                marked[index] = markers[index] == 1
        return marked


def consolidate(store: str) -> OutputStore:
    """Write the consolidated metadata (for xarray) and reopen the store with it."""
    with warnings.catch_warnings():
        # zarr 3 warns that consolidated metadata is not (yet) in the v3 spec; xarray reads it
        # (a v2 store gets its .zmetadata)
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(zarr_store(store, read_only=False))
    return OutputStore.open(store, "r+", consolidated=True)
