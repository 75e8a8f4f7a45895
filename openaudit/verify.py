"""Claims against evidence: each claim is verified, contradicted or unverifiable, with a one-line reason.

Parameter-count rules (also in README.md):

- A size label ("7B", "314B", "270M") is verified when it equals the total parameter count, or the count
  without embeddings, rounded to the label's precision (the unit of its last digit). When the label states
  three or more significant digits, truncation is accepted too: such a label is precise to 1% either way
  (xAI's "314B" is Grok-1's 314.88B non-embedding count truncated).
- An "NxMB" label is verified when the model has N experts and the model with one expert per layer
  (the total less N−1 experts' weights) is M billion by the same rounding (Mixtral-8x7B: 46.7B in all,
  7.24B along one expert path).
- Otherwise the verdict is contradicted and the reason says by how much the label is off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from openaudit.evidence import Evidence, Observation
from openaudit.inspect import claims as c
from openaudit.inspect.claims import Claim, SizeLabel, parse_size_label

VERIFIED = "verified"
CONTRADICTED = "contradicted"
UNVERIFIABLE = "unverifiable"


@dataclass(frozen=True)
class Verdict:
    subject: str
    claimed: Any
    observed: Any
    status: str
    source: str
    reason: str
    text: str = ""


@dataclass(frozen=True)
class Counts:
    """Parameter counts measured from the weights (None where the audit could not establish them)."""

    total: int | None
    non_embedding: int | None = None
    one_expert_path: int | None = None
    experts: int | None = None


def verify_claims(
    claims: Sequence[Claim],
    evidence: Evidence,
    counts: Counts,
    *,
    licenses_detected: Sequence[tuple[str, str]] = (),
    total_sizes: Mapping[str, int | None] = {},
) -> tuple[Verdict, ...]:
    """One verdict per claim, in the order the claims were found.

    ``licenses_detected`` holds (license key, file) for every license text found in the release;
    ``total_sizes`` maps each shard index to the data bytes its shards were seen to hold (None if unread).
    """
    return tuple(_verdict(claim, evidence, counts, licenses_detected, total_sizes) for claim in claims)


def _total_size_verdict(claim: Claim, observed: int | None) -> Verdict:
    if observed is None:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "not every shard could be read", claim.text)
    if observed == claim.claimed:
        return Verdict(claim.subject, claim.claimed, observed, VERIFIED, claim.source, "equals the tensor data bytes of the shards", claim.text)
    return Verdict(claim.subject, claim.claimed, observed, CONTRADICTED, claim.source,
                   f"the shards hold {observed:,} bytes of tensor data", claim.text)


def _exact_count_verdict(claim: Claim, counts: Counts) -> Verdict:
    if counts.total is None:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "the weights could not be counted", claim.text)
    if counts.total == claim.claimed:
        return Verdict(claim.subject, claim.claimed, counts.total, VERIFIED, claim.source, "equals the weights' parameter count", claim.text)
    return Verdict(claim.subject, claim.claimed, counts.total, CONTRADICTED, claim.source,
                   f"the weights hold {counts.total:,} parameters", claim.text)


def _verdict(claim: Claim, evidence: Evidence, counts: Counts, licenses: Sequence[tuple[str, str]],
             total_sizes: Mapping[str, int | None]) -> Verdict:
    subject = claim.subject
    if subject == c.PARAMETERS and isinstance(claim.claimed, int):
        return _exact_count_verdict(claim, counts)
    if subject in (c.PARAMETERS, c.SIZE_LABEL):
        return _size_verdict(claim, counts)
    if subject in c.SPEC_SUBJECTS:
        return _spec_verdict(claim, evidence.observations.get(subject))
    if subject == c.ARCHITECTURE:
        return _architecture_verdict(claim, evidence)
    if subject == c.LICENSE:
        return _license_verdict(claim, licenses)
    if subject == c.TIED_EMBEDDINGS:
        return _tied_verdict(claim, evidence)
    if subject == c.TOTAL_SIZE:
        return _total_size_verdict(claim, total_sizes.get(claim.source.split("#")[0]))
    if subject == c.PIPELINE_TAG:
        return _pipeline_verdict(claim, evidence)
    reasons = {
        c.BASE_MODEL: "weights do not show what model they were fine-tuned from",
        c.DATASETS: "training data is not observable in the weights; see the openness section for what the release contains",
        c.EVALUATION_RESULTS: "results are reported by the release, not reproduced by openaudit",
        "license_link": "a link is recorded, not followed",
    }
    return Verdict(subject, claim.claimed, None, UNVERIFIABLE, claim.source, reasons.get(subject, "no evidence for this subject"), claim.text)


# -- parameter counts --------------------------------------------------------------------------------------

def _billions(count: int) -> str:
    for unit, letter in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= unit:
            return f"{count / unit:.2f}{letter}"
    return str(count)


def label_matches(label: SizeLabel, count: int, value: float | None = None) -> str | None:
    """How ``count`` yields the label ("rounded" or "truncated"), or None."""
    target = label.value if value is None else value
    step = label.unit / (10 ** label.decimals)
    if round(count / step) * step == round(target / step) * step:
        return "rounded"
    if label.digits >= 3 and math.floor(count / step) * step == round(target / step) * step:
        return "truncated"
    return None


def _size_verdict(claim: Claim, counts: Counts) -> Verdict:
    label = parse_size_label(str(claim.claimed))
    if label is None:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "not a size label openaudit can read", claim.text)
    if counts.total is None:
        return Verdict(claim.subject, label.canonical, None, UNVERIFIABLE, claim.source, "the release's weights could not be counted", claim.text)
    total = counts.total
    observed = {"total": total}
    if counts.non_embedding is not None:
        observed["non_embedding"] = counts.non_embedding
    if label.experts:
        observed["experts"] = counts.experts
        observed["one_expert_path"] = counts.one_expert_path
        if counts.experts is None or counts.one_expert_path is None:
            return Verdict(claim.subject, label.canonical, observed, UNVERIFIABLE, claim.source,
                           "the number of experts could not be established from the weights", claim.text)
        if counts.experts != label.experts:
            return Verdict(claim.subject, label.canonical, observed, CONTRADICTED, claim.source,
                           f"the label says {label.experts} experts; the weights have {counts.experts}", claim.text)
        per_expert_value = label.value  # "8x7B": 7B along one expert path
        how = label_matches(label, counts.one_expert_path, per_expert_value)
        if how:
            return Verdict(claim.subject, label.canonical, observed, VERIFIED, claim.source,
                           f"{counts.experts} experts; one expert path is {counts.one_expert_path:,} ({_billions(counts.one_expert_path)}, {how}); "
                           f"{total:,} ({_billions(total)}) in all", claim.text)
        return Verdict(claim.subject, label.canonical, observed, CONTRADICTED, claim.source,
                       f"one expert path is {_billions(counts.one_expert_path)}, not about {_billions(int(per_expert_value))}", claim.text)
    for name, count in (("total", total), ("non-embedding", counts.non_embedding)):
        if count is None:
            continue
        how = label_matches(label, count)
        if how:
            other = "" if name == "total" else f" (total {total:,})"
            return Verdict(claim.subject, label.canonical, observed, VERIFIED, claim.source,
                           f"the {name} count {count:,} ({_billions(count)}) {how} is {label.canonical}{other}", claim.text)
    off = total - label.value
    direction = "undercounts" if off > 0 else "overcounts"
    extra = f"; {_billions(counts.non_embedding)} without embeddings" if counts.non_embedding is not None else ""
    return Verdict(claim.subject, label.canonical, observed, CONTRADICTED, claim.source,
                   f"the label {direction} the {_billions(total)} parameters ({total:,}{extra}) by {_billions(int(abs(off)))} "
                   f"({abs(off) / label.value:.0%})", claim.text)


# -- specifications ----------------------------------------------------------------------------------------

def _spec_verdict(claim: Claim, observation: Observation | None) -> Verdict:
    if observation is None:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source,
                       "neither the weights nor the inference configuration show this", claim.text)
    claimed = claim.claimed
    matches = claimed == observation.value
    if not matches and claim.subject == c.CONTEXT_LENGTH and isinstance(claimed, int) and claimed % 1024 == 0:
        matches = claimed // 1024 * 1000 == observation.value  # "8k" may mean 8,000
    claim_file = claim.source.split("#")[0]
    if not observation.measured and observation.origin == claim_file:
        return Verdict(claim.subject, claimed, observation.value, UNVERIFIABLE, claim.source,
                       "stated only by the configuration itself; the weights cannot show it", claim.text)
    if matches:
        return Verdict(claim.subject, claimed, observation.value, VERIFIED, claim.source, f"matches {observation.source}", claim.text)
    return Verdict(claim.subject, claimed, observation.value, CONTRADICTED, claim.source,
                   f"{observation.source} gives {observation.value:,}" if isinstance(observation.value, int) else f"{observation.source} gives {observation.value}",
                   claim.text)


def _architecture_verdict(claim: Claim, evidence: Evidence) -> Verdict:
    arch = evidence.architecture
    if arch.status == "match":
        return Verdict(claim.subject, claim.claimed, arch.family, VERIFIED, claim.source,
                       f"the weights hold exactly the tensors of a {arch.family} model with this config", claim.text)
    if arch.status == "mismatch":
        first = arch.check.hard_mismatches[0]
        return Verdict(claim.subject, claim.claimed, arch.family, CONTRADICTED, claim.source,
                       f"the weights differ from a {arch.family} model with this config ({len(arch.check.hard_mismatches)} differences; "
                       f"first: {first.kind} {first.tensor})", claim.text)
    return Verdict(claim.subject, claim.claimed, arch.family, UNVERIFIABLE, claim.source, arch.reason, claim.text)


def _tied_verdict(claim: Claim, evidence: Evidence) -> Verdict:
    arch = evidence.architecture
    if arch.status == "match":
        return Verdict(claim.subject, claim.claimed, claim.claimed, VERIFIED, claim.source,
                       "the stored tensors agree with this setting", claim.text)
    return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "the architecture check did not match", claim.text)


def _pipeline_verdict(claim: Claim, evidence: Evidence) -> Verdict:
    family = evidence.architecture.family
    if family is None:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "the architecture is unknown", claim.text)
    encoder = family == "bert"
    fits = {"fill-mask", "feature-extraction", "sentence-similarity", "text-classification", "token-classification",
            "question-answering", "zero-shot-classification", "text-ranking"} if encoder else {
        "text-generation", "text2text-generation", "feature-extraction", "conversational", "image-text-to-text"}
    kind = "an encoder" if encoder else "a decoder-only language model"
    if claim.claimed in fits:
        return Verdict(claim.subject, claim.claimed, family, VERIFIED, claim.source, f"{family} is {kind}, which serves this task", claim.text)
    return Verdict(claim.subject, claim.claimed, family, CONTRADICTED, claim.source, f"{family} is {kind}; it does not serve {claim.claimed}", claim.text)


def _license_verdict(claim: Claim, detected: Sequence[tuple[str, str]]) -> Verdict:
    if not detected:
        return Verdict(claim.subject, claim.claimed, None, UNVERIFIABLE, claim.source, "no license text was found in the release to compare with", claim.text)
    keys = sorted({key for key, _ in detected})
    if claim.claimed in keys:
        where = next(source for key, source in detected if key == claim.claimed)
        return Verdict(claim.subject, claim.claimed, claim.claimed, VERIFIED, claim.source, f"the license text in {where} is {claim.claimed}", claim.text)
    shown = ", ".join(f"{key} ({source})" for key, source in detected)
    return Verdict(claim.subject, claim.claimed, keys[0] if len(keys) == 1 else keys, CONTRADICTED, claim.source,
                   f"the release's license text is {shown}", claim.text)
