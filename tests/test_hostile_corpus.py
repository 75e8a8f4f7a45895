"""Every case of the hostile corpus (tests/hostile/make_corpus.py) through the real CLI.

Each case must end with a report (exit 0) or a clear usage error (exit 2): no traceback, no more than
5 s, memory bounded, a JSON report that validates against the schema, the expected finding ids, every
unsafe pickle global named, and no file created by a pickle payload. Cases run in forked children of
one process (tests/hostile/run_batch.py) so that importing openaudit is paid once; a sample also runs
through ``python -m openaudit`` itself with the table format and hashing on.

The 5 s budget is CPU time, enforced by the kernel (RLIMIT_CPU): this suite shares two cores with
other work, and wall-clock time there measures the neighbours as much as openaudit. A watchdog kills
any run after 20 s of wall-clock time, which catches a process blocked without using CPU (a FIFO read).
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from openaudit.findings import catalogue
from openaudit.report.schema import validation_errors
from tests.hostile.make_corpus import Case, build_case, build_corpus, canary_folder, case_folder, recipes

CPU_SECONDS = 5
WALL_SECONDS = 20.0
# Python, numpy and yaml map about 1 GB of address space before reading anything; this leaves room
# for the bounded buffers openaudit may hold (64 MiB members, 100 MB safetensors headers).
ADDRESS_SPACE_BYTES = 3 * 1024**3
MAX_RSS_BYTES = 1536 * 1024**2
MIN_CASES = 200
REQUIRED_CATEGORIES = ("empty-truncated", "safetensors", "gguf", "pickle", "torch-zip", "grok", "shard-index",
                       "model-card", "links-special", "file-names", "checksums", "hf-cache", "combined")
RUN_BATCH = Path(__file__).parent / "hostile" / "run_batch.py"
ESC = b"\x1b"
# What a name from the release must never bring raw to a terminal: C0 controls but newline, DEL, C1
# controls (U+009B is CSI), bidi embeddings, overrides and isolates.
TERMINAL_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Outcome:
    returncode: int
    timed_out: bool
    seconds: float
    cpu_seconds: float
    max_rss_bytes: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True)
class Corpus:
    root: Path
    cases: dict[str, Case]
    build_seconds: float


@dataclass(frozen=True)
class BatchRun:
    outcomes: dict[str, Outcome]
    seconds: float


def _argv(case: Case, *, json_format: bool = True, hash_files: bool | None = None) -> list[str]:
    argv = ["audit", os.fspath(case.source)]
    if json_format:
        argv += ["--format", "json"]
    if not (case.hash if hash_files is None else hash_files):
        argv.append("--no-hash")
    return argv


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    root = tmp_path_factory.mktemp("hostile")
    start = time.monotonic()
    cases = build_corpus(root)
    return Corpus(root, {case.name: case for case in cases}, time.monotonic() - start)


@pytest.fixture(scope="session")
def batch(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> BatchRun:
    work = tmp_path_factory.mktemp("hostile-runs")
    names = list(corpus.cases)
    jobs = [
        {"argv": _argv(corpus.cases[name]), "cpu_seconds": CPU_SECONDS, "wall_seconds": WALL_SECONDS,
         "memory_bytes": ADDRESS_SPACE_BYTES,
         "stdout": str(work / f"{index}.out"), "stderr": str(work / f"{index}.err")}
        for index, name in enumerate(names)
    ]
    (work / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    start = time.monotonic()
    subprocess.run([sys.executable, str(RUN_BATCH), str(work / "jobs.json"), str(work / "results.json")],
                   check=True, timeout=600, env=_clean_env())
    seconds = time.monotonic() - start
    results = json.loads((work / "results.json").read_text(encoding="utf-8"))
    outcomes = {
        name: Outcome(result["returncode"], result["timed_out"], result["seconds"], result["cpu_seconds"],
                      result["max_rss_bytes"], Path(job["stdout"]).read_bytes(), Path(job["stderr"]).read_bytes())
        for name, job, result in zip(names, jobs, results, strict=True)
    }
    return BatchRun(outcomes, seconds)


def _clean_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("FORCE_COLOR", "OPENAUDIT_FORMAT")}
    env.update(COLUMNS="120", TERM="dumb")
    return env


def _param(recipe) -> object:
    marks = [pytest.mark.xfail(strict=True, reason=recipe.known_failure)] if recipe.known_failure else []
    return pytest.param(recipe.name, id=recipe.name, marks=marks)


def _params() -> list:
    return [_param(recipe) for recipe in recipes()]


def _finding_ids(report: dict) -> set[str]:
    return {item["id"] for item in report["findings"]}


def _check_outcome(case: Case, outcome: Outcome, argv: list[str]) -> bytes | None:
    """The assertions every run shares; returns the report (stdout) when there is one."""
    where = f"{case.name}: openaudit {' '.join(map(repr, argv))}"
    assert not outcome.timed_out, f"{where} was still running after {WALL_SECONDS:g} s (wall clock) and was killed"
    assert outcome.returncode != -signal.SIGXCPU, f"{where} used more than {CPU_SECONDS} s of CPU and was killed"
    assert outcome.cpu_seconds <= CPU_SECONDS, f"{where} used {outcome.cpu_seconds:.1f} s of CPU"
    assert b"Traceback" not in outcome.stderr, (
        f"{where} printed a traceback:\n{outcome.stderr.decode(errors='replace')}")
    assert outcome.returncode in (0, 2), (
        f"{where} exited {outcome.returncode}; stderr:\n{outcome.stderr.decode(errors='replace')[-2000:]}")
    assert outcome.returncode == case.exit_code, (
        f"{where} exited {outcome.returncode}, expected {case.exit_code}; stderr: "
        f"{outcome.stderr.decode(errors='replace')[-500:]}")
    assert outcome.max_rss_bytes <= MAX_RSS_BYTES, f"{where} used {outcome.max_rss_bytes / 2**20:.0f} MiB"
    assert ESC not in outcome.stdout and ESC not in outcome.stderr, f"{where} wrote a raw ESC byte"
    for path in case.must_not_exist:
        assert not path.exists(), f"{where}: {path} was created"
    if case.exit_code != 0:
        assert outcome.stderr.startswith(b"openaudit: "), f"{where} gave no clear error: {outcome.stderr!r}"
        assert outcome.stdout == b""
        return None
    return outcome.stdout


@pytest.mark.parametrize("name", _params())
def test_case(name: str, corpus: Corpus, batch: BatchRun) -> None:
    case = corpus.cases[name]
    stdout = _check_outcome(case, batch.outcomes[name], _argv(case))
    if stdout is None:
        return
    report = json.loads(stdout.decode("utf-8"))
    assert validation_errors(report) == []
    ids = _finding_ids(report)
    missing = [finding_id for finding_id in case.expected_ids if finding_id not in ids]
    assert not missing, f"{name}: expected findings {missing} not reported; got {sorted(ids)}"
    present = sorted(ids & set(case.forbidden_ids))
    assert not present, f"{name}: findings {present} misdescribe this input"
    messages = [item["message"] for item in report["findings"]]
    unnamed = [imported for imported in case.unsafe_globals if not any(imported in message for message in messages)]
    assert not unnamed, f"{name}: unsafe globals {unnamed} are not named in any finding"


# A sample through the real entry point (``python -m openaudit``), table format, hashing on.
SAMPLE_EVERY = 60
MAX_HASHED_BYTES = 256 * 1024**2


def _sample() -> list:
    """Every file-name case (their names must not reach the terminal raw) and every SAMPLE_EVERY-th case;
    known failures are left to test_case, which runs them all."""
    return [recipe for index, recipe in enumerate(recipes())
            if not recipe.known_failure and (recipe.category == "file-names" or index % SAMPLE_EVERY == 0)]


def _apparent_bytes(path: Path) -> int:
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _limit_resources() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 1))


def _run_cli(argv: list[str]) -> Outcome:
    """``python -m openaudit ARGV`` under the same limits, with its own CPU time and peak RSS."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "openaudit", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=_limit_resources, env=_clean_env())
    streams: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda key=key, pipe=pipe: streams.__setitem__(key, pipe.read()))
               for key, pipe in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    exited = threading.Event()
    killed = threading.Event()

    def watchdog() -> None:
        if not exited.wait(WALL_SECONDS):
            killed.set()
            os.kill(process.pid, signal.SIGKILL)  # not reaped yet (WNOWAIT below), so the pid is still ours

    guard = threading.Thread(target=watchdog)
    guard.start()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    exited.set()
    guard.join()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    return Outcome(process.returncode, killed.is_set(), time.monotonic() - start, usage.ru_utime + usage.ru_stime,
                   usage.ru_maxrss * 1024, streams.get("out", b""), streams.get("err", b""))


