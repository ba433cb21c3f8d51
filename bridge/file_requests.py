"""Files on nodes of other hosts: list, fetch and delete, recorded as requests the worker carries out.

Lists and deletes are calls to the node's actor; a fetch copies the file into the worker's
spool with Ray tasks pinned to the node's host, from where the API serves the download. Each
request runs in a thread of the worker's, so a long download never holds up casts; the pool
threads touch no database, the worker's own thread writes every result.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from clusters import services
from clusters.models import NodeFileRequest
from clusters.services import file_requests_expire
from nodes.models import Node

FETCH_BLOCK = 8 * 1024 * 1024
FETCH_IN_FLIGHT = 4  # blocks read ahead of the one being written
FILE_JOBS = 4  # file requests served at once per worker
SPOOL_KEEP_SECONDS = 3600.0  # fetched files stay downloadable this long
SPOOL_SWEEP_SECONDS = 60.0

# What a request came to: (result, error, spool path).
Outcome = tuple[dict[str, Any], str, str]


@dataclass(frozen=True)
class ReadTasks:
    """The Ray tasks that read a file on its node's host (dataplane/remote_read.py)."""

    stat: Any
    read: Any

    @classmethod
    def make(cls) -> ReadTasks:
        import ray
        import ray.cloudpickle

        from dataplane import remote_read

        # By value, as remote_read expects: the functions travel with each call.
        ray.cloudpickle.register_pickle_by_value(remote_read)
        return cls(stat=ray.remote(remote_read.stat_file), read=ray.remote(remote_read.read_range))


def spool_dir() -> Path:
    return Path(settings.DATA_DIR) / "spool"


class FileRequestSteps:
    worker_id: str
    actors: dict[int, Any]
    file_pool: ThreadPoolExecutor | None  # started with the first request
    file_jobs: dict[Future[Outcome], int]  # running job -> its request id
    read_tasks: ReadTasks | None  # made with the first request
    last_spool_sweep: float
    nodes: Callable[[], QuerySet[Node]]  # nodes.py

    def serve_file_requests(self) -> list[int]:
        """Start the recorded file requests for nodes whose actor this worker has; return their ids."""
        now = time.monotonic()
        if now - self.last_spool_sweep > SPOOL_SWEEP_SECONDS:
            self.last_spool_sweep = now
            self.sweep_spool()
        self.finish_file_jobs()
        room = FILE_JOBS - len(self.file_jobs)
        if room <= 0:
            return []
        online = set(self.nodes().online().values_list("pk", flat=True)) & set(self.actors)
        if not online:
            return []
        if self.file_pool is None:
            self.file_pool = ThreadPoolExecutor(max_workers=FILE_JOBS, thread_name_prefix="castray-files")
        if self.read_tasks is None:
            self.read_tasks = ReadTasks.make()
        started = []
        for request in services.file_request_claim(worker_id=self.worker_id, node_ids=online, limit=room):
            job = self.file_pool.submit(serve_file_request, self.actors[request.node_id], request, self.read_tasks)
            self.file_jobs[job] = request.pk
            started.append(request.pk)
        return started

    def finish_file_jobs(self) -> list[int]:
        """Write the results of the requests whose job is done; return their ids."""
        finished = []
        for job in [j for j in self.file_jobs if j.done()]:
            request_id = self.file_jobs.pop(job)
            result, error, spool_path = job.result()
            services.file_request_finish(request_id=request_id, result=result, error=error, spool_path=spool_path)
            finished.append(request_id)
        return finished

    def sweep_spool(self) -> int:
        """Expire fetched files older than SPOOL_KEEP_SECONDS and delete them; return how many."""
        paths = file_requests_expire(finished_before=timezone.now() - timedelta(seconds=SPOOL_KEEP_SECONDS))
        for path in paths:
            if path:
                Path(path).unlink(missing_ok=True)
        return len(paths)


def serve_file_request(actor: Any, request: NodeFileRequest, tasks: ReadTasks) -> Outcome:
    """Carry out one request (in a pool thread); return (result, error, spool path). No database here."""
    import ray

    try:
        if request.op == NodeFileRequest.Op.LIST:
            files = ray.get(actor.list_files.remote(), timeout=60)
            return {"files": files, "count": len(files)}, "", ""
        if request.op == NodeFileRequest.Op.DELETE:
            deleted = ray.get(actor.delete_file.remote(request.name), timeout=60)
            error = "" if deleted else f"{request.name} is not a file in {request.node.name}'s storage"
            return {"deleted": bool(deleted)}, error, ""
        result, path = fetch(request, tasks)
        return result, "", str(path)
    except Exception as exc:  # noqa: BLE001 - every failure is the request's result, in words
        cause = getattr(exc, "cause", None) or exc
        return {}, f"{type(cause).__name__}: {cause}"[:2000], ""


def fetch(request: NodeFileRequest, tasks: ReadTasks) -> tuple[dict[str, Any], Path]:
    """Copy a file from the node's host into the spool, a few blocks in flight; return (info, path)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = request.node
    options: dict[str, Any] = {"num_cpus": 0, "max_retries": 2}
    if node.ray_node_id:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node.ray_node_id, soft=False)
    root = str(node.storage_root)
    info = ray.get(tasks.stat.options(**options).remote(root, request.name), timeout=60)
    size = int(info["size"])
    path = spool(request, size)
    part = path.with_name(path.name + ".part")
    digest = hashlib.sha256()
    pending: deque[Any] = deque()
    offset = 0
    try:
        with open(part, "wb") as handle:
            while offset < size or pending:
                while offset < size and len(pending) < FETCH_IN_FLIGHT:
                    length = min(FETCH_BLOCK, size - offset)
                    pending.append(tasks.read.options(**options).remote(root, request.name, offset, length))
                    offset += length
                block = ray.get(pending.popleft(), timeout=120)
                handle.write(block)
                digest.update(block)
            if handle.tell() != size:
                raise OSError(f"{request.name} changed while it was read ({handle.tell()} of {size} bytes)")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return {"size": size, "sha256": digest.hexdigest(), "modified": info["modified"]}, path


def spool(request: NodeFileRequest, size: int) -> Path:
    """Where a fetched file goes; raises OSError when the spool has no room for `size` bytes."""
    folder = spool_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.disk_usage(folder).free < size + 64 * 1024 * 1024:
        raise OSError(f"not enough space in {folder} for {size} bytes")
    return folder / f"{request.pk}-{Path(request.name).name}"
