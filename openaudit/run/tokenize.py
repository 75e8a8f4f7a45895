"""The release's own tokenizer, for the probe text: tokenizer.json, a GGUF's vocabulary, SentencePiece.

Looked for in this order (the first that loads wins; the reasons the others did not are kept):

1. ``tokenizer.json`` (the release root first, else the shallowest one), through the ``tokenizers``
   library, with the special tokens its post-processor adds (a Llama BOS, BERT's [CLS]/[SEP]);
2. the vocabulary embedded in the primary GGUF file (``tokenizer.ggml.*``, read with
   ``read_gguf(keep_arrays=True)``): ``gpt2`` (byte-level BPE with its merges) or ``llama``
   (SentencePiece BPE: merges derived from the token scores, as transformers' SentencePiece extractor
   does, with byte fallback), BOS added as ``tokenizer.ggml.add_bos_token`` says. The pre-tokenizer
   regex of a GGUF BPE vocabulary (``tokenizer.ggml.pre``) is approximated by GPT-2's: for a probe whose
   purpose is "far below uniform" a slightly different split costs a little perplexity, not the verdict;
3. a SentencePiece model (``tokenizer.model``, ``spiece.model``, ``sentencepiece.bpe.model``), BOS
   prepended when the model defines one;
4. GPT-2 style ``vocab.json`` + ``merges.txt`` (byte-level BPE), or BERT's ``vocab.txt`` (WordPiece,
   lower-cased when ``tokenizer_config.json`` says ``do_lower_case``).

Tokenizer files come from the release and are hostile like the rest: each is size-bounded before it is
handed to a parser; ``tokenizer.json`` and SentencePiece models, parsed by native code whose regexes can
backtrack for ever, are loaded and used in a child process under a time and memory limit
(``tokenizer_child``); the merge derivation for GGUF vocabularies polls a deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Sequence

from openaudit.errors import MalformedInput
from openaudit.limits import Deadline, load_json_bounded, open_regular, read_text_bounded

MAX_TOKENIZER_JSON_BYTES = 128 << 20  # Gemma 3's tokenizer.json is about 33 MB
MAX_SENTENCEPIECE_BYTES = 32 << 20
MAX_VOCAB_FILE_BYTES = 64 << 20
MAX_PIECE_CHARS = 64  # longer GGUF pieces take no part in derived merges (none of a real vocabulary)
MERGE_SECONDS = 30.0
CHILD_SECONDS = 30.0  # loading and encoding in the child process (tokenizer.json, SentencePiece)
CHILD_MEMORY_BYTES = 8 << 30
SENTENCEPIECE_NAMES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model")
MASK_TOKENS = ("[MASK]", "<mask>")


@dataclass(frozen=True)
class ProbeTokenizer:
    """Text -> ids with the release's tokenizer. ``description`` says what was used (for the report)."""

    description: str
    source: str
    vocab_size: int
    encode: Callable[[str], list[int]] = field(repr=False, compare=False)
    mask_id: int | None = None
    special_ids: frozenset[int] = frozenset()  # control tokens ([CLS], [SEP], BOS …): never masked


@dataclass(frozen=True)
class TokenizerSearch:
    tokenizer: ProbeTokenizer | None
    problems: tuple[str, ...]  # why candidates were not used (or that there were none)


def find_tokenizer(release, weights=None) -> TokenizerSearch:
    """The release's tokenizer, trying each kind in the order of the module docstring."""
    problems: list[str] = []
    for attempt in (_tokenizer_json, _gguf_vocabulary, _sentencepiece, _vocab_files):
        try:
            found = attempt(release, weights)
        except MalformedInput as exc:
            problems.append(str(exc))
            continue
        if found is not None:
            return TokenizerSearch(found, tuple(problems))
    if not problems:
        problems.append("the release has no tokenizer (tokenizer.json, GGUF vocabulary, SentencePiece model or vocab files)")
    return TokenizerSearch(None, tuple(problems))


def _shallowest(release, names: Sequence[str]):
    matches = [entry for entry in release.files if PurePosixPath(entry.path).name in names]
    return min(matches, key=lambda e: (e.path.count("/"), names.index(PurePosixPath(e.path).name), e.path), default=None)


def _read_bytes(entry, limit: int) -> bytes:
    if entry.size > limit:
        raise MalformedInput("file-too-large", f"{entry.path} is {entry.size:,} bytes, more than the {limit:,} a tokenizer may have")
    with open_regular(entry.location) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise MalformedInput("file-too-large", f"{entry.path} grew past {limit:,} bytes while being read")
    return data


def _check_regular(entry, limit: int) -> None:
    """Size-bound a file and make sure it is a regular file before a child process opens it."""
    if entry.size > limit:
        raise MalformedInput("file-too-large", f"{entry.path} is {entry.size:,} bytes, more than the {limit:,} a tokenizer may have")
    with open_regular(entry.location):
        pass


