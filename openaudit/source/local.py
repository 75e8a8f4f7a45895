"""A release on the local disk: a folder, a single file, or a Hugging Face cache snapshot.

Nothing is followed out of the release: a link whose target leaves the release root (or, for a cache
snapshot, the cached repository) is a finding and is never read. Special files (FIFOs, devices,
sockets) are findings and are never opened. The walk is bounded in files and depth.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from openaudit.errors import UsageError
from openaudit.findings import Finding, finding
from openaudit.limits import read_text_bounded
from openaudit.release import WEIGHT_SUFFIXES, Release, ReleaseFile, classify, printable

MAX_FILES = 200_000
MAX_DEPTH = 48
# Folders that belong to tooling, not to the release.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints"})

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_DIR = re.compile(r"^(models|datasets|spaces)--(.+)$")


def open_local(spec: str) -> Release:
    """Build the Release for a local path, or raise UsageError when it does not exist."""
    path = Path(spec)
    try:
        st = path.lstat()
    except OSError:
        raise UsageError(f"source not found: {spec}") from None
    _refuse_snapshot_outside_cache(path, spec)
    if stat.S_ISLNK(st.st_mode):
        path = Path(os.path.realpath(path))
        try:
            st = path.stat()
        except OSError:
            raise UsageError(f"source is a broken or looping link: {spec}") from None
    if stat.S_ISDIR(st.st_mode):
        return _open_directory(path.resolve(), spec)
    if stat.S_ISREG(st.st_mode):
        return _open_single_file(path.resolve(), spec)
    raise UsageError(f"source is neither a folder nor a regular file: {spec}")


def _open_single_file(path: Path, spec: str) -> Release:
    entry = ReleaseFile(path=printable(path.name), location=path, size=path.stat().st_size, kind=classify(path.name))
    return Release(root=path.parent, source_kind="file", files=(entry,), display_root=printable(spec))


def _open_directory(root: Path, spec: str) -> Release:
    cache = _hf_cache_layout(root)
    if cache is not None:
        snapshot, repo_dir, repo_id, revision, extra = cache
        files, findings = _walk(snapshot, allowed_root=repo_dir, blob_dir=repo_dir / "blobs")
        return Release(
            root=snapshot,
            source_kind="hf-cache",
            files=files,
            findings=tuple(extra) + findings,
            repo_id=repo_id,
            revision=revision,
            display_root=printable(spec),
        )
    files, findings = _walk(root, allowed_root=root, blob_dir=None)
    return Release(root=root, source_kind="directory", files=files, findings=findings, display_root=printable(spec))


def _hf_cache_layout(path: Path):
    """Recognise ``models--org--name`` or ``models--org--name/snapshots/<rev>``; None otherwise.

    ``path`` is already resolved. A cached repository whose ``snapshots`` folder (or chosen revision) is a
    link that leaves it is refused with a UsageError: the audit would otherwise read files from outside
    the cache while reporting them as the cached repository's, and nothing else is there to audit.
    """
    if path.parent.name == "snapshots" and _REPO_DIR.match(path.parent.parent.name):
        repo_dir = path.parent.parent
        return path, repo_dir, _repo_id(repo_dir.name), path.name, []
    match = _REPO_DIR.match(path.name)
    snapshots_dir = path / "snapshots"
    if not match or not snapshots_dir.is_dir():
        return None
    if snapshots_dir.is_symlink():
        raise UsageError(
            f"{path}/snapshots is a link (to {printable(os.readlink(snapshots_dir))}); the snapshot would leave "
            "the cached repository, so it is not followed"
        )
    entries = list(snapshots_dir.iterdir())
    snapshots = sorted(p for p in entries if p.is_dir() and not p.is_symlink())
    linked = sum(1 for p in entries if p.is_symlink())
    revision = None
    ref = path / "refs" / "main"
    # refs/main names the revision; read it only when it (and the refs folder) stay inside the repository.
    if ref.is_file() and not ref.is_symlink() and _within(os.path.realpath(ref), path):
        revision = read_text_bounded(ref, limit=1024).strip()
    chosen = next((p for p in snapshots if p.name == revision), None)
    if chosen is None and len(snapshots) == 1:
        chosen = snapshots[0]
    if chosen is None:
        raise UsageError(
            f"{path} holds {len(snapshots)} snapshots and no usable refs/main; name one of "
            f"{path}/snapshots/<revision>"
            + (f" ({linked} linked snapshot{'s are' if linked != 1 else ' is'} never followed)" if linked else "")
        )
    if not _within(os.path.realpath(chosen), path):
        raise UsageError(f"the snapshot {chosen} leaves the cached repository {path}; it is not followed")
    return chosen, path, _repo_id(path.name), chosen.name, []


def _refuse_snapshot_outside_cache(path: Path, spec: str) -> None:
    """``models--org--name/snapshots/<rev>`` as typed must resolve inside that cached repository.

    A linked ``snapshots`` folder or revision would otherwise be followed to wherever it points and
    audited there, as though it were the cached snapshot.
    """
    typed = Path(os.path.abspath(path))
    if typed.parent.name != "snapshots" or not _REPO_DIR.match(typed.parent.parent.name):
        return
    repo_dir = os.path.realpath(typed.parent.parent)
    if not _within(os.path.realpath(typed), Path(repo_dir)):
        raise UsageError(
            f"the snapshot {spec} resolves to {printable(os.path.realpath(typed))}, outside the cached repository "
            f"{printable(repo_dir)}; it is not followed"
        )


def _repo_id(dirname: str) -> str:
    return _REPO_DIR.match(dirname).group(2).replace("--", "/")


def _within(target: str, root: Path) -> bool:
    root_text = str(root)
    return target == root_text or target.startswith(root_text.rstrip(os.sep) + os.sep)


def _walk(root: Path, *, allowed_root: Path, blob_dir: Path | None) -> tuple[tuple[ReleaseFile, ...], tuple[Finding, ...]]:
    files: list[ReleaseFile] = []
    findings: list[Finding] = []
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        directory, prefix, depth = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            findings.append(finding("unreadable-file", f"cannot list folder: {exc.strerror}", printable(prefix) or "."))
            continue
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            shown = printable(rel)
            if shown != rel:
                findings.append(finding("suspicious-file-name", "file name holds control characters or undecodable bytes", shown))
            if len(files) >= MAX_FILES:
                findings.append(finding("too-many-files", f"listing stopped after {MAX_FILES} files", shown))
                return tuple(files), tuple(findings)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                findings.append(finding("unreadable-file", f"cannot stat: {exc.strerror}", shown))
                continue
            if stat.S_ISLNK(st.st_mode):
                resolved = _resolve_link(Path(entry.path), shown, allowed_root, findings)
                if resolved is None:
                    continue
                target, target_st = resolved
                if stat.S_ISDIR(target_st.st_mode):
                    findings.append(finding("linked-directory", "a link to a folder inside the release is not followed", shown))
                    continue
                if not stat.S_ISREG(target_st.st_mode):
                    findings.append(finding("special-file", "link to something that is not a regular file", shown))
                    continue
                published = None
                if blob_dir is not None and target.parent == blob_dir and _SHA256.match(target.name):
                    published = target.name
                files.append(ReleaseFile(shown, target, target_st.st_size, classify(shown), published))
            elif stat.S_ISDIR(st.st_mode):
                if entry.name in SKIPPED_DIRS:
                    continue
                if Path(entry.name).suffix.lower() in WEIGHT_SUFFIXES:
                    findings.append(finding("directory-named-like-weights", "a folder carries a weights file's name", shown))
                if depth + 1 > MAX_DEPTH:
                    findings.append(finding("too-deep", f"folders nested deeper than {MAX_DEPTH} are not listed", shown))
                    continue
                stack.append((Path(entry.path), rel + "/", depth + 1))
            elif stat.S_ISREG(st.st_mode):
                files.append(ReleaseFile(shown, Path(entry.path), st.st_size, classify(shown)))
            else:
                findings.append(finding("special-file", f"{_special_kind(st.st_mode)} in the release is never opened", shown))
    files.sort(key=lambda f: f.path)
    return tuple(files), tuple(findings)


def _resolve_link(link: Path, shown: str, allowed_root: Path, findings: list[Finding]):
    try:
        raw_target = os.readlink(link)
    except OSError as exc:
        findings.append(finding("unreadable-file", f"cannot read link: {exc.strerror}", shown))
        return None
    target_text = os.path.realpath(link)
    if not _within(target_text, allowed_root):
        findings.append(
            finding("path-escape", f"link points outside the release, to {printable(raw_target)!s}; not followed", shown)
        )
        return None
    try:
        target_st = os.stat(target_text)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            findings.append(finding("symlink-loop", "link loops back on itself; not followed", shown))
        else:
            findings.append(finding("broken-link", f"link target {printable(raw_target)} does not exist", shown))
        return None
    return Path(target_text), target_st


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"
