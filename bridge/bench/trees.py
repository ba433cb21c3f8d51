"""Benchmark of directory casts (`castray_bench tree`) against a tar stream over loopback.

`small` (2,000 files of 64 KiB) and `shards` (8 x 64 MiB and 16 small JSON files) are cast
from one node to another through the whole system; the reference pipes `tar -c` of the same
tree through a loopback TCP socket into `tar -x` in an empty directory, then syncs. The
source's tree is hashed before the clock starts (a node hashes a file once, at upload or
first cast, as it does for single files). `recast-one-changed` rewrites one shard and casts
again: bytes moved / the changed file's size.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bridge.bench.casts import BenchCluster, settle
from dataplane.tree import current_version, versions_dir

KiB, MiB = 1024, 1024 * 1024


def write_small(top: Path, files: int = 2000, size: int = 64 * KiB) -> None:
    for i in range(files):
        folder = top / f"d{i // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:04d}.bin").write_bytes(os.urandom(size))


def write_shards(top: Path, shards: int = 8, size: int = 64 * MiB) -> None:
    top.mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        with open(top / f"shard-{i}.bin", "wb") as out:
            for _ in range(size // MiB):
                out.write(os.urandom(MiB))
    for i in range(16):
        (top / f"meta-{i}.json").write_text(json.dumps({"shard": i % shards, "pad": "x" * 512}))


def tar_reference(src: Path, dst: Path) -> float:
    """Seconds to stream `src` as tar through a loopback socket into `dst`, then sync."""
    dst.mkdir(parents=True)
    server = socket.create_server(("127.0.0.1", 0))
    extract = subprocess.Popen(["tar", "-C", str(dst), "-xf", "-"], stdin=subprocess.PIPE)
    assert extract.stdin is not None

    def receive() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(MiB):
                extract.stdin.write(data)  # type: ignore[union-attr]
        extract.stdin.close()  # type: ignore[union-attr]

    started = time.perf_counter()
    thread = threading.Thread(target=receive)
    thread.start()
    create = subprocess.Popen(["tar", "-C", str(src), "-cf", "-", "."], stdout=subprocess.PIPE)
    assert create.stdout is not None
    with socket.create_connection(server.getsockname()) as sock:
        while data := create.stdout.read(MiB):
            sock.sendall(data)
    create.wait()
    thread.join()
    extract.wait()
    os.sync()
    seconds = time.perf_counter() - started
    server.close()
    return seconds


def forget_tree(root: Path, name: str) -> None:
    """Remove a target's copy of a tree (its link and every version), as if it never had one."""
    (root / name).unlink(missing_ok=True)
    shutil.rmtree(versions_dir(root, name), ignore_errors=True)


def tree_bytes(top: Path) -> tuple[int, int]:
    files = [p for p in top.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_tree(cases: list[str], *, repeat: int = 1) -> list[dict[str, Any]]:
    cluster = BenchCluster()
    rows: list[dict[str, Any]] = []
    try:
        cluster.connect()
        source, target = cluster.make_nodes(2)
        src_root = Path(source.storage_root)
        for case in [c for c in cases if c in ("small", "shards")]:
            top = src_root / case
            (write_small if case == "small" else write_shards)(top)
            cluster.call(source, "file_info", case, cluster.worker.config.chunk_size)  # hashed once, as on upload
            files, size = tree_bytes(top)
            ours, refs, ok = [], [], True
            # Alternate the two so that drift on a shared machine hits both alike; keep the best.
            for run in range(repeat):
                # Both start after the same deletions (the reference's last copy, the target's
                # last version), and take turns at going first: ext4 without a journal, as on
                # this project's VM, skips inodes freed in the last minute when it allocates
                # new ones, looking at each, so creating 2,000 files right after 4,000 were
                # deleted cost 0.5 ms a file of CPU, five times the cost 70 s later.
                shutil.rmtree(cluster.root / f"tar-{case}", ignore_errors=True)
                forget_tree(Path(target.storage_root), case)  # each run moves the whole tree
                for step in ("reference", "cast") if run % 2 == 0 else ("cast", "reference"):
                    settle()
                    if step == "reference":
                        refs.append(tar_reference(top, cluster.root / f"tar-{case}"))
                        continue
                    transfer, seconds = cluster.cast(source=source, file_name=case, targets=[target])
                    landed = current_version(Path(target.storage_root), case)
                    ok = ok and transfer.status == "completed" and landed is not None
                    ok = ok and tree_bytes(landed) == (files, size)  # type: ignore[arg-type]
                    ours.append(seconds)
            shutil.rmtree(cluster.root / f"tar-{case}", ignore_errors=True)
            seconds, reference = min(ours), min(refs)
            rows.append(
                {
                    "case": case,
                    "files": files,
                    "size_bytes": size,
                    "seconds": round(seconds, 3),
                    "mb_s": round(size / seconds / 1e6, 1),
                    "files_per_s": round(files / seconds),
                    "reference_mb_s": round(size / reference / 1e6, 1),
                    "ratio": round(reference / seconds, 2),
                    "repeat": repeat,
                    "ok": ok,
                }
            )
            if case == "shards" and "recast-one-changed" in cases:
                rows.append(recast_one_changed(cluster, source, target, top))
    finally:
        cluster.close()
    return rows


def recast_one_changed(cluster: BenchCluster, source: Any, target: Any, top: Path) -> dict[str, Any]:
    changed = top / "shard-3.bin"
    with open(changed, "r+b") as out:
        out.write(os.urandom(MiB))  # the first MiB of one shard changes
    cluster.call(source, "file_info", top.name, cluster.worker.config.chunk_size)
    transfer, seconds = cluster.cast(source=source, file_name=top.name, targets=[target])
    moved = sum(t.bytes_received for t in transfer.targets.all())
    ratio = moved / changed.stat().st_size
    return {
        "case": "recast-one-changed",
        "files": transfer.files,
        "size_bytes": moved,
        "seconds": round(seconds, 3),
        "bytes_moved_ratio": round(ratio, 3),
        "ratio": round(ratio, 3),
        "ok": transfer.status == "completed" and ratio <= 1.05,
    }