# --- tokenizer.json -----------------------------------------------------------------------------------


def _tokenizer_json(release, weights) -> ProbeTokenizer | None:
    entry = _shallowest(release, ("tokenizer.json",))
    if entry is None:
        return None
    _check_regular(entry, MAX_TOKENIZER_JSON_BYTES)
    return _isolated("tokenizer.json", entry, f"{entry.path} (tokenizers {_version('tokenizers')})")


def _isolated(kind: str, entry, description: str) -> ProbeTokenizer:
    """A tokenizer that lives in a child process (see ``tokenizer_child``): loaded once to learn its
    vocabulary, then asked again for the probe text's ids, each time under a time and memory limit."""
    meta = _ask_child(kind, entry, None)

    def encode(text: str) -> list[int]:
        return list(_ask_child(kind, entry, text)["ids"])

    return ProbeTokenizer(description, entry.path, int(meta["vocab_size"]), encode, meta["mask_id"],
                          frozenset(meta["special_ids"]))


def _ask_child(kind: str, entry, text: str | None) -> dict:
    import json
    import subprocess
    import sys

    # The child limits its own memory: a preexec_fn would fork the (multithreaded) JAX process.
    request = json.dumps({"kind": kind, "path": str(entry.location), "text": text, "memory_bytes": CHILD_MEMORY_BYTES})
    try:
        done = subprocess.run([sys.executable, "-m", "openaudit.run.tokenizer_child"], input=request, capture_output=True,
                              text=True, timeout=CHILD_SECONDS)
    except subprocess.TimeoutExpired:
        raise MalformedInput("run-tokenizer-unreadable",
                             f"{entry.path}: the tokenizer did not finish within {CHILD_SECONDS:g} s (hostile or broken)") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = {"error": f"the tokenizer process ended with code {done.returncode}"}
    if "error" in answer:
        raise MalformedInput("run-tokenizer-unreadable", f"{entry.path} cannot be loaded: {answer['error']}")
    return answer


# --- GGUF -------------------------------------------------------------------------------------------------


def _gguf_vocabulary(release, weights) -> ProbeTokenizer | None:
    if weights is None:
        return None
    scan = next((s for s in weights.primary_scans if s.format == "gguf"), None)
    if scan is None:
        return None
    entry = release.file(scan.path)
    from openaudit.inspect.gguf import read_gguf

    metadata = read_gguf(entry.location, entry.path, entry.size, keep_arrays=True).metadata
    return tokenizer_from_gguf(metadata, entry.path)


