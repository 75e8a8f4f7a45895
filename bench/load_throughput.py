"""Load throughput of ``openaudit audit --run`` against the raw read throughput of the same file.

    python bench/load_throughput.py [--size 512MiB] [--dtype F32|BF16] [--repeat 3] [--keep DIR]

Writes a random Llama-shaped release of about ``--size`` (safetensors), then, ``--repeat`` times and
alternating so that neither side benefits from the order:

- **raw read** (the baseline): the page cache is emptied for the file (``posix_fadvise DONTNEED``; where
  the kernel ignores it the numbers are warm-cache ones and say so), then the file is read start to end
  into a reused 16 MiB buffer: the fastest a reader of these bytes can go;
- **load**: the cache is emptied again, the release is planned and every tensor loaded through
  ``openaudit.run.loader.Loader`` onto all devices (memory map -> ``make_array_from_callback``), and
  waited for. On CPU jax may alias suitably aligned mapped pages instead of copying them (zero copy),
  and an aliased array is not yet read; so every array is also touched once per 4 KiB page by a jitted
  strided sum (one element per page: no measurable compute), which faults in any page still on disk.

It prints both throughputs (GB/s of file bytes) and their ratio (goal >= 0.8), best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUFFER = 16 << 20


def evict(path: Path) -> bool:
    """Drop the file's clean pages from the page cache (advice; True when the call was accepted)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


def raw_read_seconds(path: Path) -> float:
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(view):
            pass
    return time.perf_counter() - started


def load_seconds(folder: Path) -> tuple[float, int, dict]:
    import jax
    import jax.numpy as jnp

    from openaudit.run.loader import Loader
    from openaudit.run.runner import plan_run
    from openaudit.run.sharding import make_mesh
    from tests.run_helpers.releases import open_release

    release, weights, architecture = open_release(folder)
    _, plan = plan_run(weights, architecture)
    mesh = make_mesh()
    checksum = _touch_function()
    loader = Loader(release, plan, mesh, architecture.config)
    started = time.perf_counter()
    arrays = loader.load(plan.entries)
    jax.block_until_ready(list(arrays.values()))
    jax.block_until_ready([checksum(array) for array in arrays.values()])
    elapsed = time.perf_counter() - started
    info = {"tensors": len(arrays), "sharded": loader.sharded_tensors, "devices": mesh.size}
    loader.free(arrays)
    del arrays
    gc.collect()  # a lingering view keeps the file mapped, and mapped pages cannot be evicted
    return elapsed, plan.nbytes, info


_TOUCH = []


def _touch_function():
    """One jitted function for every call (a new jit object would compile again each time)."""
    if not _TOUCH:
        import jax
        import jax.numpy as jnp

        def touch(x):  # one element per 4 KiB page
            return jnp.sum(x.reshape(-1)[:: max(1, 4096 // x.dtype.itemsize)], dtype=jnp.float32)

        _TOUCH.append(jax.jit(touch))
    return _TOUCH[0]


def warm_up(folder: Path) -> None:
    """Compile the checksum for every shape once (compilation is not loading)."""
    load_seconds(folder)


def main(argv: list[str] | None = None) -> int:
    from openaudit.run.runner import parse_bytes
    from tests.run_helpers.releases import llama_size_for, write_random_llama

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512MiB")
    parser.add_argument("--dtype", default="F32", choices=("F32", "BF16"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the release here and keep it")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="openaudit-bench-"))
    itemsize = 4 if args.dtype == "F32" else 2
    size = llama_size_for(parse_bytes(args.size), itemsize)
    if not (folder / "model.safetensors").is_file():
        write_random_llama(folder, size, args.dtype)
    path = folder / "model.safetensors"
    file_bytes = path.stat().st_size
    print(f"release: {folder} ({file_bytes / 1e9:.3f} GB, {args.dtype})", flush=True)
    warm_up(folder)

    raw, load, cold = [], [], True
    for _ in range(args.repeat):
        gc.collect()
        cold &= evict(path)
        raw.append(raw_read_seconds(path))
        cold &= evict(path)
        seconds, loaded_bytes, info = load_seconds(folder)
        load.append(seconds)
    raw_rate, load_rate = file_bytes / min(raw) / 1e9, file_bytes / min(load) / 1e9
    cache = "cold cache (posix_fadvise DONTNEED before each)" if cold else "WARM cache (eviction refused)"
    print(f"devices: {info['devices']} ({info['sharded']} of {info['tensors']} tensors sharded); {cache}")
    print(f"raw read   (baseline): {raw_rate:7.3f} GB/s  best of {args.repeat}: {min(raw):.3f} s")
    print(f"openaudit load       : {load_rate:7.3f} GB/s  best of {args.repeat}: {min(load):.3f} s "
          f"({loaded_bytes / 1e9:.3f} GB on the devices)")
    print(f"load / raw read      : {load_rate / raw_rate:7.3f}   (goal >= 0.8)")
    if args.keep is None:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
