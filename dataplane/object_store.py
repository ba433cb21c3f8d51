"""Object-store mode: moving a file through Ray's object store instead of a TCP tree.

The source puts each chunk into Ray's object store once; every receiver's actor gets it from
there (Ray moves it between hosts) and writes it. It keeps TCP mode's guarantees: a CRC-32C
per chunk, the whole file's SHA-256 checked at every receiver, `.part` then fsync then
rename. Must not import Django.
"""

from __future__ import annotations

import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import CastPlan, Results, TargetResult
from dataplane.flow import Counters, Limits, Progress
from dataplane.partfile import PartFile
from dataplane.storage import Manifest, ManifestCache, UnsafePath


def store_cast(
    plan: CastPlan, path: Path, manifest: Manifest, *, limits: Limits, counters: Counters, window: int = 8
) -> Results:
    """Source side: put every chunk into the object store once; each target pulls it."""
    import ray

    transfer = plan.transfer
    name = plan.dest_name
    results: Results = {}
    handles: dict[int, Any] = {}
    begins = {}
    for hop in plan.targets():
        target = hop.target
        try:
            handles[target] = ray.get_actor(plan.actors[target], namespace=plan.namespace)
        except (KeyError, ValueError) as exc:
            results[target] = TargetResult(status="failed", error=f"no actor for {hop.node}: {exc}")
            continue
        begins[target] = handles[target].store_begin.remote(
            transfer, target, name, manifest.size, manifest.sha256, manifest.chunk_size
        )
    have: dict[int, bytearray] = {}
    for target, ref in begins.items():
        try:
            answer = ray.get(ref, timeout=limits.io_timeout)
        except Exception as exc:  # noqa: BLE001 - each target fails on its own
            results[target] = TargetResult(status="failed", error=f"could not start: {exc}")
            continue
        if answer["status"] != "ready":
            results[target] = TargetResult(status=answer["status"], error=answer.get("error", ""))
            continue
        have[target] = wire.bitmap_from_hex(answer["have"], manifest.chunk_count)
    pending: list[tuple[int, Any]] = []
    failed: dict[int, str] = {}

    def drain(limit: int) -> None:
        while len(pending) > limit:
            target, ref = pending.pop(0)
            try:
                ray.get(ref, timeout=limits.io_timeout)
            except Exception as exc:  # noqa: BLE001
                failed.setdefault(target, f"chunk delivery failed: {_first_line(exc)}")

    with open(path, "rb", buffering=0) as handle:
        for index in range(manifest.chunk_count):
            wanting = [t for t in have if t not in failed and not wire.bit_get(have[t], index)]
            if not wanting:
                continue
            limits.check(transfer)
            length = min(manifest.chunk_size, manifest.size - index * manifest.chunk_size)
            if limits.egress:
                limits.egress.consume(length)
            data = os.pread(handle.fileno(), length, index * manifest.chunk_size)
            ref = ray.put(data)
            del data
            counters.add(transfer, length)
            for target in wanting:
                pending.append(
                    (target, handles[target].store_chunk.remote(transfer, target, index, manifest.crcs[index], ref))
                )
            drain(window * max(1, len(wanting)))
    drain(0)
    ends = {t: handles[t].store_end.remote(transfer, t, failed.get(t, "")) for t in have}
    for target, ref in ends.items():
        try:
            results[target] = ray.get(ref, timeout=limits.io_timeout + manifest.size / (1024 * 1024))
        except Exception as exc:  # noqa: BLE001
            results[target] = TargetResult(status="failed", error=f"could not finish: {_first_line(exc)}")
    return results


class StoreReceiver:
    """Receiver side of object-store mode: one PartFile per (transfer, target)."""

    def __init__(self, root: Path, manifests: ManifestCache, progress: Progress, limits: Limits) -> None:
        self.root = root
        self.manifests = manifests
        self.progress = progress
        self.limits = limits
        self.parts: dict[tuple[int, int], PartFile] = {}
        self.lock = threading.Lock()

    def begin(self, transfer: int, target: int, name: str, size: int, sha256: str, chunk_size: int) -> dict[str, Any]:
        try:
            part = PartFile(self.root, name, size, sha256, chunk_size)
        except (OSError, UnsafePath) as exc:
            return {"status": "failed", "error": str(exc)}
        self.progress.set(
            transfer, target, status="receiving", started=time.time(), size=size, bytes_done=0, bytes_received=0
        )
        if part.already_complete(self.manifests):
            part.abandon(delete=True)
            self.progress.set(transfer, target, status="skipped", finished=time.time())
            return {"status": "skipped"}
        self.progress.add_bytes(transfer, target, part.held_bytes())
        with self.lock:
            self.parts[(transfer, target)] = part
        return {"status": "ready", "have": wire.bitmap_to_hex(part.have)}

    def chunk(self, transfer: int, target: int, index: int, crc: int, data: bytes) -> None:
        part = self.parts[(transfer, target)]
        self.limits.check(transfer, target)
        if self.limits.ingress:
            self.limits.ingress.consume(len(data))
        if part.write(index, data, crc):  # a chunk sent again is no progress
            self.progress.add_bytes(transfer, target, len(data), received=len(data))

    def end(self, transfer: int, target: int, error: str) -> TargetResult:
        with self.lock:
            part = self.parts.pop((transfer, target))
        if error:
            part.abandon()
            outcome = TargetResult(status="failed", error=error, bytes_received=part.received)
        else:
            self.progress.set(transfer, target, status="verifying")
            try:
                digest = part.finish(self.manifests, partial(self.limits.committing, transfer, target))
                outcome = TargetResult(status="completed", sha256=digest, bytes_received=part.received)
            except (OSError, ValueError) as exc:
                part.abandon()
                outcome = TargetResult(status="failed", error=str(exc), bytes_received=part.received)
        self.progress.finish(transfer, target, outcome)
        return outcome


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]
