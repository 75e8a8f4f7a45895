"""Scanning a file that may be a pickle: the entry point for a weights file of any name.

A zip (magic ``PK\\x03\\x04``) goes to :mod:`.torch_files` as a possible ``torch.save`` archive; anything else is
walked as raw pickles one after another, unless its first pickle is the magic number of a legacy
PyTorch file, which :mod:`.torch_files` then reads on. Tensors are recovered from what the walks
evaluate to (:mod:`.tensor_records`). Bad input never raises: it becomes findings in the scan.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from openaudit.errors import MalformedInput, ParseTimeout
from openaudit.findings import finding
from openaudit.inspect.pickle import torch_files
from openaudit.inspect.pickle.machine import ScanContext, walk_pickle
from openaudit.inspect.pickle.opcodes import ByteRange
from openaudit.inspect.pickle.sniff import walk_remaining_pickles
from openaudit.inspect.pickle.tensor_records import collect_tensors
from openaudit.inspect.tensors import TensorRecord, WeightsFileScan
from openaudit.limits import Deadline, open_regular


def scan_pickle_file(location: Path, path: str, size: int, deadline: Deadline | None = None) -> WeightsFileScan:
    """Scan one file that may be a pickle, a PyTorch zip or a legacy PyTorch file. Never raises on bad input."""
    deadline = deadline or Deadline()
    ctx = ScanContext(path=path, deadline=deadline)
    container = "pickle"
    tensors: list[TensorRecord] = []
    metadata: dict[str, object] = {}
    complete = True
    try:
        with open_regular(location) as handle:
            size = _actual_size(handle, size)
            head = handle.read(4)
            if head == torch_files.ZIP_MAGIC:
                return torch_files.scan_torch_zip(handle, path, size, ctx)
            container, tensors, metadata, complete = _scan_raw(handle, size, ctx)
    except ParseTimeout as exc:
        ctx.findings.append(finding("parse-timeout", f"{exc}{ctx.where}", path))
        complete = False
    except MalformedInput as exc:
        ctx.findings.append(finding(_known_id(exc.finding_id), str(exc), path))
        complete = False
    except OSError as exc:
        ctx.findings.append(finding("unreadable-file", f"cannot read: {exc.strerror or exc}", path))
        complete = False
    except Exception as exc:  # noqa: BLE001 - a hostile file must never crash the audit
        ctx.findings.append(finding("pickle-malformed", f"the scanner stopped: {type(exc).__name__}: {exc}", path))
        complete = False
    return WeightsFileScan(
        path=path, format="pickle", container=container, tensors=tuple(tensors), metadata=metadata,
        imports=tuple(ctx.imports), findings=tuple(ctx.findings), complete=complete,
    )


def _known_id(rule_id: str) -> str:
    from openaudit.findings import catalogue

    return rule_id if rule_id in catalogue() else "pickle-malformed"


def _actual_size(handle: BinaryIO, declared: int) -> int:
    import os

    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, io.UnsupportedOperation):
        return declared


def _scan_raw(handle: BinaryIO, size: int, ctx: ScanContext) -> tuple[str, list[TensorRecord], dict, bool]:
    """A raw pickle file (or a legacy torch file, detected by its first pickle)."""
    source = ByteRange(handle, 0, size)
    first = walk_pickle(source, ctx)
    if first.complete and torch_files.is_legacy_magic(first.root):
        return torch_files.scan_torch_legacy(source, size, ctx, first)
    results = [first]
    complete = first.complete
    if complete:
        more, complete = walk_remaining_pickles(source, ctx)
        results.extend(more)
    if len(results) > 1:
        ctx.add("pickle-concatenated", f"the file holds {len(results)} pickles one after another")
    tensors: list[TensorRecord] = []
    for result in results:
        tensors.extend(collect_tensors(result.root, ctx.path, ctx))
    metadata = {"protocol": first.protocol if first.protocol is not None else 0}
    return "pickle", tensors, metadata, complete

