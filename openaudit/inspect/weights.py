"""Find and read every weights file of a release (by content, whatever its name) and total the tensors.

Formats are recognised by their first bytes, not their names: a pickle called ``tensor00000_000`` or
``notes.txt`` is still a pickle. Only headers and opcodes are read, never the data.
"""

from __future__ import annotations

import re
import struct
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

from openaudit.errors import MalformedInput
from openaudit.findings import Finding, finding
from openaudit.inspect.shard_index import IndexCheck, check_index, is_index, shard_paths
from openaudit.inspect.tensors import BUFFER, INTEGER_DTYPES, PARAMETER, SCALE, TensorRecord, WeightsFileScan
from openaudit.limits import open_regular
from openaudit.release import WEIGHTS, Release, ReleaseFile

_SNIFF_BYTES = 64
_GROK_LEAF = re.compile(r"(^|/)tensor\d{5}_\d{3}$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".dat", ".data")

# Stored tensors that are not parameters, by name: (pattern, reason).
_BUFFER_NAMES = (
    (re.compile(r"(^|\.)position_ids$"), "position index buffer"),
    (re.compile(r"(^|\.)token_type_ids$"), "token-type index buffer"),
    (re.compile(r"(^|\.)inv_freq$"), "rotary embedding inverse frequencies (recomputed from the config)"),
    (re.compile(r"(^|\.)attn\.(bias|masked_bias)$"), "causal attention mask buffer"),
    (re.compile(r"(^|\.)attention\.(bias|masked_bias)$"), "causal attention mask buffer"),
    (re.compile(r"(^|\.)(cos|sin)_cached$"), "cached rotary table"),
    (re.compile(r"(^|\.)rope_freqs\.weight$"), "rotary frequency factors (computed from the config)"),
)


@dataclass(frozen=True)
class BufferRecord:
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    elements: int
    reason: str


@dataclass(frozen=True)
class WeightsInspection:
    """The weights of a release: one scan per weights file, the index checks, and the totals.

    A release may ship the same model several times (``model.safetensors`` beside ``pytorch_model.bin``,
    or several GGUF quantizations). Each copy is a *set* of files; one set is primary and the others are
    ``alternates``: their files are scanned and checked, but ``tensors`` and every total count the
    primary set only, so a model is never counted twice.
    """

    scans: tuple[WeightsFileScan, ...]
    indexes: tuple[IndexCheck, ...]
    tensors: tuple[TensorRecord, ...]  # every stored tensor of the primary sets, roles resolved
    buffers: tuple[BufferRecord, ...]
    findings: tuple[Finding, ...]
    alternates: frozenset[str] = frozenset()  # paths of files that hold another copy of the model

    @property
    def primary_scans(self) -> tuple[WeightsFileScan, ...]:
        return tuple(scan for scan in self.scans if scan.path not in self.alternates)

    @property
    def format(self) -> str:
        formats = {scan.format for scan in self.primary_scans}
        if not formats:
            return "none"
        return formats.pop() if len(formats) == 1 else "mixed"

    @property
    def parameters(self) -> int:
        return sum(t.elements for t in self.tensors if t.role == PARAMETER)

    @property
    def elements(self) -> int:
        return sum(t.elements for t in self.tensors)

    def parameters_by_dtype(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for tensor in self.tensors:
            if tensor.role == PARAMETER:
                counts[tensor.dtype] += tensor.elements
        return dict(sorted(counts.items()))

    def scan_of(self, path: str) -> WeightsFileScan | None:
        return next((scan for scan in self.scans if scan.path == path), None)


def sniff(entry: ReleaseFile) -> str | None:
    """The weights format of a file from its first bytes (and, for ambiguous cases, its name)."""
    if entry.size == 0:
        return "empty" if entry.kind == WEIGHTS else None
    try:
        with open_regular(entry.location) as handle:
            head = handle.read(_SNIFF_BYTES)
    except MalformedInput:
        return None
    lower = entry.path.lower()
    if head[:6] == b"\x93NUMPY":
        return "npy"  # an object array's data is a pickle (openaudit/inspect/pickle/npy.py)
    if head[:4] == b"GGUF" or lower.endswith(".gguf"):
        return "gguf"
    if lower.endswith(".safetensors") or _looks_like_safetensors(head, entry.size):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or lower.endswith(_PICKLE_SUFFIXES) or _sniff_pickle(head):
        return "pickle"
    return None


def _sniff_pickle(head: bytes) -> bool:
    from openaudit.inspect.pickle.sniff import sniff_pickle

    return sniff_pickle(head)


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length <= size - 8 and head[8:9] == b"{"


# All weights files of one release together may not take longer than this to scan (each file also has its
# own parse deadline). Real releases take a second or two (Grok-1's 770 files: well under one); a release
# crafted so that many files each run to their own limit is stopped here, and says what was not scanned.
SCAN_BUDGET_SECONDS = 60.0


def inspect_weights(release: Release, budget_seconds: float = SCAN_BUDGET_SECONDS) -> WeightsInspection:
    """Scan every file that holds weights, check sharded indexes, and resolve parameter/buffer roles."""
    import time

    scans: list[WeightsFileScan] = []
    findings: list[Finding] = []
    give_up_at = time.monotonic() + budget_seconds
    unscanned: list[str] = []
    for entry in release.files:
        if is_index(entry.path):
            continue
        if time.monotonic() > give_up_at:
            unscanned.append(entry.path)
            continue
        kind = sniff(entry)
        if kind is None:
            continue
        if kind == "empty":
            findings.append(finding("empty-weights-file", "the weights file is empty", entry.path))
            continue
        scan = _scanner(kind)(entry.location, entry.path, entry.size)
        if scan is None:
            continue  # a numeric .npy array: not weights openaudit counts
        if kind == "pickle" and not scan.tensors and not scan.imports and not scan.findings and entry.kind != WEIGHTS:
            continue  # a zip or a text file that merely started like one: not weights
        scans.append(scan)
    if unscanned:
        findings.append(finding("scan-budget-exhausted",
                                f"scanning stopped after {budget_seconds:g} s; {len(unscanned)} file(s) were not read, "
                                f"from {unscanned[0]}", unscanned[0]))
    scans = _name_grok_leaves(scans, findings)
    by_path = {scan.path: scan for scan in scans}
    indexes = tuple(check_index(entry, release, by_path) for entry in release.files if is_index(entry.path))
    for check in indexes:
        findings.extend(check.findings)
    for scan in scans:
        findings.extend(scan.findings)
    alternates = _alternate_copies(scans, indexes, findings)
    findings.extend(_unlisted_shards(indexes, alternates))
    tensors, buffers = _resolve_roles([scan for scan in scans if scan.path not in alternates])
    findings.extend(_duplicate_tensors(tensors))
    return WeightsInspection(tuple(scans), indexes, tensors, buffers, tuple(findings), alternates)


def _unlisted_shards(indexes: Sequence[IndexCheck], alternates: frozenset[str]) -> list[Finding]:
    """Weights files beside an index, of its format, that no index names, counted together with its shards.

    When the file and the shards are different copies of the model (Mistral's ``consolidated.safetensors``
    beside ``model-0000N-of-0000M.safetensors``), one of them is an alternate and is reported as such; when
    both are counted, the file adds tensors that loaders following the index never read.
    """
    named = shard_paths(indexes)
    found = []
    for check in indexes:
        if check.index is None or any(shard in alternates for shard in check.index.shards):
            continue
        for path in check.unlisted:
            if path not in named and path not in alternates:
                found.append(finding("index-shard-unlisted",
                                     f"{path} holds weights beside the index, which never names it; loaders that follow "
                                     "the index do not read it, and openaudit counts its tensors", check.index.path))
    return found


_FORMAT_PREFERENCE = {"safetensors": 0, "gguf": 1, "pickle": 2}
# Folders of checkpoints saved during training (step1000/, checkpoint-500/, stage2/): such a copy is an
# intermediate checkpoint, not the released model, when the release also has weights outside them.
_INTERMEDIATE = re.compile(r"(^|/)(?:step|checkpoint|ckpt|iter|iteration|epoch|stage|global_step)[-_]?\d+(/|$)", re.I)
_GGUF_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.I)


def _weight_sets(scans: Sequence[WeightsFileScan], indexes: Sequence[IndexCheck]) -> list[list[WeightsFileScan]]:
    """Group files into copies of a model: an index's shards, a split GGUF, a folder of one format."""
    group_of: dict[str, str] = {}
    for check in indexes:
        if check.index is not None:
            for shard in check.index.shards:
                group_of.setdefault(shard, f"index:{check.index.path}")
    groups: dict[str, list[WeightsFileScan]] = defaultdict(list)
    for scan in scans:
        folder = scan.path.rpartition("/")[0]
        if scan.path in group_of:
            key = group_of[scan.path]
        elif scan.format == "gguf":
            key = "gguf:" + _GGUF_SPLIT.sub("", scan.path)
        else:
            key = f"{scan.format}:{scan.container}:{folder}"
        groups[key].append(scan)
    sets: list[list[WeightsFileScan]] = []
    for key, members in groups.items():
        if key.startswith("index:"):
            sets.append(members)
            continue
        # Files of one folder and format are shards of one copy when their tensor names are disjoint;
        # a file repeating names already seen starts another copy.
        copies: list[tuple[set[str], list[WeightsFileScan]]] = []
        for scan in members:
            names = {tensor.name for tensor in scan.tensors}
            home = next((copy for copy in copies if not (copy[0] & names)), None)
            if home is None:
                copies.append((set(names), [scan]))
            else:
                home[0].update(names)
                home[1].append(scan)
        sets.extend(members for _, members in copies)
    return sets


def _alternate_copies(scans: Sequence[WeightsFileScan], indexes: Sequence[IndexCheck], findings: list[Finding]) -> frozenset[str]:
    sets = _weight_sets(scans, indexes)
    if len(sets) < 2:
        return frozenset()

    def parameters(group: list[WeightsFileScan]) -> int:
        return sum(t.elements for scan in group for t in scan.tensors if t.role == PARAMETER)

    def names(group: list[WeightsFileScan]) -> set[str]:
        from openaudit.inspect.tensor_names import canonical

        return {canonical(t.name) for scan in group for t in scan.tensors}

    def size(group: list[WeightsFileScan]) -> int:
        return sum(t.nbytes or 0 for scan in group for t in scan.tensors)

    ordered = sorted(sets, key=lambda g: (bool(_INTERMEDIATE.search(g[0].path)), _FORMAT_PREFERENCE.get(g[0].format, 9),
                                          g[0].path.count("/"), -size(g), g[0].path))
    primaries: list[list[WeightsFileScan]] = []
    alternates: set[str] = set()
    for group in ordered:
        group_names, group_params = names(group), parameters(group)
        copy_of = None
        for primary in primaries:
            primary_names, primary_params = names(primary), parameters(primary)
            overlap = len(group_names & primary_names) / max(1, min(len(group_names), len(primary_names)))
            close = primary_params > 0 and abs(group_params - primary_params) <= primary_params // 100
            if overlap >= 0.5 or close:
                copy_of = primary
                break
        if copy_of is None:
            primaries.append(group)
            continue
        alternates.update(scan.path for scan in group)
        where = copy_of[0].path if len(copy_of) == 1 else f"{copy_of[0].path} and {len(copy_of) - 1} more"
        if _INTERMEDIATE.search(group[0].path):
            findings.append(finding("intermediate-checkpoint",
                                    f"{len(group)} file(s) of a checkpoint saved during training; the model is counted from {where}",
                                    group[0].path))
        else:
            findings.append(
                finding("alternate-weights-copy",
                        f"{len(group)} file(s) hold another copy of the model in {where}; counted once, from {where}",
                        group[0].path)
            )
        findings.extend(_compare_copies(copy_of, group))
    return frozenset(alternates)


def _compare_copies(primary: list[WeightsFileScan], alternate: list[WeightsFileScan]) -> list[Finding]:
    """Two copies that use the same tensor names must agree on their shapes."""
    shapes = {t.name: t.shape for scan in primary for t in scan.tensors}
    problems = []
    for scan in alternate:
        for tensor in scan.tensors:
            expected = shapes.get(tensor.name)
            if expected is not None and tuple(expected) != tuple(tensor.shape) and tensor.role != SCALE:
                problems.append(
                    finding("alternate-copy-differs",
                            f"{tensor.name} has shape {list(tensor.shape)} here but {list(expected)} in the primary copy",
                            scan.path)
                )
                if len(problems) >= 20:
                    return problems
    return problems


def _scanner(kind: str):
    """The scan function of a format, imported on first use (a safetensors audit never loads the rest)."""
    if kind == "safetensors":
        from openaudit.inspect.safetensors import scan_safetensors

        return scan_safetensors
    if kind == "gguf":
        from openaudit.inspect.gguf import scan_gguf

        return scan_gguf
    if kind == "npy":
        from openaudit.inspect.pickle.npy import scan_npy_file

        return scan_npy_file
    from openaudit.inspect.pickle.scan import scan_pickle_file

    return scan_pickle_file


def _name_grok_leaves(scans: list[WeightsFileScan], findings: list[Finding]) -> list[WeightsFileScan]:
    """Give the leaves of Grok-1-format checkpoint folders their parameter names."""
    folders: dict[str, list[WeightsFileScan]] = defaultdict(list)
    for scan in scans:
        if scan.format == "pickle" and _GROK_LEAF.search(scan.path):
            folders[scan.path.rpartition("/")[0]].append(scan)
    if not folders:
        return scans
    from openaudit.inspect.pickle.grok_checkpoint import name_grok_leaves

    renamed: dict[str, WeightsFileScan] = {}
    for _, leaves in sorted(folders.items()):
        named, problems = name_grok_leaves(leaves)
        findings.extend(problems)
        renamed.update((scan.path, scan) for scan in named)
    return [renamed.get(scan.path, scan) for scan in scans]


def _resolve_roles(scans: Sequence[WeightsFileScan]) -> tuple[tuple[TensorRecord, ...], tuple[BufferRecord, ...]]:
    from dataclasses import replace

    tensors: list[TensorRecord] = []
    buffers: list[BufferRecord] = []
    for scan in scans:
        for tensor in scan.tensors:
            reason = None if tensor.role == SCALE else buffer_reason(tensor)
            if reason is not None:
                tensor = replace(tensor, role=BUFFER)
                buffers.append(BufferRecord(tensor.name, tensor.file, tensor.dtype, tensor.shape, tensor.elements, reason))
            tensors.append(tensor)
    return tuple(tensors), tuple(buffers)


def buffer_reason(tensor: TensorRecord) -> str | None:
    """Why a stored tensor is a buffer rather than a parameter, or None if it is a parameter.

    Named buffers (position ids, rotary inverse frequencies, GPT-2's attention masks) are recognised by
    name; wide integer and boolean tensors are index or mask buffers. Int8/uint8 tensors stay parameters:
    they are how quantized weights (Grok-1's int8 matrices, bitsandbytes) are stored.
    """
    if tensor.role == BUFFER:
        return "stored as a buffer"
    for pattern, reason in _BUFFER_NAMES:
        if pattern.search(tensor.name):
            return reason
    if tensor.dtype in INTEGER_DTYPES and tensor.dtype not in ("I8", "U8") and tensor.pairs_with is None:
        return f"{tensor.dtype} integer tensor (index or mask buffer)"
    return None


def _duplicate_tensors(tensors: Sequence[TensorRecord]) -> list[Finding]:
    seen: dict[str, str] = {}
    findings = []
    for tensor in tensors:
        earlier = seen.setdefault(tensor.name, tensor.file)
        if earlier != tensor.file:
            findings.append(finding("duplicate-tensor", f"{tensor.name!r} is also stored in {earlier}", tensor.file))
    return findings


def weights_kinds(inspection: WeightsInspection) -> Mapping[str, str]:
    """Release paths that content sniffing showed to be weights (for re-classifying the inventory)."""
    return {scan.path: WEIGHTS for scan in inspection.scans}
