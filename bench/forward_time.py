"""Forward-pass time of ``openaudit audit --run``, against a plain ``jax.jit`` of the whole model.

    python bench/forward_time.py [--size 256MiB] [--tokens 128] [--repeat 3] [--keep DIR]

On a random Llama-shaped release of about ``--size`` (float32), all on the same devices and weights:

- **baseline**: the whole forward pass (``openaudit.run.model.forward``) as one ``jax.jit`` over
  resident weights: what a hand-written JAX runner would do;
- **openaudit, in memory**: ``execute`` with every weight resident; its compute time (loading excluded,
  as reported in ``StreamStats``): embed, one compiled function per layer kind called layer by layer,
  head with the logits gathered;
- **openaudit, streamed** (``--memory-budget`` a quarter of the weights): the whole ``execute``,
  loading included, since a streamed run loads every layer again on every forward pass.

Each is run once to compile, then ``--repeat`` times; the best time is printed, with tokens/s and the
ratio to the baseline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256MiB")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    from openaudit.run import model as contract
    from openaudit.run.loader import Loader
    from openaudit.run.runner import RunOptions, execute, parse_bytes, plan_run
    from openaudit.run.sharding import make_mesh
    from tests.run_helpers.releases import llama_size_for, open_release, write_random_llama

    folder = args.keep or Path(tempfile.mkdtemp(prefix="openaudit-forward-"))
    size = llama_size_for(parse_bytes(args.size), 4)
    if not (folder / "model.safetensors").is_file():
        write_random_llama(folder, size, "F32")
    release, weights, architecture = open_release(folder)
    config = architecture.config
    model, plan = plan_run(weights, architecture)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=(1, args.tokens), dtype=np.int32)
    parameters = plan.nbytes // 4
    print(f"model: {plan.nbytes / 2**20:,.0f} MiB, {config.num_layers} layers, {parameters / 1e6:.1f} M parameters; "
          f"{args.tokens} tokens on {jax.device_count()} {jax.devices()[0].platform} device(s)", flush=True)

    def best(run) -> float:
        run()
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return min(times)

    # Baseline: one jit of the whole forward pass over resident weights.
    mesh = make_mesh()
    loader = Loader(release, plan, mesh, config)
    params = loader.load(plan.entries)
    tokens = jax.device_put(ids)
    whole = jax.jit(lambda p, t: contract.forward(model, config, p, t))
    baseline = best(lambda: whole(params, tokens).block_until_ready())
    reference = np.asarray(whole(params, tokens))
    loader.free(params)

    compute_times: list[float] = []

    def in_memory() -> None:
        run = execute(release, architecture, model, plan, [ids])
        compute_times.append(run.stats.compute_seconds)
        np.testing.assert_allclose(run.outputs[0], reference, rtol=0, atol=1e-4)

    best(in_memory)
    ours = min(compute_times[1:])
    options = RunOptions(memory_budget=plan.nbytes // 4)
    streamed = best(lambda: execute(release, architecture, model, plan, [ids], options))

    flops = 2 * parameters * args.tokens
    for label, seconds in (("baseline (one jit)", baseline), ("openaudit in memory", ours), ("openaudit streamed", streamed)):
        print(f"{label:20s}: {seconds * 1e3:9.1f} ms  {args.tokens / seconds:9.0f} tokens/s  "
              f"{flops / seconds / 1e9:7.1f} GFLOP/s")
    print(f"in memory / baseline : {ours / baseline:6.2f}")
    print(f"streamed / in memory : {streamed / ours:6.2f}   (streaming reads every weight on every pass)")
    if args.keep is None:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
