"""Claims: everything a release says about itself, each with the place it says it.

Sources: the model card's front matter and prose (and other top-level Markdown), size labels in names
(repository, folder, files, the card's title), GGUF ``general.*`` metadata, ``config.json``, the shard
index's ``metadata``, and a Model Openness Tool YAML file. Prose is matched per line with several
phrasings for each subject (numbers written 6144, 6,144 or 8k; "48 heads for queries", "48 query heads",
"num_attention_heads: 48"), so extraction does not depend on one release's wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

# Subjects (stable strings used in reports and by verify.py).
PARAMETERS = "parameters"
SIZE_LABEL = "size_label"
EXPERTS = "experts"
EXPERTS_PER_TOKEN = "experts_per_token"
LAYERS = "layers"
ATTENTION_HEADS = "attention_heads"
KV_HEADS = "kv_heads"
HIDDEN_SIZE = "hidden_size"
INTERMEDIATE_SIZE = "intermediate_size"
HEAD_DIM = "head_dim"
VOCAB_SIZE = "vocab_size"
CONTEXT_LENGTH = "context_length"
ARCHITECTURE = "architecture"
LICENSE = "license"
BASE_MODEL = "base_model"
DATASETS = "datasets"
PIPELINE_TAG = "pipeline_tag"
EVALUATION_RESULTS = "evaluation_results"
TOTAL_SIZE = "total_size"
TIED_EMBEDDINGS = "tie_word_embeddings"

SPEC_SUBJECTS = (EXPERTS, EXPERTS_PER_TOKEN, LAYERS, ATTENTION_HEADS, KV_HEADS, HIDDEN_SIZE, INTERMEDIATE_SIZE,
                 HEAD_DIM, VOCAB_SIZE, CONTEXT_LENGTH)


@dataclass(frozen=True)
class Claim:
    """One thing the release says. ``claimed`` is normalised (an int, a label, a license id or text);
    ``text`` is the claim as written; ``source`` is "file:line" or "file#key"."""

    subject: str
    claimed: object
    text: str
    source: str


@dataclass(frozen=True)
class SizeLabel:
    """A size label such as "7B", "270m" or "8x7B": ``experts`` is N for NxM labels."""

    text: str
    value: float  # in parameters
    unit: float  # 1e9 for "B", 1e6 for "M" …
    digits: int  # significant digits as written ("314" → 3, "7" → 1, "1.5" → 2)
    decimals: int  # digits after the point ("1.5" → 1)
    experts: int | None = None

    @property
    def canonical(self) -> str:
        """The label written the usual way: "314B", "8x7B", "270M", "1.5B"."""
        letter = {1e3: "K", 1e6: "M", 1e9: "B", 1e12: "T"}[self.unit]
        number = f"{self.value / self.unit:.{self.decimals}f}"
        return f"{self.experts}x{number}{letter}" if self.experts else f"{number}{letter}"


_UNITS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12, "thousand": 1e3, "million": 1e6, "billion": 1e9, "bn": 1e9,
          "trillion": 1e12}
_LABEL = re.compile(r"(?<![a-z0-9.])(?:(\d{1,3})x)?(\d{1,4}(?:\.\d{1,3})?)([mbtk])(?![a-z0-9])", re.I)


def parse_size_label(text: str) -> SizeLabel | None:
    """Parse "7B", "8x7B", "1.5b", "270M", "314 billion"; None if ``text`` is not a size label."""
    text = text.strip()
    match = re.fullmatch(r"(?:(\d{1,3})\s*x\s*)?(\d{1,4}(?:[.,]\d{1,3})?)\s*(k|m|b|t|bn|thousand|million|billion|trillion)",
                         text, re.I)
    if match is None:
        return None
    number = match.group(2).replace(",", ".")
    unit = _UNITS[match.group(3).lower()]
    whole, _, fraction = number.partition(".")
    digits = len(whole.lstrip("0")) + len(fraction) or 1
    return SizeLabel(
        text=text, value=float(number) * unit, unit=unit, digits=digits, decimals=len(fraction),
        experts=int(match.group(1)) if match.group(1) else None,
    )


# A label that is really a context length, a token count or a training step: "1M-context", "step-2m".
_NOT_A_SIZE_AFTER = re.compile(r"^-?(?:context|ctx|tok|tokens|steps?|iter)", re.I)
_NOT_A_SIZE_BEFORE = re.compile(r"(?:step|steps|ckpt|iter|epoch|lr|tokens?)-?$", re.I)


def labels_in_name(name: str) -> list[SizeLabel]:
    """The size label of a model name: "Mixtral-8x7B-v0.1" → 8x7B; "gemma-3-270m-it" → 270M;
    "stablelm-2-1_6b" → 1.6B. Only the first parameter-sized label counts: in
    "TinyLlama-1.1B-step-1431k-3T" the 3T is training tokens, in "Llama-3-8B-1M-context" 1M is a context
    length; labels next to "context", "tokens" or "step" are never sizes, and "k" never is one."""
    text = re.sub(r"(?<=\d)_(?=\d)", ".", name).replace("_", "-")
    for match in _LABEL.finditer(text):
        label = parse_size_label(match.group(0))
        if label is None or label.unit in (1e3, 1e12):
            continue
        if _NOT_A_SIZE_AFTER.match(text[match.end():]) or _NOT_A_SIZE_BEFORE.search(text[:match.start()]):
            continue
        return [label]
    return []


# ---------------------------------------------------------------------------------------------------------
# Prose

# A number as cards write them (6144, 6,144, 8k). The lookbehind and the bounded digit counts keep every
# pattern linear: without them a long run of digits is retried from each digit (quadratic time).
_NUM = r"(?<![\d.,])(\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d{1,12}(?:\.\d{1,6})?(?!\d|\.\d))(\s?k\b)?"


def _number(digits: str, kilo: str | None) -> int | float:
    value = float(digits.replace(",", ""))
    if kilo:
        return int(value * 1024)
    return int(value) if value.is_integer() else value


_PROSE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (subject, re.compile(pattern, re.I))
    for subject, pattern in (
        # experts per token before experts, so "2 experts used per token" is not read as "2 experts"
        (EXPERTS_PER_TOKEN, rf"{_NUM}\s+(?:active\s+)?experts?\s+(?:are\s+|is\s+)?(?:used|active|activated|selected|chosen|routed|engaged)\s*(?:per|for\s+each|for\s+every|on\s+each|each)\s+token"),
        (EXPERTS_PER_TOKEN, r"top[- ]?(\d{1,2})()\s+(?:routing|experts|gating|expert\s+routing)"),
        (EXPERTS_PER_TOKEN, rf"{_NUM}\s+(?:out\s+)?of\s+(?:the\s+|its\s+|their\s+)?\d+\s+experts"),
        (EXPERTS_PER_TOKEN, rf"(?:experts?\s+(?:utili[sz]ation|used\s+per\s+token|per\s+token|active\s+per\s+token)|num_experts_per_tok|experts_per_token|active\s+experts)\W{{0,6}}{_NUM}"),
        (EXPERTS, rf"(?:mixture|mix)[- ]of[- ]{_NUM}\s+experts"),
        (EXPERTS, rf"{_NUM}\s+(?:routed\s+|total\s+)?experts\b(?!\s+(?:are\s+|is\s+)?(?:used|active|activated|selected|chosen|routed|engaged|per))"),
        (EXPERTS, rf"(?<!\d)\d{{1,6}}\s+(?:out\s+)?of\s+(?:the\s+|its\s+|their\s+)?{_NUM}\s+experts"),
        (EXPERTS, rf"(?:number\s+of\s+experts|num_local_experts|num_experts|experts\s+count|expert_count)\W{{0,6}}{_NUM}"),
        (KV_HEADS, rf"{_NUM}\s+(?:attention\s+heads?\s+)?(?:for\s+)?(?:keys?\s*(?:/|and|&)\s*values?|key[- ]value|kv)(?:\s+heads?)?"),
        (KV_HEADS, rf"(?:key[- /]value|kv)\s+heads?\W{{0,6}}{_NUM}"),
        (KV_HEADS, rf"{_NUM}\s+(?:are\s+|is\s+)?(?:shared\s+)?(?:as\s+)?(?:key[- /]value|kv)\s+heads"),
        (KV_HEADS, rf"num_key_value_heads\W{{0,6}}{_NUM}"),
        (ATTENTION_HEADS, rf"{_NUM}\s+(?:attention\s+)?(?:heads?\s+)?for\s+quer(?:y|ies)"),
        (ATTENTION_HEADS, rf"{_NUM}\s+query\s+heads"),
        (ATTENTION_HEADS, rf"{_NUM}\s+for\s+Q\b"),
        (ATTENTION_HEADS, rf"{_NUM}\s+(?:self[- ])?attention\s+heads(?!\s+for\s+(?:keys?|kv))"),
        (ATTENTION_HEADS, rf"(?:attention\s+heads|query\s+heads|num(?:ber)?(?:\s+of|_)\s*(?:attention_)?heads)(?!\s*\W{{0,6}}\d[\d,]*\s+(?:for\s+)?(?:keys?|kv))\W{{0,6}}{_NUM}(?!\s+(?:for\s+)?(?:keys?|kv))"),
        (LAYERS, rf"{_NUM}\s+(?:transformer\s+|decoder\s+|hidden\s+|attention\s+)?(?:layers|blocks)\b"),
        (LAYERS, rf"(?:(?:number\s+of\s+|num_hidden_|n_)?layers|block_count|num_hidden_layers)\W{{0,6}}{_NUM}"),
        (HIDDEN_SIZE, rf"(?:(?:embedding|hidden)\s+(?:size|dimension|dim|width)|model\s+(?:dimension|dim|width))\W{{0,12}}(?:of\s+|is\s+)?{_NUM}"),
        (HIDDEN_SIZE, rf"(?:d_model|hidden_size|n_embd|embedding_length|emb_size)\W{{0,6}}{_NUM}"),
        (HIDDEN_SIZE, rf"{_NUM}[- ]dimensional\s+(?:embeddings?|hidden\s+states?|model)"),
        (VOCAB_SIZE, rf"(?:vocabulary|vocab)(?:\s+size)?\W{{0,12}}(?:of\s+|is\s+)?{_NUM}"),
        (VOCAB_SIZE, rf"tokeni[sz]er\s+with\s+(?:a\s+vocabulary\s+of\s+)?{_NUM}\s+tokens"),
        (VOCAB_SIZE, rf"{_NUM}[- ](?:tokens?\s+)?vocabulary"),
        (CONTEXT_LENGTH, rf"(?:context\s+(?:length|window|size)|max(?:imum)?\s+(?:sequence|context)\s+length(?:\s*\(context\))?|max_position_embeddings|context_length|n_positions|n_ctx)\W{{0,6}}(?:(?:of|is|supports?|=)\s+)?(?:up\s+to\s+)?{_NUM}"),
        (CONTEXT_LENGTH, rf"{_NUM}[- ]token\s+context"),
        (CONTEXT_LENGTH, rf"{_NUM}\s+context\s+(?:length|window)\b"),
        (CONTEXT_LENGTH, rf"\bcontext\s+of\s+(?:up\s+to\s+)?{_NUM}\s*tokens"),
        (INTERMEDIATE_SIZE, rf"(?:intermediate[_ ]size|ffn\s+(?:size|dimension)|feed[- ]forward\s+(?:size|dimension))\W{{0,12}}{_NUM}"),
    )
)
_PARAMS_PROSE = (
    re.compile(r"(?<![\w.])(\d{1,4}(?:[.,]\d{1,3})?)\s?(b|bn|billion|m|million|t|trillion)\b[\s-]*(?:total\s+|trainable\s+)?(?:parameters?|params?)\b", re.I),
    re.compile(r"(?:parameters?|params?|parameter\s+count|model\s+size|number\s+of\s+parameters)\W{0,12}(?:of\s+|is\s+|~|about\s+|approximately\s+)?(\d{1,4}(?:[.,]\d{1,3})?)\s?(b|bn|billion|m|million|t|trillion)\b", re.I),
)
# An exact count written out: "353,952 parameters", "124439808 params".
_EXACT_PARAMS = re.compile(r"(?<![\w.,])(\d{1,3}(?:[,_]\d{3})+|\d{4,15})\s+(?:trainable\s+|total\s+)?(?:parameters|params)\b", re.I)
_LICENSE_PROSE = (
    re.compile(r"(?:licen[sc]ed|released|distributed|available|published|provided|made\s+available)\s+(?:openly\s+)?under\s+(?:the\s+terms\s+of\s+)?(?:the\s+|an?\s+)?([A-Za-z][\w .,/+()-]{1,80}?)(?:\s+licen[sc]e\b|\s+terms\b|[.;]\s|[.;]?$|,|\s+\(|\s+and\b|\s+for\b)", re.I),
    re.compile(r"^\W*licen[sc]e\W{1,6}([A-Za-z][\w .,/+()-]{1,80}?)\s*$", re.I),
)
_MARKDOWN_NOISE = re.compile(r"[*_`>#]+|\[([^\]]*)\]\([^)]*\)")


def _clean_line(line: str) -> str:
    """Drop Markdown emphasis and links and turn table cells into "key: value" text."""
    line = _MARKDOWN_NOISE.sub(lambda m: m.group(1) or " ", line)
    if line.count("|") >= 2:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        line = ": ".join(cell for cell in cells if cell)
    return re.sub(r"\s+", " ", line).strip()


_BLOCK_START = re.compile(r"^\s*(?:[-*+]\s|\d+[.)]\s|#|\||>)")


def logical_lines(text: str, first_line: int = 1) -> Iterator[tuple[int, str]]:
    """(line number, text) of each statement unit: a wrapped paragraph is joined into one unit; list
    items, headings and table rows stay units of their own; fenced code is skipped."""
    in_code = False
    start, parts = 0, []
    for offset, raw in enumerate(text.splitlines()[:50_000]):
        number = first_line + offset
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            if parts:
                yield start, " ".join(parts)
                parts = []
            continue
        if in_code or len(raw) > 4000:
            continue
        if not stripped or _BLOCK_START.match(raw):
            if parts:
                yield start, " ".join(parts)
                parts = []
            if stripped:
                start, parts = number, [stripped]
            continue
        if not parts:
            start = number
        parts.append(stripped)
        if len(parts) >= 40:  # bound a unit; very long paragraphs are read in pieces
            yield start, " ".join(parts)
            parts = []
    if parts:
        yield start, " ".join(parts)


# A sentence about other models, or about a range of sizes, says nothing about this release's numbers:
# "ranging from 7 billion to 70 billion parameters", "compared with GPT-3 (175B parameters)".
_ABOUT_OTHERS = re.compile(
    r"\b(?:compar\w*|than|unlike|versus|vs\.?|outperform\w*|rang(?:e|es|ing)|similar\s+to|such\s+as|whereas|"
    r"in\s+contrast|baselines?|competitors?|other\s+models?|previous\s+models?|predecessors?|family\s+of)\b", re.I)
# A sentence about fine-tuning details: "with 8 layers frozen", "LoRA adapters on 16 layers".
_ABOUT_TRAINING = re.compile(r"\b(?:frozen|freez\w*|lora|adapters?|fine-?tun\w*|rounds?|epochs?|batch)\b", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")
_CELL_NUMBER = re.compile(r"\d")
PROSE_SECONDS = 2.0  # claims from one document; a crafted card cannot hold the audit longer


def claims_from_prose(text: str, path: str, first_line: int = 1) -> list[Claim]:
    """Specification, parameter-count and license statements in Markdown prose, read per sentence.

    Sentences comparing with other models or giving ranges of sizes, sentences about fine-tuning
    details, and table rows with more than one number (one column per model size) give no numbers.
    """
    from openaudit.limits import Deadline

    deadline = Deadline(PROSE_SECONDS)
    claims: list[Claim] = []
    seen: set[tuple[str, object, int]] = set()
    for number, raw in logical_lines(text, first_line):
        if deadline.expired():
            break  # what was read so far stands; the rest of a crafted document is not read
        source = f"{path}:{number}"

        def add(subject: str, value: object, quoted: str) -> None:
            key = (subject, value, number)
            if key not in seen:
                seen.add(key)
                claims.append(Claim(subject, value, quoted.strip(), source))

        several_columns = raw.count("|") >= 2 and sum(
            1 for cell in raw.strip().strip("|").split("|")[1:] if _CELL_NUMBER.search(cell)) >= 2
        for sentence in _SENTENCE_END.split(_clean_line(raw)):
            if not sentence:
                continue
            numbers_allowed = not several_columns and not _ABOUT_OTHERS.search(sentence)
            if numbers_allowed and not _ABOUT_TRAINING.search(sentence):
                for subject, value, quoted in _spec_statements(sentence):
                    add(subject, value, quoted)
            if numbers_allowed:
                for value, quoted in _parameter_statements(sentence):
                    add(PARAMETERS, value, quoted)
            for key, quoted in license_statements(sentence):
                add(LICENSE, key, quoted)
    return claims


def _spec_statements(sentence: str) -> list[tuple[str, int, str]]:
    found: list[tuple[str, int, str]] = []
    taken: list[tuple[int, int]] = []
    for subject, pattern in _PROSE_PATTERNS:
        for match in pattern.finditer(sentence):
            span = match.span(1)
            # A number already read for a more specific subject is not read again for a general one.
            if any(begin <= span[0] < end for begin, end in taken):
                continue
            taken.append(span)
            value = _number(match.group(1), match.group(2) if match.lastindex and match.lastindex >= 2 else None)
            if isinstance(value, int) and value > 0:  # sizes, counts and lengths are whole numbers
                found.append((subject, value, match.group(0)))
    return found


def _parameter_statements(sentence: str) -> list[tuple[object, str]]:
    labels = []
    for pattern in _PARAMS_PROSE:
        for match in pattern.finditer(sentence):
            label = parse_size_label(f"{match.group(1)}{match.group(2)}")
            if label is not None:
                labels.append((label.canonical, match.group(0)))
    exact = [(int(m.group(1).replace(",", "").replace("_", "")), m.group(0)) for m in _EXACT_PARAMS.finditer(sentence)]
    sizes = {label.canonical for m in _SIZE_TOKEN.finditer(sentence) if (label := parse_size_label(m.group(0)))}
    if len(sizes) > 1 or len({value for value, _ in labels}) > 1 or len({value for value, _ in exact}) > 1:
        return []  # "7B, 13B and 34B parameter models": a list of sizes, not this model's size
    return labels + exact


_SIZE_TOKEN = re.compile(r"(?<![\w.])\d{1,4}(?:\.\d{1,3})?\s?(?:B|M|T|billion|million|trillion)\b")


# A license named in a clause about another work ("Unlike Llama, which is licensed under ...") or negated
# ("not licensed under the MIT license") is not this release's.
_CLAUSE_ABOUT_OTHER = re.compile(r"^\s*(?:unlike|like|compared|whereas|in\s+contrast|similar)\b", re.I)
_CLAUSE_RELATIVE = re.compile(r"^\s*(?:which|that|who|whose)\b", re.I)
_NEGATED = re.compile(r"\b(?:not|never|no\s+longer|n't)\s+(?:\w+\s+){0,2}$", re.I)


def license_statements(sentence: str) -> list[tuple[str, str]]:
    """Licenses a sentence says the release is under: "released under the Apache License, Version 2.0"."""
    from openaudit.inspect.license import license_at_start, normalize_license_id

    found = []
    about_other = False
    for clause in sentence.split(","):
        if _CLAUSE_ABOUT_OTHER.match(clause) or _ABOUT_OTHERS.search(clause):
            about_other = True
            continue
        if about_other and _CLAUSE_RELATIVE.match(clause):
            continue
        about_other = False
        for pattern in _LICENSE_PROSE:
            for match in pattern.finditer(clause):
                if _NEGATED.search(clause[:match.start()]):
                    continue
                phrase = match.group(1)
                key = license_at_start(clause[match.start(1):match.start(1) + 200]) or normalize_license_id(phrase)
                if key is None:
                    # the clause ends at a comma that may belong to the name ("Apache License, Version 2.0")
                    rest = sentence[sentence.find(clause) + match.start(1):][:200]
                    key = license_at_start(rest) or normalize_license_id(rest.split(".")[0])
                if key is not None:
                    found.append((key, match.group(0)))
    return found


# ---------------------------------------------------------------------------------------------------------
# Structured sources

def claims_from_front_matter(metadata: Mapping[str, object], path: str) -> list[Claim]:
    from openaudit.inspect.license import normalize_license_id

    claims: list[Claim] = []
    license_id = metadata.get("license")
    if isinstance(license_id, str):
        if license_id.strip().lower() == "other":
            name = metadata.get("license_name")
            claims.append(Claim(LICENSE, normalize_license_id(str(name)) if name else "other",
                                f"license: other, license_name: {name}", f"{path}#license_name"))
        else:
            claims.append(Claim(LICENSE, normalize_license_id(license_id) or license_id, f"license: {license_id}", f"{path}#license"))
    elif isinstance(license_id, list):
        for item in license_id[:20]:
            claims.append(Claim(LICENSE, normalize_license_id(str(item)) or str(item), f"license: {item}", f"{path}#license"))
    if isinstance(metadata.get("license_link"), str):
        link = metadata["license_link"]
        claims.append(Claim("license_link", link, f"license_link: {link}", f"{path}#license_link"))
    for key, subject in (("base_model", BASE_MODEL), ("datasets", DATASETS)):
        value = metadata.get(key)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        for item in items[:100]:
            if isinstance(item, str):
                claims.append(Claim(subject, item, f"{key}: {item}", f"{path}#{key}"))
    if isinstance(metadata.get("pipeline_tag"), str):
        claims.append(Claim(PIPELINE_TAG, metadata["pipeline_tag"], f"pipeline_tag: {metadata['pipeline_tag']}", f"{path}#pipeline_tag"))
    for result in _model_index_results(metadata.get("model-index")):
        claims.append(Claim(EVALUATION_RESULTS, result, result, f"{path}#model-index"))
    return claims


def _model_index_results(model_index: object) -> Iterator[str]:
    if not isinstance(model_index, list):
        return
    count = 0
    for model in model_index[:20]:
        for result in (model.get("results") or [])[:200] if isinstance(model, dict) else []:
            if not isinstance(result, dict):
                continue
            dataset = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
            for metric in (result.get("metrics") or [])[:50] if isinstance(result.get("metrics"), list) else []:
                if isinstance(metric, dict) and count < 500:
                    count += 1
                    name = dataset.get("name") or dataset.get("type") or "?"
                    yield f"{name}: {metric.get('name') or metric.get('type')} = {metric.get('value')}"


# config.json keys whose values are claims about the weights or the model, by subject.
CONFIG_KEYS: Mapping[str, tuple[str, ...]] = {
    HIDDEN_SIZE: ("hidden_size", "n_embd", "d_model"),
    LAYERS: ("num_hidden_layers", "n_layer", "num_layers"),
    ATTENTION_HEADS: ("num_attention_heads", "n_head"),
    KV_HEADS: ("num_key_value_heads",),
    HEAD_DIM: ("head_dim",),
    INTERMEDIATE_SIZE: ("intermediate_size", "n_inner"),
    VOCAB_SIZE: ("vocab_size",),
    CONTEXT_LENGTH: ("max_position_embeddings", "n_positions"),
    EXPERTS: ("num_local_experts", "num_experts"),
    EXPERTS_PER_TOKEN: ("num_experts_per_tok",),
    TIED_EMBEDDINGS: ("tie_word_embeddings",),
}


def claims_from_config(config: Mapping[str, object], path: str) -> list[Claim]:
    claims: list[Claim] = []
    source_config = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    architectures = config.get("architectures")
    model_type = config.get("model_type")
    if isinstance(architectures, list) and architectures and isinstance(architectures[0], str):
        claims.append(Claim(ARCHITECTURE, architectures[0], f"architectures: {architectures}", f"{path}#architectures"))
    elif isinstance(model_type, str):
        claims.append(Claim(ARCHITECTURE, model_type, f"model_type: {model_type}", f"{path}#model_type"))
    for subject, keys in CONFIG_KEYS.items():
        for key in keys:
            value = source_config.get(key)
            if isinstance(value, (int, bool)) and value is not None:
                prefix = "text_config." if source_config is not config else ""
                claims.append(Claim(subject, value, f"{key}: {value}", f"{path}#{prefix}{key}"))
                break
    return claims


def claims_from_gguf(metadata: Mapping[str, object], path: str) -> list[Claim]:
    from openaudit.inspect.license import normalize_license_id

    claims: list[Claim] = []
    label = metadata.get("general.size_label")
    if isinstance(label, str) and parse_size_label(label):
        claims.append(Claim(SIZE_LABEL, label, f"general.size_label: {label}", f"{path}#general.size_label"))
    license_id = metadata.get("general.license")
    if isinstance(license_id, str):
        claims.append(Claim(LICENSE, normalize_license_id(license_id) or license_id, f"general.license: {license_id}", f"{path}#general.license"))
    arch = metadata.get("general.architecture")
    if isinstance(arch, str):
        claims.append(Claim(ARCHITECTURE, arch, f"general.architecture: {arch}", f"{path}#general.architecture"))
        for suffix, subject in (("embedding_length", HIDDEN_SIZE), ("block_count", LAYERS), ("attention.head_count", ATTENTION_HEADS),
                                ("attention.head_count_kv", KV_HEADS), ("context_length", CONTEXT_LENGTH),
                                ("feed_forward_length", INTERMEDIATE_SIZE), ("expert_count", EXPERTS),
                                ("expert_used_count", EXPERTS_PER_TOKEN), ("vocab_size", VOCAB_SIZE)):
            value = metadata.get(f"{arch}.{suffix}")
            if isinstance(value, int) and not isinstance(value, bool):
                claims.append(Claim(subject, value, f"{arch}.{suffix}: {value}", f"{path}#{arch}.{suffix}"))
    name = metadata.get("general.name")
    if isinstance(name, str) and label is None:
        claims.extend(claims_from_name(name, f"{path}#general.name"))
    return claims


def claims_from_name(name: str, source: str) -> list[Claim]:
    return [Claim(SIZE_LABEL, label.text, name, source) for label in labels_in_name(name)]


def card_title(body: str) -> tuple[str, int] | None:
    """The first level-1 heading of a card body, and its line offset."""
    for offset, line in enumerate(body.splitlines()[:200]):
        if line.startswith("# "):
            return line[2:].strip(), offset
    return None


def unique(claims: Iterable[Claim]) -> list[Claim]:
    """Drop repeats of the same subject and value from the same source."""
    seen: set[tuple[str, str, str]] = set()
    result = []
    for claim in claims:
        key = (claim.subject, repr(claim.claimed), claim.source)
        if key not in seen:
            seen.add(key)
            result.append(claim)
    return result
