"""Load and use a release's tokenizer in a child process (``python -m openaudit.run.tokenizer_child``).

``tokenizer.json`` and SentencePiece models are parsed by native code, and a tokenizer.json can carry
pre-tokenizer regexes that backtrack for ever on some input. The parent starts this module with a time and
memory limit and reads one JSON answer from stdout; a hang or a crash here costs a finding, not the audit.

Request (stdin): {"kind": "tokenizer.json" | "sentencepiece", "path": ..., "text": str | null,
"memory_bytes": the address-space limit the child sets on itself}.
Answer (stdout): {"vocab_size", "mask_id", "special_ids", "ids" (null when no text)} or {"error": ...}.
"""

from __future__ import annotations

import json
import sys

MASK_TOKENS = ("[MASK]", "<mask>")


def _tokenizer_json(path: str, text: str | None) -> dict:
    from tokenizers import Tokenizer

    with open(path, "rb") as handle:
        tokenizer = Tokenizer.from_str(handle.read().decode("utf-8", errors="replace"))
    mask = next((tokenizer.token_to_id(t) for t in MASK_TOKENS if tokenizer.token_to_id(t) is not None), None)
    special = sorted(index for index, token in tokenizer.get_added_tokens_decoder().items() if token.special)
    ids = list(tokenizer.encode(text, add_special_tokens=True).ids) if text is not None else None
    return {"vocab_size": tokenizer.get_vocab_size(with_added_tokens=True), "mask_id": mask, "special_ids": special, "ids": ids}


def _sentencepiece(path: str, text: str | None) -> dict:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor()
    with open(path, "rb") as handle:
        processor.LoadFromSerializedProto(handle.read())
    bos = processor.bos_id()
    mask = next((processor.PieceToId(t) for t in MASK_TOKENS if processor.PieceToId(t) != processor.unk_id()), None)
    special = sorted(i for i in (bos, processor.eos_id(), processor.pad_id(), processor.unk_id()) if i >= 0)
    ids = ([bos] if bos >= 0 else []) + list(processor.EncodeAsIds(text)) if text is not None else None
    return {"vocab_size": processor.GetPieceSize(), "mask_id": mask, "special_ids": special, "ids": ids}


def main() -> int:
    request = json.loads(sys.stdin.read())
    if request.get("memory_bytes"):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (request["memory_bytes"], request["memory_bytes"]))
    handler = {"tokenizer.json": _tokenizer_json, "sentencepiece": _sentencepiece}[request["kind"]]
    try:
        answer = handler(request["path"], request.get("text"))
    except BaseException as exc:  # noqa: BLE001 - native parsers raise their own types (a Rust panic is a BaseException)
        answer = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
