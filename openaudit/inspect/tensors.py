"""What a weights inspector returns: tensor records and per-file scans, shared by every format."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import Mapping

from openaudit.findings import Finding

# Bits per element of every safetensors dtype (Rust `Dtype` enum, safetensors 0.8). These names are
# also openaudit's canonical names for the same types read from other formats.
DTYPE_BITS: Mapping[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

INTEGER_DTYPES = frozenset({"U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "BOOL"})

# Roles a stored tensor can play. Only "parameter" tensors count in weights.parameters.total.
PARAMETER = "parameter"
BUFFER = "buffer"
SCALE = "scale"


@dataclass(frozen=True, slots=True)
class TensorRecord:
    """One stored tensor, as its file describes it; nothing here was read from the data region.

    ``shape`` is the logical shape in row-major (numpy) order. For block-quantized types (GGUF Q4_K …)
    it is the shape of the dequantized tensor, so ``elements`` is the logical parameter count.
    ``offset`` is the absolute byte offset of the data in ``file`` (None when not known).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str
    nbytes: int | None = None
    offset: int | None = None
    role: str = PARAMETER
    # For a quantization scale, the tensor it scales; for a quantized weight, its scale's name.
    pairs_with: str | None = None
    # Element strides when the stored layout is not C-contiguous (PyTorch views); None means contiguous.
    strides: tuple[int, ...] | None = None

    @property
    def elements(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class WeightsFileScan:
    """Everything a weights inspector learned about one file.

    ``complete`` is False when the file was malformed and ``tensors`` may be a partial list.
    ``imports`` lists every global a pickle would import (``module.name``), safe or not.
    """

    path: str
    format: str  # "safetensors", "gguf" or "pickle"
    container: str  # e.g. "safetensors", "gguf", "pytorch-zip", "pytorch-legacy", "pickle"
    tensors: tuple[TensorRecord, ...] = ()
    metadata: Mapping[str, object] = field(default_factory=dict)
    imports: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    complete: bool = True
