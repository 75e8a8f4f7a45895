#!/usr/bin/env python3
"""Header-only audit time against the number of tensors, the number of shards and the weights' size.

For each synthetic release (sharded BF16 safetensors whose data regions are sparse holes, so a terabyte
costs no disk), this prints the time of ``openaudit audit --no-hash`` in-process, and beside it a baseline
measured in the same run: opening every shard and reading and JSON-decoding its header, nothing else.
The ratio audit ÷ baseline shows openaudit's overhead; the time should stay flat as the size grows
(no data is read), and grow with the number of tensors only.

    python bench/header_audit.py            # the full grid
    python bench/header_audit.py --quick    # a smaller grid
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openaudit.audit import AuditOptions, audit  # noqa: E402
from tests.builders.safetensors_builder import write_sharded  # noqa: E402


def make_release(directory: Path, tensors: int, shards: int, total_bytes: int) -> None:
    """``tensors`` BF16 matrices of equal size adding up to about ``total_bytes``."""
    per_tensor = max(2, total_bytes // tensors // 2)  # elements
    columns = 1024 if per_tensor >= 1024 else 1
    rows = max(1, per_tensor // columns)
    write_sharded(directory, {f"model.layers.{i}.weight": (rows, columns) for i in range(tensors)}, shards, "BF16")


def baseline(directory: Path) -> None:
    for shard in sorted(directory.glob("*.safetensors")):
        with open(shard, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            json.loads(handle.read(length))


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    gib = 1 << 30
    grid = [
        # (tensors, shards, bytes): vary one thing at a time around (1000, 8, 100 GiB)
        (100, 8, 100 * gib), (1000, 8, 100 * gib), (10_000, 8, 100 * gib),
        (1000, 1, 100 * gib), (1000, 64, 100 * gib),
        (1000, 8, 1 * gib), (1000, 8, 1024 * gib),
    ]
    if args.quick:
        grid = [(100, 8, gib), (1000, 8, 100 * gib), (1000, 8, 1024 * gib)]
    options = AuditOptions(hash_weights=False)
    print(f"{'tensors':>8} {'shards':>6} {'size':>10} {'audit ms':>9} {'baseline ms':>12} {'ratio':>7}")
    for tensors, shards, size in grid:
        with tempfile.TemporaryDirectory() as tmp:
            release = Path(tmp)
            make_release(release, tensors, shards, size)
            audit(str(release), options)  # warm imports and the page cache once
            audit_s = best_of(lambda: audit(str(release), options), args.repeats)
            base_s = best_of(lambda: baseline(release), args.repeats)
            print(f"{tensors:>8} {shards:>6} {size / gib:>7.0f} GiB {audit_s * 1e3:>9.1f} {base_s * 1e3:>12.1f} {audit_s / base_s:>7.1f}")


if __name__ == "__main__":
    main()
