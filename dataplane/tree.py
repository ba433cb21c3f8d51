"""Directory trees: their manifest, and how a target stages and publishes a new version.

A directory at `name` in a node's storage is published as a symbolic link
`name -> <relative path>/.castray/trees/<key>/<version>/`: a complete, verified version
directory. A target builds the new version beside the old one (files it already holds at
the same path with the same SHA-256 are hard-linked, not received), syncs the filesystem
once, and switches the link with one rename. A reader that resolves `name` once therefore
reads one whole version; the previous version is kept until the next switch, so a reader
that started on it finishes on it. A directory that is not yet one of these links (first
publish over a plain directory) is exchanged with the link in one `renameat2` call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import os
import posixpath
import shutil
import stat
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dataplane.hashing import fsync_dir
from dataplane.storage import META_DIR, ManifestCache, UnsafePath, clean_name, resolve_in

Kind = Literal["file", "dir", "link"]
TREES = "trees"
SUMS = ".sums"  # beside each version: path -> [size, mtime_ns, inode, sha256]
TREE_RECORDS = "tree-records"  # a source's trees, by name: path -> [size, mtime_ns, inode, sha256]
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class Entry:
    """One thing in a tree; `path` is relative to the tree, '/'-separated."""

    path: str
    kind: Kind
    size: int = 0
    mode: int = 0o644  # permission bits only
    mtime_ns: int = 0
    sha256: str = ""
    target: str = ""  # links: where it points, relative to its own directory

    def to_wire(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in ("", 0) or k in ("path", "kind")}


@dataclass
class TreeManifest:
    entries: list[Entry] = field(default_factory=list)

    @property
    def files(self) -> list[Entry]:
        return [e for e in self.entries if e.kind == "file"]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.files)

    def digest(self) -> str:
        """Names this exact content: the version a target publishes."""
        sha = hashlib.sha256()
        for e in sorted(self.entries, key=lambda e: e.path):
            sha.update(f"{e.path}\0{e.kind}\0{e.size}\0{e.mode:o}\0{e.sha256}\0{e.target}\n".encode())
        return sha.hexdigest()

    def to_wire(self) -> list[dict[str, Any]]:
        return [e.to_wire() for e in self.entries]

    @classmethod
    def from_wire(cls, raw: Any) -> TreeManifest:
        """Rebuild and check a manifest from the network; raises UnsafePath or ValueError."""
        if not isinstance(raw, list) or len(raw) > MAX_ENTRIES:
            raise ValueError("a tree manifest must be a list of at most {MAX_ENTRIES} entries")
        entries = []
        for row in raw:
            try:
                entry = Entry(**row)
            except TypeError as exc:
                raise ValueError(f"malformed tree entry: {exc}") from None
            check_entry(entry)
            entries.append(entry)
        if len({e.path for e in entries}) != len(entries):
            raise ValueError("a tree manifest names a path twice")
        return cls(entries)


def check_entry(entry: Entry) -> None:
    """Refuse paths that leave the tree and links that point out of it."""
    if entry.kind not in ("file", "dir", "link"):
        raise ValueError(f"unknown kind {entry.kind!r} in a tree manifest")
    if clean_name(entry.path) != entry.path:
        raise UnsafePath(f"{entry.path!r} is not a normal relative path")
    if not 0 <= entry.mode <= 0o7777 or entry.size < 0:
        raise ValueError(f"{entry.path}: bad mode or size")
    if entry.kind == "link":
        landing = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), entry.target))
        if not entry.target or entry.target.startswith("/") or landing == ".." or landing.startswith("../"):
            raise UnsafePath(f"{entry.path} is a symbolic link leading outside the tree ({entry.target})")


def tree_dir(root: Path, name: str) -> Path:
    """The directory `name` names now (through its version link), or FileNotFoundError."""
    path = resolve_in(root, name).resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"{name} is not a directory in this node's storage")
    return path


def build_manifest(root: Path, manifests: ManifestCache, name: str, chunk_size: int) -> TreeManifest:
    """Walk the directory `name`; SHA-256s come from the tree's record, else the per-file cache.

    The tree's record (one JSON file for the whole tree, in the metadata directory) maps each
    file to its identity and SHA-256, so that a walk of an unchanged tree of 2,000 files reads
    one file rather than 2,000 manifests. Raises UnsafePath naming the first link that leads
    outside the tree.
    """
    top = tree_dir(root, name)
    record = tree_record(root, name)
    known = _read_dict(record)
    seen: dict[str, list[Any]] = {}
    entries: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames.sort()
        for item in sorted(dirnames) + sorted(filenames):
            path = here / item
            rel = path.relative_to(top).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(rel, "link", target=_inner_link(top, path, rel, name)))
                if item in dirnames:
                    dirnames.remove(item)  # recreated as a link, not walked into
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(rel, "dir", mode=stat.S_IMODE(st.st_mode)))
            elif stat.S_ISREG(st.st_mode):
                identity = [st.st_size, st.st_mtime_ns, st.st_ino]
                hit = known.get(rel)
                if isinstance(hit, list) and hit[:3] == identity and len(hit) == 4:
                    sha = str(hit[3])
                else:
                    sha = manifests.sha256(f"{name}/{rel}", path, chunk_size)
                seen[rel] = [*identity, sha]
                entries.append(Entry(rel, "file", st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns, sha))
            if len(entries) > MAX_ENTRIES:
                raise ValueError(f"{name} holds more than {MAX_ENTRIES} entries")
    if seen != known:
        with contextlib.suppress(OSError):  # a record that cannot be written (a full disk) only costs speed
            _write_dict(record, seen)
    return TreeManifest(entries)


def tree_record(root: Path, name: str) -> Path:
    """Where build_manifest keeps the identities and SHA-256s of the tree `name`'s files."""
    return Path(root) / META_DIR / TREE_RECORDS / (hashlib.sha1(clean_name(name).encode()).hexdigest() + ".json")


