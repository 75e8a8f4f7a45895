"""Cases: sharded-checkpoint indexes, model cards, checksum lists."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from tests.builders import safetensors_builder as stb
from tests.hostile.blocks import (
    mkfifo, small_safetensors, symlink, valid_safetensors, yaml_card,
)
from tests.hostile.registry import Build, Workspace, add_case, in_folder


def add_shard_index() -> None:
    cat = "shard-index"
    tensors = {"model.embed.weight": (8, 4), "model.layer.0.weight": (4, 4), "model.layer.1.weight": (4, 4),
               "lm_head.weight": (8, 4)}

    def sharded(edit: Callable[[dict, Workspace], object] | None = None, *, raw: bytes | None = None,
                name: str = "model.safetensors.index.json", size: int | None = None) -> Build:
        def build(ws: Workspace) -> Path:
            index_path = stb.write_sharded(ws.dir, tensors, 2)
            if name != index_path.name:
                index_path.rename(ws.dir / name)
                index_path = ws.dir / name
            if raw is not None:
                index_path.write_bytes(raw)
            elif edit is not None:
                document = json.loads(index_path.read_text())
                result = edit(document, ws)
                text = result if isinstance(result, (str, bytes)) else json.dumps(document, indent=2)
                index_path.write_bytes(text if isinstance(text, bytes) else text.encode())
            if size is not None:
                os.truncate(index_path, size)
            return ws.dir

        return build

    def point(tensor: str, target: str) -> Callable[[dict, Workspace], None]:
        def edit(document: dict, ws: Workspace) -> None:
            document["weight_map"][tensor] = target

        return edit

    def outside_file(target: str) -> Callable[[dict, Workspace], None]:
        def edit(document: dict, ws: Workspace) -> None:
            # A real file where the index points, so that a loader following it would find something.
            (ws.dir.parent / "outside.safetensors").write_bytes(valid_safetensors())
            document["weight_map"]["lm_head.weight"] = target

        return edit

    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    add_case(cat, "valid-baseline", sharded())
    add_case(cat, "dotdot-shard", sharded(outside_file("../outside.safetensors")), "path-escape")
    add_case(cat, "dotdot-deep-etc-passwd", sharded(point("lm_head.weight", "../../../../../../etc/passwd")),
             "path-escape")
    add_case(cat, "absolute-etc-passwd", sharded(point("lm_head.weight", "/etc/passwd")), "path-escape")
    add_case(cat, "absolute-dev-zero", sharded(point("lm_head.weight", "/dev/zero")), "path-escape")
    add_case(cat, "windows-drive-path", sharded(point("lm_head.weight", "C:\\Windows\\System32\\config\\SAM")),
             "path-escape")
    add_case(cat, "backslash-dotdot", sharded(point("lm_head.weight", "..\\..\\outside.safetensors")), "path-escape")
    add_case(cat, "inner-dotdot", sharded(point("lm_head.weight", f"sub/../../{first}")), "path-escape")
    add_case(cat, "nul-in-shard-name", sharded(point("lm_head.weight", f"{first}\0.txt")), "path-escape")
    add_case(cat, "tensor-in-wrong-shard", sharded(point("model.embed.weight", second)), "index-wrong-shard")
    add_case(cat, "tensor-in-no-shard", sharded(point("model.ghost.weight", first)), "index-tensor-missing")
    add_case(cat, "missing-shard-file", sharded(point("lm_head.weight", "model-00003-of-00003.safetensors")),
             "index-missing-shard")

    def drop(document: dict, ws: Workspace) -> None:
        del document["weight_map"]["lm_head.weight"]

    add_case(cat, "tensor-unlisted", sharded(drop), "index-tensor-unlisted")
    add_case(cat, "total-size-wrong", sharded(lambda d, ws: d["metadata"].update(total_size=1)),
             "index-total-size-mismatch")
    add_case(cat, "total-size-negative", sharded(lambda d, ws: d["metadata"].update(total_size=-1)),
             "index-malformed")
    add_case(cat, "total-size-2pow100", sharded(lambda d, ws: d["metadata"].update(total_size=2**100)),
             "index-total-size-mismatch")
    add_case(cat, "total-size-string", sharded(lambda d, ws: d["metadata"].update(total_size="lots")), "index-malformed")
    add_case(cat, "total-size-1e400", sharded(lambda d, ws: json.dumps(d).replace('"total_size": ', '"total_size": 1e400, "was": ')),
             "index-malformed")
    add_case(cat, "total-size-true", sharded(lambda d, ws: d["metadata"].update(total_size=True)), "index-malformed")

    def extra_file(document: dict, ws: Workspace) -> None:
        # Beside the shards, a file of the index's format that the weight_map never names.
        stb.write_safetensors(ws.dir / "model-extra.safetensors", {"backdoor.weight": ("F32", (4, 4))})

    add_case(cat, "unlisted-weights-file", sharded(extra_file), "index-shard-unlisted")

    def text_target(document: dict, ws: Workspace) -> None:
        ws.text("notes.txt", "not weights\n")
        document["weight_map"]["lm_head.weight"] = "notes.txt"

    add_case(cat, "shard-is-a-text-file", sharded(text_target), "index-shard-not-weights")
    add_case(cat, "not-json", sharded(raw=b"{ this is not json"), "invalid-json")
    add_case(cat, "not-utf8", sharded(raw=b'{"weight_map": {"\xff\xfe": "x"}}'), "invalid-json")
    add_case(cat, "deeply-nested", sharded(raw=b'{"weight_map":' + b"[" * 200_000 + b"]" * 200_000 + b"}"),
             "invalid-json")
    add_case(cat, "duplicate-keys", sharded(raw=json.dumps({"weight_map": {"lm_head.weight": first}})[:-2].encode()
                                            + f', "lm_head.weight": "{second}"}}}}'.encode()), "duplicate-key")
    add_case(cat, "weight-map-list", sharded(lambda d, ws: d.update(weight_map=[first])), "index-malformed")
    add_case(cat, "weight-map-absent", sharded(lambda d, ws: d.pop("weight_map")), "index-malformed")
    add_case(cat, "weight-map-int-value", sharded(point("lm_head.weight", 7)), "index-malformed")
    add_case(cat, "index-is-list", sharded(raw=b"[1, 2, 3]"), "index-malformed")
    add_case(cat, "index-over-64mb-sparse", sharded(raw=b'{"weight_map": {}}' + b" " * 16, size=64 * 1024 * 1024 + 16),
             "file-too-large")

    def many_missing(document: dict, ws: Workspace) -> None:
        for i in range(25_000):
            document["weight_map"][f"ghost.{i}.weight"] = first

    add_case(cat, "25k-tensors-missing", sharded(many_missing), "index-tensor-missing")

    def shard_is(kind: str) -> Callable[[Workspace], Path]:
        def build(ws: Workspace) -> Path:
            sharded()(ws)
            shard = ws.dir / second
            shard.unlink()
            if kind == "fifo":
                mkfifo(shard)
            elif kind == "escape":
                symlink(shard, "/etc/passwd")
            elif kind == "loop":
                symlink(shard, second)
            elif kind == "folder":
                shard.mkdir()
            return ws.dir

        return build

    add_case(cat, "shard-is-fifo", shard_is("fifo"), "special-file", "index-missing-shard")
    add_case(cat, "shard-links-to-etc-passwd", shard_is("escape"), "path-escape", "index-missing-shard")
    add_case(cat, "shard-is-link-loop", shard_is("loop"), "symlink-loop", "index-missing-shard")
    add_case(cat, "shard-is-folder", shard_is("folder"), "directory-named-like-weights", "index-missing-shard")

    def same_tensor_twice(ws: Workspace) -> Path:
        # Two shards of one index both hold model.embed.weight: which copy a loader takes depends on it.
        sharded()(ws)
        stb.write_safetensors(ws.dir / second, {"model.embed.weight": ("F32", (8, 4)),
                                                "lm_head.weight": ("BF16", (8, 4))}, metadata={"format": "pt"})
        return ws.dir

    add_case(cat, "same-tensor-in-two-shards", same_tensor_twice, "duplicate-tensor")

    def bin_index(ws: Workspace) -> Path:
        ws.text("pytorch_model.bin.index.json", json.dumps(
            {"metadata": {"total_size": 16}, "weight_map": {"w": "../../../../etc/passwd"}}))
        return ws.dir

    add_case(cat, "bin-index-dotdot", bin_index, "path-escape")


def add_model_card() -> None:
    cat = "model-card"

    def card(slug: str, data: bytes, *ids: str, size: int | None = None, name: str = "README.md") -> None:
        add_case(cat, slug, in_folder(name, data, size=size), *ids)

    laughs = ["a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]"]
    for level, letter in enumerate("bcdefghi"):
        previous = "abcdefghi"[level]
        laughs.append(f"{letter}: &{letter} [" + ",".join([f"*{previous}"] * 9) + "]")
    card("yaml-alias-bomb-billion-laughs", yaml_card("\n".join(laughs)), "yaml-alias-bomb")
    card("yaml-alias-bomb-block-style", yaml_card("x: &x [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" + "\n".join(
        f"l{i}: &l{i}\n" + "\n".join(f"  - *{'x' if i == 0 else f'l{i - 1}'}" for _ in range(10))
        for i in range(8))), "yaml-alias-bomb")
    card("yaml-alias-bomb-merge-keys", yaml_card("base: &b0 {k: v}\n" + "\n".join(
        f"m{i}: &b{i + 1} {{<<: [" + ", ".join([f"*b{i}"] * 8) + "]}" for i in range(8))), "yaml-alias-bomb")
    card("yaml-150k-flat-aliases", yaml_card("a: &a x\nlist: [" + ", ".join(["*a"] * 150_000) + "]"),
         "yaml-alias-bomb")
    card("python-object-apply-os-system",
         yaml_card("license: mit\nx: !!python/object/apply:os.system [\"echo pwned\"]"),
         "yaml-code-tag")
    card("python-name-os-system", yaml_card("tags: [!!python/name:os.system '']"), "yaml-code-tag")
    card("python-object-new-popen", yaml_card("x: !!python/object/new:subprocess.Popen [[\"true\"]]"),
         "yaml-code-tag")
    card("python-verbose-tag", yaml_card("x: !<tag:yaml.org,2002:python/object/apply:os.system> [\"true\"]"),
         "yaml-code-tag")
    card("python-tag-on-key", yaml_card("? !!python/object/apply:os.system [\"true\"]\n: value"), "yaml-code-tag")
    card("python-module-tag", yaml_card("x: !!python/module:os"), "yaml-code-tag")
    card("local-python-tag", yaml_card("x: !python/object/apply:os.system [\"true\"]"), "invalid-yaml")
    card("nested-flow-500", yaml_card("x: " + "[" * 500 + "]" * 500), "yaml-too-deep")
    # libyaml refuses more than 1000 levels itself, before openaudit's own bound sees them.
    card("nested-flow-10000", yaml_card("x: " + "[" * 10_000 + "]" * 10_000), "invalid-yaml")
    card("nested-block-100", yaml_card("\n".join("  " * i + f"k{i}:" for i in range(100)) + " 1"), "yaml-too-deep")
    card("front-matter-1_5mb", yaml_card("pad: \"" + "x" * (1_500_000) + "\""), "yaml-too-large")
    card("front-matter-510k-events", yaml_card("x: [" + "1," * 510_000 + "1]"), "yaml-too-large")
    add_case(cat, "front-matter-250k-scalars-no-alias",
             in_folder("README.md", yaml_card("x: [" + "1," * 250_000 + "1]")),
             "yaml-too-large", forbidden=["yaml-alias-bomb"])
    card("front-matter-list", yaml_card("- a\n- b"), "card-metadata-not-a-mapping")
    card("front-matter-scalar", yaml_card("just a string"), "card-metadata-not-a-mapping")
    card("front-matter-invalid", yaml_card("license: [mit\ntags: {"), "invalid-yaml")
    card("front-matter-tabs", yaml_card("license:\tmit\n\t- x"), "invalid-yaml")
    card("front-matter-unterminated", b"---\nlicense: mit\n" + b"tags: [a]\n" * 1000)
    card("front-matter-duplicate-keys", yaml_card("license: mit\nlicense: gpl-3.0"))
    card("readme-over-8mb-sparse", b"---\nlicense: mit\n---\n", "file-too-large", size=8 * 1024 * 1024 + 1)
    card("readme-not-utf8", b"---\nlicense: mit\xff\xfe\n---\n\xc3\x28 body \xff\n")
    # YAML forbids raw C0 control characters, so escapes in the metadata make it invalid.
    card("readme-ansi-escapes", yaml_card("license: mit\ntags: [\"\x1b]0;pwned\x07\"]",
                                          "\x1b[2J\x1b[H# Totally safe\n"), "invalid-yaml")
    card("readme-ansi-escapes-in-body", yaml_card("license: mit", "\x1b[2J\x1b[H# Totally safe\x1b]0;t\x07\n"))
    card("readme-binary-nuls", b"---\nlicense: mit\n---\n" + b"\0" * 4096)
    card("model-card-md-alias-bomb", yaml_card("\n".join(laughs)), "yaml-alias-bomb", name="MODEL_CARD.md")
    # Well-formed YAML whose values PyYAML cannot build (a 13th month, an hour 25, `!!int` of letters).
    card("front-matter-impossible-date", yaml_card("license: mit\ndate: 2024-13-45"), "invalid-yaml")
    card("front-matter-bad-int-tag", yaml_card("license: mit\nn: !!int abc"), "invalid-yaml")
    # A Model Openness Tool file of the release with values of the wrong type.
    mof = "framework:\n  name: Model Openness Framework\nrelease:\n  name: x\n"
    add_case(cat, "mof-components-int", in_folder("mof.yml", (mof + "  components: 5\n").encode()), "invalid-mof-file")
    add_case(cat, "mof-wrong-types-everywhere", in_folder("mof.yml", (
        mof + "  license: [1]\n  components:\n    - name: 5\n      license: {a: 1}\n    - 7\n").encode()), "invalid-mof-file")
    add_case(cat, "mof-license-name-int", in_folder("mof.yml", (
        mof + "  license:\n    code: {name: 5}\n  components: []\n").encode()), "invalid-mof-file")

    def readme_special(kind: str) -> Build:
        def build(ws: Workspace) -> Path:
            if kind == "fifo":
                mkfifo(ws.dir / "README.md")
            elif kind == "passwd":
                symlink(ws.dir / "README.md", "/etc/passwd")
            elif kind == "devzero":
                symlink(ws.dir / "README.md", "/dev/zero")
            return ws.dir

        return build

    add_case(cat, "readme-is-fifo", readme_special("fifo"), "special-file")
    add_case(cat, "readme-links-to-etc-passwd", readme_special("passwd"), "path-escape")
    add_case(cat, "readme-links-to-dev-zero", readme_special("devzero"), "path-escape")


def add_checksums() -> None:
    cat = "checksums"
    weights = small_safetensors()
    wrong = "0" * 64

    def release(files: dict[str | bytes, bytes | str], size: dict[str, int] | None = None) -> Build:
        def build(ws: Workspace) -> Path:
            ws.write("model.safetensors", weights)
            for name, data in files.items():
                ws.write(name, data.encode() if isinstance(data, str) else data,
                         size=(size or {}).get(os.fsdecode(name) if isinstance(name, bytes) else name))
            return ws.dir

        return build

    add_case(cat, "sums-dotdot-etc-passwd", release({"SHA256SUMS": f"{wrong}  ../../../../etc/passwd\n"}),
             "path-escape")
    add_case(cat, "sums-absolute-path", release({"SHA256SUMS": f"{wrong}  /etc/passwd\n"}), "path-escape")
    add_case(cat, "sums-windows-path", release({"SHA256SUMS": f"{wrong}  C:\\Windows\\win.ini\n"}), "path-escape")
    add_case(cat, "sums-bsd-dotdot", release({"checksums.txt": f"SHA256 (../secret.key) = {wrong}\n"}), "path-escape")
    add_case(cat, "card-table-dotdot",
             release({"README.md": f"| file | sha256 |\n|---|---|\n| ../../secret.bin | {wrong} |\n"}),
             "path-escape")
    add_case(cat, "sums-mismatch", release({"SHA256SUMS": f"{wrong}  model.safetensors\n"}), "checksum-mismatch",
             hash=True)
    add_case(cat, "lone-sha256-file-mismatch", release({"model.safetensors.sha256": wrong + "\n"}), "checksum-mismatch",
             hash=True)
    add_case(cat, "sums-conflicting", release({"SHA256SUMS": f"{wrong}  model.safetensors\n",
                                               "sha256sum.txt": f"{'1' * 64}  model.safetensors\n"}),
             "conflicting-checksums")
    add_case(cat, "sums-over-8mb-sparse", release({"SHA256SUMS": f"{wrong}  model.safetensors\n"},
                                                  {"SHA256SUMS": 8 * 1024 * 1024 + 1}), "file-too-large")
    add_case(cat, "sums-not-utf8", release({"SHA256SUMS": b"\xff\xfe" + wrong.encode() + b"  model\xff.safetensors\n"}))
    add_case(cat, "sums-10k-lines",
             release({"SHA256SUMS": "".join(f"{wrong}  shard-{i}.bin\n" for i in range(10_000))}))
    add_case(cat, "sums-ansi-name", release({"SHA256SUMS": f"{wrong}  \x1b[2Jmodel.safetensors\n"}))

    def sums_special(kind: str) -> Build:
        def build(ws: Workspace) -> Path:
            ws.write("model.safetensors", weights)
            if kind == "fifo":
                mkfifo(ws.dir / "SHA256SUMS")
            else:
                symlink(ws.dir / "SHA256SUMS", "/etc/passwd")
            return ws.dir

        return build

    add_case(cat, "sums-is-fifo", sums_special("fifo"), "special-file")
    add_case(cat, "sums-links-outside", sums_special("link"), "path-escape")