def tokenizer_from_gguf(metadata, source: str, deadline: Deadline | None = None) -> ProbeTokenizer:
    """A tokenizer from GGUF ``tokenizer.ggml.*`` metadata (``llama`` SentencePiece BPE or ``gpt2`` BPE)."""
    model = metadata.get("tokenizer.ggml.model")
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise MalformedInput("run-tokenizer-unreadable", f"{source}: no tokenizer.ggml.tokens list in the GGUF metadata")
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    if model == "gpt2":
        merges = metadata.get("tokenizer.ggml.merges")
        if not isinstance(merges, list) or not all(isinstance(m, str) and m.count(" ") == 1 for m in merges):
            raise MalformedInput("run-tokenizer-unreadable", f"{source}: a gpt2 GGUF vocabulary without valid tokenizer.ggml.merges")
        tokenizer = Tokenizer(models.BPE(vocab, [tuple(m.split(" ")) for m in merges]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        add_bos_default = False
        what = "byte-level BPE"
    elif model == "llama":
        scores = metadata.get("tokenizer.ggml.scores")
        if not isinstance(scores, list) or len(scores) != len(tokens):
            raise MalformedInput("run-tokenizer-unreadable", f"{source}: a llama GGUF vocabulary needs one score per token")
        merges = derive_merges(tokens, scores, deadline or Deadline(MERGE_SECONDS))
        unknown = metadata.get("tokenizer.ggml.unknown_token_id")
        unk = tokens[unknown] if isinstance(unknown, int) and 0 <= unknown < len(tokens) else None
        tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        add_bos_default = True
        what = "SentencePiece BPE (merges from scores)"
    else:
        raise MalformedInput("run-tokenizer-unreadable", f"{source}: GGUF tokenizer model {str(model)[:40]!r} is not supported (llama, gpt2)")
    add_bos = metadata.get("tokenizer.ggml.add_bos_token", add_bos_default)
    bos = metadata.get("tokenizer.ggml.bos_token_id")
    prefix = [bos] if add_bos is True and isinstance(bos, int) and 0 <= bos < len(tokens) else []

    def encode(text: str) -> list[int]:
        return prefix + list(tokenizer.encode(text, add_special_tokens=False).ids)

    control = {metadata.get(f"tokenizer.ggml.{name}_token_id") for name in ("bos", "eos", "padding", "unknown")}
    special = frozenset(i for i in control if isinstance(i, int) and not isinstance(i, bool))
    return ProbeTokenizer(f"{source} embedded vocabulary ({model}: {what})", source, len(tokens), encode, None, special)


def derive_merges(tokens: Sequence[str], scores: Sequence[float], deadline: Deadline) -> list[tuple[str, str]]:
    """SentencePiece BPE merges: every split of a piece into two pieces of the vocabulary, ranked by the
    merged piece's score, highest first (ties by the parts' ids), as transformers'
    ``SentencePieceExtractor`` orders them."""
    ids: dict[str, int] = {}
    for index, token in enumerate(tokens):
        ids.setdefault(token, index)
    ranked: list[tuple[float, int, int, str, str]] = []
    for index, piece in enumerate(tokens):
        deadline.check()
        if len(piece) < 2 or len(piece) > MAX_PIECE_CHARS:
            continue
        score = scores[index]
        if not isinstance(score, (int, float)):
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                ranked.append((-float(score), ids[left], ids[right], left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


# --- SentencePiece ----------------------------------------------------------------------------------------


def _sentencepiece(release, weights) -> ProbeTokenizer | None:
    entry = _shallowest(release, SENTENCEPIECE_NAMES)
    if entry is None:
        return None
    _check_regular(entry, MAX_SENTENCEPIECE_BYTES)
    return _isolated("sentencepiece", entry, f"{entry.path} (SentencePiece {_version('sentencepiece')})")


# --- vocab.json + merges.txt, vocab.txt ------------------------------------------------------------------


def _vocab_files(release, weights) -> ProbeTokenizer | None:
    vocab_json = _shallowest(release, ("vocab.json",))
    if vocab_json is not None:
        merges_entry = release.file(str(PurePosixPath(vocab_json.path).with_name("merges.txt")))
        if merges_entry is not None:
            return _byte_level_bpe(vocab_json, merges_entry)
    vocab_txt = _shallowest(release, ("vocab.txt",))
    if vocab_txt is not None:
        return _wordpiece(release, vocab_txt)
    return None


def _byte_level_bpe(vocab_entry, merges_entry) -> ProbeTokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = load_json_bounded(_read_bytes(vocab_entry, MAX_VOCAB_FILE_BYTES).decode("utf-8", errors="replace"), vocab_entry.path)
    if not isinstance(vocab, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in vocab.items()):
        raise MalformedInput("run-tokenizer-unreadable", f"{vocab_entry.path} is not a token -> id object")
    lines = _read_bytes(merges_entry, MAX_VOCAB_FILE_BYTES).decode("utf-8", errors="replace").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version") and line.count(" ") == 1]
    try:
        tokenizer = Tokenizer(models.BPE(vocab, merges))
    except Exception as exc:  # noqa: BLE001
        raise MalformedInput("run-tokenizer-unreadable", f"{vocab_entry.path} + merges.txt: {str(exc)[:200]}") from None
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return ProbeTokenizer(f"{vocab_entry.path} + {merges_entry.path} (byte-level BPE)", vocab_entry.path,
                          tokenizer.get_vocab_size(), lambda s: list(tokenizer.encode(s).ids))


def _wordpiece(release, entry) -> ProbeTokenizer:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    lines = _read_bytes(entry, MAX_VOCAB_FILE_BYTES).decode("utf-8", errors="replace").splitlines()
    vocab: dict[str, int] = {}
    for index, token in enumerate(lines):
        vocab.setdefault(token.rstrip("\n"), index)
    if "[UNK]" not in vocab:
        raise MalformedInput("run-tokenizer-unreadable", f"{entry.path} has no [UNK] token: not a WordPiece vocabulary")
    lower = True
    config_entry = release.file(str(PurePosixPath(entry.path).with_name("tokenizer_config.json")))
    if config_entry is not None:
        try:
            config = load_json_bounded(read_text_bounded(config_entry.location, 1 << 20), config_entry.path)
            if isinstance(config, dict) and isinstance(config.get("do_lower_case"), bool):
                lower = config["do_lower_case"]
        except MalformedInput:
            pass
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lower)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if "[CLS]" in vocab and "[SEP]" in vocab:
        tokenizer.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    special = frozenset(vocab[t] for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab)
    return ProbeTokenizer(f"{entry.path} (WordPiece{', lower-cased' if lower else ''})", entry.path, len(lines),
                          lambda s: list(tokenizer.encode(s).ids), vocab.get("[MASK]"), special)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # pragma: no cover
        return "unknown version"
