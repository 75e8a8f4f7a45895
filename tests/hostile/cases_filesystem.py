"""Cases: links, special files, hostile file names, Hugging Face cache layouts, several problems at once."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from tests.builders import pickle_builder as pb
from tests.builders import safetensors_builder as stb
from tests.hostile.blocks import (
    GOOD_HEADER, U64_MAX, ZipEntry, deflate_zeros, gguf_file, mkfifo, raw_zip, small_safetensors, st_bytes,
    symlink, torch_legacy_with, torch_zip_bytes, unix_socket, yaml_card,
)
from tests.hostile.registry import Build, Workspace, add_case, in_folder


def add_links_and_special_files() -> None:
    cat = "links-special"

    def release(*steps: Callable[[Path], None]) -> Build:
        def build(ws: Workspace) -> Path:
            ws.dir.mkdir(parents=True, exist_ok=True)
            for step in steps:
                step(ws.dir)
            return ws.dir

        return build

    def link(name: str, target: str) -> Callable[[Path], None]:
        return lambda root: symlink(root / name, target)

    def good_weights(root: Path) -> None:
        stb.write_safetensors(root / "model.safetensors", {"w": ("F32", (2, 2))})

    add_case(cat, "link-to-etc-passwd", release(link("model.safetensors", "/etc/passwd")), "path-escape")
    add_case(cat, "link-to-etc-shadow-as-config", release(good_weights, link("config.json", "/etc/shadow")),
             "path-escape")
    add_case(cat, "link-to-parent", release(good_weights, link("weights", "..")), "path-escape")
    add_case(cat, "link-to-root", release(link("root", "/")), "path-escape")
    add_case(cat, "link-to-self-folder", release(good_weights, link("again", ".")), "linked-directory")
    add_case(cat, "link-to-dev-zero", release(link("pytorch_model.bin", "/dev/zero")), "path-escape")
    add_case(cat, "link-to-dev-urandom", release(link("model.gguf", "/dev/urandom")), "path-escape")
    add_case(cat, "link-to-proc-self-mem", release(link("model.pkl", "/proc/self/mem")), "path-escape")
    add_case(cat, "link-escape-from-subfolder", release(link("sub/deeper/model.safetensors", "../../../outside")),
             "path-escape")
    add_case(cat, "link-chain-leaving",
             release(link("a.safetensors", "b.safetensors"), link("b.safetensors", "/etc/passwd")),
             "path-escape")
    add_case(cat, "link-loop-pair",
             release(link("a.safetensors", "b.safetensors"), link("b.safetensors", "a.safetensors")),
             "symlink-loop")
    add_case(cat, "link-loop-self", release(link("model.safetensors", "model.safetensors")), "symlink-loop")
    add_case(cat, "link-broken", release(link("model.safetensors", "does-not-exist.safetensors")), "broken-link")
    add_case(cat, "fifo-named-model-safetensors", release(lambda root: mkfifo(root / "model.safetensors")),
             "special-file")
    add_case(cat, "fifo-named-config-json", release(good_weights, lambda root: mkfifo(root / "config.json")),
             "special-file")
    add_case(cat, "fifo-behind-link", release(lambda root: mkfifo(root / "pipe"), link("model.safetensors", "pipe")),
             "special-file")
    add_case(cat, "socket-named-model-bin", release(lambda root: unix_socket(root / "pytorch_model.bin")),
             "special-file")
    add_case(cat, "folder-named-model-safetensors", release(lambda root: (root / "model.safetensors").mkdir()),
             "directory-named-like-weights")

    def folder_bin_with_payload(root: Path) -> None:
        (root / "pytorch_model.bin").mkdir()
        (root / "pytorch_model.bin" / "data.pkl").write_bytes(pb.stack_global_call("os", "system", "true"))

    add_case(cat, "folder-named-bin-holding-pickle", release(folder_bin_with_payload), "directory-named-like-weights",
             "unsafe-code", unsafe=["os.system"])

    def deep(root: Path) -> None:
        path = root.joinpath(*["d"] * 60)
        path.mkdir(parents=True)
        (path / "model.pkl").write_bytes(pb.stack_global_call("os", "system", "true"))

    add_case(cat, "folders-60-deep", release(deep), "too-deep")

    def many_files(root: Path) -> None:
        for i in range(5000):
            (root / f"f{i:05d}.txt").write_bytes(b"")

    add_case(cat, "five-thousand-empty-files", release(many_files))
    # What the user names as SOURCE.
    add_case(cat, "source-does-not-exist", lambda ws: ws.dir / "nothing-here", exit_code=2)

    def source_fifo(ws: Workspace) -> Path:
        mkfifo(ws.dir / "model.safetensors")
        return ws.dir / "model.safetensors"

    add_case(cat, "source-is-fifo", source_fifo, exit_code=2)

    def source_socket(ws: Workspace) -> Path:
        unix_socket(ws.dir / "model.bin")
        return ws.dir / "model.bin"

    add_case(cat, "source-is-socket", source_socket, exit_code=2)

    def source_loop(ws: Workspace) -> Path:
        symlink(ws.dir / "a", "b")
        symlink(ws.dir / "b", "a")
        return ws.dir / "a"

    add_case(cat, "source-is-link-loop", source_loop, exit_code=2)

    def source_broken(ws: Workspace) -> Path:
        symlink(ws.dir / "model.safetensors", "missing")
        return ws.dir / "model.safetensors"

    add_case(cat, "source-is-broken-link", source_broken, exit_code=2)
    add_case(cat, "source-is-dev-null", lambda ws: Path("/dev/null"), exit_code=2)


def add_file_names() -> None:
    cat = "file-names"
    weights = small_safetensors()
    os_system = pb.stack_global_call("os", "system", "true")
    for slug, name, data, extra in [
        ("ansi-clear-screen", "\x1b[2J\x1b[H.safetensors", weights, ()),
        ("osc-set-title", "\x1b]0;all good\x07model.bin", os_system, ("unsafe-code",)),
        ("osc-hyperlink", "\x1b]8;;http://example.invalid\x1b\\model\x1b]8;;\x1b\\.safetensors", weights, ()),
        ("csi-c1-control", "model\u009b2J.safetensors", weights, ()),
        ("bidi-override", "model\u202enib.safetensors", weights, ()),
        ("bidi-isolate", "\u2066model\u2069.pkl", os_system, ("unsafe-code",)),
        ("newline", "model\nREADME.md", weights, ()),
        ("carriage-return", "evil.pkl\rmodel.safetensors", weights, ()),
        ("backspace", "model.pkl\x08\x08\x08safetensors", os_system, ("unsafe-code",)),
        ("delete-char", "model\x7f.safetensors", weights, ()),
        ("tab", "model\t.safetensors", weights, ()),
    ]:
        add_case(cat, slug, in_folder(name, data), "suspicious-file-name", *extra)
    add_case(cat, "non-utf8-name", in_folder(b"model\xff\xfe.safetensors", weights), "suspicious-file-name")
    add_case(cat, "non-utf8-pickle-name", in_folder(b"\xc0\xafmodel.bin", os_system), "suspicious-file-name",
             "unsafe-code", unsafe=["os.system"])
    add_case(cat, "escape-in-folder-name", in_folder("\x1b[31mred\x1b[0m/model.safetensors", weights),
             "suspicious-file-name")
    add_case(cat, "non-utf8-folder-name", in_folder(b"dir\xff/model.pkl", os_system), "suspicious-file-name",
             "unsafe-code")
    add_case(cat, "name-255-bytes", in_folder("m" * 243 + ".safetensors", weights))
    add_case(cat, "name-looks-like-option", in_folder("--fail-on=critical.safetensors", weights))
    add_case(cat, "homoglyph-name", in_folder("m\u043edel.safetensors", weights))

    def source_named(raw: bytes) -> Build:
        def build(ws: Workspace) -> Path:
            folder = ws.dir / os.fsdecode(raw)
            folder.mkdir(parents=True)
            (folder / "model.safetensors").write_bytes(weights)
            return folder

        return build

    add_case(cat, "source-folder-with-escapes", source_named(b"rel\x1b[2J\x1b]0;t\x07"))
    add_case(cat, "source-folder-not-utf8", source_named(b"rel\xff\xfe"))

    def single_named(raw: bytes) -> Build:
        def build(ws: Workspace) -> Path:
            path = ws.dir / os.fsdecode(raw)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os_system)
            return path

        return build

    add_case(cat, "source-file-with-escapes", single_named(b"\x1b[2Jmodel.pkl"), "unsafe-code", unsafe=["os.system"])


def add_hf_cache() -> None:
    cat = "hf-cache"
    weights = small_safetensors()

    def cache(edit: Callable[[Path, Path], None], *, pick: str = "snapshot") -> Build:
        def build(ws: Workspace) -> Path:
            repo = ws.dir / "models--evil--model"
            blobs, snapshot = repo / "blobs", repo / "snapshots" / ("a" * 40)
            blobs.mkdir(parents=True)
            snapshot.mkdir(parents=True)
            (repo / "refs").mkdir()
            (repo / "refs" / "main").write_text("a" * 40)
            edit(blobs, snapshot)
            return snapshot if pick == "snapshot" else repo

        return build

    def blob_link(name: str, data: bytes, digest: str | None = None) -> Callable[[Path, Path], None]:
        def edit(blobs: Path, snapshot: Path) -> None:
            import hashlib

            blob = blobs / (digest or hashlib.sha256(data).hexdigest())
            blob.write_bytes(data)
            symlink(snapshot / name, os.path.relpath(blob, snapshot))

        return edit

    add_case(cat, "valid-snapshot", cache(blob_link("model.safetensors", weights)), hash=True)
    add_case(cat, "blob-digest-mismatch", cache(blob_link("model.safetensors", weights, "0" * 64)), "checksum-mismatch",
             hash=True)
    add_case(cat, "snapshot-link-to-etc-passwd",
             cache(lambda blobs, snapshot: symlink(snapshot / "model.safetensors", "/etc/passwd")),
             "path-escape")
    add_case(cat, "snapshot-link-out-of-repo",
             cache(lambda blobs, snapshot: symlink(snapshot / "model.safetensors", "../../../../outside")),
             "path-escape")
    add_case(cat, "snapshot-link-loop",
             cache(lambda blobs, snapshot: symlink(snapshot / "model.safetensors", "model.safetensors")),
             "symlink-loop")

    def two_snapshots(ref: str | None) -> Callable[[Path, Path], None]:
        def edit(blobs: Path, snapshot: Path) -> None:
            (snapshot.parent / ("b" * 40)).mkdir()
            main = snapshot.parent.parent / "refs" / "main"
            main.unlink()
            if ref == "fifo":
                mkfifo(main)
            elif ref is not None:
                main.write_text(ref)

        return edit

    add_case(cat, "refs-main-dotdot", cache(two_snapshots("../../../../etc"), pick="repo"), exit_code=2)
    add_case(cat, "refs-main-fifo", cache(two_snapshots("fifo"), pick="repo"), exit_code=2)
    add_case(cat, "refs-main-missing", cache(two_snapshots(None), pick="repo"), exit_code=2)

    def snapshots_folder_links_out(blobs: Path, snapshot: Path) -> None:
        blob_link("model.safetensors", weights)(blobs, snapshot)
        snapshots = snapshot.parent
        outside = snapshots.parent.parent / "outside"
        snapshots.rename(outside)
        symlink(snapshots, "../outside")

    def revision_links_out(blobs: Path, snapshot: Path) -> None:
        outside = snapshot.parent.parent.parent / "outside-revision"
        outside.mkdir()
        (outside / "model.safetensors").write_bytes(weights)
        snapshot.rmdir()
        symlink(snapshot, "../../outside-revision")

    add_case(cat, "snapshots-folder-links-out", cache(snapshots_folder_links_out, pick="repo"), exit_code=2)
    add_case(cat, "snapshots-folder-links-out-typed", cache(snapshots_folder_links_out), exit_code=2)
    add_case(cat, "revision-links-out", cache(revision_links_out, pick="repo"), exit_code=2)
    add_case(cat, "revision-links-out-typed", cache(revision_links_out), exit_code=2)

    def no_snapshots(blobs: Path, snapshot: Path) -> None:
        snapshot.rmdir()

    add_case(cat, "no-snapshots", cache(no_snapshots, pick="repo"), exit_code=2)


def add_combined() -> None:
    cat = "combined"
    os_system = pb.stack_global_call("os", "system", "true")
    laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "\n".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi"))

    def kitchen_sink(ws: Workspace) -> Path:
        ws.write("README.md", yaml_card(laughs))
        torch_zip_bytes(ws, obj={}, data_pkl=os_system)
        symlink(ws.dir / "config.json", "/etc/passwd")
        mkfifo(ws.dir / "model.safetensors")
        ws.write("\x1b[2Jtokenizer.json", b"{}")
        ws.text("SHA256SUMS", f"{'0' * 64}  ../../etc/shadow\n")
        ws.text("model.safetensors.index.json", json.dumps({"weight_map": {"w": "/etc/passwd"}}))
        return ws.dir

    add_case(cat, "kitchen-sink", kitchen_sink, "yaml-alias-bomb", "unsafe-code", "path-escape", "special-file",
             "suspicious-file-name", unsafe=["os.system"])

    def three_formats(ws: Workspace) -> Path:
        ws.write("model.safetensors", st_bytes({"w": {**GOOD_HEADER["w"], "shape": [2**32, 2**32, 2]}}, 16))
        ws.write("model.gguf", gguf_file(tensor_count=U64_MAX))
        ws.write("model.pkl", pb.getattr_chain("os", "system", "true"))
        return ws.dir

    add_case(cat, "three-broken-formats", three_formats, "safetensors-shape-overflow", "gguf-length-exceeds-file",
             "unsafe-code", "pickle-uncalled-reduce", unsafe=["builtins.getattr", "builtins.__import__"])

    def grok_and_card(ws: Workspace) -> Path:
        ws.write("README.md", yaml_card("license: apache-2.0\nx: !!python/object/apply:os.system [\"id\"]"))
        ws.write("ckpt-0/tensor00000_000", pb.resolve_name_call("os:system", "true"))
        ws.write("pytorch_model.bin", raw_zip([ZipEntry(b"archive/data.pkl", deflate_zeros(80 << 20), method=8,
                                                        size=80 << 20)]))
        return ws.dir

    add_case(cat, "grok-leaf-card-tag-zip-bomb", grok_and_card, "yaml-code-tag", "unsafe-code", "torch-zip-bomb",
             unsafe=["pkgutil.resolve_name"])

    def broken_shards(ws: Workspace) -> Path:
        stb.write_sharded(ws.dir, {"a": (4, 4), "b": (4, 4), "c": (4, 4)}, 3)
        (ws.dir / "model-00002-of-00003.safetensors").unlink()
        mkfifo(ws.dir / "model-00002-of-00003.safetensors")
        (ws.dir / "model-00003-of-00003.safetensors").unlink()
        symlink(ws.dir / "model-00003-of-00003.safetensors", "model-00003-of-00003.safetensors")
        index = json.loads((ws.dir / "model.safetensors.index.json").read_text())
        index["weight_map"]["d"] = "../../../../etc/passwd"
        (ws.dir / "model.safetensors.index.json").write_text(json.dumps(index))
        return ws.dir

    add_case(cat, "shards-fifo-loop-escape", broken_shards, "special-file", "symlink-loop", "path-escape",
             "index-missing-shard")

    def alternate_copy_with_payload(ws: Workspace) -> Path:
        stb.write_safetensors(ws.dir / "model.safetensors", {"w": ("F32", (2, 2))})
        torch_zip_bytes(ws, extra_records=[("extra.pkl", os_system)])
        return ws.dir

    add_case(cat, "safetensors-beside-poisoned-bin", alternate_copy_with_payload, "alternate-weights-copy",
             "torch-zip-extra-pickle", "unsafe-code", unsafe=["os.system"])

    def nested_releases(ws: Workspace) -> Path:
        for depth, part in enumerate(["a", "b", "c", "d"]):
            folder = "/".join(["a", "b", "c", "d"][: depth + 1])
            ws.write(f"{folder}/model.pkl", pb.stack_global_call("subprocess", "Popen", part))
            ws.write(f"{folder}/README.md", yaml_card(laughs))
        ws.write(f"a/\x1b]0;{'x' * 10}\x07.safetensors", st_bytes("[]"))
        return ws.dir

    add_case(cat, "nested-folders-of-payloads", nested_releases, "unsafe-code", "suspicious-file-name",
             "safetensors-header-not-object", unsafe=["subprocess.Popen"])

    def every_file_creator(ws: Workspace) -> Path:
        payload = pb.file_creating_pickle(str(ws.canary))
        ws.write("model.pkl", payload)
        ws.write("ckpt-0/tensor00000_000", payload)
        ws.write("notes.txt", payload)
        torch_zip_bytes(ws, obj={}, data_pkl=payload)
        ws.write("legacy.pt", torch_legacy_with(payload))
        return ws.dir

    add_case(cat, "file-creator-in-every-container", every_file_creator, "unsafe-code", unsafe=["builtins.open"],
             canary=True)
