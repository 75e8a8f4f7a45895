"""The same logits on 1 device, on 8 simulated devices, and across two jax.distributed processes.

A JAX backend fixes its device count when it starts, so the multi-device runs happen in subprocesses
(``tests/run_helpers/run_jobs.py``); the one-device baseline runs here. The weights are really split:
with 8 devices every q/k/v/o, MLP and embedding matrix of these models is sharded along its natural
axis (the counts are asserted), and the two-process run places each process's half of each weight.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openaudit.run import probes
from openaudit.run.runner import execute, plan_run
from tests.run_helpers import releases as R
from tests.run_helpers.releases import open_release

ROOT = Path(__file__).resolve().parents[1]
TEXT = probes.read_probe_text()
TOLERANCE = 1e-5  # float32 sums in another order across devices; logits are O(1)-O(10)
TIMEOUT = 240


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Two releases, the ids to run, and their one-device logits (in memory and streamed)."""
    root = tmp_path_factory.mktemp("devices")
    bigram = R.write_bigram_llama(root / "bigram", TEXT, layer_scale=0.002)
    R.write_tiny_grok(root / "grok")
    ids = {"bigram": np.asarray([R.char_ids(TEXT[:80])], np.int32),
           "grok": np.array([[5, 9, 1, 17, 3, 30, 22, 8, 47, 2, 11, 0, 4]], np.int32)}
    paths = {"bigram": bigram, "grok": root / "grok"}
    baseline, budgets = {}, {}
    for name, path in paths.items():
        np.savez(root / f"{name}-ids.npz", input_ids=ids[name])
        release, weights, architecture = open_release(path)
        model, plan = plan_run(weights, architecture)
        budgets[name] = plan.nbytes // 4
        baseline[name] = execute(release, architecture, model, plan, [ids[name]]).outputs[0]
    return {"root": root, "paths": paths, "baseline": baseline, "budgets": budgets}


def _jobs(models: dict, tag: str, streamed: bool) -> tuple[Path, dict]:
    root, jobs, outs = models["root"], [], {}
    for name, path in models["paths"].items():
        # Streamed only for the eight-layer model (Grok's two layers add time, not coverage).
        for budget in ([None, models["budgets"][name]] if streamed and name == "bigram" else [None]):
            out = root / f"{tag}-{name}-{'streamed' if budget else 'whole'}.npz"
            jobs.append({"release": str(path), "ids": str(root / f"{name}-ids.npz"), "out": str(out), "budget": budget})
            outs[(name, bool(budget))] = out
    (root / f"{tag}.json").write_text(json.dumps(jobs))
    return root / f"{tag}.json", outs


def _environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", **extra)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_eight_devices_give_the_one_device_logits(models: dict) -> None:
    jobs, outs = _jobs(models, "eight", streamed=True)
    completed = subprocess.run([sys.executable, "-m", "tests.run_helpers.run_jobs", str(jobs)], cwd=ROOT,
                               env=_environment(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
                               capture_output=True, text=True, timeout=TIMEOUT)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for (name, streamed), path in outs.items():
        with np.load(path) as result:
            assert (int(result["devices"]), bool(result["streamed"])) == (8, streamed)
            difference = float(np.abs(result["logits"] - models["baseline"][name]).max())
        assert difference <= TOLERANCE, (name, streamed, difference)


def test_weights_are_sharded_on_eight_devices(models: dict) -> None:
    """What the eight-device run splits: every matrix of these models divides by 8 along its natural axis."""
    from openaudit.run.sharding import split_axis

    _, weights, architecture = open_release(models["paths"]["bigram"])
    _, plan = plan_run(weights, architecture)
    split = {entry.name: split_axis(entry.name, entry.shape, 8) for entry in plan.entries}
    assert split["layers.0.self_attn.q_proj.weight"] == 0 and split["layers.0.self_attn.o_proj.weight"] == 1
    assert split["layers.0.mlp.down_proj.weight"] == 1 and split["embed_tokens.weight"] == 0
    assert sum(axis is not None for axis in split.values()) == 2 + 8 * 7  # every matrix; the norms replicated


def test_two_processes_give_the_one_device_logits(models: dict) -> None:
    jobs, outs = _jobs(models, "distributed", streamed=True)
    port = _free_port()
    command = [sys.executable, "-m", "tests.run_helpers.run_jobs", str(jobs), "--local-devices", "2",
               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id"]
    workers = [subprocess.Popen(command + [str(index)], cwd=ROOT, env=_environment(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for index in (0, 1)]
    try:
        results = [worker.communicate(timeout=TIMEOUT) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-3000:]
    for (name, streamed), path in outs.items():
        with np.load(path) as result:
            assert (int(result["devices"]), int(result["processes"]), bool(result["streamed"])) == (4, 2, streamed)
            difference = float(np.abs(result["logits"] - models["baseline"][name]).max())
        assert difference <= TOLERANCE, (name, streamed, difference)
