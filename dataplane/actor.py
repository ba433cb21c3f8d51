"""`CastNode`: the Ray actor behind one CastRay node.

It owns a storage directory and a TCP listener on the host's reachable address, receives
files from other nodes, sends files down distribution trees and reports progress. The
worker calls it through Ray; it knows nothing of Django.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Any

from dataplane import wire
from dataplane.contract import (
    Caps,
    CastPlan,
    CastResult,
    FileInfo,
    Hop,
    MessageBatch,
    OriginPolicy,
    PartOf,
    Ping,
    ProgressRow,
    Results,
)
from dataplane.flow import Counters, Limits, Progress
from dataplane.generator import write_generated
from dataplane.inbox import Inbox, send_messages
from dataplane.object_store import StoreReceiver, store_cast
from dataplane.origin import OriginCache
from dataplane.origin_url import parse_origin
from dataplane.partfile import PartRecord, remove_part, stale_parts
from dataplane.process import return_freed_memory_to_the_os, run_at_priority
from dataplane.receiver import NameLocks, Receiver
from dataplane.sender import ChunkSource, send_children
from dataplane.storage import META_DIR, PART_SUFFIX, Manifest, ManifestCache, manifest_for, resolve_in
from dataplane.tree_cast import cast_tree, discard_all_staging, expire_staging, tree_info
from dataplane.udp import udp_cast

log = logging.getLogger("castray.actor")


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux: the peak resident memory of this actor process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_mib() -> dict[str, float]:
    """Resident memory now, split as /proc/self/status does: private (anon), shared memory
    (Ray's object store pages this process has mapped), and file pages."""
    names = {"RssAnon": "rss_anon_mib", "RssShmem": "rss_shmem_mib", "RssFile": "rss_file_mib"}
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in names:
                    out[names[key]] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


class CastNode:
    """One CastRay node. Created by the worker with `ray.remote(CastNode).options(...)`."""

    def __init__(
        self,
        name: str,
        storage_dir: str,
        secret: bytes,
        *,
        port: int = 0,
        io_timeout: float = 60.0,
        bind_address: str | None = None,
        inbox_size: int = 1000,
        nice: int = 0,
    ) -> None:
        import ray  # only inside the actor: the control plane imports this module's helpers

        return_freed_memory_to_the_os()
        run_at_priority(nice)
        self.name = name
        self.root = Path(storage_dir).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.secret = secret
        self.limits = Limits(io_timeout=io_timeout)
        self.progress = Progress()
        self.manifests = ManifestCache(self.root)
        self.origins = OriginCache(self.root, self.manifests)
        self.counters = Counters()
        self.locks = NameLocks()
        self.inbox = Inbox(inbox_size)
        self.store = StoreReceiver(self.root, self.manifests, self.progress, self.limits)
        self.ray_node_id = ray.get_runtime_context().get_node_id()
        # Advertise the address other hosts reach this Ray node on, never localhost alone.
        self.address = bind_address or ray.util.get_node_ip_address()
        self.listener = socket.create_server((self.address, port), backlog=128, reuse_port=False)
        self.port = self.listener.getsockname()[1]
        self.started = time.time()
        self._stopping = False
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True, name="accept")
        self._accept_thread.start()

    # --- listener -------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                conn, _peer = self.listener.accept()
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.05)
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="recv").start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            Receiver(
                root=self.root,
                secret=self.secret,
                progress=self.progress,
                manifests=self.manifests,
                limits=self.limits,
                counters=self.counters,
                locks=self.locks,
                address=self.address,
                inbox=self.inbox,
            ).handle(conn)

    # --- worker-facing methods --------------------------------------------------------
    def ping(self, caps: Caps | None = None) -> Ping:
        """Heartbeat; the worker passes the node's current caps along with it."""
        if caps is not None:
            self.limits.set_caps(caps.egress, caps.ingress, stamp=caps.stamp)
        memory = memory_mib()
        return Ping(
            name=self.name,
            address=self.address,
            port=self.port,
            ray_node_id=self.ray_node_id,
            pid=os.getpid(),
            storage_dir=str(self.root),
            peak_rss_mib=round(peak_rss_mib(), 1),
            bytes_sent=self.counters.total,
            time=time.time(),
            rss_anon_mib=memory.get("rss_anon_mib", 0.0),
            rss_shmem_mib=memory.get("rss_shmem_mib", 0.0),
            rss_file_mib=memory.get("rss_file_mib", 0.0),
        )

    def cast(self, plan: CastPlan) -> CastResult:
        """Send `plan.name` to the tree under this node; return each target's result."""
        started = time.time()
        if self._is_dir(plan.name):
            return cast_tree(
                self.root, self.manifests, plan, secret=self.secret, limits=self.limits, counters=self.counters
            )
        try:
            path, manifest = manifest_for(self.root, self.manifests, plan.name, plan.chunk_size)
        except (OSError, ValueError) as exc:
            return CastResult(ok=False, error=f"source file unavailable on {self.name}: {exc}")
        if plan.sha256 and plan.sha256 != manifest.sha256:
            return CastResult(ok=False, error=f"{plan.name} changed on {self.name} since the cast was queued")
        if plan.mode == "object_store":
            results = store_cast(plan, path, manifest, limits=self.limits, counters=self.counters)
        elif plan.mode == "udp":
            results = udp_cast(plan, path, manifest, secret=self.secret, limits=self.limits, counters=self.counters)
        else:
            results = self._cast_tcp(plan, path, manifest)
        return CastResult(
            ok=True,
            size=manifest.size,
            sha256=manifest.sha256,
            results=results,
            source_bytes=self.counters.of(plan.transfer),
            seconds=time.time() - started,
            peak_rss_mib=round(peak_rss_mib(), 1),
        )

    def _cast_tcp(self, plan: CastPlan, path: Path, manifest: Manifest) -> Results:
        return self._send_tree(path, manifest, plan.children, plan.transfer, plan.dest_name)

    def _send_tree(
        self, path: Path, manifest: Manifest, children: tuple[Hop, ...], transfer: int, name: str
    ) -> Results:
        source = ChunkSource.from_manifest(path, manifest)
        results, threads = send_children(
            source,
            children,
            transfer=transfer,
            name=name,
            secret=self.secret,
            limits=self.limits,
            counters=self.counters,
        )
        for thread in threads:
            thread.join()
        return results

    # --- object-store mode: called by the source actor ------------------------------
    def store_begin(
        self, transfer: int, target: int, name: str, size: int, sha256: str, chunk_size: int
    ) -> dict[str, Any]:
        return self.store.begin(transfer, target, name, size, sha256, chunk_size)

    def store_chunk(self, transfer: int, target: int, index: int, crc: int, data: bytes) -> None:
        self.store.chunk(transfer, target, index, crc, data)

    def store_end(self, transfer: int, target: int, error: str) -> dict[str, Any]:
        return self.store.end(transfer, target, error)

    # --- messages ----------------------------------------------------------------------
    def send_messages(self, batches: list[MessageBatch]) -> dict[int, str]:
        """Deliver each batch to its node's inbox; return delivery id -> "" or the reason."""
        outcome: dict[int, str] = {}

        def run(batch: MessageBatch) -> None:
            ids = [m.id for m in batch.messages]
            try:
                acked = send_messages(
                    batch.address,
                    batch.port,
                    [m.to_wire() for m in batch.messages],
                    secret=self.secret,
                    timeout=self.limits.io_timeout,
                )
            except (OSError, wire.ProtocolError) as exc:
                outcome.update({i: f"could not reach {batch.node}: {exc}" for i in ids})
                return
            outcome.update({i: "" if i in acked else f"{batch.node} did not acknowledge it" for i in ids})

        threads = [threading.Thread(target=run, args=(batch,), daemon=True) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcome

    def inbox_latest(self, count: int = 50) -> list[dict[str, Any]]:
        return self.inbox.latest(count)

    def progress_of(self, transfer: int) -> dict[int, ProgressRow]:
        return self.progress.snapshot(transfer)

    def forget(self, transfer: int) -> None:
        """The cast is over: drop its progress, and whatever a directory version left staged."""
        self.progress.forget(transfer)
        discard_all_staging(self.root, transfer)

    def move(self, transfer: int, target: int) -> dict[str, Any]:
        """End this node's receive of `target`, keeping its chunks, so another node can feed it.

        Returns once that receive has ended (its status and bytes then), so that the new feeder's offer
        is not ended by the same mark: the caller starts the feed only after this answers.
        """
        self.limits.moved.add((transfer, target))
        try:
            deadline = time.monotonic() + self.limits.io_timeout
            while time.monotonic() < deadline:
                row = self.progress.snapshot(transfer).get(target)
                if row is None or row.status not in ("receiving", "verifying"):
                    # What the ended receive took in: the feeder sends only the chunks it lacks.
                    return {
                        "status": row.status if row else "pending",
                        "bytes_received": row.bytes_received if row else 0,
                    }
                time.sleep(0.02)
            return {"status": "receiving", "bytes_received": 0}
        finally:
            self.limits.moved.discard((transfer, target))

    def feed(self, transfer: int, name: str, chunk_size: int, dest_name: str, hop: Hop) -> Results:
        """Send `name` (held whole here) to one moved target, which resumes from the chunks it holds."""
        path, manifest = manifest_for(self.root, self.manifests, name, chunk_size)
        return self._send_tree(path, manifest, (hop,), transfer, dest_name)

    def cancel(self, transfer: int) -> None:
        """Stop sending and receiving chunks of `transfer`; what arrived is kept for resume."""
        self.limits.cancelled.add(transfer)

    def abort(self, transfer: int, target: int, part: PartOf | None = None) -> ProgressRow:
        """The worker gave up on this target: stop receiving it, never rename, keep the part.

        Answers what this node did for it (`Progress.once_stopped`): `sha256` is set when the
        file was verified and renamed before the abort came (the worker records it completed).
        With `part`, also what the disk holds once the receive stopped (`bytes_on_disk`, from
        the part's chunk record): the row may be gone (a new actor after the host came back) or
        behind what reached the disk, and the record is what a retry resumes from.
        """
        digest = self.limits.abort(transfer, target)
        row = self.progress.once_stopped(transfer, target, lambda: (transfer, target) in self.limits.streams, digest)
        if part is not None and not digest:
            try:
                path = resolve_in(self.root, part.name)
                record = PartRecord.of(self.root, part.name, part.size, part.chunk_size, part.sha256)
                row.bytes_on_disk = record.held_bytes(path.with_name(path.name + PART_SUFFIX))
            except (OSError, ValueError):
                pass  # an unsafe or unreadable name: the row alone answers
        return row

    def file_info(self, name: str, chunk_size: int) -> FileInfo:
        if self._is_dir(name):
            return tree_info(self.root, self.manifests, name, chunk_size)
        path, manifest = manifest_for(self.root, self.manifests, name, chunk_size)
        return FileInfo(name=name, size=manifest.size, sha256=manifest.sha256)

    def fetch_origin(self, url: str, name: str, chunk_size: int, policy: OriginPolicy) -> FileInfo:
        """Put what `url` holds under `name` in the storage, fetched once (see dataplane/origin.py).

        Raises OriginError (an OSError) with the reason in words, without credentials.
        """
        if parse_origin(url).is_prefix:  # an s3://bucket/prefix/: a directory, cast as one version
            self.origins.fetch_prefix(url, name, chunk_size, policy)
            return tree_info(self.root, self.manifests, name, chunk_size)
        _path, manifest = self.origins.fetch(url, name, chunk_size, policy)
        return FileInfo(name=name, size=manifest.size, sha256=manifest.sha256)

    def _is_dir(self, name: str) -> bool:
        try:
            return resolve_in(self.root, name).is_dir()
        except ValueError:
            return False  # a bad name: the single-file path reports it

    def list_files(self) -> list[dict[str, Any]]:
        out = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not (Path(dirpath) == self.root and d == META_DIR)]
            for filename in filenames:
                path = Path(dirpath) / filename
                rel = str(path.relative_to(self.root))
                st = path.lstat()
                out.append(
                    {
                        "name": rel,
                        "size": st.st_size,
                        "modified": st.st_mtime,
                        "partial": filename.endswith(PART_SUFFIX),
                        "sha256": self.manifests.peek_sha256(rel, path),
                    }
                )
        return sorted(out, key=lambda row: row["name"])

    def delete_file(self, name: str) -> bool:
        path = resolve_in(self.root, name)
        if not path.is_file():
            return False
        path.unlink()
        return True

    def expire_parts(self, max_age: float, keep: list[str]) -> list[str]:
        """Remove `.part` files (and chunk records) and directory staging idle for `max_age` seconds.

        A failed or abandoned receive keeps its `.part` so that a retry resumes from it; one that
        no cast in `keep` (the names queued and running casts will write) will resume only holds
        space. A name being received right now is left alone.
        """
        removed = []
        for name in stale_parts(self.root, max_age, time.time()):
            lock = self.locks.hold(name)
            if name in keep or not lock.acquire(blocking=False):
                continue
            try:
                if remove_part(self.root, name):
                    removed.append(name)
            finally:
                lock.release()
        return removed + expire_staging(self.root, max_age, time.time(), keep)

    def generate_file(self, name: str, size: int, content: str, chunk_size: int) -> FileInfo:
        """Write a file of exactly `size` bytes and record its manifest while writing."""
        path = resolve_in(self.root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(path.name + PART_SUFFIX)
        staging.unlink(missing_ok=True)
        manifest = write_generated(staging, size=size, content=content, chunk_size=chunk_size)
        os.replace(staging, path)
        self.manifests.put(name, path, manifest)
        return FileInfo(name=name, size=manifest.size, sha256=manifest.sha256)

    def stop(self) -> None:
        self._stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