def _read_dict(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _write_dict(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # two writers never share one
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _inner_link(top: Path, path: Path, rel: str, name: str) -> str:
    """A link's target relative to its directory, if it resolves inside the tree."""
    target = os.readlink(path)
    landing = Path(os.path.normpath(path.parent / target)) if not os.path.isabs(target) else Path(target)
    resolved = landing.resolve()
    if resolved != top and top not in resolved.parents:
        raise UnsafePath(f"{name}/{rel} is a symbolic link leading outside {name} ({target})")
    return os.path.relpath(landing, path.parent)


# --- a target's versions -------------------------------------------------------------------


def versions_dir(root: Path, name: str) -> Path:
    return Path(root) / META_DIR / TREES / hashlib.sha1(clean_name(name).encode()).hexdigest()[:20]


def staging_dir(root: Path, name: str, transfer: int) -> Path:
    """Where transfer `transfer` builds the new version of `name`; kept across attempts for resume."""
    return versions_dir(root, name) / f"staging-{transfer}"


def journal_of(staging: Path) -> Path:
    """The list of files a receive verified in `staging` (SHA-256 and path a line), beside it."""
    return staging.with_suffix(".journal")


def read_journal(journal: Path) -> dict[str, str]:
    """path -> SHA-256 of the files a journal records as verified."""
    try:
        lines = journal.read_text().splitlines()
    except OSError:
        return {}
    return dict(reversed(line.split(" ", 1)) for line in lines if " " in line)  # type: ignore[misc]


def verified_elsewhere(staging: Path) -> dict[str, list[tuple[str, Path]]]:
    """path -> (SHA-256, file) verified by earlier casts of the same name in their own staging.

    A receive that failed keeps its staging (its retry is a new cast, with a staging of its
    own), so the retry can take the files it verified instead of asking for them again.
    """
    found: dict[str, list[tuple[str, Path]]] = {}
    for journal in sorted(staging.parent.glob("staging-*.journal")):
        if journal != journal_of(staging):
            for path, sha in read_journal(journal).items():
                found.setdefault(path, []).append((sha, journal.with_suffix("") / path))
    return found


def sha_of(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return ""


def adopt_verified(candidates: list[tuple[str, Path]] | tuple[()], entry: Entry, staged: Path, journal: Path) -> bool:
    """Hard-link into `staged` a copy of `entry` that another cast verified, if one still hashes right."""
    for sha, path in candidates:
        if sha == entry.sha256 and sha_of(path) == entry.sha256:
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.unlink(missing_ok=True)
            os.link(path, staged)
            with open(journal, "a") as log_file:
                log_file.write(f"{entry.sha256} {entry.path}\n")
            return True
    return False


def drop_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    journal_of(staging).unlink(missing_ok=True)


def current_version(root: Path, name: str) -> Path | None:
    """The directory `name` shows now (a version, or a plain directory), if any."""
    try:
        return tree_dir(root, name)
    except (FileNotFoundError, UnsafePath):
        return None


def assemble(staging: Path, manifest: TreeManifest, current: Path | None, *, mirror: bool) -> None:
    """Complete the staged version: link unchanged files from `current`, make dirs and links, set modes.

    Files received are already in `staging`. Without `mirror`, files only `current` has are kept.
    """
    wanted = {e.path for e in manifest.entries}
    for entry in sorted(manifest.entries, key=lambda e: e.path):
        path = staging / entry.path
        if entry.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
        elif entry.kind == "link":
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_symlink():
                os.symlink(entry.target, path)
        elif not path.exists():
            assert current is not None, f"{entry.path} neither received nor held"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(current / entry.path, path)
    if current is not None and not mirror:
        for dirpath, _dirnames, filenames in os.walk(current):
            for filename in filenames:
                rel = (Path(dirpath) / filename).relative_to(current).as_posix()
                if rel not in wanted and not (staging / rel).exists():
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.link(Path(dirpath) / filename, staging / rel, follow_symlinks=False)
    # Modes and times last: a read-only directory would refuse the links made inside it.
    for entry in sorted(manifest.entries, key=lambda e: e.path, reverse=True):
        if entry.kind == "file":
            os.utime(staging / entry.path, ns=(entry.mtime_ns, entry.mtime_ns))
        if entry.kind != "link":
            os.chmod(staging / entry.path, entry.mode)


def publish(root: Path, name: str, staging: Path, version: str) -> Path:
    """Make `staging` the version `name` shows, in one step; drop versions older than the previous one."""
    link = resolve_in(root, name)
    versions = staging.parent
    final = versions / version
    if final.exists():
        shutil.rmtree(final)
    _syncfs(staging)  # one sync for every file of the version, before anything points at it
    os.replace(staging, final)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.castray-link")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(final, link.parent), tmp)
    previous = os.readlink(link) if link.is_symlink() else None
    if link.is_dir() and not link.is_symlink():
        _exchange(tmp, link)  # a plain directory: swap it with the link, then drop it
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, link)
    fsync_dir(link.parent)
    keep = {final.name} | ({Path(previous).name} if previous else set())
    for old in versions.iterdir():
        if old.name.startswith("staging-"):
            # What earlier failed receives of `name` kept for a retry: this version supersedes it
            # (the caller holds the name's lock, so none of them is being received into now).
            drop_staging(versions / old.name.removesuffix(".journal"))
        elif old.name.endswith(SUMS) and old.name.removesuffix(SUMS) not in keep:
            old.unlink(missing_ok=True)
        elif old.is_dir() and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return final


def write_sums(version: Path, manifest: TreeManifest) -> None:
    """Record each file's identity and SHA-256 beside a published version (one write for all)."""
    sums = {}
    for entry in manifest.files:
        st = (version / entry.path).lstat()
        sums[entry.path] = [st.st_size, st.st_mtime_ns, st.st_ino, entry.sha256]
    _write_dict(version.with_name(version.name + SUMS), sums)


def read_sums(version: Path) -> dict[str, list[Any]]:
    """What write_sums recorded for `version` (nothing for a plain directory, or a damaged record)."""
    return _read_dict(version.with_name(version.name + SUMS))


def _syncfs(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc is not None and hasattr(_libc, "syncfs"):
            _libc.syncfs(fd)
        else:
            os.sync()
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> None:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE)."""
    at_fdcwd, rename_exchange = -100, 2
    if _libc is None or _libc.renameat2(at_fdcwd, bytes(a), at_fdcwd, bytes(b), rename_exchange) != 0:
        raise OSError(ctypes.get_errno(), f"cannot switch {b} to its new version atomically")


try:
    _libc: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
except OSError:
    _libc = None
