"""The words featuremap accepts, each list defined once and imported wherever it is named.

A pipeline key, a function argument, a CLI choice and an error message that name one of these
lists all import it from here, so that adding a word (a new activation, say) is one edit.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "ACTIVATIONS",
    "BORDER_MODES",
    "CHANNEL_MODES",
    "CONV_METHODS",
    "DEVICES",
    "JOB_STATUSES",
    "OUTPUT_CHECKSUMS",
    "OUTPUT_CODECS",
    "OUTPUT_DTYPES",
    "OUTPUT_FORMATS",
    "PADDING_MODES",
    "POOL_OPS",
    "REDUCE_OPS",
    "Activation",
    "BorderMode",
    "ChannelMode",
    "ConvMethod",
    "Device",
    "JobStatus",
    "OutputChecksum",
    "OutputCodec",
    "OutputDtype",
    "OutputFormat",
    "PaddingMode",
    "PoolOp",
    "ReduceOp",
]

#: ``padding_mode`` of a conv layer: PyTorch's names and meanings (DESIGN section 1).
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
PADDING_MODES: Final[tuple[PaddingMode, ...]] = get_args(PaddingMode)

#: How a layer's border is filled: a padding mode, or ``constant`` (a pool's fill value, e.g.
#: ``-inf`` for max pooling). Block planning folds ``zeros`` and ``constant`` alike: the outside
#: is a constant and reads no pixel.
BorderMode = Literal["zeros", "reflect", "replicate", "circular", "constant"]
BORDER_MODES: Final[tuple[BorderMode, ...]] = get_args(BorderMode)

#: Pointwise activations: after a conv layer, or as an ``activation`` layer of their own.
#: ``sqrt`` of a negative value is NaN, as in PyTorch.
Activation = Literal["none", "relu", "tanh", "sigmoid", "abs", "square", "sqrt"]
ACTIVATIONS: Final[tuple[Activation, ...]] = get_args(Activation)

#: Pool layer types (``torch.nn.functional.max_pool2d`` / ``avg_pool2d``).
PoolOp = Literal["max", "avg"]
POOL_OPS: Final[tuple[PoolOp, ...]] = get_args(PoolOp)

#: Reductions over consecutive groups of features; ``max_abs`` is the largest absolute response
#: (MR8's rule for its oriented edge filters).
ReduceOp = Literal["max", "max_abs", "mean", "sum", "magnitude"]
REDUCE_OPS: Final[tuple[ReduceOp, ...]] = get_args(ReduceOp)

#: Where blocks are computed (``--device``).
Device = Literal["auto", "cpu", "gpu"]
DEVICES: Final[tuple[Device, ...]] = get_args(Device)

#: How a single-channel bank meets a multi-channel input.
ChannelMode = Literal["per_channel", "sum"]
CHANNEL_MODES: Final[tuple[ChannelMode, ...]] = get_args(ChannelMode)

#: The stored features' data type (``output.dtype``); blocks are computed in float32.
OutputDtype = Literal["float32", "float16"]
OUTPUT_DTYPES: Final[tuple[OutputDtype, ...]] = get_args(OutputDtype)

#: The features' compression (``output.codec``); the checksum is ``output.checksum``. ``auto``
#: picks ``none``, ``lz4`` or ``zstd`` per array from a sample (:mod:`featuremap.io.codec_choice`).
OutputCodec = Literal["auto", "lz4", "zstd", "none"]
OUTPUT_CODECS: Final[tuple[OutputCodec, ...]] = get_args(OutputCodec)

#: The store's format (``output.format``): OME-NGFF 0.5 in Zarr format 3, or OME-NGFF 0.4 in
#: Zarr format 2 for readers of Zarr v2 only (GDAL 3.10, older viewers).
OutputFormat = Literal["ngff-0.5", "ngff-0.4"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = get_args(OutputFormat)

#: The checksum codec of every array (``output.checksum``): ``crc32c`` turns a damaged chunk
#: into an error on read; ``none`` for readers without it (GDAL before 3.13).
OutputChecksum = Literal["crc32c", "none"]
OUTPUT_CHECKSUMS: Final[tuple[OutputChecksum, ...]] = get_args(OutputChecksum)

#: Convolution algorithms of the kernels (``auto`` picks by a cost model).
ConvMethod = Literal["auto", "gemm", "fft", "separable", "direct", "torch", "polyphase", "numba"]
CONV_METHODS: Final[tuple[ConvMethod, ...]] = get_args(ConvMethod)

#: A job's state as its store records it: ``running`` until its last write, then ``complete``
#: or ``failed``; ``interrupted`` is written on Ctrl-C / SIGTERM and reported for a ``running``
#: job whose owner is gone; ``cancelled`` by ``featuremap cancel`` (resumable, as the others).
JobStatus = Literal["queued", "running", "complete", "failed", "interrupted", "cancelled"]
JOB_STATUSES: Final[tuple[JobStatus, ...]] = get_args(JobStatus)
