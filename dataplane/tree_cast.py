"""A directory cast on the source actor: the tree's summary for the worker, and one round of it.

The actor calls these when a cast's name is a directory (dataplane/tree.py and tree_wire.py
hold the manifest, the protocol and the publishing). Must not import Django.
"""

from __future__ import annotations

import time
from pathlib import Path

from dataplane.contract import CastPlan, CastResult, FileInfo, fail_subtree
from dataplane.flow import Counters, Limits
from dataplane.storage import META_DIR, ManifestCache
from dataplane.tree import TREES, build_manifest, drop_staging, journal_of, read_journal, versions_dir
from dataplane.tree_wire import send_tree_children, tree_offer


def tree_info(root: Path, manifests: ManifestCache, name: str, chunk_size: int) -> FileInfo:
    """Size, file count and version digest of the directory `name` (its files hashed once, then cached)."""
    manifest = build_manifest(root, manifests, name, chunk_size)
    files = tuple((e.path, e.size, e.sha256) for e in manifest.files)
    return FileInfo(name, manifest.size, manifest.digest(), kind="directory", files=len(files), manifest=files)


def cast_tree(
    root: Path, manifests: ManifestCache, plan: CastPlan, *, secret: bytes, limits: Limits, counters: Counters
) -> CastResult:
    started = time.time()
    try:
        manifest = build_manifest(root, manifests, plan.name, plan.chunk_size)
    except (OSError, ValueError) as exc:
        return CastResult(ok=False, error=f"source directory unavailable: {exc}")
    if plan.sha256 and plan.sha256 != manifest.digest():
        return CastResult(ok=False, error=f"{plan.name} changed since the cast was queued")
    if plan.mode != "tcp":
        reason = f"directories are cast in tcp mode only, not {plan.mode}"
        return CastResult(
            ok=True, results={k: v for hop in plan.children for k, v in fail_subtree(hop, reason).items()}
        )
    results = send_tree_children(
        (root / plan.name).resolve(),
        manifest,
        plan.children,
        tree_offer(plan.transfer, plan.dest_name, manifest, mirror=plan.mirror),
        secret=secret,
        limits=limits,
        counters=counters,
    )
    return CastResult(
        ok=True,
        size=manifest.size,
        sha256=manifest.digest(),
        results=results,
        source_bytes=counters.of(plan.transfer),
        seconds=time.time() - started,
    )


def discard_all_staging(root: Path, transfer: int) -> None:
    """Drop what `transfer` staged on this node and did not publish, unless a retry can use it.

    A receive that verified files before it failed (its actor killed, its link broken) keeps
    them: a retry is a new cast, and takes them instead of asking for them again
    (`verified_elsewhere`). The next version published under the name, or `expire_staging`,
    drops them.
    """
    trees = Path(root) / META_DIR / TREES
    if not trees.is_dir():
        return
    for staged in trees.glob(f"*/staging-{transfer}"):
        if not read_journal(journal_of(staged)):
            drop_staging(staged)


def expire_staging(root: Path, max_age: float, now: float, keep: list[str]) -> list[str]:
    """Drop staging idle for `max_age` seconds, except of the names in `keep`; return what went."""
    trees = Path(root) / META_DIR / TREES
    kept = {versions_dir(root, name).name for name in keep}
    removed = []
    for staged in sorted(trees.glob("*/staging-*")) if trees.is_dir() else ():
        if staged.suffix or staged.parent.name in kept:
            continue
        journal = journal_of(staged)
        touched = max(staged.lstat().st_mtime, journal.lstat().st_mtime if journal.exists() else 0)
        if now - touched > max_age:
            drop_staging(staged)
            removed.append(str(staged.relative_to(root)))
    return removed
