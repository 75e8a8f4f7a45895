"""Peak memory of a streamed run (``--memory-budget``) of a model several times larger than the budget.

    python bench/stream_memory.py [--budget 128MiB] [--factor 4.5] [--tokens 128] [--keep DIR]

Writes a random Llama-shaped release of ``factor`` x ``budget`` bytes (float32; each layer about a third
of the budget, so two layers plus activations fit), then runs it in fresh subprocesses, one at a time:

- **streamed**: ``execute`` with ``memory_budget=budget`` (layer by layer, next layer prefetched);
- **in memory** (the baseline): the same forward pass with every weight resident.

Each child imports jax, opens the release and runs the forward pass once to compile it (compilation
memory is not weight memory), then records its resident memory, resets the kernel's high-water mark
(``/proc/self/clear_refs``), runs the forward pass again and reads ``VmHWM``; a sampler thread reading
``VmRSS`` every 2 ms confirms it. The figure reported is the *rise* of resident memory during the run
above what the process held before it (the interpreter, jax and XLA's runtime, about 200-300 MB here,
are there whatever the model). Ratios: streamed peak / budget (goal <= 1.5) and in-memory peak /
streamed peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(folder: Path, budget: int | None, tokens: int) -> dict:
    import numpy as np

    from openaudit.run.runner import RunOptions, current_rss_bytes, execute, peak_rss_bytes, plan_run, reset_peak_rss
    from tests.run_helpers.releases import open_release

    release, weights, architecture = open_release(folder)
    options = RunOptions(memory_budget=budget)
    model, plan = plan_run(weights, architecture, options)
    ids = np.random.default_rng(0).integers(0, architecture.config.vocab_size, size=(1, tokens), dtype=np.int32)
    first = execute(release, architecture, model, plan, [ids], options)  # compiles
    del first
    import gc

    gc.collect()
    before = current_rss_bytes()
    sampled = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            sampled.append(current_rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    reset = reset_peak_rss()
    sampler.start()
    started = time.perf_counter()
    run = execute(release, architecture, model, plan, [ids], options)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "streamed": run.streamed, "weights_bytes": plan.nbytes, "largest_layer_bytes": plan.largest_layer_bytes,
        "before": before, "peak_hwm": peak_rss_bytes() if reset else None, "peak_sampled": max(sampled),
        "peak_weights": run.stats.peak_resident_weight_bytes, "seconds": seconds,
        "wait_seconds": run.stats.wait_seconds, "finite": bool(np.isfinite(run.outputs[0]).all()),
    }


def measure(folder: Path, budget: int | None, tokens: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder), "--tokens", str(tokens)]
    if budget is not None:
        command += ["--child-budget", str(budget)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="128MiB")
    parser.add_argument("--factor", type=float, default=4.5, help="model bytes / budget (at least 4)")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-budget", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    from openaudit.run.runner import parse_bytes

    if args.child is not None:
        print(json.dumps(child(args.child, args.child_budget, args.tokens)))
        return 0
    budget = parse_bytes(args.budget)
    if args.factor < 4:
        raise SystemExit("--factor must be at least 4")

    from tests.run_helpers.releases import LlamaSize, llama_size_for, write_random_llama

    # A layer of about budget / 3: two layers in flight (current + prefetched) stay under the budget.
    hidden = 1024
    base = LlamaSize(hidden=hidden, intermediate=2816, heads=16, kv_heads=4, vocab=4096)
    scale = max(0.25, (budget / 3) / (base.layer_parameters * 4))
    width = max(256, int(hidden * scale ** 0.5) // 64 * 64)
    base = LlamaSize(hidden=width, intermediate=width * 11 // 4 // 64 * 64, heads=width // 64,
                     kv_heads=max(1, width // 256), vocab=4096)
    size = llama_size_for(int(args.factor * budget), 4, base)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="openaudit-stream-"))
    if not (folder / "model.safetensors").is_file():
        write_random_llama(folder, size, "F32")
    model_bytes = (folder / "model.safetensors").stat().st_size
    print(f"model: {model_bytes / 2**20:,.0f} MiB ({size.layers} layers of {size.layer_parameters * 4 / 2**20:.1f} MiB, "
          f"width {size.hidden}) = {model_bytes / budget:.2f} x the budget of {budget / 2**20:,.0f} MiB", flush=True)

    streamed = measure(folder, budget, args.tokens)
    whole = measure(folder, None, args.tokens)
    for label, result in (("streamed", streamed), ("in memory (baseline)", whole)):
        rise = (result["peak_hwm"] or result["peak_sampled"]) - result["before"]
        result["rise"] = rise
        print(f"{label:22s}: peak rise {rise / 2**20:8.1f} MiB (VmHWM; sampled {(result['peak_sampled'] - result['before']) / 2**20:.1f}), "
              f"weights held at once {result['peak_weights'] / 2**20:.1f} MiB, {result['seconds']:.2f} s, "
              f"waited on loading {result['wait_seconds']:.2f} s, logits finite: {result['finite']}")
    print(f"streamed peak / budget     : {streamed['rise'] / budget:6.2f}   (goal <= 1.5)")
    print(f"in-memory peak / streamed  : {whole['rise'] / streamed['rise']:6.2f}")
    print(f"model / budget             : {model_bytes / budget:6.2f}")
    if args.keep is None:
        for child_path in folder.iterdir():
            child_path.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
