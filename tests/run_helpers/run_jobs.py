"""Run releases through openaudit's load-and-forward path and save their outputs (a test helper).

    python -m tests.run_helpers.run_jobs JOBS.json [--local-devices N]
        [--coordinator HOST:PORT --num-processes N --process-id I]

``JOBS.json`` is a list of ``{"release": DIR, "ids": IDS.npz, "out": OUT.npz, "budget": BYTES or null}``;
``IDS.npz`` holds ``input_ids`` (1, T). Process 0 writes each ``OUT.npz`` with ``logits`` (the head's
output), ``devices`` (global count), ``processes``, ``streamed``, ``layers`` and ``peak_weights``.
The device count is fixed when the backend starts: set ``XLA_FLAGS=--xla_force_host_platform_device_count=N``
in the environment, or pass ``--local-devices`` (``jax_num_cpu_devices``).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs")
    parser.add_argument("--local-devices", type=int)
    parser.add_argument("--coordinator")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    args = parser.parse_args(argv)

    import jax

    if args.local_devices:
        jax.config.update("jax_num_cpu_devices", args.local_devices)
    from openaudit.run import distributed

    distributed.initialize(args.coordinator, args.num_processes, args.process_id, timeout_seconds=60)
    from openaudit.run.runner import RunOptions, execute, plan_run
    from tests.run_helpers.releases import open_release

    with open(args.jobs, encoding="utf-8") as handle:
        jobs = json.load(handle)
    for job in jobs:
        release, weights, architecture = open_release(job["release"])
        options = RunOptions(memory_budget=job.get("budget"))
        model, plan = plan_run(weights, architecture, options)
        with np.load(job["ids"]) as archive:
            ids = archive["input_ids"].astype(np.int32)
        run = execute(release, architecture, model, plan, [ids], options)
        if jax.process_index() == 0:
            np.savez(job["out"], logits=run.outputs[0], devices=jax.device_count(), processes=jax.process_count(),
                     streamed=run.streamed, layers=run.stats.layers, peak_weights=run.stats.peak_resident_weight_bytes)
    distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