@pytest.fixture(scope="session")
def sample_runs(corpus: Corpus) -> dict[str, tuple[list[str], Outcome]]:
    def run(name: str) -> tuple[str, tuple[list[str], Outcome]]:
        case = corpus.cases[name]
        argv = _argv(case, json_format=False, hash_files=_apparent_bytes(case.source) <= MAX_HASHED_BYTES)
        return name, (argv, _run_cli(argv))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, [recipe.name for recipe in _sample()]))


@pytest.mark.parametrize("name", [recipe.name for recipe in _sample()])
def test_sample_through_entry_point_table_format(name: str, corpus: Corpus, sample_runs: dict) -> None:
    case = corpus.cases[name]
    argv, outcome = sample_runs[name]
    stdout = _check_outcome(case, outcome, argv)
    if stdout is not None:
        table = stdout.decode("utf-8")
        assert table.startswith("Source "), f"{name}: no table on stdout"
        raw = sorted({f"U+{ord(char):04X}" for char in TERMINAL_CONTROLS.findall(table)})
        assert not raw, f"{name}: the table holds raw control or bidi characters {raw}"


def test_corpus_size_categories_and_time(corpus: Corpus, batch: BatchRun) -> None:
    counts = Counter(case.category for case in corpus.cases.values())
    assert len(corpus.cases) >= MIN_CASES
    assert all(counts[category] >= 5 for category in REQUIRED_CATEGORIES), counts
    assert list(canary_folder(corpus.root).iterdir()) == []  # no payload created anything
    slowest = max(batch.outcomes.items(), key=lambda item: item[1].seconds)
    busiest = max(batch.outcomes.items(), key=lambda item: item[1].cpu_seconds)
    biggest = max(batch.outcomes.items(), key=lambda item: item[1].max_rss_bytes)
    summary = [f"\nhostile corpus: {len(corpus.cases)} cases built in {corpus.build_seconds:.1f} s, "
               f"audited in {batch.seconds:.1f} s",
               f"slowest (wall) {slowest[0]} {slowest[1].seconds:.2f} s; most CPU {busiest[0]} "
               f"{busiest[1].cpu_seconds:.2f} s; largest RSS {biggest[0]} {biggest[1].max_rss_bytes / 2**20:.0f} MiB"]
    summary += [f"  {category:16} {count}" for category, count in sorted(counts.items())]
    print("\n".join(summary))


