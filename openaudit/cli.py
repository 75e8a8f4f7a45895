"""Command line: argument parsing and exit codes only; the work is done in openaudit.audit and friends.

Exit codes: 0 the command completed and no gate failed (findings alone do not fail); 1 a gate the user
asked for failed; 2 bad usage or a source that does not exist; 3 the audit could not complete.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from openaudit import __version__
from openaudit.errors import AuditIncomplete, OpenAuditError, UsageError

EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
SEVERITY_GATES = ("critical", "high", "medium", "low")
NAMED_GATES = ("unsafe-code", "checksum-mismatch", "contradicted", "architecture-mismatch", "license-conflict", "run-fail")
AUDIT_FORMATS = ("table", "json")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 on usage errors; keep that, shorter text
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"openaudit: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="openaudit", description="Audit AI model releases without trusting them.")
    parser.add_argument("--version", action="version", version=f"openaudit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show a traceback when openaudit itself fails")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    audit = commands.add_parser("audit", help="audit a release: inventory, weights, checksums, findings")
    audit.add_argument("source", metavar="SOURCE", help="a release folder, a weights file, or a Hugging Face cache snapshot")
    # argparse checks choices only for values given on the command line, not for a default from the
    # environment: _audit checks that one.
    audit.add_argument("--format", choices=AUDIT_FORMATS, default=os.environ.get("OPENAUDIT_FORMAT", "table"))
    audit.add_argument("-o", "--output", metavar="FILE", help="write the report here instead of stdout")
    audit.add_argument("--no-hash", action="store_true", help="do not compute sha256 of the weights files")
    audit.add_argument("--claims", metavar="FILE.yml", help="a Model Openness Tool YAML file with the release's openness claims")
    run = audit.add_argument_group("running the weights (imports jax)")
    run.add_argument("--run", action="store_true", help="load the weights with JAX onto every device, run the forward pass and probe it")
    run.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="compute dtype (default float32)")
    run.add_argument("--memory-budget", metavar="BYTES", help="stream layer by layer when the weights exceed this (e.g. 2GiB)")
    run.add_argument("--reference", metavar="FILE.npz", help="input_ids (1, T) and logits (1, T, V) to compare with")
    run.add_argument("--coordinator", metavar="HOST:PORT", help="jax.distributed coordinator for a multi-host run")
    run.add_argument("--num-processes", type=int, metavar="N")
    run.add_argument("--process-id", type=int, metavar="I")
    audit.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="GATE",
        choices=SEVERITY_GATES + NAMED_GATES,
        help="exit 1 if the report has a finding of this severity or above (critical, high, medium, low), "
        "an unsafe-code finding, a checksum mismatch, a contradicted claim, an architecture mismatch or a "
        "license conflict; repeatable",
    )
    classify = commands.add_parser(
        "classify", help="MOF class and progress of a Model Openness Tool YAML file, exactly as the tool computes them"
    )
    classify.add_argument("file", metavar="FILE.yml")
    classify.add_argument("--format", choices=("table", "json"), default="table")
    classify.add_argument("-o", "--output", metavar="FILE")

    rubric = commands.add_parser("rubric", help="list every criterion openaudit checks, what it checks and how it scores")
    rubric.add_argument("--format", choices=("table", "json"), default="table")
    rubric.add_argument("-o", "--output", metavar="FILE")

    progress = audit.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show progress on stderr")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "audit":
            return _audit(args)
        if args.command == "classify":
            return _classify(args)
        if args.command == "rubric":
            return _rubric(args)
    except UsageError as exc:
        print(f"openaudit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (AuditIncomplete, OpenAuditError) as exc:
        print(f"openaudit: the audit could not complete: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print("openaudit: interrupted", file=sys.stderr)
        return EXIT_INCOMPLETE
    except Exception as exc:  # never a traceback for users; --debug shows it
        if args.debug:
            raise
        print(f"openaudit: internal error ({type(exc).__name__}: {exc}); rerun with --debug for details", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_USAGE


def _audit(args: argparse.Namespace) -> int:
    from openaudit.audit import AuditOptions, audit
    from openaudit.report.formats import FORMAT_BY_NAME

    if args.format not in AUDIT_FORMATS:
        raise UsageError(f"OPENAUDIT_FORMAT={args.format!r} is not a report format; use one of {', '.join(AUDIT_FORMATS)}")
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    report = audit(
        args.source,
        AuditOptions(hash_weights=not args.no_hash, show_progress=show_progress, claims_file=args.claims,
                     run=_run_options(args)),
    )
    if args.process_id not in (None, 0):
        return EXIT_OK  # in a multi-host run, process 0 writes the report
    _write(FORMAT_BY_NAME[args.format](report), args.output)
    failed = _failed_gates(report, args.fail_on)
    for gate in failed:
        print(f"openaudit: gate failed: {gate}", file=sys.stderr)
    return EXIT_GATE if failed else EXIT_OK


def _run_options(args: argparse.Namespace):
    run_flags = (args.memory_budget, args.reference, args.coordinator, args.num_processes, args.process_id)
    if not args.run:
        if any(flag is not None for flag in run_flags) or args.dtype != "float32":
            raise UsageError("--dtype, --memory-budget, --reference and the multi-host flags need --run")
        return None
    _check_multi_host(args.coordinator, args.num_processes, args.process_id)
    from openaudit.run.runner import RunOptions, parse_bytes

    try:
        budget = parse_bytes(args.memory_budget) if args.memory_budget else None
    except ValueError as exc:
        raise UsageError(f"--memory-budget: {exc}") from None
    return RunOptions(dtype=args.dtype, memory_budget=budget, reference=args.reference, coordinator=args.coordinator,
                      num_processes=args.num_processes, process_id=args.process_id)


def _check_multi_host(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """The three multi-host flags go together (one process alone may say 1 and 0); anything else is bad usage."""
    if coordinator is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise UsageError("--num-processes and --process-id need --coordinator HOST:PORT")
        return
    if num_processes is None or process_id is None:
        raise UsageError("--coordinator needs --num-processes and --process-id")
    if num_processes < 1:
        raise UsageError(f"--num-processes must be at least 1, not {num_processes}")
    if not 0 <= process_id < num_processes:
        raise UsageError(f"--process-id {process_id} is not in 0..{num_processes - 1}")
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--coordinator must be HOST:PORT, not {coordinator!r}")


def _classify(args: argparse.Namespace) -> int:
    import json

    from openaudit.errors import MalformedInput
    from openaudit.rubric.mof import classify_mot_file

    try:
        result = classify_mot_file(args.file)
    except MalformedInput as exc:
        if exc.finding_id in ("unreadable-file", "special-file"):
            raise UsageError(f"cannot read {args.file}: {exc}") from None
        message = str(exc)  # most messages already name the file
        raise UsageError(message if args.file in message else f"{args.file}: {message}") from None
    if args.format == "json":
        _write(json.dumps(result.to_dict(), indent=2) + "\n", args.output)
    else:
        from openaudit.report.mof_table import render_classification

        _write(render_classification(result), args.output)
    return EXIT_OK


def _rubric(args: argparse.Namespace) -> int:
    import json

    from openaudit.rubric.openness import describe_rubrics

    rows = describe_rubrics()
    if args.format == "json":
        _write(json.dumps(rows, indent=2) + "\n", args.output)
    else:
        from openaudit.report.rubric_table import render_rubrics

        _write(render_rubrics(rows), args.output)
    return EXIT_OK


def _failed_gates(report, gates: Sequence[str]) -> list[str]:
    failed = []
    for gate in gates:
        if gate in SEVERITY_GATES:
            threshold = len(SEVERITY_GATES) - SEVERITY_GATES.index(gate)
            hits = [f for f in report.findings if f.severity.rank >= threshold]
            if hits:
                failed.append(f"{len(hits)} finding(s) of severity {gate} or above")
        elif gate == "unsafe-code":
            hits = [f for f in report.findings if f.id == "unsafe-code"]
            if hits:
                failed.append(f"{len(hits)} unsafe-code finding(s)")
        elif gate == "checksum-mismatch":
            hits = [f for f in report.weights.files if f.checksum == "mismatch"]
            if hits:
                failed.append(f"{len(hits)} file(s) do not match their published checksum")
        elif gate == "contradicted":
            hits = [c for c in report.claims if c.status == "contradicted"]
            if hits:
                failed.append(f"{len(hits)} claim(s) contradicted by the release's files")
        elif gate == "architecture-mismatch":
            if report.architecture is not None and report.architecture.status == "mismatch":
                failed.append("the weights do not match the architecture the config describes")
        elif gate == "run-fail":
            if report.run is not None and report.run.get("status") != "pass":
                failed.append("the weights did not pass the run: " + "; ".join(report.run.get("failures", [])))
        elif gate == "license-conflict":
            if report.license is not None and report.license.status == "conflict":
                failed.append(f"license conflict: {report.license.reason}")
    return failed


def _write(text: str, output: str | None) -> None:
    if output in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
