"""The GPU check of ``openaudit audit --run``: sharded load throughput, a forward pass, device memory.

    PYTHONPATH=. python3 bench/gpu_check.py OUT.json [--size 4GiB] [--dtype BF16] [--tokens 256]
        [--compute float32] [--work DIR] [--references llama,mixtral,...]

Ready for a machine with GPUs (every device jax sees is used, one mesh axis); on a CPU it makes a dry
run (``--size`` defaults to 128 MiB there). Steps, each timed, all figures written to ``OUT.json``:

1. devices: count, kind, platform, jax version, and each device's memory limit;
2. correctness on the device: the tiny transformers fixtures in ``tests/data/reference/<family>`` run
   through ``run_release`` with ``--reference`` (max |logits - transformers|, pass/fail per family);
3. a random Llama-shaped release of ``--size`` is written (``--dtype`` BF16 by default, as releases ship);
4. disk read rate: the page cache emptied for the file (``posix_fadvise``), the file read start to end;
5. sharded load throughput: after one unmeasured load (it compiles the on-device dtype conversions),
   the cache is emptied again and every tensor loaded onto the mesh by openaudit's loader (memory
   map -> per-device slices -> host-to-device copies, converted to ``--compute`` on the device) and
   waited for; GB/s of file bytes, and the ratio to the disk read rate; then once more warm;
6. a streamed forward pass (``memory_budget`` a quarter of the weights) and its peak device memory;
7. an in-memory forward pass (compiled once, then timed) and the peak device memory after it
   (``device.memory_stats()['peak_bytes_in_use']``, which only grows: hence streamed first).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "olmo2", "gpt2", "gpt_neox",
            "bert")


def evict(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except (OSError, AttributeError):
        return False
    finally:
        os.close(fd)


def raw_read(path: Path) -> float:
    buffer = memoryview(bytearray(16 << 20))
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buffer):
            pass
    return time.perf_counter() - started


def device_memory() -> list[dict]:
    import jax

    result = []
    for device in jax.local_devices():
        stats = device.memory_stats() or {}
        result.append({key: stats.get(key) for key in ("bytes_in_use", "peak_bytes_in_use", "bytes_limit")})
    return result


def peak_device_bytes() -> int | None:
    peaks = [entry["peak_bytes_in_use"] for entry in device_memory() if entry["peak_bytes_in_use"] is not None]
    return max(peaks) if peaks else None


def check_references(names: list[str]) -> dict:
    from openaudit.run.runner import RunOptions, run_release
    from tests.run_helpers.releases import open_release

    results = {}
    for family in names:
        folder = ROOT / "tests" / "data" / "reference" / family
        if not (folder / "reference.npz").is_file():
            continue
        release, weights, architecture = open_release(folder)
        started = time.perf_counter()
        result = run_release(release, weights, architecture, RunOptions(reference=str(folder / "reference.npz")))
        results[family] = {"status": result.status, "max_abs_diff": result.reference_max_abs_diff,
                           "tolerance": result.reference_tolerance, "failures": list(result.failures),
                           "seconds": round(time.perf_counter() - started, 3)}
        print(f"  {family:9s} {result.status}  max |diff| {result.reference_max_abs_diff}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size")
    parser.add_argument("--dtype", default="BF16", choices=("BF16", "F32"))
    parser.add_argument("--compute", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--work", type=Path, help="where to write the model (default: a temporary folder)")
    parser.add_argument("--references", default=",".join(FAMILIES))
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    from openaudit.run.loader import Loader
    from openaudit.run.runner import RunOptions, execute, parse_bytes, plan_run
    from openaudit.run.sharding import make_mesh
    from tests.run_helpers.releases import LlamaSize, llama_size_for, open_release, write_random_llama

    devices = jax.devices()
    on_gpu = devices[0].platform == "gpu"
    figures: dict = {
        "host": platform.node(), "python": platform.python_version(), "jax": jax.__version__,
        "devices": len(devices), "device_kind": devices[0].device_kind, "platform": devices[0].platform,
        "processes": jax.process_count(), "device_memory_at_start": device_memory(),
    }
    print(f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform}), jax {jax.__version__}", flush=True)

    print("correctness against transformers (tiny fixtures):", flush=True)
    figures["references"] = check_references([name for name in args.references.split(",") if name])

    size_bytes = parse_bytes(args.size or ("4GiB" if on_gpu else "128MiB"))
    itemsize = 2 if args.dtype == "BF16" else 4
    base = LlamaSize(hidden=4096, intermediate=11008, heads=32, kv_heads=8, vocab=32000) if on_gpu else LlamaSize()
    size = llama_size_for(size_bytes, itemsize, base)
    work = args.work or Path(tempfile.mkdtemp(prefix="openaudit-gpu-"))
    started = time.perf_counter()
    if not (work / "model.safetensors").is_file():
        write_random_llama(work, size, args.dtype)
    path = work / "model.safetensors"
    file_bytes = path.stat().st_size
    figures["model"] = {"bytes": file_bytes, "layers": size.layers, "hidden": size.hidden, "dtype": args.dtype,
                        "parameters": size.parameters, "write_seconds": round(time.perf_counter() - started, 2)}
    print(f"model: {file_bytes / 1e9:.2f} GB, {size.layers} layers, written in {figures['model']['write_seconds']} s", flush=True)

    os.sync()
    cold = evict(path)
    seconds = raw_read(path)
    figures["disk_read"] = {"gb_per_s": file_bytes / seconds / 1e9, "seconds": seconds, "cold": cold}

    release, weights, architecture = open_release(work)
    options = RunOptions(dtype=args.compute)
    model, plan = plan_run(weights, architecture, options)
    mesh = make_mesh()
    loads = []
    for attempt in ("warm-up", "cold", "warm"):  # the first compiles the on-device conversions
        gc.collect()
        if attempt == "cold":
            evict(path)
        loader = Loader(release, plan, mesh, architecture.config)
        started = time.perf_counter()
        arrays = loader.load(plan.entries)
        jax.block_until_ready(list(arrays.values()))
        elapsed = time.perf_counter() - started
        loads.append({"cache": attempt, "seconds": elapsed, "gb_per_s": file_bytes / elapsed / 1e9,
                      "device_bytes": loader.loaded_bytes, "sharded_tensors": loader.sharded_tensors,
                      "tensors": loader.loaded_tensors})
        loader.free(arrays)
        del arrays
    loads = loads[1:]
    figures["load"] = loads
    figures["load_over_disk_read"] = loads[0]["gb_per_s"] / figures["disk_read"]["gb_per_s"]
    print(f"disk read {figures['disk_read']['gb_per_s']:.2f} GB/s (cold: {cold}); load {loads[0]['gb_per_s']:.2f} GB/s "
          f"cold, {loads[1]['gb_per_s']:.2f} GB/s warm; ratio {figures['load_over_disk_read']:.2f}", flush=True)

    ids = np.random.default_rng(0).integers(0, architecture.config.vocab_size, size=(1, args.tokens), dtype=np.int32)
    streamed_options = RunOptions(dtype=args.compute, memory_budget=plan.nbytes // 4)
    started = time.perf_counter()
    streamed = execute(release, architecture, model, plan, [ids], streamed_options)
    figures["streamed"] = {"seconds": time.perf_counter() - started, "budget": plan.nbytes // 4,
                           "peak_weights": streamed.stats.peak_resident_weight_bytes,
                           "wait_seconds": streamed.stats.wait_seconds, "peak_device_bytes": peak_device_bytes(),
                           "finite": bool(np.isfinite(streamed.outputs[0]).all())}
    print(f"streamed forward: {figures['streamed']['seconds']:.2f} s, peak device {figures['streamed']['peak_device_bytes']}", flush=True)

    started = time.perf_counter()
    first = execute(release, architecture, model, plan, [ids], options)
    compile_and_run = time.perf_counter() - started
    second = execute(release, architecture, model, plan, [ids], options)
    difference = float(np.abs(first.outputs[0] - streamed.outputs[0]).max())
    figures["in_memory"] = {
        "first_seconds": compile_and_run, "compute_seconds": second.stats.compute_seconds,
        "load_seconds": second.stats.load_seconds, "tokens": args.tokens,
        "tokens_per_second": args.tokens / second.stats.compute_seconds,
        "peak_device_bytes": peak_device_bytes(), "finite": bool(np.isfinite(second.outputs[0]).all()),
        "deterministic": bool(np.array_equal(first.outputs[0], second.outputs[0])),
        "max_abs_diff_vs_streamed": difference,
    }
    print(f"in-memory forward: {second.stats.compute_seconds * 1e3:.1f} ms compute ({figures['in_memory']['tokens_per_second']:.0f} "
          f"tokens/s), peak device {figures['in_memory']['peak_device_bytes']}, |in-memory - streamed| {difference:.2e}", flush=True)
    figures["device_memory_at_end"] = device_memory()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=1, default=str))
    print(f"wrote {args.out}")
    if args.work is None:
        for child in work.iterdir():
            child.unlink()
        work.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
