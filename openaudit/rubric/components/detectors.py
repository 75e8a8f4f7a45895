"""The detectors: what each type of rule in ``checks/components.yaml`` finds in a release.

One method per rule type: ``paths`` (files by name, kind, magic bytes and content), ``card_metadata``,
``card_heading``, ``card_text`` and ``card_topics`` (the model card), ``weights`` and ``series`` (the
weights inspection: a readable checkpoint, a series of training checkpoints) and ``architecture`` (the
architecture check). Each returns evidence items: found, linked (a claim) or insufficient.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any, Mapping

from openaudit.findings import Severity
from openaudit.release import WEIGHTS, Release, ReleaseFile
from openaudit.rubric.components.card_view import CardView
from openaudit.rubric.components.reader import MAX_LINE_CHARS, BoundedReader
from openaudit.rubric.components.results import FOUND, INSUFFICIENT, LINKED, EvidenceItem
from openaudit.rubric.components.rules import DetectionRubric, DetectionRule


class Detector:
    """The detectors over one release: ``run(rule)`` gives the evidence items of one rule."""

    def __init__(self, release: Release, card, weights, architecture, rubric: DetectionRubric):
        self.release = release
        self.card = card
        self.weights = weights
        self.architecture = architecture
        self.rubric = rubric
        self.reader = BoundedReader(rubric.limits)
        self.card_view = CardView(card.path, card.text, card.metadata) if card is not None else None
        self.max_links = int(rubric.limits["max_links"])
        self.series = self._series_groups()
        self.best_card_topics: tuple[str, ...] = ()

    # ---- files
    def _candidates(self, rule: DetectionRule) -> list[ReleaseFile]:
        chosen = []
        for entry in self.release.files:
            if rule.kinds is not None and entry.kind not in rule.kinds:
                continue
            if not rule.paths.search(entry.path):
                continue
            if rule.exclude is not None and rule.exclude.search(entry.path):
                continue
            chosen.append(entry)
        return chosen

    def rule_paths(self, rule: DetectionRule) -> list[EvidenceItem]:
        items = []
        for entry in self._candidates(rule):
            if rule.magic is not None:
                head = self.reader.head(entry, len(rule.magic))
                if head != rule.magic:
                    continue
            if not rule.content:
                items.append(EvidenceItem(FOUND, rule.note, rule.key, entry.path))
                continue
            text = self.reader.text(entry)
            if text is None:
                continue
            matched = self.reader.scan_lines(text, rule.content)
            if len(matched) < rule.min_distinct:
                continue
            first_line = min(line for line, _ in matched.values())
            shown = ", ".join(value for _, value in sorted(matched.values()))
            items.append(EvidenceItem(FOUND, f"{rule.note}: {shown}", rule.key, entry.path, first_line))
        return items

    # ---- card
    def rule_card_metadata(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        key = rule.spec["key"]
        value = view.metadata.get(key)
        line = view.metadata_line(key)
        shape = rule.spec.get("shape", "present")
        kind = LINKED if rule.linked else FOUND
        if shape == "model-index-results":
            results, metrics = _model_index_counts(value)
            if metrics == 0:
                return []
            return [EvidenceItem(kind, f"{rule.note}: {metrics} metric(s) in {results} result(s)", rule.key, view.path, line)]
        if shape == "id-list":
            ids = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
            template = rule.spec.get("url")
            items = []
            for identifier in ids[: self.max_links]:
                identifier = identifier.strip()[:200]
                if not identifier:
                    continue
                url = template.replace("{id}", identifier) if template else None
                note = f"{rule.note} ({identifier})" + (", linked, not in the release" if rule.linked else "")
                items.append(EvidenceItem(kind, note, rule.key, view.path, line, url))
            return items
        if value in (None, "", [], {}):
            return []
        return [EvidenceItem(kind, rule.note, rule.key, view.path, line)]

    def rule_card_heading(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        heading_pattern = rule.regexes[0]
        requires = rule.regexes[1] if len(rule.regexes) > 1 else None
        min_chars = int(rule.spec.get("min_chars", 0))
        items = []
        for heading in view.headings:
            if not heading_pattern.search(heading.text):
                continue
            body = view.section(heading)
            if requires is not None and not any(requires.search(line) for line in body):
                continue
            if sum(len(line.strip()) for line in body) < min_chars:
                continue
            kind = LINKED if rule.linked else FOUND
            items.append(EvidenceItem(kind, f"{rule.note} (\"{heading.text[:80]}\")", rule.key, view.path, heading.index + 1))
        return items

    def rule_card_text(self, rule: DetectionRule) -> list[EvidenceItem]:
        view = self.card_view
        if view is None:
            return []
        template = rule.spec.get("url")
        seen: set[str] = set()
        items = []
        for index, line in enumerate(view.lines):
            line = line[:MAX_LINE_CHARS * 2]
            for pattern in rule.regexes:
                for match in pattern.finditer(line):
                    value = (match.group(1) if pattern.groups else match.group(0)).rstrip(".,;:")
                    url = template.replace("{1}", value) if template else (value if value.startswith("http") else None)
                    dedupe = (url or value).lower()
                    if dedupe in seen:
                        continue
                    seen.add(dedupe)
                    if len(items) >= self.max_links:
                        return items
                    kind = LINKED if rule.linked else FOUND
                    note = f"{rule.note} ({value})" + (", linked, not in the release" if rule.linked else "")
                    items.append(EvidenceItem(kind, note, rule.key, view.path, index + 1, url))
        return items

    def rule_card_topics(self, rule: DetectionRule) -> list[EvidenceItem]:
        candidates: list[CardView] = [self.card_view] if self.card_view is not None else []
        if rule.paths is not None:
            from openaudit.inspect.card import parse_card

            for entry in self.release.files:
                if entry.kind == WEIGHTS or not rule.paths.search(entry.path):
                    continue
                if self.card_view is not None and entry.path == self.card_view.path:
                    continue
                text = self.reader.text(entry)
                if text is not None:
                    parsed = parse_card(text, entry.path)
                    candidates.append(CardView(entry.path, text, parsed.metadata))
        best: tuple[int, CardView, list[str]] | None = None
        for view in candidates:
            covered = _topics_covered(view, rule)
            if best is None or len(covered) > best[0]:
                best = (len(covered), view, covered)
        if best is None:
            return []
        count, view, covered = best
        self.best_card_topics = tuple(covered)
        total = len(rule.topics)
        shown = ", ".join(covered) if covered else "none"
        if count >= int(rule.spec["min"]):
            return [EvidenceItem(FOUND, f"{rule.note} covering {count} of {total} topics ({shown})", rule.key, view.path)]
        return [EvidenceItem(INSUFFICIENT, f"{view.path} covers only {count} of the {total} model-card topics ({shown})",
                             rule.key, view.path)]

    # ---- weights
    def _series_groups(self) -> dict[tuple[str, str], dict[int, list[str]]]:
        """Weights files grouped by checkpoint series (folder or file stem numbered by a series rule)."""
        pattern = next((r.regexes[0] for c in self.rubric.components for r in c.rules if r.type == "series"), None)
        groups: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        if pattern is None or self.weights is None:
            return {}
        for scan in self.weights.scans:
            parts = scan.path.split("/")
            segments = parts[:-1] + [PurePosixPath(parts[-1]).stem]
            for index, segment in enumerate(segments):
                match = pattern.match(segment[:200])
                if match is None:
                    continue
                prefix = "/".join(parts[:index])
                groups[(prefix, segment[: match.start(1)].lower())][int(match.group(1)[:18])].append(scan.path)
                break
        return {key: dict(steps) for key, steps in groups.items()}

    def _series_folder(self, key: tuple[str, str], step: int) -> str:
        paths = self.series[key][step]
        prefix = key[0]
        first = paths[0][len(prefix) + 1:] if prefix else paths[0]
        top = first.split("/")[0]
        return f"{prefix}/{top}" if prefix else top

    def rule_series(self, rule: DetectionRule) -> list[EvidenceItem]:
        min_distinct = int(rule.spec["min_distinct"])
        incomplete = {scan.path for scan in self.weights.scans if not scan.complete} if self.weights else set()
        items = []
        for key, steps in sorted(self.series.items()):
            readable = {step: paths for step, paths in steps.items() if not (set(paths) & incomplete)}
            if len(readable) >= min_distinct:
                for step in sorted(readable):
                    files = len(readable[step])
                    items.append(EvidenceItem(FOUND, f"{rule.note}: step {step} ({files} weights file{'s' if files != 1 else ''})",
                                              rule.key, self._series_folder(key, step)))
            else:
                only = ", ".join(self._series_folder(key, step) for step in sorted(steps))
                items.append(EvidenceItem(INSUFFICIENT, f"{only}: {len(readable)} readable checkpoint(s), not a series of "
                                                        f"{min_distinct} or more", rule.key, only.split(", ")[0]))
        return items

    def _series_paths(self, min_distinct: int) -> tuple[set[str], list[str]]:
        """(every weights path in a real series, the paths of the latest checkpoint of the longest series)."""
        in_series: set[str] = set()
        latest: list[str] = []
        longest = 0
        for steps in self.series.values():
            if len(steps) < min_distinct:
                continue
            for paths in steps.values():
                in_series.update(paths)
            if len(steps) > longest:
                longest, latest = len(steps), steps[max(steps)]
        return in_series, latest

    def rule_weights(self, rule: DetectionRule) -> list[EvidenceItem]:
        from openaudit.inspect.tensors import PARAMETER

        weights = self.weights
        if weights is None or not weights.scans:
            return []
        spec = rule.spec
        series_rule = next((r for c in self.rubric.components for r in c.rules if r.type == "series"), None)
        in_series, latest = (self._series_paths(int(series_rule.spec["min_distinct"])) if series_rule and spec.get("exclude_series")
                             else (set(), []))
        chosen = [s for s in weights.primary_scans if s.path not in in_series]
        if not chosen:
            chosen = [s for s in weights.scans if s.path not in in_series]
        if not chosen:
            chosen = [s for s in weights.scans if s.path in set(latest)]
        if not chosen:
            chosen = list(weights.primary_scans)
        chosen_paths = {s.path for s in chosen}
        reject = spec.get("reject_severity")
        reject_rank = Severity(reject).rank if reject else None
        problems: list[EvidenceItem] = []
        if spec.get("require_complete", True):
            for scan in chosen:
                if not scan.complete:
                    problems.append(EvidenceItem(INSUFFICIENT, f"{scan.path} could not be read completely", rule.key, scan.path))
        if reject_rank is not None:
            flagged: dict[str, str] = {}
            for item in weights.findings:
                if item.location in chosen_paths and item.severity.rank >= reject_rank and item.location not in flagged:
                    flagged[item.location] = item.id
            for path, finding_id in sorted(flagged.items()):
                problems.append(EvidenceItem(INSUFFICIENT, f"{path}: {finding_id} ({reject} or worse)", rule.key, path))
        primaries = {s.path for s in weights.primary_scans}
        # Stored copies of tied tensors are not parameters of their own (as in the report's weights.parameters).
        tied = self.architecture.tied_copy_keys() if self.architecture is not None else frozenset()

        def counted(tensor) -> bool:
            return tensor.role == PARAMETER and (tensor.file, tensor.name) not in tied

        if chosen_paths <= primaries:
            parameters = sum(t.elements for t in weights.tensors if counted(t) and t.file in chosen_paths)
        else:
            parameters = sum(t.elements for s in chosen for t in s.tensors if counted(t))
        if parameters < int(spec.get("min_parameters", 1)):
            problems.append(EvidenceItem(INSUFFICIENT, f"the weights hold {parameters:,} parameters", rule.key, chosen[0].path))
        if problems:
            return problems[: int(self.rubric.limits["max_evidence"])]
        by_folder: dict[str, list] = defaultdict(list)
        for scan in chosen:
            by_folder[scan.path.rpartition("/")[0]].append(scan)
        items = []
        for folder, scans in sorted(by_folder.items()):
            formats = sorted({s.format for s in scans})
            count = len(scans)
            folder_params = (sum(t.elements for t in weights.tensors if counted(t) and t.file in {s.path for s in scans})
                             if chosen_paths <= primaries else
                             sum(t.elements for s in scans for t in s.tensors if counted(t)))
            where = scans[0].path if count == 1 else (folder or ".")
            how = "read without unpickling" if "pickle" in formats else "headers read"
            items.append(EvidenceItem(FOUND, f"{rule.note}: {count} {'/'.join(formats)} file{'s' if count != 1 else ''}, "
                                             f"{folder_params:,} parameters, {how}", rule.key, where))
        return items

    def rule_architecture(self, rule: DetectionRule) -> list[EvidenceItem]:
        architecture = self.architecture
        if architecture is None or architecture.status not in rule.spec["status"]:
            return []
        source = architecture.config_source or ""
        path = next((f.path for f in self.release.files if source == f.path or source.startswith(f.path + " ")), None)
        if rule.spec.get("config_in_release") and path is None:
            return []
        return [EvidenceItem(FOUND, f"{rule.note} ({architecture.family}, {architecture.status})", rule.key, path)]

    def run(self, rule: DetectionRule) -> list[EvidenceItem]:
        items = getattr(self, f"rule_{rule.type}")(rule)
        if rule.linked:
            items = [replace(item, kind=LINKED) if item.kind == FOUND else item for item in items]
        return items


def _model_index_counts(value: Any) -> tuple[int, int]:
    """(results, metrics) of a model-index block; (0, 0) unless it has the Hub's shape."""
    results = metrics = 0
    if not isinstance(value, list):
        return 0, 0
    for model in value[:100]:
        if not isinstance(model, Mapping) or not isinstance(model.get("results"), list):
            continue
        for result in model["results"][:1000]:
            if isinstance(result, Mapping) and isinstance(result.get("metrics"), list):
                found = sum(1 for m in result["metrics"][:1000] if isinstance(m, Mapping) and "value" in m)
                if found:
                    results += 1
                    metrics += found
    return results, metrics


def _topics_covered(view: CardView, rule: DetectionRule) -> list[str]:
    covered = []
    metadata_topics = rule.spec.get("metadata") or {}
    for name, pattern in rule.topics:
        if any(pattern.search(h.text) for h in view.headings):
            covered.append(name)
            continue
        if any(topic == name and view.metadata.get(key) not in (None, "", [], {}) for key, topic in metadata_topics.items()):
            covered.append(name)
    return covered