def test_expected_ids_are_in_the_catalogue() -> None:
    known = set(catalogue())
    unknown = sorted({(recipe.name, finding_id) for recipe in recipes()
                      for finding_id in recipe.expected_ids + recipe.forbidden_ids if finding_id not in known})
    assert unknown == []


def test_corpus_is_deterministic(tmp_path: Path) -> None:
    """Two builds write the same trees: bytes, link targets, special files (every 10th case; payloads
    that name their canary hold their build's own path and are left out)."""
    sample = [recipe for index, recipe in enumerate(recipes()) if index % 10 == 0 and not recipe.canary]
    for recipe in sample:
        build_case(tmp_path / "one", recipe)
        build_case(tmp_path / "two", recipe)
    first = {recipe.name: _tree(case_folder(tmp_path / "one", recipe.name)) for recipe in sample}
    second = {recipe.name: _tree(case_folder(tmp_path / "two", recipe.name)) for recipe in sample}
    assert len(sample) >= 40
    assert first == second


def _tree(folder: Path) -> dict[str, object]:
    """What a case folder holds, without following links or opening special files."""
    tree: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            tree[str(path.relative_to(folder))] = ("link", os.readlink(path))
        elif stat.S_ISREG(mode):
            tree[str(path.relative_to(folder))] = ("file", path.stat().st_size, path.read_bytes()[:1 << 20])
        else:
            tree[str(path.relative_to(folder))] = ("other", stat.S_IFMT(mode))
    return tree
