"""The report for people: rich tables. Every string from the release is shown as plain text, never as
rich markup, and with control characters escaped, so file and tensor names cannot style or drive the
terminal."""

from __future__ import annotations

import io
import os

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from openaudit.release import printable
from openaudit.report.model import Report

_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}
_CHECKSUM_STYLE = {"verified": "green", "mismatch": "bold red", "unpublished": "dim", "skipped": "dim"}
_CLAIM_MARK = {"verified": ("✓", "green"), "contradicted": ("✗", "bold red"), "unverifiable": ("?", "yellow")}
_LICENSE_WORDS = {
    "consistent": "consistent: what the release declares matches the license texts it carries",
    "conflict": "CONFLICT: the release declares one license and carries another",
    "undeclared": "undeclared: the files carry a license, but the release does not declare one",
    "unknown": "unknown: no license is declared and none was recognised",
}


def _t(value: object, style: str = "") -> Text:
    return Text(printable(str(value)), style=style)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if value < 1000 or unit == "PB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{count} B"


def _run(report: Report):
    run = report.run
    if not run:
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    style = "green" if run.get("status") == "pass" else "bold red"
    grid.add_row("Run", Text(str(run.get("status", "?")).upper(), style=style))
    for reason in run.get("failures") or []:
        grid.add_row("  failed", _t(reason))
    loaded = run.get("loaded") or {}
    grid.add_row("Devices", _t(f"{run.get('devices')} × {run.get('device_kind')} ({run.get('processes', 1)} process(es)), mesh {run.get('mesh')}"))
    if loaded:
        grid.add_row("Loaded", _t(f"{loaded.get('tensors')} tensors, {human_bytes(loaded.get('bytes') or 0)} as {loaded.get('dtype')}, "
                                  f"{loaded.get('mode')}" + (f" under a {human_bytes(loaded['memory_budget'])} budget" if loaded.get("memory_budget") else "")))
    if run.get("perplexity") is not None:
        grid.add_row("Perplexity", _t(f"{run['perplexity']:.2f} on {run.get('tokens')} probe tokens with {run.get('tokenizer')} "
                                      f"(uniform guess: {run.get('uniform_perplexity')}; must be below {run.get('perplexity_threshold')})"))
    if run.get("encoder_check"):
        grid.add_row("Encoder check", _t(json_line(run["encoder_check"])))
    if run.get("reference_max_abs_diff") is not None:
        grid.add_row("Reference", _t(f"max |logits − reference| = {run['reference_max_abs_diff']:.3g} (tolerance {run.get('reference_tolerance')})"))
    grid.add_row("Checks", _t(f"logits finite: {run.get('logits_finite')}; two runs identical: {run.get('deterministic')}"))
    if run.get("peak_bytes"):
        grid.add_row("Peak memory", _t(human_bytes(run["peak_bytes"]) + (f" (device {human_bytes(run['peak_device_bytes'])})" if run.get("peak_device_bytes") else "")))
    grid.add_row("Time", _t(f"{run.get('seconds')} s"))
    yield Text("Run (JAX)", style="bold underline")
    yield grid


