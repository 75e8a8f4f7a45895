"""The inventory of a release: every file with its size and what kind of file it is."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from openaudit.findings import Finding

WEIGHTS = "weights"
CONFIG = "config"
TOKENIZER = "tokenizer"
MODEL_CARD = "model_card"
LICENSE = "license"
CODE = "code"
DATA = "data"
DOCS = "docs"
CHECKSUMS = "checksums"
OTHER = "other"

KINDS = (WEIGHTS, CONFIG, TOKENIZER, MODEL_CARD, LICENSE, CODE, DATA, DOCS, CHECKSUMS, OTHER)

WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".npz", ".npy",
     ".h5", ".msgpack", ".onnx", ".tflite", ".mlmodel", ".pb", ".keras", ".ot"}
)
_CODE_SUFFIXES = frozenset(
    {".py", ".ipynb", ".sh", ".bash", ".c", ".cc", ".cpp", ".cu", ".h", ".hpp", ".rs", ".go", ".js", ".ts",
     ".java", ".jl", ".r", ".scala", ".swift", ".mojo", ".pyx", ".lua", ".sql", ".cmake", ".mk"}
)
_CODE_NAMES = frozenset(
    {"makefile", "dockerfile", "requirements.txt", "setup.py", "setup.cfg", "pyproject.toml", "environment.yml",
     "environment.yaml", "cargo.toml", "package.json", "build", "workspace", "justfile", "tox.ini", "noxfile.py"}
)
_DATA_SUFFIXES = frozenset(
    {".csv", ".tsv", ".jsonl", ".parquet", ".arrow", ".tfrecord", ".txt.gz", ".jsonl.gz", ".jsonl.zst", ".zst",
     ".feather", ".avro", ".orc", ".wav", ".flac", ".mp3", ".png", ".jpg", ".jpeg", ".webp", ".gif", ".tar",
     ".tar.gz", ".tgz", ".zip", ".xz", ".bz2", ".gz", ".idx", ".mds"}
)
_DOC_SUFFIXES = frozenset({".md", ".rst", ".txt", ".pdf", ".html", ".htm", ".tex", ".bib", ".org", ".adoc"})
_TOKENIZER_NAMES = frozenset(
    {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
     "vocab.txt", "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.model", "tokenizer.tiktoken",
     "sentencepiece.bpe.model", "spm.model"}
)
_CONFIG_NAMES = frozenset(
    {"config.json", "generation_config.json", "params.json", "model_index.json", "preprocessor_config.json",
     "adapter_config.json", "quantize_config.json", "quant_config.json"}
)
_CHECKSUM_NAME = re.compile(r"^(sha256sums?|sha256|checksums?|md5sums?|sha512sums?)(\.txt|\.sha256)?$|\.sha256$", re.I)
_LICENSE_NAME = re.compile(
    r"^(licen[cs]e|copying|notice|use[_-]?policy|acceptable[_-]?use|terms([_-]of[_-]use)?|responsible[_-]?use)"
    r"([_.-].*)?$",
    re.I,
)
_CARD_NAMES = frozenset({"readme.md", "model_card.md", "modelcard.md", "readme.rst", "readme.txt", "readme"})


def classify(path: str) -> str:
    """The kind of a release file, from its path alone (content sniffing may later say "weights")."""
    pure = PurePosixPath(path)
    name = pure.name.lower()
    suffixes = "".join(pure.suffixes[-2:]).lower()
    suffix = pure.suffix.lower()
    if suffix in WEIGHT_SUFFIXES or name.endswith(".safetensors.index.json") or name.endswith(".bin.index.json"):
        return WEIGHTS
    if _CHECKSUM_NAME.search(name):
        return CHECKSUMS
    if _LICENSE_NAME.match(name):
        return LICENSE
    if name in _CARD_NAMES and len(pure.parts) == 1:
        return MODEL_CARD
    if name in _TOKENIZER_NAMES or name.startswith("tokenizer"):
        return TOKENIZER
    if name in _CONFIG_NAMES:
        return CONFIG
    if suffix in _CODE_SUFFIXES or name in _CODE_NAMES:
        return CODE
    if suffix in (".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".gin"):
        # Configuration of training or evaluation runs is code for openness purposes; the model's own
        # config is recognised by name above.
        return CONFIG if len(pure.parts) == 1 else CODE
    if suffixes in _DATA_SUFFIXES or suffix in _DATA_SUFFIXES:
        return DATA
    if suffix in _DOC_SUFFIXES:
        return DOCS
    return OTHER


@dataclass(frozen=True)
class ReleaseFile:
    """A regular file of the release.

    ``path`` is relative to the release root, in POSIX form, with any control characters or undecodable
    bytes escaped so that it is safe to print. ``location`` is where to read it (for a Hugging Face cache
    snapshot, the blob the link points to). ``published_sha256`` is a checksum known without hashing
    (the blob's name in a Hugging Face cache).
    """

    path: str
    location: Path
    size: int
    kind: str
    published_sha256: str | None = None


@dataclass(frozen=True)
class Release:
    """Every file of a release, the findings made while listing them, and where they came from."""

    root: Path
    source_kind: str  # "directory", "file" or "hf-cache"
    files: tuple[ReleaseFile, ...]
    findings: tuple[Finding, ...] = ()
    repo_id: str | None = None
    revision: str | None = None
    display_root: str = ""

    def file(self, path: str) -> ReleaseFile | None:
        return self._by_path().get(path)

    def _by_path(self) -> dict[str, ReleaseFile]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {entry.path: entry for entry in self.files}
            object.__setattr__(self, "_index", cached)
        return cached

    def of_kind(self, *kinds: str) -> tuple[ReleaseFile, ...]:
        return tuple(entry for entry in self.files if entry.kind in kinds)

    def with_kinds(self, kinds: dict[str, str]) -> "Release":
        """A copy in which the files named in ``kinds`` are re-classified (content sniffing)."""
        files = tuple(replace(entry, kind=kinds.get(entry.path, entry.kind)) for entry in self.files)
        return replace(self, files=files)


_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\udc80-\udcff]")


def printable(text: str) -> str:
    """Escape control characters, bidi overrides and undecodable bytes so a name cannot drive a terminal."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte from a non-UTF-8 file name
            return f"\\x{code - 0xDC00:02x}"
        return f"\\u{code:04x}" if code > 0xFF else f"\\x{code:02x}"

    return _UNSAFE_CHARS.sub(escape, text)
