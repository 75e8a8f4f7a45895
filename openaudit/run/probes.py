"""What a run checks on the outputs, with every threshold stated and justified here.

- **Finite**: every logit is finite (NaN or ±inf anywhere fails the run).
- **Deterministic**: the probe run twice through the same weights gives bit-identical logits.
- **Perplexity** (decoders): ``exp(mean NLL)`` of each probe token given the tokens before it, computed
  in float64 from the float32 logits. A model that knows nothing scores the vocabulary size V (the
  uniform guess); random or scrambled weights land near V or above it (confident wrong guesses cost
  more than uniform ones). A trained model on ordinary English scores orders of magnitude lower (a
  7B Llama on such text: about 5-10 against V = 32,000; the bundled 1,024-token tiny Llama: tens).
  The run passes when ``perplexity < V / FAR_BELOW_UNIFORM`` with ``FAR_BELOW_UNIFORM = 10``, i.e.
  the mean log-loss is at least ln 10 ≈ 2.3 nats below uniform: far enough that no untrained model
  reaches it by luck on a few hundred tokens, loose enough for small models on short text.
- **Masked tokens** (encoders, BERT): ``MASK_FRACTION`` (15%, BERT's pre-training rate) of the probe's
  ordinary tokens, at seeded positions, are replaced by the mask token, and the masked-language-model
  head must restore at least ``MIN_MASKED_ACCURACY`` = 25% of them (top-1). BERT-base restores well
  over half of such tokens in ordinary prose; a random model restores about 1/V (0.003% for 30,522).
- **Reference** (``--reference FILE.npz``: ``input_ids`` (1, T) and ``logits`` (1, T, V), optionally
  ``hidden_states`` (1, T, D) and ``token_type_ids`` (1, T) for encoders): the largest absolute difference from the reference,
  failing above ``REFERENCE_TOLERANCE[dtype] × max(1, max |reference|)``: 1e-3 in float32 (ports
  are checked at 1e-4 to 1e-3 on logits; the transformers float32 fixtures here agree to ~1e-5),
  5e-2 in float16 and 1e-1 in bfloat16 (machine epsilon 9.8e-4 and 7.8e-3, compounded over layers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from openaudit.errors import UsageError

FAR_BELOW_UNIFORM = 10.0
MASK_FRACTION = 0.15
MIN_MASKED_ACCURACY = 0.25
REFERENCE_TOLERANCE = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 1e-1}
DEFAULT_PROBE_TEXT = Path(__file__).with_name("probe_text.txt")
MAX_PROBE_TEXT_BYTES = 1 << 20
MAX_REFERENCE_BYTES = 2 << 30
_ROWS_PER_CHUNK = 64  # float64 log-softmax over (64, V) at a time


def read_probe_text(path: str | Path | None = None) -> str:
    """The probe text (the bundled English prose unless ``path`` names another file)."""
    from openaudit.errors import MalformedInput
    from openaudit.limits import open_regular

    location = Path(path) if path is not None else DEFAULT_PROBE_TEXT
    try:
        # The user named this file, so a link is followed; open_regular then refuses a FIFO or device
        # (which would block) and the read stops one byte past the limit, whatever the file's size.
        with open_regular(os.path.realpath(location)) as handle:
            data = handle.read(MAX_PROBE_TEXT_BYTES + 1)
    except MalformedInput as exc:
        raise UsageError(f"cannot read the probe text {location}: {exc}") from None
    if len(data) > MAX_PROBE_TEXT_BYTES:
        raise UsageError(f"the probe text {location} is larger than {MAX_PROBE_TEXT_BYTES:,} bytes")
    return data.decode("utf-8", errors="replace")


def all_finite(values: np.ndarray) -> bool:
    return bool(np.isfinite(values).all())


def mean_nll(logits_TxV: np.ndarray, ids_T: Sequence[int]) -> float:
    """Mean negative log-likelihood (nats) of ``ids[t + 1]`` under ``logits[t]``, in float64."""
    ids = np.asarray(ids_T, dtype=np.int64)
    if logits_TxV.ndim != 2 or logits_TxV.shape[0] != ids.shape[0] or ids.shape[0] < 2:
        raise ValueError("perplexity needs (T, V) logits for T >= 2 token ids")
    targets = ids[1:]
    predictions = logits_TxV[:-1]  # row t predicts token t + 1
    total = 0.0
    for start in range(0, targets.shape[0], _ROWS_PER_CHUNK):
        rows = predictions[start : start + _ROWS_PER_CHUNK].astype(np.float64)
        top = rows.max(axis=-1, keepdims=True)
        log_norm = np.log(np.exp(rows - top).sum(axis=-1)) + top[:, 0]
        chosen = rows[np.arange(rows.shape[0]), targets[start : start + rows.shape[0]]]
        total += float((log_norm - chosen).sum())
    return total / targets.shape[0]


def perplexity(logits_TxV: np.ndarray, ids_T: Sequence[int]) -> float:
    return float(np.exp(mean_nll(logits_TxV, ids_T)))


def perplexity_threshold(vocab_size: int) -> float:
    return vocab_size / FAR_BELOW_UNIFORM


def mask_positions(ids: Sequence[int], special_ids: set[int], seed: int, fraction: float = MASK_FRACTION) -> np.ndarray:
    """Sorted positions to mask: ``fraction`` of the non-special tokens (at least one), seeded."""
    candidates = np.array([i for i, token in enumerate(ids) if token not in special_ids], dtype=np.int64)
    if candidates.size == 0:
        return candidates
    count = max(1, int(round(fraction * candidates.size)))
    chosen = np.random.default_rng(seed).choice(candidates, size=count, replace=False)
    return np.sort(chosen)


def masked_accuracy(logits_TxV: np.ndarray, ids: Sequence[int], positions: np.ndarray) -> float:
    """Fraction of masked positions whose top-1 prediction is the original token."""
    if positions.size == 0:
        return 0.0
    predicted = logits_TxV[positions].argmax(axis=-1)
    return float((predicted == np.asarray(ids, dtype=np.int64)[positions]).mean())


@dataclass(frozen=True)
class Reference:
    input_ids: np.ndarray  # (1, T) int32
    logits: np.ndarray  # (1, T, V) float32
    hidden_states: np.ndarray | None = None  # (1, T, D) for encoders
    path: str = ""
    token_type_ids: np.ndarray | None = None  # (1, T) BERT segment ids


def load_reference(path: str | Path) -> Reference:
    """Read a reference npz (never with pickle). Raises UsageError when it is not as documented."""
    location = Path(path)
    try:
        size = location.stat().st_size
    except OSError as exc:
        raise UsageError(f"cannot read the reference {location}: {exc.strerror or exc}") from None
    if size > MAX_REFERENCE_BYTES:
        raise UsageError(f"the reference {location} is larger than {MAX_REFERENCE_BYTES:,} bytes")
    try:
        with np.load(location, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files
                      if name in ("input_ids", "logits", "hidden_states", "token_type_ids")}
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"the reference {location} is not a readable .npz: {exc}") from None
    ids, logits = arrays.get("input_ids"), arrays.get("logits")
    if ids is None or logits is None:
        raise UsageError(f"the reference {location} needs arrays 'input_ids' and 'logits'")
    if ids.ndim != 2 or ids.shape[0] != 1 or ids.shape[1] < 1 or not np.issubdtype(ids.dtype, np.integer):
        raise UsageError(f"the reference's input_ids must be integers of shape (1, T), not {ids.dtype}{list(ids.shape)}")
    if logits.ndim != 3 or logits.shape[:2] != ids.shape:
        raise UsageError(f"the reference's logits must have shape (1, {ids.shape[1]}, V), not {list(logits.shape)}")
    hidden = arrays.get("hidden_states")
    if hidden is not None and (hidden.ndim != 3 or hidden.shape[:2] != ids.shape):
        raise UsageError(f"the reference's hidden_states must have shape (1, {ids.shape[1]}, D), not {list(hidden.shape)}")
    types = arrays.get("token_type_ids")
    if types is not None and (types.shape != ids.shape or not np.issubdtype(types.dtype, np.integer)):
        raise UsageError(f"the reference's token_type_ids must be integers of shape {list(ids.shape)}")
    return Reference(ids.astype(np.int32), logits.astype(np.float32),
                     None if hidden is None else hidden.astype(np.float32), str(location),
                     None if types is None else types.astype(np.int32))


def reference_difference(output: np.ndarray, reference: Reference) -> tuple[float | None, float, str]:
    """(max |output - reference|, the reference's largest magnitude, which array was compared);
    None when the output matches neither array's shape."""
    for name, expected in (("logits", reference.logits), ("hidden_states", reference.hidden_states)):
        if expected is not None and output.shape == expected.shape:
            difference = np.abs(output.astype(np.float64) - expected.astype(np.float64))
            return float(np.nan_to_num(difference, nan=np.inf).max()), float(np.abs(expected).max()), name
    return None, 0.0, ""


def reference_limit(dtype: str, scale: float) -> float:
    return REFERENCE_TOLERANCE.get(dtype, REFERENCE_TOLERANCE["bfloat16"]) * max(1.0, scale)