def json_line(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return str(value)


_COMPONENT_STYLE = {"open": "green", "restricted": "yellow", "closed": "red", "absent": "dim"}


def _openness(report: Report):
    openness = report.openness
    if not openness:
        return
    mof = openness["mof"]
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column(overflow="fold")
    lines.add_row("MOF", _t(mof["sentence"]))
    if mof.get("claimed_class") is not None:
        claimed = f"Class {mof['claimed_class']}" if mof["claimed_class"] else "Unclassified"
        unsupported = ", ".join(item["name"] for item in mof.get("unsupported_claims", [])) or "none"
        lines.add_row("MOF claimed", _t(f"{claimed} as written in {mof.get('claims_file')}; unsupported claims: {unsupported}"))
    lines.add_row("OSAID", _t(openness["osaid"]["sentence"]))
    lines.add_row("OSAI index", _t(openness["osai_index"]["sentence"]))
    lines.add_row("Score", _t(openness["score"]["sentence"]))
    yield Text("Openness", style="bold underline")
    yield lines
    table = Table(title="Openness components (Model Openness Framework)", box=box.SIMPLE_HEAVY, title_justify="left")
    table.add_column("Component")
    table.add_column("Status")
    table.add_column("License")
    table.add_column("Claimed")
    table.add_column("Evidence", overflow="fold")
    for component in openness["components"]:
        claimed = {True: "yes", False: "no", None: "—"}[component.get("claimed")]
        table.add_row(_t(component["name"]), _t(component["status"], _COMPONENT_STYLE.get(component["status"], "")),
                      _t(component.get("license") or "—"), _t(claimed), _t(component.get("sentence", "")))
    yield table


def _value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return str(value)


def render(report: Report, width: int | None = None) -> str:
    buffer = io.StringIO()
    color = os.environ.get("NO_COLOR") is None and os.environ.get("FORCE_COLOR") is not None
    console = Console(file=buffer, width=width or 120, force_terminal=color, color_system="standard" if color else None)
    console.print(Group(*_sections(report)))
    return buffer.getvalue()


def _sections(report: Report):
    weights = report.weights
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("Source", _t(f"{report.source.path} ({report.source.kind})"))
    if report.source.repo_id:
        summary.add_row("Repository", _t(f"{report.source.repo_id} @ {report.source.revision}"))
    kinds = ", ".join(f"{count} {kind}" for kind, count in report.release.by_kind.items())
    summary.add_row("Files", _t(f"{len(report.release.files)} ({human_bytes(report.release.total_bytes)}): {kinds}"))
    summary.add_row("Weights", _t(f"{weights.format}, {len(weights.files)} file(s), {weights.tensors:,} tensors"))
    summary.add_row("Parameters", _t(f"{weights.parameters.total:,}"))
    if weights.parameters.by_dtype:
        summary.add_row("  by dtype", _t(", ".join(f"{d} {n:,}" for d, n in weights.parameters.by_dtype.items())))
    buffered = sum(b.elements for b in weights.buffers)
    stored = f"{weights.elements:,} ({len(weights.buffers)} buffers, {buffered:,} elements"
    if weights.tied_copies:
        tied = sum(t.elements for t in weights.tied_copies)
        stored += f"; {len(weights.tied_copies)} tied copies, {tied:,} elements"
    summary.add_row("Stored elements", _t(stored + ")"))
    for index in weights.indexes:
        claimed = "absent" if index.total_size is None else f"{index.total_size:,}"
        summary.add_row("Shard index", _t(f"{index.path}: {index.shards} shards, total_size {claimed}"))
    arch = report.architecture
    if arch is not None:
        style = {"match": "green", "mismatch": "bold red"}.get(arch.status, "yellow")
        family = arch.family or "unknown family"
        text = Text(f"{family}: ", style="")
        text.append(arch.status, style=style)
        if arch.status == "match" and arch.expected_parameters is not None:
            text.append(f" ({arch.expected_parameters:,} parameters expected from {printable(arch.config_source or '')})")
        elif arch.status == "mismatch":
            hard = [m for m in arch.mismatches if m.kind not in ("tied-duplicate", "extra-buffer")]
            text.append(f" ({len(hard)} differences)")
        else:
            text.append(f" ({printable(arch.reason)})")
        summary.add_row("Architecture", text)
    lic = report.license
    if lic is not None:
        style = {"consistent": "green", "conflict": "bold red"}.get(lic.status, "yellow")
        words = _LICENSE_WORDS.get(lic.status, lic.status)
        shown = lic.detected or ", ".join(lic.declared) or "none"
        osi = {True: "OSI-approved", False: "not OSI-approved", None: "OSI status unknown"}[lic.osi_approved]
        summary.add_row("License", Text(f"{printable(shown)} ({osi}) — ").append(words, style=style))
    yield summary

    if arch is not None and arch.status == "mismatch":
        table = Table(title="Architecture differences", box=box.SIMPLE_HEAVY, title_justify="left")
        for column in ("Kind", "Tensor", "Expected", "Observed"):
            table.add_column(column)
        for item in arch.mismatches[:40]:
            table.add_row(_t(item.kind), _t(item.tensor), _t(item.expected or ""), _t(item.observed or ""))
        yield table

    if report.claims:
        table = Table(title=f"Claims ({len(report.claims)})", box=box.SIMPLE_HEAVY, title_justify="left")
        table.add_column("")
        table.add_column("Subject")
        table.add_column("Claimed")
        table.add_column("Observed")
        table.add_column("Source")
        table.add_column("Why", overflow="fold")
        for claim in report.claims:
            mark, style = _CLAIM_MARK.get(claim.status, ("·", ""))
            table.add_row(Text(mark, style=style), _t(claim.subject), _t(_value(claim.claimed)),
                          _t(_value(claim.observed)), _t(claim.source), _t(claim.reason))
        yield table

    if weights.files:
        table = Table(title="Weights files", box=box.SIMPLE_HEAVY, title_justify="left")
        for column in ("File", "Format", "Size", "Tensors", "Parameters", "Checksum"):
            table.add_column(column, justify="right" if column in ("Size", "Tensors", "Parameters") else "left")
        shown = weights.files if len(weights.files) <= 40 else weights.files[:40]
        for entry in shown:
            table.add_row(
                _t(entry.path), _t(entry.container), _t(human_bytes(entry.bytes)), _t(f"{entry.tensors:,}"),
                _t(f"{entry.parameters:,}"), _t(entry.checksum, _CHECKSUM_STYLE.get(entry.checksum, "")),
            )
        if len(weights.files) > len(shown):
            table.caption = f"… and {len(weights.files) - len(shown)} more files (see --format json)"
        yield table

    yield from _run(report)
    yield from _openness(report)

    if report.findings:
        table = Table(title=f"Findings ({len(report.findings)})", box=box.SIMPLE_HEAVY, title_justify="left")
        table.add_column("Severity")
        table.add_column("Finding")
        table.add_column("Where")
        table.add_column("What", overflow="fold")
        for item in report.findings:
            severity = item.severity.value
            table.add_row(_t(severity, _SEVERITY_STYLE[severity]), _t(item.id), _t(item.location or ""), _t(item.message))
        yield table
    else:
        yield Text("No findings.", style="green")
