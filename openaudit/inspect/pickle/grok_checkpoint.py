"""Naming the leaves of a Grok-1 ``ckpt-0`` folder.

xai-org/grok-1 saves one pickle per leaf of the flattened parameter tree as
``tensor{i:05d}_{idx:03d}``: ``i`` is the leaf's position in JAX's sorted-key flattening and ``idx``
the host shard (only ``_000`` with one host). The files carry no names, so the names come from the
position, using :func:`.grok_layout.leaf_paths`. A file whose content does not fit its leaf (an fp32
array where an int8 QuantizedWeight8bit is expected) means files were renamed, reordered or replaced,
and is reported.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Sequence

from openaudit.findings import Finding, finding
from openaudit.inspect.pickle.grok_layout import SCALES_SUFFIX, layers_for_leaf_count, leaf_paths
from openaudit.inspect.tensors import PARAMETER, SCALE, TensorRecord, WeightsFileScan

LEAF_FILE = re.compile(r"^tensor(\d{5})_(\d{3})$")
# Leaves stored as QuantizedWeight8bit (int8 weight + bf16 scales); the others are float arrays.
_QUANTIZED_SUFFIXES = ("/moe/linear/w", "/moe/linear_1/w", "/moe/linear_v/w", "/multi_head_attention/key/w",
                       "/multi_head_attention/linear/w", "/multi_head_attention/query/w",
                       "/multi_head_attention/value/w")
_FLOAT_DTYPES = frozenset({"F32", "BF16", "F16", "F64"})
_MAX_LISTED = 8


def leaf_index(path: str) -> tuple[int, int] | None:
    """(leaf index, shard) of a ``tensorNNNNN_NNN`` file, or None for any other name."""
    match = LEAF_FILE.match(PurePosixPath(path).name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_quantized_leaf(leaf: str) -> bool:
    return leaf.endswith(_QUANTIZED_SUFFIXES)


def name_grok_leaves(scans: Sequence[WeightsFileScan]) -> tuple[tuple[WeightsFileScan, ...], tuple[Finding, ...]]:
    """Rename the tensors of the ``tensorNNNNN_NNN`` scans of one folder after their Grok-1 leaves.

    Scans of other files are returned unchanged and in place. Parameters are counted from one shard
    (the lowest ``_NNN``); other shards keep names suffixed ``@<shard>``.
    """
    findings: list[Finding] = []
    by_shard: dict[int, dict[int, int]] = {}  # shard -> leaf index -> position in scans
    folder = ""
    for position, scan in enumerate(scans):
        parsed = leaf_index(scan.path)
        if parsed is not None:
            by_shard.setdefault(parsed[1], {})[parsed[0]] = position
            folder = folder or str(PurePosixPath(scan.path).parent)
    if not by_shard:
        return tuple(scans), ()
    shards = sorted(by_shard)
    if len(shards) > 1:
        findings.append(finding(
            "grok-multiple-shards",
            f"leaf files for {len(shards)} host shards ({', '.join(f'_{s:03d}' for s in shards)}); "
            f"parameters are counted from _{shards[0]:03d}",
            folder,
        ))
    renamed = list(scans)
    for shard in shards:
        files = by_shard[shard]
        count = max(files) + 1
        missing = [index for index in range(count) if index not in files]
        if missing:
            listed = ", ".join(f"tensor{i:05d}_{shard:03d}" for i in missing[:_MAX_LISTED])
            more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            findings.append(finding("grok-missing-leaf", f"{len(missing)} leaf files are missing: {listed}{more}",
                                    folder))
        layers = layers_for_leaf_count(count)
        if layers is None:
            findings.append(finding(
                "grok-leaf-count",
                f"the last leaf file is tensor{count - 1:05d}_{shard:03d}, so the checkpoint has {count} leaves; "
                "a Grok-1 layout has 2 + 12 × layers",
                folder,
            ))
            continue
        names = leaf_paths(layers)
        suffix = "" if shard == shards[0] else f"@{shard:03d}"
        for index, position in sorted(files.items()):
            scan = scans[position]
            leaf = names[index]
            problem = _kind_problem(scan, leaf)
            if problem is not None:
                findings.append(finding("grok-leaf-kind-mismatch", f"{scan.path} is leaf {leaf}: {problem}",
                                        scan.path))
                continue
            renamed[position] = replace(scan, tensors=_rename(scan.tensors, leaf + suffix))
    return tuple(renamed), tuple(findings)


def _kind_problem(scan: WeightsFileScan, leaf: str) -> str | None:
    tensors = scan.tensors
    if is_quantized_leaf(leaf):
        weights = [t for t in tensors if t.role == PARAMETER]
        scales = [t for t in tensors if t.role == SCALE]
        if len(weights) != 1 or len(scales) != 1 or len(tensors) != 2:
            return f"expected one QuantizedWeight8bit (int8 weight and scales), found {_describe(tensors)}"
        if weights[0].dtype != "I8":
            return f"expected an int8 weight, found {weights[0].dtype}"
        if scales[0].dtype not in _FLOAT_DTYPES:
            return f"expected float scales, found {scales[0].dtype}"
        return None
    if len(tensors) != 1 or tensors[0].role != PARAMETER:
        return f"expected one float array, found {_describe(tensors)}"
    if tensors[0].dtype not in _FLOAT_DTYPES:
        return f"expected a float array, found {tensors[0].dtype}"
    return None


def _describe(tensors: Sequence[TensorRecord]) -> str:
    if not tensors:
        return "no tensor"
    return ", ".join(f"{t.role} {t.dtype}{list(t.shape)}" for t in tensors)


def _rename(tensors: Sequence[TensorRecord], leaf: str) -> tuple[TensorRecord, ...]:
    scale_name = leaf + SCALES_SUFFIX
    renamed = []
    for tensor in tensors:
        if tensor.role == SCALE:
            renamed.append(replace(tensor, name=scale_name, pairs_with=leaf))
        else:
            renamed.append(replace(tensor, name=leaf, pairs_with=scale_name if len(tensors) == 2 else None))
    return tuple(renamed)
