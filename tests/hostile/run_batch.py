"""Run many ``openaudit`` CLI invocations cheaply, each in its own forked process.

    python tests/hostile/run_batch.py JOBS.json RESULTS.json

Importing openaudit and loading its catalogues cost most of a CLI run's time, so this process does
that once (an audit of an empty folder) and forks one child per job. Each child runs
``openaudit.cli.main(argv)`` with its stdout and stderr sent to files, under its own address-space
limit and CPU-time limit (the kernel kills it with SIGXCPU past ``cpu_seconds``), and is killed when
it runs past ``wall_seconds`` (a blocked read uses no CPU). A hang, a traceback, a crash or a blown
memory limit in one job is therefore recorded against that job only.

JOBS.json is a list of ``{"argv": [...], "cpu_seconds": n, "wall_seconds": x, "memory_bytes": n,
"stdout": path, "stderr": path}``; argv strings may hold surrogate escapes (non-UTF-8 file names).
RESULTS.json gets, per job and in order: ``returncode`` (the exit status, or minus the signal),
``timed_out`` (killed by the wall-clock watchdog), ``seconds`` (wall clock from fork to exit),
``cpu_seconds`` and ``max_rss_bytes``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

# A job that raises past the CLI (which should never happen) exits with this code and a traceback.
UNCAUGHT_EXIT = 70


def _preload() -> None:
    """Import what an audit imports lazily, so that children start with it loaded."""
    import importlib
    import pkgutil

    import openaudit
    import openaudit.cli  # noqa: F401

    for module in pkgutil.walk_packages(openaudit.__path__, "openaudit."):
        if module.name.startswith("openaudit.run") or module.name == "openaudit.__main__":
            continue  # the JAX runner is never imported by a header-only audit; __main__ runs the CLI
        try:
            importlib.import_module(module.name)
        except Exception:  # noqa: BLE001 - a module that fails to import fails in the child, attributed there
            pass


def _warm_up() -> None:
    """Audit an empty folder once, so that catalogues every audit loads (finding ids, pickle policy,
    licences) are in memory before the first fork; each job then pays only for its own input."""
    import contextlib
    import io
    import tempfile

    from openaudit import cli

    with tempfile.TemporaryDirectory() as empty, contextlib.redirect_stdout(io.StringIO()):
        with contextlib.redirect_stderr(io.StringIO()):
            try:
                cli.main(["audit", empty, "--format", "json", "--no-hash"])
            except Exception:  # noqa: BLE001 - whatever fails here fails again in each job, attributed there
                pass


def _child(job: dict) -> None:
    """In the forked child: limits, redirections, the CLI. Never returns."""
    code = UNCAUGHT_EXIT
    try:
        limit = int(job["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        cpu = int(job["cpu_seconds"])
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for fd, path in ((1, job["stdout"]), (2, job["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        from openaudit import cli

        argv = list(job["argv"])
        sys.argv = ["openaudit", *argv]
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse usage errors
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # noqa: BLE001 - report it as the CLI would have shown it: a traceback
        traceback.print_exc()
        code = UNCAUGHT_EXIT
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else UNCAUGHT_EXIT)


def run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    results: list[dict | None] = [None] * len(jobs)
    running: dict[int, tuple[int, float, bool]] = {}  # pid -> (job index, start, killed)
    pending = list(range(len(jobs)))
    pending.reverse()
    while pending or running:
        while pending and len(running) < workers:
            index = pending.pop()
            sys.stdout.flush()
            sys.stderr.flush()
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                _child(jobs[index])
            running[pid] = (index, start, False)
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        now = time.monotonic()
        if pid == 0:
            for child, (index, start, killed) in list(running.items()):
                if not killed and now - start > float(jobs[index]["wall_seconds"]):
                    os.kill(child, signal.SIGKILL)
                    running[child] = (index, start, True)
            time.sleep(0.002)
            continue
        index, start, killed = running.pop(pid)
        results[index] = {
            "returncode": os.waitstatus_to_exitcode(status),
            "timed_out": killed,
            "seconds": now - start,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
        }
    return [result for result in results if result is not None]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: run_batch.py JOBS.json RESULTS.json", file=sys.stderr)
        return 2
    jobs = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    workers = int(os.environ.get("OPENAUDIT_HOSTILE_WORKERS", "2"))
    _preload()
    _warm_up()
    results = run_jobs(jobs, max(1, workers))
    Path(argv[1]).write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
