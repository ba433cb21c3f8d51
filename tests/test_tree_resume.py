"""Directory casts that break on the receiving side, with real actors: a receiver killed
mid-tree, whose retry must not ask again for the files it had verified."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dataplane.tree import staging_dir, versions_dir
from nodes.models import Node
from tests.dataplane.test_tree import snapshot
from tests.helpers import finished, write_random
from transfers.models import Target, Transfer
from transfers.services import transfer_create
from transfers.services.retry import transfer_retry

pytestmark = [pytest.mark.ray, pytest.mark.django_db]
MiB = 1024 * 1024


def _journal(root: Path, name: str, transfer: int) -> set[str]:
    """The files a receive of `transfer` recorded as verified (path per line, after the SHA-256)."""
    try:
        lines = staging_dir(root, name, transfer).with_suffix(".journal").read_text().splitlines()
    except OSError:
        return set()
    return {line.split(" ", 1)[1] for line in lines if " " in line}


def _gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_receiver_killed_mid_tree_resumes_without_the_files_it_had_verified(worker, make_nodes, settings) -> None:
    import ray

    from dataplane.contract import Caps

    source, target_node = make_nodes(2)
    top = Path(source.storage_root) / "ckpt"
    sizes = {f"shard-{i}.bin" if i % 2 else f"sub/shard-{i}.bin": 3 * MiB + i for i in range(6)}
    for rel, size in sizes.items():
        write_random(top / rel, size)
    total = sum(sizes.values())
    # Slow enough to kill it between files: about a second a file.
    ray.get(worker.actors[target_node.pk].ping.remote(Caps(None, 3 * MiB)))
    first = transfer_create(source=source, file_name="ckpt", targets=[target_node])
    # No heartbeat meanwhile: the cast itself finds out that the actor died.
    settings.CASTRAY_HEARTBEAT_SECONDS = 3600
    worker.last_nodes = time.monotonic()
    here = Path(target_node.storage_root)
    assert worker.run_until(lambda: len(_journal(here, "ckpt", first.pk)) >= 2, timeout=90)
    target_node.refresh_from_db()
    dead_pid = target_node.actor_pid
    os.kill(dead_pid, signal.SIGKILL)
    assert _gone(dead_pid)
    verified = _journal(here, "ckpt", first.pk)
    assert 2 <= len(verified) < len(sizes), verified
    assert worker.run_until(finished(first), timeout=90)
    assert first.status == Transfer.Status.FAILED and first.targets.get().status == Target.Status.FAILED

    settings.CASTRAY_HEARTBEAT_SECONDS = 0.5
    assert worker.run_until(
        lambda: Node.objects.filter(pk=target_node.pk, status=Node.Status.ONLINE).exclude(actor_pid=dead_pid).exists(),
        timeout=90,
    )
    retry = transfer_retry(transfer=first)
    assert worker.run_until(finished(retry), timeout=120)
    assert retry.status == Transfer.Status.COMPLETED, retry.error
    missing = total - sum(sizes[rel] for rel in verified)
    assert retry.targets.get().bytes_received == missing, (verified, retry.targets.get().bytes_received)
    assert retry.source_bytes_sent == missing
    assert snapshot((here / "ckpt").resolve()) == snapshot(top)
    assert not list(versions_dir(here, "ckpt").glob("staging-*"))
