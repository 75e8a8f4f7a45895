"""Which of the Model Openness Framework's 17 components a release contains, under which license, and why.

``assess_components`` (:mod:`.assessment`) applies the detection rules of ``checks/components.yaml``
(:mod:`.rules`) to what the audit already read: :mod:`.detectors` find each component's evidence, reading
files within :mod:`.reader`'s budget and the model card through :mod:`.card_view`; :mod:`.licenses` follows
the license chains; :mod:`.results` holds the statuses and the result, :mod:`.sentences` the words.
This package's face hands on the names the rest of openaudit uses.
"""

from openaudit.rubric.components.assessment import assess_components
from openaudit.rubric.components.card_view import MAX_HEADING_CHARS
from openaudit.rubric.components.reader import MAX_LINE_CHARS
from openaudit.rubric.components.results import (
    ABSENT, CLOSED, FOUND, INSUFFICIENT, LINKED, OPEN, RESTRICTED, STATUSES, ComponentAssessment, ComponentsResult,
    EvidenceItem, LicenseChoice, NormalizedLicense, spdx_id,
)
from openaudit.rubric.components.rules import (
    RULE_TYPES, ComponentRules, DetectionRubric, DetectionRule, compile_globs, detection_rubric,
    detection_rubric_from_dict, glob_regex,
)
from openaudit.rubric.components.sentences import component_sentence, files_phrase

__all__ = [
    "ABSENT", "CLOSED", "FOUND", "INSUFFICIENT", "LINKED", "MAX_HEADING_CHARS", "MAX_LINE_CHARS", "OPEN",
    "RESTRICTED", "RULE_TYPES", "STATUSES", "ComponentAssessment", "ComponentRules", "ComponentsResult",
    "DetectionRubric", "DetectionRule", "EvidenceItem", "LicenseChoice", "NormalizedLicense", "assess_components",
    "compile_globs", "component_sentence", "detection_rubric", "detection_rubric_from_dict", "files_phrase",
    "glob_regex", "spdx_id",
]
